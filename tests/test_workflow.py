"""Workflow tests: Snakemake itself runs the toy rules on the smoke config, and dry-runs the paper's config."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, subprocess_env

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke workflow's default target, run once for this module's tests."""
    tmp_path = tmp_path_factory.mktemp("smoke_run")
    proc = snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path


def test_smoke_workflow_builds_every_stage(smoke_run):
    tmp_path = smoke_run
    world = json.loads((tmp_path / "resources/smoke/world.json").read_text())
    assert world["counts"]["pope"]["random"] > 0
    llm = json.loads((tmp_path / "results/toy_models/llm_metrics.json").read_text())
    vision = json.loads((tmp_path / "results/toy_models/vision_metrics.json").read_text())
    assert llm["val_perplexity_after"] < llm["val_perplexity_before"] / 10
    assert vision["retrieval_top1_after"] > 2 * vision["retrieval_chance"]
    for model in ("llm", "vision"):
        assert (tmp_path / f"resources/smoke/models/{model}/model.safetensors").exists()
        assert (tmp_path / f"logs/toy_{model}/toy_{model}.log").read_text().strip()
    assert (tmp_path / "benchmarks/rules/toy_world.tsv").exists()
    assert json.loads((tmp_path / "results/preflight/inputs.json").read_text())["cc3m_tsv"]["found"] == "43 rows"
    cc3m = json.loads((tmp_path / "resources/smoke/data/cc3m/shards_summary.json").read_text())
    assert cc3m["downloaded"] > 0 and cc3m["failed_to_download"] > 0
    assert list((tmp_path / "resources/smoke/data/cc3m/shards").glob("*.tar"))
    assert json.loads((tmp_path / "results/pretrain/smoke-vicuna/metrics.json").read_text())["steps"] == 3
    for strategy in ("finetune", "layernorm"):
        for lr in ("0.003", "0.001"):
            cell = tmp_path / f"results/finetune/smoke-vicuna/{strategy}/{lr}"
            assert json.loads((cell / "efficiency.json").read_text())["strategy"] == strategy
            assert (cell / "export/model/model.safetensors").exists()
            assert not os.access(cell / "trainable_delta.safetensors", os.W_OK) or os.geteuid() == 0  # protected
            assert (tmp_path / f"logs/finetune/smoke-vicuna/{strategy}/{lr}.log").exists()
    table = list(csv.DictReader((tmp_path / "results/efficiency/param_table.csv").open()))
    assert [r["strategy"] for r in table] == ["finetune", "layernorm"]
    flickr = json.loads((tmp_path / "results/eval/smoke-vicuna/layernorm/0.001/flickr30k/metrics.json").read_text())
    assert flickr["images"] == 8 and flickr["CIDEr"] >= 0 and flickr["provenance"]["template"] == "vicuna_v1"
    assert flickr["provenance"]["decoding"]["strategy"] == "greedy"
    assert json.loads((tmp_path / "results/eval_blind/smoke-vicuna/finetune/0.003/flickr30k/metrics.json")
                      .read_text())["provenance"]["control"] == "blind"
    assert (tmp_path / "results/eval_stage1/smoke-vicuna/flickr30k/metrics.json").exists()
    rows = list(csv.DictReader((tmp_path / "results/plan/study_grid.csv").open()))
    assert [(r["strategy"], r["lr"]) for r in rows] == [("finetune", "0.003"), ("finetune", "0.001"),
                                                        ("layernorm", "0.003"), ("layernorm", "0.001")]
    again = snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), "--cores", "2", "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_every_benchmark_end_to_end_through_snakemake(smoke_run):
    """Each benchmark on the smoke world for one finetuned cell, asked for as a Snakemake target."""
    tmp_path = smoke_run
    cell = "results/eval/smoke-vicuna/layernorm/0.003"
    targets = [f"{cell}/{bench}/metrics.json" for bench in ("mme", "vqav2", "coco", "pope")]
    proc = snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), "--cores", "2", *targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mme = json.loads((tmp_path / cell / "mme/metrics.json").read_text())
    assert set(mme["subtasks"]) == {"existence", "count", "position", "color", "numerical_calculation"}
    assert 0 <= mme["perception"] <= 800 and 0 <= mme["cognition"] <= 200
    vqa = json.loads((tmp_path / cell / "vqav2/metrics.json").read_text())
    assert vqa["questions"] == 16 and 0 <= vqa["accuracy"] <= 100  # the configured subset of 24 questions
    pope = json.loads((tmp_path / cell / "pope/metrics.json").read_text())
    assert set(pope["splits"]) == {"random", "popular", "adversarial"} and 0 <= pope["f1_mean"] <= 100
    coco = json.loads((tmp_path / cell / "coco/metrics.json").read_text())
    assert coco["images"] == 8
    rows = [json.loads(line) for line in (tmp_path / cell / "vqav2/predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and {"id", "prompt", "output", "parsed"} <= set(rows[0])
    assert rows[0]["prompt"].count("ASSISTANT:") == 4  # 3 text-only demonstrations, then the question
    for bench in ("mme", "vqav2", "coco", "pope"):  # provenance names the data files with their hashes
        data = json.loads((tmp_path / cell / f"{bench}/metrics.json").read_text())["provenance"]["data"]
        assert all("sha256" in d or "files" in d for d in data.values())


def test_missing_real_data_fails_in_preflight_with_where_to_get_it(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data_root"] = str(tmp_path / "nothing_here")
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--configfile", str(path), "--cores", "1", "download_cc3m", timeout=120)
    assert proc.returncode != 0
    log = (tmp_path / "logs/preflight/preflight.log").read_text()
    assert "missing cc3m_tsv" in log and "get it from: Conceptual Captions" in log
    assert not (tmp_path / "results/preflight/inputs.json").exists()


def test_paper_config_dry_run_lists_the_grid(tmp_path):
    """config.yaml with its data root pointed at fake files: the DAG builds and the plan has 396 cells."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data_root"] = str(tmp_path / "resources")
    for rel in (config["data"]["cc3m_tsv"], config["data"]["instruct_json"],
                config["benchmarks"]["flickr30k"]["karpathy_json"], config["benchmarks"]["coco"]["karpathy_json"]):
        (tmp_path / "resources" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "resources" / rel).write_text("")
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    dry = snakemake(tmp_path, "--configfile", str(path), "-n", "--quiet", "rules", timeout=120)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "study_plan" in dry.stdout and "toy_world" not in dry.stdout
    run = snakemake(tmp_path, "--configfile", str(path), "--cores", "1", "results/plan/study_grid.csv")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "results/plan/study_grid.csv").open()))
    assert len(rows) == 6 * 6 * 11
    assert {r["global_batch"] for r in rows} == {"128"}
    assert {(r["gpus"], r["per_device_batch"], r["grad_accum"]) for r in rows} == {("4", "16", "2")}
