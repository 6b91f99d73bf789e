"""Where jobs train: in this process, on a local process pool, or on Ray, behind one interface.

An executor takes jobs (``submit``) and hands back the next finished one with
its results (``wait``), ``slots`` at a time. A job is one run or one fleet
(``plan.py``); in a worker it trains through ``run_job``, and a failure comes
back as results with status failed, so a sweep goes on.
"""

from __future__ import annotations

import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Optional

from ..config import ConfigError, RunConfig
from .plan import Job


def run_one(cfg_dict: dict, out_dir: Optional[str], threads: int = 0) -> dict:
    """Train one run (in a worker); failures come back as a result with status failed."""
    return run_job([(cfg_dict, out_dir)], None, threads)[0]


def run_job(
    members: list[tuple[dict, Optional[str]]], fleet_dir: Optional[str], threads: int = 0, compile: bool = False
) -> list[dict]:
    """Train one job in a worker: a single run (fleet_dir None) or a fleet; one result per member.

    Failures come back as results with status failed: a failed job is data, the sweep goes on.
    """
    import torch

    from ..training import train, train_fleet

    if threads:
        torch.set_num_threads(threads)
    try:
        cfgs = [RunConfig.model_validate(c) for c, _ in members]
        if fleet_dir is None:
            results = [train(cfgs[0], out_dir=members[0][1], progress=False, compile=compile)]
        else:
            results = train_fleet(cfgs, [o for _, o in members], fleet_dir, progress=False)
        return [dict(r) for r in results]  # the metrics only: the trained models stay in the worker
    except Exception:  # noqa: BLE001
        return [{"status": "failed", "error": traceback.format_exc()}] * len(members)


class Executor:
    """Runs jobs somewhere: ``submit`` one, ``wait`` for the next finished (job, results); ``slots`` at once."""

    slots = 1

    def submit(self, job: Job) -> None:
        raise NotImplementedError

    def wait(self) -> tuple[Job, list[dict]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcess(Executor):
    def __init__(self):
        self._queue: list[Job] = []

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def wait(self):
        from ..distributed import lead

        job = self._queue.pop(0)
        lead((job.members, job.fleet_dir, job.compile))  # under torchrun the other ranks train it with us
        return job, run_job(job.members, job.fleet_dir, 0, job.compile)


def _die_with(parent: int, every: float = 0.5) -> None:
    """A pool worker's initializer: a watchdog thread that ends the worker once its driver is gone.

    A worker whose driver was killed alone (not its process group) would otherwise finish its current
    run, writing into a run folder that a resumed sweep has taken over by then.
    """
    import threading

    def watch():
        while True:
            time.sleep(every)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="sparsemem-orphan-watch", daemon=True).start()


class PoolExecutor(Executor):
    """A local pool of worker processes, each with its share of the CPU threads; they end with the driver."""

    def __init__(self, workers: int):
        import multiprocessing as mp

        self.slots = workers
        self.threads = max(1, (os.cpu_count() or 1) // workers)
        self.pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_die_with, initargs=(os.getpid(),)
        )
        self.running = {}

    def submit(self, job: Job) -> None:
        self.running[self.pool.submit(run_job, job.members, job.fleet_dir, self.threads, job.compile)] = job

    def wait(self):
        finished, _ = wait(self.running, return_when=FIRST_COMPLETED)
        fut = next(iter(finished))
        job = self.running.pop(fut)
        try:
            return job, fut.result()
        except Exception:  # noqa: BLE001 - a worker that died
            return job, [{"status": "failed", "error": traceback.format_exc()}] * len(job.hashes)

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class RayExecutor(Executor):
    """One job per Ray task, on a local Ray or the cluster at ``address``; a fraction of a GPU each where
    the cluster has GPUs (a CPU run then goes to the GPU: ``train.device`` auto)."""

    def __init__(self, *, address: Optional[str], workers: int, temp_dir: Optional[str]):
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'sparsemem[ray]'") from None
        import tempfile

        self.ray = ray
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        self.started, self.scratch = False, None
        if temp_dir and len(str(temp_dir)) > 40:
            # Ray's socket paths under its temp dir must stay below 108 bytes: use a short one, removed after
            self.scratch = tempfile.mkdtemp(prefix="smray-")
            temp_dir = self.scratch
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = workers
                if temp_dir:
                    kwargs["_temp_dir"] = str(temp_dir)
            ray.init(**kwargs)
            self.started = True
        resources = ray.cluster_resources()
        self.gpus = resources.get("GPU", 0)
        opts = {"num_cpus": 1}
        if self.gpus:
            opts["num_gpus"] = min(1.0, self.gpus / max(1, workers))  # fractional GPUs
        self.remote = ray.remote(**opts)(run_job)
        self.slots = workers if not address else max(workers, int(resources.get("CPU", workers)))
        self.running = {}

    def submit(self, job: Job) -> None:
        members = job.members
        if self.gpus:
            members = [
                ({**c, "train": {**c["train"], "device": "auto"}} if c["train"]["device"] == "cpu" else c, o)
                for c, o in members
            ]
        self.running[self.remote.remote(members, job.fleet_dir, 1, job.compile)] = job

    def wait(self):
        ready, _ = self.ray.wait(list(self.running), num_returns=1)
        ref = ready[0]
        job = self.running.pop(ref)
        try:
            return job, self.ray.get(ref)
        except Exception:  # noqa: BLE001 - a Ray worker that died
            return job, [{"status": "failed", "error": traceback.format_exc()}] * len(job.hashes)

    def close(self) -> None:
        import shutil

        if self.started:
            self.ray.shutdown()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
