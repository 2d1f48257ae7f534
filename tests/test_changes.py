"""Counting the trainable tensors a run changed, bit for bit, including the bf16 updates that round away."""

import pytest
import torch

from workflow_scripts.train.changes import changed_tensors, fingerprint, fingerprints


def test_fingerprint_sees_any_bit_and_every_dtype():
    x = torch.ones(4, dtype=torch.bfloat16)
    assert fingerprint(x) == fingerprint(x.clone())
    y = x.clone()
    y[2] = 1 + 2 ** -7  # the next bf16 above 1
    assert y[2].item() == 1 + 2 ** -7 and fingerprint(x) != fingerprint(y)
    assert fingerprint(torch.zeros(2, 3)) != fingerprint(torch.zeros(3, 2, dtype=torch.float64))


def test_bf16_norm_updates_below_half_a_step_leave_the_tensor_unchanged():
    """bf16 spacing at 1.0 is 2^-7: an update of 1e-3 (< 2^-8) rounds back to 1.0, one of 1e-2 does not."""
    gain = torch.nn.Parameter(torch.ones(8, dtype=torch.bfloat16))
    head = torch.nn.Parameter(torch.full((2, 2), 0.5, dtype=torch.bfloat16))
    model = torch.nn.Module()
    model.gain, model.head = gain, head
    before = fingerprints(model, ["gain", "head"])
    with torch.no_grad():
        gain.sub_(1e-3)
        head.sub_(1e-2)
    result = changed_tensors(before, {"gain": gain, "head": head})
    assert torch.equal(gain, torch.ones(8, dtype=torch.bfloat16))
    assert result == {"changed": 1, "trainable": 2, "unchanged": ["gain"]}


def test_peft_prefix_is_dropped_and_a_mismatch_is_an_error():
    model = torch.nn.Module()
    model.base_model = torch.nn.Module()
    model.base_model.model = torch.nn.Linear(2, 2)
    before = fingerprints(model, ["base_model.model.weight"])
    assert list(before) == ["weight"]
    with pytest.raises(ValueError, match="differ from those fingerprinted"):
        changed_tensors(before, {"bias": torch.zeros(2)})
