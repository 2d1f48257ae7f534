"""Reruns are exact: a forced or reconfigured cell trains from step 0, a changed benchmark reruns only its own
evaluations, a retrained cell reruns what reads it, `snakemake -n` announces exactly the jobs the run executes,
and two configs in one checkout never touch each other's files.

Each workflow test copies the session's finished smoke run and changes one thing in it, as a user would. They
take minutes, so they are marked `reruns` and run by `make test-reruns` (CI runs both suites).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake, subprocess_env

from workflow_scripts import study
from workflow_scripts.train import loop

R = "results/smoke"
LLM = "smoke-vicuna"
# the cell whose export the smoke config's calibration row scores, and the jobs that row adds when it changes
SMOKE_EXPORT = yaml.safe_load((REPO / "config/smoke.yaml").read_text())["reference_models"]["smoke-export"]["export_of"]
CALIBRATION_JOBS = {"export_model": 1, "evaluate_reference": 1, "calibrate": 1}


# ---- checkpoint identity (unit) ----------------------------------------------------------------------------

def _checkpoint(folder: Path, step: int) -> None:
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / loop.COMPLETE).write_text(str(step))


def test_checkpoints_of_the_same_run_are_kept_and_resumed(tmp_path):
    inputs = tmp_path / "connector.safetensors"
    inputs.write_bytes(b"weights")
    identity = loop.run_identity({"stage2": {"lr_scheduler": "cosine"}}, {"lr": "0.001"}, {"connector": str(inputs)})
    folder = tmp_path / "ckpt"
    loop.claim_checkpoints(str(folder), identity)
    _checkpoint(folder, 5)
    loop.claim_checkpoints(str(folder), json.loads(json.dumps(identity)))  # the same run, after a kill
    assert loop.last_complete_checkpoint(str(folder)) == str(folder / "checkpoint-5")


@pytest.mark.parametrize("change", ["config", "args", "input content"])
def test_checkpoints_of_another_run_are_discarded(tmp_path, change, capsys):
    inputs = tmp_path / "connector.safetensors"
    inputs.write_bytes(b"weights")
    config, args = {"stage2": {"lr_scheduler": "cosine"}}, {"lr": "0.001"}
    folder = tmp_path / "ckpt"
    loop.claim_checkpoints(str(folder), loop.run_identity(config, args, {"connector": str(inputs)}))
    _checkpoint(folder, 5)
    if change == "config":
        config = {"stage2": {"lr_scheduler": "linear"}}
    elif change == "args":
        args = {"lr": "0.0003"}
    else:
        inputs.write_bytes(b"retrained weights")  # a new stage-1 connector
    loop.claim_checkpoints(str(folder), loop.run_identity(config, args, {"connector": str(inputs)}))
    assert loop.last_complete_checkpoint(str(folder)) is None
    assert "discarding checkpoints" in capsys.readouterr().out


def test_checkpoints_without_an_identity_are_discarded(tmp_path):
    """Checkpoints left by an older version of the workflow carry no identity: they are not trusted."""
    folder = tmp_path / "ckpt"
    _checkpoint(folder, 5)
    loop.claim_checkpoints(str(folder), loop.run_identity({}, {}, {}))
    assert loop.last_complete_checkpoint(str(folder)) is None


def test_released_checkpoints_are_gone(tmp_path):
    folder = tmp_path / "ckpt"
    loop.claim_checkpoints(str(folder), loop.run_identity({}, {}, {}))
    _checkpoint(folder, 3)
    loop.release_checkpoints(str(folder))
    assert not folder.exists()


def test_orphaned_records_are_removed_so_their_job_reruns(tmp_path):
    cell = tmp_path / "finetune/llm/layernorm/0.001"
    cell.mkdir(parents=True)
    (cell / "efficiency.json").write_text("{}")
    whole = tmp_path / "finetune/llm/layernorm/0.003"
    whole.mkdir(parents=True)
    (whole / "efficiency.json").write_text("{}")
    (whole / "trainable_delta.safetensors").write_bytes(b"x")
    removed = study.remove_orphaned_records(str(tmp_path))
    assert removed == [str(cell / "efficiency.json")]
    assert (whole / "efficiency.json").exists()


# ---- workflow -----------------------------------------------------------------------------------------------

def planned(proc) -> dict[str, int]:
    """The first job-stats table Snakemake prints ({rule: count}, without `total`)."""
    counts, inside = {}, False
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.startswith("job ") and "count" in line:
            inside = True
            continue
        if inside:
            m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
            if m and m.group(1) != "total":
                counts[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                break
    return counts


def executed(proc) -> dict[str, int]:
    """{rule: count} of the jobs a run finished ("Finished jobid: N (Rule: X)")."""
    counts = {}
    for rule in re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", proc.stdout + proc.stderr):
        counts[rule] = counts.get(rule, 0) + 1
    return counts


@pytest.fixture
def finished(smoke_run, tmp_path):
    """A copy of the finished smoke run (mtimes and Snakemake's metadata kept) with its config beside it."""
    work = tmp_path / "work"
    shutil.copytree(smoke_run, work, symlinks=True)
    shutil.copy(REPO / "config/smoke.yaml", work / "run.yaml")
    return work


def edit_config(work: Path, change) -> None:
    config = yaml.safe_load((work / "run.yaml").read_text())
    change(config)
    (work / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))  # a user's edit keeps the order


