"""Rebuild the merged model folder of a stage-2 run from what training kept: base LLM + CLIP, the stage-1
connector and the trainable delta (for LoRA: the adapter is saved beside the merged weights). Cheap next to
training, so the folder is a temporary output: it exists while evaluations need it.

Entry: ``python -m workflow_scripts.train.merge --llm L --vision V --connector C --strategy S --delta D
--config-json JSON --export DIR``.
"""

from __future__ import annotations

import argparse
import json

import torch

from workflow_scripts.model.build import build_mllm
from workflow_scripts.model.strategies import apply_strategy
from workflow_scripts.train.export import load_connector, load_delta, write_export


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--llm", "--vision", "--connector", "--strategy", "--delta", "--config-json", "--export"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = json.loads(args.config_json)
    vision_cfg, connector = config["vision"], config.get("connector", {}).get("type", "linear")
    # Saved in the training precision: bf16 halves the folder at 7B/13B.
    dtype = torch.bfloat16 if config["stage2"].get("precision") == "bf16" else torch.float32
    model, processor = build_mllm(args.llm, args.vision, connector, vision_cfg.get("feature_layer", -2),
                                  vision_cfg.get("select_strategy", "default"), seed=config.get("seed", 0),
                                  dtype=dtype, allow_pickle=config.get("allow_pickle_checkpoints", False))
    load_connector(model, args.connector, connector)
    model = apply_strategy(model, args.strategy, connector, config.get("lora"))
    load_delta(model, args.delta)
    write_export(model, processor, args.export)
    print(f"{args.export}: merged {args.strategy} from {args.delta}")


if __name__ == "__main__":
    main()
