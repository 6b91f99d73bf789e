"""One training run: AdamW on fresh samples, validation, checkpoints, metrics.

The run folder (when given) holds config.yaml, metrics.jsonl, checkpoint.pt and final.json
(``runfiles.py``). A run folder that already holds a checkpoint of the same config resumes from it; the
numbers are the same as those of an uninterrupted run. Under torchrun the run trains data-parallel
(``distributed.py``) and rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Optional, Union

import torch

from ..config import ConfigError, RunConfig
from ..distributed import context, local_device
from ..files import check_writable_dir
from ..models import make_model
from ..preflight import check_runs
from ..runfiles import (
    DamagedFile,
    load_checkpoint,
    load_final,
    read_final,
    restart,
    save_checkpoint,
    trim_metrics,
    try_resume,
    write_final,
)
from ..tasks import make_task
from ..throughput import peak_flops
from ..trackers import Trackers
from .basics import (
    DATA_SEED_OFFSET,
    DTYPES,
    RunResult,
    blowup_limit,
    evaluate,
    evaluate_lengths,
    keep_freed_memory,
    lr_factor,
    new_result,
    param_groups,
    progress_bar,
    resolve_device,
)
from .loop import run_steps
from .record import RunRecord, ready_folder


class Parts:
    """A run's trainable state: model, optimizer, schedule and data stream, built from its seed."""

    def __init__(self, cfg: RunConfig, task, device: torch.device):
        tc, self.task = cfg.train, task
        torch.manual_seed(tc.seed)
        self.model = make_model(cfg.model, task).to(device=device, dtype=DTYPES[tc.dtype])
        # on a GPU one fused kernel for the whole update (the same AdamW; on a CPU the default loop)
        fused = {"fused": True} if device.type == "cuda" else {}
        self.opt = torch.optim.AdamW(param_groups(self.model, tc), lr=tc.lr, betas=tuple(tc.betas), **fused)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, tc))
        self.gen = torch.Generator(device=device).manual_seed(tc.seed + DATA_SEED_OFFSET)

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "gen": self.gen.get_state(),
        }

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.gen.set_state(state["gen"].cpu())


class SingleEngine:
    """The loop's engine for one run (``loop.py``): torch AdamW, micro-batches, autocast, torch.compile,
    and data-parallel processes under torchrun."""

    def __init__(self, cfg, task, parts: Parts, ddp, device, clock, compile: bool, result: dict):
        tc = self.tc = cfg.train
        self.task, self.parts, self.ddp, self.clock, self.result = task, parts, ddp, clock, result
        self.dtype = DTYPES[tc.dtype]
        self.x_val, self.y_val = task.validation_set(tc.val_samples, device=device, dtype=self.dtype)
        self.var_y = task.variance(self.y_val)  # None for text: no relative loss
        self.limits = [blowup_limit(tc, self.var_y)]
        self.out: Optional[Path] = None
        self.chash, self.bar = cfg.config_hash(), None
        self.eager = self.forward = parts.model if ddp is None else ddp.wrap(parts.model)
        if compile:
            torch._dynamo.reset()  # a worker trains many shapes: start each run below dynamo's recompile limit
            self.forward = torch.compile(self.eager)
            result["compiled"] = True
        local = tc.batch_size // (ddp.world if ddp is not None else 1)
        self.micro = tc.micro_batch or local
        if local % self.micro:
            raise ConfigError(
                f"train.micro_batch = {tc.micro_batch}: must divide the batch of each of the "
                f"{ddp.world} processes ({local})"
            )
        self.chunks = local // self.micro
        bf16 = tc.autocast == "bf16"
        self.amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        self._throughput(cfg, device)

    def _throughput(self, cfg, device) -> None:
        """Language models log tokens per second, model TFLOP/s and MFU over each evaluation interval."""
        text, model = cfg.task.kind == "text", self.parts.model
        self.tokens_per_step = self.tc.batch_size * self.task.seq_len if text else None
        self.flops_tok = (
            model.flops_per_token(self.task.seq_len) if text and hasattr(model, "flops_per_token") else None
        )
        peak = peak_flops(device, self.tc.autocast) if text else None
        self.peak = peak * (self.ddp.world if self.ddp is not None else 1) if peak else None  # every device
        self.interval = None

    def _loss(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        with self.amp:
            try:
                pred = self.forward(xs)
            except Exception:  # noqa: BLE001 - a compiler that fails: the same step, eagerly
                if self.forward is self.eager:
                    raise
                self.forward, self.result["compiled"] = self.eager, False
                pred = self.eager(xs)
        return self.task.loss(pred.to(self.dtype) if self.tc.autocast != "off" else pred, ys)

    def losses(self, step: int) -> list[float]:
        """Forward and backward over the step's batch (micro-batches, gradient accumulation)."""
        if self.interval is None:
            self.interval = (step - 1, time.perf_counter())
        p, ddp = self.parts, self.ddp
        x, y = self.task.sample(self.tc.batch_size, p.gen, self.dtype)
        if ddp is not None:
            x, y = ddp.shard(x), ddp.shard(y)
        p.opt.zero_grad(set_to_none=True)
        total, micro, chunks = 0.0, self.micro, self.chunks
        for i in range(chunks):  # one chunk: the whole batch
            sl = slice(i * micro, (i + 1) * micro)
            sync = ddp is None or i == chunks - 1 or not hasattr(self.eager, "no_sync")
            with contextlib.nullcontext() if sync else self.eager.no_sync():
                loss = self._loss(x[sl], y[sl]) / chunks if chunks > 1 else self._loss(x, y)
                loss.backward()
            total += loss.item()
        return [total if ddp is None else ddp.mean(total)]

    def update(self, step: int, alive: list[bool]) -> None:
        p = self.parts
        if self.tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(p.model.parameters(), self.tc.grad_clip)
        p.opt.step()
        p.sched.step()

    def tick(self, step: int, values: list[float], alive: list[bool]) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], advance=1, info=f"loss {values[0]:.3g}")

    def evaluate(self, step: int) -> tuple[list[float], dict]:
        eval_t, model = time.perf_counter(), self.parts.model
        model.eval()
        val = evaluate(model, self.task, self.x_val, self.y_val)
        model.train()
        extra = {}
        if self.tokens_per_step:  # throughput over the interval, evaluation excluded
            tps = self.tokens_per_step * (step - self.interval[0]) / (eval_t - self.interval[1])
            extra["tokens_per_s"] = round(tps)
            if self.flops_tok:  # achieved model FLOP/s, and MFU where the device's peak is known
                extra["model_tflops"] = float(f"{self.flops_tok * tps / 1e12:.4g}")
                if self.peak:
                    extra["mfu"] = float(f"{self.flops_tok * tps / self.peak:.4g}")
        return [val], extra

    def lrs(self, step: int) -> list[float]:
        return [self.parts.sched.get_last_lr()[0]]

    def mark(self, step: int) -> None:
        self.interval = (step, time.perf_counter())

    def save(self, step: int) -> None:
        if self.out is not None:
            state = {"step": step, "config_hash": self.chash, **self.parts.state(), "seconds": self.clock(exact=True)}
            save_checkpoint(state, self.out / "checkpoint.pt")


