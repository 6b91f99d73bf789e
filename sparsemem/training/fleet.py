"""Fleets: K runs trained together as one batched model (``models/fleet.py``), each its own result.

A member starts from its single run's parameters and sees its single run's data stream; it has its own
AdamW state, learning rate and schedule (``fleet_adamw.py``), its own validation and metrics, and freezes
alone when its loss diverges. The loop is the single run's (``loop.py``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional, Union

import torch

from ..config import ConfigError, RunConfig
from ..files import check_writable_dir
from ..preflight import check_runs
from ..runfiles import DamagedFile, save_checkpoint, trim_metrics, try_resume, write_final
from ..tasks import make_task
from ..trackers import Trackers
from .basics import (
    DATA_SEED_OFFSET,
    DTYPES,
    RunResult,
    blowup_limit,
    evaluate_lengths,
    fleet_engine,
    keep_freed_memory,
    mean_loss,
    new_result,
    progress_bar,
    resolve_device,
)
from .fleet_adamw import FleetAdamW
from .loop import run_steps
from .record import RunRecord, ready_folder

# Train-config fields every member of a fleet shares (they set the loop, the data and the validation);
# the others (seed, lr, rpe_lr_scale, weight_decay, betas, warm-up, schedule, min_lr_ratio, grad_clip) are per member.
FLEET_SHARED_TRAIN = (
    "steps",
    "batch_size",
    "val_samples",
    "eval_every",
    "checkpoint_every",
    "eval_lengths",
    "device",
    "dtype",
)


def fleet_key(cfg: RunConfig) -> str:
    """Runs with equal keys can train as one fleet: same task, same loop, and the model family supports it."""
    train = {k: getattr(cfg.train, k) for k in FLEET_SHARED_TRAIN}
    return json.dumps({"task": cfg.task.model_dump(mode="json"), "train": train}, sort_keys=True, default=list)


def evaluate_fleet(fleet, task, x: torch.Tensor, y: torch.Tensor, chunk: int = 500) -> list[float]:
    """Each member's loss over one fixed set (shared by all members), in chunks."""
    return mean_loss(fleet, task.member_losses, x, y, chunk).tolist()


class FleetEngine:
    """The loop's engine for a fleet: the batched model, FleetAdamW, one data stream per distinct seed."""

    def __init__(self, cfgs: list[RunConfig], task, device, fdir: Optional[Path]):
        self.cfgs, self.task, self.device, self.fdir = cfgs, task, device, fdir
        tc = self.tc = cfgs[0].train
        self.dtype = DTYPES[tc.dtype]
        self.seeds = seeds = sorted({c.train.seed for c in cfgs})
        self.build()
        self.stream = (
            None if len(seeds) == 1 else torch.tensor([seeds.index(c.train.seed) for c in cfgs], device=device)
        )
        self.x_val, self.y_val = task.validation_set(tc.val_samples, device=device, dtype=self.dtype)
        self.var_y = task.variance(self.y_val)
        self.limits = [blowup_limit(c.train, self.var_y) for c in cfgs]
        self.hashes = [c.config_hash() for c in cfgs]
        self.results: list[dict] = []
        self.bar, self.clock, self._alive_key, self._losses = None, None, None, None

    def build(self) -> None:
        """The members' fresh state: the batched model, the data streams and the optimizer."""
        from ..models.fleet import FleetModel

        self.fleet = FleetModel(self.cfgs, self.task, self.device, self.dtype)
        self.gens = {s: torch.Generator(device=self.device).manual_seed(s + DATA_SEED_OFFSET) for s in self.seeds}
        self.opt = FleetAdamW(self.fleet, self.cfgs)

    def restore(self, state: dict, outs: list) -> tuple:
        """The fleet's checkpoint into this engine: (step, seconds before, the members' results)."""
        if state.get("members") != self.hashes:
            raise ConfigError(f"fleet folder {str(self.fdir)!r} holds another fleet; pick another folder")
        self.fleet.load_state_dict(state["fleet"])
        self.opt.load_state_dict(state["opt"])
        for s, g in state["gens"].items():
            self.gens[s].set_state(g.cpu())
        for i, out in enumerate(outs):  # a running member's metrics hold every evaluation up to the step
            if (
                out is not None
                and state["results"][i]["status"] == "running"
                and trim_metrics(out / "metrics.jsonl", state["step"], self.tc.eval_interval) is None
            ):
                raise DamagedFile(f"{out.name}/metrics.jsonl lacks evaluations before the checkpoint")
        return state["step"], state["seconds"], state["results"]

    def losses(self, step: int) -> list[float]:
        samples = [self.task.sample(self.tc.batch_size, self.gens[s], self.dtype) for s in self.seeds]
        if self.stream is None:
            x, y = samples[0]
        else:
            x, y = torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])[self.stream]
        self._losses = self.task.member_losses(self.fleet(x, self.stream), y)
        return self._losses.detach().double().cpu().tolist()

    def _alive_dev(self, alive: list[bool]) -> torch.Tensor:
        key = tuple(alive)
        if key != self._alive_key:
            self._alive_key, self._alive_t = key, torch.tensor(alive, dtype=torch.bool).to(self.device)
        return self._alive_t

    def update(self, step: int, alive: list[bool]) -> None:
        alive_dev, losses = self._alive_dev(alive), self._losses
        self.fleet.flat.grad = None
        torch.where(alive_dev, losses, torch.zeros_like(losses)).sum().backward()
        self.opt.step(step, alive_dev)

    def tick(self, step: int, values: list[float], alive: list[bool]) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], advance=1, info=f"alive {sum(alive)}/{len(alive)}")

    def evaluate(self, step: int) -> tuple[list[float], dict]:
        return evaluate_fleet(self.fleet, self.task, self.x_val, self.y_val), {}

    def lrs(self, step: int) -> list[float]:
        return self.opt.current_lr(step)

    def mark(self, step: int) -> None:
        pass

    def save(self, step: int) -> None:
        if self.fdir is None:
            return
        state = {
            "members": self.hashes,
            "step": step,
            "fleet": self.fleet.state_dict(),
            "opt": self.opt.state_dict(),
            "gens": {s: g.get_state() for s, g in self.gens.items()},
            "results": self.results,
            "seconds": self.clock(exact=True),
        }
        save_checkpoint(state, self.fdir / "checkpoint.pt")


