# Validation, wildcard constraints and named helpers. Rules hold wiring only; logic lives here or in
# workflow_scripts.
import json
import os
import re
import sys

from snakemake.utils import validate

from workflow_scripts import code_version, study
from workflow_scripts.fetch import data as fetch_data
from workflow_scripts.report import paths
from workflow_scripts.report.render import RENDERERS
from workflow_scripts.report.tables import TABLE_NAMES


validate(config, "../config/schema.yaml")
study.resolve_shipped_models(config, workflow.basedir)
study.check_config(config)
study.check_results_root(config)

RESULTS = config["results_root"]
for _record in study.remove_orphaned_records(RESULTS):
    print(f"removed {_record}: the file written with it is gone, so its job runs again", file=sys.stderr)
TOY = config["toy_world"]["root"] if "toy_world" in config else None
CC3M_SUMMARY = study.cc3m_summary_path(config)


ABLATIONS = config.get("ablations", {})
# Strategies that train: the sweep's, and those only the connector ablation runs.
ALL_STRATEGIES = list(dict.fromkeys(config["strategies"] + ABLATIONS.get("connector", {}).get("strategies", [])))


wildcard_constraints:
    llm="|".join(re.escape(m) for m in config["models"]),
    strategy="|".join(ALL_STRATEGIES),
    lr="|".join(re.escape(study.lr_text(x)) for x in config["learning_rates"]),
    bench="|".join(config["benchmarks"]),


def canonical_json(obj):
    """JSON with sorted keys, for params that only configure a computation: reordering keys in the YAML file
    must not rerun anything. (Report params keep the config's order: it is the order of rows and columns.)"""
    return json.dumps(obj, sort_keys=True)


def toy_world_spec():
    """JSON handed to the toy-world generator: its config section and the data paths it must write."""
    return canonical_json(
        {
            # The models' sections are left out: changing a model's budget must not regenerate the world.
            "toy": {k: v for k, v in config["toy_world"].items() if k not in ("llm", "vision")},
            "paths": study.relative_data_paths(config),
            "data_root": config["data_root"],
            # The generator's code defines the data: editing it (e.g. the shapes' sizes) regenerates the world.
            "code_sha256": code_version.sources_sha256("workflow_scripts.toyworld.world"),
        }
    )


def toy_world_files():
    """Files the toy world writes that other rules name (the data inputs of the study)."""
    keys = ["cc3m_tsv", "cc3m_subset", "instruct_json", "coco_karpathy_json", "flickr30k_karpathy_json",
            "vqav2_questions", "vqav2_annotations", "vqav2_train_questions", "vqav2_train_annotations"]
    files = [study.data_path(config, k) for k in keys]
    pope = study.data_path(config, "pope_root")
    if pope is not None:
        files += [f"{pope}/coco_pope_{s}.json" for s in config["benchmarks"]["pope"]["splits"]]
    return [f for f in files if f is not None]


def bench_data_inputs(bench):
    """The inputs of one benchmark only (what a calibration run reads: not the training data)."""
    keys = [k for k, parts in study.DATA_KEYS.items() if parts[:2] == ("benchmarks", bench)]
    return [f for k in keys for f in data_inputs(k)]


def data_inputs(key=None):
    """Configured data files as inputs: the fetch receipts of their sources (fetch: configured), else those the
    toy world makes, or that exist. A missing real input is left out here so the DAG still builds and the
    preflight rule can say what is missing and where to get it."""
    keys = [key] if key else list(study.DATA_KEYS)
    if SOURCES:  # fetched: the receipts stand for the files (whose existence changes once they are fetched)
        return [f"{config['data_root']}/fetched/{name}.json" for name, entry in SOURCES.items()
                if set(keys) & set(entry.get("provides", []))]
    made = set(toy_world_files()) if TOY is not None else set()
    paths = [study.data_path(config, k) for k in keys]
    return [p for p in paths if p is not None and (p in made or (TOY is None and os.path.exists(p)))]


