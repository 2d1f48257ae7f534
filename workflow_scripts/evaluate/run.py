"""Evaluate one model on one benchmark: prompts, batched greedy generation, parsing, official scoring.
Writes ``predictions.jsonl`` (id, prompt, raw output, parsed answer) and ``metrics.json`` with provenance.

The model is an exported model folder (``--model DIR``), or rebuilt in memory from base LLM + CLIP, the stage-1
connector and, for a finetuned cell, its strategy and trainable delta (``--llm --vision --connector [--strategy S
--delta D]``; without a delta: the stage-1 control row). ``--blind`` replaces every image with a blank one.

Entry (the workflow's): ``python -m workflow_scripts.evaluate.run --bench flickr30k --config-json J --template
vicuna_v1 --llm L --vision V --connector C --strategy S --delta D --out-dir DIR``. Standalone, on an exported
model: ``python -m workflow_scripts.evaluate.run --config config/demo.yaml --model EXPORT --bench pope --out-dir D``
(the YAML is validated with the schema's defaults; the template is read from the export's ``study_model.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import torch

from workflow_scripts import study
from workflow_scripts.data.labels import IMAGE_PLACEHOLDER, image_prompt_text
from workflow_scripts.data.preflight import where_to_get
from workflow_scripts.evaluate import captioning, mme, pope, vqav2
from workflow_scripts.evaluate.common import file_fingerprint
from workflow_scripts.evaluate.generate import generate, prompt_text
from workflow_scripts.io import write_json
from workflow_scripts.timing import clock


def _paths(config, **keys):
    return {name: study.data_path(config, key) for name, key in keys.items()}


# bench -> (module, data paths by role, prompt builder). One row per benchmark.
BENCHMARKS = {
    "mme": (mme, lambda c: _paths(c, root="mme_root"),
            lambda cfg, p, seed: mme.build_prompts(p["root"], cfg.get("instruction", "official"))),
    "vqav2": (vqav2, lambda c: _paths(c, questions="vqav2_questions", annotations="vqav2_annotations",
                                      train_questions="vqav2_train_questions",
                                      train_annotations="vqav2_train_annotations", images="vqav2_images"),
              vqav2.build_prompts),
    "coco": (captioning, lambda c: _paths(c, karpathy_json="coco_karpathy_json", images="coco_images"),
             captioning.build_prompts),
    "flickr30k": (captioning, lambda c: _paths(c, karpathy_json="flickr30k_karpathy_json",
                                               images="flickr30k_images"), captioning.build_prompts),
    "pope": (pope, lambda c: _paths(c, root="pope_root", images="pope_images"),
             lambda cfg, p, seed: pope.build_prompts(p["root"], p["images"], cfg["splits"],
                                                     cfg.get("prompt_suffix", ""))),
}


def check_data(bench: str, paths: dict) -> None:
    """Fail before loading any model when a benchmark file is missing, saying where to get it."""
    for role, path in paths.items():
        if path is None or not os.path.exists(path):
            key = next((k for k in study.DATA_KEYS if k.startswith(bench) and k.endswith(role)), None)
            hint = where_to_get(key) if key else "see config/sources.yaml"
            sys.exit(f"{bench}: missing {role} file {path}\n    get it from: {hint}")


def load_model(args, config, dtype):
    if args.model:
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        # Our own export: safetensors, never pickle.
        return LlavaForConditionalGeneration.from_pretrained(args.model, dtype=dtype, use_safetensors=True), \
            AutoProcessor.from_pretrained(args.model)
    from workflow_scripts.model.trained import build_trained

    return build_trained(args.llm, args.vision, config, args.connector, args.strategy, args.delta, dtype=dtype)


def progress_printer(out=print):
    """A ``progress(done, total)`` callback that prints prompts done, rate, elapsed time and ETA."""
    start = time.time()

    def report(done: int, total: int) -> None:
        elapsed = time.time() - start
        rate = done / elapsed if elapsed else 0.0
        eta = clock((total - done) / rate) if rate else "?"
        out(f"{done}/{total} prompts | {rate:.1f} prompts/s | elapsed {clock(elapsed)} | ETA {eta}", flush=True)

    return report


def benchmark_size(bench: str, cfg: dict, refs: dict) -> dict:
    """How much of a complete benchmark this evaluation covered, by preflight's rule (which refused an incomplete
    benchmark unless the config allows it): items scored, items a complete one holds, whether it was partial."""
    from collections import Counter

    from workflow_scripts.data.preflight import size_problems

    if bench in ("mme", "pope"):  # per subtask / per split: refs hold it first
        size = dict(Counter(r[0] for r in refs.values()))
    else:
        size = len(refs)
    expected = study.expected_size(bench, cfg) * (len(cfg["splits"]) if bench == "pope" else 1)
    return {"items": len(refs), "expected": expected, "partial": bool(size_problems(bench, cfg, size))}


SCHEMA = os.path.join(os.path.dirname(__file__), "..", "..", "config", "schema.yaml")
STUDY_CARD = "study_model.json"  # written by train/export.py beside the merged weights


def read_config(args) -> dict:
    """The config as the rules pass it (``--config-json``), or a config YAML validated with the schema's defaults
    filled in, as Snakemake does (``--config``)."""
    if args.config_json:
        return json.loads(args.config_json)
    import yaml
    from snakemake.utils import validate

    if not os.path.isfile(args.config):
        sys.exit(f"--config {args.config}: no such file (a config YAML such as config.yaml or config/demo.yaml)")
    with open(args.config) as f:
        config = yaml.safe_load(f)
    validate(config, os.path.normpath(SCHEMA), set_default=True)
    return config


def resolve_model(args) -> None:
    """A standalone ``--model``: the export folder or its ``model/`` inside; the template from its study card."""
    if not args.model:
        if not (args.llm and args.vision and args.connector):
            sys.exit("give --model EXPORT_FOLDER, or --llm, --vision and --connector (+ --strategy --delta)")
        if not args.template:
            sys.exit("--template is needed with --llm/--vision/--connector (vicuna_v1 or llama_2)")
        return
    if os.path.isdir(os.path.join(args.model, "model")):
        args.model = os.path.join(args.model, "model")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        sys.exit(f"--model {args.model}: no model folder there (an export is made by "
                 "`snakemake <results>/finetune/<llm>/<strategy>/<lr>/export`)")
    card = os.path.join(args.model, STUDY_CARD)
    if not args.template and os.path.isfile(card):
        with open(card) as f:
            args.template = json.load(f).get("template")
    if not args.template:
        sys.exit(f"--model {args.model}: no {STUDY_CARD} records its template; pass --template vicuna_v1 or llama_2")


def _init_distributed() -> int:
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", 0))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bench", required=True, choices=sorted(BENCHMARKS))
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-json", help="the config keys the rule passes (JSON)")
    source.add_argument("--config", help="a config YAML (validated, schema defaults filled in)")
    ap.add_argument("--template", help="conversation template; default: the export's study_model.json")
    ap.add_argument("--model", help="exported model folder (LlavaForConditionalGeneration)")
    ap.add_argument("--llm")
    ap.add_argument("--vision")
    ap.add_argument("--connector", help="stage-1 connector: evaluate base LLM + CLIP + this connector")
    ap.add_argument("--strategy", help="with --delta: the tuning strategy of the cell")
    ap.add_argument("--delta", help="a finetuned cell's trainable delta (safetensors), loaded onto base + connector")
    ap.add_argument("--blind", action="store_true", help="replace every image by a blank one")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = read_config(args)
    module, paths_of, build = BENCHMARKS[args.bench]
    cfg, paths, seed = config["benchmarks"][args.bench], paths_of(config), config.get("seed", 0)
    check_data(args.bench, paths)
    prompts, refs = build(cfg, paths, seed)
    resolve_model(args)  # after the data is read (its errors first), before any model loads
    start = time.time()
    on_gpu = torch.cuda.is_available()
    # bf16 as the study trains; fp16 where a reference was published in it (LLaVA's evaluation); fp32 on CPU
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config["stage2"].get("precision")) if on_gpu else None
    dtype = dtype or torch.float32
    model, processor = load_model(args, config, dtype)
    rank = _init_distributed()  # under torchrun: prompts are split over the processes, answers gathered
    if on_gpu:
        model = model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    decoding = config.get("decoding") or {"strategy": "greedy"}
    if decoding["strategy"] == "greedy":
        decoding = {"strategy": "greedy"}  # the sampling settings play no part: the record does not show them
    outputs = generate(model, processor, prompts, args.template, cfg["max_new_tokens"], args.batch_size,
                       blind=args.blind, image_aspect=config["vision"].get("image_aspect", "crop"),
                       progress=progress_printer(), decoding=decoding, seed=seed)
    if rank != 0:
        return
    parsed = {p.id: module.parse(o) for p, o in zip(prompts, outputs)}
    options = {"extras": cfg["extra_metrics"]} if "extra_metrics" in cfg else {}  # captioning's optional scores
    metrics = module.score(parsed, refs, allow_partial=cfg.get("allow_partial", False), **options)
    metrics["size"] = benchmark_size(args.bench, cfg, refs)
    if hasattr(module, "no_image_guess"):  # the best answers without the image, scored the same way
        guess = module.no_image_guess(prompts, paths)
        metrics["no_image_guess"] = module.score({i: module.parse(t) for i, t in guess.items()}, refs,
                                                 allow_partial=cfg.get("allow_partial", False), **options)
        metrics["no_image_guess"].pop("coverage", None)
    image = image_prompt_text(processor.tokenizer)

    def shown_prompt(p):  # the text the model was given (with <im_start>/<im_end> where the tokenizer has them)
        return prompt_text(p, args.template).replace(IMAGE_PLACEHOLDER, image)

    os.makedirs(args.out_dir, exist_ok=True)
    tmp = os.path.join(args.out_dir, f".predictions.jsonl.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        for p, o in zip(prompts, outputs):
            f.write(json.dumps({"id": p.id, "prompt": shown_prompt(p), "image": p.image, "output": o,
                                "parsed": parsed[p.id]}) + "\n")
    os.replace(tmp, os.path.join(args.out_dir, "predictions.jsonl"))
    metrics["provenance"] = {
        "benchmark": args.bench,
        "model": args.model or {"llm": args.llm, "vision": args.vision, "connector": file_fingerprint(args.connector),
                                "strategy": args.strategy,
                                "delta": file_fingerprint(args.delta) if args.delta else None},
        "control": "blind" if args.blind else ("stage1" if args.connector and not args.delta else None),
        "template": args.template, "example_prompt": shown_prompt(prompts[0]) if prompts else None,
        "shots": cfg.get("shots", 0), "decoding": {**decoding, "max_new_tokens": cfg["max_new_tokens"],
                                                   "batch_size": args.batch_size, "padding": "left"},
        "dtype": str(dtype).replace("torch.", ""), "prompts": len(prompts),
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "data": {role: file_fingerprint(path) for role, path in paths.items()},
        "seconds": round(time.time() - start, 1),
    }
    write_json(os.path.join(args.out_dir, "metrics.json"), metrics)
    print(summary_line(args.bench, metrics, os.path.join(args.out_dir, "metrics.json")), flush=True)


# The number each benchmark is read by (as Table 1 shows it); the no-image guess of the same key follows it.
HEADLINE = {"mme": "perception", "vqav2": "accuracy", "coco": "CIDEr", "flickr30k": "CIDEr", "pope": "f1_mean"}


def summary_line(bench: str, metrics: dict, written: str) -> str:
    """The last line of an evaluation's log: the benchmark's headline number first, the no-image guess after it and
    labelled as such (the full metrics are in ``written``)."""
    key = HEADLINE[bench]
    line = f"done: {bench} {key} {metrics[key]:.2f}"
    size = metrics.get("size") or {}
    if size:
        line += f" ({size['items']}/{size['expected']} items)"
    guess = (metrics.get("no_image_guess") or {}).get(key)
    if guess is not None:
        line += f" | best no-image guess {guess:.2f} (a baseline, not this model)"
    return line + f" | metrics: {written}"


if __name__ == "__main__":
    main()
