"""One training run: AdamW on fresh samples, validation, checkpoints, metrics.

The run folder (when given) holds

    config.yaml      the full config of the run
    metrics.jsonl    one line per evaluation: step, train_loss, val_loss, val_rel, lr, seconds
    checkpoint.pt    model, optimizer, scheduler and data-stream state (atomic writes)
    final.json       the result (written last)

A run folder that already holds a checkpoint of the same config resumes from
it; the numbers are the same as those of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from .config import ConfigError, RunConfig
from .models import is_memory_parameter, make_model
from .preflight import check_device, check_runs, check_writable_dir
from .tasks import make_task

DATA_SEED_OFFSET = 104_729  # the training stream of seed s is seeded with s + this
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(name)
    return torch.device(name)


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A CPU training step allocates and frees tensors of tens of MB each time. By
    default glibc maps such blocks fresh and unmaps them on free, so every step
    pays the kernel for zeroing their pages again: measured on this 2-core machine,
    the 3a DP cell H = 64, m = 256 took 48 ms a step that way and 20 ms with the
    memory kept. Process-wide and idempotent; the process's resident memory stays
    at its peak. Set SPARSEMEM_MALLOC=system to leave malloc alone. Returns
    whether the settings took (glibc only).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or os.environ.get("SPARSEMEM_MALLOC", "keep") == "system" or not sys.platform.startswith("linux"):
        return _ALLOCATOR_TUNED
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        # blocks up to 1 GiB from the heap (older glibc caps this at 32 MiB); trim only above 2 GiB free
        mapped = libc.mallopt(m_mmap_threshold, 1 << 30) or libc.mallopt(m_mmap_threshold, 32 << 20)
        _ALLOCATOR_TUNED = bool(mapped and libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        pass
    return _ALLOCATOR_TUNED


def lr_factor(step: int, cfg) -> float:
    """Multiplier of lr after `step` optimizer steps: linear warm-up, then constant or cosine."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))


def param_groups(model: torch.nn.Module, tc) -> list:
    """Three groups: weight matrices (decayed), other weights, memory parameters (lr * rpe_lr_scale, no decay)."""
    decay, rest, rpe = [], [], []
    for name, p in model.named_parameters():
        if is_memory_parameter(name):
            rpe.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            rest.append(p)
    groups = [{"params": decay, "weight_decay": tc.weight_decay}, {"params": rest, "weight_decay": 0.0},
              {"params": rpe, "weight_decay": 0.0, "lr": tc.lr * tc.rpe_lr_scale}]
    return [g for g in groups if g["params"]]


@torch.no_grad()
def _mean_loss(predict, loss, x: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    """loss(predict(x), y) averaged over a fixed set, evaluated in chunks, in float64."""
    total, n = 0.0, 0
    for i in range(0, x.shape[0], chunk):
        part = y[i:i + chunk]
        total = total + loss(predict(x[i:i + chunk]), part).double() * part.shape[0]
        n += part.shape[0]
    return total / n


def evaluate(model, task, x: torch.Tensor, y: torch.Tensor, chunk: int = 500) -> float:
    """The task's loss (MSE, or cross-entropy for text) over a fixed set, in chunks."""
    return _mean_loss(model, task.loss, x, y, chunk).item()


def evaluate_lengths(cfg: RunConfig, model, device, dtype) -> dict:
    """The trained model on the same task at other sequence lengths: {length: {val_loss, val_rel}}."""
    out = {}
    model.eval()
    for n in cfg.train.eval_lengths:
        task = make_task(cfg.task.model_copy(update={"seq_len": n}))
        x, y = task.validation_set(cfg.train.val_samples, device=device, dtype=dtype)
        loss = evaluate(model, task, x, y)
        var = task.variance(y)
        out[str(n)] = {"val_loss": loss, "val_rel": loss / var if var else None}
    return out


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda p: p.write_text(text))


def _trim_metrics(path: Path, start: int, interval: Optional[int] = None) -> Optional[list[dict]]:
    """Keep the lines of a metrics file up to step `start`; unreadable lines (a partial last line) are dropped.

    With ``interval``, the lines kept must be exactly the evaluations at its multiples up to ``start``;
    if some are missing (a damaged file) the file is left alone and None returned.
    """
    kept = []
    if path.exists():
        for ln in path.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(ln)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= start:
                kept.append(row)
    if interval is not None and [r["step"] for r in kept] != list(range(interval, start + 1, interval)):
        return None
    if path.exists():
        _write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


