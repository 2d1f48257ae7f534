"""What profiles/slurm asks SLURM for, per rule, on the paper's config — without a cluster (part of `make test`).

A dry run with the profile shows each job's resources; the pinned executor plugin's own functions then turn one
job's resources into the sbatch flags it would submit. `make test-slurm` submits for real (tests/test_slurm.py).
"""

from __future__ import annotations

import re

from conftest import REPO, paper_config_file, snakemake
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string


def job_resources(stdout: str) -> dict[str, list[dict[str, str]]]:
    """rule -> the `resources:` of each of its jobs in a dry run's output."""
    jobs: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in stdout.splitlines():
        if m := re.match(r"(?:local)?rule (\w+):", line.strip()):
            rule = m.group(1)
        elif line.strip().startswith("resources:") and rule:
            pairs = (p.split("=", 1) for p in line.strip()[len("resources:"):].split(", "))
            jobs.setdefault(rule, []).append({k.strip(): v for k, v in pairs})
    return jobs


def test_dry_run_of_the_paper_config_shows_each_rules_requests(tmp_path):
    path = paper_config_file(tmp_path)
    dry = snakemake(tmp_path, "--configfile", str(path), "--profile", str(REPO / "profiles/slurm"), "-n",
                    "results/finetune/vicuna-13b/finetune/2e-05/efficiency.json",
                    "results/eval/vicuna-7b/layernorm/2e-05/flickr30k/metrics.json", timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = job_resources(dry.stdout)
    # GPU counts come from config.yaml's gpus: (4 per finetune of either size, 4 for stage 1, 1 to evaluate).
    wanted = {"pretrain_connector": {"gpu": "4", "slurm_partition": "gpu", "mem_mb": "256000", "runtime": "4320",
                                     "cpus_per_task": "32"},
              "finetune": {"gpu": "4", "slurm_partition": "gpu", "mem_mb": "256000", "runtime": "1440",
                           "cpus_per_task": "32"},
              "evaluate": {"gpu": "1", "slurm_partition": "gpu", "mem_mb": "64000", "runtime": "240",
                           "cpus_per_task": "8"},
              "preflight": {"slurm_partition": "cpu", "mem_mb": "16000", "runtime": "60", "cpus_per_task": "4"},
              "download_cc3m": {"slurm_partition": "cpu", "mem_mb": "32000", "runtime": "1440",
                                "cpus_per_task": "16"}}
    for rule, expected in wanted.items():
        assert jobs.get(rule), (rule, sorted(jobs))
        for resources in jobs[rule]:
            assert {k: resources.get(k) for k in expected} == expected, (rule, resources)
            assert resources["slurm_account"] == "your_account"
    assert "gpu" not in jobs["preflight"][0]


class _Resources(dict):
    __getattr__ = dict.__getitem__


class _Job:
    """The attributes of a Snakemake job that the plugin's submit-string builders read."""

    def __init__(self, resources: dict, threads: int = 2):
        self.resources, self.threads = _Resources(resources), threads
        self.is_group = lambda: False


def test_the_plugin_turns_a_gpu_rule_into_gpus_cpus_memory_and_time():
    """The plugin's own flag builders on a 13B finetune's resources (as in the dry run above)."""
    params = {"run_uuid": "run", "slurm_logfile": "log", "comment_str": "rule_finetune", "account": " -A acct",
              "partition": " -p gpu", "workdir": "/work"}
    finetune = _Job({"gpu": 4, "mem_mb": 256000, "runtime": 1440, "cpus_per_task": 32, "tasks_per_gpu": 0,
                     "slurm_partition": "gpu"})
    call = get_submit_command(finetune, params) + set_gres_string(finetune)
    for flag in ("-A acct", "-p gpu", "-t 1440", "--mem 256000", "--cpus-per-task=32", "--gpus=4"):
        assert flag in call, (flag, call)
    assert "--ntasks-per-gpu" not in call  # one task: torchrun starts the workers
    cpu_job = _Job({"mem_mb": 16000, "runtime": 60, "cpus_per_task": 4, "tasks": 1})
    call = get_submit_command(cpu_job, params) + set_gres_string(cpu_job)
    assert "--gpus" not in call and "--ntasks=1" in call and "--cpus-per-task=4" in call
