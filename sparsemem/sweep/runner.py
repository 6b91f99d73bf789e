"""Run a list of configs into the store: in-process, on a local process pool, or on Ray.

The driver alone writes the store. A run's folder (``runs_dir/<hash>``) keeps
its checkpoints, so a sweep killed mid-run resumes each unfinished run from
its last checkpoint; finished runs (done or diverged) are never redone.

Before a job starts its runs are claimed in the store under this sweep's
owner id, and a heartbeat thread renews the claims' leases. Runs another live
sweep holds are skipped and waited for at the end; a claim whose owner died
(its process is gone, or its lease ran out) is taken over. So two sweeps on
one store train every run they share once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Optional, Union

from ..config import ConfigError, RunConfig
from ..files import check_writable_dir
from .claims import LEASE_SECONDS, Heartbeat, new_owner
from .executors import InProcess, PoolExecutor, RayExecutor
from .plan import COMPILE_MODES, Job, plan_jobs, subjob
from .schema import FINISHED, check_store_path
from .store import Store


def _record(store: Store, run_hash: str, result: dict) -> str:
    for note in result.get("healed", ()):  # damaged files found and healed in the run folder
        store.log_event(run_hash, "healed", note)
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

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                transient=False,
            )
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


FLEET_MODES = ("auto", "off")


def check_runner_args(
    workers: int, backend: str, fleet: str = "auto", fleet_size: int = 0, compile: str = "off"
) -> None:
    if workers < 1:
        raise ConfigError(f"--workers = {workers}: must be at least 1")
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend = {backend!r}: must be local or ray")
    if fleet not in FLEET_MODES:
        raise ConfigError(f"--fleet = {fleet!r}: must be auto or off")
    if fleet_size < 0:
        raise ConfigError(f"--fleet-size = {fleet_size}: must be at least 1 (0: chosen from the device)")
    if compile not in COMPILE_MODES:
        raise ConfigError(f"--compile = {compile!r}: must be off or auto")


def run_sweep(
    runs: list[RunConfig],
    store: Store,
    sweep: Optional[str],
    *,
    workers: int = 1,
    backend: str = "local",
    address: Optional[str] = None,
    runs_dir: Union[str, Path, None] = None,
    progress: Optional[bool] = None,
    ray_temp_dir: Optional[str] = None,
    on_result: Optional[Callable[[str, str], None]] = None,
    fleet: str = "auto",
    fleet_size: int = 0,
    compile: str = "off",
    lease: float = LEASE_SECONDS,
) -> dict:
    """Register ``runs`` under ``sweep`` (unless None: already registered) and train every one not yet finished.

    Runs that can train together go as fleets (``fleet="auto"``, at most ``fleet_size`` members each,
    0: chosen from the device); every member is still its own row. Runs are claimed in the store for the
    time of ``lease`` seconds, renewed while they train. Returns the counts of this call:
    {"total", "skipped", "done", "diverged", "failed", "jobs", "fleets", "elsewhere"} (elsewhere: runs
    another sweep held and finished while this one waited).
    """
    check_runner_args(workers, backend, fleet, fleet_size, compile)
    runs_dir = Path(runs_dir) if runs_dir is not None else store.path.parent / "runs"
    check_writable_dir(runs_dir, "runs folder", ConfigError)  # before any run is registered or claimed
    if sweep is not None:
        store.add(sweep, [(c.config_hash(), c.name, c.to_dict()) for c in runs])
    known = store.by_hash(c.config_hash() for c in runs)
    todo = [c for c in runs if known[c.config_hash()]["status"] not in FINISHED]
    jobs = plan_jobs(todo, runs_dir, fleet, fleet_size, workers, compile)
    summary = {
        "total": len(runs),
        "skipped": len(runs) - len(todo),
        "done": 0,
        "diverged": 0,
        "failed": 0,
        "jobs": len(jobs),
        "fleets": sum(j.fleet_dir is not None for j in jobs),
        "elsewhere": 0,
    }
    if not todo:
        return summary
    show = progress if progress is not None else sys.stderr.isatty()
    bar = _Progress(show, len(todo), sweep or "runs")

    def done(job: Job, results: list[dict]) -> None:
        for run_hash, result in zip(job.hashes, results):
            status = _record(store, run_hash, result)
            summary[status] += 1
            bar.update(status)
            if on_result is not None:
                on_result(run_hash, status)

    def elsewhere(finished: set) -> None:
        summary["elsewhere"] += len(finished)
        for _ in finished:
            bar.update("elsewhere")

    by_hash = {c.config_hash(): c for c in todo}

    def replan(free: set) -> list[Job]:
        return plan_jobs([by_hash[h] for h in sorted(free)], runs_dir, fleet, fleet_size, workers, compile)

    executor = _executor(backend, address, workers, ray_temp_dir)
    owner = new_owner()
    try:
        with Heartbeat(store.path, owner, lease):
            _drive(executor, jobs, store, owner, lease, runs_dir, done, replan, elsewhere)
    finally:
        executor.close()
        bar.close()
    return summary


def _executor(backend: str, address: Optional[str], workers: int, ray_temp_dir: Optional[str]):
    if backend == "ray":
        return RayExecutor(address=address, workers=workers, temp_dir=ray_temp_dir)
    return InProcess() if workers == 1 else PoolExecutor(workers)


def _drive(executor, jobs, store: Store, owner: str, lease: float, runs_dir: Path, done, replan, elsewhere) -> None:
    """Keep the executor's slots full, claiming each job's runs first (`running` in the store means running);
    when all that is left is held by other sweeps, wait for it and take over what their owners leave."""
    pending, running, waiting = list(jobs), 0, set()
    while pending or running or waiting:
        while pending and running < executor.slots:
            job = pending.pop(0)
            taken = store.claim(job.hashes, owner, lease)
            waiting |= set(store.held_elsewhere(set(job.hashes) - set(taken), owner))
            if not taken:
                continue
            executor.submit(job if len(taken) == len(job.hashes) else subjob(job, taken, runs_dir))
            running += 1
        if running:
            job, results = executor.wait()
            running -= 1
            done(job, results)
            continue
        if pending or not waiting:
            continue
        rows = store.by_hash(waiting)
        finished = {h for h in waiting if rows[h]["status"] in FINISHED}
        elsewhere(finished)
        held = set(store.held_elsewhere(waiting - finished, owner))
        free = waiting - finished - held
        waiting = held
        if free:
            pending = replan(free)
        elif waiting:
            time.sleep(min(5.0, lease / 4))


def run_spec(spec_path, overrides=(), *, store=None, **options) -> dict:
    """`sparsemem sweep`: expand a sweep spec file, check it, and run it into its store (default
    results/<sweep name>/results.db); options as for ``run_sweep``. Returns the sweep's summary with its
    name, the store's path and the store's counts."""
    from ..preflight import check_runs
    from ..tasks.text import prepare as prepare_text
    from .spec import load_spec

    check_runner_args(
        options.get("workers", 1),
        options.get("backend", "local"),
        options.get("fleet", "auto"),
        options.get("fleet_size", 0),
        options.get("compile", "off"),
    )
    spec = load_spec(spec_path, overrides)
    runs = spec.expand()
    if not runs:
        raise ConfigError(f"sweep spec {str(spec_path)!r} expands to no runs (an empty grid, cases or seeds list)")
    check_runs(runs)
    prepare_text(runs)  # corpora fetched and tokenized once, before any worker starts
    path = Path(store) if store else Path("results") / spec.name / "results.db"
    try:
        check_store_path(path)
    except ConfigError as err:
        raise ConfigError(f"--store: {err}") from None
    check_writable_dir(options.get("runs_dir") or path.parent / "runs", "runs folder", ConfigError)
    with Store(path) as st:
        summary = run_sweep(runs, st, spec.name, ray_temp_dir=str(path.parent.resolve() / "ray"), **options)
        return {**summary, "name": spec.name, "store": str(path), "counts": st.counts(spec.name)}
