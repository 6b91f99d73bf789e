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

import hashlib
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from ..config import ConfigError, RunConfig
from .store import FINISHED, LEASE_SECONDS, Heartbeat, Store, new_owner


def run_one(cfg_dict: dict, out_dir: Optional[str], threads: int = 0) -> dict:
    """Train one run (in a worker); failures come back as a result with status failed."""
    return run_job([(cfg_dict, out_dir)], None, threads)[0]


def run_job(members: list[tuple[dict, Optional[str]]], fleet_dir: Optional[str], threads: int = 0,
            compile: bool = False) -> list[dict]:
    """Train one job in a worker: a single run (fleet_dir None) or a fleet; one result per member.

    Failures come back as results with status failed: a failed job is data, the sweep goes on.
    """
    import torch

    from ..train import train, train_fleet

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


@dataclass
class Job:
    """What one worker trains: one run, or several as a fleet (``fleet_dir`` set)."""

    hashes: list[str]
    members: list[tuple[dict, str]]  # (config dict, run folder)
    fleet_dir: Optional[str] = None
    compile: bool = False  # a single run through torch.compile


# On a CPU a fleet gains most while its step is bound by per-operation overhead; a member whose largest
# activation is big (softmax DP read at every key for a whole batch) already keeps a core busy alone.
# Measured on 2 cores, 8 members as one fleet against one by one: exp-1b DP-free (57k elements each)
# 2.2-2.6x, Prop 4.2 DP (51k) 2.1x, 1a synthetic 2-layer DP (205k) 1.4x; 3a DP with H = 8 (800k) 0.6x
# before its first layer got a fused softmax backward, 1.65x after. Letting such runs into fleets then
# projected the paper profile at 4,231 s against 4,320 s (within the noise), so the cap stays.
CPU_MEMBER_ELEMENTS = 250_000  # above this a run trains alone on a CPU
CPU_FLEET_ELEMENTS = 8_000_000  # and a CPU fleet's members hold at most this many together
# Such a run is bound by passes over its big tensors, which torch.compile fuses: measured on 2 cores, the
# 3a DP cell H = 64, m = 256 (T = 1000, batch 100) took 57 ms a step eagerly and 14 ms compiled, after
# 23 s of compiling (eagerly about 20 ms since the fused first-layer softmax and the malloc setting).
# `--compile auto` compiles these runs; small runs would not earn back the 20 s.
COMPILE_MODES = ("off", "auto")


def step_elements(cfg: RunConfig) -> int:
    """About the number of elements in one member's largest activation per training step."""
    m, t, B = cfg.model, cfg.task, cfg.train.batch_size
    T, H = t.seq_len, m.heads
    rows = 1 if (t.output == "last" and m.layers == 1) else T  # query rows the attention forms
    if m.attention == "dp_free" and rows == 1:
        attn = H * T  # one kernel for the whole batch
    elif m.attention == "dp_free":
        attn = 4 * B * T * H * m.head_size  # FFT convolution
    else:
        attn = B * H * rows * T
    return max(attn, B * rows * max(m.ffn_width, m.dim))


def _on_gpu(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def default_fleet_size(device: str) -> int:
    """Members per fleet: a GPU trains hundreds at the price of one; a CPU core gains up to a few dozen."""
    return 256 if _on_gpu(device) else 64


def _chunks(members: list[RunConfig], fleet_size: int) -> list[list[RunConfig]]:
    """Consecutive chunks of at most ``fleet_size`` members (0: from the device); on a CPU, big members
    alone and each chunk's activations within ``CPU_FLEET_ELEMENTS``."""
    device = members[0].train.device
    size = fleet_size or default_fleet_size(device)
    if fleet_size or _on_gpu(device):
        return [members[i:i + size] for i in range(0, len(members), size)]
    out, part, total = [], [], 0
    for c in members:
        e = step_elements(c)
        if e > CPU_MEMBER_ELEMENTS:
            out.append([c])
            continue
        if part and (len(part) == size or total + e > CPU_FLEET_ELEMENTS):
            out.append(part)
            part, total = [], 0
        part.append(c)
        total += e
    return out + ([part] if part else [])


def plan_jobs(runs: list[RunConfig], runs_dir: Path, fleet: str = "auto", fleet_size: int = 0,
              workers: int = 1, compile: str = "off") -> list[Job]:
    """Group runs into jobs: with ``fleet="auto"``, runs that can train together (same task and loop, a
    supported model) form fleets of at most ``fleet_size`` members (0: chosen from the device); the rest
    run alone. While there are fewer jobs than ``workers``, the largest fleet is halved, so no worker
    idles. Grouping depends on the set of runs alone, not their order, so a rerun forms the same fleets
    and resumes them from their checkpoints. Jobs keep the order of their first run. With
    ``compile="auto"``, single runs on a CPU whose step holds more than ``CPU_MEMBER_ELEMENTS`` elements
    train through torch.compile."""
    from ..models.fleet import fleet_supports, squad_key
    from ..train import fleet_key

    def single(c: RunConfig) -> Job:
        big = compile == "auto" and not _on_gpu(c.train.device) and step_elements(c) > CPU_MEMBER_ELEMENTS
        return Job([c.config_hash()], [(c.to_dict(), str(runs_dir / c.config_hash()[:16]))], compile=big)

    if fleet == "off":
        return [single(c) for c in runs]
    groups: dict[str, list[RunConfig]] = {}
    for c in runs:
        groups.setdefault(fleet_key(c) if fleet_supports(c) else "single:" + c.config_hash(), []).append(c)
    first = {id(c): i for i, c in enumerate(runs)}
    jobs: list[tuple[int, Job]] = []
    parts: list[list[RunConfig]] = []
    for key, members in groups.items():
        if key.startswith("single:") or len(members) == 1:
            parts += [[c] for c in members]
            continue
        # members that share a data stream (seed) and a structure (squad) side by side
        members = sorted(members, key=lambda c: (c.train.seed, squad_key(c.model), c.config_hash()))
        parts.extend(_chunks(members, fleet_size))
    parts.sort(key=lambda part: part[0].config_hash())  # an order of the set, not of the list given
    while len(parts) < workers and max(map(len, parts), default=1) > 1:
        big = max(range(len(parts)), key=lambda i: len(parts[i]))
        half = (len(parts[big]) + 1) // 2
        parts[big:big + 1] = [parts[big][:half], parts[big][half:]]
    for part in parts:
        if len(part) == 1:
            jobs.append((first[id(part[0])], single(part[0])))
            continue
        hashes = [c.config_hash() for c in part]
        fid = hashlib.sha256("".join(hashes).encode()).hexdigest()[:16]
        jobs.append((min(first[id(c)] for c in part),
                     Job(hashes, [(c.to_dict(), str(runs_dir / h[:16])) for c, h in zip(part, hashes)],
                         str(runs_dir / f"fleet-{fid}"))))
    return [job for _, job in sorted(jobs, key=lambda t: t[0])]


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
        job = self._queue.pop(0)
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
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                        initializer=_die_with, initargs=(os.getpid(),))
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