def _check(cfgs: list[RunConfig], dirs: list) -> None:
    from ..models.fleet import fleet_supports

    key = fleet_key(cfgs[0])
    for c in cfgs:
        if not fleet_supports(c):
            raise ConfigError(
                f"run {c.name or c.config_hash()[:12]}: fleets train the transformer on synthetic tasks only"
            )
        if fleet_key(c) != key:
            raise ConfigError(
                f"run {c.name or c.config_hash()[:12]} differs from the fleet's first run in its task "
                f"or in one of train.{', train.'.join(FLEET_SHARED_TRAIN)}"
            )
    check_runs(cfgs)
    for d in dirs:
        if d is not None:
            check_writable_dir(d, "run folder", ConfigError)


def _resume(engine: FleetEngine, outs: list, resume: bool) -> tuple:
    """(start, seconds before, healing notes) from the fleet folder's checkpoint; the engine's results are
    the members' as checkpointed (fresh when there is none, or it is damaged)."""
    fdir = engine.fdir
    start, elapsed, healed = 0, 0.0, []
    if fdir is None:
        return start, elapsed, healed
    fdir.mkdir(parents=True, exist_ok=True)
    ckpt = fdir / "checkpoint.pt"
    if not (resume and ckpt.exists()):
        return start, elapsed, healed
    resumed, note = try_resume(ckpt, engine.device, lambda state: engine.restore(state, outs), "the fleet")
    if note is None:
        start, elapsed, engine.results = resumed
    else:
        healed.append(note)
        print(f"sparsemem: warning: fleet folder {str(fdir)!r}: {note}", file=sys.stderr)
        engine.build()
    for r in engine.results:
        if start:
            r["resumed_from"] = start
        if healed:
            r["healed"] = healed
    return start, elapsed, healed


def train_fleet(
    cfgs: list[RunConfig],
    out_dirs: Optional[list] = None,
    fleet_dir: Union[str, Path, None] = None,
    progress: Optional[bool] = None,
    resume: bool = True,
) -> list[dict]:
    """Train K runs as one fleet; returns one result per run, as ``train`` would.

    The runs must share ``fleet_key`` (task and loop) and be supported by fleets
    (``sparsemem.models.fleet.fleet_supports``). Each member keeps its own run folder (config.yaml,
    metrics.jsonl, final.json and its final weights in checkpoint.pt); the fleet's checkpoint, which
    resumes every member exactly, lives in ``fleet_dir``.
    """
    t0 = time.perf_counter()
    if not cfgs:
        return []
    K, tc = len(cfgs), cfgs[0].train
    _check(cfgs, [fleet_dir, *(out_dirs or [])])
    device = resolve_device(tc.device)
    keep_freed_memory()
    task = make_task(cfgs[0].task)
    engine = FleetEngine(cfgs, task, device, Path(fleet_dir) if fleet_dir is not None else None)
    engine.results = [
        {**new_result(c, h, engine.var_y, engine.fleet.num_params(i), device), **fleet_engine(engine.hashes, i)}
        for i, (c, h) in enumerate(zip(cfgs, engine.hashes))
    ]
    outs = [Path(d) if d is not None else None for d in (out_dirs or [None] * K)]
    start, elapsed, _ = _resume(engine, outs, resume)

    def clock(exact: bool = False) -> float:
        seconds = elapsed + time.perf_counter() - t0
        return seconds if exact else round(seconds, 3)

    engine.clock = clock
    for c, out, r in zip(cfgs, outs, engine.results):
        if out is not None:
            ready_folder(out, c, start, keep_to=start if r["status"] == "running" else r["steps"])
    show = progress if progress is not None else sys.stderr.isatty()
    engine.bar = progress_bar(show, tc.steps, start, f"fleet of {K}")
    records = [
        RunRecord(r, out, Trackers(c, out, start) if r["status"] == "running" else None)
        for c, out, r in zip(cfgs, outs, engine.results)
    ]
    try:
        run_steps(engine, records, tc, start)
    finally:
        if engine.bar is not None:
            engine.bar.stop()
    return _finish(engine, outs, clock())


def _finish(engine: FleetEngine, outs: list, seconds: float) -> list[RunResult]:
    """Each member's result with its own model: length evaluations, final weights and final.json."""
    out = []
    for i, (c, r) in enumerate(zip(engine.cfgs, engine.results)):
        model = engine.fleet.member_model(i, engine.task)
        if c.train.eval_lengths and r["status"] == "done":
            r["length_eval"] = evaluate_lengths(c, model, engine.device, engine.dtype)
        r["seconds"] = seconds
        if outs[i] is not None:
            final = {"step": r["steps"], "config_hash": r["config_hash"], "model": model.state_dict()}
            save_checkpoint(final, outs[i] / "checkpoint.pt")
            write_final(outs[i] / "final.json", r)
        out.append(RunResult(r, model))
    return out
