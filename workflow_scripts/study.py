"""The study's axes, derived from the config alone: LLMs x strategies x learning rates, the per-job batch
split, canonical LR text for paths, and where each input lives. Rules (through ``rules/common.smk``) and
scripts both use these helpers, so the grid is defined once.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

# Keys used by the toy world and the preflight checks for every configured data path.
DATA_KEYS = {
    "cc3m_tsv": ("data", "cc3m_tsv"), "cc3m_subset": ("data", "cc3m_subset"),
    "instruct_json": ("data", "instruct_json"), "instruct_images": ("data", "instruct_images"),
    "coco_karpathy_json": ("benchmarks", "coco", "karpathy_json"), "coco_images": ("benchmarks", "coco", "images"),
    "flickr30k_karpathy_json": ("benchmarks", "flickr30k", "karpathy_json"),
    "flickr30k_images": ("benchmarks", "flickr30k", "images"),
    "vqav2_questions": ("benchmarks", "vqav2", "questions"),
    "vqav2_annotations": ("benchmarks", "vqav2", "annotations"),
    "vqav2_train_questions": ("benchmarks", "vqav2", "train_questions"),
    "vqav2_train_annotations": ("benchmarks", "vqav2", "train_annotations"),
    "vqav2_images": ("benchmarks", "vqav2", "images"),
    "mme_root": ("benchmarks", "mme", "root"),
    "pope_root": ("benchmarks", "pope", "root"), "pope_images": ("benchmarks", "pope", "images"),
}


# Benchmark settings the report reads (how a number is summed or how much of a benchmark it covers); every
# other benchmark key (prompts, paths, decoding) only reaches the evaluation of that benchmark.
REPORT_BENCHMARK_KEYS = ("allow_partial",)


# What a complete official benchmark holds: MME questions, POPE questions per split, Karpathy test images.
# VQAv2's evaluated set is the configured subset. A config (the toy world's) sets `expected` for its own data.
OFFICIAL_SIZES = {"mme": 2374, "pope": 3000, "coco": 5000, "flickr30k": 1000}


def expected_size(bench: str, spec: dict) -> int:
    """Questions (MME, VQAv2 subset, POPE per split) or test images (captioning) a complete benchmark holds."""
    if "expected" in spec:
        return int(spec["expected"])
    return int(spec["subset_size"]) if bench == "vqav2" else OFFICIAL_SIZES[bench]


def strategy_uses_lora(name: str) -> bool:
    """Whether a strategy of the table adds LoRA adapters (its cells then depend on the ``lora`` settings)."""
    from workflow_scripts.model.strategies import get_strategy

    return get_strategy(name).lora


def lr_text(lr: float) -> str:
    """Canonical text of a learning rate in paths and wildcards: ``f"{lr:g}"`` (2e-05, 0.001)."""
    return f"{lr:g}"


def lr_from_text(config: dict, text: str) -> float:
    """Map a path's LR text back to the configured value (never ``float()`` on a path)."""
    for lr in config["learning_rates"]:
        if lr_text(lr) == text:
            return lr
    raise ValueError(f"learning rate {text!r} is not in the config's learning_rates "
                     f"{[lr_text(x) for x in config['learning_rates']]}")


@dataclass(frozen=True)
class Cell:
    """One finetuning job of the sweep."""

    llm: str
    strategy: str
    lr: str  # canonical text


def finetune_cells(config: dict) -> list[Cell]:
    """Every LLM x strategy x LR of the sweep, in config order."""
    return [Cell(llm, s, lr_text(lr)) for llm in config["models"] for s in config["strategies"]
            for lr in config["learning_rates"]]


def swept_cells(config: dict) -> list[Cell]:
    """The cells whose runs the LR selection and the tables wait for: the grid minus ``skip_cells``."""
    skipped = set(config.get("skip_cells", []))
    return [c for c in finetune_cells(config) if f"{c.llm}/{c.strategy}/{c.lr}" not in skipped]


def finetune_gpus(config: dict, llm: str, strategy: str | None = None) -> int:
    """GPUs a finetune job asks for: ``gpus.finetune[<size class>]``, either one count or a mapping of
    strategy -> count with a ``default`` (a LayerNorm job at 7B fits one GPU; full finetuning at 13B needs 4).
    1 when not configured."""
    by_size = config.get("gpus", {}).get("finetune", {}).get(config["models"][llm]["size"], 1)
    if isinstance(by_size, dict):
        return int(by_size.get(strategy, by_size.get("default", 1)))
    return int(by_size)


