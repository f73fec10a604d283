"""Sharding work across processes started by ``torchrun`` (``mmaif fuse ROOT``, ``mmaif eval``):
rank r of N takes items r, r + N, ...; results are gathered on rank 0 over gloo."""

from __future__ import annotations

import os


def rank_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def gather(obj) -> list | None:
    """Every rank's ``obj``, in rank order, on rank 0 (None on the others): the last collective
    of a sharded command. It ends with a barrier and tears the process group down on every
    rank, so no rank exits while another still talks to it (a rank leaving a live gloo group
    can abort the other when the machine is loaded)."""
    rank, world = rank_world()
    if world == 1:
        return [obj]
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    out = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    dist.barrier()
    dist.destroy_process_group()
    return out
