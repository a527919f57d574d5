"""Training on several processes through torchrun: detection, the process group, and the few collectives fit uses.

``torchrun --nproc_per_node N -m edgekit train RECIPE`` starts N copies of edgekit with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` (and the rendezvous address) in their environment. edgekit reads
them, joins one process group (NCCL between GPUs, Gloo on the CPU) and trains one model with
DistributedDataParallel. Rank 0 alone writes files; every rank reads the same run folder, so
several nodes need a shared file system for ``--resume``.

A process not started by torchrun, or started with ``WORLD_SIZE=1``, is a lone process: nothing
here initializes anything for it, and training behaves exactly as without this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgekit.errors import ConfigError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """Where this process stands among the training processes.

    Attributes:
        rank: 0 .. size-1 over every node; rank 0 writes checkpoints, logs and artifacts.
        size: the number of processes; 1 for a lone process.
        local_rank: the index on this node, which picks the GPU.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def from_env(environ: Mapping[str, str] | None = None) -> World | None:
    """The world torchrun describes in the environment, or None when torchrun did not start this process.

    Raises:
        ConfigError: when the variables are there but not integers in range.
    """
    environ = os.environ if environ is None else environ
    if not all(k in environ for k in TORCHRUN_VARIABLES):
        return None
    try:
        rank, size, local = (int(environ[k]) for k in TORCHRUN_VARIABLES)
    except ValueError:
        shown = ", ".join(f"{k}={environ[k]!r}" for k in TORCHRUN_VARIABLES)
        raise ConfigError(f"torchrun environment is not integers: {shown}") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ConfigError(f"torchrun environment out of range: RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local}")
    return World(rank, size, local)


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is one of several that torchrun started (WORLD_SIZE > 1)."""
    world = from_env(environ)
    return world is not None and world.distributed


def init(device: str = "auto") -> World:
    """Join the process group torchrun describes; a lone process gets ``World()`` and nothing is initialized.

    Args:
        device: the recipe's ``train.device``; NCCL is used when it allows CUDA and a GPU is there, Gloo otherwise.

    Returns:
        This process's World.

    Raises:
        ConfigError: a malformed torchrun environment, or more local ranks than GPUs.

    Example:
        >>> world = init("auto")   # under torchrun --nproc_per_node 2: World(rank=0 or 1, size=2, ...)
    """
    import torch
    import torch.distributed as dist

    world = from_env()
    if world is None or not world.distributed:
        return World()
    if dist.is_initialized():
        return current()
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {world.local_rank} but only {torch.cuda.device_count()} GPU(s) here: "
                              f"start at most that many processes per node (torchrun --nproc_per_node)")
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return world


def current() -> World:
    """The World of the initialized process group, or a lone process when there is none."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable value such as a path); the value itself when alone."""
    import torch.distributed as dist

    if not current().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: list[float], device=None) -> list[float]:
    """The element-wise sum of ``values`` over every rank (float64); ``values`` unchanged when alone."""
    import torch
    import torch.distributed as dist

    if not current().distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def finish() -> None:
    """Wait for every rank, then leave the process group (a no-op when alone)."""
    import torch.distributed as dist

    if current().distributed:
        dist.barrier()
        dist.destroy_process_group()
