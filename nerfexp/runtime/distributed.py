"""Data-parallel training across processes (``torchrun``, Slurm tasks): who this process is, and the few
collectives the trainer needs.

One process per device; gloo on the CPU, NCCL on CUDA. Gradients are averaged with one explicit all-reduce of
every gradient in a single flat buffer (DistributedDataParallel assumes every parameter is used the same way on
every rank, which a hash table or an occupancy-culled batch does not promise). Outside a distributed launch
everything here is a no-op on a world of one.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run dir, metrics, checkpoints, images and the W&B run."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def shard(self, n: int) -> list[int]:
        """This rank's share of ``n`` items (views, video frames): every ``size``-th from ``rank``."""
        return list(range(self.rank, n, self.size))


SINGLE = World()


def launch_environment(env: dict[str, str] | None = None) -> World:
    """The world described by the launcher's environment: torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, else
    in a job submitted by submitit (Hydra's submitit launcher with ``tasks_per_node``, one task per device) Slurm's
    ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``, else a world of one. (A plain ``python train.py`` inside
    an ``salloc`` shell, which also sets ``SLURM_NTASKS``, stays a world of one.)"""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env:
        return World(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if (env.get("SUBMITIT_EXECUTOR") == "slurm" and int(env.get("SLURM_NTASKS", 1)) > 1
            and "SLURM_PROCID" in env):
        return World(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return SINGLE


def init_world(device: torch.device, timeout_s: float = 1800.0) -> World:
    """Join the process group the launcher described (gloo on the CPU, NCCL on CUDA) and return this process's
    place in it; a world of one when not launched distributed. Under Slurm without torchrun the rendezvous
    address comes from submitit's helper (the first node of the job)."""
    world = launch_environment()
    if not world.active:
        return world
    if dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), world.local_rank)
    if "MASTER_ADDR" not in os.environ:  # Slurm tasks: torchrun did not set up the rendezvous
        try:
            from submitit.helpers import TorchDistributedEnvironment
        except ImportError as exc:
            raise RuntimeError(f"{world.size} Slurm tasks but no MASTER_ADDR: launch with torchrun, or install "
                               "submitit (pip install hydra-submitit-launcher) to find the job's first node") from exc
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=timedelta(seconds=timeout_s))
    log.info("rank %d of %d (local rank %d), backend %s", world.rank, world.size, world.local_rank, backend)
    return world


def device_for(world: World, device: torch.device) -> torch.device:
    """One CUDA device per local rank; the CPU as given."""
    if device.type == "cuda" and world.active and device.index is None:
        return torch.device("cuda", world.local_rank % torch.cuda.device_count())
    return device


def average_gradients(params: Sequence[torch.nn.Parameter], world: World, flags: Sequence[float] = ()) \
        -> list[float]:
    """Replace every gradient by its mean over the ranks, in one all-reduce, and return the ranks' sums of
    ``flags`` (e.g. one per rank whose loss was not finite).

    A parameter without a gradient on some rank counts as zero there; one without a gradient on every rank keeps
    ``grad=None``, so the optimiser skips it exactly as a single process would."""
    if not world.active:
        return list(flags)
    device = params[0].device if params else torch.device("cpu")
    grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=device, dtype=p.dtype)
             for p in params]
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    extra = torch.tensor(list(flags), dtype=torch.float32, device=device)
    flat = torch.cat([g.float() for g in grads] + [has_grad, extra])
    dist.all_reduce(flat)
    n_grad = sum(g.numel() for g in grads)
    used = flat[n_grad:n_grad + len(params)] > 0
    offset = 0
    for p, g, any_grad in zip(params, grads, used.tolist()):
        mean = flat[offset:offset + g.numel()].view_as(p).div_(world.size).to(p.dtype)
        offset += g.numel()
        if any_grad:
            p.grad = mean if p.grad is None else p.grad.copy_(mean)
    return flat[n_grad + len(params):].tolist()


def agree_max(values: Sequence[float], world: World) -> list[float]:
    """The maximum of each value over the ranks: every rank takes the same decision (stop, checkpoint) from the
    same numbers (the slowest rank's step time, any rank's stop signal)."""
    if not world.active:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def broadcast_module(module: torch.nn.Module, world: World, parameters: bool = True) -> None:
    """Rank 0's parameters (unless ``parameters=False``) and buffers on every rank: an identical start, an
    identical occupancy grid."""
    if not world.active:
        return
    with torch.no_grad():
        for t in [*(module.parameters() if parameters else ()), *module.buffers()]:
            if t.dtype == torch.bool:  # gloo has no bool: through bytes
                as_bytes = t.data.to(torch.uint8)
                dist.broadcast(as_bytes, 0)
                t.data.copy_(as_bytes.bool())
            else:
                dist.broadcast(t.data, 0)


def broadcast_object(obj: T, world: World) -> T:
    """Rank 0's ``obj`` on every rank (a run dir, a resolved config)."""
    if not world.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's ``obj`` in rank order, on every rank."""
    if not world.active:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def gather_to_main(obj: Any, world: World) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0 (rendered views: only rank 0 holds them all); None elsewhere."""
    if not world.active:
        return [obj]
    out: list[Any] | None = [None] * world.size if world.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def merge_shards(shards: Iterable[list[tuple[int, T]]]) -> list[T]:
    """Items rendered by each rank as ``(index, item)`` pairs, back in index order."""
    return [item for _, item in sorted((pair for shard in shards for pair in shard), key=lambda p: p[0])]


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def close_world(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()
