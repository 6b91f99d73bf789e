"""Train a stored run again exactly as it was trained: alone, or in the same fleet.

A run's numbers depend on its engine (alone against in a fleet: up to 6.7e-6 relative apart measured
after 2,000 steps, read it as about 1e-4; see docs/fleets.md), and whichever sweep trains a run first
decides what the store keeps. Each row records its engine (``metrics.engine``; a fleet member also its fleet's member
hashes in order), so the same numbers can be made again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Union

from ..config import ConfigError, RunConfig
from .schema import FINISHED, check_store_path
from .store import Store


def find_run(store: Store, run: str) -> dict:
    """The row whose hash starts with ``run`` (6 characters at least) or whose name is ``run``."""
    rows = [r for r in store.rows() if r["name"] == run or (len(run) >= 6 and r["hash"].startswith(run))]
    if not rows:
        raise ConfigError(f"run {run!r} is not in the store (give a run name or 6+ characters of its hash)")
    if len(rows) > 1:
        raise ConfigError(f"run {run!r} names {len(rows)} runs; give more of a hash")
    return rows[0]


def engine_of(row: dict) -> tuple[str, list[str], int]:
    """(engine, fleet member hashes, this run's index among them) from a finished row; rows written
    before engines were recorded are single runs unless they carry a fleet size."""
    m = row["metrics"]
    if row["status"] not in FINISHED:
        raise ConfigError(f"run {row['hash'][:12]} is {row['status']}: only finished runs can be retrained")
    engine = m.get("engine") or ("fleet" if m.get("fleet_size") else "single")
    if engine == "single":
        return engine, [row["hash"]], 0
    members = m.get("fleet_members")
    if not members:
        raise ConfigError(
            f"run {row['hash'][:12]} was trained in a fleet of {m.get('fleet_size')} by a version that did not "
            "record the fleet's members; it cannot be retrained exactly (train it alone with sparsemem train)"
        )
    return engine, list(members), int(m["fleet_member"])


def retrain(store_path: Union[str, Path], run: str, progress: Optional[bool] = None) -> dict:
    """Train ``run`` of the store again with its recorded engine; the store is only read. Returns
    {"hash", "name", "engine", "fleet_size", "stored", "retrained", "rel_diff"} (losses of the validation
    set; rel_diff 0.0 means bit-identical)."""
    from ..training import train, train_fleet

    check_store_path(store_path, readonly=True)
    with Store(store_path, readonly=True) as store:
        row = find_run(store, run)
        engine, members, index = engine_of(row)
        rows = store.by_hash(members)
    missing = [h[:12] for h in members if h not in rows]
    if missing:
        raise ConfigError(f"run {row['hash'][:12]}'s fleet members {', '.join(missing)} are not in the store")
    cfgs = [RunConfig.from_dict(rows[h]["config"]) for h in members]
    if engine == "single":
        result = train(cfgs[0], progress=progress, compile=bool(row["metrics"].get("compiled")))
    else:
        result = train_fleet(cfgs, progress=progress)[index]
    stored, again = row["val_loss"], result.get("val_loss")
    both = stored is not None and again is not None and math.isfinite(stored) and math.isfinite(again)
    return {
        "hash": row["hash"],
        "name": row["name"],
        "engine": engine,
        "fleet_size": len(members) if engine == "fleet" else None,
        "stored": stored,
        "retrained": again,
        "rel_diff": abs(again - stored) / max(abs(stored), 1e-300) if both else None,
    }
