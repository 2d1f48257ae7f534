"""The config schema and the cross-key checks: good configs pass, bad ones fail naming the key."""

import subprocess
import sys

import jsonschema
import pytest
import yaml
from conftest import REPO, load_config, subprocess_env, validated

from workflow_scripts import study


@pytest.mark.parametrize("name", ["config.yaml", "config/demo.yaml", "config/smoke.yaml"])
def test_shipped_configs_are_valid(name):
    config = load_config(name)
    study.check_config(config)
    assert config["stage2"]["warmup_ratio"] == 0.03  # a default filled in (or set) everywhere


def test_paper_config_is_the_paper_grid():
    config = load_config("config.yaml")
    assert len(config["models"]) == 6
    assert config["strategies"] == ["finetune", "lora", "attn_qv", "attn_mlp", "layernorm", "layernorm_simp"]
    assert len(config["learning_rates"]) == 11
    assert len(study.finetune_cells(config)) == 6 * 6 * 11
    assert {m["template"] for m in config["models"].values()} == {"vicuna_v1", "llama_2"}
    assert config["lora"] == {"r": 64, "alpha": 16, "dropout": 0.05}
    # the paper's protocol: every LR trained to the end (halving is the opt-in cheaper mode)
    assert config["selection"] == {"benchmark": "flickr30k", "metric": "CIDEr", "mode": "exact",
                                   "halving": {"fraction": 0.15, "keep": 2}}
    assert set(config["benchmarks"]) == {"mme", "vqav2", "coco", "flickr30k", "pope"}


def _bad(mutate):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    mutate(config)
    return config


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.__setitem__("learning_rates", [1.0e-4, "1e-4"]), "learning_rates"),  # YAML reads 1e-4 as str
    (lambda c: c["strategies"].append("prefix_tuning"), "strategies"),
    (lambda c: c["stage2"].__setitem__("global_batch", -8), "global_batch"),
    (lambda c: c.pop("models"), "models"),
    (lambda c: c["models"]["vicuna-7b"].__setitem__("template", "chatml"), "template"),
    (lambda c: c.__setitem__("typo_key", 1), "typo_key"),
    (lambda c: c["benchmarks"].__setitem__("gqa", {"root": "gqa"}), "gqa"),
    (lambda c: c["stage1"].__setitem__("per_device_batch", -4), "per_device_batch"),
    (lambda c: c.__setitem__("learning_rates", ["2e-5"]), "learning_rates"),
    (lambda c: c["ablations"]["connector"]["strategies"].append("bitfit"), "strategies"),
    (lambda c: c["stage2"]["by_cell"]["7b"].__setitem__("layernrom", {"gradient_checkpointing": False}),
     "layernrom"),
    (lambda c: c["stage2"]["by_cell"]["7b"]["lora"].__setitem__("lr_scheduler", "linear"), "lr_scheduler"),
    (lambda c: c["stage2"]["by_cell"]["13b"]["finetune"].__setitem__("zero_stage", 1), "zero_stage"),
])
def test_schema_rejects_bad_config_naming_the_key(mutate, key):
    with pytest.raises(jsonschema.ValidationError) as err:
        validated(_bad(mutate))
    assert key in str(err.value)


