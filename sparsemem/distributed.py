"""Data-parallel training under torchrun: `torchrun --nproc_per_node N -m sparsemem train ...`.

Every process samples the same global batch (``train.batch_size``) from the run's generator and trains on
its own contiguous slice of it; DistributedDataParallel averages the gradients, so the update is the
update of one process on the whole batch and the results do not depend on the number of processes (to
round-off in the gradient all-reduce). Rank 0 alone writes the run folder (config, metrics, checkpoints,
trackers, final.json); on a resume it reads the checkpoint and hands its state to the other ranks.
Backend: NCCL on CUDA (each process on cuda:LOCAL_RANK), gloo on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .config import ConfigError


@dataclass
class Context:
    rank: int
    world: int
    local_rank: int

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (rows)."""
        b = t.shape[0] // self.world
        return t[self.rank * b : (self.rank + 1) * b]

    def mean(self, value: float) -> float:
        """The mean over ranks of a number each rank computed."""
        t = torch.tensor([value], dtype=torch.float64)
        if torch.distributed.get_backend() == "nccl":
            t = t.cuda()
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj if self.writer else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def context(device: str, batch_size: int) -> Optional[Context]:
    """The data-parallel context when this process was started by torchrun with more than one process
    (the process group is set up on first use), else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if batch_size % world:
        raise ConfigError(
            f"train.batch_size = {batch_size}: the global batch must split evenly over the "
            f"{world} processes (a multiple of {world})"
        )
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        torch.distributed.init_process_group(backend=backend)
    return Context(rank=rank, world=world, local_rank=local)


def local_device(device: str) -> str:
    """Under torchrun each process takes the GPU of its local rank."""
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def finish(ok: bool = True) -> None:
    """End the process group this process set up: after a barrier when the run ended well (so no rank
    exits while another still talks to it), at once after an error."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if ok:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
