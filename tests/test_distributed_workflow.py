"""The smoke workflow as a multi-GPU node runs it: every training job leases 2 (stand-in) GPUs and torchrun starts
2 workers (gloo on CPU); ZeRO-2 for stage 1 and the LayerNorm cells, ZeRO-3 for the full finetunes
(``stage2.by_cell``), end to end to Table 1. The same jobs on 1 worker train the same connector and deltas."""

import csv
import json
import re

import pytest
import yaml
from conftest import REPO, snakemake, subprocess_env
from safetensors.torch import load_file

pytestmark = pytest.mark.distributed

CELLS = [("finetune", "0.003", 3), ("finetune", "0.001", 3), ("layernorm", "0.003", 2), ("layernorm", "0.001", 2)]


def node_config(tmp_path, gpus: int):
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    config["gpus"] = {"pretrain": gpus, "evaluate": 0, "finetune": {"toy": gpus}}
    config["deepspeed"] = {"zero_stage": 2}
    config["stage1"].update(per_device_batch=2)  # 8 per global batch: 2 workers accumulate 2 micro-batches
    config["stage2"].update(per_device_batch=2, by_cell={"toy": {"finetune": {"zero_stage": 3}}})
    path = tmp_path / f"node{gpus}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def node_env(gpus: int) -> dict:
    env = subprocess_env()
    env.update(GPU_LEASE_COUNT=str(gpus), TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    return env


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("two_workers")
    proc = snakemake(tmp_path, "--configfile", str(node_config(tmp_path, 2)), "--cores", "2", "--resources",
                     "gpu=2", timeout=2400, env=node_env(2))
    assert proc.returncode == 0, proc.stderr[-5000:]
    return tmp_path


def test_every_training_job_ran_on_two_workers_to_table1(two_worker_run):
    results = two_worker_run / "results/smoke"
    stage1 = json.loads((results / "pretrain/smoke-vicuna/metrics.json").read_text())
    assert stage1["workers"] == 2 and stage1["steps"] == 3
    for strategy, lr, zero in CELLS:
        eff = json.loads((results / f"finetune/smoke-vicuna/{strategy}/{lr}/efficiency.json").read_text())
        zero_stage = eff["stage2"].get("zero_stage", 2)  # by_cell's, else deepspeed.zero_stage
        assert (eff["workers"], zero_stage, eff["steps"]) == (2, zero, 3), (strategy, lr)
        assert eff["tensors_changed"]["changed"] == eff["tensors_changed"]["trainable"]
        assert not (results / f"checkpoints/finetune/smoke-vicuna/{strategy}/{lr}").exists()
    rows = {r["strategy"]: r for r in csv.DictReader((results / "tables/table1_main.csv").open())}
    for strategy in ("Finetune", "LayerNorm"):
        assert all(v != "" for v in rows[strategy].values()), rows[strategy]  # every benchmark scored


def test_a_finished_study_reruns_nothing_on_another_gpu_count(two_worker_run, tmp_path):
    """-n after completion: nothing to do; with 1 GPU per job instead of 2, still nothing to retrain (only the
    study plan and parameter table, which show the batch split, are redone)."""
    same = snakemake(two_worker_run, "-n", "--configfile", str(two_worker_run / "node2.yaml"), env=node_env(2))
    assert same.returncode == 0 and "Nothing to be done" in same.stdout + same.stderr, same.stdout[-2000:]
    other = snakemake(two_worker_run, "-n", "--quiet", "rules", "--configfile", str(node_config(tmp_path, 1)),
                      env=node_env(2))
    assert other.returncode == 0, other.stderr[-2000:]
    listed = other.stdout + other.stderr
    for rule in ("pretrain_connector", "finetune", "evaluate"):
        assert not re.search(rf"^{rule}\s+\d", listed, re.M), listed[-2000:]


def test_one_worker_trains_the_same_connector_and_deltas(two_worker_run, tmp_path):
    targets = ["results/smoke/pretrain/smoke-vicuna/connector.safetensors"] + [
        f"results/smoke/finetune/smoke-vicuna/{s}/{lr}/trainable_delta.safetensors" for s, lr, _ in CELLS[::2]]
    proc = snakemake(tmp_path, *targets, "--configfile", str(node_config(tmp_path, 1)), "--cores", "2",
                     "--resources", "gpu=1", timeout=1800, env=node_env(1))
    assert proc.returncode == 0, proc.stderr[-5000:]
    for target in targets:
        one, two = load_file(tmp_path / target), load_file(two_worker_run / target)
        assert set(one) == set(two)
        for name in one:
            assert (one[name] - two[name]).abs().max().item() <= 1e-5, (target, name)
