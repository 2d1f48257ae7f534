"""The real-scale benchmarks run here at toy shapes, so that they cannot rot before a GPU or a big host runs them:
the GPU script (every strategy, stage 1, batched generation) and the host-memory benchmark of building the MLLM."""

import copy
import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_gpu_scale_script_runs_every_part_at_toy_shape_on_cpu(tmp_path):
    gpu_scale = _load("gpu_scale")
    gpu_scale.main(["--shape", "toy", "--device", "cpu", "--out", str(tmp_path / "scale"), "--stage2-batch", "2",
                    "--stage2-seq", "24", "--stage1-batch", "2", "--stage1-seq", "20", "--steps", "1"])
    rows = list(csv.DictReader(open(tmp_path / "scale.csv")))
    assert [(r["part"], r["strategy"]) for r in rows] == (
        [("stage2", s) for s in gpu_scale.STUDY_STRATEGIES] + [("stage1", "connector"), ("generation", "-")])
    assert all(r["status"] == "ok" and float(r["tokens_per_s"]) > 0 for r in rows)
    trainable = {r["strategy"]: int(r["trainable_params"]) for r in rows if r["part"] != "generation"}
    # toy LLaMA 2 x 64 (intermediate 128, vocab 513), toy CLIP 32 wide: counted by hand
    embeddings = head = 513 * 64
    norms = 2 * 2 * 64 + 64
    connector = 32 * 64 + 64
    assert trainable["layernorm_simp"] == norms
    assert trainable["layernorm"] == norms + embeddings + head + connector
    assert trainable["connector"] == connector
    assert trainable["attn_qv"] == 2 * 2 * 64 * 64 + embeddings + head + connector
    assert "identical answers" in rows[-1]["note"]
    assert (tmp_path / "scale.md").read_text().count("| stage2 |") == 6
    # each cell as config.yaml trains it at 7B (stage 1 at 13B): checkpointing and ZeRO stage from stage2.by_cell
    cells = {r["strategy"]: (r["checkpointing"], r["study_zero_stage"]) for r in rows if r["part"] != "generation"}
    assert cells["finetune"] == ("True", "2") and cells["layernorm"] == ("False", "2")
    assert cells["connector"] == ("False", "2")
    settings = gpu_scale.cell_settings(yaml.safe_load((REPO / "config.yaml").read_text()), "13b")
    assert settings["finetune"] == {"batch": 8, "checkpointing": True, "zero_stage": 3}
    assert settings["connector"]["batch"] == 8 and settings["connector"]["seq_len"] == 512


def test_build_memory_benchmark_runs_and_the_build_needs_less_than_the_old_one():
    build_memory = _load("build_memory")
    previous, current = build_memory.run(layers=2, hidden=512, intermediate=1024, vocab=4000)
    assert previous["build"] == "previous" and current["build"] == "current"
    assert current["dtypes"] == ["torch.bfloat16"]
    # the old build random-initialised a full fp32 model beside the loaded bf16 weights (2x their bytes)
    assert current["peak_rss_growth_bytes"] < previous["peak_rss_growth_bytes"]


def test_study_cost_flops_model_by_hand():
    study_cost = _load("study_cost")
    cell = study_cost.Cell("m", "layernorm", n_fwd=100, n_trained_matmul=10, n_vision=50, image_tokens=4)
    # forward 200 + activation grads 200 + weight grads 20 (+ recomputed forward 200)
    assert study_cost.train_flops_per_token(cell, checkpointing=False) == 420
    assert study_cost.train_flops_per_token(cell, checkpointing=True) == 620
    assert study_cost.vision_flops_per_sample(cell) == 2 * 50 * 5  # the patches and CLS, forward only


def test_study_cost_of_the_smoke_config_counts_every_job_and_grouping_pads_less(smoke_world, tiny_base_models):
    study_cost = _load("study_cost")
    config = copy.deepcopy(smoke_world[0])
    llm = next(iter(config["models"]))
    config["models"][llm]["path"], config["vision"]["path"] = tiny_base_models  # shapes from local config.json
    lengths = [20, 200] * 40
    grouped = study_cost.estimate(config, lengths, "A100-80G", 0.4, grouped=True)
    uniform = study_cost.estimate(config, lengths, "A100-80G", 0.4, grouped=False)
    assert grouped["padding_share"] < uniform["padding_share"]
    g, u = grouped["gpu_hours"], uniform["gpu_hours"]
    assert g["stage1"] == u["stage1"] > 0 and g["evaluate"] == u["evaluate"] > 0
    assert 0 < g["finetune"] < u["finetune"]
    assert g["total"] == pytest.approx(g["stage1"] + g["finetune"] + g["evaluate"])


def test_study_cost_of_halving_selection_by_hand(smoke_world, tiny_base_models):
    """Two LRs, fraction 0.25, keep 1: each strategy trains 2 x 0.25 + 1 x 0.75 = 1.25 runs instead of 2."""
    study_cost = _load("study_cost")
    config = copy.deepcopy(smoke_world[0])
    llm = next(iter(config["models"]))
    config["models"][llm]["path"], config["vision"]["path"] = tiny_base_models
    config["controls"]["text_priors"] = []
    exact = study_cost.estimate(config, None, "A100-80G", 0.4, grouped=True)["gpu_hours"]
    halving = study_cost.estimate(config, None, "A100-80G", 0.4, grouped=True, halving=(0.25, 1))["gpu_hours"]
    assert halving["finetune"] == pytest.approx(exact["finetune"] * 1.25 / 2)
    assert halving["stage1"] == exact["stage1"] and halving["evaluate"] > exact["evaluate"]


def test_study_cost_against_recorded_step_times(smoke_world, tiny_base_models, tmp_path):
    """The measured column is the recorded step time relative to the first strategy's (median over LRs); the
    model's column is the FLOPs of the same step (tokens x FLOPs per token + the vision tower per sample)."""
    study_cost = _load("study_cost")
    config = copy.deepcopy(smoke_world[0])
    llm = next(iter(config["models"]))
    config["models"][llm]["path"], config["vision"]["path"] = tiny_base_models
    times = {"finetune": [2.0, 2.2, 9.0], "layernorm": [1.0]}  # median 2.2: one slow outlier does not count
    for strategy, steps in times.items():
        for i, t in enumerate(steps):
            folder = tmp_path / "finetune" / llm / strategy / f"lr{i}"
            folder.mkdir(parents=True)
            (folder / "efficiency.json").write_text(json.dumps({"step_time_s": t, "tokens_per_s": 100 / t}))
    rows = {r["strategy"]: r for r in study_cost.against_measured(config, str(tmp_path))}
    assert rows["finetune"]["measured"] == rows["finetune"]["predicted"] == 1.0
    assert rows["layernorm"]["measured"] == pytest.approx(1.0 / 2.2)
    cells = study_cost.model_cells(config)
    flops = {s: 100 * study_cost.train_flops_per_token(cells[(llm, s)], False)
             + config["stage2"]["global_batch"] * study_cost.vision_flops_per_sample(cells[(llm, s)])
             for s in times}
    assert rows["layernorm"]["predicted"] == pytest.approx(flops["layernorm"] / flops["finetune"])
    assert rows["layernorm"]["predicted"] < 1.0
