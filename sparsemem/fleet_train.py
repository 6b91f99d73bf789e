"""Fleets: K runs trained together as one batched model (``models/fleet.py``), each its own result.

A member starts from its single run's parameters and sees its single run's
data stream; it has its own AdamW state, learning rate and schedule, its own
validation and metrics, and freezes alone when its loss diverges.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Optional, Union

import torch

from .config import ConfigError, RunConfig
from .plumbing import check_writable_dir
from .preflight import check_runs
from .runfiles import DamagedFile, _restart, _trim_metrics, _try_resume, _write_text, save_checkpoint, write_final
from .tasks import make_task
from .trackers import Trackers
from .train import (
    DATA_SEED_OFFSET,
    DTYPES,
    RunResult,
    _diverges,
    _json_number,
    _mean_loss,
    _new_result,
    _progress,
    blowup_limit,
    curve_point,
    evaluate_lengths,
    keep_freed_memory,
    lr_factor,
    resolve_device,
)

# -- fleets --------------------------------------------------------------------
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


class FleetAdamW:
    """AdamW over a fleet's flat parameter with a learning rate, betas, decay and clipping per member.

    The update is torch's AdamW, member by member: decay p *= 1 - lr wd (weight
    matrices only), then the bias-corrected Adam step; RPE parameters at
    lr * rpe_lr_scale. Frozen (diverged) members and padded entries get no
    update: their gradients are replaced by zeros and their learning rate is 0.
    """

    def __init__(self, fleet, cfgs: list[RunConfig], eps: float = 1e-8):
        self.fleet, self.cfgs, self.eps = fleet, cfgs, eps
        flat = fleet.flat
        col = lambda vals: torch.tensor(vals, device=flat.device, dtype=flat.dtype)  # noqa: E731
        at = fleet.member_of
        self.lr = col([c.train.lr for c in cfgs])
        self.clip = col([c.train.grad_clip for c in cfgs])
        self.beta1 = col([c.train.betas[0] for c in cfgs])
        self.beta2 = col([c.train.betas[1] for c in cfgs])
        # per entry of the flat parameter
        self.lr_scale = torch.where(fleet.is_memory, col([c.train.rpe_lr_scale for c in cfgs])[at], 1.0)
        self.wd = col([c.train.weight_decay for c in cfgs])[at] * fleet.is_decay
        self.one_minus_beta1 = 1 - self.beta1[at]
        self.beta2_at = self.beta2[at]
        self.one_minus_beta2 = 1 - self.beta2_at
        self.decays = any(c.train.weight_decay > 0 for c in cfgs)
        self.same_betas = len({tuple(c.train.betas) for c in cfgs}) == 1
        self.clips = any(c.train.grad_clip > 0 for c in cfgs)
        self.step_count = 0
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        # scratch space: the update works in place, with no temporaries the size of the fleet at each step
        self.buf = [torch.empty_like(flat) for _ in range(3)]
        self._frozen, self._alive_seen, self._any_frozen, self._rate = None, None, True, None
        # the usual grid: one schedule, one pair of betas, no decay, no clipping; then the per-entry step size
        # is a constant times one scalar a step, and an update takes 7 passes over the fleet instead of 11
        self.plain = (
            self.same_betas
            and not self.decays
            and not self.clips
            and len({(c.train.warmup_steps, c.train.schedule, c.train.min_lr_ratio, c.train.steps) for c in cfgs}) == 1
        )

    def factors(self, step: int) -> torch.Tensor:
        """Per-member lr multipliers for the update of loop step `step` (LambdaLR: lr_factor(step - 1))."""
        return torch.tensor(
            [lr_factor(step - 1, c.train) for c in self.cfgs], device=self.lr.device, dtype=self.lr.dtype
        )

    @torch.no_grad()
    def step(self, step: int, alive: torch.Tensor) -> None:
        """One update of every alive member; ``alive`` (K,) bool."""
        self.step_count += 1
        n = self.step_count
        p, at = self.fleet.flat, self.fleet.member_of
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        g = p.grad
        key = tuple(alive.tolist())
        if key != self._alive_seen:  # entries that get no update: padding and frozen members
            self._frozen, self._alive_seen = ~(alive[at] & self.fleet.mask), key
            self._any_frozen = bool(self._frozen.any())
            self._rate = torch.where(self._frozen, 0.0, self.lr[at] * self.lr_scale)  # plain: lr of each entry
        if self._any_frozen:  # a frozen member's gradient may be NaN: it must not reach its moments
            g.masked_fill_(self._frozen, 0.0)
        a, b, c = self.buf
        if self.plain:
            # torch's AdamW, p -= lr / bc1 * m / (sqrt(v) / bc2 + eps), with numerator and denominator times bc2
            b1, b2 = self.cfgs[0].train.betas
            self.exp_avg.lerp_(g, 1 - b1)
            self.exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
            bc2 = math.sqrt(1 - b2**n)
            torch.sqrt(self.exp_avg_sq, out=c).add_(self.eps * bc2)
            torch.mul(self.exp_avg, self._rate, out=a)
            p.addcdiv_(a, c, value=-lr_factor(step - 1, self.cfgs[0].train) * bc2 / (1 - b1**n))
            return
        if self.clips:  # per-member gradient-norm clipping, as clip_grad_norm_
            torch.mul(g, g, out=a)
            norm = torch.zeros_like(self.lr).index_add_(0, at, a).sqrt()
            coef = torch.where(self.clip > 0, (self.clip / (norm + 1e-6)).clamp(max=1.0), torch.ones_like(norm))
            torch.index_select(coef, 0, at, out=a)
            g.mul_(a)
        lr = self.lr * self.factors(step) * alive.to(self.lr.dtype)  # (K,)
        if self.decays:  # decoupled weight decay: p *= 1 - lr wd
            torch.index_select(lr, 0, at, out=a)
            a.mul_(self.lr_scale).mul_(self.wd)
            p.addcmul_(p, a, value=-1.0)
        if self.same_betas:  # the usual case: scalars, no per-entry betas
            b1, b2 = self.cfgs[0].train.betas
            self.exp_avg.lerp_(g, 1 - b1)
            self.exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        else:
            self.exp_avg.lerp_(g, self.one_minus_beta1)
            torch.mul(g, self.one_minus_beta2, out=b)
            self.exp_avg_sq.mul_(self.beta2_at).addcmul_(g, b)
        torch.sqrt(self.exp_avg_sq, out=c)
        bc2 = (1 - self.beta2**n).sqrt()
        if self.same_betas:  # the usual case: one bias correction for all, no gather
            c.div_(bc2[0])
        else:
            torch.index_select(bc2, 0, at, out=b)
            c.div_(b)
        c.add_(self.eps)  # the denominator
        torch.index_select(lr / (1 - self.beta1**n), 0, at, out=a)
        a.mul_(self.lr_scale).mul_(self.exp_avg)  # step size times the first moment
        p.addcdiv_(a, c, value=-1.0)

    def current_lr(self, step: int) -> list[float]:
        """Each member's learning rate of its weight group after `step` updates, as LambdaLR reports it."""
        return [c.train.lr * lr_factor(step, c.train) for c in self.cfgs]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])


