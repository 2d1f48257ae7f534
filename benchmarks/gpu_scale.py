"""Does the study's recipe fit real hardware? One command, no download: the MLLM at the paper's shapes (LLaMA-2 7B /
13B from the shipped ``arch/`` configs + CLIP ViT-L/14, 256 image tokens) with random weights, synthetic batches of
the real shapes. Measures

- stage 2, every strategy at the 7B shape (``--stage2-size 13b``: 13B), each cell as the config trains it
  (``stage2.by_cell``: micro-batch, gradient checkpointing, ZeRO stage): peak ``torch.cuda.max_memory_allocated``
  (the largest worker's), tokens/s, out of memory or not against the analytic table's limit
  (``accounting.GPU_GIB``, 80 GB = 74.5 GiB);
- stage 1 (connector only) at the 13B shape, at stage 1's micro-batch and sequence bound (``model_max_length``);
- greedy generation batched (left padding) against batch size 1, after one untimed warm-up call of each: identical
  answers, speed-up (on one GPU).

With more than one visible GPU it starts itself again under torchrun, one worker per GPU, and trains every cell
under DeepSpeed at the cell's ZeRO stage (bf16, fp32 master weights and AdamW states sharded), as the study's jobs
do; its peaks are then the study's per-GPU figures at that GPU count. On one GPU (or ``--workers 1``) it runs one
process without DeepSpeed (AdamW states in bf16): an approximation that Table 2's analytic estimate complements.
Writes ``<out>.csv`` and ``<out>.md``.

    python benchmarks/gpu_scale.py                                   # on a GPU node: config.yaml's cells
    python benchmarks/gpu_scale.py --shape toy --device cpu --out /tmp/toy   # what the tests run
    python benchmarks/gpu_scale.py --shape toy --device cpu --workers 2       # 2 workers on CPU (gloo)
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from transformers import CLIPVisionConfig, LlamaConfig, LlavaForConditionalGeneration

from workflow_scripts import study
from workflow_scripts.model.accounting import ARCH, GPU_GIB, _json, mllm_config
from workflow_scripts.model.strategies import STRATEGIES, apply_strategy, group_of, parameter_report

GIB = 2**30
STUDY_STRATEGIES = ["finetune", "lora", "attn_qv", "attn_mlp", "layernorm", "layernorm_simp"]
TOY = ({"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4},
       {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "image_size": 56, "patch_size": 14})
COLUMNS = ["part", "shape", "strategy", "status", "trainable_params", "workers", "batch", "seq_len",
           "checkpointing", "study_zero_stage", "peak_gib", "fits_80gb", "tokens_per_s", "step_s", "note"]


def cell_settings(config: dict, size: str) -> dict:
    """Per strategy, the stage-2 settings the study trains a ``size`` LLM with (``stage2.by_cell`` applied), and
    stage 1's: {strategy: {"batch", "checkpointing", "zero_stage"}}, stage 1 under "connector" with its bound."""
    llm = next((name for name, m in config["models"].items() if m["size"] == size), None)
    if llm is None:
        raise SystemExit(f"no model of size {size!r} in the config")
    default_zero = config.get("deepspeed", {}).get("zero_stage", 2)
    cells = {}
    for strategy in STUDY_STRATEGIES:
        stage = study.stage2_for(config, llm, strategy)
        cells[strategy] = {"batch": stage["per_device_batch"], "checkpointing": stage["gradient_checkpointing"],
                           "zero_stage": stage.get("zero_stage", default_zero)}
    s1 = config["stage1"]
    cells["connector"] = {"batch": s1["per_device_batch"], "checkpointing": s1["gradient_checkpointing"],
                          "zero_stage": default_zero, "seq_len": s1["model_max_length"]}
    return cells


def configs(shape: str) -> tuple[LlamaConfig, CLIPVisionConfig]:
    if shape == "toy":
        return LlamaConfig(**TOY[0]), CLIPVisionConfig(**TOY[1])
    vision = _json(ARCH / "clip-vit-large-patch14.json")
    return LlamaConfig(**_json(ARCH / f"llama2-{shape}.json")), CLIPVisionConfig(**vision)


