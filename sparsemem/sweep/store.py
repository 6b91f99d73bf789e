"""The results store: one SQLite file, one row per run, keyed by config hash.

A run belongs to every sweep that asked for it (table ``members``): two
experiments that share a configuration share one run. ``meta`` holds a few
facts about how the store was made (profile, command).

Every write is one transaction; the file runs in WAL mode so readers (a
report, a progress view) never block the sweep. Status moves
pending -> running -> done | diverged | failed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Optional, Union

STATUSES = ("pending", "running", "done", "failed", "diverged")
FINISHED = ("done", "diverged")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    hash        TEXT PRIMARY KEY,
    sweep       TEXT NOT NULL,
    name        TEXT,
    config      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed', 'diverged')),
    val_loss    REAL,
    val_rel     REAL,
    train_loss  REAL,
    steps       INTEGER,
    params      INTEGER,
    seconds     REAL,
    metrics     TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created     REAL NOT NULL,
    updated     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep, status);
CREATE TABLE IF NOT EXISTS members (
    sweep TEXT NOT NULL,
    hash  TEXT NOT NULL REFERENCES runs (hash),
    PRIMARY KEY (sweep, hash)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

METRIC_COLUMNS = ("val_loss", "val_rel", "train_loss", "steps", "params", "seconds")


class Store:
    """A results store at ``path`` (created if missing)."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    class _Tx:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, *rest):
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> "_Tx":
        return Store._Tx(self._db)

    # -- writes ---------------------------------------------------------------
    def add(self, sweep: str, runs: Iterable[tuple[str, Optional[str], dict]]) -> int:
        """Register runs (hash, name, config dict) as pending; known hashes are left alone.

        Returns how many rows were new.
        """
        now = time.time()
        runs = list(runs)
        with self._tx() as db:
            before = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            db.executemany(
                "INSERT OR IGNORE INTO runs (hash, sweep, name, config, status, created, updated) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                [(h, sweep, name, json.dumps(cfg, sort_keys=True), now, now) for h, name, cfg in runs],
            )
            db.executemany("INSERT OR IGNORE INTO members (sweep, hash) VALUES (?, ?)",
                           [(sweep, h) for h, _, _ in runs])
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] - before

    def set_meta(self, **values: str) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           [(k, json.dumps(v)) for k, v in values.items()])

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def mark_running(self, run_hash: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET status = 'running', attempts = attempts + 1, error = NULL, updated = ? "
                       "WHERE hash = ?", (time.time(), run_hash))

    def finish(self, run_hash: str, result: dict) -> None:
        """Record a run's result; its status is the result's (done or diverged)."""
        status = result.get("status", "done")
        if status not in FINISHED:
            raise ValueError(f"a finished run has status done or diverged, not {status!r}")
        metrics = {k: v for k, v in result.items() if k != "model"}
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = ?, val_loss = ?, val_rel = ?, train_loss = ?, steps = ?, params = ?, "
                "seconds = ?, metrics = ?, error = NULL, updated = ? WHERE hash = ?",
                (status, *(metrics.get(k) for k in METRIC_COLUMNS), json.dumps(metrics, default=str),
                 time.time(), run_hash),
            )

    def fail(self, run_hash: str, error: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET status = 'failed', error = ?, updated = ? WHERE hash = ?",
                       (error[-4000:], time.time(), run_hash))

    # -- reads ----------------------------------------------------------------
    def rows(self, sweep: Optional[str] = None, status: Optional[Iterable[str]] = None) -> list[dict]:
        """Rows as dicts (config and metrics decoded), in insertion order."""
        query, args = "SELECT * FROM runs", []
        where = []
        if sweep is not None:
            where.append("hash IN (SELECT hash FROM members WHERE sweep = ?)")
            args.append(sweep)
        if status is not None:
            status = list(status)
            where.append(f"status IN ({', '.join('?' * len(status))})")
            args.extend(status)
        if where:
            query += " WHERE " + " AND ".join(where)
        out = []
        for row in self._db.execute(query + " ORDER BY rowid", args):
            d = dict(row)
            d["config"] = json.loads(d["config"])
            d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
            out.append(d)
        return out

    def get(self, run_hash: str) -> Optional[dict]:
        found = self.by_hash([run_hash])
        return found.get(run_hash)

    def by_hash(self, hashes: Iterable[str]) -> dict[str, dict]:
        """Rows of these hashes (whatever sweep registered them), keyed by hash."""
        hashes = list(hashes)
        out = {}
        for i in range(0, len(hashes), 500):
            part = hashes[i:i + 500]
            for row in self._db.execute(f"SELECT * FROM runs WHERE hash IN ({', '.join('?' * len(part))})", part):
                d = dict(row)
                d["config"] = json.loads(d["config"])
                d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
                out[d["hash"]] = d
        return out

    def sweeps(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT sweep FROM members GROUP BY sweep ORDER BY MIN(rowid)")]

    def counts(self, sweep: Optional[str] = None) -> dict[str, int]:
        query = "SELECT status, COUNT(*) FROM runs" + (
            " WHERE hash IN (SELECT hash FROM members WHERE sweep = ?)" if sweep else "") + " GROUP BY status"
        found = dict(self._db.execute(query, (sweep,) if sweep else ()).fetchall())
        return {s: found.get(s, 0) for s in STATUSES}