class DamagedFile(Exception):
    """A run file that cannot be trusted (truncated, zeroed, garbage, or failing its checksum)."""


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checkpoint(state: dict, path: Path) -> None:
    """torch.save ``state`` to ``path`` (a plain torch file) and its sha256 beside it, each atomically."""
    import hashlib
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    _atomic_write(path, lambda p: p.write_bytes(data))
    _write_text(_digest_path(path), hashlib.sha256(data).hexdigest() + "\n")


def load_checkpoint(path: Path, device) -> dict:
    """A checkpoint that matches the sha256 written beside it (one without, from an older version, only
    has to load); DamagedFile otherwise. A kill between the two writes also reads as damaged."""
    import hashlib
    import io

    try:
        data = path.read_bytes()
        digest = _digest_path(path).read_text().strip() if _digest_path(path).exists() else None
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedFile(f"{path.name} cannot be read ({getattr(err, 'strerror', None) or err})") from None
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise DamagedFile(f"{path.name} fails its checksum ({len(data)} bytes)")
    try:
        state = torch.load(io.BytesIO(data), map_location=device, weights_only=False)
    except Exception as err:  # noqa: BLE001 - whatever unpickling a damaged file raises
        raise DamagedFile(f"{path.name} does not load ({type(err).__name__})") from None
    if not isinstance(state, dict):
        raise DamagedFile(f"{path.name} holds no checkpoint")
    return state


def _result_digest(result: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(result, sort_keys=True, default=str).encode()).hexdigest()


def write_final(path: Path, result: dict) -> None:
    """A run's final.json: its result (without the model) and a sha256 of that result."""
    data = {k: v for k, v in result.items() if k != "model"}
    _write_text(path, json.dumps({**data, "sha256": _result_digest(data)}, indent=2))


def _read_json(path: Path, healed: list) -> Optional[dict]:
    """A run's final.json, or None if absent; a damaged one (unreadable, or failing its sha256) is noted
    in ``healed`` and removed."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
        if isinstance(data, dict):
            digest = data.pop("sha256", None)
            if digest is None or digest == _result_digest(data):  # older versions wrote none
                return data
    except (ValueError, UnicodeDecodeError):
        pass
    healed.append(f"{path.name} is damaged; the run goes on from its checkpoint")
    path.unlink()
    return None


def _try_resume(path: Path, device, restore: Callable[[dict], tuple], what: str) -> tuple:
    """(restore(checkpoint at path), None), or (None, a note of the damage) when the checkpoint or the files
    ``restore`` checks are damaged; the caller then starts afresh. A ConfigError from ``restore`` (a folder of
    another run) is the user's to fix and propagates."""
    try:
        return restore(load_checkpoint(path, device)), None
    except ConfigError:
        raise
    except (DamagedFile, KeyError, RuntimeError, TypeError, ValueError) as err:
        return None, f"{err if isinstance(err, DamagedFile) else f'{path.name}: {err}'}; {what} restarted from step 0"


def _restart(out: Path, keep_checkpoint: bool = False) -> None:
    """Clear a run folder's state files, so the run starts at step 0."""
    for name in ("final.json", "metrics.jsonl") + (() if keep_checkpoint else ("checkpoint.pt", "checkpoint.pt.sha256")):
        (out / name).unlink(missing_ok=True)


def blowup_limit(tc, var_y) -> float:
    """The loss above which a run counts as diverged: train.blowup x Var(y) (inf when off or Var(y) unknown)."""
    return tc.blowup * var_y if tc.blowup and var_y else math.inf


def _diverges(loss: float, limit: float) -> bool:
    return not math.isfinite(loss) or loss > limit


def _json_number(v: float):
    """A float JSON can hold: NaN and inf become the strings "nan", "inf", "-inf"."""
    return v if math.isfinite(v) else str(v)


