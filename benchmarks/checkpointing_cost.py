"""What gradient checkpointing costs per optimizer step, and what `stage2.by_cell` buys by turning it off on
smaller micro-batches: one global batch of demo instruct samples through the demo MLLM (LayerNorm tuning, CPU
fp32), timed three ways, with the gradients of the split batch compared against the whole one.

    .venv/bin/python benchmarks/checkpointing_cost.py        # after `make demo` (needs the demo's toy models)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strategy_cost import demo_batch  # noqa: E402

from workflow_scripts.model.strategies import apply_strategy  # noqa: E402


def step(model, batch: dict, micro: int) -> dict[str, torch.Tensor]:
    """Gradients of one global batch taken in micro-batches of ``micro``, each micro-batch's loss weighted by
    its share of the supervised tokens, so any split gives the gradient of the whole batch."""
    supervised = int((batch["labels"][:, 1:] != -100).sum())
    for start in range(0, batch["input_ids"].shape[0], micro):
        part = {k: v[start:start + micro] for k, v in batch.items()}
        share = int((part["labels"][:, 1:] != -100).sum()) / supervised
        (model(**part).loss * share).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=16, help="the global batch")
    ap.add_argument("--micro", type=int, default=4, help="micro-batch without checkpointing")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    build, batch = demo_batch(args.batch)
    model, _ = build()
    model = apply_strategy(model, "layernorm")
    model.train()
    ways = {"checkpointing, micro-batch = global batch": (True, args.batch),
            "no checkpointing, micro-batch = global batch": (False, args.batch),
            f"no checkpointing, micro-batch {args.micro} (by_cell)": (False, args.micro)}
    times, grads = {}, {}
    for name, (checkpointing, micro) in ways.items():
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_disable()
        step(model, batch, micro)  # warm-up
        samples = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            grads[name] = step(model, batch, micro)
            samples.append(time.perf_counter() - start)
        times[name] = statistics.median(samples)
    base = next(iter(ways))
    print(f"{'way':50s} {'step s':>8s} {'x checkpointing':>16s}")
    for name, t in times.items():
        print(f"{name:50s} {t:8.3f} {times[base] / t:16.2f}")
    split = list(ways)[-1]
    diff = max((grads[base][n] - grads[split][n]).abs().max().item() for n in grads[base])
    scale = max(g.abs().max().item() for g in grads[base].values())
    print(f"largest gradient difference, split vs whole batch: {diff:.2e} (largest gradient {scale:.2e})")
    print(json.dumps({"batch": {k: list(v.shape) for k, v in batch.items()}, "seconds": times,
                      "max_grad_diff": diff}))


if __name__ == "__main__":
    main()
