"""A store as pandas DataFrames: one row per run (``load_results``) or per evaluation (``load_curves``),
and ``export`` to CSV or Parquet. pandas is imported here only, so the core never needs it.

    df = sm.load_results("results/results.db")
    df[df["model.rpe"] == "log"].groupby("model.heads")["val_rel"].median()
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Iterable, Optional, Union

from .config import ConfigError
from .sweep.schema import METRIC_COLUMNS

RUN_COLUMNS = ("hash", "name", "status", "sweep", "sweeps", *METRIC_COLUMNS, "attempts", "created", "updated", "error")
# metrics kept as columns of their own (``metrics.<key>``): scalars a run's result holds besides the above
_SKIP_METRICS = {
    "name",
    "config_hash",
    "status",
    "steps",
    "val_loss",
    "val_rel",
    "train_loss",
    "params",
    "seconds",
    "curve",
    "length_eval",
}
EXPORT_FORMATS = {".csv": "CSV", ".parquet": "Parquet"}


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ConfigError("results as DataFrames need pandas: pip install 'sparsemem[data]'") from None
    return pandas


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested dicts to dotted keys; lists to tuples, so every cell can be grouped on."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def _memberships(store) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for sweep, run in store.memberships():
        found.setdefault(run, []).append(sweep)
    return {k: tuple(v) for k, v in found.items()}


def _open(store):
    from .sweep.store import Store

    return (store, False) if isinstance(store, Store) else (Store(store, readonly=True), True)


def _rows(store, sweep: Optional[str], status: Optional[Iterable[str]]):
    st, owned = _open(store)
    try:
        return st.rows(sweep=sweep, status=status), _memberships(st)
    finally:
        if owned:
            st.close()


def _when(seconds: Optional[float]):
    return None if seconds is None else _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)


def load_results(store, sweep: Optional[str] = None, status: Optional[Iterable[str]] = None):
    """One row per run of a store (a path or an open ``Store``), read-only.

    Columns: ``hash``, ``name``, ``status``, ``sweep`` (the sweep that registered the run), ``sweeps``
    (every sweep that asked for it: `reproduce` names a sweep after its experiment), the metrics
    (``val_loss``, ``val_rel``, ``train_loss``, ``steps``, ``params``), timings (``seconds`` of training,
    ``created`` and ``updated`` as UTC datetimes, ``attempts``), ``error``; then the config flattened to
    dotted columns (``model.heads``, ``task.readout.kind``; lists as tuples), then other scalar metrics as
    ``metrics.<key>`` (``metrics.var_y``, ``metrics.diverged_step``, ``metrics.fleet_size``) and each
    extra evaluation length as ``length.<T>.val_rel``. ``sweep`` and ``status`` filter as in
    ``Store.rows``. Learning curves: ``load_curves``.
    """
    pd = _pandas()
    rows, members = _rows(store, sweep, status)
    records = []
    for r in rows:
        rec = {k: r.get(k) for k in RUN_COLUMNS}
        rec["sweeps"] = members.get(r["hash"], (r["sweep"],))
        rec["created"], rec["updated"] = _when(r["created"]), _when(r["updated"])
        config = dict(r["config"])
        config.pop("name", None)
        rec.update(flatten(config))
        metrics = r["metrics"] or {}
        rec.update(
            {
                f"metrics.{k}": v
                for k, v in metrics.items()
                if k not in _SKIP_METRICS and not isinstance(v, (dict, list))
            }
        )
        for length, scores in sorted((metrics.get("length_eval") or {}).items(), key=lambda kv: int(kv[0])):
            rec.update({f"length.{length}.{k}": v for k, v in scores.items()})
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame(columns=list(RUN_COLUMNS))
    return frame


def load_curves(store, sweep: Optional[str] = None, status: Optional[Iterable[str]] = None):
    """One row per evaluation of every run: ``hash``, ``name``, ``step``, ``val_loss`` (the validation
    MSE at that step), in the order the runs were registered."""
    pd = _pandas()
    rows, _ = _rows(store, sweep, status)
    records = [
        {"hash": r["hash"], "name": r["name"], "step": int(step), "val_loss": loss}
        for r in rows
        for step, loss in (r["metrics"] or {}).get("curve", [])
    ]
    return pd.DataFrame.from_records(records, columns=["hash", "name", "step", "val_loss"])


def check_export_path(out: Union[str, Path]) -> Path:
    """The output's format from its extension; a ConfigError (one line) for any other."""
    out = Path(out)
    if out.suffix.lower() not in EXPORT_FORMATS:
        raise ConfigError(
            f"--out {str(out)!r}: the format comes from the extension; allowed: {', '.join(EXPORT_FORMATS)}"
        )
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; give a file name ending in .csv or .parquet")
    return out


def export(store, out: Union[str, Path], sweep: Optional[str] = None, curves: bool = False) -> int:
    """Write ``load_results`` (or ``load_curves``) of a store to CSV or Parquet, by the extension of
    ``out``; returns the number of rows. Written to a temporary name and renamed, so a failed export
    leaves nothing behind. Tuples (lists in configs) are written as JSON text."""
    out = check_export_path(out)
    frame = (load_curves if curves else load_results)(store, sweep=sweep)
    for col in frame.columns:
        if frame[col].map(lambda v: isinstance(v, tuple)).any():
            frame[col] = frame[col].map(lambda v: json.dumps(list(v)) if isinstance(v, tuple) else v)
    from .files import check_writable_dir

    check_writable_dir(out.parent, "export folder", ConfigError)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        if out.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ConfigError("Parquet export needs pyarrow: pip install 'sparsemem[data]'") from None
            frame.to_parquet(tmp, index=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return len(frame)
