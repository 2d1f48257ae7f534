"""Which trainable tensors a run actually changed.

In bf16 a weight near 1.0 (every RMSNorm gain) moves only in steps of 2^-8 of its size: at the sweep's smallest
learning rates each update rounds back to the stored value, and a cell can finish "trained" with its norms exactly
as they started. Each run records how many of its trainable tensors differ bit for bit from their values before
training, so such a cell is visible as a no-op rather than read as a result.
"""

from __future__ import annotations

import hashlib

import torch

from workflow_scripts.model.strategies import base_name


def fingerprint(tensor: torch.Tensor) -> str:
    """A digest of a tensor's exact bytes (any dtype; bf16 has no numpy type, so its bytes are read as uint8)."""
    raw = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.blake2b(raw.tobytes(), digest_size=16).hexdigest()


def fingerprints(model, names: list[str]) -> dict[str, str]:
    """Digests of the named parameters before training, keyed like the saved delta (without PEFT's prefix). Call
    before DeepSpeed partitions the model: the parameters are whole then."""
    params = dict(model.named_parameters())
    return {base_name(n): fingerprint(params[n]) for n in names}


def changed_tensors(before: dict[str, str], after: dict[str, torch.Tensor], listed: int = 20) -> dict:
    """{changed, trainable, unchanged}: how many of the tensors fingerprinted before training differ after it,
    and the names (up to ``listed``) of those that did not move."""
    if set(before) != set(after):
        raise ValueError(f"trained tensors differ from those fingerprinted: {sorted(set(before) ^ set(after))[:5]}")
    unchanged = sorted(n for n, digest in before.items() if fingerprint(after[n]) == digest)
    return {"changed": len(before) - len(unchanged), "trainable": len(before), "unchanged": unchanged[:listed]}