def stage2_for(config: dict, llm: str, strategy: str) -> dict:
    """The stage-2 settings of one finetune: ``stage2`` with ``stage2.by_cell[<size class>][<strategy>]``
    applied (gradient checkpointing and the per-device batch, chosen by memory need; the global batch, and so the
    optimisation, stays the same). ``by_cell`` itself is left out, so a cell it does not name sees exactly the
    settings it saw before the key existed."""
    stage = {k: v for k, v in config["stage2"].items() if k != "by_cell"}
    size = config["models"][llm]["size"]
    stage.update(config["stage2"].get("by_cell", {}).get(size, {}).get(strategy, {}))
    return stage


def batch_split(global_batch: int, per_device_batch: int, gpus: int) -> tuple[int, int]:
    """(per-device batch, gradient-accumulation steps) that keep the global batch fixed on ``gpus`` devices.

    The per-device batch shrinks to the largest divisor that fits when the configured one does not divide.
    """
    devices = max(gpus, 1)
    if global_batch % devices:
        raise ValueError(f"global_batch {global_batch} is not divisible by {devices} GPUs")
    per_gpu = global_batch // devices
    micro = max(d for d in range(1, min(per_device_batch, per_gpu) + 1) if per_gpu % d == 0)
    return micro, per_gpu // micro


def data_path(config: dict, key: str) -> str | None:
    """Absolute-or-workdir-relative path of a configured input (a ``DATA_KEYS`` name, or a dotted config path
    such as ``ablations.data_type.type_files.detail``), or None when unset."""
    node = config
    for part in DATA_KEYS.get(key) or key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return os.path.join(config["data_root"], node)


def relative_data_paths(config: dict) -> dict[str, str | None]:
    """Every configured input path relative to the data root (what the toy world writes)."""
    out = {}
    for key in DATA_KEYS:
        full = data_path(config, key)
        out[key] = None if full is None else os.path.relpath(full, config["data_root"])
    return out


def is_local_model(config: dict, path: str) -> bool:
    """True for a model given as a local directory (rather than a hub id): it exists, is absolute or
    dot-relative, or lies under the data root or the toy world (where a rule will make it)."""
    roots = [config["data_root"]] + ([config["toy_world"]["root"]] if "toy_world" in config else [])
    return (os.path.exists(path) or os.path.isabs(path) or path.startswith(".")
            or any(_inside(path, r) for r in roots))


def resolve_shipped_models(config: dict, repository: str) -> None:
    """A model path relative to the repository (the demo's toy_models/) where the working directory has no such
    folder: made absolute, so that a run from another directory (``--directory``) reads the shipped models."""
    for spec in [config["vision"], *config["models"].values()]:
        path = spec["path"]
        if made_by_toy_world(config, path):  # made by this run's toy rules, never another folder's copy
            continue
        shipped = os.path.join(repository, path)
        if not (os.path.isabs(path) or os.path.exists(path)) and os.path.isfile(os.path.join(shipped, "config.json")):
            spec["path"] = shipped


MODEL_RECEIPT = "fetched.json"


def model_dir(config: dict, spec: dict) -> str:
    """The folder a job loads a model from (``spec``: a ``models:`` entry or ``vision:``). A hub id with a
    ``revision`` is fetched to ``data_root/models/<org>/<name>``; anything else is a local folder as given."""
    if spec.get("revision"):
        return os.path.join(config["data_root"], "models", spec["path"])
    return spec["path"]


def fetched_models(config: dict) -> dict[str, str]:
    """{hub id: revision} of every model the fetch stage brings in; raises ConfigError when one id is pinned to
    two revisions (they would share a folder)."""
    out: dict[str, str] = {}
    specs = [(f"models.{m}", s) for m, s in config["models"].items()] + [("vision", config["vision"])] + \
        [(f"reference_models.{r}", s) for r, s in config.get("reference_models", {}).items()]
    for key, spec in specs:
        if spec.get("revision"):
            if out.setdefault(spec["path"], spec["revision"]) != spec["revision"]:
                raise ConfigError(f"{key}.revision: {spec['path']} is pinned to two revisions in this config")
    return out


def made_by_toy_world(config: dict, path: str) -> bool:
    """True for a path the toy-world rules create (toy base models live under its root)."""
    toy = config.get("toy_world")
    return toy is not None and _inside(path, toy["root"])


class ConfigError(ValueError):
    """A config that the schema accepts but that cannot run; the message names the key."""


