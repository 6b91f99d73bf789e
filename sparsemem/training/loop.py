"""The training loop a single run and a fleet share.

An engine trains K members (one for a single run) and answers five calls: ``losses(step)`` (each member's
training loss on the step's batch), ``update(step, alive)`` (apply the step to the members still alive),
``evaluate(step)`` (each member's validation loss, and extra fields for the metrics row), ``lrs(step)`` and
``save(step)`` (a checkpoint); plus ``var_y``, ``limits`` (each member's divergence level), ``clock()``
(seconds trained so far) and ``tick(step, values, alive)`` (progress). The loop owns the rest: divergence,
the running training loss, the evaluation rows and the checkpoint cadence.
"""

from __future__ import annotations

from .basics import diverges
from .record import RunRecord


def _alive(alive: list[bool]) -> list[int]:
    return [i for i, a in enumerate(alive) if a]


def run_steps(engine, records: list[RunRecord], tc, start: int) -> None:
    """Train steps start + 1 .. tc.steps. A member whose training loss diverges freezes before the step is
    applied to it; the loop ends when every member has; members still running at the end are done."""
    alive = [r.running for r in records]
    sums, n = [0.0] * len(records), 0
    try:
        for step in range(start + 1, tc.steps + 1):
            values = engine.losses(step)
            for i in _alive(alive):
                if diverges(values[i], engine.limits[i]):  # the step is not applied
                    records[i].diverged(step, values[i], steps=step)
                    alive[i] = False
            if not any(alive):
                break
            engine.update(step, alive)
            for i in _alive(alive):
                sums[i] += values[i]
            n += 1
            engine.tick(step, values, alive)
            if step % tc.eval_interval == 0 or step == tc.steps:
                if not _evaluation(engine, records, alive, step, sums, n):
                    break
                if step % tc.checkpoint_interval == 0 or step == tc.steps:
                    engine.save(step)
                engine.mark(step)
                sums, n = [0.0] * len(records), 0
        for r in records:
            if r.running:
                r.result["status"] = "done"
    finally:
        for r in records:
            r.close()


def _evaluation(engine, records: list[RunRecord], alive: list[bool], step: int, sums: list, n: int) -> bool:
    """Every alive member's metrics row; a member whose validation loss diverges freezes. False when none
    is left."""
    vals, extra = engine.evaluate(step)
    lrs = engine.lrs(step)
    seconds = engine.clock()
    for i in _alive(alive):
        row = {
            "step": step,
            "train_loss": sums[i] / n,
            "val_loss": vals[i],
            "val_rel": vals[i] / engine.var_y if engine.var_y else None,
            "lr": lrs[i],
            "seconds": seconds,
            **extra,
        }
        records[i].evaluation(row)
        if diverges(vals[i], engine.limits[i]):
            records[i].diverged(step, vals[i])
            alive[i] = False
    return any(alive)
