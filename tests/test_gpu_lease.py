"""GPU leases: concurrent jobs on a node with a fake GPU count never share an id, and a SIGKILLed job's lease
is released by the kernel."""

import json
import os
import signal
import subprocess
import sys
import time

from workflow_scripts import gpu_lease

# The leased job: record which ids it got and when it held them.
JOB = ("import json, os, sys, time; t0 = time.time(); time.sleep(0.4); "
       "print(json.dumps({'ids': os.environ['CUDA_VISIBLE_DEVICES'], 'start': t0, 'end': time.time()}))")


def lease_env(tmp_path, count):
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    env.update(GPU_LEASE_COUNT=str(count), GPU_LEASE_DIR=str(tmp_path / "locks"))
    return env


def start_job(env, gpus, code=JOB):
    return subprocess.Popen([sys.executable, "-m", "workflow_scripts.gpu_lease", "--gpus", str(gpus), "--timeout",
                             "60", "--", sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)


def test_concurrent_jobs_never_share_a_gpu(tmp_path):
    env = lease_env(tmp_path, 3)
    jobs = [start_job(env, gpus) for gpus in (1, 2, 1, 2, 1, 3, 1, 2)]
    runs = []
    for job in jobs:
        out, _ = job.communicate(timeout=120)
        assert job.returncode == 0
        runs.append(json.loads(out))
    for run, gpus in zip(runs, (1, 2, 1, 2, 1, 3, 1, 2)):
        ids = [int(i) for i in run["ids"].split(",")]
        assert len(ids) == gpus and len(set(ids)) == gpus and all(0 <= i < 3 for i in ids)
    overlapping_pairs = 0
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                overlapping_pairs += 1
                assert not set(a["ids"].split(",")) & set(b["ids"].split(",")), (a, b)
    assert overlapping_pairs > 0  # jobs did run side by side, so the check above meant something


def test_sigkill_releases_the_lease(tmp_path):
    env = lease_env(tmp_path, 1)
    holder = start_job(env, 1, code="import time; print('held', flush=True); time.sleep(60)")
    assert holder.stdout.readline().strip() == "held"
    assert gpu_lease.try_lease(1, 1, str(tmp_path / "locks")) == ([], [])  # held by the live job
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    ids, fds = gpu_lease.try_lease(1, 1, str(tmp_path / "locks"))
    assert ids == [0]
    for fd in fds:
        os.close(fd)


def test_waits_for_a_busy_gpu_then_runs(tmp_path):
    env = lease_env(tmp_path, 1)
    first = start_job(env, 1)
    time.sleep(0.1)
    second = start_job(env, 1)
    a, b = (json.loads(job.communicate(timeout=60)[0]) for job in (first, second))
    assert a["ids"] == b["ids"] == "0"
    assert b["start"] >= a["end"] - 0.05


def test_scheduler_assignment_is_left_alone(tmp_path):
    env = lease_env(tmp_path, 2)
    env["SLURM_JOB_ID"] = "123"
    env["CUDA_VISIBLE_DEVICES"] = "5"
    out = subprocess.run([sys.executable, "-m", "workflow_scripts.gpu_lease", "--gpus", "2", "--",
                          sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "5"


def test_launch_runs_python_without_gpus_and_torchrun_with_a_worker_per_gpu(tmp_path):
    assert gpu_lease.launch_command(0, ["-m", "m", "--x"]) == ([sys.executable, "-m", "m", "--x"], {})
    command, env = gpu_lease.launch_command(4, ["-m", "m"])
    assert command == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4",
                       "-m", "m"]
    assert env == {"OMP_NUM_THREADS": "4"}
    # through the entry point, on 2 stand-in GPUs: two workers, each with its rank and the leased ids
    script = tmp_path / "worker.py"
    # one write per line: two workers share the pipe, and print() writes its items one by one when unbuffered
    script.write_text("import os, sys\ne = os.environ\n"
                      "sys.stdout.write(f\"W {e['RANK']} {e['CUDA_VISIBLE_DEVICES']} {e['OMP_NUM_THREADS']}\\n\")\n")
    out = subprocess.run([sys.executable, "-m", "workflow_scripts.gpu_lease", "--gpus", "2", "--launch", "--",
                          str(script)], env=lease_env(tmp_path, 2), capture_output=True, text=True, check=True).stdout
    assert sorted(line for line in out.splitlines() if line.startswith("W")) == ["W 0 0,1 4", "W 1 0,1 4"]


def test_more_gpus_than_the_node_has_is_refused(tmp_path):
    env = lease_env(tmp_path, 2)
    proc = subprocess.run([sys.executable, "-m", "workflow_scripts.gpu_lease", "--gpus", "4", "--", "true"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "asks for 4 GPUs but this node has 2" in proc.stderr


def test_a_waiting_job_says_what_it_waits_for(tmp_path):
    ids, fds = gpu_lease.try_lease(1, 1, str(tmp_path / "locks"))
    said = []
    try:
        gpu_lease.lease(1, str(tmp_path / "locks"), poll_s=0.05, timeout_s=0.3, total=1, say=said.append,
                        say_every_s=10)
    except SystemExit as e:
        assert "no 1 free GPUs within" in str(e)
    finally:
        for fd in fds:
            os.close(fd)
    assert len(said) == 1 and "waiting for 1 of 1 GPUs to be free" in said[0]
