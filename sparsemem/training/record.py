"""A run's record while it trains (a single run, or one member of a fleet): its result, its metrics file,
its validation curve and its trackers; and the lifecycle of its run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..config import RunConfig
from ..runfiles import restart, trim_metrics, write_text
from ..trackers import Trackers
from .basics import curve_point, json_number


class RunRecord:
    """One run's result as it trains, with where each evaluation goes: metrics.jsonl in the run folder
    (``out``, None for none) and the trackers."""

    def __init__(self, result: dict, out: Optional[Path], trackers: Optional[Trackers]):
        self.result, self.out, self.trackers = result, out, trackers

    @property
    def running(self) -> bool:
        return self.result["status"] == "running"

    def diverged(self, step: int, loss: float, **more) -> None:
        """The run ends as diverged at ``step`` (its last applied step stays in ``steps`` unless given)."""
        self.result.update(status="diverged", diverged_step=step, **more)
        self.result["diverged_loss"] = json_number(loss)

    def evaluation(self, row: dict) -> None:
        """One evaluation row: into the result and its curve, metrics.jsonl and the trackers."""
        r = self.result
        r.update(steps=row["step"], val_loss=row["val_loss"], val_rel=row["val_rel"], train_loss=row["train_loss"])
        r.setdefault("curve", []).append(curve_point(row))  # a fleet's checkpoint may predate curves
        if self.out is not None:
            path = self.out / "metrics.jsonl"
            try:
                with open(path, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            except OSError as err:  # a full disk: a partial last line is dropped on resume; name the file
                raise OSError(err.errno, err.strerror, str(path)) from err
        if self.trackers is not None:
            self.trackers.log(row)

    def close(self) -> None:
        if self.trackers is not None:
            self.trackers.finish(self.result)


def ready_folder(out: Path, cfg: RunConfig, start: int, keep_to: Optional[int] = None) -> None:
    """A run folder ready to train from step ``start``: at 0 its state files cleared (a fresh run), else kept
    as resumed; config.yaml written; with ``keep_to``, metrics.jsonl cut at that step."""
    out.mkdir(parents=True, exist_ok=True)
    if start == 0:
        restart(out)
    write_text(out / "config.yaml", cfg.to_yaml())
    if keep_to is not None:
        trim_metrics(out / "metrics.jsonl", keep_to)
