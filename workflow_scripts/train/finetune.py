"""Stage 2: visual instruction tuning of one LLM x strategy x LR cell, from the stage-1 connector.

Writes the trainable delta (safetensors: every parameter the strategy trains, LoRA adapters included) and
efficiency.json. The merged model folder evaluations load is rebuilt from the delta by ``train/merge.py``.

Entry (torchrun on GPUs, plain python on CPU):
    python -m workflow_scripts.train.finetune --llm L --vision V --connector C --instruct-json J --images DIR
        --template vicuna_v1 --strategy layernorm --lr 0.001 --config-json JSON --checkpoints DIR
        --delta D.safetensors --efficiency E.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import partial

import torch

from workflow_scripts.data.instruct import InstructDataset, collate, select_subset
from workflow_scripts.data.readers import read_llava_json
from workflow_scripts.io import write_json
from workflow_scripts.model.build import build_mllm
from workflow_scripts.model.strategies import apply_strategy, parameter_report, trainable_names
from workflow_scripts.model.trained import load_connector
from workflow_scripts.train import changes, distributed, loop
from workflow_scripts.train.export import save_safetensors, state_of


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--llm", "--vision", "--connector", "--instruct-json", "--images", "--template", "--strategy",
                 "--lr", "--config-json", "--checkpoints", "--delta", "--efficiency"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--types", default=None, help="comma-separated record types to keep (data-type ablation)")
    ap.add_argument("--count", type=int, default=None, help="seeded random subset of this many records")
    ap.add_argument("--tensorboard", default=None, help="folder for this run's TensorBoard log")
    ap.add_argument("--blank-images", action="store_true",
                    help="train on blank images (the text-priors control: what the text alone teaches)")
    ap.add_argument("--stop-at-fraction", type=float, default=None,
                    help="halving rung: train this fraction of the run's steps, keep its checkpoints for the rest")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--inject-nan-at-step", type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(distributed.threads_per_worker(args.threads))
    config = json.loads(args.config_json)
    lr = float(args.lr)  # the configured value (the rule maps the path's LR text back through the config)
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"--lr {args.lr!r}: a learning rate must be a positive number")
    stage, vision_cfg = config["stage2"], config["vision"]
    connector = config.get("connector", {}).get("type", "linear")
    # stage2.by_cell may give this cell its own ZeRO stage (a 13B full finetune needs ZeRO-3 to fit 80 GB).
    zero_stage = stage.get("zero_stage", config.get("deepspeed", {}).get("zero_stage", 2))
    if args.strategy == "lora" and zero_stage == 3:
        raise ValueError("strategy lora with deepspeed.zero_stage 3: gathering a partitioned PEFT adapter is not "
                         "supported; use zero_stage 2 (LoRA's memory needs fit without ZeRO-3)")
    start = time.time()

    dtype = torch.bfloat16 if torch.cuda.is_available() and stage["precision"] == "bf16" else torch.float32
    model, processor = build_mllm(args.llm, args.vision, connector, vision_cfg.get("feature_layer", -2),
                                  vision_cfg.get("select_strategy", "default"), seed=config.get("seed", 0), dtype=dtype,
                                  allow_pickle=config.get("allow_pickle_checkpoints", False),
                                  image_start_end=config.get("connector", {}).get("image_start_end", False))
    load_connector(model, args.connector, connector)
    model = apply_strategy(model, args.strategy, connector, config.get("lora"))
    if stage["gradient_checkpointing"]:
        model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still need a grad path
    start_values = changes.fingerprints(model, trainable_names(model))
    report = parameter_report(model, connector)  # before training: ZeRO-3 then partitions (and hides) the weights
    records = read_llava_json(args.instruct_json)
    records = select_subset(records, args.types.split(",") if args.types else None, args.count, config.get("seed", 0))
    dataset = InstructDataset(records, args.images, processor.tokenizer, processor.image_processor, args.template,
                              model.config.image_seq_length, stage["model_max_length"],
                              vision_cfg.get("image_aspect", "crop"), source=args.instruct_json,
                              blank_images=args.blank_images)
    targs = loop.training_arguments(
        args.checkpoints, lr=lr, global_batch=stage["global_batch"], per_device_batch=stage["per_device_batch"],
        epochs=stage["epochs"], max_steps=stage.get("max_steps", -1), warmup_ratio=stage["warmup_ratio"],
        weight_decay=stage["weight_decay"], scheduler=stage["lr_scheduler"], precision=stage["precision"],
        gradient_checkpointing=stage["gradient_checkpointing"], save_steps=stage["save_steps"],
        zero_stage=zero_stage, seed=config.get("seed", 0), group_by_length=stage["group_by_length"])
    collator = partial(collate, pad_token_id=processor.tokenizer.pad_token_id)
    identity = loop.run_identity(
        config, {k: getattr(args, k) for k in ("llm", "vision", "template", "strategy", "lr", "types", "count",
                                             "blank_images")},
        {"connector": args.connector, "instruct_json": args.instruct_json, "llm": args.llm, "vision": args.vision})
    # The rung's stop is not part of the identity: it is the first part of the same run.
    stop = loop.StopAtFraction(args.stop_at_fraction) if args.stop_at_fraction else None
    trainer, timer, resume = loop.run_training(model, targs, dataset, collator, identity, args.inject_nan_at_step,
                                               args.tensorboard, stop)
    # Collective under ZeRO-3: every rank joins the gathers, rank 0 keeps the copies and writes.
    delta = state_of(trainer.model, trainable_names(trainer.model))
    if trainer.is_world_process_zero():
        save_safetensors(delta, args.delta, {"strategy": args.strategy, "connector": connector})
        summary = loop.run_summary(trainer, timer, time.time() - start, resume)
        padding = loop.padding_share(dataset.lengths(), targs.per_device_train_batch_size,
                                     targs.gradient_accumulation_steps, stage["group_by_length"], targs.data_seed,
                                     targs.world_size)
        summary.update(strategy=args.strategy, lr=lr, blank_images=args.blank_images, records=len(dataset),
                       dropped_records=dataset.dropped,
                       padding={"grouped_by_length": stage["group_by_length"], "share": round(padding, 4)},
                       tensors_changed=changes.changed_tensors(start_values, delta),
                       stage2=stage, parameters=report)
        if stop is not None:
            summary["rung"] = {"fraction": args.stop_at_fraction, "stopped_at_step": trainer.state.global_step,
                               "of_steps": trainer.state.max_steps}
        write_json(args.efficiency, summary)
        print(loop.summary_line(summary, args.efficiency), flush=True)
    if stop is None:  # a rung leaves its checkpoint: the cell's full run resumes from it
        loop.release_checkpoints(args.checkpoints)  # every rank: rank 0 deletes once all are done
    distributed.finish()


if __name__ == "__main__":
    main()