def random_mllm(shape: str, device: str, dtype: torch.dtype):
    """The MLLM at ``shape`` with random weights, built directly on ``device`` in ``dtype`` (the vocabulary grows
    by one for <image>; the linear connector's second layer is the identity, as in model.build)."""
    text, vision = configs(shape)
    cfg = mllm_config(text, vision, "linear")
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(cfg, dtype=dtype)
    with torch.no_grad():
        model.model.multi_modal_projector.linear_2.weight.copy_(torch.eye(text.hidden_size))
    model.generation_config.eos_token_id = None  # random weights: every answer runs to max_new_tokens
    model.generation_config.pad_token_id = 0
    return model


def synthetic_batch(model, batch: int, seq_len: int, device: str, generator: torch.Generator) -> dict:
    """BOS, the image's tokens, then random text to ``seq_len``; loss on the text only (as the real labels)."""
    cfg = model.config
    n_img, size = cfg.image_seq_length, cfg.vision_config.image_size
    if seq_len <= n_img + 2:
        raise ValueError(f"seq_len {seq_len} leaves no text after {n_img} image tokens")
    text = torch.randint(3, cfg.text_config.vocab_size - 1, (batch, seq_len - n_img - 1), generator=generator)
    ids = torch.cat([torch.ones(batch, 1, dtype=torch.long), torch.full((batch, n_img), cfg.image_token_index),
                     text], dim=1)
    labels = ids.clone()
    labels[:, : n_img + 1] = -100
    pixels = torch.randn(batch, 3, size, size, generator=generator)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device),
            "pixel_values": pixels.to(device, next(model.parameters()).dtype)}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_gib(device: str) -> float | None:
    """This process's peak; under torchrun the largest over the workers (every rank calls it)."""
    if device != "cuda":
        return None
    peak = torch.tensor(float(torch.cuda.max_memory_allocated()), device="cuda")
    if workers() > 1:
        torch.distributed.all_reduce(peak, op=torch.distributed.ReduceOp.MAX)
    return peak.item() / GIB


def workers() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def training_step(model, params: list, batch: int, zero_stage: int, device: str):
    """One optimizer step on a batch, as a function, and what holds the optimizer state. One process: AdamW on
    the bf16 weights. Under torchrun: the cell's DeepSpeed ZeRO stage over the workers, as the study trains it
    (fp32 master weights and AdamW states sharded across the workers; bf16 on GPU)."""
    opt = torch.optim.AdamW(params, lr=1e-5)
    if workers() == 1:
        def step(data):
            model(**data).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step, opt
    import deepspeed

    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config={
        "train_micro_batch_size_per_gpu": batch, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
        "zero_optimization": {"stage": zero_stage}, "bf16": {"enabled": device == "cuda"},
        "zero_allow_untested_optimizer": True})

    def step(data):
        engine.backward(engine(**data).loss)
        engine.step()
    return step, engine


def train_cell(part: str, shape: str, strategy: str, batch: int, seq_len: int, steps: int, device: str,
               dtype: torch.dtype, checkpointing: bool = True, zero_stage: int | None = None) -> dict:
    """Build, set the strategy's trainable set (stage 1: the connector), and time ``steps`` optimizer steps after
    one warm-up step, with gradient checkpointing where the cell uses it (see ``training_step``)."""
    row = {"part": part, "shape": shape, "strategy": strategy, "batch": batch, "seq_len": seq_len,
           "checkpointing": checkpointing, "study_zero_stage": zero_stage, "workers": workers()}
    model = state = None
    try:
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        model = random_mllm(shape, device, dtype)
        if strategy == "connector":
            for name, p in model.named_parameters():
                p.requires_grad = group_of(name) == "connector" and ".linear_2." not in name
        else:
            model = apply_strategy(model, strategy)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        row["trainable_params"] = parameter_report(model)["trainable_params"]
        data = synthetic_batch(model, batch, seq_len, device, torch.Generator().manual_seed(0))
        step, state = training_step(model, [p for p in model.parameters() if p.requires_grad], batch,
                                    zero_stage or 0, device)
        times = []
        for i in range(steps + 1):
            synchronize(device)
            start = time.perf_counter()
            step(data)
            synchronize(device)
            if i:
                times.append(time.perf_counter() - start)
        step_s = sum(times) / len(times)
        # tokens/s of the whole job: every worker trains its own micro-batch
        row.update(status="ok", step_s=round(step_s, 4), tokens_per_s=round(workers() * batch * seq_len / step_s, 1))
    except torch.OutOfMemoryError as err:
        # under torchrun every rank must get here: an OOM on one rank alone leaves the others in a collective
        row.update(status="OOM", note=str(err).splitlines()[0][:120])
    finally:
        peak = peak_gib(device)
        if peak is not None:
            row.update(peak_gib=round(peak, 2), fits_80gb=row.get("status") == "ok" and peak <= GPU_GIB)
        del model, state
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return row


