"""Toy base models: trained on smoke data they learn, and load back with stock from_pretrained."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer, CLIPVisionModel, LlamaTokenizer

from workflow_scripts.data.conversation import generation_prompt
from workflow_scripts.toyworld import toy_llm, toy_vision

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_llm(smoke_world, tmp_path_factory):
    config, _ = smoke_world
    root = Path(config["toy_world"]["root"]) / "pretrain"
    out = tmp_path_factory.mktemp("llm")
    spec = config["toy_world"]["llm"]
    toy_llm.main(["--train", str(root / "text_train.jsonl"), "--val", str(root / "text_val.jsonl"),
                  "--spec", json.dumps(spec), "--out", str(out / "model"), "--metrics", str(out / "m.json")])
    return out / "model", json.loads((out / "m.json").read_text())


def test_toy_llm_learns_the_world_text(trained_llm):
    _, metrics = trained_llm
    assert metrics["val_perplexity_after"] < metrics["val_perplexity_before"] / 10
    assert metrics["val_perplexity_after"] < 8  # uniform guessing would be ~vocab size (about 200)


def test_toy_llm_loads_like_vicuna(trained_llm):
    path, _ = trained_llm
    tok = AutoTokenizer.from_pretrained(path)
    assert isinstance(tok, LlamaTokenizer)
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = tok("A red circle.")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.decode(ids, skip_special_tokens=True) == "A red circle."
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.config.tie_word_embeddings
    assert (path / "model.safetensors").exists() and not list(path.glob("*.bin"))
    prompt = tok(generation_prompt("vicuna_v1", "How many shapes are there?"), return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_toy_vision_learns_and_loads_as_clip_vision(smoke_world, tmp_path):
    config, _ = smoke_world
    root = Path(config["toy_world"]["root"]) / "pretrain"
    spec = config["toy_world"]["vision"]
    toy_vision.main(["--train", str(root / "clip_train.jsonl"), "--test", str(root / "clip_test.jsonl"),
                     "--images", str(root), "--image-size", "64", "--spec", json.dumps(spec),
                     "--out", str(tmp_path / "vision"), "--metrics", str(tmp_path / "m.json")])
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["retrieval_top1_after"] >= 3 * metrics["retrieval_chance"]
    vision = CLIPVisionModel.from_pretrained(tmp_path / "vision")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "vision")
    from PIL import Image
    pixels = processor(images=Image.new("RGB", (80, 64), "white"), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 64, 64)
    with torch.no_grad():
        hidden = vision(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    assert hidden.shape == (1, 1 + metrics["image_tokens"], spec["hidden_size"])  # CLS + 16 patches
