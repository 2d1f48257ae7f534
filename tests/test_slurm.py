"""The smoke workflow through `profiles/slurm` on a real one-node SLURM cluster (`make test-slurm`).

tests/slurm/cluster.sh starts munged, MariaDB, slurmdbd, slurmctld and slurmd on this machine; these tests submit
with the pinned executor plugin, find every job in SLURM's accounting, compare the outputs with a local run of the
same workflow, and check that a job that fails in SLURM is reported as failed. Marked `slurm`: `make test` leaves
them out, `make test-slurm` (which CI runs) starts the cluster, runs them and stops it. Without a cluster they
fail, not skip: a green run must mean jobs went through sbatch.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake, subprocess_env
from safetensors.torch import load_file

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
ACCOUNT = "lntune_ci"  # created by cluster.sh
R = "results/smoke"
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


@functools.cache
def _cluster_env() -> tuple[str, str]:
    """(name, value) of the variable cluster.sh says clients need; asked once per session."""
    out = subprocess.run([str(CLUSTER), "env"], capture_output=True, text=True, check=True).stdout.strip()
    key, value = out.split("=", 1)
    return key, value


def slurm_env() -> dict:
    key, value = _cluster_env()
    return {**subprocess_env(), key: value}


def slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, env=slurm_env(), check=True, timeout=60).stdout


def accounting(job_ids: list[str]) -> dict[str, dict]:
    """sacct's record of each job: state, partition, account, the plugin's comment (rule and wildcards)."""
    out = slurm("sacct", "-X", "--parsable2", "--noheader", "-j", ",".join(job_ids),
                "--format=JobIdRaw,State,Partition,Account,Comment,ExitCode")
    rows = [line.split("|") for line in out.splitlines() if line]
    return {r[0]: {"state": r[1], "partition": r[2], "account": r[3], "comment": r[4], "exit": r[5]} for r in rows}


def profile_copy(tmp_path) -> Path:
    """profiles/slurm with only the account replaced, as a user edits it (partitions: the cluster's cpu, gpu)."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"]["slurm_account"] = ACCOUNT
    # Status checks every few seconds instead of the plugin's 40 s: the smoke jobs take seconds.
    profile["slurm-init-seconds-before-status-checks"] = 2
    (tmp_path / "slurm_profile").mkdir(parents=True, exist_ok=True)
    (tmp_path / "slurm_profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    return tmp_path / "slurm_profile"


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("sbatch") is None:
        pytest.fail("no SLURM here: run `make test-slurm` (it starts the cluster with tests/slurm/cluster.sh)")
    try:
        slurm("scontrol", "ping")
        partitions = set(slurm("sinfo", "-h", "-o", "%R").split())
    except subprocess.CalledProcessError as err:
        pytest.fail(f"the test cluster is not running ({err.stderr.strip()}): tests/slurm/cluster.sh start")
    assert {"cpu", "gpu"} <= partitions, partitions
    return partitions


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The smoke workflow's default target through the SLURM profile: (workdir, snakemake output)."""
    tmp_path = tmp_path_factory.mktemp("slurm_run")
    profile = profile_copy(tmp_path_factory.mktemp("profile"))
    proc = snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), "--profile", str(profile),
                     timeout=2400, env=slurm_env())
    output = proc.stdout + proc.stderr
    (tmp_path / "snakemake_slurm.log").write_text(output)
    assert proc.returncode == 0, output[-4000:]
    return tmp_path, output


def test_every_job_went_through_sbatch_once_and_completed(slurm_run):
    workdir, output = slurm_run
    submitted = SUBMITTED.findall(output)
    done = re.search(r"(\d+) of (\d+) steps \(100%\) done", output)
    assert done, output[-2000:]
    jobs_in_dag = int(done.group(2))
    # Every job but the target rule `all` (no action: nothing to submit) is one SLURM job.
    assert len(submitted) == jobs_in_dag - 1, (len(submitted), jobs_in_dag)
    slurm_ids = [sid for _, sid in submitted]
    assert len(set(slurm_ids)) == len(slurm_ids)
    print("SLURM job ids:", " ".join(slurm_ids))
    records = accounting(slurm_ids)
    assert set(records) == set(slurm_ids)
    assert {r["state"] for r in records.values()} == {"COMPLETED"}
    assert {r["account"] for r in records.values()} == {ACCOUNT}
    # One job per rule instance: the plugin's comment names rule and wildcards, and no two jobs share one.
    comments = [r["comment"] for r in records.values()]
    assert len(set(comments)) == len(comments)
    rules = {re.match(r"rule_([a-z0-9_]+?)(_wildcards_.*)?$", c).group(1) for c in comments}
    assert {"toy_world", "download_cc3m", "pretrain_connector", "finetune", "evaluate", "tables"} <= rules
    # The rules that ask for GPUs on a real node go to the gpu partition, the rest to cpu (profiles/slurm).
    for r in records.values():
        gpu_rule = r["comment"].startswith(("rule_finetune", "rule_pretrain_connector", "rule_evaluate"))
        assert r["partition"] == ("gpu" if gpu_rule else "cpu"), r


def test_outputs_equal_the_local_run(slurm_run, smoke_run):
    """The same tables, scores and trained deltas as the local run of the same workflow."""
    workdir, _ = slurm_run
    local = Path(smoke_run)
    for table in ("table1_main.csv", "lr_sweep.csv"):
        assert (workdir / R / "tables" / table).read_text() == (local / R / "tables" / table).read_text(), table
    deltas = sorted((local / R).glob("finetune*/**/trainable_delta.safetensors"))
    assert deltas
    for path in deltas:
        mine, theirs = load_file(workdir / path.relative_to(local)), load_file(path)
        assert mine.keys() == theirs.keys() and all((mine[k] == theirs[k]).all() for k in mine), path
    scores = sorted((local / R).glob("eval*/**/metrics.json"))
    assert scores
    for path in scores:
        mine, theirs = json.loads((workdir / path.relative_to(local)).read_text()), json.loads(path.read_text())
        mine.pop("provenance"), theirs.pop("provenance")  # paths and timings differ; the scores must not
        assert mine == theirs, path


def test_a_job_that_fails_in_slurm_is_reported_failed(slurm_run):
    """A broken input makes the `tables` job fail inside its SLURM allocation: Snakemake exits non-zero, names
    the rule and the SLURM job id, and sacct records the job as FAILED."""
    workdir, _ = slurm_run
    metrics = next((workdir / R / "eval_blind").glob("**/metrics.json"))  # a control row of Table 1
    metrics.write_text("{ not json")
    profile = profile_copy(workdir.parent / "failing")
    proc = snakemake(workdir, "--configfile", str(REPO / "config/smoke.yaml"), "--profile", str(profile),
                     "--forcerun", "tables", f"{R}/tables/table1_main.md", timeout=600, env=slurm_env())
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    failed = re.search(r"SLURM-job '(\d+)' failed, SLURM status is: '(\w+)'", output)
    assert failed and "Error in rule tables" in output, output[-3000:]
    record = accounting([failed.group(1)])[failed.group(1)]
    assert record["state"] == "FAILED" and record["comment"].startswith("rule_tables"), record
