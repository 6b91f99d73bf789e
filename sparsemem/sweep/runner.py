"""Run a list of configs into the store: in-process, on a local process pool, or on Ray.

The driver alone writes the store. A run's folder (``runs_dir/<hash>``) keeps
its checkpoints, so a sweep killed mid-run resumes each unfinished run from
its last checkpoint; finished runs (done or diverged) are never redone.
"""

from __future__ import annotations

import os
import sys
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable, Optional, Union

from ..config import ConfigError, RunConfig
from .store import FINISHED, Store


def run_one(cfg_dict: dict, out_dir: Optional[str], threads: int = 0) -> dict:
    """Train one run (in a worker); failures come back as a result with status failed."""
    import torch

    from ..train import train

    if threads:
        torch.set_num_threads(threads)
    try:
        cfg = RunConfig.model_validate(cfg_dict)
        result = train(cfg, out_dir=out_dir, progress=False)
        result.pop("model", None)
        return result
    except Exception:  # noqa: BLE001 - a failed run is data, the sweep goes on
        return {"status": "failed", "error": traceback.format_exc()}


def _record(store: Store, run_hash: str, result: dict) -> str:
    status = result.get("status")
    if status in FINISHED:
        store.finish(run_hash, result)
    else:
        store.fail(run_hash, result.get("error", f"run ended with status {status!r}"))
        status = "failed"
    return status


class _Progress:
    def __init__(self, enabled: bool, total: int, label: str):
        self.bar = None
        if enabled and total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, info="")
        self.counts: dict[str, int] = {}

    def update(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        if self.bar is not None:
            info = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            self.bar.update(self.task, advance=1, info=info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def check_runner_args(workers: int, backend: str) -> None:
    if workers < 1:
        raise ConfigError(f"--workers = {workers}: must be at least 1")
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend = {backend!r}: must be local or ray")


def run_sweep(runs: list[RunConfig], store: Store, sweep: Optional[str], *, workers: int = 1, backend: str = "local",
              address: Optional[str] = None, runs_dir: Union[str, Path, None] = None,
              progress: Optional[bool] = None, ray_temp_dir: Optional[str] = None,
              on_result: Optional[Callable[[str, str], None]] = None) -> dict:
    """Register ``runs`` under ``sweep`` (unless None: already registered) and train every one not yet finished.

    Returns the counts of this call: {"total", "skipped", "done", "diverged", "failed"}.
    """
    check_runner_args(workers, backend)
    if sweep is not None:
        store.add(sweep, [(c.config_hash(), c.name, c.to_dict()) for c in runs])
    known = store.by_hash(c.config_hash() for c in runs)
    todo = [c for c in runs if known[c.config_hash()]["status"] not in FINISHED]
    summary = {"total": len(runs), "skipped": len(runs) - len(todo), "done": 0, "diverged": 0, "failed": 0}
    if not todo:
        return summary
    runs_dir = Path(runs_dir) if runs_dir is not None else store.path.parent / "runs"
    jobs = [(c.config_hash(), c.to_dict(), str(runs_dir / c.config_hash()[:16])) for c in todo]
    show = progress if progress is not None else sys.stderr.isatty()
    bar = _Progress(show, len(jobs), sweep or "runs")

    def done(run_hash: str, result: dict) -> None:
        status = _record(store, run_hash, result)
        summary[status] += 1
        bar.update(status)
        if on_result is not None:
            on_result(run_hash, status)

    try:
        if backend == "ray":
            _run_ray(jobs, store, done, address=address, workers=workers, temp_dir=ray_temp_dir)
        elif workers == 1:
            for run_hash, cfg, out in jobs:
                store.mark_running(run_hash)
                done(run_hash, run_one(cfg, out))
        else:
            _run_pool(jobs, store, done, workers)
    finally:
        bar.close()
    return summary


def _run_pool(jobs, store: Store, done, workers: int) -> None:
    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // workers)
    pending = list(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        running = {}
        while pending or running:
            while pending and len(running) < workers:  # a window: `running` in the store means running
                run_hash, cfg, out = pending.pop(0)
                store.mark_running(run_hash)
                running[pool.submit(run_one, cfg, out, threads)] = run_hash
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                run_hash = running.pop(fut)
                try:
                    result = fut.result()
                except Exception:  # noqa: BLE001 - a worker that died
                    result = {"status": "failed", "error": traceback.format_exc()}
                done(run_hash, result)


def _run_ray(jobs, store: Store, done, *, address: Optional[str], workers: int, temp_dir: Optional[str]) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'sparsemem[ray]'") from None
    import shutil
    import tempfile

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started, scratch = False, None
    if temp_dir and len(str(temp_dir)) > 40:
        # Ray's socket paths under its temp dir must stay below 108 bytes: use a short one, removed after
        scratch = tempfile.mkdtemp(prefix="smray-")
        temp_dir = scratch
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = workers
            if temp_dir:
                kwargs["_temp_dir"] = str(temp_dir)
        ray.init(**kwargs)
        started = True
    try:
        import torch

        gpus = ray.cluster_resources().get("GPU", 0)
        opts = {"num_cpus": 1}
        if gpus:
            opts["num_gpus"] = min(1.0, gpus / max(1, workers))  # fractional GPUs
        remote = ray.remote(**opts)(run_one)
        pending = list(jobs)
        running = {}
        width = workers if not address else max(workers, int(ray.cluster_resources().get("CPU", workers)))
        while pending or running:
            while pending and len(running) < width:
                run_hash, cfg, out = pending.pop(0)
                if gpus and cfg["train"]["device"] == "cpu":
                    cfg = {**cfg, "train": {**cfg["train"], "device": "auto"}}
                store.mark_running(run_hash)
                running[remote.remote(cfg, out, 1)] = run_hash
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                run_hash = running.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception:  # noqa: BLE001 - a Ray worker that died
                    result = {"status": "failed", "error": traceback.format_exc()}
                done(run_hash, result)
        del torch
    finally:
        if started:
            ray.shutdown()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
