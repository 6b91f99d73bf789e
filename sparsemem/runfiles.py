"""A run folder's files: checkpoints and final results with their sha256, metrics, and healing.

    config.yaml      the full config of the run
    metrics.jsonl    one line per evaluation: step, train_loss, val_loss, val_rel, lr, seconds
    checkpoint.pt    model, optimizer, scheduler and data-stream state, its sha256 beside it
    final.json       the result (written last), with its sha256 inside

Every file is written atomically; a damaged one (unreadable, or failing its
checksum) is set aside on resume and the run goes on from what is sound.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Optional

import torch

from .config import ConfigError
from .files import atomic_write


def write_text(path: Path, text: str) -> None:
    atomic_write(path, text)


def trim_metrics(path: Path, start: int, interval: Optional[int] = None) -> Optional[list[dict]]:
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
        write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
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
    atomic_write(path, data)
    write_text(_digest_path(path), hashlib.sha256(data).hexdigest() + "\n")


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
    write_text(path, json.dumps({**data, "sha256": _result_digest(data)}, indent=2))


def load_final(path: Path) -> Optional[dict]:
    """A run's final.json if it is there and intact (readable, matching its sha256); None otherwise. Reads
    only: a finished run is served from a read-only folder."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict):
        digest = data.pop("sha256", None)
        if digest is None or digest == _result_digest(data):  # older versions wrote none
            return data
    return None


def read_final(path: Path, healed: list) -> Optional[dict]:
    """A run's final.json, or None if absent; a damaged one (unreadable, or failing its sha256) is noted
    in ``healed`` and removed."""
    if not path.exists():
        return None
    data = load_final(path)
    if data is not None:
        return data
    healed.append(f"{path.name} is damaged; the run goes on from its checkpoint")
    path.unlink()
    return None


def try_resume(path: Path, device, restore: Callable[[dict], tuple], what: str) -> tuple:
    """(restore(checkpoint at path), None), or (None, a note of the damage) when the checkpoint or the files
    ``restore`` checks are damaged; the caller then starts afresh. A ConfigError from ``restore`` (a folder of
    another run) is the user's to fix and propagates."""
    try:
        return restore(load_checkpoint(path, device)), None
    except ConfigError:
        raise
    except (DamagedFile, KeyError, RuntimeError, TypeError, ValueError) as err:
        return None, f"{err if isinstance(err, DamagedFile) else f'{path.name}: {err}'}; {what} restarted from step 0"


def restart(out: Path, keep_checkpoint: bool = False) -> None:
    """Clear a run folder's state files, so the run starts at step 0."""
    for name in ("final.json", "metrics.jsonl") + (
        () if keep_checkpoint else ("checkpoint.pt", "checkpoint.pt.sha256")
    ):
        (out / name).unlink(missing_ok=True)


def strict_json(obj):
    """The same data with NaN and inf as strings, so that --json output is standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def summary_line(result: dict, out) -> str:
    """One line for a finished run: the validation loss (MSE, or cross-entropy in nats per token for a text
    task, which has no relative MSE); a run that diverged before its first evaluation has none."""
    val, rel = result.get("val_loss"), result.get("val_rel")
    summary = (
        f"{result['status']}: {result['steps']} steps, "
        + (f"val loss {val:.4g}" if val is not None else "no evaluation")
        + (f" (relative {rel:.3g})" if rel is not None else "")
        + f", {result['params']} parameters, {result['seconds']:.1f} s -> {out}"
    )
    if result["status"] == "diverged":
        loss = result.get("diverged_loss")
        summary += (
            f" (diverged at step {result['diverged_step']}"
            + (f", loss {loss:.3g}" if isinstance(loss, float) else f", loss {loss}" if loss else "")
            + ")"
        )
    return summary
