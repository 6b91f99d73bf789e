"""One training run: AdamW on fresh samples, validation, checkpoints, metrics.

The run folder (when given) holds config.yaml, metrics.jsonl, checkpoint.pt and
final.json (``runfiles.py``). A run folder that already holds a checkpoint of the same config resumes from
it; the numbers are the same as those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional, Union

import torch

from .config import ConfigError, RunConfig
from .models import is_memory_parameter, make_model
from .plumbing import check_writable_dir, concrete_device
from .preflight import check_device, check_runs
from .runfiles import (
    DamagedFile,
    _read_json,
    _restart,
    _trim_metrics,
    _try_resume,
    _write_text,  # noqa: F401
    load_checkpoint,
    save_checkpoint,
    write_final,
)
from .tasks import make_task
from .throughput import peak_flops
from .trackers import Trackers

DATA_SEED_OFFSET = 104_729  # the training stream of seed s is seeded with s + this
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """The torch device a run trains on: ``auto`` is cuda where present, else cpu; others are checked."""
    name = concrete_device(name)
    check_device(name)
    return torch.device(name)


class RunResult(dict):
    """A run's result: its metrics as a plain dict (what the store and final.json keep), and the trained
    model beside it as ``.model``, never one of its items. ``result["model"]`` still answers, for code
    written when the model was an item."""

    def __init__(self, data: dict, model=None):
        super().__init__(data)
        self.model = model

    def __missing__(self, key):
        if key == "model" and self.model is not None:
            return self.model
        raise KeyError(key)


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
    if (
        _ALLOCATOR_TUNED
        or os.environ.get("SPARSEMEM_MALLOC", "keep") == "system"
        or not sys.platform.startswith("linux")
    ):
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
    groups = [
        {"params": decay, "weight_decay": tc.weight_decay},
        {"params": rest, "weight_decay": 0.0},
        {"params": rpe, "weight_decay": 0.0, "lr": tc.lr * tc.rpe_lr_scale},
    ]
    return [g for g in groups if g["params"]]


@torch.no_grad()
def _mean_loss(predict, loss, x: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    """loss(predict(x), y) averaged over a fixed set, evaluated in chunks, in float64."""
    total, n = 0.0, 0
    for i in range(0, x.shape[0], chunk):
        part = y[i : i + chunk]
        total = total + loss(predict(x[i : i + chunk]), part).double() * part.shape[0]
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


def blowup_limit(tc, var_y) -> float:
    """The loss above which a run counts as diverged: train.blowup x Var(y) (inf when off or Var(y) unknown)."""
    return tc.blowup * var_y if tc.blowup and var_y else math.inf


def _diverges(loss: float, limit: float) -> bool:
    return not math.isfinite(loss) or loss > limit


def _json_number(v: float):
    """A float JSON can hold: NaN and inf become the strings "nan", "inf", "-inf"."""
    return v if math.isfinite(v) else str(v)


def _new_result(
    cfg: RunConfig, chash: str, var_y, params: int, device, steps: int = 0, history: Optional[list] = None
) -> dict:
    """A run's result before it finishes; ``history`` holds its metrics rows so far, if any.

    ``curve`` is the validation curve, one [step, val_rel] a evaluation (val_loss where val_rel is None),
    kept in the store so a report can tell how fast a run learned, not only where it ended.
    """
    history = history or []
    last = history[-1] if history else {}
    return {
        "name": cfg.name,
        "config_hash": chash,
        "status": "running",
        "steps": steps,
        "val_loss": last.get("val_loss"),
        "val_rel": last.get("val_rel"),
        "train_loss": last.get("train_loss"),
        "var_y": var_y,
        "params": params,
        "seconds": 0.0,
        "diverged_step": None,
        "device": str(device),
        "curve": [curve_point(r) for r in history],
    }


def curve_point(row: dict) -> list:
    """One evaluation on a run's validation curve: [step, val_rel] (val_loss for runs without Var(y))."""
    v = row["val_rel"] if row.get("val_rel") is not None else row["val_loss"]
    return [row["step"], _json_number(float(v))]


def _progress(enabled: bool, total: int, start: int, label: str):
    if not enabled:
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        transient=True,
        console=None,
    )
    bar.start()
    bar.add_task(label, total=total, completed=start, info="")
    return bar


