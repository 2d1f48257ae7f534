"""Lease GPU ids for one job on a local node, then run the job on them.

Snakemake's ``--resources gpu=N`` only counts GPUs; it does not say which. Each job therefore takes an
exclusive ``flock`` on one lock file per GPU id it uses, sets ``CUDA_VISIBLE_DEVICES`` to those ids and
replaces itself with the job's command (``exec``). The lock files stay open in the command and every process
it starts (torchrun's workers included), so the lease ends exactly when the last of them exits — the kernel
drops the locks even on SIGKILL; no cleanup step can be skipped.

Under a cluster scheduler (SLURM sets ``SLURM_JOB_ID``) or when ``CUDA_VISIBLE_DEVICES`` is already set, the
scheduler's assignment stands and the command runs unchanged.

    python -m workflow_scripts.gpu_lease --gpus 2 -- torchrun --standalone --nproc-per-node 2 -m ...

With ``--launch`` the command is Python's arguments (``-m module ...``) and the lease also starts them: plain
``python`` for ``--gpus 0``, else ``torchrun`` with one worker per GPU and 4 OpenMP threads each (Snakemake exports
OMP_NUM_THREADS=threads for the whole job). The rules call it so with ``--gpus {resources.gpu}``: the GPU count is a
resource, not a param, so moving the study to a node with another GPU count retrains nothing (N workers train
one worker's model; tests/test_distributed.py).

    python -m workflow_scripts.gpu_lease --gpus 4 --launch -- -m workflow_scripts.train.finetune ...
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_LOCK_DIR = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mllm-gpu-locks-{os.getuid()}")


def gpu_count() -> int:
    """GPUs on this node: ``GPU_LEASE_COUNT`` when set (tests, or to keep GPUs back), else ``nvidia-smi``."""
    forced = os.environ.get("GPU_LEASE_COUNT")
    if forced is not None:
        return int(forced)
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return len([line for line in out.splitlines() if line.strip()])


def scheduler_assigned() -> bool:
    """True when something else already chose this job's GPUs."""
    return "SLURM_JOB_ID" in os.environ or "CUDA_VISIBLE_DEVICES" in os.environ


def try_lease(n: int, total: int, lock_dir: str) -> tuple[list[int], list[int]]:
    """Lock ``n`` free GPU ids without waiting; returns (ids, open fds), or ([], []) when fewer are free."""
    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    ids, fds = [], []
    for gpu in range(total):
        fd = os.open(os.path.join(lock_dir, f"gpu{gpu}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        ids.append(gpu)
        fds.append(fd)
        if len(ids) == n:
            return ids, fds
    for fd in fds:  # not enough: give back the partial lease so two waiting jobs cannot deadlock
        os.close(fd)
    return [], []


def lease(n: int, lock_dir: str = DEFAULT_LOCK_DIR, poll_s: float = 2.0, timeout_s: float | None = None,
          total: int | None = None, say=None, say_every_s: float = 60.0) -> tuple[list[int], list[int]]:
    """Wait until ``n`` GPU ids are free and lock them; returns (ids, fds). The fds must stay open. While it
    waits, ``say`` (if given) is told what for, at once and every ``say_every_s``."""
    total = gpu_count() if total is None else total
    if n > total:
        raise SystemExit(f"gpu_lease: the job asks for {n} GPUs but this node has {total} "
                         f"(lower gpus: in the config, or set GPU_LEASE_COUNT)")
    start = said = time.monotonic()
    first = True
    while True:
        ids, fds = try_lease(n, total, lock_dir)
        if ids:
            return ids, fds
        if say is not None and (first or time.monotonic() - said >= say_every_s):
            say(f"gpu_lease: waiting for {n} of {total} GPUs to be free (locks in {lock_dir}; held by other jobs), "
                f"{time.monotonic() - start:.0f} s so far")
            said, first = time.monotonic(), False
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise SystemExit(f"gpu_lease: no {n} free GPUs within {timeout_s:.0f} s (locks in {lock_dir})")
        time.sleep(poll_s)


OMP_THREADS_PER_WORKER = "4"


def launch_command(gpus: int, python_args: list[str]) -> tuple[list[str], dict]:
    """(command, environment additions) that run ``python_args``: one process on CPU (``gpus`` 0), else torchrun
    with a worker per GPU."""
    if gpus <= 0:
        return [sys.executable, *python_args], {}
    return ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(gpus),
             *python_args], {"OMP_NUM_THREADS": OMP_THREADS_PER_WORKER})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, required=True)
    ap.add_argument("--lock-dir", default=os.environ.get("GPU_LEASE_DIR", DEFAULT_LOCK_DIR))
    ap.add_argument("--timeout", type=float, default=None, help="give up after this many seconds of waiting")
    ap.add_argument("--launch", action="store_true",
                    help="the command is python's arguments: run them with python (no GPUs) or torchrun (a worker "
                         "per GPU)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command given after --")
    if args.gpus > 0 and not scheduler_assigned():
        ids, fds = lease(args.gpus, args.lock_dir, timeout_s=args.timeout,
                         say=lambda msg: print(msg, file=sys.stderr, flush=True))
        for fd in fds:
            os.set_inheritable(fd, True)  # the command and its workers hold the lease
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids))
        print(f"gpu_lease: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}", file=sys.stderr, flush=True)
    if args.launch:
        command, env = launch_command(args.gpus, command)
        os.environ.update(env)
        # jobs read the folders the fetch stage filled: a model the fetch missed fails here, not on a compute node
        # racing the hub (and its N ranks with it)
        os.environ["HF_HUB_OFFLINE"] = "1"
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