def preflight_config_json():
    """Only what preflight checks: the data paths and the benchmarks' sizes. Every job depends on preflight's output,
    so an unrelated config edit here would rerun the whole study."""
    kept = {"data_root": config["data_root"]}
    for parts in study.DATA_KEYS.values():
        node = config
        for part in parts[:-1]:
            node = node.get(part, {})
        if parts[-1] in node:
            target = kept
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = node[parts[-1]]
    # And how large each benchmark must be (preflight refuses an incomplete one unless allow_partial).
    for bench, spec in config["benchmarks"].items():
        kept.setdefault("benchmarks", {}).setdefault(bench, {}).update(
            {k: spec[k] for k in ("splits", "subset_size", "expected", "allow_partial") if k in spec})
    return canonical_json(kept)


def _pick(*keys, **subkeys):
    """The named top-level config keys (those present) and, for ``name=[sub, ...]``, only those sub-keys.
    A rule's params hold exactly what its script reads, so an edit elsewhere in the config reruns nothing."""
    kept = {k: config[k] for k in keys if k in config}
    for name, subs in subkeys.items():
        if name in config:
            kept[name] = {s: config[name][s] for s in subs if s in config[name]}
    return kept


def plan_config():
    """What the study grid reads: the axes and the batch split."""
    return json.dumps(_pick("models", "strategies", "learning_rates", "gpus", "deepspeed",
                            stage2=["global_batch", "per_device_batch", "gradient_checkpointing", "by_cell"]))


def param_table_config():
    """What the efficiency table reads: model shapes, strategies, LoRA, connector, GPUs and the batch shape."""
    return json.dumps(_pick("models", "vision", "connector", "strategies", "lora", "deepspeed", "gpus", "data_root",
                            stage2=["global_batch", "per_device_batch", "model_max_length", "gradient_checkpointing",
                                    "by_cell"], toy_world=["root"]))


def stage1_config_json():
    """The keys stage 1 reads: stage-2 edits (scheduler, batch, grid) must not retrain the connector."""
    return canonical_json(_pick("seed", "vision", "connector", "stage1", "deepspeed", "allow_pickle_checkpoints"))


def finetune_config_json(llm, strategy):
    """The keys a finetune of ``strategy`` on ``llm`` reads, stage2 as that cell trains (``stage2.by_cell``
    applied). The LR grid is not among them (the cell's LR is passed as a value: adding an LR to the grid trains
    only the new cells), nor are LoRA's settings for non-LoRA cells."""
    keys = ["seed", "vision", "connector", "deepspeed", "allow_pickle_checkpoints"]
    picked = _pick(*keys, *(["lora"] if study.strategy_uses_lora(strategy) else []))
    return canonical_json({**picked, "stage2": study.stage2_for(config, llm, strategy)})


def lr_value(lr_text):
    """The configured LR behind a path's LR text (never float() on a path)."""
    return repr(study.lr_from_text(config, lr_text))


def _model_keys(strategy=None):
    """The keys that rebuild a trained model from base + connector + delta: vision and connector settings,
    precision, seed (and LoRA's settings for a LoRA cell)."""
    return _pick("seed", "vision", "connector", "allow_pickle_checkpoints",
                 *(["lora"] if strategy and study.strategy_uses_lora(strategy) else []), stage2=["precision"])


def export_config_json(strategy):
    """What merging a cell into a model folder reads."""
    return canonical_json(_model_keys(strategy))


def evaluation_config_json(bench, strategy=None):
    """The keys an evaluation of ``bench`` reads: the model keys, the data root and that benchmark's settings.
    Editing another benchmark, the grid, the training schedule or the ablations reruns nothing."""
    kept = {**_model_keys(strategy), **_pick("data_root")}
    kept["benchmarks"] = {bench: config["benchmarks"][bench]}
    # greedy reads no sampling setting: editing temperature must not rerun greedy evaluations
    sampled = config["decoding"]["strategy"] == "sample"
    kept["decoding"] = config["decoding"] if sampled else {"strategy": "greedy"}
    return canonical_json(kept)


HALVING = config["selection"]["mode"] == "halving"


def rung_inputs():
    """selection.mode halving: every cell of the sweep (but skip_cells) stopped at the rung, scored on the selection
    benchmark (what select_rung reads)."""
    bench = config["selection"]["benchmark"]
    return [paths.eval_metrics(RESULTS, c.llm, c.strategy, c.lr, bench, "eval_rung") for c in study.swept_cells(config)]


