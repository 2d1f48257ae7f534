# Validation, wildcard constraints and named helpers. Rules hold wiring only; logic lives here or in
# workflow_scripts.
import json
import os
import re

from snakemake.utils import validate

from workflow_scripts import study
from workflow_scripts.report import paths
from workflow_scripts.report.render import RENDERERS
from workflow_scripts.report.tables import TABLE_NAMES


validate(config, "../config/schema.yaml")
study.check_config(config)

RESULTS = config["results_root"]
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


def toy_world_spec():
    """JSON handed to the toy-world generator: its config section and the data paths it must write."""
    return json.dumps(
        {
            # The models' sections are left out: changing a model's budget must not regenerate the world.
            "toy": {k: v for k, v in config["toy_world"].items() if k not in ("llm", "vision")},
            "paths": study.relative_data_paths(config),
            "data_root": config["data_root"],
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


def data_inputs(key=None):
    """Configured data files as inputs: those the toy world makes, or that exist. A missing real input is left
    out here so the DAG still builds and the preflight rule can say what is missing and where to get it."""
    keys = [key] if key else list(study.DATA_KEYS)
    made = set(toy_world_files()) if TOY is not None else set()
    paths = [study.data_path(config, k) for k in keys]
    return [p for p in paths if p is not None and (p in made or (TOY is None and os.path.exists(p)))]


def preflight_config_json():
    """Only what preflight checks: the data paths and POPE's splits. Every job depends on preflight's output,
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
    if "pope" in config["benchmarks"]:
        kept["benchmarks"]["pope"]["splits"] = config["benchmarks"]["pope"]["splits"]
    return json.dumps(kept)


def plan_config():
    """The config keys the study grid depends on (so unrelated edits do not rebuild it)."""
    return json.dumps({k: config[k] for k in ("models", "strategies", "learning_rates", "stage2", "gpus")})


def training_config_json():
    """The config keys training scripts read (so unrelated edits do not retrain)."""
    keys = ("seed", "vision", "connector", "lora", "stage1", "stage2", "deepspeed", "learning_rates",
            "allow_pickle_checkpoints")
    return json.dumps({k: config[k] for k in keys if k in config})


def evaluation_config_json(bench):
    """The config keys an evaluation of ``bench`` reads: data root, that benchmark's settings, vision and
    connector settings, precision, seed. Editing another benchmark, the grid or the ablations reruns nothing."""
    keys = ("data_root", "seed", "vision", "connector", "stage2", "allow_pickle_checkpoints")
    kept = {k: config[k] for k in keys if k in config}
    kept["benchmarks"] = {bench: config["benchmarks"][bench]}
    return json.dumps(kept)


def selection_inputs():
    """The sweep: every finetune cell (but skip_cells) scored on the selection benchmark (what select_lr reads)."""
    bench = config["selection"]["benchmark"]
    return [paths.eval_metrics(RESULTS, c.llm, c.strategy, c.lr, bench) for c in study.swept_cells(config)]


def selected_lrs():
    """llm -> strategy -> chosen LR text (None where no run finished), once checkpoint select_lr has run."""
    with open(checkpoints.select_lr.get().output.json) as f:
        doc = json.load(f)
    return {llm: {s: sel["lr"] for s, sel in by_strategy.items()} for llm, by_strategy in doc["selected"].items()}


def report_inputs(wildcards):
    """Every result Table 1 and Table 2 read: all benchmarks at each chosen LR, the stage-1 and blind control
    rows (blind: the first strategy at its chosen LR), the finetune jobs' efficiency files."""
    chosen = selected_lrs()
    files = [paths.param_table(RESULTS)]
    for llm in config["models"]:
        files += [paths.stage1_metrics(RESULTS, llm, b) for b in config["benchmarks"]]
        blind_lr = chosen[llm][config["strategies"][0]]
        if blind_lr is not None:
            files += [paths.eval_metrics(RESULTS, llm, config["strategies"][0], blind_lr, b, "eval_blind")
                      for b in config["benchmarks"]]
        for strategy, lr in chosen[llm].items():
            if lr is not None:
                files += [paths.eval_metrics(RESULTS, llm, strategy, lr, b) for b in config["benchmarks"]]
                files.append(paths.efficiency(RESULTS, llm, strategy, lr))
    return files


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


def report_config_json():
    """The config keys the report reads (axes, labels, selection)."""
    keys = ("models", "strategies", "learning_rates", "benchmarks", "selection", "ablations", "skip_cells")
    return json.dumps({k: config[k] for k in keys})


def launcher(gpus):
    """How a job starts: on GPUs, lease free ids (workflow_scripts.gpu_lease; a no-op under SLURM), then torchrun
    with one worker per GPU and 4 OpenMP threads each (Snakemake exports OMP_NUM_THREADS=threads for the whole
    job); plain python on CPU."""
    if int(gpus) > 0:
        return (f"python -m workflow_scripts.gpu_lease --gpus {int(gpus)} -- env OMP_NUM_THREADS=4"
                f" torchrun --standalone --nproc-per-node {int(gpus)}")
    return "python"


def optional_flag(flag, value):
    """`--flag value` for the shell, or nothing when value is None."""
    return f"{flag} {value}" if value is not None else ""


def model_input(path):
    """A local model folder as an input file (so a rule that makes it runs first); nothing for a hub id."""
    return [f"{path}/config.json"] if study.is_local_model(config, path) else []


def all_targets():
    """What `snakemake` builds by default."""
    targets = [f"{RESULTS}/plan/study_grid.csv", paths.param_table(RESULTS), CC3M_SUMMARY]
    targets += table_files() + [paths.sweep_figure(RESULTS, llm) for llm in config["models"]]
    if TOY is not None:
        targets += [f"{RESULTS}/toy_models/llm_metrics.json", f"{RESULTS}/toy_models/vision_metrics.json"]
    return targets
