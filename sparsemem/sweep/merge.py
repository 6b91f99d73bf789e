"""`sparsemem store merge`: stores written on separate machines into one.

Each machine of a sweep writes its own store (one SQLite file a machine: never one file shared over a
network filesystem, where SQLite's locks do not hold). Merging keeps every run once, by config hash:

- a finished row wins over an unfinished one; among finished rows ``done`` over ``diverged``, then the one
  that finished first; among unfinished rows ``failed`` (it carries its error) over ``pending`` and
  ``running``. An unfinished row arrives as ``pending`` or ``failed`` with no claim, so a sweep resumed on
  the merged store trains it;
- memberships (which sweeps asked for a run), computed rows and events are the union (an equal computed
  key keeps the first store's value); ``meta`` is the first store's, plus ``merged_from``.

The inputs are only read. The output is written under a temporary name and renamed when complete, so a
merge that fails leaves nothing behind; an existing output is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence, Union

from .schema import FINISHED, StoreError
from .schema import RECORD_COLUMNS as COLUMNS
from .store import Store

_RANK = {"done": 0, "diverged": 1, "failed": 2, "pending": 3, "running": 3}


def _better(new: dict, old: dict) -> bool:
    a, b = (_RANK[new["status"]], new["updated"]), (_RANK[old["status"]], old["updated"])
    if new["status"] in FINISHED or old["status"] in FINISHED:
        return a < b  # the earlier finish wins among equally finished rows
    return _RANK[new["status"]] < _RANK[old["status"]] or (
        _RANK[new["status"]] == _RANK[old["status"]] and new["updated"] > old["updated"]
    )  # the latest news


def merge_stores(inputs: Sequence[Union[str, Path]], out: Union[str, Path]) -> dict:
    """Merge ``inputs`` into a new store at ``out``; returns counts (runs, by status, per input)."""
    out = Path(out)
    paths = list(dict.fromkeys(Path(p) for p in inputs))
    if not paths:
        raise StoreError("store merge needs at least one input store")
    if out.exists():
        raise StoreError(f"--out {str(out)!r} exists; merge writes a new store (choose another path)")
    if any(p.resolve() == out.resolve() for p in paths):
        raise StoreError(f"--out {str(out)!r} is one of the inputs")

    best: dict[str, dict] = {}
    members: dict[tuple[str, str], None] = {}
    computed: dict[tuple, tuple] = {}
    events: list[tuple] = []
    meta: dict = {}
    per_input = {}
    for i, path in enumerate(paths):
        with Store(path, readonly=True) as st:  # refuses a non-store, a damaged one, a newer schema
            rows = st.rows()
            per_input[str(path)] = len(rows)
            for r in rows:
                if r["hash"] not in best or _better(r, best[r["hash"]]):
                    best[r["hash"]] = r
            members.update(dict.fromkeys(st.memberships()))
            for c in st.computed():
                key = (c["experiment"], c["quantity"], c["target"], c["rpe"], c["heads"])
                computed.setdefault(key, c["value"])
            events.extend((e["time"], e["hash"], e["kind"], e["detail"]) for e in st.events())
            if i == 0:
                meta = st.meta()

    tmp = out.with_name(f".{out.name}.merging")
    for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
        leftover.unlink(missing_ok=True)
    try:
        with Store(tmp) as st:
            with st._tx() as db:
                values = []
                for r in best.values():
                    row = {k: r.get(k) for k in COLUMNS}
                    row["config"] = json.dumps(r["config"], sort_keys=True)
                    row["metrics"] = json.dumps(r["metrics"], default=str) if r["metrics"] else None
                    if row["status"] == "running":
                        row["status"] = "pending"
                    values.append(tuple(row[k] for k in COLUMNS))
                db.executemany(
                    f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", values
                )
                db.executemany("INSERT INTO members (sweep, hash) VALUES (?, ?)", list(members))
                db.executemany(
                    "INSERT INTO computed (experiment, quantity, target, rpe, heads, value) VALUES (?, ?, ?, ?, ?, ?)",
                    [(*k, v) for k, v in computed.items()],
                )
                db.executemany(
                    "INSERT INTO events (time, hash, kind, detail) VALUES (?, ?, ?, ?)",
                    sorted(events, key=lambda e: e[0]),
                )
            st.set_meta(**meta, merged_from=[str(p) for p in paths])
            st._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            counts = st.counts()
        os.replace(tmp, out)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)
    return {"runs": len(best), "status": counts, "inputs": per_input}