def test_yaml_short_exponent_is_a_string_and_rejected():
    assert yaml.safe_load("lr: 1e-4")["lr"] == "1e-4"
    assert yaml.safe_load("lr: 1.0e-4")["lr"] == 1.0e-4


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.__setitem__("learning_rates", [1.0e-4, 1.00000001e-4]), "learning_rates"),
    (lambda c: c["selection"].__setitem__("benchmark", "gqa"), "selection.benchmark"),
    (lambda c: c["gpus"]["finetune"].__setitem__("13b", 3), "stage2.global_batch"),
    (lambda c: c["models"]["vicuna-7b"].__setitem__("path", "/nonexistent/vicuna-7b"), "models.vicuna-7b.path"),
    (lambda c: c["vision"].__setitem__("path", "./models/clip-missing"), "vision.path"),
    (lambda c: c["ablations"]["connector"].__setitem__("base", "connector_only"), "ablations.connector.base"),
    (lambda c: c["ablations"]["data_type"].__setitem__("benchmarks", ["pope", "gqa"]),
     "ablations.data_type.benchmarks"),
    (lambda c: c.__setitem__("skip_cells", ["vicuna-7b/finetune/0.003"]), "skip_cells"),  # 3e-3 is not swept
    (lambda c: c["selection"].update(mode="halving", halving={"fraction": 0.2, "keep": 11}),
     "selection.halving.keep"),  # keeps all 11 LRs: the rung would save nothing
    (lambda c: c["stage2"]["by_cell"].__setitem__("70b", {"lora": {"per_device_batch": 1}}), "stage2.by_cell.70b"),
])
def test_cross_key_checks_name_the_key(mutate, key):
    config = validated(yaml.safe_load((REPO / "config.yaml").read_text()))
    mutate(config)
    with pytest.raises(study.ConfigError, match=key.replace(".", r"\.")):
        study.check_config(config)


def test_snakemake_rejects_invalid_config_at_parse_time(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["stage2"]["per_device_batch"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--configfile",
                           str(path), "--directory", str(tmp_path)], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert proc.returncode != 0
    assert "per_device_batch" in proc.stdout + proc.stderr


def test_demo_reads_the_shipped_base_models_and_make_toy_models_trains_them(tmp_path):
    """The demo reads its base models from toy_models/ (no toy_llm/toy_vision job in its DAG, from any working
    directory); config/demo_base_models.yaml, laid over it as `make toy-models` does, trains them with the toy
    rules instead."""
    from snakemake.utils import update_config

    demo = load_config("config/demo.yaml")
    for path in (demo["models"]["toy-vicuna"]["path"], demo["vision"]["path"]):
        assert path.startswith("toy_models/") and (REPO / path / "config.json").is_file()
        assert (REPO / path / "model.safetensors").is_file() and (REPO / path / "training_metrics.json").is_file()
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config/demo_base_models.yaml").read_text()))
    config = validated(config)
    study.check_config(config)
    assert config["models"]["toy-vicuna"]["path"] == f"{demo['toy_world']['root']}/models/llm"
    assert config["vision"]["path"] == f"{demo['toy_world']['root']}/models/vision"

    def jobs(*configfiles):
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--configfile",
                               *[str(REPO / c) for c in configfiles], "--directory", str(tmp_path), "--quiet", "rules"],
                              capture_output=True, text=True, env=subprocess_env(), timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    shipped, trained = jobs("config/demo.yaml"), jobs("config/demo.yaml", "config/demo_base_models.yaml")
    assert "toy_llm" not in shipped and "toy_vision" not in shipped and "finetune" in shipped
    assert "toy_llm" in trained and "toy_vision" in trained


def test_seed_overlay_gives_the_seed_run_its_own_world_and_results():
    """config/demo_seed43.yaml (docs/miniature.md) changes the study seed and keeps the demo's world seed, in folders
    of its own: two results roots over one data root would rerun each other's CC3M download."""
    from snakemake.utils import update_config

    demo = load_config("config/demo.yaml")
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config/demo_seed43.yaml").read_text()))
    config = validated(config)
    study.check_config(config)
    assert config["seed"] != demo["seed"] and config["toy_world"]["seed"] == demo["toy_world"]["seed"]
    for key in ("results_root", "data_root"):
        assert config[key] != demo[key]
    assert config["toy_world"]["root"] != demo["toy_world"]["root"]
    assert config["models"]["toy-vicuna"]["path"] == demo["models"]["toy-vicuna"]["path"]  # the same base models


def test_demo_config_is_not_merged_with_paper_config(tmp_path):
    """--configfile replaces config.yaml, so the demo grid has only the toy LLM."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--configfile",
                           str(REPO / "config/demo.yaml"), "--directory", str(tmp_path), "--quiet", "rules"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "toy_world" in proc.stdout and "vicuna-7b" not in proc.stdout + proc.stderr