def _new_result(cfg: RunConfig, chash: str, var_y, params: int, device, steps: int = 0,
                history: Optional[list] = None) -> dict:
    """A run's result before it finishes; ``history`` holds its metrics rows so far, if any.

    ``curve`` is the validation curve, one [step, val_rel] a evaluation (val_loss where val_rel is None),
    kept in the store so a report can tell how fast a run learned, not only where it ended.
    """
    history = history or []
    last = history[-1] if history else {}
    return {"name": cfg.name, "config_hash": chash, "status": "running", "steps": steps,
            "val_loss": last.get("val_loss"), "val_rel": last.get("val_rel"), "train_loss": last.get("train_loss"),
            "var_y": var_y, "params": params, "seconds": 0.0, "diverged_step": None, "device": str(device),
            "curve": [curve_point(r) for r in history]}


def curve_point(row: dict) -> list:
    """One evaluation on a run's validation curve: [step, val_rel] (val_loss for runs without Var(y))."""
    v = row["val_rel"] if row.get("val_rel") is not None else row["val_loss"]
    return [row["step"], _json_number(float(v))]


def _progress(enabled: bool, total: int, start: int, label: str):
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True, console=None)
    bar.start()
    bar.add_task(label, total=total, completed=start, info="")
    return bar


def train(cfg: RunConfig, out_dir: Union[str, Path, None] = None, progress: Optional[bool] = None,
          resume: bool = True, compile: bool = False) -> dict:
    """Train one run and return its result.

    The result holds status (done or diverged), steps, val_loss (MSE on the
    fixed validation set), val_rel (val_loss / Var(y)), train_loss (mean over
    the last evaluation interval), params, seconds and diverged_step.
    
    ``compile`` trains through ``torch.compile`` (an execution choice, not part of
    the config: same numbers to round-off); should compiling fail, the run goes
    on eagerly. The result's ``compiled`` says which it used.
    """
    t0 = time.perf_counter()
    tc = cfg.train
    check_runs([cfg])
    if out_dir is not None:
        check_writable_dir(out_dir, "run folder")
    device = resolve_device(tc.device)
    keep_freed_memory()
    dtype = DTYPES[tc.dtype]
    task = make_task(cfg.task)

    def build():
        torch.manual_seed(tc.seed)
        model = make_model(cfg.model, task).to(device=device, dtype=dtype)
        opt = torch.optim.AdamW(param_groups(model, tc), lr=tc.lr, betas=tuple(tc.betas))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc))
        gen = torch.Generator(device=device).manual_seed(tc.seed + DATA_SEED_OFFSET)
        return model, opt, sched, gen

    model, opt, sched, gen = build()
    x_val, y_val = task.validation_set(tc.val_samples, device=device, dtype=dtype)
    var_y = task.variance(y_val)  # None for text: no relative loss
    limit = blowup_limit(tc, var_y)

    out = Path(out_dir) if out_dir is not None else None
    chash = cfg.config_hash()
    start, history, elapsed_before, healed = 0, [], 0.0, []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        ckpt_path = out / "checkpoint.pt"
        final_path = out / "final.json"
        done = _read_json(final_path, healed) if resume else None
        if done is not None and done.get("config_hash") == chash:
            try:
                if ckpt_path.exists():
                    model.load_state_dict(load_checkpoint(ckpt_path, device)["model"])
                return {**done, "model": model}
            except DamagedFile as err:  # the weights of a finished run are gone: train it again
                healed.append(f"checkpoint.pt: {err}; the finished run is trained again")
                model, opt, sched, gen = build()
                _restart(out)
        if resume and ckpt_path.exists():
            def restore(state: dict) -> tuple:
                if state.get("config_hash") != chash:
                    raise ConfigError(f"run folder {str(out)!r} holds a run of another config; pick another --out")
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["opt"])
                sched.load_state_dict(state["sched"])
                gen.set_state(state["gen"].cpu())
                kept = _trim_metrics(out / "metrics.jsonl", state["step"], tc.eval_interval)
                if kept is None:
                    raise DamagedFile("metrics.jsonl lacks evaluations before the checkpoint")
                return state["step"], state.get("seconds", 0.0), kept

            resumed, note = _try_resume(ckpt_path, device, restore, "the run")
            if note is None:
                start, elapsed_before, history = resumed
            else:
                healed.append(note)
                model, opt, sched, gen = build()
                _restart(out)
        if start == 0:
            _restart(out, keep_checkpoint=False)
            history = []
        _write_text(out / "config.yaml", cfg.to_yaml())
        for note in healed:
            print(f"sparsemem: warning: run folder {str(out)!r}: {note}", file=sys.stderr)

    result = _new_result(cfg, chash, var_y, model.num_params(), device, start, history)
    result["seconds"] = elapsed_before
    if healed:
        result["healed"] = healed

    def checkpoint(step: int) -> None:
        if out is None:
            return
        state = {"step": step, "config_hash": chash, "model": model.state_dict(), "opt": opt.state_dict(),
                 "sched": sched.state_dict(), "gen": gen.get_state(),
                 "seconds": elapsed_before + time.perf_counter() - t0}
        save_checkpoint(state, out / "checkpoint.pt")

    show = progress if progress is not None else sys.stderr.isatty()
    bar = _progress(show, tc.steps, start, cfg.name or "train")
    loss_sum, loss_n = 0.0, 0
    model.train()
    forward = model
    if compile:
        torch._dynamo.reset()  # a worker trains many shapes: start each run below dynamo's recompile limit
        forward = torch.compile(model)
        result["compiled"] = True
    try:
        for step in range(start + 1, tc.steps + 1):
            x, y = task.sample(tc.batch_size, gen, dtype)
            try:
                loss = task.loss(forward(x), y)
            except Exception:  # noqa: BLE001 - a compiler that fails: the same step, eagerly
                if forward is model:
                    raise
                forward, result["compiled"] = model, False
                loss = task.loss(model(x), y)
            lv = loss.item()
            if _diverges(lv, limit):
                result.update(status="diverged", diverged_step=step, steps=step, diverged_loss=_json_number(lv))
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            loss_sum, loss_n = loss_sum + lv, loss_n + 1
            if bar is not None:
                bar.update(bar.task_ids[0], advance=1, info=f"loss {lv:.3g}")
            if step % tc.eval_interval == 0 or step == tc.steps:
                model.eval()
                val = evaluate(model, task, x_val, y_val)
                model.train()
                row = {"step": step, "train_loss": loss_sum / loss_n, "val_loss": val,
                       "val_rel": val / var_y if var_y else None, "lr": sched.get_last_lr()[0],
                       "seconds": round(elapsed_before + time.perf_counter() - t0, 3)}
                loss_sum, loss_n = 0.0, 0
                result.update(steps=step, val_loss=val, val_rel=row["val_rel"], train_loss=row["train_loss"])
                result["curve"].append(curve_point(row))
                if out is not None:
                    with open(out / "metrics.jsonl", "a") as fh:
                        fh.write(json.dumps(row) + "\n")
                if _diverges(val, limit):
                    result.update(status="diverged", diverged_step=step, diverged_loss=_json_number(val))
                    break
                if step % tc.checkpoint_interval == 0 or step == tc.steps:
                    checkpoint(step)
        else:
            result["status"] = "done"
    finally:
        if bar is not None:
            bar.stop()
    if tc.eval_lengths and result["status"] == "done":
        result["length_eval"] = evaluate_lengths(cfg, model, device, dtype)
    result["seconds"] = round(elapsed_before + time.perf_counter() - t0, 3)
    if out is not None:
        write_final(out / "final.json", result)
    result["model"] = model
    return result