def evaluate_fleet(fleet, task, x: torch.Tensor, y: torch.Tensor, chunk: int = 500) -> list[float]:
    """Each member's loss over one fixed set (shared by all members), in chunks."""
    return _mean_loss(fleet, task.member_losses, x, y, chunk).tolist()


def train_fleet(
    cfgs: list[RunConfig],
    out_dirs: Optional[list] = None,
    fleet_dir: Union[str, Path, None] = None,
    progress: Optional[bool] = None,
    resume: bool = True,
) -> list[dict]:
    """Train K runs as one fleet; returns one result per run, as ``train`` would.

    The runs must share ``fleet_key`` (task and loop) and be supported by fleets
    (``sparsemem.models.fleet.fleet_supports``). Each member keeps its own run
    folder (config.yaml, metrics.jsonl, final.json and its final weights in
    checkpoint.pt); the fleet's checkpoint, which resumes every member exactly,
    lives in ``fleet_dir``.
    """
    from .models.fleet import FleetModel, fleet_supports

    t0 = time.perf_counter()
    if not cfgs:
        return []
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
    K = len(cfgs)
    tc = cfgs[0].train
    check_runs(cfgs)
    for d in [fleet_dir, *(out_dirs or [])]:
        if d is not None:
            check_writable_dir(d, "run folder", ConfigError)
    device = resolve_device(tc.device)
    keep_freed_memory()
    dtype = DTYPES[tc.dtype]
    task = make_task(cfgs[0].task)
    seeds = sorted({c.train.seed for c in cfgs})

    def build():
        fleet = FleetModel(cfgs, task, device, dtype)
        gens = {s: torch.Generator(device=device).manual_seed(s + DATA_SEED_OFFSET) for s in seeds}
        return fleet, FleetAdamW(fleet, cfgs), gens

    fleet, opt, gens = build()
    stream = None if len(seeds) == 1 else torch.tensor([seeds.index(c.train.seed) for c in cfgs], device=device)
    x_val, y_val = task.validation_set(tc.val_samples, device=device, dtype=dtype)
    var_y = task.variance(y_val)
    limits = torch.tensor([blowup_limit(c.train, var_y) for c in cfgs], dtype=torch.float64)
    hashes = [c.config_hash() for c in cfgs]
    outs = [Path(d) if d is not None else None for d in (out_dirs or [None] * K)]
    fdir = Path(fleet_dir) if fleet_dir is not None else None

    results = [
        {**_new_result(c, h, var_y, fleet.num_params(i), device), "fleet_size": K}
        for i, (c, h) in enumerate(zip(cfgs, hashes))
    ]
    alive = torch.ones(K, dtype=torch.bool)  # on the CPU; ``alive_dev`` follows it on the device
    start, elapsed_before, healed = 0, 0.0, []
    if fdir is not None:
        fdir.mkdir(parents=True, exist_ok=True)
        ckpt = fdir / "checkpoint.pt"
        if resume and ckpt.exists():

            def restore(state: dict) -> tuple:
                if state.get("members") != hashes:
                    raise ConfigError(f"fleet folder {str(fdir)!r} holds another fleet; pick another folder")
                fleet.load_state_dict(state["fleet"])
                opt.load_state_dict(state["opt"])
                for s, g in state["gens"].items():
                    gens[s].set_state(g.cpu())
                for i, out in enumerate(outs):  # a running member's metrics hold every evaluation up to the step
                    if (
                        out is not None
                        and state["results"][i]["status"] == "running"
                        and _trim_metrics(out / "metrics.jsonl", state["step"], tc.eval_interval) is None
                    ):
                        raise DamagedFile(f"{out.name}/metrics.jsonl lacks evaluations before the checkpoint")
                return state["step"], state["seconds"], state["results"]

            resumed, note = _try_resume(ckpt, device, restore, "the fleet")
            if note is None:
                start, elapsed_before, results = resumed
            else:
                healed.append(note)
                print(f"sparsemem: warning: fleet folder {str(fdir)!r}: {note}", file=sys.stderr)
                fleet, opt, gens = build()
            alive = torch.tensor([r["status"] == "running" for r in results])
            for r in results:
                if start:
                    r["resumed_from"] = start
                if healed:
                    r["healed"] = healed
    for i, (c, out) in enumerate(zip(cfgs, outs)):
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            if start == 0:
                _restart(out)
            _write_text(out / "config.yaml", c.to_yaml())
            _trim_metrics(out / "metrics.jsonl", start if results[i]["status"] == "running" else results[i]["steps"])

    def save(step: int) -> None:
        if fdir is None:
            return
        state = {
            "members": hashes,
            "step": step,
            "fleet": fleet.state_dict(),
            "opt": opt.state_dict(),
            "gens": {s: g.get_state() for s, g in gens.items()},
            "results": results,
            "seconds": elapsed_before + time.perf_counter() - t0,
        }
        save_checkpoint(state, fdir / "checkpoint.pt")

    show = progress if progress is not None else sys.stderr.isatty()
    bar = _progress(show, tc.steps, start, f"fleet of {K}")
    trackers = [Trackers(c, out, start) if r["status"] == "running" else None for c, out, r in zip(cfgs, outs, results)]
    loss_sum = torch.zeros(K, dtype=torch.float64)
    loss_n = 0
    alive_dev = alive.to(device)
    try:
        for step in range(start + 1, tc.steps + 1):
            samples = [task.sample(tc.batch_size, gens[s], dtype) for s in seeds]
            if stream is None:
                x, y = samples[0]
            else:
                x, y = torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])[stream]
            losses = task.member_losses(fleet(x, stream), y)
            values = losses.detach().double().cpu()
            bad = alive & ~(torch.isfinite(values) & (values <= limits))
            if bool(bad.any()):
                for i in bad.nonzero().flatten().tolist():
                    results[i].update(
                        status="diverged", diverged_step=step, steps=step, diverged_loss=_json_number(float(values[i]))
                    )
                alive = alive & ~bad
                alive_dev = alive.to(device)
                if not bool(alive.any()):
                    break
            fleet.flat.grad = None
            torch.where(alive_dev, losses, torch.zeros_like(losses)).sum().backward()
            opt.step(step, alive_dev)
            loss_sum += torch.where(alive, values, torch.zeros_like(values))
            loss_n += 1
            if bar is not None:
                bar.update(bar.task_ids[0], advance=1, info=f"alive {int(alive.sum())}/{K}")
            if step % tc.eval_interval == 0 or step == tc.steps:
                vals = evaluate_fleet(fleet, task, x_val, y_val)
                lrs = opt.current_lr(step)
                seconds = round(elapsed_before + time.perf_counter() - t0, 3)
                for i in alive.nonzero().flatten().tolist():
                    row = {
                        "step": step,
                        "train_loss": float(loss_sum[i]) / loss_n,
                        "val_loss": vals[i],
                        "val_rel": vals[i] / var_y if var_y else None,
                        "lr": lrs[i],
                        "seconds": seconds,
                    }
                    results[i].update(
                        steps=step, val_loss=vals[i], val_rel=row["val_rel"], train_loss=row["train_loss"]
                    )
                    results[i].setdefault("curve", []).append(curve_point(row))  # fleet checkpoints before curves
                    if outs[i] is not None:
                        with open(outs[i] / "metrics.jsonl", "a") as fh:
                            fh.write(json.dumps(row) + "\n")
                    if trackers[i] is not None:
                        trackers[i].log(row)
                    if _diverges(vals[i], float(limits[i])):
                        results[i].update(status="diverged", diverged_step=step, diverged_loss=_json_number(vals[i]))
                        alive[i] = False
                alive_dev = alive.to(device)
                loss_sum.zero_()
                loss_n = 0
                if not bool(alive.any()):
                    break
                if step % tc.checkpoint_interval == 0 or step == tc.steps:
                    save(step)
    finally:
        if bar is not None:
            bar.stop()
        for i, t in enumerate(trackers):
            if t is not None:
                t.finish(
                    {**results[i], "status": "done" if results[i]["status"] == "running" else results[i]["status"]}
                )
    seconds = round(elapsed_before + time.perf_counter() - t0, 3)
    for i, (c, r) in enumerate(zip(cfgs, results)):
        if r["status"] == "running":
            r["status"] = "done"
        model = fleet.member_model(i, task)
        if c.train.eval_lengths and r["status"] == "done":
            r["length_eval"] = evaluate_lengths(c, model, device, dtype)
        r["seconds"] = seconds
        if outs[i] is not None:
            final = {"step": r["steps"], "config_hash": r["config_hash"], "model": model.state_dict()}
            save_checkpoint(final, outs[i] / "checkpoint.pt")
            write_final(outs[i] / "final.json", r)
        results[i] = RunResult(r, model)
    return results