def generation_cell(shape: str, prompts: int, max_new_tokens: int, device: str, dtype: torch.dtype) -> dict:
    """Greedy answers to ``prompts`` image prompts of different lengths, batched with left padding vs one by one."""
    model = random_mllm(shape, device, dtype).eval()
    cfg, gen = model.config, torch.Generator().manual_seed(1)
    n_img, size = cfg.image_seq_length, cfg.vision_config.image_size
    singles = []
    for i in range(prompts):
        text = torch.randint(3, cfg.text_config.vocab_size - 1, (8 + 3 * i,), generator=gen)
        ids = torch.cat([torch.tensor([1]), torch.full((n_img,), cfg.image_token_index), text])
        singles.append((ids, torch.randn(3, size, size, generator=gen)))
    kw = {"max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens, "do_sample": False}
    with torch.no_grad():
        # warm-up (kernel selection, allocator growth) for both shapes of call, untimed
        ids, px = singles[0]
        model.generate(input_ids=ids[None].to(device), attention_mask=torch.ones_like(ids)[None].to(device),
                       pixel_values=px[None].to(device, dtype), **kw)
        model.generate(input_ids=ids[None].repeat(2, 1).to(device), attention_mask=torch.ones(2, len(ids),
                       dtype=torch.long, device=device), pixel_values=px[None].repeat(2, 1, 1, 1).to(device, dtype),
                       **kw)
        synchronize(device)
        start = time.perf_counter()
        one_by_one = []
        for ids, px in singles:
            out = model.generate(input_ids=ids[None].to(device), attention_mask=torch.ones_like(ids)[None].to(device),
                                 pixel_values=px[None].to(device, dtype), **kw)
            one_by_one.append(out[0, len(ids):].tolist())
        synchronize(device)
        single_s = time.perf_counter() - start
        longest = max(len(ids) for ids, _ in singles)
        ids = torch.zeros(prompts, longest, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (seq, _) in enumerate(singles):  # left padding, as evaluate.generate does
            ids[i, longest - len(seq):], mask[i, longest - len(seq):] = seq, 1
        pixels = torch.stack([px for _, px in singles]).to(device, dtype)
        synchronize(device)
        start = time.perf_counter()
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), pixel_values=pixels, **kw)
        synchronize(device)
        batched_s = time.perf_counter() - start
    batched = out[:, longest:].tolist()
    same = sum(a == b for a, b in zip(one_by_one, batched))
    del model
    gc.collect()
    return {"part": "generation", "shape": shape, "strategy": "-", "status": "ok", "batch": prompts,
            "step_s": round(batched_s, 4), "tokens_per_s": round(prompts * max_new_tokens / batched_s, 1),
            "note": f"batch 1: {single_s:.2f} s, batched: {batched_s:.2f} s, speed-up {single_s / batched_s:.1f}x; "
                    f"identical answers {same}/{prompts}"}


