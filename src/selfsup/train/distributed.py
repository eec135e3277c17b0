"""Many processes, one run: torchrun launches them, torch.distributed moves the gradients.

selfsup does not ship its own distributed engine. `torchrun` (or `selfsup train --nproc N`, which
calls it) starts the processes and sets RANK / WORLD_SIZE / LOCAL_RANK; this module turns that
into a `World` the loop asks four things of:

- how the global batch is split. An optimizer step always consumes `grad_accum` micro-batches
  of `batch_size` blocks, in the order `DataOrder` gives, whatever the number of processes.
  The step's blocks, micro-batch after micro-batch, are cut into W equal runs and rank r takes
  run r (`my_pieces`): whole micro-batches where `grad_accum` is a multiple of W, else rows of
  them. A micro-batch's masks are drawn for the whole micro-batch (seeded by its global index)
  and each rank keeps its rows, so the global batch, the data order and the objectives' masks
  are those of a 1-process run; `batch_size × grad_accum` must be a multiple of W. A piece's
  loss is weighted by its share of the micro-batch's labelled tokens and scaled by
  W / grad_accum; DDP and FSDP average over ranks, which gives the 1-process mean.
- how the model is wrapped: DDP (`parallel = "ddp"`, every rank holds the whole model) or FSDP2
  (`parallel = "fsdp"`, `fully_shard` per transformer block and at the root: parameters,
  gradients and optimizer state are sharded).
- full states for checkpoints: under FSDP every rank takes part in gathering the full model and
  optimizer state (torch.distributed.checkpoint.state_dict), rank 0 writes them in the same
  format as a 1-process run. So a checkpoint saved by N processes resumes on M.
- agreement: a stop (SIGTERM on one rank, a time budget measured by each rank's clock) or a
  checkpoint "due by the minute" is decided by all-reducing a flag, so no rank waits alone in a
  collective. Collectives carry tensors only; nothing is pickled (`broadcast_object_list`
  would pickle).

A rank that dies makes the others' next collective fail (gloo: connection closed; NCCL: the
process-group timeout), torchrun then stops the rest and exits non-zero.
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from selfsup.errors import ConfigError, StageFailure

# A lost rank should end the run with an error, not leave the others waiting for hours.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=float(os.environ.get("SELFSUP_DIST_TIMEOUT_MINUTES", "10")))


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    parallel: str = "none"  # "none" (one process), "ddp" or "fsdp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def my_pieces(self, grad_accum: int, batch_size: int) -> list[tuple[int, int, int]]:
        """(micro-batch, first row, end row) of each piece this rank computes in every step, in order.

        The step's `grad_accum × batch_size` rows, micro-batch after micro-batch, cut into `size` equal
        runs: run `rank` is this rank's. Every row is some rank's exactly once (check_split makes the
        cut even)."""
        share = grad_accum * batch_size // self.size
        start, end = self.rank * share, (self.rank + 1) * share
        pieces = []
        for micro in range(start // batch_size, (end - 1) // batch_size + 1):
            lo, hi = max(start, micro * batch_size), min(end, (micro + 1) * batch_size)
            pieces.append((micro, lo - micro * batch_size, hi - micro * batch_size))
        return pieces

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP or FSDP2 around the model; the model itself when alone."""
        if self.parallel == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for block in transformer_blocks(model):
                fully_shard(block)
            fully_shard(model)
            return model
        if self.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            device = next(model.parameters()).device
            ids = [device.index] if device.type == "cuda" else None
            return DistributedDataParallel(model, device_ids=ids)
        return model

    def no_sync(self, wrapped: torch.nn.Module, last_micro: bool):
        """Skip the gradient all-reduce for all but a rank's last micro-batch of a step."""
        if last_micro or self.size == 1:
            return nullcontext()
        if self.parallel == "fsdp":
            return _fsdp_no_sync(wrapped)
        return wrapped.no_sync()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (losses, token counts)."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        _all_reduce(t, dist.ReduceOp.SUM)
        return t.tolist()

    def any(self, *flags: bool) -> list[bool]:
        """Each flag true on some rank → true on every rank: one small all-reduce for all of them."""
        if not self.distributed:
            return list(flags)
        t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=_collective_device())
        _all_reduce(t, dist.ReduceOp.MAX)
        return [bool(x) for x in t.tolist()]

    def barrier(self) -> None:
        if self.distributed:
            try:
                dist.barrier()
            except Exception as exc:  # noqa: BLE001 - a peer died; say so instead of a gloo traceback
                raise peer_lost(exc) from exc

    def full_states(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        """(model state, optimizer state) as a 1-process run would save them, or (None, None) to save as is.

        Under FSDP every rank must call this (it gathers); only rank 0 gets the tensors back.
        """
        if self.parallel != "fsdp":
            return None, None
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state = get_model_state_dict(model, options=options)
        optim_state = get_optimizer_state_dict(model, optimizer, options=options)
        if not self.is_main:
            return None, None
        # A tied output head is the embedding: saved once, as a 1-process save_pretrained does.
        own = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
        model_state = {k: v for k, v in model_state.items() if k in own}
        return model_state, optimizer_state_by_index(model, optimizer, optim_state)

    def load_states(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None):
        """How a checkpoint's full states go into this world's model and optimizer."""
        if self.parallel != "fsdp":
            return None  # load_checkpoint's default: load_state_dict on the plain module
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, strict=False)

        def apply(weights: dict[str, torch.Tensor], optimizer_state: dict[str, Any] | None) -> None:
            set_model_state_dict(model, weights, options=options)
            if optimizer is not None and optimizer_state is not None:
                by_name = optimizer_state_by_name(model, optimizer, optimizer_state)
                set_optimizer_state_dict(model, optimizer, by_name, options=options)

        return apply


