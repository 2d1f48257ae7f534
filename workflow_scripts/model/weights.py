"""Which checkpoint files may be loaded. Safetensors only by default: a pickle checkpoint (``.bin``, ``.pt``…)
can run arbitrary code when unpickled. A user who trusts a pickle-only checkpoint opts in with
``allow_pickle_checkpoints: true`` in the config; transformers then reads it with ``torch.load(weights_only=True)``,
which refuses anything but tensors. Remote code (``trust_remote_code``) is never enabled.
"""

from __future__ import annotations

import os

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint with pickle weights only, loaded without the opt-in."""


def check_checkpoint(path: str, allow_pickle: bool = False) -> None:
    """Refuse a local model folder that holds pickle weights but no safetensors (hub ids are checked by
    transformers itself through ``use_safetensors=True``)."""
    if not os.path.isdir(path):
        return
    names = sorted(os.listdir(path))
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
    if pickles and not allow_pickle:
        raise UnsafeCheckpointError(
            f"{path}: holds only pickle weights ({', '.join(pickles)}), which can run code when loaded. Convert "
            "them to safetensors, or set allow_pickle_checkpoints: true in the config if you trust this file "
            "(it is then read with torch.load(weights_only=True)).")


def load_kwargs(path: str, allow_pickle: bool = False) -> dict:
    """Keyword arguments for ``from_pretrained``: safetensors only unless the user opted in."""
    check_checkpoint(path, allow_pickle)
    return {"use_safetensors": None if allow_pickle else True}
