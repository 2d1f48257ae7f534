"""Toy base models: trained on smoke data they learn, and load back with stock from_pretrained."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForCausalLM, AutoTokenizer, CLIPVisionModel, LlamaTokenizer

from workflow_scripts.data.conversation import generation_prompt

pytestmark = pytest.mark.slow


def test_toy_llm_learns_the_world_text(trained_base_models):
    metrics = trained_base_models[2]["llm"]
    assert metrics["val_perplexity_after"] < metrics["val_perplexity_before"] / 10
    assert metrics["val_perplexity_after"] < 8  # uniform guessing would be ~vocab size (about 200)


def test_toy_llm_loads_like_vicuna(trained_base_models):
    path = Path(trained_base_models[0])
    tok = AutoTokenizer.from_pretrained(path)
    assert isinstance(tok, LlamaTokenizer)
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.convert_ids_to_tokens(3) == "<0x00>"  # LLaMA's byte fallback: no character is ever lost
    ids = tok("A red circle, 7 é.")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.decode(ids, skip_special_tokens=True) == "A red circle, 7 é."
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.config.tie_word_embeddings
    assert (path / "model.safetensors").exists() and not list(path.glob("*.bin"))
    prompt = tok(generation_prompt("vicuna_v1", "How many shapes are there?"), return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_toy_vision_learns_and_loads_as_clip_vision(trained_base_models, smoke_config):
    metrics = trained_base_models[2]["vision"]
    assert metrics["retrieval_top1_after"] >= 3 * metrics["retrieval_chance"]
    vision = CLIPVisionModel.from_pretrained(trained_base_models[1])
    processor = AutoImageProcessor.from_pretrained(trained_base_models[1])
    pixels = processor(images=Image.new("RGB", (80, 64), "white"), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 64, 64)
    with torch.no_grad():
        hidden = vision(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    width = smoke_config["toy_world"]["vision"]["hidden_size"]
    assert hidden.shape == (1, 1 + metrics["image_tokens"], width)  # CLS + 16 patches


def test_packed_stream_cuts_windows_from_the_documents_joined_end_to_end():
    from workflow_scripts.toyworld.toy_llm import PackedStream

    docs = [torch.tensor([1, 5, 6, 2]), torch.tensor([1, 7])]  # the second lacks its </s> (cut at max_length)
    stream = PackedStream(docs, eos_id=2, length=3)
    assert stream.tokens.tolist() == [1, 5, 6, 2, 1, 7, 2]
    batch = stream.batch(8, torch.Generator().manual_seed(0))
    windows = {tuple(w) for w in batch["input_ids"].tolist()}
    assert windows <= {(1, 5, 6), (5, 6, 2), (6, 2, 1), (2, 1, 7)} and len(windows) > 1
    assert batch["labels"].equal(batch["input_ids"]) and batch["attention_mask"].all()
    with pytest.raises(ValueError, match="max_length=8"):
        PackedStream(docs, eos_id=2, length=8)


def test_toy_llm_trains_on_packed_windows():
    from workflow_scripts.toyworld import toy_llm

    texts = [f"small red circle top left , large blue star bottom right {i % 7}" for i in range(60)]
    spec = {"hidden_size": 32, "layers": 1, "heads": 2, "intermediate_size": 64, "vocab_size": 300,
            "max_length": 32, "steps": 40, "batch_size": 8, "lr": 3e-3, "packed": True}
    _, _, metrics = toy_llm.train(texts, texts[:10], spec, seed=0, log=lambda *_: None)
    assert metrics["packed"] and metrics["val_perplexity_after"] < metrics["val_perplexity_before"] / 5
