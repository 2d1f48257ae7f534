"""Stage 1: train the connector (and any LLM groups ``stage1.trains`` adds) on CC3M (image, caption) pairs in
the ``plain`` template, then check on held-out pairs that the captions now depend on their images.

Entry (run under torchrun on GPUs, plain python on CPU):
    python -m workflow_scripts.train.pretrain_connector --llm L --vision V --shards DIR --config-json J
        --checkpoints DIR --connector-out connector.safetensors --metrics metrics.json
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import torch

from workflow_scripts.data.captions import CaptionCollator, CaptionStream
from workflow_scripts.data.instruct import collate
from workflow_scripts.data.shards import ShardStream, held_out_samples
from workflow_scripts.io import write_json
from workflow_scripts.model.build import build_mllm
from workflow_scripts.model.strategies import group_of, is_identity_connector_layer, parameter_report
from workflow_scripts.train import alignment, changes, distributed, loop
from workflow_scripts.train.export import save_safetensors, state_of


def train_only(model, groups: list[str], connector: str) -> list[str]:
    """Let stage 1 train the parameter ``groups`` (the vision tower and the fixed identity layer never); returns
    the names of the parameters it trains."""
    if "vision" in groups:
        raise ValueError("stage1.trains: the vision tower is frozen in every stage")
    for name, p in model.named_parameters():
        p.requires_grad = group_of(name) in groups and not is_identity_connector_layer(name, connector)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--llm", required=True)
    ap.add_argument("--vision", required=True)
    ap.add_argument("--shards", required=True)
    ap.add_argument("--config-json", required=True, help="the study config (stage1, vision, connector, seed, ...)")
    ap.add_argument("--checkpoints", required=True, help="resumable checkpoints (kept outside the outputs)")
    ap.add_argument("--connector-out", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--tensorboard", default=None, help="folder for this run's TensorBoard log")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--inject-nan-at-step", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(distributed.threads_per_worker(args.threads))
    config = json.loads(args.config_json)
    stage, vision_cfg = config["stage1"], config["vision"]
    connector = config.get("connector", {}).get("type", "linear")
    start = time.time()

    dtype = torch.bfloat16 if torch.cuda.is_available() and stage["precision"] == "bf16" else None
    model, processor = build_mllm(args.llm, args.vision, connector, vision_cfg.get("feature_layer", -2),
                                  vision_cfg.get("select_strategy", "default"), seed=config.get("seed", 0),
                                  dtype=dtype or torch.float32,
                                  allow_pickle=config.get("allow_pickle_checkpoints", False),
                                  image_start_end=config.get("connector", {}).get("image_start_end", False))
    trained = train_only(model, stage["trains"], connector)
    check = stage["alignment"]
    shuffle_seed = config.get("seed", 0) if stage["shuffle"] else None
    # The same stream on every rank, in whole global batches; each rank keeps its own micro-batches and decodes
    # only their images (data/captions.py).
    dataset = CaptionStream(ShardStream(args.shards, holdout=check["holdout"], shuffle_seed=shuffle_seed),
                            processor.tokenizer, model.config.image_token_index, model.config.image_seq_length,
                            stage["model_max_length"], stage["global_batch"])
    targs = loop.training_arguments(
        args.checkpoints, lr=stage["lr"], global_batch=stage["global_batch"],
        per_device_batch=stage["per_device_batch"],
        epochs=stage["epochs"], max_steps=stage.get("max_steps", -1), warmup_ratio=0.03, weight_decay=0.0,
        scheduler="cosine", precision=stage["precision"], gradient_checkpointing=stage["gradient_checkpointing"],
        save_steps=stage["save_steps"], zero_stage=config.get("deepspeed", {}).get("zero_stage", 2),
        seed=config.get("seed", 0))
    if stage["gradient_checkpointing"]:
        model.enable_input_require_grads()  # frozen LLM: checkpointed blocks still need a grad path
    collator = CaptionCollator(processor.image_processor, processor.tokenizer.pad_token_id,
                               vision_cfg.get("image_aspect", "crop"))
    start_values = changes.fingerprints(model, trained)
    report = parameter_report(model, connector)  # before training: ZeRO-3 then partitions (and hides) the weights
    held_out = [collator.with_pixels(it) for it in map(dataset.encode, held_out_samples(dataset.shards))
                if it is not None]
    model.to(targs.device)  # the check runs where training will (the Trainer would move the model there anyway)
    pad = partial(collate, pad_token_id=processor.tokenizer.pad_token_id)  # held-out items carry their pixels
    before = alignment.measure(model, held_out, pad)
    identity = loop.run_identity(config, {"llm": args.llm, "vision": args.vision},
                                 {"shards": args.shards, "llm": args.llm, "vision": args.vision})
    trainer, timer, resume = loop.run_training(model, targs, dataset, collator, identity, args.inject_nan_at_step,
                                               args.tensorboard)
    # Every rank, each on its share of the held-out items: ZeRO-3 forwards are collective.
    after = alignment.measure(trainer.model, held_out, pad)
    failure = alignment.verdict(after, check["min_gap"])
    weights = state_of(trainer.model, trained)  # every rank: a collective gather under ZeRO-3
    # the stream skips alike on every rank; each rank decodes (and may fail to decode) only its own images
    skipped = dataset.shards.skipped + distributed.sum_over_ranks([collator.skipped])[0]
    if failure:
        # Checkpoints stay: a rerun with another config discards them, the same config fails the same way.
        raise alignment.AlignmentError(f"{failure}\nbefore training: {before}\nafter training: {after}")
    if trainer.is_world_process_zero():
        save_safetensors(weights, args.connector_out, {"connector": connector, "trains": ",".join(stage["trains"])})
        summary = loop.run_summary(trainer, timer, time.time() - start, resume)
        summary.update(stage1=stage, parameters=report,
                       alignment={"before_training": before, "after_training": after, "min_gap": check["min_gap"],
                                  "aligned": None if check["min_gap"] is None else True},
                       skipped_samples=int(skipped), dropped_tail_samples=dataset.dropped_tail,
                       data_order={"shuffled": stage["shuffle"], "epochs_read": dataset.shards.epochs_read},
                       tensors_changed=changes.changed_tensors(start_values, weights))
        write_json(args.metrics, summary)
        print(loop.summary_line(summary, args.metrics), flush=True)
    loop.release_checkpoints(args.checkpoints)  # every rank: rank 0 deletes once all are done
    distributed.finish()


if __name__ == "__main__":
    main()
