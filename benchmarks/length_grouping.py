"""Length-grouped batches against uniformly random ones, on the demo's instruct data and MLLM: token positions
trained (padding included) and the time of the same training steps (LayerNorm strategy, CPU, fp32).

    .venv/bin/python benchmarks/length_grouping.py          # run `make demo` first (its toy world and models)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workflow_scripts import study  # noqa: E402
from workflow_scripts.data.instruct import InstructDataset, collate  # noqa: E402
from workflow_scripts.data.readers import read_llava_json  # noqa: E402
from workflow_scripts.model.build import build_mllm  # noqa: E402
from workflow_scripts.model.strategies import apply_strategy  # noqa: E402
from workflow_scripts.train.loop import SeededLengthGroupedSampler  # noqa: E402


def batches(order: list[int], micro: int) -> list[list[int]]:
    return [order[i: i + micro] for i in range(0, len(order), micro)]


def run(records: int, micro: int, accumulation: int, repeats: int) -> dict:
    config = yaml.safe_load(open(REPO / "config" / "demo.yaml"))
    llm = next(iter(config["models"].values()))
    model, processor = build_mllm(llm["path"], config["vision"]["path"])
    model = apply_strategy(model, "layernorm")
    data = InstructDataset(read_llava_json(study.data_path(config, "instruct_json"))[:records],
                           study.data_path(config, "instruct_images"), processor.tokenizer, processor.image_processor,
                           llm["template"], model.config.image_seq_length, 512)
    lengths, seed = data.lengths(), 0
    orders = {"random": torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist(),
              "grouped": list(SeededLengthGroupedSampler(micro * accumulation, lengths, seed))}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    items = [data[i] for i in range(len(data))]
    out = {}
    for name, order in orders.items():
        groups = batches(order, micro)
        positions = sum(max(lengths[i] for i in b) * len(b) for b in groups)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for b in groups:
                batch = collate([items[i] for i in b], processor.tokenizer.pad_token_id)
                model(**batch).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        out[name] = {"positions": positions, "real_tokens": sum(lengths), "seconds": statistics.median(times)}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=320)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--accumulation", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    r = run(args.records, args.micro_batch, args.accumulation, args.repeats)
    print(f"{args.records} demo records, micro-batch {args.micro_batch}, LayerNorm, CPU fp32, median of {args.repeats}")
    print("| batches | token positions | padding share | epoch time s |")
    print("|---|---|---|---|")
    for name, v in r.items():
        print(f"| {name} | {v['positions']:,} | {1 - v['real_tokens'] / v['positions']:.3f} | {v['seconds']:.2f} |")
    print(f"random / grouped: positions {r['random']['positions'] / r['grouped']['positions']:.2f}x, "
          f"time {r['random']['seconds'] / r['grouped']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
