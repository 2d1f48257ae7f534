"""Batched greedy generation against batch size 1: same prompts, same model, identical answers required.

Run after `make demo`:  .venv/bin/python benchmarks/generation_throughput.py
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import yaml

from workflow_scripts import study
from workflow_scripts.evaluate import captioning, pope
from workflow_scripts.evaluate.generate import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="results/demo/finetune/toy-vicuna/layernorm/0.001/export/model")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(2)
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    try:
        model = LlavaForConditionalGeneration.from_pretrained(args.model)
    except OSError:
        sys.exit(f"no model at {args.model}: after `make demo`, rebuild the (temporary) merged model with\n"
                 f"  snakemake --profile profiles/demo {args.model.removesuffix('/model')}")
    processor = AutoProcessor.from_pretrained(args.model)
    config = yaml.safe_load(open("config/demo.yaml"))
    cases = {
        "flickr30k (3 shots, 32 new tokens)": (captioning.build_prompts(
            {"shots": 3}, {"karpathy_json": study.data_path(config, "flickr30k_karpathy_json"),
                           "images": study.data_path(config, "flickr30k_images")}, 0)[0], 32),
        "pope (8 new tokens)": (pope.build_prompts(study.data_path(config, "pope_root"),
                                                   study.data_path(config, "pope_images"), ["random"])[0], 8),
    }
    for name, (prompts, new_tokens) in cases.items():
        prompts = prompts[: args.prompts]
        timings, outputs = {}, {}
        for bs in (1, args.batch):
            start = time.perf_counter()
            outputs[bs] = generate(model, processor, prompts, "vicuna_v1", new_tokens, batch_size=bs)
            timings[bs] = time.perf_counter() - start
        same = sum(a == b for a, b in zip(outputs[1], outputs[args.batch]))
        print(f"{name}: {len(prompts)} prompts, batch 1 {timings[1]:.1f} s, batch {args.batch} "
              f"{timings[args.batch]:.1f} s, speed-up {timings[1] / timings[args.batch]:.1f}x, "
              f"identical answers {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