def init_world(parallel: str) -> World:
    """Join the process group torchrun describes in the environment; a World of one otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:  # nothing to share with: DDP or FSDP over one process is the plain loop
        return World(parallel="none")
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    return World(rank=rank, size=size, local_rank=local_rank, parallel=parallel if parallel != "none" else "ddp")


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def check_split(world: World, grad_accum: int, batch_size: int, objectives=()) -> None:
    """The global batch must split evenly over the ranks: in rows, or in whole micro-batches where one of
    `objectives` (names) ranks a micro-batch's rows against each other (contrastive's in-batch negatives)."""
    size, blocks = world.size, batch_size * grad_accum
    if "contrastive" in objectives and grad_accum % size:
        raise ConfigError(
            f"[train] grad_accum = {grad_accum} micro-batches per step cannot be shared by {size} processes: the "
            f"contrastive loss ranks each query against its whole micro-batch, so a micro-batch stays on one process; "
            f"set grad_accum to a multiple of {size} (and batch_size to {max(1, batch_size * grad_accum // size)} to "
            f"keep the global batch of {blocks})"
        )
    if blocks % size:
        raise ConfigError(
            f"[train] the global batch of batch_size × grad_accum = {batch_size} × {grad_accum} = {blocks} blocks cannot "
            f"be shared by {size} processes; make it a multiple of {size} (e.g. batch_size = "
            f"{-(-batch_size // size) * size}), whatever the number of processes it is the same training"
        )


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks FSDP shards one by one: the ModuleList as long as the model has layers."""
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0 and (n_layers is None or len(module) == n_layers):
            return list(module)
    return []


def optimizer_state_by_index(model, optimizer, state_by_name: dict[str, Any]) -> dict[str, Any]:
    """torch.distributed.checkpoint's name-keyed optimizer state → `optimizer.state_dict()`'s index-keyed form."""
    names = _names_in_optimizer_order(model, optimizer)
    index = {name: i for i, name in enumerate(names)}
    groups = []
    for group in state_by_name["param_groups"]:
        groups.append({**group, "params": [index[n] for n in group["params"]]})
    state = {index[name]: value for name, value in state_by_name["state"].items()}
    return {"state": state, "param_groups": groups}


def optimizer_state_by_name(model, optimizer, state_by_index: dict[str, Any]) -> dict[str, Any]:
    names = _names_in_optimizer_order(model, optimizer)
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state_by_index["param_groups"]]
    state = {names[int(i)]: value for i, value in state_by_index["state"].items()}
    return {"state": state, "param_groups": groups}


def _names_in_optimizer_order(model, optimizer) -> list[str]:
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_grad_norm(norm: torch.Tensor) -> float:
    """clip_grad_norm_'s result as a float; under FSDP it is a DTensor to be made whole first."""
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm.item())


def _fsdp_no_sync(model):
    @contextmanager
    def ctx():
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    return ctx()


def _collective_device() -> torch.device:
    backend = dist.get_backend() if dist.is_initialized() else "gloo"
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def _all_reduce(t: torch.Tensor, op) -> None:
    try:
        dist.all_reduce(t, op=op)
    except Exception as exc:  # noqa: BLE001 - see peer_lost
        raise peer_lost(exc) from exc


def peer_lost(exc: BaseException) -> StageFailure:
    return StageFailure(
        f"another training process stopped or cannot be reached ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
        "this process stops too. Run the same command again to resume from the last checkpoint"
    )
