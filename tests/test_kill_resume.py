"""Kill -9 the whole Snakemake process group in the middle of a job, rerun the same command, and nothing is lost:

- stage 1 and stage 2 resume from their last complete checkpoint (the log says so, fewer steps run) and end
  with exactly the weights of an uninterrupted run (same seed, CPU, deterministic);
- an evaluation job has written nothing when killed (its outputs appear by rename, at the end) and its rerun
  recomputes every prediction, identically (greedy decoding).

A hard kill leaves Snakemake's lock behind; the rerun is `snakemake --unlock` and then the same command.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, subprocess_env
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

LLM, CELL = "smoke-vicuna", "layernorm/0.001"
CONNECTOR = f"results/smoke/pretrain/{LLM}/connector.safetensors"
DELTA = f"results/smoke/finetune/{LLM}/{CELL}/trainable_delta.safetensors"
EVAL = f"results/smoke/eval/{LLM}/{CELL}/mme"


def command(workdir: Path, *targets: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "kill.yaml"), "--cores", "2", *targets]


def run(workdir: Path, *targets: str) -> None:
    proc = subprocess.run(command(workdir, *targets), capture_output=True, text=True, env=subprocess_env(),
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def run_and_kill_when(workdir: Path, ready, *targets: str) -> None:
    """Start Snakemake in its own process group; SIGKILL the whole group once ``ready()`` holds."""
    proc = subprocess.Popen(command(workdir, *targets), env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ready() and proc.poll() is None, "the workflow ended before it could be killed mid-job"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    subprocess.run(command(workdir, "--unlock"), check=True, capture_output=True, env=subprocess_env())


def remove(workdir: Path, *paths: str) -> None:
    """Delete outputs, protected ones included (Snakemake makes them read-only)."""
    for rel in paths:
        path = workdir / rel
        if path.is_dir():
            for p in [path, *path.rglob("*")]:
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
            shutil.rmtree(path)
        elif path.exists():
            os.chmod(path, 0o644)
            path.unlink()


def same_tensors(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The smoke world with 30-step stages checkpointing every 5 steps and a 400-question MME, run once
    uninterrupted; the reference weights and predictions are kept aside."""
    workdir = tmp_path_factory.mktemp("kill")
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    config["stage1"].update(max_steps=30, save_steps=5)
    config["stage2"].update(max_steps=30, save_steps=5)
    config["toy_world"]["counts"]["mme_per_subtask"] = 40
    config["benchmarks"]["mme"]["expected"] = 400  # 5 toy subtasks x 40 images x 2 questions
    (workdir / "kill.yaml").write_text(yaml.safe_dump(config))
    run(workdir, DELTA, f"{EVAL}/metrics.json")
    ref = workdir / "reference"
    ref.mkdir()
    for rel in (CONNECTOR, DELTA, f"{EVAL}/predictions.jsonl"):
        shutil.copy(workdir / rel, ref / Path(rel).name)
    return workdir


def test_killed_stages_resume_from_checkpoints_to_identical_weights(workdir):
    ref = workdir / "reference"
    remove(workdir, CONNECTOR, f"results/smoke/pretrain/{LLM}/metrics.json", "results/smoke/checkpoints", DELTA,
           f"results/smoke/finetune/{LLM}/{CELL}")
    stage1_ckpt = workdir / f"results/smoke/checkpoints/pretrain/{LLM}/checkpoint-5/CHECKPOINT_COMPLETE"
    run_and_kill_when(workdir, stage1_ckpt.exists, DELTA)
    assert not (workdir / CONNECTOR).exists()
    stage2_ckpt = workdir / f"results/smoke/checkpoints/finetune/{LLM}/{CELL}/checkpoint-5/CHECKPOINT_COMPLETE"
    run_and_kill_when(workdir, stage2_ckpt.exists, DELTA)  # stage 1 resumes and finishes, stage 2 is killed
    assert (workdir / CONNECTOR).exists() and not (workdir / DELTA).exists()
    run(workdir, DELTA)

    stage1 = json.loads((workdir / f"results/smoke/pretrain/{LLM}/metrics.json").read_text())
    assert stage1["resumed_from"] is not None and stage1["steps"] == 30 and stage1["steps_this_run"] < 30
    stage2 = json.loads((workdir / f"results/smoke/finetune/{LLM}/{CELL}/efficiency.json").read_text())
    assert stage2["resumed_from"] is not None and stage2["steps"] == 30 and stage2["steps_this_run"] < 30
    assert "resuming from" in (workdir / f"results/smoke/logs/finetune/{LLM}/{CELL}.log").read_text()
    assert same_tensors(load_file(workdir / CONNECTOR), load_file(ref / "connector.safetensors"))
    assert same_tensors(load_file(workdir / DELTA), load_file(ref / "trainable_delta.safetensors"))


def test_killed_evaluation_leaves_nothing_and_recomputes_identically(workdir):
    remove(workdir, EVAL)
    log = workdir / f"results/smoke/logs/eval/{LLM}/{CELL}/mme.log"
    log.unlink(missing_ok=True)

    def generating():
        lines = log.read_text().splitlines() if log.exists() else []
        return any(line.startswith("32/") for line in lines)

    run_and_kill_when(workdir, generating, f"{EVAL}/metrics.json")
    left = list((workdir / EVAL).iterdir()) if (workdir / EVAL).exists() else []
    assert not [p for p in left if not p.name.startswith(".")], left  # no file Snakemake could take as done
    run(workdir, f"{EVAL}/metrics.json")
    assert (workdir / EVAL / "predictions.jsonl").read_text() == \
        (workdir / "reference" / "predictions.jsonl").read_text()
