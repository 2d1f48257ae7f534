# Validation, wildcard constraints and named helpers. Rules hold wiring only; logic lives here or in
# workflow_scripts.
import json
import os
import re

from snakemake.utils import validate

from workflow_scripts import study


validate(config, "../config/schema.yaml")
study.check_config(config)

RESULTS = config["results_root"]
TOY = config["toy_world"]["root"] if "toy_world" in config else None
CC3M_SUMMARY = study.cc3m_summary_path(config)


wildcard_constraints:
    llm="|".join(re.escape(m) for m in config["models"]),
    strategy="|".join(config["strategies"]),
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


def plan_config():
    """The config keys the study grid depends on (so unrelated edits do not rebuild it)."""
    return json.dumps({k: config[k] for k in ("models", "strategies", "learning_rates", "stage2", "gpus")})


def training_config_json():
    """The config keys training scripts read (so unrelated edits do not retrain)."""
    keys = ("seed", "vision", "connector", "lora", "stage1", "stage2", "deepspeed", "learning_rates")
    return json.dumps({k: config[k] for k in keys if k in config})


def evaluation_config_json():
    """The config keys evaluation reads: data paths, benchmark settings, model settings, seed."""
    return json.dumps({k: v for k, v in config.items() if k not in ("toy_world", "models", "strategies")})


def control_cell():
    """(strategy, lr) whose model the blind control runs: the first strategy at the first LR of the grid."""
    return config["strategies"][0], study.lr_text(config["learning_rates"][0])


def evaluation_targets():
    """The selection benchmark for every finetune cell, and the two control rows per LLM on it."""
    bench = config["selection"]["benchmark"]
    strategy, lr = control_cell()
    targets = [f"{RESULTS}/eval/{c.llm}/{c.strategy}/{c.lr}/{bench}/metrics.json" for c in study.finetune_cells(config)]
    for llm in config["models"]:
        targets += [f"{RESULTS}/eval_stage1/{llm}/{bench}/metrics.json",
                    f"{RESULTS}/eval_blind/{llm}/{strategy}/{lr}/{bench}/metrics.json"]
    return targets


def launcher(gpus):
    """How a training job starts: torchrun with one worker per leased GPU, plain python on CPU."""
    if int(gpus) > 0:
        return f"OMP_NUM_THREADS=4 torchrun --standalone --nproc-per-node {int(gpus)}"
    return "python"


def finetune_targets():
    """Every finetune cell of the sweep (its efficiency.json, written last)."""
    return [f"{RESULTS}/finetune/{c.llm}/{c.strategy}/{c.lr}/efficiency.json" for c in study.finetune_cells(config)]


def optional_flag(flag, value):
    """`--flag value` for the shell, or nothing when value is None."""
    return f"{flag} {value}" if value is not None else ""


def model_input(path):
    """A local model folder as an input file (so a rule that makes it runs first); nothing for a hub id."""
    return [f"{path}/config.json"] if study.is_local_model(config, path) else []


def all_targets():
    """What `snakemake` builds by default."""
    targets = [f"{RESULTS}/plan/study_grid.csv", f"{RESULTS}/efficiency/param_table.csv", CC3M_SUMMARY]
    targets += finetune_targets() + evaluation_targets()
    if TOY is not None:
        targets += [f"{RESULTS}/toy_models/llm_metrics.json", f"{RESULTS}/toy_models/vision_metrics.json"]
    return targets
