"""Many processes, one run: torchrun's environment, PyTorch's collectives, nothing home-made.

`torchrun` starts the processes and sets RANK / WORLD_SIZE / LOCAL_RANK; `init_world` joins the
process group (NCCL on GPUs, gloo on CPUs). A single process without torchrun is a world of one,
and every helper here is then a no-op, so the training loop has one code path.

Invariants the loop relies on:
- every rank takes the same stop decision at the same step (`agree`), so none waits forever
  in a collective that the others have left;
- only rank 0 writes files (metrics, checkpoints, run.json); the others wait at a barrier;
- state saved by N processes is a full, unsharded state dict, so M processes can resume it.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True, slots=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(timeout_minutes: float = 10.0) -> World:
    """Join torchrun's process group if there is one; else a world of one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    return World(rank=rank, size=size, local_rank=local, device=device)


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def agree(flag: bool, world: World) -> bool:
    """True on every rank if it is True on any rank: one stop decision for all."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_collective_device(world))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_across(value: float, world: World) -> float:
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device(world))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item() / world.size)


def sum_across(value: float, world: World) -> float:
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device(world))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def _collective_device(world: World) -> torch.device:
    return world.device if world.device.type == "cuda" else torch.device("cpu")
