"""Training jobs with N workers give one worker's result: stage 1 (the CC3M stream) and stage 2 under no
DeepSpeed, ZeRO-2 and ZeRO-3, each launched with torchrun as the rules launch them (2 stand-in GPUs on CPU, gloo)
and compared with the same job on 1 worker at the same global batch.

"Same result": the same global batches (checked through the loss curve, whose every step must match) and the
trained tensors equal within 1e-5 absolute (float sums in another order: measured differences are ~1e-7).
LoRA's dropout draws its masks from each rank's own RNG stream, so a LoRA cell with dropout > 0 trains on other
masks with 2 workers (same distribution, not the same numbers): its comparison runs with dropout 0.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, subprocess_env, training_config
from safetensors.torch import load_file

from workflow_scripts import study

pytestmark = pytest.mark.distributed

TOLERANCE = 1e-5


def launch(module: str, args: list[str], workers: int, timeout: int = 900, wait: bool = True, check: bool = True):
    """``module`` under torchrun with ``workers`` processes, as the rules start a GPU job (one thread each);
    ``check``: the job must succeed."""
    env = subprocess_env()
    env.update(OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(workers),
           "-m", module, *args, "--threads", str(workers)]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 or not check, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def assert_same_tensors(a: dict, b: dict, tolerance: float = TOLERANCE) -> float:
    assert set(a) == set(b) and a
    worst = 0.0
    for name in a:
        assert a[name].shape == b[name].shape, name
        worst = max(worst, (a[name].float() - b[name].float()).abs().max().item())
    print(f"largest difference {worst:.3g}")
    assert worst <= tolerance, f"largest difference {worst}"
    return worst


def assert_same_curve(a: dict, b: dict) -> None:
    steps_a, loss_a = zip(*a["loss_curve"])
    steps_b, loss_b = zip(*b["loss_curve"])
    assert steps_a == steps_b and len(steps_a) == a["steps"]
    assert max(abs(x - y) for x, y in zip(loss_a, loss_b)) <= 1e-4, (loss_a, loss_b)


# --- stage 1 -------------------------------------------------------------------------------------------------

def stage1_args(config, models, shards, out: Path) -> list[str]:
    llm, vision = models
    return ["--llm", llm, "--vision", vision, "--shards", shards, "--config-json", json.dumps(config),
            "--checkpoints", str(out / "ckpt"), "--connector-out", str(out / "connector.safetensors"),
            "--metrics", str(out / "metrics.json")]


def stage1_config(smoke_world, zero_stage: int, **stage1) -> dict:
    config = training_config(smoke_world[0])
    # 8 per global batch, at most 2 per device: 1 worker accumulates 4 micro-batches, 2 workers 2 each. The
    # smoke shards hold 38 training samples: 4 whole global batches an epoch, so 6 steps cross an epoch.
    settings = dict(max_steps=6, lr=2.0e-3, global_batch=8, per_device_batch=2, save_steps=2,
                    alignment={"holdout": 2, "min_gap": None})
    config["stage1"].update({**settings, **stage1})
    config["deepspeed"]["zero_stage"] = zero_stage
    return config


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_stage1_two_workers_train_the_one_worker_connector(zero_stage, smoke_world, smoke_shards,
                                                           tiny_base_models, tmp_path):
    config = stage1_config(smoke_world, zero_stage)
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        launch("workflow_scripts.train.pretrain_connector", stage1_args(config, tiny_base_models, smoke_shards, out),
               workers)
        runs[workers] = (json.loads((out / "metrics.json").read_text()), load_file(out / "connector.safetensors"))
        assert not (out / "ckpt").exists()  # finished: released once every rank was done
    (one, one_weights), (two, two_weights) = runs[1], runs[2]
    assert_same_curve(one, two)
    assert_same_tensors(one_weights, two_weights)
    assert one["data_order"]["epochs_read"] == two["data_order"]["epochs_read"] == [0, 1]
    # The alignment check is split across the ranks and summed: the same numbers as one worker's.
    for when in ("before_training", "after_training"):
        assert two["alignment"][when]["samples"] == one["alignment"][when]["samples"] == 2
        assert abs(two["alignment"][when]["loss_real_images"] - one["alignment"][when]["loss_real_images"]) < 1e-5


# --- stage 2 -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def connector(smoke_world, smoke_shards, tiny_base_models, tmp_path_factory):
    """A stage-1 connector for the stage-2 runs (one worker, 2 steps)."""
    out = tmp_path_factory.mktemp("connector")
    config = stage1_config(smoke_world, 0, max_steps=2)
    launch("workflow_scripts.train.pretrain_connector", stage1_args(config, tiny_base_models, smoke_shards, out), 1)
    return str(out / "connector.safetensors")


@pytest.fixture(scope="module")
def instruct_json(smoke_world, tmp_path_factory):
    """The smoke world's instruct records six times over (new ids, other images): 240 records, more than one 50-batch
    mega-batch of length grouping, so grouping by the per-rank batch instead of the global one would show."""
    records = json.loads(Path(study.data_path(smoke_world[0], "instruct_json")).read_text())
    # each copy pairs the conversations with other images, so no two records train the same
    many = [{**r, "id": f"{r['id']}-{copy}", "image": records[(i + copy) % len(records)]["image"]}
            for copy in range(6) for i, r in enumerate(records)]
    path = tmp_path_factory.mktemp("instruct") / "llava_instruct_80k.json"
    path.write_text(json.dumps(many))
    return str(path)


def finetune_args(config, models, connector, out: Path, strategy: str, *extra: str, instruct: str) -> list[str]:
    llm, vision = models
    return ["--llm", llm, "--vision", vision, "--connector", connector,
            "--instruct-json", instruct,
            "--images", study.data_path(config, "instruct_images"), "--template", "vicuna_v1",
            "--strategy", strategy, "--lr", "0.003", "--config-json", json.dumps(config),
            "--checkpoints", str(out / "ckpt"), "--delta", str(out / "delta.safetensors"),
            "--efficiency", str(out / "efficiency.json"), *extra]


def stage2_config(smoke_world, zero_stage: int, **stage2) -> dict:
    # 8 per global batch, at most 2 per device; length-grouped batches (the paper's config groups them).
    # model_max_length: no record truncates, so the lengths the grouping sorts by do not tie at the bound.
    settings = dict(max_steps=4, global_batch=8, per_device_batch=2, save_steps=2, group_by_length=True,
                    model_max_length=1024)
    config = training_config(smoke_world[0], **{**settings, **stage2})
    config["deepspeed"]["zero_stage"] = zero_stage
    config["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    return config


def finetune_both(config, models, connector, instruct, tmp_path, strategy, *extra):
    """The same cell on 1 and on 2 workers: (efficiency, delta) for each."""
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        launch("workflow_scripts.train.finetune", finetune_args(config, models, connector, out, strategy, *extra,
                                                               instruct=instruct),
               workers)
        runs[workers] = (json.loads((out / "efficiency.json").read_text()), load_file(out / "delta.safetensors"))
    return runs[1], runs[2]


# the 13B cells of config.yaml: full finetune and Attn. MLP under ZeRO-3 with gradient checkpointing
@pytest.mark.parametrize("zero_stage,strategy,checkpointing", [
    (0, "finetune", False), (2, "layernorm", False), (2, "layernorm_simp", False), (2, "attn_qv", False),
    (2, "lora", False), (3, "finetune", True), (3, "attn_mlp", True)])
def test_stage2_two_workers_train_the_one_worker_delta(zero_stage, strategy, checkpointing, smoke_world,
                                                       instruct_json, tiny_base_models, connector, tmp_path):
    config = stage2_config(smoke_world, zero_stage, gradient_checkpointing=checkpointing)
    (one, one_delta), (two, two_delta) = finetune_both(config, tiny_base_models, connector, instruct_json, tmp_path,
                                                       strategy)
    assert_same_curve(one, two)
    assert_same_tensors(one_delta, two_delta)
    assert two["tensors_changed"]["changed"] == two["tensors_changed"]["trainable"] == len(two_delta)
    assert (two["workers"], two["gradient_checkpointing"]) == (2, checkpointing)
    assert two["batch"] == {"per_device": 2, "accumulation": 2, "global": 8, "zero_stage": zero_stage}
    assert one["batch"] == {"per_device": 2, "accumulation": 4, "global": 8, "zero_stage": zero_stage}
    # counted before ZeRO-3 partitions the weights (after, every partitioned parameter reads as empty)
    assert one["parameters"] == two["parameters"]
    assert two["parameters"]["trainable_params"] == sum(t.numel() for t in two_delta.values())
    assert not (tmp_path / "w2" / "ckpt").exists()


@pytest.mark.parametrize("variant", [("--blank-images",), ("--stop-at-fraction", "0.5")])
def test_text_priors_and_halving_rung_with_two_workers(variant, smoke_world, instruct_json, tiny_base_models,
                                                       connector, tmp_path):
    """The control row (blank images) and a halving rung (stops half-way, keeps its checkpoint) under ZeRO-2."""
    config = stage2_config(smoke_world, 2)
    (one, one_delta), (two, two_delta) = finetune_both(config, tiny_base_models, connector, instruct_json, tmp_path,
                                                       "layernorm", *variant)
    assert_same_curve(one, two)
    assert_same_tensors(one_delta, two_delta)
    if "--stop-at-fraction" in variant:
        assert two["rung"]["stopped_at_step"] == 2
        assert (tmp_path / "w2" / "ckpt" / "checkpoint-2").is_dir()  # the full run resumes from it


def _worker_pids(launcher: int) -> list[int]:
    """The training processes torchrun started (its children)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    return [int(c) for c in children]


