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

from workflow_scripts.model.trained import build_trained
from workflow_scripts.train.export import write_export


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--llm", "--vision", "--connector", "--strategy", "--delta", "--config-json", "--export"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--template", help="conversation template the model was trained with (recorded in the export)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = json.loads(args.config_json)
    # Saved in the training precision: bf16 halves the folder at 7B/13B.
    dtype = torch.bfloat16 if config["stage2"].get("precision") == "bf16" else torch.float32
    model, processor = build_trained(args.llm, args.vision, config, args.connector, args.strategy, args.delta,
                                     dtype=dtype, merge_lora=False)
    write_export(model, processor, args.export, {"template": args.template, "strategy": args.strategy})
    print(f"{args.export}: merged {args.strategy} from {args.delta}")


if __name__ == "__main__":
    main()