def train(
    cfg: RunConfig,
    out_dir: Union[str, Path, None] = None,
    progress: Optional[bool] = None,
    resume: bool = True,
    compile: bool = False,
) -> dict:
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
    from .distributed import context, local_device

    ddp = context(tc.device, tc.batch_size)  # None unless torchrun started several processes
    if ddp is not None and not ddp.writer:
        out_dir, progress = None, False  # rank 0 alone writes the run folder
    if out_dir is not None:
        check_writable_dir(out_dir, "run folder", ConfigError)
    device = resolve_device(local_device(tc.device))
    peak = peak_flops(device, tc.autocast) if cfg.task.kind == "text" else None  # before anything is written
    peak = peak * (ddp.world if ddp is not None else 1) if peak else None  # every process's device
    keep_freed_memory()
    dtype = DTYPES[tc.dtype]
    task = make_task(cfg.task)

    def build():
        torch.manual_seed(tc.seed)
        model = make_model(cfg.model, task).to(device=device, dtype=dtype)
        # on a GPU one fused kernel for the whole update (the same AdamW; on a CPU the default loop)
        fused = {"fused": True} if device.type == "cuda" else {}
        opt = torch.optim.AdamW(param_groups(model, tc), lr=tc.lr, betas=tuple(tc.betas), **fused)
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
                if ddp is not None:
                    ddp.broadcast({"finished": done})
                return RunResult(done, model)
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

    if ddp is not None:  # every rank starts from rank 0's state: fresh, or resumed from its checkpoint
        state = None
        if ddp.writer and start > 0:
            state = {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "gen": gen.get_state(),
                "start": start,
                "elapsed": elapsed_before,
                "history": history,
            }
        state = ddp.broadcast(state)
        if state is not None and "finished" in state:
            return RunResult(state["finished"], model)  # rank 0 holds the finished run's weights
        if state is not None and not ddp.writer:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            gen.set_state(state["gen"])
            start, elapsed_before, history = state["start"], state["elapsed"], state["history"]
    result = _new_result(cfg, chash, var_y, model.num_params(), device, start, history)
    result["seconds"] = elapsed_before
    if healed:
        result["healed"] = healed

    def checkpoint(step: int) -> None:
        if out is None:
            return
        state = {
            "step": step,
            "config_hash": chash,
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "gen": gen.get_state(),
            "seconds": elapsed_before + time.perf_counter() - t0,
        }
        save_checkpoint(state, out / "checkpoint.pt")

    show = progress if progress is not None else sys.stderr.isatty()
    bar = _progress(show, tc.steps, start, cfg.name or "train")
    trackers = Trackers(cfg, out, start, enabled=ddp is None or ddp.writer)
    loss_sum, loss_n = 0.0, 0
    model.train()
    eager = forward = model if ddp is None else ddp.wrap(model)
    if compile:
        torch._dynamo.reset()  # a worker trains many shapes: start each run below dynamo's recompile limit
        forward = torch.compile(eager)
        result["compiled"] = True
    local = tc.batch_size // (ddp.world if ddp is not None else 1)
    micro = tc.micro_batch or local
    if local % micro:
        raise ConfigError(
            f"train.micro_batch = {tc.micro_batch}: must divide the batch of each of the "
            f"{ddp.world} processes ({local})"
        )
    chunks = local // micro
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if tc.autocast == "bf16" else contextlib.nullcontext()

    def loss_of(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        nonlocal forward
        with amp:
            try:
                pred = forward(xs)
            except Exception:  # noqa: BLE001 - a compiler that fails: the same step, eagerly
                if forward is eager:
                    raise
                forward, result["compiled"] = eager, False
                pred = eager(xs)
        return task.loss(pred.to(dtype) if tc.autocast != "off" else pred, ys)

    tokens_per_step = tc.batch_size * task.seq_len if cfg.task.kind == "text" else None
    flops_tok = model.flops_per_token(task.seq_len) if tokens_per_step and hasattr(model, "flops_per_token") else None
    interval_start, interval_t = start, time.perf_counter()
    try:
        for step in range(start + 1, tc.steps + 1):
            x, y = task.sample(tc.batch_size, gen, dtype)
            if ddp is not None:
                x, y = ddp.shard(x), ddp.shard(y)
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for i in range(chunks):  # gradient accumulation over micro-batches (one chunk: the whole batch)
                sl = slice(i * micro, (i + 1) * micro)
                sync = ddp is None or i == chunks - 1 or not hasattr(eager, "no_sync")
                with contextlib.nullcontext() if sync else eager.no_sync():
                    loss = loss_of(x[sl], y[sl]) / chunks if chunks > 1 else loss_of(x, y)
                    loss.backward()
                total += loss.item()
            lv = total if ddp is None else ddp.mean(total)
            if _diverges(lv, limit):  # the step is not applied
                result.update(status="diverged", diverged_step=step, steps=step, diverged_loss=_json_number(lv))
                break
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            loss_sum, loss_n = loss_sum + lv, loss_n + 1
            if bar is not None:
                bar.update(bar.task_ids[0], advance=1, info=f"loss {lv:.3g}")
            if step % tc.eval_interval == 0 or step == tc.steps:
                eval_t = time.perf_counter()
                model.eval()
                val = evaluate(model, task, x_val, y_val)
                model.train()
                row = {
                    "step": step,
                    "train_loss": loss_sum / loss_n,
                    "val_loss": val,
                    "val_rel": val / var_y if var_y else None,
                    "lr": sched.get_last_lr()[0],
                    "seconds": round(elapsed_before + time.perf_counter() - t0, 3),
                }
                if tokens_per_step:  # language models: throughput over the interval (evaluation excluded)
                    tps = tokens_per_step * (step - interval_start) / (eval_t - interval_t)
                    row["tokens_per_s"] = round(tps)
                    if flops_tok:  # achieved model FLOP/s, and MFU where the device's peak is known
                        row["model_tflops"] = float(f"{flops_tok * tps / 1e12:.4g}")
                        if peak:
                            row["mfu"] = float(f"{flops_tok * tps / peak:.4g}")
                loss_sum, loss_n = 0.0, 0
                result.update(steps=step, val_loss=val, val_rel=row["val_rel"], train_loss=row["train_loss"])
                result["curve"].append(curve_point(row))
                if out is not None:
                    with open(out / "metrics.jsonl", "a") as fh:
                        fh.write(json.dumps(row) + "\n")
                trackers.log(row)
                if _diverges(val, limit):
                    result.update(status="diverged", diverged_step=step, diverged_loss=_json_number(val))
                    break
                if step % tc.checkpoint_interval == 0 or step == tc.steps:
                    checkpoint(step)
                interval_start, interval_t = step, time.perf_counter()
        else:
            result["status"] = "done"
    finally:
        if bar is not None:
            bar.stop()
        trackers.finish(result)
    if tc.eval_lengths and result["status"] == "done":
        result["length_eval"] = evaluate_lengths(cfg, model, device, dtype)
    result["seconds"] = round(elapsed_before + time.perf_counter() - t0, 3)
    if out is not None:
        write_final(out / "final.json", result)
    return RunResult(result, model)