@pytest.mark.parametrize("zero_stage", [0, 3])
def test_killed_worker_fails_the_job_and_the_rerun_resumes_to_the_uninterrupted_result(
        zero_stage, smoke_world, instruct_json, tiny_base_models, connector, tmp_path):
    config = stage2_config(smoke_world, zero_stage, max_steps=6)
    straight = tmp_path / "straight"
    launch("workflow_scripts.train.finetune", finetune_args(config, tiny_base_models, connector, straight,
                                                            "finetune", instruct=instruct_json), 2)
    out = tmp_path / "killed"
    args = finetune_args(config, tiny_base_models, connector, out, "finetune", instruct=instruct_json)
    proc = launch("workflow_scripts.train.finetune", args, 2, wait=False)
    marker = out / "ckpt" / "checkpoint-2" / "CHECKPOINT_COMPLETE"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists() and proc.poll() is None, "the run ended before a worker could be killed"
    workers = _worker_pids(proc.pid)
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)  # one rank dies (an OOM kill, a failed node)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, output[-3000:]
    assert not (out / "delta.safetensors").exists()
    launch("workflow_scripts.train.finetune", args, 2)
    eff = json.loads((out / "efficiency.json").read_text())
    assert "checkpoint-" in eff["resumed_from"] and eff["steps_this_run"] < 6
    assert_same_tensors(load_file(out / "delta.safetensors"), load_file(straight / "delta.safetensors"))