# -- fleets --------------------------------------------------------------------
# Train-config fields every member of a fleet shares (they set the loop, the data and the validation);
# the others (seed, lr, rpe_lr_scale, weight_decay, betas, warm-up, schedule, min_lr_ratio, grad_clip) are per member.
FLEET_SHARED_TRAIN = ("steps", "batch_size", "val_samples", "eval_every", "checkpoint_every", "eval_lengths",
                      "device", "dtype")


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
        self._frozen, self._alive_seen = None, None

    def factors(self, step: int) -> torch.Tensor:
        """Per-member lr multipliers for the update of loop step `step` (LambdaLR: lr_factor(step - 1))."""
        return torch.tensor([lr_factor(step - 1, c.train) for c in self.cfgs], device=self.lr.device,
                            dtype=self.lr.dtype)

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
        g.masked_fill_(self._frozen, 0.0)
        a, b, c = self.buf
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
        bc2 = (1 - self.beta2 ** n).sqrt()
        if self.same_betas:  # the usual case: one bias correction for all, no gather
            c.div_(bc2[0])
        else:
            torch.index_select(bc2, 0, at, out=b)
            c.div_(b)
        c.add_(self.eps)  # the denominator
        torch.index_select(lr / (1 - self.beta1 ** n), 0, at, out=a)
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
    from torch.func import vmap

    return _mean_loss(fleet, vmap(task.loss, in_dims=(0, None)), x, y, chunk).tolist()


