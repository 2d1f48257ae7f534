"""build_mllm: the assembled model holds exactly the checkpoints' weights, in the dtype asked for, with no tensor
left unloaded and no full-size throw-away model built first."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration

from workflow_scripts.model.build import build_mllm


def checkpoint(folder) -> dict[str, torch.Tensor]:
    from pathlib import Path

    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_holds_the_checkpoints_weights_in_the_asked_dtype(tiny_base_models, dtype):
    llm_dir, vision_dir = tiny_base_models
    model, processor = build_mllm(llm_dir, vision_dir, dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    llm, clip = checkpoint(llm_dir), checkpoint(vision_dir)
    state = model.state_dict()
    for name, value in llm.items():
        if name == "model.embed_tokens.weight" or name == "lm_head.weight":  # resized for <image>: rows kept
            ours = state["model.language_model.embed_tokens.weight" if "embed" in name else "lm_head.weight"]
            assert torch.equal(ours[: value.shape[0]], value.to(dtype))
            assert ours.shape[0] == len(processor.tokenizer) == value.shape[0] + 1
        else:
            assert torch.equal(state[name.replace("model.", "model.language_model.", 1)], value.to(dtype)), name
    vision_names = [n for n in clip if n.startswith("vision_model.")]
    assert vision_names
    for name in vision_names:
        # transformers 5's CLIPVisionModel drops the checkpoint's "vision_model." level
        ours = state[f"model.vision_tower.{name.removeprefix('vision_model.')}"]
        assert torch.equal(ours, clip[name].to(dtype)), name
    projector = model.model.multi_modal_projector
    assert torch.equal(projector.linear_2.weight, torch.eye(projector.linear_2.weight.shape[0], dtype=dtype))


def test_head_and_embeddings_are_separate_tensors(tiny_base_models):
    model, _ = build_mllm(*tiny_base_models)
    assert model.lm_head.weight.data_ptr() != model.model.language_model.embed_tokens.weight.data_ptr()


def test_the_connector_init_is_seeded(tiny_base_models):
    a, _ = build_mllm(*tiny_base_models, seed=3)
    b, _ = build_mllm(*tiny_base_models, seed=3)
    c, _ = build_mllm(*tiny_base_models, seed=4)
    wa, wb, wc = (m.model.multi_modal_projector.linear_1.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_no_full_size_model_is_initialised_on_a_real_device(tiny_base_models, monkeypatch):
    """The Llava shell is created on the meta device: a real-device construction of the whole model would
    allocate (and random-initialise) every weight once more."""
    devices = []
    original = LlavaForConditionalGeneration.__init__

    def spy(self, config, *args, **kwargs):
        devices.append(torch.empty(0).device.type)  # the default device in force while the shell is built
        original(self, config, *args, **kwargs)

    monkeypatch.setattr(LlavaForConditionalGeneration, "__init__", spy)
    build_mllm(*tiny_base_models, dtype=torch.bfloat16)
    assert devices == ["meta"]