def check_config(config: dict) -> None:
    """Cross-key checks the JSON schema cannot express; raises ConfigError naming the offending key."""
    texts = [lr_text(lr) for lr in config["learning_rates"]]
    if len(set(texts)) != len(texts):
        raise ConfigError(f"learning_rates: two values print the same ({texts}); paths could not tell them apart")
    selection = config.get("selection", {}).get("benchmark", "flickr30k")
    if selection not in config["benchmarks"]:
        raise ConfigError(f"selection.benchmark: {selection!r} is not configured under benchmarks")
    for stage in ("stage1", "stage2"):
        gpus = config.get("gpus", {}).get("pretrain", 1) if stage == "stage1" else None
        for llm in config["models"]:
            for strategy in config["strategies"]:
                n = gpus if gpus is not None else finetune_gpus(config, llm, strategy)
                settings = config[stage] if stage == "stage1" else stage2_for(config, llm, strategy)
                try:
                    batch_split(settings["global_batch"], settings["per_device_batch"], n)
                except ValueError as e:
                    raise ConfigError(f"{stage}.global_batch: {e} (models.{llm}, strategy {strategy})") from None
    sizes = {spec["size"] for spec in config["models"].values()}
    for size in config["stage2"].get("by_cell", {}):  # strategy names are checked by the schema
        if size not in sizes:
            raise ConfigError(f"stage2.by_cell.{size}: no model has size {size!r} (sizes: {sorted(sizes)})")
    fetched_models(config)
    for key, spec in [(f"models.{m}", spec) for m, spec in config["models"].items()] + \
            [("vision", config["vision"])]:
        path = spec["path"]
        if spec.get("revision"):
            if not re.fullmatch(r"[\w.-]+/[\w.-]+", path):
                raise ConfigError(f"{key}.path: {path!r} has a revision, so it must be a hub id (org/name)")
        elif is_local_model(config, path):
            if not os.path.exists(path) and not made_by_toy_world(config, path):
                raise ConfigError(f"{key}.path: {path!r} does not exist (a local folder; a hub id looks like "
                                  "org/name)")
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", path):
            raise ConfigError(f"{key}: hub id {path!r} without a revision: pin the commit to fetch (revision: "
                              f"<40-hex commit hash>, from https://huggingface.co/{path}/commits/main); jobs never "
                              "reach the hub")
    cells = {f"{c.llm}/{c.strategy}/{c.lr}" for c in finetune_cells(config)}
    check_references(config, cells)
    unknown = [c for c in config.get("skip_cells", []) if c not in cells]
    if unknown:
        raise ConfigError(f"skip_cells: {unknown} are not cells of the sweep (llm/strategy/lr as in paths)")
    if config.get("connector", {}).get("image_start_end") and \
            "embeddings" not in config.get("stage1", {}).get("trains", ["connector"]):
        raise ConfigError("connector.image_start_end: the new <im_start>/<im_end> embeddings would never train before "
                          "stage 2; add embeddings to stage1.trains (as LLaVA's stage 1 does with them)")
    sel = config.get("selection", {})
    if sel.get("mode") == "halving" and sel.get("halving", {}).get("keep", 2) >= len(config["learning_rates"]):
        raise ConfigError(f"selection.halving.keep: {sel['halving']['keep']} keeps every one of the "
                          f"{len(config['learning_rates'])} learning rates, so the rung saves nothing: lower it, "
                          "or use selection.mode exact")
    unknown = [s for s in config.get("controls", {}).get("text_priors", []) if s not in config["strategies"]]
    if unknown:
        raise ConfigError(f"controls.text_priors: {unknown} are not in strategies (the control runs at the "
                          "strategy's chosen LR)")
    ablations = config.get("ablations", {})
    for key, strategy in (("ablations.data_type.strategy", ablations.get("data_type", {}).get("strategy")),
                          ("ablations.connector.base", ablations.get("connector", {}).get("base"))):
        if strategy is not None and strategy not in config["strategies"]:
            raise ConfigError(f"{key}: {strategy!r} is not in strategies (the ablation runs at its chosen LR)")
    for name, spec in ablations.items():
        unknown = [b for b in spec.get("benchmarks", []) if b not in config["benchmarks"]]
        if unknown:
            raise ConfigError(f"ablations.{name}.benchmarks: {unknown} not configured under benchmarks")
    toy = config.get("toy_world")
    if toy is not None and toy["image_size"] % toy["vision"].get("patch_size", 1):
        raise ConfigError("toy_world.vision.patch_size: must divide toy_world.image_size")
    if toy is not None:
        # The toy world writes only under its own root: two configs with different roots never share a file.
        if not _inside(config["data_root"], toy["root"]):
            raise ConfigError(f"data_root: {config['data_root']!r} must lie inside toy_world.root {toy['root']!r} "
                              "(the generated world writes only there); give each toy config its own root")
        for key, path in [(f"models.{m}.path", spec["path"]) for m, spec in config["models"].items()] + \
                [("vision.path", config["vision"]["path"])]:
            if not made_by_toy_world(config, path) and not os.path.isfile(os.path.join(path, "config.json")):
                raise ConfigError(f"{key}: {path!r} is neither under toy_world.root {toy['root']!r}, where this "
                                  "config's toy models are made (another config's would be shared), nor a model "
                                  "folder shipped with the repository (toy_models/)")