def dry_then_run(work: Path, *args: str, selection_reruns: bool = False) -> tuple[dict, dict]:
    """(jobs `-n` announces, jobs the run executes); afterwards `-n` must have nothing to do. When training
    reruns, the LR selection must run before Snakemake knows which evaluations follow: the dry run says so."""
    base = ("--configfile", str(work / "run.yaml"), "--cores", "2", *args)
    dry = snakemake(work, *base, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert ("DAG of jobs will be updated after completion" in dry.stdout + dry.stderr) == selection_reruns
    run = snakemake(work, *base)
    assert run.returncode == 0, run.stderr[-3000:]
    after = snakemake(work, *base, "-n")
    assert after.returncode == 0 and "Nothing to be done" in after.stdout + after.stderr, after.stdout[-2000:]
    return planned(dry), executed(run)


def chosen(work: Path) -> dict[str, str]:
    doc = json.loads((work / f"{R}/selection/best_lr.json").read_text())
    return {s: sel["lr"] for s, sel in doc["selected"][LLM].items()}


def mtimes(work: Path, pattern: str) -> dict[str, int]:
    return {str(p.relative_to(work)): p.stat().st_mtime_ns for p in sorted(work.glob(pattern))}


@pytest.mark.reruns
def test_forced_cell_retrains_from_step_zero_and_reruns_only_what_reads_it(finished):
    work = finished
    lr = next(x for x in ("0.003", "0.001") if x != chosen(work)["layernorm"])  # a cell the tables do not read
    cell = work / f"{R}/finetune/{LLM}/layernorm/{lr}"
    before = json.loads((cell / "efficiency.json").read_text())
    others = mtimes(work, f"{R}/eval*/**/metrics.json")
    os.chmod(cell / "trainable_delta.safetensors", 0o644)
    forced = snakemake(work, "--configfile", str(work / "run.yaml"), "--cores", "2", "-f",
                       f"{R}/finetune/{LLM}/layernorm/{lr}/efficiency.json")
    assert forced.returncode == 0, forced.stderr[-3000:]
    after = json.loads((cell / "efficiency.json").read_text())
    assert after["steps"] == after["steps_this_run"] == before["steps"] == 3 and after["resumed_from"] is None
    assert after["step_time_s"] != before["step_time_s"]  # timed anew
    assert not (work / f"{R}/checkpoints/finetune/{LLM}/layernorm/{lr}").exists()  # nothing left to resume
    # Its Flickr30k score, the selection, the tables and the figure follow; nothing else.
    plan, ran = dry_then_run(work, selection_reruns=True)
    assert plan == ran == {"evaluate": 1, "select_lr": 1, "tables": 1, "figures": 1, "all": 1}
    changed = {k for k, t in mtimes(work, f"{R}/eval*/**/metrics.json").items() if others.get(k) != t}
    assert changed == {f"{R}/eval/{LLM}/layernorm/{lr}/flickr30k/metrics.json"}


@pytest.mark.reruns
def test_changed_stage2_key_retrains_every_cell_from_step_zero_but_not_stage1(finished):
    work = finished
    connector = work / f"{R}/pretrain/{LLM}/connector.safetensors"
    connector_mtime = connector.stat().st_mtime_ns
    edit_config(work, lambda c: c["stage2"].update(lr_scheduler="linear"))
    plan, ran = dry_then_run(work, selection_reruns=True)
    # Announced: every cell, its Flickr30k score, the selection, tables, figures. After the selection, the other
    # benchmarks at the chosen LRs, the blind row and the text-priors row (its own finetune) join (8 + 5 + 5):
    # the only jobs the dry run could not list.
    # The calibration row is the export of one cell (reference_models.smoke-export): it is rebuilt and re-scored.
    assert plan == {"finetune": 4, "evaluate": 4, "select_lr": 1, "tables": 1, "figures": 1, "all": 1,
                    **CALIBRATION_JOBS}
    assert ran == {**plan, "finetune": 4 + 1, "evaluate": 4 + 8 + 5 + 5}
    assert connector.stat().st_mtime_ns == connector_mtime
    for strategy in ("finetune", "layernorm"):
        for lr in ("0.003", "0.001"):
            run = json.loads((work / f"{R}/finetune/{LLM}/{strategy}/{lr}/efficiency.json").read_text())
            assert run["stage2"]["lr_scheduler"] == "linear"
            assert run["steps_this_run"] == 3 and run["resumed_from"] is None


@pytest.mark.reruns
def test_changed_benchmark_prompt_reruns_only_that_benchmark(finished):
    work = finished
    before = mtimes(work, f"{R}/**/metrics.json")
    edit_config(work, lambda c: c["benchmarks"]["pope"].update(prompt_suffix=" Answer yes or no."))
    plan, ran = dry_then_run(work)
    # POPE of the two chosen models, of the blind, text-priors and stage-1 rows; then the tables.
    assert plan == ran == {"evaluate": 4, "evaluate_stage1": 1, "tables": 1, "all": 1}
    changed = {k for k, t in mtimes(work, f"{R}/**/metrics.json").items() if before.get(k) != t}
    assert changed and all("/pope/" in k for k in changed) and len(changed) == 5
    pope = json.loads((work / f"{R}/eval_stage1/{LLM}/pope/metrics.json").read_text())
    assert "Answer yes or no." in pope["provenance"]["example_prompt"]


@pytest.mark.reruns
@pytest.mark.parametrize("module, edit, first", [
    ("toyworld/scenes.py", ('RADIUS = {"large": 0.40', 'RADIUS = {"large": 0.45'), "toy_world"),
    ("toyworld/toy_vision.py", ("weight_decay=0.1", "weight_decay=0.2"), "toy_vision"),
])
def test_edited_toy_world_code_regenerates_what_it_defines(finished, tmp_path, module, edit, first):
    """Snakemake does not see imported code; the toy world's and toy models' rules carry its digest, so a run
    with edited generator code (here: a copy of the workflow with one line changed) plans the regeneration and
    everything downstream, never a silent reuse of the old drawings or weights."""
    copy = tmp_path / "workflow"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", ".venv", ".snakemake", "resources", "results",
                                                              "tests", "__pycache__", ".cache"))
    source = copy / "workflow_scripts" / module
    text = source.read_text()
    assert edit[0] in text, f"{module} no longer holds {edit[0]!r}: update this test"
    source.write_text(text.replace(edit[0], edit[1]))
    base = ("--configfile", str(finished / "run.yaml"), "--cores", "2", "-n")
    unchanged = snakemake(finished, *base)
    assert "Nothing to be done" in unchanged.stdout + unchanged.stderr, unchanged.stdout[-2000:]
    # The copy's Snakefile puts its own folder first on sys.path: the edited package is the one imported.
    edited = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(copy / "Snakefile"), "--directory",
                             str(finished), *base], capture_output=True, text=True, env=subprocess_env())
    assert edited.returncode == 0, edited.stderr[-3000:]
    plan = planned(edited)
    assert plan.get(first) == 1 and plan.get("pretrain_connector") == 1 and plan.get("tables") == 1, plan
    assert ("toy_world" in plan) == (first == "toy_world")


