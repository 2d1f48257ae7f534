"""The few collective operations a training job needs, each a no-op in a plain one-process run.

A job runs as N processes (torchrun: one per GPU; on CPU, gloo). The rules they keep: every rank joins every
collective (the gathers for saving included), only rank 0 writes outputs, and nothing is deleted before every
rank is past the point where it might still read it (``barrier``).
"""

from __future__ import annotations

import os

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
    """End a job's process group once every rank is done: a rank that exits while another still holds the group
    open can abort at interpreter exit ("terminate called without an active exception", seen on a halving rung).
    A one-process run keeps its group (accelerate caches it for later runs in the same process)."""
    if initialized() and world()[1] > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


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
