"""The few collective operations a training job needs, each a no-op in a plain one-process run.

A job runs as N processes (torchrun: one per GPU; on CPU, gloo). The rules they keep: every rank joins every
collective (the gathers for saving included), only rank 0 writes outputs, and nothing is deleted before every
rank is past the point where it might still read it (``barrier``).
"""

from __future__ import annotations

import logging
import os
import sys

import torch


def world() -> tuple[int, int]:
    """(rank, world size) as torchrun / the deepspeed launcher set them; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    """Wait until every rank gets here (no-op without a process group)."""
    if initialized():
        torch.distributed.barrier()


def finish() -> None:
    """End a multi-worker job once every rank is done, and leave without interpreter teardown.

    A two-worker halving rung aborted twice in `make test-distributed` (once here, once in CI) after writing its
    outputs: "terminate called without an active exception", rank 1 exit -6, before and after this function
    destroyed the process group.
    Gloo's worker threads can still hold tensors when Python finalizes, and releasing them then needs the GIL
    (pytorch/pytorch#179291). Every output is written and closed before this point, so the process ends with
    ``os._exit(0)`` once streams and log handlers are flushed. A one-process run returns normally (accelerate caches
    its group for later runs in the same process, as the tests do)."""
    if not (initialized() and world()[1] > 1):
        return
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def sum_over_ranks(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks, in float64 (the values themselves without a group)."""
    if not initialized() or torch.distributed.get_world_size() == 1:
        return list(values)
    backend = torch.distributed.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def threads_per_worker(threads: int) -> int:
    """A job's CPU threads shared among the workers torchrun started on this node (at least 1 each)."""
    return max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
