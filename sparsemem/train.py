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
from .models import make_model
from .tasks import make_task

DATA_SEED_OFFSET = 104_729  # the training stream of seed s is seeded with s + this
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {name!r}: CUDA is not available here; use cpu or auto")
    return torch.device(name)


def lr_factor(step: int, cfg) -> float:
    """Multiplier of lr after `step` optimizer steps: linear warm-up, then constant or cosine."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))


def is_memory_parameter(name: str) -> bool:
    """RPE parameters and a recurrence's decay rates: they set how far back a model looks."""
    return ".rpe." in name or name.endswith("decay_logit")


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
def evaluate(model, task, x: torch.Tensor, y: torch.Tensor, chunk: int = 500) -> float:
    """The task's loss (MSE, or cross-entropy for text) over a fixed set, in chunks."""
    total, n = 0.0, 0
    for i in range(0, x.shape[0], chunk):
        part = y[i:i + chunk]
        total += task.loss(model(x[i:i + chunk]), part).double().item() * part.shape[0]
        n += part.shape[0]
    return total / n


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
          resume: bool = True) -> dict:
    """Train one run and return its result.

    The result holds status (done or diverged), steps, val_loss (MSE on the
    fixed validation set), val_rel (val_loss / Var(y)), train_loss (mean over
    the last evaluation interval), params, seconds and diverged_step.
    """
    t0 = time.perf_counter()
    tc = cfg.train
    device = resolve_device(tc.device)
    dtype = DTYPES[tc.dtype]
    task = make_task(cfg.task)
    torch.manual_seed(tc.seed)
    model = make_model(cfg.model, task).to(device=device, dtype=dtype)
    opt = torch.optim.AdamW(param_groups(model, tc), lr=tc.lr, betas=tuple(tc.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc))
    gen = torch.Generator(device=device).manual_seed(tc.seed + DATA_SEED_OFFSET)
    x_val, y_val = task.validation_set(tc.val_samples, device=device, dtype=dtype)
    var_y = task.variance(y_val)  # None for text: no relative loss

    out = Path(out_dir) if out_dir is not None else None
    chash = cfg.config_hash()
    start, history, elapsed_before = 0, [], 0.0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        ckpt_path = out / "checkpoint.pt"
        final_path = out / "final.json"
        if resume and final_path.exists():
            done = json.loads(final_path.read_text())
            if done.get("config_hash") == chash:
                if ckpt_path.exists():
                    model.load_state_dict(torch.load(ckpt_path, map_location=device, weights_only=False)["model"])
                return {**done, "model": model}
        if resume and ckpt_path.exists():
            state = torch.load(ckpt_path, map_location=device, weights_only=False)
            if state.get("config_hash") != chash:
                raise ConfigError(f"run folder {str(out)!r} holds a run of another config; pick another --out")
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            gen.set_state(state["gen"].cpu())
            start, elapsed_before = state["step"], state.get("seconds", 0.0)
        _write_text(out / "config.yaml", cfg.to_yaml())
        metrics_path = out / "metrics.jsonl"
        if metrics_path.exists():  # drop lines past the checkpoint we resume from
            kept = [ln for ln in metrics_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= start]
            _write_text(metrics_path, "".join(ln + "\n" for ln in kept))
            history = [json.loads(ln) for ln in kept]

    result = {
        "name": cfg.name,
        "config_hash": chash,
        "status": "running",
        "steps": start,
        "val_loss": history[-1]["val_loss"] if history else None,
        "val_rel": history[-1]["val_rel"] if history else None,
        "train_loss": history[-1]["train_loss"] if history else None,
        "var_y": var_y,
        "params": model.num_params(),
        "seconds": elapsed_before,
        "diverged_step": None,
        "device": str(device),
    }

    def checkpoint(step: int) -> None:
        if out is None:
            return
        state = {"step": step, "config_hash": chash, "model": model.state_dict(), "opt": opt.state_dict(),
                 "sched": sched.state_dict(), "gen": gen.get_state(),
                 "seconds": elapsed_before + time.perf_counter() - t0}
        _atomic_write(out / "checkpoint.pt", lambda p: torch.save(state, p))

    show = progress if progress is not None else sys.stderr.isatty()
    bar = _progress(show, tc.steps, start, cfg.name or "train")
    loss_sum, loss_n = 0.0, 0
    model.train()
    try:
        for step in range(start + 1, tc.steps + 1):
            x, y = task.sample(tc.batch_size, gen, dtype)
            loss = task.loss(model(x), y)
            lv = loss.item()
            if not math.isfinite(lv):
                result.update(status="diverged", diverged_step=step, steps=step)
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
                if out is not None:
                    with open(out / "metrics.jsonl", "a") as fh:
                        fh.write(json.dumps(row) + "\n")
                if not math.isfinite(val):
                    result.update(status="diverged", diverged_step=step)
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
        _write_text(out / "final.json", json.dumps(result, indent=2))
    result["model"] = model
    return result