FLEET_MODES = ("auto", "off")


def check_runner_args(workers: int, backend: str, fleet: str = "auto", fleet_size: int = 0,
                      compile: str = "off") -> None:
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


def run_sweep(runs: list[RunConfig], store: Store, sweep: Optional[str], *, workers: int = 1, backend: str = "local",
              address: Optional[str] = None, runs_dir: Union[str, Path, None] = None,
              progress: Optional[bool] = None, ray_temp_dir: Optional[str] = None,
              on_result: Optional[Callable[[str, str], None]] = None, fleet: str = "auto",
              fleet_size: int = 0, compile: str = "off", lease: float = LEASE_SECONDS) -> dict:
    """Register ``runs`` under ``sweep`` (unless None: already registered) and train every one not yet finished.

    Runs that can train together go as fleets (``fleet="auto"``, at most ``fleet_size`` members each,
    0: chosen from the device); every member is still its own row. Runs are claimed in the store for the
    time of ``lease`` seconds, renewed while they train. Returns the counts of this call:
    {"total", "skipped", "done", "diverged", "failed", "jobs", "fleets", "elsewhere"} (elsewhere: runs
    another sweep held and finished while this one waited).
    """
    check_runner_args(workers, backend, fleet, fleet_size, compile)
    if sweep is not None:
        store.add(sweep, [(c.config_hash(), c.name, c.to_dict()) for c in runs])
    known = store.by_hash(c.config_hash() for c in runs)
    todo = [c for c in runs if known[c.config_hash()]["status"] not in FINISHED]
    runs_dir = Path(runs_dir) if runs_dir is not None else store.path.parent / "runs"
    jobs = plan_jobs(todo, runs_dir, fleet, fleet_size, workers, compile)
    summary = {"total": len(runs), "skipped": len(runs) - len(todo), "done": 0, "diverged": 0, "failed": 0,
               "jobs": len(jobs), "fleets": sum(j.fleet_dir is not None for j in jobs), "elsewhere": 0}
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

    if backend == "ray":
        executor = RayExecutor(address=address, workers=workers, temp_dir=ray_temp_dir)
    elif workers == 1:
        executor = InProcess()
    else:
        executor = PoolExecutor(workers)
    by_hash = {c.config_hash(): c for c in todo}
    owner = new_owner()
    try:
        with Heartbeat(store.path, owner, lease):
            pending, running, waiting = list(jobs), 0, set()
            while pending or running or waiting:
                while pending and running < executor.slots:  # a window: `running` in the store means running
                    job = pending.pop(0)
                    taken = store.claim(job.hashes, owner, lease)
                    waiting |= set(store.held_elsewhere(set(job.hashes) - set(taken), owner))
                    if not taken:
                        continue
                    executor.submit(job if len(taken) == len(job.hashes) else _subjob(job, taken, runs_dir))
                    running += 1
                if running:
                    job, results = executor.wait()
                    running -= 1
                    done(job, results)
                    continue
                if pending or not waiting:
                    continue
                # what is left is held by other sweeps: wait for it, take over what their owners leave
                rows = store.by_hash(waiting)
                finished = {h for h in waiting if rows[h]["status"] in FINISHED}
                summary["elsewhere"] += len(finished)
                for _ in finished:
                    bar.update("elsewhere")
                held = set(store.held_elsewhere(waiting - finished, owner))
                free = waiting - finished - held
                waiting = held
                if free:
                    pending = plan_jobs([by_hash[h] for h in sorted(free)], runs_dir, fleet, fleet_size, workers,
                                        compile)
                elif waiting:
                    time.sleep(min(5.0, lease / 4))
    finally:
        executor.close()
        bar.close()
    return summary


def _subjob(job: Job, hashes: list[str], runs_dir: Path) -> Job:
    """The part of ``job`` with these members (the others are held by another sweep)."""
    members = [m for h, m in zip(job.hashes, job.members) if h in set(hashes)]
    if len(members) == 1:
        return Job(list(hashes), members)
    fid = hashlib.sha256("".join(hashes).encode()).hexdigest()[:16]
    return Job(list(hashes), members, str(runs_dir / f"fleet-{fid}"))


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
            members = [({**c, "train": {**c["train"], "device": "auto"}} if c["train"]["device"] == "cpu" else c, o)
                       for c, o in members]
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