def _served(out: Path, cfg: RunConfig, parts: Parts, device) -> Optional[RunResult]:
    """A finished run of this config whose final.json and weights are intact, read without writing
    anything; None otherwise (``_open`` then heals what is damaged)."""
    done = load_final(out / "final.json") if out.is_dir() else None
    if done is None or done.get("config_hash") != cfg.config_hash():
        return None
    ckpt = out / "checkpoint.pt"
    try:
        if ckpt.exists():
            parts.model.load_state_dict(load_checkpoint(ckpt, device)["model"])
    except DamagedFile:
        return None
    return RunResult(done, parts.model)


def _open(out: Path, cfg: RunConfig, parts: Parts, resume: bool, device, ddp, healed: list) -> tuple:
    """The run folder's state: (start, seconds before, metrics history, parts, a finished result or None).
    A finished run of this config is returned as it is; a damaged checkpoint or metrics file is healed
    (noted in ``healed``) by training again from step 0."""
    chash, tc = cfg.config_hash(), cfg.train
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    done = read_final(out / "final.json", healed) if resume else None
    if done is not None and done.get("config_hash") == chash:
        try:
            if ckpt.exists():
                parts.model.load_state_dict(load_checkpoint(ckpt, device)["model"])
            if ddp is not None:
                ddp.broadcast({"finished": done})
            return 0, 0.0, [], parts, RunResult(done, parts.model)
        except DamagedFile as err:  # the weights of a finished run are gone: train it again
            healed.append(f"checkpoint.pt: {err}; the finished run is trained again")
            parts = Parts(cfg, parts.task, device)
            restart(out)
    if not (resume and ckpt.exists()):
        return 0, 0.0, [], parts, None

    def restore(state: dict) -> tuple:
        if state.get("config_hash") != chash:
            raise ConfigError(f"run folder {str(out)!r} holds a run of another config; pick another --out")
        parts.load(state)
        kept = trim_metrics(out / "metrics.jsonl", state["step"], tc.eval_interval)
        if kept is None:
            raise DamagedFile("metrics.jsonl lacks evaluations before the checkpoint")
        return state["step"], state.get("seconds", 0.0), kept

    resumed, note = try_resume(ckpt, device, restore, "the run")
    if note is None:
        return (*resumed, parts, None)
    healed.append(note)
    restart(out)
    return 0, 0.0, [], Parts(cfg, parts.task, device), None