def train_fleet(cfgs: list[RunConfig], out_dirs: Optional[list] = None, fleet_dir: Union[str, Path, None] = None,
                progress: Optional[bool] = None, resume: bool = True) -> list[dict]:
    """Train K runs as one fleet; returns one result per run, as ``train`` would.

    The runs must share ``fleet_key`` (task and loop) and be supported by fleets
    (``sparsemem.models.fleet.fleet_supports``). Each member keeps its own run
    folder (config.yaml, metrics.jsonl, final.json and its final weights in
    checkpoint.pt); the fleet's checkpoint, which resumes every member exactly,
    lives in ``fleet_dir``.
    """
    from torch.func import vmap

    from .models.fleet import FleetModel, fleet_supports

    t0 = time.perf_counter()
    if not cfgs:
        return []
    key = fleet_key(cfgs[0])
    for c in cfgs:
        if not fleet_supports(c):
            raise ConfigError(f"run {c.name or c.config_hash()[:12]}: fleets train the transformer on "
                              "synthetic tasks only")
        if fleet_key(c) != key:
            raise ConfigError(f"run {c.name or c.config_hash()[:12]} differs from the fleet's first run in its task "
                              f"or in one of train.{', train.'.join(FLEET_SHARED_TRAIN)}")
    K = len(cfgs)
    tc = cfgs[0].train
    check_runs(cfgs)
    for d in [fleet_dir, *(out_dirs or [])]:
        if d is not None:
            check_writable_dir(d, "run folder")
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

    results = [{**_new_result(c, h, var_y, fleet.num_params(i), device), "fleet_size": K}
               for i, (c, h) in enumerate(zip(cfgs, hashes))]
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
                    if out is not None and state["results"][i]["status"] == "running" and _trim_metrics(
                            out / "metrics.jsonl", state["step"], tc.eval_interval) is None:
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
        state = {"members": hashes, "step": step, "fleet": fleet.state_dict(), "opt": opt.state_dict(),
                 "gens": {s: g.get_state() for s, g in gens.items()}, "results": results,
                 "seconds": elapsed_before + time.perf_counter() - t0}
        save_checkpoint(state, fdir / "checkpoint.pt")

    show = progress if progress is not None else sys.stderr.isatty()
    bar = _progress(show, tc.steps, start, f"fleet of {K}")
    loss_sum = torch.zeros(K, dtype=torch.float64)
    loss_n = 0
    batch_loss = vmap(task.loss, in_dims=(0, 0 if stream is not None else None))
    alive_dev = alive.to(device)
    try:
        for step in range(start + 1, tc.steps + 1):
            samples = [task.sample(tc.batch_size, gens[s], dtype) for s in seeds]
            if stream is None:
                x, y = samples[0]
            else:
                x, y = torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])[stream]
            losses = batch_loss(fleet(x, stream), y)
            values = losses.detach().double().cpu()
            bad = alive & ~(torch.isfinite(values) & (values <= limits))
            if bool(bad.any()):
                for i in bad.nonzero().flatten().tolist():
                    results[i].update(status="diverged", diverged_step=step, steps=step,
                                      diverged_loss=_json_number(float(values[i])))
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
                    row = {"step": step, "train_loss": float(loss_sum[i]) / loss_n, "val_loss": vals[i],
                           "val_rel": vals[i] / var_y if var_y else None, "lr": lrs[i], "seconds": seconds}
                    results[i].update(steps=step, val_loss=vals[i], val_rel=row["val_rel"],
                                      train_loss=row["train_loss"])
                    results[i].setdefault("curve", []).append(curve_point(row))  # fleet checkpoints before curves
                    if outs[i] is not None:
                        with open(outs[i] / "metrics.jsonl", "a") as fh:
                            fh.write(json.dumps(row) + "\n")
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
        r["model"] = model
    return results