def check_references(config: dict, cells: set[str]) -> None:
    """reference_models: one model each (a path, or the study's export of a cell), one published value per
    benchmark (a number, or a cell's own score), benchmarks that are configured."""
    for name, ref in config.get("reference_models", {}).items():
        key = f"reference_models.{name}"
        if ("path" in ref) == ("export_of" in ref):
            raise ConfigError(f"{key}: give either path (a released checkpoint) or export_of (a cell, llm/strategy/lr)")
        if ref.get("export_of") is not None and ref["export_of"] not in cells:
            raise ConfigError(f"{key}.export_of: {ref['export_of']!r} is not a cell of the sweep (llm/strategy/lr)")
        if "path" in ref and not ref.get("revision") and not is_local_model(config, ref["path"]):
            raise ConfigError(f"{key}: hub id {ref['path']!r} without a revision (the fetch stage needs the commit)")
        for bench, spec in ref["published"].items():
            if bench not in config["benchmarks"]:
                raise ConfigError(f"{key}.published.{bench}: not configured under benchmarks")
            if ("value" in spec) == ("same_as_cell" in spec):
                raise ConfigError(f"{key}.published.{bench}: give either value (with its source) or same_as_cell")
            if spec.get("same_as_cell") is not None and spec["same_as_cell"] not in cells:
                raise ConfigError(f"{key}.published.{bench}.same_as_cell: {spec['same_as_cell']!r} is not a cell")


def _inside(path: str, root: str) -> bool:
    """Whether ``path`` lies below the folder ``root`` (by path text; nothing needs to exist)."""
    return os.path.normpath(path).startswith(os.path.normpath(root) + os.sep)


def check_results_root(config: dict) -> None:
    """One results root holds one study's data: refuse a results root whose preflight recorded another data
    root (two configs writing one results folder would invalidate, and silently mix, each other's results)."""
    stamp = os.path.join(config["results_root"], "preflight", "inputs.json")
    try:
        with open(stamp) as f:
            recorded = json.load(f).get("data_root")
    except (OSError, ValueError):
        return
    if recorded is not None and os.path.normpath(recorded) != os.path.normpath(config["data_root"]):
        raise ConfigError(f"results_root: {config['results_root']!r} holds results of a run on data_root "
                          f"{recorded!r}, not {config['data_root']!r}; give this config its own results_root")


def shards_dir(config: dict) -> str:
    """Folder of the CC3M webdataset shards (written by img2dataset, not an input)."""
    return os.path.join(config["data_root"], config["data"]["cc3m_shards"])


def cc3m_summary_path(config: dict) -> str:
    """Summary json written after the CC3M download (beside the shard folder; marks it complete)."""
    return os.path.normpath(shards_dir(config)) + "_summary.json"


def shards_of_summary(summary: str) -> str:
    return summary[: -len("_summary.json")]


# Outputs written together by one job: (record glob under the results root, companion beside it). A record
# whose companion is gone describes something that no longer exists. Snakemake does not rerun a job for an
# output that nobody requests, so asking for the record alone would keep the stale record: it is removed.
OUTPUT_PAIRS = (
    ("finetune/*/*/*/efficiency.json", "trainable_delta.safetensors"),
    ("ablations/data_type/*/*/*/efficiency.json", "trainable_delta.safetensors"),
    ("pretrain/*/metrics.json", "connector.safetensors"),
    ("eval*/*/*/*/*/metrics.json", "predictions.jsonl"),
    ("eval_stage1/*/*/metrics.json", "predictions.jsonl"),
    ("ablations/data_type/*/*/*/eval/*/metrics.json", "predictions.jsonl"),
)


def remove_orphaned_records(results_root: str) -> list[str]:
    """Delete every record of ``OUTPUT_PAIRS`` whose companion file is missing, so its job reruns; returns them."""
    import glob

    removed = []
    for pattern, companion in OUTPUT_PAIRS:
        for record in glob.glob(os.path.join(results_root, pattern)):
            if not os.path.exists(os.path.join(os.path.dirname(record), companion)):
                if not os.access(record, os.W_OK):
                    os.chmod(record, 0o644)
                os.remove(record)
                removed.append(record)
    return removed
