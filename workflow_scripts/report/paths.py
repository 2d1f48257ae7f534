"""Where each result file of the study lives under the results root. The rules' target helpers and the
report scripts both use these, so the layout is written down once."""

from __future__ import annotations

import os

# Evaluation sets: which training run's model is evaluated, and whether its test images are blank.
#   eval              the cell's model, real images
#   eval_blind        the same model, blank images (what it answers from the text alone)
#   eval_text_priors  the cell trained on blank images, tested on blank images (what the instruct text teaches)
#   eval_rung         the cell's run stopped at the halving rung (selection.mode: halving)
EVALSETS = {"eval": ("finetune", False), "eval_blind": ("finetune", True),
            "eval_text_priors": ("finetune_text_priors", True), "eval_rung": ("finetune_rung", False)}
TRAINSETS = {"finetune": False, "finetune_text_priors": True, "finetune_rung": False}  # -> trained on blank images
RUNG = "finetune_rung"


def checkpoint_trainset(trainset: str) -> str:
    """Whose checkpoint folder a training run uses: the rung is the first part of the cell's own run (the same
    run identity), so the cell's full run resumes from where the rung stopped."""
    return "finetune" if trainset == RUNG else trainset


def rung_selection(results: str) -> str:
    """The halving rung's scores and the LRs it lets continue (selection.mode: halving)."""
    return os.path.join(results, "selection", "halving_rung.json")


def eval_metrics(results: str, llm: str, strategy: str, lr: str, bench: str, evalset: str = "eval") -> str:
    """metrics.json of an evaluation of a cell's model under one of ``EVALSETS``."""
    return os.path.join(results, evalset, llm, strategy, lr, bench, "metrics.json")


def delta(results: str, llm: str, strategy: str, lr: str, trainset: str = "finetune") -> str:
    """The trainable delta a finetune job writes (``trainset`` one of ``TRAINSETS``)."""
    return os.path.join(results, trainset, llm, strategy, lr, "trainable_delta.safetensors")


def stage1_metrics(results: str, llm: str, bench: str) -> str:
    """metrics.json of the stage-1-only control (base LLM + trained connector)."""
    return os.path.join(results, "eval_stage1", llm, bench, "metrics.json")


def efficiency(results: str, llm: str, strategy: str, lr: str) -> str:
    """efficiency.json a finetune job writes last (step time, peak memory, trainable parameters)."""
    return os.path.join(results, "finetune", llm, strategy, lr, "efficiency.json")


def data_subset_run(results: str, llm: str, subset: str, lr: str) -> str:
    """Folder of a data-type ablation run (the strategy trained on one subset of the instruct data)."""
    return os.path.join(results, "ablations", "data_type", llm, subset, lr)


def data_subset_metrics(results: str, llm: str, strategy: str, subset: str, lr: str, bench: str) -> str:
    """metrics.json of a data-type ablation run; the ``full`` subset is the main sweep's run itself."""
    if subset == "full":
        return eval_metrics(results, llm, strategy, lr, bench)
    return os.path.join(data_subset_run(results, llm, subset, lr), "eval", bench, "metrics.json")


def selection(results: str) -> str:
    return os.path.join(results, "selection", "best_lr.json")


def param_table(results: str) -> str:
    return os.path.join(results, "efficiency", "param_table.csv")


def table(results: str, name: str, ext: str) -> str:
    return os.path.join(results, "tables", f"{name}.{ext}")


def sweep_figure(results: str, llm: str) -> str:
    return os.path.join(results, "figures", f"lr_sweep_{llm}.png")


def loss_figure(results: str, llm: str) -> str:
    return os.path.join(results, "figures", f"loss_{llm}.png")


def read_json(path: str) -> dict | None:
    """A result file's content, or None when the run that makes it has not finished (or failed)."""
    import json

    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_selection(results: str) -> dict:
    """The LR selection document; a clear stop when select_lr has not run."""
    doc = read_json(selection(results))
    if doc is None:
        raise SystemExit(f"no LR selection at {selection(results)}: run the select_lr rule first")
    return doc


def reference_metrics(results: str, reference: str, bench: str) -> str:
    """metrics.json of a released (reference) checkpoint scored by the study's evaluation (calibration)."""
    return os.path.join(results, "eval_reference", reference, bench, "metrics.json")


def calibration_files(results: str) -> list[str]:
    """The calibration table (every rendering) and its rows as JSON."""
    return [os.path.join(results, "tables", f"calibration.{ext}") for ext in ("md", "csv", "tex", "html", "json")]
