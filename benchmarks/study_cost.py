"""The study's GPU bill, estimated from its config: GPU-hours per stage and for the whole study, for the batching
as configured and with the options that cut it (length-grouped batching, gradient checkpointing only where memory
needs it).

    .venv/bin/python benchmarks/study_cost.py                       # config.yaml, A100-80G, assumptions printed
    .venv/bin/python benchmarks/study_cost.py --config config/demo.yaml --lengths-from-data

FLOPs per trained token (an LLM of N_fwd weights used per token: its layers and head; the embedding lookup is free):
forward 2·N_fwd; backward to the activations 2·N_fwd (every strategy trains something in the first layer or below
it, so the backward runs through every layer); weight gradients 2·N_trained (frozen weights skip theirs; the
embedding gradient is a scatter, not a matmul); gradient checkpointing recomputes the forward, 2·N_fwd more. The
vision tower is frozen and runs forward only: 2·N_vision per patch token. Padding positions cost as much as real
ones. Attention's s² term and the optimizer step are left out (a few % at 7B and ~530 tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Peak dense bf16 throughput per GPU (vendor data sheets), and the share of it training reaches (model FLOPs
# utilisation). 0.4 is typical of 7B training with ZeRO-2 and checkpointing; measure yours with
# benchmarks/gpu_scale.py (tokens/s) and pass --mfu.
PEAK_TFLOPS = {"A100-80G": 312.0, "H100": 989.0, "H200": 989.0}
# LLaVA-Instruct-80K has ~80K records of ~530 tokens with the image (issue #17's public estimate). Used only when
# the data is not on disk; --lengths-from-data counts the real records.
DEFAULT_RECORDS, DEFAULT_TOKENS = 80_000, 530
CC3M_SUBSET, CAPTION_TOKENS = 595_375, 20  # LLaVA's CC3M-595K; a caption's tokens besides the image's


@dataclass
class Cell:
    llm: str
    strategy: str
    n_fwd: int  # LLM weights used per token (layers + head, LoRA adapters included)
    n_trained_matmul: int  # trained weights whose gradient is a matmul (all trained but the embeddings)
    n_vision: int
    image_tokens: int


def model_cells(config: dict) -> dict[tuple[str, str], Cell]:
    """Per LLM x strategy (and stage 1 as strategy "connector"): the parameter counts the FLOPs model needs,
    from the models built on the meta device (no weights)."""
    import torch

    from workflow_scripts.model.accounting import meta_mllm, text_config_for, vision_config_for
    from workflow_scripts.model.build import image_token_count
    from workflow_scripts.model.strategies import apply_strategy

    connector = config.get("connector", {}).get("type", "linear")
    select = config["vision"].get("select_strategy", "default")
    strategies = list(dict.fromkeys([*config["strategies"], *config["controls"]["text_priors"]]))
    cells = {}
    for llm in config["models"]:
        for strategy in [*strategies, "connector"]:
            vision = vision_config_for(config)
            model = meta_mllm(text_config_for(config, llm), vision, connector, select)
            with torch.device("meta"):
                if strategy == "connector":
                    for name, p in model.named_parameters():
                        p.requires_grad = ".multi_modal_projector.linear_1." in name
                else:
                    model = apply_strategy(model, strategy, connector, config.get("lora"))
            n_fwd = n_trained = n_vision = 0
            for name, p in model.named_parameters():
                if ".vision_tower." in name:
                    n_vision += p.numel()
                elif "multi_modal_projector" in name or "embed_tokens" in name:
                    n_trained += p.numel() if p.requires_grad and "embed_tokens" not in name else 0
                else:
                    n_fwd += p.numel()
                    n_trained += p.numel() if p.requires_grad else 0
            cells[(llm, strategy)] = Cell(llm, strategy, n_fwd, n_trained, n_vision, image_token_count(vision, select))
    return cells


def train_flops_per_token(cell: Cell, checkpointing: bool) -> float:
    """LLM FLOPs per token of one training step (see the module docstring)."""
    return 2 * cell.n_fwd + 2 * cell.n_fwd + 2 * cell.n_trained_matmul + (2 * cell.n_fwd if checkpointing else 0)


def vision_flops_per_sample(cell: Cell) -> float:
    return 2.0 * cell.n_vision * (cell.image_tokens + 1)


def instruct_lengths(config: dict) -> tuple[list[int] | None, str]:
    """Token counts of the instruct records (image tokens included), when the data and the LLM's tokenizer are
    on disk; else None and why."""
    from workflow_scripts import study

    path = study.data_path(config, "instruct_json")
    llm = next(iter(config["models"].values()))["path"]
    if not (path and os.path.exists(path) and os.path.isdir(llm)):
        return None, f"no instruct data or tokenizer on disk ({path}); assumed {DEFAULT_RECORDS:,} records x " \
                     f"{DEFAULT_TOKENS} tokens, no padding information"
    from transformers import AutoTokenizer

    from workflow_scripts.data.labels import encode_conversation
    from workflow_scripts.data.readers import read_llava_json
    from workflow_scripts.model.accounting import vision_config_for
    from workflow_scripts.model.build import image_token_count

    tokenizer = AutoTokenizer.from_pretrained(llm)
    template = next(iter(config["models"].values()))["template"]
    image = image_token_count(vision_config_for(config), config["vision"].get("select_strategy", "default"))
    from workflow_scripts.data.instruct import to_turns

    lengths = []
    for r in read_llava_json(path):
        enc = encode_conversation(tokenizer, template, to_turns(r, path), r.id, has_image=False)
        lengths.append(min(len(enc.input_ids) + (image if r.image else 0), config["stage2"]["model_max_length"]))
    return lengths, f"{len(lengths):,} records of {path}, tokenized with {llm}'s tokenizer"


def padded_tokens(lengths: list[int] | None, config: dict, stage: dict, gpus: int,
                  grouped: bool) -> tuple[float, float]:
    """(token positions trained per epoch, padding share) for one cell with stage-2 settings ``stage`` on
    ``gpus`` GPUs."""
    from workflow_scripts import study
    from workflow_scripts.train.loop import padding_share

    if lengths is None:
        return DEFAULT_RECORDS * DEFAULT_TOKENS, 0.0
    micro, accum = study.batch_split(stage["global_batch"], stage["per_device_batch"], gpus)
    share = padding_share(lengths, micro, accum, grouped, config.get("seed", 0))
    return sum(lengths) / (1 - share), share


def estimate(config: dict, lengths: list[int] | None, gpu: str, mfu: float, grouped: bool,
             checkpointing: dict[str, bool] | None = None, halving: tuple[float, int] | None = None) -> dict:
    """GPU-hours of stage 1, the finetunes and the evaluations. ``checkpointing``: strategy -> on/off (default:
    each cell's stage2 setting, stage2.by_cell applied). ``halving`` (fraction, keep): successive-halving
    selection, every LR trained to the rung and ``keep`` of them to the end (exact sweep when None)."""
    from workflow_scripts import study

    cells = model_cells(config)
    rate = PEAK_TFLOPS[gpu] * 1e12 * mfu
    hours = {"stage1": 0.0, "finetune": 0.0, "evaluate": 0.0}
    vision = 0.0  # FLOPs of the frozen vision tower, inside the stages' figures
    shares = []
    for llm in config["models"]:
        s1 = cells[(llm, "connector")]
        samples = CC3M_SUBSET * config["stage1"]["epochs"]
        flops = samples * ((s1.image_tokens + 1 + CAPTION_TOKENS) * train_flops_per_token(
            s1, config["stage1"]["gradient_checkpointing"]) + vision_flops_per_sample(s1))
        hours["stage1"] += flops / rate / 3600
        vision += samples * vision_flops_per_sample(s1)
        n_lrs = len(config["learning_rates"])
        swept = n_lrs if halving is None else n_lrs * halving[0] + halving[1] * (1 - halving[0])
        runs = {s: swept for s in config["strategies"]}
        for s in config["controls"]["text_priors"]:
            runs[s] = runs.get(s, 0) + 1
        for strategy, count in runs.items():
            cell, stage2 = cells[(llm, strategy)], study.stage2_for(config, llm, strategy)
            tokens, share = padded_tokens(lengths, config, stage2, study.finetune_gpus(config, llm, strategy),
                                          grouped)
            shares.append(share)
            gc = stage2["gradient_checkpointing"] if checkpointing is None else checkpointing[strategy]
            records = len(lengths) if lengths else DEFAULT_RECORDS
            per_run = stage2["epochs"] * (tokens * train_flops_per_token(cell, gc)
                                          + records * vision_flops_per_sample(cell))
            hours["finetune"] += count * per_run / rate / 3600
            vision += count * stage2["epochs"] * records * vision_flops_per_sample(cell)
        # Evaluations: the selection benchmark for every cell, all benchmarks at the chosen LRs and the control
        # rows; ~400 prompt tokens + the answer per item, forward only (decoding counted at the same rate: an
        # optimistic bound, as batched decoding is memory-bound).
        cell = cells[(llm, config["strategies"][0])]
        items = {b: study.expected_size(b, spec) * (len(spec.get("splits", [1, 2, 3])) if b == "pope" else 1)
                 for b, spec in config["benchmarks"].items()}
        per_item = {b: 2 * cell.n_fwd * (400 + spec.get("max_new_tokens", 10)) + vision_flops_per_sample(cell)
                    for b, spec in config["benchmarks"].items()}
        selection = config["selection"]["benchmark"]
        scored = n_lrs if halving is None else n_lrs + halving[1]  # the rung scores every LR, then the kept again
        evals = len(config["strategies"]) * scored * items[selection] * per_item[selection]
        rows = len(config["strategies"]) + 2 + len(config["controls"]["text_priors"])  # + stage-1 and blind rows
        evals += rows * sum(items[b] * per_item[b] for b in items)
        hours["evaluate"] += evals / rate / 3600
        vision += (len(config["strategies"]) * scored * items[selection] + rows * sum(items.values())) \
            * vision_flops_per_sample(cell)
    hours["total"] = sum(hours.values())
    return {"gpu_hours": hours, "vision_tower_gpu_hours": vision / rate / 3600,
            "padding_share": round(sum(shares) / len(shares), 3) if shares else None}


def against_measured(config: dict, results: str) -> list[dict]:
    """Per strategy, the FLOPs model's cost of a training step relative to full finetuning, beside the step
    times the config's finetune jobs recorded (``efficiency.json``, median over the LRs) — how far the model's
    ratios can be trusted at that shape."""
    import glob
    import statistics

    from workflow_scripts import study

    cells, llm = model_cells(config), next(iter(config["models"]))
    measured, predicted = {}, {}
    for strategy in config["strategies"]:
        runs = [json.load(open(f)) for f in glob.glob(f"{results}/finetune/{llm}/{strategy}/*/efficiency.json")]
        if not runs:
            continue
        measured[strategy] = statistics.median(r["step_time_s"] for r in runs)
        tokens = statistics.median(r["tokens_per_s"] * r["step_time_s"] for r in runs)  # positions per step
        cell, stage2 = cells[(llm, strategy)], study.stage2_for(config, llm, strategy)
        predicted[strategy] = (tokens * train_flops_per_token(cell, stage2["gradient_checkpointing"])
                               + stage2["global_batch"] * vision_flops_per_sample(cell))
    base = config["strategies"][0]
    return [{"strategy": s, "predicted": predicted[s] / predicted[base], "measured": measured[s] / measured[base]}
            for s in measured]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "config.yaml"))
    ap.add_argument("--gpu", choices=sorted(PEAK_TFLOPS), default="A100-80G")
    ap.add_argument("--mfu", type=float, default=0.4, help="share of peak FLOPs training reaches")
    ap.add_argument("--lengths-from-data", action="store_true",
                    help="tokenize the config's instruct data (needs it and the LLM's tokenizer on disk)")
    ap.add_argument("--against-measured", metavar="RESULTS",
                    help="compare the model's per-strategy step cost with the step times recorded under RESULTS "
                         "(e.g. results/demo after `make demo`, with --config config/demo.yaml), then stop")
    args = ap.parse_args(argv)
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load(open(args.config))
    validate(config, str(REPO / "config" / "schema.yaml"), set_default=True)
    os.chdir(REPO)  # data paths are relative to the repository
    if args.against_measured:
        rows = against_measured(config, args.against_measured)
        print(f"| strategy | FLOPs model, step x {config['strategies'][0]} | measured | measured / model |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['strategy']} | {r['predicted']:.2f} | {r['measured']:.2f} | "
                  f"{r['measured'] / r['predicted']:.2f} |")
        return {"against_measured": rows}
    lengths, source = instruct_lengths(config) if args.lengths_from_data else (None, "not read (--lengths-from-data)")
    # Before issue #17: random batches and checkpointing in every cell and in stage 1 (stage2.by_cell absent).
    before = estimate({**config, "stage1": {**config["stage1"], "gradient_checkpointing": True},
                       "stage2": {k: v for k, v in config["stage2"].items() if k != "by_cell"}},
                      lengths, args.gpu, args.mfu, grouped=False)
    configured = estimate(config, lengths, args.gpu, args.mfu, grouped=config["stage2"]["group_by_length"])
    ungrouped = estimate(config, lengths, args.gpu, args.mfu, grouped=False)
    no_gc = estimate(config, lengths, args.gpu, args.mfu, grouped=config["stage2"]["group_by_length"],
                     checkpointing={s: False for s in [*config["strategies"], *config["controls"]["text_priors"]]})
    h = config["selection"]["halving"]
    halving = estimate(config, lengths, args.gpu, args.mfu, grouped=config["stage2"]["group_by_length"],
                       halving=(h["fraction"], h["keep"]))
    out = {"config": args.config, "gpu": args.gpu, "mfu": args.mfu, "lengths": source,
           "before": before, "configured": configured, "random_batches": ungrouped, "no_gradient_checkpointing": no_gc,
           "halving_selection": halving}
    print(f"# GPU bill of {args.config} on {args.gpu} at {args.mfu:.0%} of peak ({PEAK_TFLOPS[args.gpu]:.0f} TFLOPS)")
    print(f"instruct lengths: {source}")
    print("| batching | stage 1 | finetunes | evaluations | total GPU-hours | padding share |")
    print("|---|---|---|---|---|---|")
    for name, est in (("before #17: random batches, checkpointing everywhere", before),
                      ("as configured", configured), ("as configured, random batches", ungrouped),
                      ("as configured, no checkpointing (memory permitting)", no_gc),
                      (f"selection.mode halving (fraction {h['fraction']:g}, keep {h['keep']})", halving)):
        h = est["gpu_hours"]
        print(f"| {name} | {h['stage1']:,.1f} | {h['finetune']:,.1f} | {h['evaluate']:,.1f} | {h['total']:,.1f} "
              f"| {est['padding_share']} |")
    v = configured["vision_tower_gpu_hours"]
    print(f"frozen vision tower, as configured: {v:,.1f} GPU-hours ({v / configured['gpu_hours']['total']:.1%} of "
          "the total): the most that computing each image's features once and reusing them could save")
    from workflow_scripts.model.accounting import stage1_memory

    print("stage 1, analytic memory per GPU: " + "; ".join(
        f"{r['llm']} {r['total_gib']} GiB ({r['per_device_batch']} x {r['seq_len']} tokens, checkpointing "
        f"{'on' if r['gradient_checkpointing'] else 'off'}, fits 80 GB: {r['fits_80gb']})"
        for r in stage1_memory(config)))
    print(json.dumps(out, default=lambda v: round(v, 2)))
    return out


if __name__ == "__main__":
    main()
