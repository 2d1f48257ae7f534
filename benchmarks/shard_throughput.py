"""Shard-reader throughput next to what a training step consumes, on the demo world and demo model.

Prints samples/s of (a) decoding shards, (b) decoding + CLIP preprocessing + plain-template encoding, in one
process, and (c) a stage-1 training step (connector trains, batch 32) of the demo MLLM; then the ratio
reader / training. A ratio well above 1 means the data path cannot starve training.

Run after `make demo` (it needs the demo's shards and toy models):
    .venv/bin/python benchmarks/shard_throughput.py
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import torch
import yaml

from workflow_scripts import study
from workflow_scripts.data.images import preprocess
from workflow_scripts.data.labels import encode_conversation, expand_image_tokens
from workflow_scripts.data.shards import ShardStream
from workflow_scripts.model.build import build_mllm


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/demo.yaml")
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(2)
    config = yaml.safe_load(open(args.config))
    shards = study.shards_dir(config)
    llm, vision = config["models"][next(iter(config["models"]))]["path"], config["vision"]["path"]
    if not os.path.isdir(shards) or not os.path.exists(f"{llm}/config.json"):
        sys.exit(f"missing {shards} or {llm}: run `make demo` first")

    start = time.perf_counter()
    n = sum(1 for s in itertools.islice(ShardStream(shards), args.samples) if s.decode())
    decode = rate(n, time.perf_counter() - start)

    model, processor = build_mllm(llm, vision)
    tok, image_id = processor.tokenizer, model.config.image_token_index
    n_img = model.config.image_seq_length

    def prepare(samples):
        pixels = preprocess([s.decode() for s in samples], processor.image_processor)
        encs = [expand_image_tokens(encode_conversation(tok, "plain", [("", s.caption)], s.key, has_image=True),
                                    image_id, n_img) for s in samples]
        return pixels, encs

    start = time.perf_counter()
    stream = iter(ShardStream(shards))
    m = 0
    while m < args.samples:
        batch = list(itertools.islice(stream, args.batch))
        prepare(batch)
        m += len(batch)
    prepared = rate(m, time.perf_counter() - start)

    for name, p in model.named_parameters():
        p.requires_grad = "multi_modal_projector.linear_1" in name
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = list(itertools.islice(ShardStream(shards), args.batch))
    pixels, encs = prepare(batch)
    length = max(len(e.input_ids) for e in encs)
    ids = torch.full((len(encs), length), tok.pad_token_id)
    labels = torch.full((len(encs), length), -100)
    mask = torch.zeros((len(encs), length), dtype=torch.long)
    for i, e in enumerate(encs):
        ids[i, : len(e.input_ids)], labels[i, : len(e.labels)] = torch.tensor(e.input_ids), torch.tensor(e.labels)
        mask[i, : len(e.input_ids)] = 1
    model.train()
    for step in range(args.steps + 1):
        if step == 1:
            start = time.perf_counter()  # the first step warms up allocators
        loss = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    train = rate(args.steps * args.batch, time.perf_counter() - start)

    print(f"shard decode only         {decode:9.0f} samples/s")
    print(f"decode + preprocess + tok {prepared:9.0f} samples/s")
    print(f"stage-1 train step        {train:9.0f} samples/s  (batch {args.batch}, {length} tokens, demo MLLM)")
    print(f"ratio reader/train        {prepared / train:9.1f}x  (one reader process; >1: loading keeps up)")


if __name__ == "__main__":
    main()