def markdown(rows: list[dict], device: str) -> str:
    how = (f"{workers()} workers, DeepSpeed at each cell's ZeRO stage" if workers() > 1
           else "one process, AdamW on bf16 weights (no DeepSpeed)")
    lines = [f"GPU scale check ({device}): {how}; each cell's micro-batch and checkpointing from the config; "
             f"peak = torch.cuda.max_memory_allocated (largest worker), fits = peak <= {GPU_GIB:.1f} GiB", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["toy", "paper"], default="paper",
                    help="paper: stage 2 at 7B, stage 1 at 13B; toy: tiny shapes (CPU tests)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--config", default="config.yaml", help="each cell's micro-batch and checkpointing come from it")
    ap.add_argument("--stage2-size", choices=["7b", "13b"], default="7b",
                    help="the LLM size class whose stage-2 cells (stage2.by_cell) are measured")
    ap.add_argument("--stage2-batch", type=int, default=None, help="override every stage-2 cell's micro-batch")
    ap.add_argument("--stage2-seq", type=int, default=2048, help="instruct sequence length (model_max_length)")
    ap.add_argument("--stage1-batch", type=int, default=None, help="override stage 1's micro-batch")
    ap.add_argument("--stage1-seq", type=int, default=None, help="override stage 1's bound (model_max_length)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    ap.add_argument("--strategies", default=",".join(STUDY_STRATEGIES))
    ap.add_argument("--workers", type=int, default=None,
                    help="training workers (torchrun, DeepSpeed at each cell's ZeRO stage); default: the visible "
                         "GPUs; 1: one process, no DeepSpeed")
    ap.add_argument("--out", default="benchmarks/gpu_scale")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU node, or --shape toy --device cpu")
    wanted = args.workers or (torch.cuda.device_count() if args.device == "cuda" else 1)
    if wanted > 1 and "LOCAL_RANK" not in os.environ:
        # start again under torchrun, one worker per GPU; rank 0 writes the outputs, read back here
        argv = list(sys.argv[1:] if argv is None else argv)
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                        str(wanted), os.path.abspath(__file__), *argv, "--workers", str(wanted)], check=True)
        with open(Path(args.out).with_suffix(".csv")) as f:
            return list(csv.DictReader(f))
    rank = int(os.environ.get("RANK", 0))
    if workers() > 1:
        if args.device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        torch.distributed.init_process_group("nccl" if args.device == "cuda" else "gloo")
    # DeepSpeed keeps bf16 only on GPU; on CPU (the tests' stand-in workers) everything is fp32
    dtype = torch.bfloat16 if args.device == "cuda" or workers() == 1 else torch.float32
    stage2_shape, stage1_shape = ("toy", "toy") if args.shape == "toy" else (args.stage2_size, "13b")
    strategies = args.strategies.split(",")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise SystemExit(f"unknown strategies: {unknown}")
    config = yaml.safe_load(Path(args.config).read_text())
    cells, stage1_cells = cell_settings(config, args.stage2_size), cell_settings(config, "13b")
    rows = []
    for strategy in strategies:
        cell = cells[strategy]
        rows.append(train_cell("stage2", stage2_shape, strategy, args.stage2_batch or cell["batch"],
                               args.stage2_seq, args.steps, args.device, dtype, cell["checkpointing"],
                               cell["zero_stage"]))
        if rank == 0:
            print(json.dumps(rows[-1]), flush=True)
    s1 = stage1_cells["connector"]
    rows.append(train_cell("stage1", stage1_shape, "connector", args.stage1_batch or s1["batch"],
                           args.stage1_seq or s1["seq_len"], args.steps, args.device, dtype, s1["checkpointing"],
                           s1["zero_stage"]))
    if rank != 0:  # generation and the outputs are rank 0's
        torch.distributed.destroy_process_group()
        return rows
    print(json.dumps(rows[-1]), flush=True)
    rows.append(generation_cell(stage2_shape, 16, 10, args.device, torch.bfloat16))
    print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows([{c: r.get(c) for c in COLUMNS} for r in rows])
    device = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    out.with_suffix(".md").write_text(markdown(rows, device))
    print(markdown(rows, device))
    if workers() > 1:
        torch.distributed.destroy_process_group()
    return rows


if __name__ == "__main__":
    main()
