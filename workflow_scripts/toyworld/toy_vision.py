"""Toy vision encoder: a small CLIP trained contrastively on toy (image, caption) pairs and saved like
``openai/clip-vit-large-patch14`` (a full ``CLIPModel`` + image processor), so ``CLIPVisionModel`` and
``CLIPImageProcessor`` load it the way they load the real one.

Entry: ``python -m workflow_scripts.toyworld.toy_vision --train T --test T --images DIR --spec JSON --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, get_cosine_schedule_with_warmup

from workflow_scripts.io import atomic_dir, write_json

PAD, EOS = 0, 1  # text ids of the toy CLIP's word-level vocabulary


def words(caption: str) -> list[str]:
    return re.findall(r"[a-z]+", caption.lower())


class WordVocab:
    """Word-level ids for the CLIP text tower (training only; only the vision tower is used downstream)."""

    def __init__(self, captions: list[str]):
        self.ids = {w: i + 2 for i, w in enumerate(sorted({w for c in captions for w in words(c)}))}

    def __len__(self) -> int:
        return len(self.ids) + 2

    def encode(self, captions: list[str], max_length: int = 40) -> torch.Tensor:
        rows = [[self.ids.get(w, PAD) for w in words(c)][: max_length - 1] + [EOS] for c in captions]
        out = torch.full((len(rows), max(len(r) for r in rows)), PAD)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out


def image_processor(image_size: int) -> CLIPImageProcessorPil:
    """CLIP's preprocessing (resize shortest edge, centre crop, OpenAI mean/std) at the toy resolution."""
    return CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size,
                                                                               "width": image_size})


def load_pairs(path: str, image_dir: Path, processor) -> tuple[torch.Tensor, list[list[str]]]:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    images = [Image.open(image_dir / r["image"]).convert("RGB") for r in rows]
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    return pixels, [r["captions"] for r in rows]


def build_model(spec: dict, vocab_size: int, image_size: int) -> CLIPModel:
    width = spec["hidden_size"]
    config = CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=width, intermediate_size=spec["intermediate_size"],
                         num_hidden_layers=2, num_attention_heads=spec["heads"], max_position_embeddings=48,
                         pad_token_id=PAD, eos_token_id=EOS, bos_token_id=EOS),
        vision_config=dict(hidden_size=width, intermediate_size=spec["intermediate_size"],
                           num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
                           image_size=image_size, patch_size=spec["patch_size"]),
        projection_dim=width)
    return CLIPModel(config)


@torch.no_grad()
def retrieval_top1(model, vocab: WordVocab, pixels: torch.Tensor, captions: list[list[str]]) -> tuple[float, float]:
    """Image->text top-1 accuracy over the test set's first captions, and its chance level.

    A retrieved caption counts as right when its text equals the true one (scenes may share a caption),
    so chance is the mean share of identical captions, not 1/N.
    """
    model.eval()
    texts = [c[0] for c in captions]
    img = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    txt = model.get_text_features(input_ids=vocab.encode(texts), attention_mask=(vocab.encode(texts) != PAD).long())
    txt = torch.nn.functional.normalize(txt.pooler_output, dim=-1)
    best = (img @ txt.T).argmax(dim=1).tolist()
    model.train()
    hits = sum(texts[j] == texts[i] for i, j in enumerate(best))
    chance = sum(texts.count(t) for t in texts) / len(texts) ** 2
    return hits / len(texts), chance


def train(train_data, test_data, spec: dict, image_size: int, seed: int, log=print):
    """Contrastive training; returns (model, metrics)."""
    torch.manual_seed(seed)
    start = time.time()
    (pixels, captions), (test_pixels, test_captions) = train_data, test_data
    vocab = WordVocab([c for cs in captions for c in cs])
    model = build_model(spec, len(vocab), image_size)
    acc_before, chance = retrieval_top1(model, vocab, test_pixels, test_captions)
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.1)
    sched = get_cosine_schedule_with_warmup(opt, max(1, spec["steps"] // 20), spec["steps"])
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(1, spec["steps"] + 1):
        idx = torch.randint(len(captions), (spec["batch_size"],), generator=gen).tolist()
        texts = [captions[i][int(torch.randint(len(captions[i]), (1,), generator=gen))] for i in idx]
        ids = vocab.encode(texts)
        out = model(input_ids=ids, attention_mask=(ids != PAD).long(), pixel_values=pixels[idx], return_loss=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        if step % 50 == 0 or step == spec["steps"]:
            log(f"step {step}/{spec['steps']} loss {sum(losses[-50:]) / len(losses[-50:]):.3f}")
    acc_after, _ = retrieval_top1(model, vocab, test_pixels, test_captions)
    log(f"image->text top-1 over {len(test_captions)} test captions: {acc_after:.3f} "
        f"(before training {acc_before:.3f}, chance {chance:.3f})")
    metrics = {"parameters_vision": sum(p.numel() for p in model.vision_model.parameters()),
               "image_tokens": (image_size // spec["patch_size"]) ** 2, "steps": spec["steps"],
               "retrieval_top1_before": acc_before, "retrieval_top1_after": acc_after, "retrieval_chance": chance,
               "test_images": len(test_captions), "first_loss": losses[0], "last_loss": losses[-1],
               "seconds": round(time.time() - start, 1)}
    return model, metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--images", required=True, help="folder the pairs' image paths are relative to")
    ap.add_argument("--spec", required=True, help="JSON of config.toy_world.vision")
    ap.add_argument("--image-size", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("--metrics", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    processor = image_processor(args.image_size)
    train_data = load_pairs(args.train, Path(args.images), processor)
    test_data = load_pairs(args.test, Path(args.images), processor)
    model, metrics = train(train_data, test_data, json.loads(args.spec), args.image_size, args.seed)
    with atomic_dir(args.out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    main()
