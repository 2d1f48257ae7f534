"""Successive-halving LR selection against the exact sweep, on the demo: the LR each chooses per strategy, and what
each cost (training steps, and the wall time of the finetune and selection-benchmark jobs, from Snakemake's
benchmark files).

    .venv/bin/python benchmarks/halving_selection.py     # after `make demo` (the exact sweep it compares with)

Runs the demo's DAG up to the LR selection with ``selection.mode: halving`` under ``results/demo_halving`` (its
own stage 1 too, identical to the demo's: the same inputs and seed). The demo sweeps two LRs, so the rung keeps
one (``keep`` must be below the number of LRs).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def job_seconds(results: str, pattern: str) -> float:
    """Wall seconds of the jobs whose Snakemake benchmark files match ``pattern`` under ``results/benchmarks``."""
    total = 0.0
    for path in glob.glob(os.path.join(results, "benchmarks", pattern), recursive=True):
        with open(path) as f:
            total += sum(float(row["s"]) for row in csv.DictReader(f, delimiter="\t"))
    return total


def trained_steps(results: str, trainset: str) -> int:
    return sum(json.load(open(p))["steps_this_run"]
               for p in glob.glob(os.path.join(results, trainset, "*", "*", "*", "efficiency.json")))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fraction", type=float, default=0.15)
    ap.add_argument("--cores", default="2")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    config = yaml.safe_load(open("config/demo.yaml"))
    exact_root, halving_root = config["results_root"], "results/demo_halving"
    if not os.path.exists(os.path.join(exact_root, "selection", "best_lr.json")):
        sys.exit(f"run `make demo` first: {exact_root}/selection/best_lr.json is the exact sweep compared with")
    config["results_root"] = halving_root
    config["selection"] = {**config.get("selection", {}), "mode": "halving",
                           "halving": {"fraction": args.fraction, "keep": 1}}
    os.makedirs(halving_root, exist_ok=True)
    cfg = os.path.join(halving_root, "config.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump(config, f)
    subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/demo", "--configfile", cfg,
                    "--cores", args.cores, f"{halving_root}/selection/best_lr.json"], check=True)
    exact = json.load(open(os.path.join(exact_root, "selection", "best_lr.json")))
    halving = json.load(open(os.path.join(halving_root, "selection", "best_lr.json")))
    bench = exact["benchmark"]
    rows, agree = [], 0
    for llm, by_strategy in exact["selected"].items():
        for strategy, sel in by_strategy.items():
            h = halving["selected"][llm][strategy]
            agree += sel["lr"] == h["lr"]
            rows.append((strategy, sel["lr"], sel["scores"], h["lr"], h["rung_scores"]))
    cost = {
        "exact": {"steps": trained_steps(exact_root, "finetune"),
                  "seconds": job_seconds(exact_root, "finetune/**/*.tsv")
                  + job_seconds(exact_root, f"eval/**/{bench}.tsv")},
        "halving": {"steps": trained_steps(halving_root, "finetune") + trained_steps(halving_root, "finetune_rung"),
                    "seconds": sum(job_seconds(halving_root, p) for p in
                                   ("finetune/**/*.tsv", "finetune_rung/**/*.tsv", f"eval/**/{bench}.tsv",
                                    f"eval_rung/**/{bench}.tsv"))},
    }
    # The exact sweep's steps: the demo's finetunes are all sweep cells (its text-priors run is under another
    # trainset), so every finetune/ run counts.
    print(f"| strategy | exact: chosen LR | exact scores | halving (fraction {args.fraction:g}, keep 1): chosen LR "
          "| rung scores |")
    print("|---|---|---|---|---|")
    for strategy, lr_e, scores, lr_h, rung in rows:
        fmt = ", ".join(f"{k}: {v:.2f}" for k, v in scores.items() if v is not None)
        fmt_r = ", ".join(f"{k}: {v:.2f}" for k, v in rung.items() if v is not None)
        print(f"| {strategy} | {lr_e} | {fmt} | {lr_h} | {fmt_r} |")
    print(f"same LR chosen: {agree}/{len(rows)}")
    for name, c in cost.items():
        print(f"{name}: {c['steps']} training steps, {c['seconds']:.0f} s of finetune + {bench} jobs")
    print(f"exact / halving: steps {cost['exact']['steps'] / cost['halving']['steps']:.2f}x, "
          f"job time {cost['exact']['seconds'] / cost['halving']['seconds']:.2f}x")
    return {"agree": agree, "cells": len(rows), "cost": cost}


if __name__ == "__main__":
    main()
