"""Cost of each tuning strategy relative to full finetuning, on the same batch: step time (forward + backward
+ AdamW step) and optimizer-state bytes. The paper's claim: LayerNorm tuning is far cheaper in optimizer
memory; a backward through frozen weights still costs about 2/3 of a full one (activation gradients remain).

    .venv/bin/python benchmarks/strategy_cost.py                # demo MLLM on CPU (run `make demo` first)
    python benchmarks/strategy_cost.py --shape 7b --device cuda # a 7B-shaped LLaMA with random weights, bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from workflow_scripts.model.strategies import STRATEGIES, apply_strategy, parameter_report


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))


def demo_batch(batch_size: int):
    """A real batch of the demo's instruct data on the demo MLLM (toy LLaMA + toy CLIP)."""
    import yaml

    from workflow_scripts import study
    from workflow_scripts.data.instruct import InstructDataset, collate
    from workflow_scripts.data.readers import read_llava_json
    from workflow_scripts.model.build import build_mllm

    config = yaml.safe_load(open("config/demo.yaml"))
    llm = next(iter(config["models"].values()))
    def build():
        return build_mllm(llm["path"], config["vision"]["path"])
    model, processor = build()
    records = read_llava_json(study.data_path(config, "instruct_json"))[:batch_size]
    ds = InstructDataset(records, study.data_path(config, "instruct_images"), processor.tokenizer,
                         processor.image_processor, llm["template"], model.config.image_seq_length, 512)
    return build, collate([ds[i] for i in range(len(ds))], processor.tokenizer.pad_token_id)


def shaped_batch(shape: str, batch_size: int, seq: int, device: str):
    """A LLaMA of the real shape with random weights (text only: the LLM dominates every cost)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from workflow_scripts.model.accounting import ARCH, _json

    cfg = LlamaConfig(**_json(ARCH / f"llama2-{shape}.json"))

    class Wrapped(torch.nn.Module):  # names as inside Llava, so the strategy table applies unchanged
        def __init__(self):
            super().__init__()
            inner = LlamaForCausalLM(cfg).to(device=device, dtype=torch.bfloat16)
            self.model = torch.nn.Module()
            self.model.language_model, self.lm_head = inner.model, inner.lm_head
            self.inner = inner
            self.inner.gradient_checkpointing_enable()

        def forward(self, **kw):
            return self.inner(**kw)

    ids = torch.randint(3, cfg.vocab_size, (batch_size, seq), device=device)
    return (lambda: (Wrapped(), None)), {"input_ids": ids, "labels": ids}


def measure(build, batch, strategies, steps: int, device: str) -> dict:
    out = {}
    for name in strategies:
        model, _ = build()
        model = apply_strategy(model, name, lora_settings={"r": 64, "alpha": 16, "dropout": 0.0}).to(device)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        batch = {k: v.to(device) for k, v in batch.items()}
        times = []
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for step in range(steps + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            if step:  # step 0 allocates optimizer state
                times.append(time.perf_counter() - start)
        tokens = int(batch["input_ids"].numel())
        out[name] = {"step_s": statistics.median(times), "optimizer_state_bytes": optimizer_state_bytes(opt),
                     "trainable_params": parameter_report(model)["trainable_params"],
                     "tokens_per_s": tokens / statistics.median(times)}
        if device == "cuda":
            out[name]["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        del model, opt
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shape", choices=["demo", "7b", "13b"], default="demo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256, help="sequence length for --shape 7b/13b")
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.device == "cpu":
        torch.set_num_threads(2)
    if args.shape == "demo":
        build, batch = demo_batch(args.batch)
    else:
        if args.device != "cuda":
            sys.exit("--shape 7b/13b needs --device cuda")
        build, batch = shaped_batch(args.shape, args.batch, args.seq, args.device)
    results = measure(build, batch, list(STRATEGIES), args.steps, args.device)
    base = results["finetune"]
    print(f"{'strategy':15s} {'trainable':>12s} {'step s':>8s} {'x finetune':>10s} {'opt state MB':>13s} "
          f"{'x finetune':>10s}" + ("  peak GiB" if args.device == "cuda" else ""))
    for name, r in results.items():
        line = (f"{name:15s} {r['trainable_params']:12,d} {r['step_s']:8.3f} {r['step_s'] / base['step_s']:10.2f} "
                f"{r['optimizer_state_bytes'] / 1e6:13.2f} "
                f"{r['optimizer_state_bytes'] / base['optimizer_state_bytes']:10.4f}")
        print(line + (f"  {r['peak_memory_gib']:8.2f}" if "peak_memory_gib" in r else ""))
    print(json.dumps({"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                      "batch": {k: list(v.shape) for k, v in batch.items()}}))


if __name__ == "__main__":
    main()