def _share(ddp, parts: Parts, start: int, elapsed: float, history: list) -> tuple:
    """Under torchrun every rank starts from rank 0's state (fresh, resumed, or a finished run's result)."""
    state = None
    if ddp.writer and start > 0:
        state = {**parts.state(), "start": start, "elapsed": elapsed, "history": history}
    state = ddp.broadcast(state)
    if state is not None and "finished" in state:
        return start, elapsed, history, RunResult(state["finished"], parts.model)  # rank 0 holds the weights
    if state is not None and not ddp.writer:
        parts.load(state)
        start, elapsed, history = state["start"], state["elapsed"], state["history"]
    return start, elapsed, history, None


def train(
    cfg: RunConfig,
    out_dir: Union[str, Path, None] = None,
    progress: Optional[bool] = None,
    resume: bool = True,
    compile: bool = False,
) -> dict:
    """Train one run and return its result.

    The result holds status (done or diverged), steps, val_loss (MSE on the fixed validation set, or
    cross-entropy for text), val_rel (val_loss / Var(y)), train_loss (mean over the last evaluation
    interval), params, seconds and diverged_step.

    ``compile`` trains through ``torch.compile`` (an execution choice, not part of the config: same numbers
    to round-off); should compiling fail, the run goes on eagerly. The result's ``compiled`` says which it
    used.
    """
    t0, tc = time.perf_counter(), cfg.train
    check_runs([cfg])
    ddp = context(tc.device, tc.batch_size)  # None unless torchrun started several processes
    if ddp is not None and not ddp.writer:
        out_dir, progress = None, False  # rank 0 alone writes the run folder
    device = resolve_device(local_device(tc.device))
    if cfg.task.kind == "text":
        peak_flops(device, tc.autocast)  # an unknown device's peak fails here, before anything is written
    keep_freed_memory()
    task = make_task(cfg.task)
    parts = Parts(cfg, task, device)
    out = Path(out_dir) if out_dir is not None else None
    start, elapsed, history, healed = 0, 0.0, [], []
    if out is not None:
        finished = _served(out, cfg, parts, device) if resume else None
        if finished is not None:  # read without writing: a finished run is served from a read-only folder
            if ddp is not None:
                ddp.broadcast({"finished": dict(finished)})
            return finished
        check_writable_dir(out, "run folder", ConfigError)
        start, elapsed, history, parts, finished = _open(out, cfg, parts, resume, device, ddp, healed)
        if finished is not None:
            return finished
        ready_folder(out, cfg, start)
        for note in healed:
            print(f"sparsemem: warning: run folder {str(out)!r}: {note}", file=sys.stderr)
    if ddp is not None:
        start, elapsed, history, finished = _share(ddp, parts, start, elapsed, history)
        if finished is not None:
            return finished
    return _run(cfg, task, parts, ddp, device, out, (t0, elapsed, start, history, healed), progress, compile)


def _run(cfg, task, parts: Parts, ddp, device, out, at: tuple, progress, compile: bool) -> RunResult:
    """Train from ``at`` = (t0, seconds before, start step, metrics history, healing notes) to the end."""
    t0, elapsed, start, history, healed = at

    def clock(exact: bool = False) -> float:
        seconds = elapsed + time.perf_counter() - t0
        return seconds if exact else round(seconds, 3)

    engine = SingleEngine(cfg, task, parts, ddp, device, clock, compile, {})
    result = new_result(cfg, engine.chash, engine.var_y, parts.model.num_params(), device, start, history)
    result.update(engine.result)  # compiled, when asked for
    result["engine"] = "single"
    if ddp is not None:
        result["processes"] = ddp.world
    engine.result, engine.out = result, out
    result["seconds"] = elapsed
    if healed:
        result["healed"] = healed
    show = progress if progress is not None else sys.stderr.isatty()
    engine.bar = progress_bar(show, cfg.train.steps, start, cfg.name or "train")
    record = RunRecord(result, out, Trackers(cfg, out, start, enabled=ddp is None or ddp.writer))
    parts.model.train()
    try:
        run_steps(engine, [record], cfg.train, start)
    finally:
        if engine.bar is not None:
            engine.bar.stop()
    if cfg.train.eval_lengths and result["status"] == "done":
        result["length_eval"] = evaluate_lengths(cfg, parts.model, device, DTYPES[cfg.train.dtype])
    result["seconds"] = clock()
    if out is not None:
        write_final(out / "final.json", result)
    return RunResult(result, parts.model)
