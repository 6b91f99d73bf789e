"""Data-parallel training under torchrun: `torchrun --nproc_per_node N -m sparsemem train ...`.

Every process samples the same global batch (``train.batch_size``) from the run's generator and trains on
its own contiguous slice of it; DistributedDataParallel averages the gradients, so the update is the
update of one process on the whole batch and the results do not depend on the number of processes (to
round-off in the gradient all-reduce). Rank 0 alone writes the run folder (config, metrics, checkpoints,
trackers, final.json); on a resume it reads the checkpoint and hands its state to the other ranks.
Backend: NCCL on CUDA (each process on cuda:LOCAL_RANK), gloo on the CPU.

`torchrun --nproc_per_node N -m sparsemem reproduce ...` trains every run of the reproduction this way,
one after another: rank 0 runs the sweep as usual (one in-process worker, no fleets) and hands each job
to the other ranks before it trains it (``lead``); they train it with it (``follow``) until rank 0
says the sweep is over. Rank 0 alone touches the store and writes the report.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

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
        return _send(obj if self.writer else None)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def context(device: str, batch_size: int) -> Optional[Context]:
    """The data-parallel context when this process was started by torchrun with more than one process
    (the process group is set up on first use), else None."""
    n = world()
    if n <= 1:
        return None
    if batch_size % n:
        raise ConfigError(
            f"train.batch_size = {batch_size}: the global batch must split evenly over the "
            f"{n} processes (a multiple of {n})"
        )
    start(device)
    return Context(rank=rank(), world=n, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def world() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def start(device: str) -> None:
    """Set up the process group now (``context`` does it on a run's first use): for ranks that must talk
    before any run starts."""
    if world() > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group(backend=backend)


def _send(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (what the others pass is ignored)."""
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def lead(job: Any) -> None:
    """Rank 0, before it trains a job of a sweep: hand the job to the other ranks (no-op outside torchrun)."""
    if world() > 1 and torch.distributed.is_initialized() and rank() == 0:
        _send(job)


def release() -> None:
    """Rank 0, when its sweep ends (well or not): tell the other ranks there is no more work."""
    lead(None)


def follow(train_job) -> None:
    """A rank other than 0: train each job rank 0 hands over, with ``train_job(job)``, until it says stop."""
    while True:
        job = _send(None)
        if job is None:
            return
        train_job(job)


def local_device(device: str) -> str:
    """Under torchrun each process takes the GPU of its local rank."""
    if device == "cuda" and world() > 1:
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


@contextlib.contextmanager
def ending() -> Iterator[None]:
    """The block is this process's last use of the process group: ended after it, at once on an error."""
    try:
        yield
    except BaseException:
        finish(ok=False)
        raise
    finish()


@contextlib.contextmanager
def reproduction(device: str, workers: int, backend: str, train_job: Callable) -> Iterator[bool]:
    """`sparsemem reproduce` under torchrun: rank 0 runs the sweep (one worker, no fleets) and hands each job
    to the other ranks, which train it data-parallel with ``train_job(job)`` until rank 0 releases them.
    Yields True where the sweep runs (rank 0, or a single process), False on a following rank (its work
    is then done); however the sweep ends, the followers are released and the group ended."""
    if world() == 1:
        yield True
        return
    if workers != 1 or backend != "local":
        raise ConfigError(
            f"--workers = {workers}, --backend = {backend}: under torchrun every run trains "
            "data-parallel over all the processes, one run at a time; use --workers 1 --backend local"
        )
    start(device)
    if rank() != 0:
        follow(train_job)
        finish()
        yield False
        return
    try:
        yield True
    finally:
        release()  # the other ranks stop following, whether the sweep ended well or not
        finish()