def test_a_failing_rank_fails_the_job_with_its_error_in_the_log(smoke_world, instruct_json, tiny_base_models, connector,
                                                                tmp_path):
    """A non-finite loss on any rank stops the job: torchrun exits non-zero and the log names the error."""
    config = stage2_config(smoke_world, 2)
    args = finetune_args(config, tiny_base_models, connector, tmp_path, "layernorm", "--inject-nan-at-step", "2",
                         instruct=instruct_json)
    proc = launch("workflow_scripts.train.finetune", args, 2, check=False)
    assert proc.returncode != 0
    assert "NonFiniteLossError" in proc.stdout + proc.stderr
    assert not (tmp_path / "delta.safetensors").exists()


def test_a_checkpoint_of_another_worker_count_is_discarded_not_resumed(smoke_world, instruct_json, tiny_base_models,
                                                                      connector, tmp_path):
    """A halving rung on 2 workers leaves its checkpoint; the same cell rerun on 1 worker (a node with fewer
    free GPUs) cannot resume per-rank partitions: it starts from step 0 and says why."""
    config = stage2_config(smoke_world, 2)
    rung = finetune_args(config, tiny_base_models, connector, tmp_path, "layernorm", "--stop-at-fraction", "0.5",
                         instruct=instruct_json)
    launch("workflow_scripts.train.finetune", rung, 2)
    assert (tmp_path / "ckpt" / "checkpoint-2").is_dir()
    full = finetune_args(config, tiny_base_models, connector, tmp_path, "layernorm", instruct=instruct_json)
    proc = launch("workflow_scripts.train.finetune", full, 1)
    assert "discarding checkpoints" in proc.stdout and "workers" in proc.stdout
    eff = json.loads((tmp_path / "efficiency.json").read_text())
    assert eff["resumed_from"] is None and eff["steps_this_run"] == eff["steps"] == 4


def test_gpu_scale_trains_each_cell_at_its_zero_stage_on_two_workers(tmp_path):
    """benchmarks/gpu_scale.py over 2 workers (as on a multi-GPU node, here gloo): every cell under DeepSpeed at
    its stage2.by_cell ZeRO stage (a ZeRO-3 full finetune included), rank 0 writes one row per cell."""
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["stage2"]["by_cell"]["7b"]["finetune"] = {"zero_stage": 3}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = subprocess_env()
    env.update(OMP_NUM_THREADS="1", TORCH_EXTENSIONS_DIR=str(REPO / ".cache" / "torch_extensions"))
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_scale.py"), "--shape", "toy", "--device", "cpu",
                           "--workers", "2", "--config", str(path), "--out", str(tmp_path / "scale"),
                           "--strategies", "finetune,layernorm_simp", "--stage2-batch", "2", "--stage2-seq", "24",
                           "--stage1-batch", "2", "--stage1-seq", "20", "--steps", "1"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["strategy"]: r for r in csv.DictReader((tmp_path / "scale.csv").open())}
    assert set(rows) == {"finetune", "layernorm_simp", "connector", "-"}
    assert (rows["finetune"]["study_zero_stage"], rows["layernorm_simp"]["study_zero_stage"]) == ("3", "2")
    assert all(rows[s]["workers"] == "2" and rows[s]["status"] == "ok" for s in ("finetune", "layernorm_simp"))
    assert rows["layernorm_simp"]["trainable_params"] == str(2 * 2 * 64 + 64)  # counted before ZeRO partitions
    assert "2 workers, DeepSpeed" in (tmp_path / "scale.md").read_text()