def full_cells():
    """The cells that train to the end: the whole sweep (exact mode), or the LRs the halving rung kept (once
    checkpoint select_rung has run)."""
    if not HALVING:
        return study.swept_cells(config)
    with open(checkpoints.select_rung.get().output.json) as f:
        kept = json.load(f)["kept"]
    return [c for c in study.swept_cells(config) if c.lr in kept[c.llm][c.strategy]]


def selection_inputs():
    """The fully trained cells scored on the selection benchmark (what select_lr reads; in halving mode, with the
    rung's choice)."""
    bench = config["selection"]["benchmark"]
    rung = [paths.rung_selection(RESULTS)] if HALVING else []
    return rung + [paths.eval_metrics(RESULTS, c.llm, c.strategy, c.lr, bench) for c in full_cells()]


def sweep_efficiency_files():
    """efficiency.json of every fully trained cell of the sweep."""
    return [paths.efficiency(RESULTS, c.llm, c.strategy, c.lr) for c in full_cells()]


def selected_lrs():
    """llm -> strategy -> chosen LR text (None where no run finished), once checkpoint select_lr has run."""
    with open(checkpoints.select_lr.get().output.json) as f:
        doc = json.load(f)
    return {llm: {s: sel["lr"] for s, sel in by_strategy.items()} for llm, by_strategy in doc["selected"].items()}


def report_inputs(wildcards):
    """Every result Table 1 and Table 2 read: all benchmarks at each chosen LR, the stage-1, blind and text-priors
    control rows (blind: the first strategy at its chosen LR; text priors: controls.text_priors at theirs), the
    finetune jobs' efficiency files."""
    chosen = selected_lrs()
    files = [paths.param_table(RESULTS)]
    for llm in config["models"]:
        files += [paths.stage1_metrics(RESULTS, llm, b) for b in config["benchmarks"]]
        blind_lr = chosen[llm][config["strategies"][0]]
        if blind_lr is not None:
            files += [paths.eval_metrics(RESULTS, llm, config["strategies"][0], blind_lr, b, "eval_blind")
                      for b in config["benchmarks"]]
        for strategy in config["controls"]["text_priors"]:
            if chosen[llm][strategy] is not None:
                files += [paths.eval_metrics(RESULTS, llm, strategy, chosen[llm][strategy], b, "eval_text_priors")
                          for b in config["benchmarks"]]
        for strategy, lr in chosen[llm].items():
            if lr is not None:
                files += [paths.eval_metrics(RESULTS, llm, strategy, lr, b) for b in config["benchmarks"]]
                files.append(paths.efficiency(RESULTS, llm, strategy, lr))
    return files + calibration_inputs()  # the reference rows below the study's


def chosen_efficiency_files(llm):
    """efficiency.json (with its loss curve) of every strategy's run at its chosen LR, once select_lr has run."""
    return [paths.efficiency(RESULTS, llm, s, lr) for s, lr in selected_lrs()[llm].items() if lr is not None]


def ablation_inputs(wildcards):
    """The evaluations an ablation table reads, each at the LR chosen for the ablation's base strategy."""
    chosen, spec = selected_lrs(), ABLATIONS[wildcards.ablation]
    files = []
    for llm in config["models"]:
        if wildcards.ablation == "data_type":
            lr = chosen[llm][spec["strategy"]]
            files += [paths.data_subset_metrics(RESULTS, llm, spec["strategy"], subset, lr, b)
                      for subset in spec["subsets"] for b in spec["benchmarks"] if lr is not None]
        else:
            lr = chosen[llm][spec["base"]]
            files += [paths.eval_metrics(RESULTS, llm, s, lr, b) for s in spec["strategies"]
                      for b in spec["benchmarks"] if lr is not None]
    return files


def instruct_type_files():
    """type -> path of LLaVA's per-type instruct files (ablations.data_type.type_files), if configured."""
    files = ABLATIONS.get("data_type", {}).get("type_files", {})
    return {name: os.path.join(config["data_root"], rel) for name, rel in files.items()}


def instruct_type_inputs():
    """The per-type files the instruct_by_type rule joins, or their fetch receipts."""
    if not SOURCES:
        return list(instruct_type_files().values())
    return [f for name in instruct_type_files() for f in data_inputs(f"ablations.data_type.type_files.{name}")]


