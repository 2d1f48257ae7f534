"""Generation in batches: left padding with an attention mask, prompts sorted by length so a batch pads little.
Greedy by default (batched output equals batch-size-1 output in fp32; tested); the config's ``decoding`` may ask
for sampling instead (the authors' sibling code), seeded. With several processes (torchrun), each takes every
world-size-th prompt and the answers are gathered on every rank.
"""

from __future__ import annotations

import torch

from workflow_scripts.data.conversation import generation_prompt
from workflow_scripts.data.images import blank_like, load_rgb, preprocess
from workflow_scripts.data.labels import IMAGE_PLACEHOLDER, image_prompt_text
from workflow_scripts.evaluate.common import Prompt


def prompt_text(prompt: Prompt, template: str) -> str:
    return generation_prompt(template, prompt.question, prompt.history)


@torch.no_grad()
def generate(model, processor, prompts: list[Prompt], template: str, max_new_tokens: int, batch_size: int = 16,
             blind: bool = False, image_aspect: str = "crop", progress=None, decoding: dict | None = None,
             seed: int = 0) -> list[str]:
    """Answers to ``prompts`` (in their order), decoded without special tokens. ``decoding``: the config's
    (greedy when None)."""
    sampling = decoding_kwargs(decoding)
    if sampling["do_sample"]:
        torch.manual_seed(seed)
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    model.eval()
    image = image_prompt_text(tokenizer)  # <image>, or between <im_start>/<im_end> (connector.image_start_end)
    texts = [prompt_text(p, template).replace(IMAGE_PLACEHOLDER, image) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(tokenizer(texts[i])["input_ids"]))
    rank, world = _world()
    mine = order[rank::world]
    answers: dict[int, str] = {}
    device = next(model.parameters()).device
    for start in range(0, len(mine), batch_size):
        idx = mine[start: start + batch_size]
        batch = [texts[i] for i in idx]
        images = [load_rgb(prompts[i].image) for i in idx if prompts[i].image is not None]
        if blind:
            images = [blank_like(im, processor.image_processor) for im in images]
        # The processor expands each <image> to the feature count, then pads on the tokenizer's (left) side.
        enc = processor(text=batch, images=images or None, return_tensors="pt", padding=True)
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if images:
            inputs["pixel_values"] = preprocess(images, processor.image_processor, image_aspect).to(model.dtype)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=1,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
        new = out[:, inputs["input_ids"].shape[1]:]
        for i, ids in zip(idx, new):
            answers[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
        if progress is not None:
            progress(len(answers), len(mine))
    if world > 1:
        answers = _gather(answers)
    return [answers[i] for i in range(len(prompts))]


def decoding_kwargs(decoding: dict | None) -> dict:
    """generate() arguments for the config's ``decoding``."""
    decoding = decoding or {"strategy": "greedy"}
    if decoding["strategy"] == "greedy":
        return {"do_sample": False}
    if decoding["strategy"] == "sample":
        return {"do_sample": True, "temperature": decoding["temperature"], "top_k": decoding["top_k"]}
    raise ValueError(f"decoding.strategy must be greedy or sample, got {decoding['strategy']!r}")


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _gather(answers: dict[int, str]) -> dict[int, str]:
    parts = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, answers)
    merged = {}
    for part in parts:
        merged.update(part)
    return merged