@pytest.mark.reruns
def test_deleted_delta_rebuilds_its_cell_when_its_record_is_asked_for(finished):
    work = finished
    lr = chosen(work)["layernorm"]
    delta = work / f"{R}/finetune/{LLM}/layernorm/{lr}/trainable_delta.safetensors"
    os.chmod(delta, 0o644)
    delta.unlink()
    target = f"{R}/finetune/{LLM}/layernorm/{lr}/efficiency.json"
    plan, ran = dry_then_run(work, target)
    assert plan == ran == {"finetune": 1}
    assert delta.exists()
    # The study then re-scores the rebuilt cell and selects again (its other benchmarks follow the selection).
    dry = snakemake(work, "--configfile", str(work / "run.yaml"), "--cores", "2", "-n")
    calibrated = f"{LLM}/layernorm/{lr}" == SMOKE_EXPORT  # the calibration row exports this very cell
    assert planned(dry) == {"evaluate": 1, "select_lr": 1, "tables": 1, "figures": 1, "all": 1,
                            **(CALIBRATION_JOBS if calibrated else {})}


@pytest.mark.reruns
def test_two_configs_in_one_checkout_stay_apart(finished):
    work = finished
    other = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    other.update(data_root="resources/other/data", results_root="results/other")
    other["toy_world"]["root"] = "resources/other"
    other["vision"]["path"] = "resources/other/models/vision"
    other["models"][LLM]["path"] = "resources/other/models/llm"
    (work / "other.yaml").write_text(yaml.safe_dump(other))
    before = mtimes(work, "resources/smoke/**/*") | mtimes(work, f"{R}/**/*")
    run = snakemake(work, "--configfile", str(work / "other.yaml"), "--cores", "2",
                    "results/other/preflight/inputs.json")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (work / "resources/other/data/cc3m/Train_GCC-training.tsv").exists()
    assert (work / "results/other/logs/preflight/preflight.log").exists()
    assert mtimes(work, "resources/smoke/**/*") | mtimes(work, f"{R}/**/*") == before
    again = snakemake(work, "--configfile", str(work / "run.yaml"), "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]


def test_config_keeps_the_toy_world_inside_its_root(smoke_config):
    config = dict(smoke_config, data_root="resources/real_data")
    with pytest.raises(study.ConfigError, match="data_root.*inside toy_world.root"):
        study.check_config(config)
    config = json.loads(json.dumps(smoke_config))
    config["models"][LLM]["path"] = "resources/toy/models/llm"  # another config's toy model
    with pytest.raises(study.ConfigError, match=f"models.{LLM}.path"):
        study.check_config(config)


def test_toy_world_refuses_a_data_root_it_did_not_write(tmp_path):
    from workflow_scripts.toyworld import world

    data = tmp_path / "data"
    (data / "coco").mkdir(parents=True)
    (data / "coco" / "000000000009.jpg").write_bytes(b"a real image")
    with pytest.raises(world.ForeignDataError, match="did not write"):
        world.claim_data_root(data)
    empty = tmp_path / "fresh"
    (empty / "made_by_snakemake").mkdir(parents=True)  # empty output folders do not count
    world.claim_data_root(empty)
    (empty / "made_by_snakemake" / "file").write_text("ours")
    world.claim_data_root(empty)  # ours: may be regenerated


def test_a_results_root_belongs_to_one_data_root(tmp_path, smoke_config):
    config = dict(smoke_config, results_root=str(tmp_path / "results"), data_root="resources/smoke/data")
    (tmp_path / "results/preflight").mkdir(parents=True)
    (tmp_path / "results/preflight/inputs.json").write_text(json.dumps({"data_root": "resources/toy/data"}))
    with pytest.raises(study.ConfigError, match="results_root.*resources/toy/data"):
        study.check_results_root(config)
    (tmp_path / "results/preflight/inputs.json").write_text(json.dumps({"data_root": "resources/smoke/data"}))
    study.check_results_root(config)