def data_subset_pool():
    """The records the data-type ablation draws from: LLaVA's per-type files, joined and tagged by rule
    instruct_by_type, when `type_files` is configured; else the instruct json (its records carry `type`)."""
    if ABLATIONS.get("data_type", {}).get("type_files"):
        return f"{RESULTS}/ablations/data_type/instruct_by_type.json"
    return data_inputs("instruct_json")


def subset_args(subset):
    """Record selection of a data-type ablation run: one type's `subset_size` records, or a random sample."""
    spec = ABLATIONS["data_type"]
    types = "" if subset == "random" else f"--types {subset}"
    return f"{types} --count {spec['subset_size']}"


def ablation_tables():
    """`snakemake ablations`: one table per configured ablation, in every format."""
    return [paths.table(RESULTS, f"ablation_{name}", ext) for name in ABLATIONS for ext in RENDERERS]


def table_files():
    """Every table in every format."""
    return [paths.table(RESULTS, name, ext) for name in TABLE_NAMES for ext in RENDERERS]


def results_root_of(path):
    """The results root of a file two levels below it (results/tables/x.csv, results/selection/best_lr.json)."""
    return os.path.dirname(os.path.dirname(path))


def selection_config_json():
    """What LR selection reads: the grid, the selection metric, the skipped cells."""
    return json.dumps(_pick("models", "strategies", "learning_rates", "selection", "skip_cells"))


def report_config_json():
    """What the tables and figures read: the grid, the benchmarks' names and scoring choices, selection, the
    control rows and what stage 1 trained (the stage-1 row's label)."""
    kept = _pick("models", "strategies", "learning_rates", "selection", "skip_cells", "controls")
    kept["stage1"] = {"trains": config["stage1"]["trains"]}
    kept["benchmarks"] = {b: {k: v for k, v in spec.items() if k in study.REPORT_BENCHMARK_KEYS}
                          for b, spec in config["benchmarks"].items()}
    if REFERENCES:  # Table 1's calibration rows (absent: the params of configs without any are unchanged)
        kept["reference_models"] = {r: {k: spec[k] for k in ("label", "published")} for r, spec in REFERENCES.items()}
    return json.dumps(kept)


def ablation_config_json():
    """What an ablation table reads: the report's keys and the ablations."""
    return json.dumps({**json.loads(report_config_json()), **_pick("ablations")})


def report_when_made(pattern, values=None, **report_args):
    """``report(pattern)`` once every file it stands for exists (``values``: wildcard -> its values; ``{llm}``
    ranges over the config's LLMs by default), else the bare path. Snakemake's --report stops at the first
    reported file that does not exist (snakemake/snakemake#1981): a study still running then gets a report of
    what is finished instead of a crash."""
    values = values or ({"llm": list(config["models"])} if "{llm}" in pattern else {})
    made = [pattern]
    for name, options in values.items():
        made = [m.replace(f"{{{name}}}", str(v)) for m in made for v in options]
    return report(pattern, **report_args) if made and all(os.path.exists(f) for f in made) else pattern


def optional_flag(flag, value):
    """`--flag value` for the shell, or nothing when value is None."""
    return f"{flag} {value}" if value is not None else ""


def all_targets():
    """What `snakemake` builds by default."""
    targets = [f"{RESULTS}/plan/study_grid.csv", paths.param_table(RESULTS), CC3M_SUMMARY]
    targets += table_files() + [f(RESULTS, llm) for llm in config["models"]
                                for f in (paths.sweep_figure, paths.loss_figure)]
    if REFERENCES:
        targets += paths.calibration_files(RESULTS)
    return targets + toy_models_built_here()


def toy_models_built_here():
    """The toy base models' training metrics, for each base model this config has its toy world train (none
    where it reads the ones shipped in toy_models/)."""
    if TOY is None:
        return []
    made = {config["vision"]["path"]: "vision"} | {m["path"]: "llm" for m in config["models"].values()}
    return [f"{RESULTS}/toy_models/{kind}_metrics.json" for path, kind in made.items()
            if os.path.normpath(path) == os.path.normpath(f"{TOY}/models/{kind}")]
