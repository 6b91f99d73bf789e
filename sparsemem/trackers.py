"""Experiment trackers: ``train.log: [tensorboard, wandb]`` streams a run's evaluations (and every fleet
member's) with its config. Both are optional extras (``pip install 'sparsemem[tensorboard]'``,
``'sparsemem[wandb]'``); a config that names one whose package is missing fails before anything trains.

- tensorboard: event files in ``<run folder>/tensorboard`` (a sweep: ``tensorboard --logdir
  results/runs`` shows every run), scalars ``train_loss``, ``val_loss``, ``val_rel``, ``lr`` by step and
  the config as text. A resumed run drops the events after its checkpoint (``purge_step``).
- wandb: one W&B run per sparsemem run, id = the first 16 hex digits of the config hash (a resumed run
  continues it), project ``$WANDB_PROJECT`` or ``sparsemem``, files under the run folder. With no network,
  set ``WANDB_MODE=offline`` and ``wandb sync`` later.

A run without a run folder (``sm.train(cfg)`` without ``out_dir``) logs under
``runs/trackers/<name>-<hash>``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Iterable, Optional

from .config import ConfigError, RunConfig
from .registry import TRACKERS

SCALARS = ("train_loss", "val_loss", "val_rel", "lr")


def check_trackers(cfgs: Iterable[RunConfig]) -> None:
    """Every tracker a config names is installed (ConfigError, one line, otherwise)."""
    for name in sorted({t for cfg in cfgs for t in cfg.train.log}):
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ConfigError(
                f"train.log = {name}: needs the {TRACKERS[name]} package; "
                f"pip install 'sparsemem[{name}]', or drop it from train.log"
            )


class Trackers:
    """The trackers of one run: ``log(row)`` at each evaluation, ``finish(result)`` at the end."""

    def __init__(self, cfg: RunConfig, out: Optional[Path], start: int = 0, enabled: bool = True):
        self.writers = []
        if not cfg.train.log or not enabled:  # disabled: a data-parallel rank other than 0
            return
        chash = cfg.config_hash()
        folder = Path(out) if out is not None else Path("runs") / "trackers" / cfg.folder_name()
        name = (cfg.name or cfg.task.kind).replace("/", ":")
        for kind in cfg.train.log:
            if kind == "tensorboard":
                self.writers.append(_TensorBoard(folder / "tensorboard", cfg, start))
            else:
                self.writers.append(_WandB(folder, cfg, name, chash[:16]))

    def log(self, row: dict) -> None:
        for w in self.writers:
            w.log(row)

    def finish(self, result: dict) -> None:
        for w in self.writers:
            w.finish(result)
        self.writers = []


class _TensorBoard:
    def __init__(self, folder: Path, cfg: RunConfig, start: int):
        from torch.utils.tensorboard import SummaryWriter

        folder.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=start + 1 if start else None)
        if not start:
            self.writer.add_text("config", "```yaml\n" + cfg.to_yaml() + "\n```", 0)

    def log(self, row: dict) -> None:
        for key in SCALARS:
            if row.get(key) is not None:
                self.writer.add_scalar(key, row[key], row["step"])
        self.writer.flush()

    def finish(self, result: dict) -> None:
        self.writer.add_text(
            "status", f"{result.get('status')} after {result.get('steps')} steps", result.get("steps") or 0
        )
        self.writer.close()


class _WandB:
    def __init__(self, folder: Path, cfg: RunConfig, name: str, run_id: str):
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "sparsemem"),
            name=name,
            id=run_id,
            config=cfg.to_dict(),
            dir=str(folder),
            resume="allow",
            reinit="create_new",
        )

    def log(self, row: dict) -> None:
        self.run.log({k: row[k] for k in SCALARS if row.get(k) is not None}, step=row["step"])

    def finish(self, result: dict) -> None:
        for key in ("status", "steps", "val_loss", "val_rel", "train_loss", "params", "diverged_step"):
            if result.get(key) is not None:
                self.run.summary[key] = result[key]
        self.run.finish()
