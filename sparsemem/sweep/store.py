"""The results store: one SQLite file, one row per run, keyed by config hash.

A run belongs to every sweep that asked for it (table ``members``): two
experiments that share a configuration share one run. ``meta`` holds a few
facts about how the store was made (profile, command).

Every write is one transaction; the file runs in WAL mode so readers (a
report, a progress view) never block the sweep. Status moves
pending -> running -> done | diverged | failed.

A running run is claimed: ``owner`` names the sweep process that trains it
(host:pid:token) and ``lease`` the time until which the claim holds. The owner
renews its leases while it works (a heartbeat, ``Heartbeat``); another sweep
leaves a run with a live lease alone and takes over one whose lease has
expired or whose owner, on this host, no longer exists. ``events`` logs what
happened to runs besides their status (a damaged file found and healed, a
takeover).

A file that is not a store, a damaged one, or one that cannot be written gives
:class:`StoreError`, one line naming the path. ``readonly=True`` (``report``)
opens the file without creating or changing anything, also on a read-only
filesystem.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Optional, Union

from .claims import EVENT_SQL, LEASE_SECONDS, claim_one, claim_runs, held_elsewhere
from .schema import (
    CLAIM_COLUMNS,
    FINISHED,
    METRIC_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    STATUSES,
    StoreError,
    check_store_path,
    sqlite_reason,
)


class Store:
    """A results store at ``path`` (created if missing, unless ``readonly``)."""

    def __init__(self, path: Union[str, Path], readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        check_store_path(self.path, readonly)
        self._db = None
        try:
            if readonly:
                self._db = self._open_readonly()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
                self._db.row_factory = sqlite3.Row
                self._refuse_foreign()  # before anything changes the file
                self._wal()
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
            self._check_tables()
        except sqlite3.Error as err:
            self.close()
            raise StoreError(f"store {str(self.path)!r} {sqlite_reason(err)}") from None

    def _wal(self, wait: float = 60.0) -> None:
        """Put the store in WAL mode. Switching the journal mode takes the file alone and SQLite answers
        "locked" at once, without the busy wait, while another process opens the same new store (two
        sweeps started together): try again until ``wait`` seconds have passed."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _open_readonly(self) -> sqlite3.Connection:
        from urllib.parse import quote

        uri = f"file:{quote(str(self.path.resolve()))}"
        wal = self.path.with_name(self.path.name + "-wal")
        db = None
        if wal.exists():  # a writer is at work (or was killed): read through its WAL and shared memory
            try:
                db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:  # its -shm cannot be made (a read-only folder): read the file alone
                db = None
        if db is None:
            # no writer: read the file as it is, creating nothing beside it (no -wal, no -shm)
            db = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    def _refuse_foreign(self) -> None:
        """A SQLite file that holds other tables, or a store of a newer schema, is left alone."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "runs" not in tables:
            raise StoreError(
                f"store {str(self.path)!r} is a SQLite database but not a sparsemem store "
                f"(it holds {', '.join(sorted(tables)[:3])})"
            )
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {str(self.path)!r} was written by a newer sparsemem (schema {version}, "
                f"this one reads up to {SCHEMA_VERSION}); upgrade sparsemem"
            )

    def _migrate(self) -> None:
        with self._tx() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            have = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
            for column, kind in CLAIM_COLUMNS.items():
                if column not in have:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_tables(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = {"runs", "members", "meta"} - tables
        if missing:
            raise StoreError(
                f"store {str(self.path)!r} is a SQLite database but not a sparsemem store "
                f"(no table {', '.join(sorted(missing))})"
            )
        if self.readonly:
            self._refuse_foreign()
        self._db.execute("SELECT COUNT(*) FROM runs").fetchone()  # a damaged page shows here

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

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
            db.executemany(
                "INSERT OR IGNORE INTO members (sweep, hash) VALUES (?, ?)", [(sweep, h) for h, _, _ in runs]
            )
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] - before

    def set_meta(self, **values: str) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def add_computed(self, experiment: str, rows: Iterable[tuple[str, str, str, int, float]]) -> None:
        """Keep what an experiment computes beside its runs: (quantity, target, rpe, heads, value) rows,
        for example the optimal-fit floor of H heads of an RPE type for a kernel; replaces equal keys."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO computed (experiment, quantity, target, rpe, heads, value) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(experiment, *r) for r in rows],
            )

    def computed(self, experiment: Optional[str] = None) -> list[dict]:
        """The computed rows of one experiment (or all); none in a store written before the table came."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'computed'").fetchone():
            return []
        query = "SELECT * FROM computed" + (" WHERE experiment = ?" if experiment else "") + " ORDER BY rowid"
        return [dict(r) for r in self._db.execute(query, (experiment,) if experiment else ())]

    def claim(self, hashes: Iterable[str], owner: str, lease: float = LEASE_SECONDS) -> list[str]:
        """Mark those of ``hashes`` that nobody else holds as running under ``owner``; returns them.

        A run is free when it is pending or failed, or running under a claim whose lease has expired or
        whose owner is gone (``owner_gone``); finished runs are never claimed. One transaction, so two
        sweeps never claim one run.
        """
        hashes = list(hashes)
        with self._tx() as db:
            return claim_runs(db, hashes, owner, lease)

    def mark_running(self, run_hash: str, owner: Optional[str] = None) -> None:
        """Claim one run regardless of other claims (an explicit, single-process use)."""
        with self._tx() as db:
            claim_one(db, run_hash, owner)

    def held_elsewhere(self, hashes: Iterable[str], owner: str) -> list[str]:
        """Those of ``hashes`` running under another owner's live claim."""
        now = time.time()
        return [h for h, r in self.by_hash(hashes).items() if held_elsewhere(r, owner, now)]

    def log_event(self, run_hash: Optional[str], kind: str, detail: str) -> None:
        with self._tx() as db:
            db.execute(EVENT_SQL, (time.time(), run_hash, kind, detail))

    def events(self, run_hash: Optional[str] = None) -> list[dict]:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "events" not in tables:  # a version-1 store opened read-only
            return []
        query = "SELECT * FROM events" + (" WHERE hash = ?" if run_hash else "") + " ORDER BY rowid"
        return [dict(r) for r in self._db.execute(query, (run_hash,) if run_hash else ())]

    def finish(self, run_hash: str, result: dict) -> None:
        """Record a run's result; its status is the result's (done or diverged)."""
        status = result.get("status", "done")
        if status not in FINISHED:
            raise ValueError(f"a finished run has status done or diverged, not {status!r}")
        metrics = {k: v for k, v in result.items() if k != "model"}
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = ?, val_loss = ?, val_rel = ?, train_loss = ?, steps = ?, params = ?, "
                "seconds = ?, metrics = ?, error = NULL, owner = NULL, lease = NULL, updated = ? WHERE hash = ?",
                (
                    status,
                    *(metrics.get(k) for k in METRIC_COLUMNS),
                    json.dumps(metrics, default=str),
                    time.time(),
                    run_hash,
                ),
            )

    def fail(self, run_hash: str, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = 'failed', error = ?, owner = NULL, lease = NULL, updated = ? WHERE hash = ?",
                (error[-4000:], time.time(), run_hash),
            )

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
            part = hashes[i : i + 500]
            for row in self._db.execute(f"SELECT * FROM runs WHERE hash IN ({', '.join('?' * len(part))})", part):
                d = dict(row)
                d["config"] = json.loads(d["config"])
                d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
                out[d["hash"]] = d
        return out

    def memberships(self) -> list[tuple[str, str]]:
        """Every (sweep, hash) pair: which sweeps asked for which runs, in the order they asked."""
        return [tuple(r) for r in self._db.execute("SELECT sweep, hash FROM members ORDER BY rowid")]

    def sweeps(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT sweep FROM members GROUP BY sweep ORDER BY MIN(rowid)")]

    def counts(self, sweep: Optional[str] = None) -> dict[str, int]:
        query = (
            "SELECT status, COUNT(*) FROM runs"
            + (" WHERE hash IN (SELECT hash FROM members WHERE sweep = ?)" if sweep else "")
            + " GROUP BY status"
        )
        found = dict(self._db.execute(query, (sweep,) if sweep else ()).fetchall())
        return {s: found.get(s, 0) for s in STATUSES}
