"""Write the study grid: one row per finetune cell (LLM x strategy x LR) with the job's batch split.

Entry: ``python -m workflow_scripts.plan --config-json JSON --out results/plan/study_grid.csv``.
"""

from __future__ import annotations

from workflow_scripts import study
from workflow_scripts.io import config_to_csv_main

COLUMNS = ["llm", "label", "template", "strategy", "lr", "gpus", "per_device_batch", "grad_accum", "global_batch",
           "gradient_checkpointing", "zero_stage"]


def grid_rows(config: dict) -> list[dict]:
    """The rows of the grid, in config order."""
    rows = []
    for cell in study.finetune_cells(config):
        model = config["models"][cell.llm]
        gpus = study.finetune_gpus(config, cell.llm, cell.strategy)
        stage2 = study.stage2_for(config, cell.llm, cell.strategy)
        micro, accum = study.batch_split(stage2["global_batch"], stage2["per_device_batch"], gpus)
        rows.append({"llm": cell.llm, "label": model["label"], "template": model["template"],
                     "strategy": cell.strategy, "lr": cell.lr, "gpus": gpus, "per_device_batch": micro,
                     "grad_accum": accum, "global_batch": stage2["global_batch"],
                     "gradient_checkpointing": stage2.get("gradient_checkpointing", True),
                     "zero_stage": stage2.get("zero_stage", config.get("deepspeed", {}).get("zero_stage", 2))})
    return rows


def main(argv=None) -> None:
    text = config_to_csv_main(argv, __doc__, COLUMNS, grid_rows)
    print(f"{text.count(chr(10)) - 1} finetune cells")


if __name__ == "__main__":
    main()
