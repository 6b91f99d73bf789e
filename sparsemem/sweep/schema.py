"""The store's file: its SQLite schema (by version), and the checks that refuse a path that cannot hold
a store before anything is written."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Union

from ..config import ConfigError

SCHEMA_VERSION = 3  # 1: runs, members, meta; 2: + owner and lease of a claim, events; 3: + computed
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
CREATE TABLE IF NOT EXISTS computed (
    experiment TEXT NOT NULL,
    quantity   TEXT NOT NULL,
    target     TEXT NOT NULL,
    rpe        TEXT NOT NULL,
    heads      INTEGER NOT NULL,
    value      REAL,
    PRIMARY KEY (experiment, quantity, target, rpe, heads)
);
CREATE TABLE IF NOT EXISTS events (
    time   REAL NOT NULL,
    hash   TEXT,
    kind   TEXT NOT NULL,
    detail TEXT
);
"""
CLAIM_COLUMNS = {"owner": "TEXT", "lease": "REAL"}  # added in version 2

METRIC_COLUMNS = ("val_loss", "val_rel", "train_loss", "steps", "params", "seconds")
# the runs table's columns of a run's record (the claim columns, owner and lease, aside)
RECORD_COLUMNS = (
    "hash",
    "sweep",
    "name",
    "config",
    "status",
    *METRIC_COLUMNS,
    "metrics",
    "error",
    "attempts",
    "created",
    "updated",
)
SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(ConfigError):
    """A store file that cannot be used; ``str(err)`` is one line naming the path and the problem."""


def sqlite_reason(err: sqlite3.Error) -> str:
    """What a SQLite error says of a store file, as the end of one line."""
    text = str(err)
    if "not a database" in text:
        return "is not a SQLite database"
    if "malformed" in text or "corrupt" in text:
        return f"is damaged ({text})"
    if "readonly" in text or "read-only" in text:
        return "cannot be written (read-only file, folder or filesystem)"
    if "unable to open" in text:
        return "cannot be opened"
    return f"cannot be used ({text})"


def check_store_path(path: Union[str, Path], readonly: bool = False) -> None:
    """Refuse, before anything is created, a store path that cannot hold a store (StoreError)."""
    p = Path(path)
    if p.is_dir():
        raise StoreError(f"store {str(p)!r} is a folder; give the path of a results.db file")
    if p.exists():
        try:
            with open(p, "rb") as fh:
                head = fh.read(len(SQLITE_HEADER))
        except OSError as err:
            raise StoreError(f"store {str(p)!r} cannot be read: {err.strerror or err}") from None
        if readonly and not head:
            raise StoreError(f"store {str(p)!r} is an empty file, not a results store")
        if head and head != SQLITE_HEADER:
            raise StoreError(f"store {str(p)!r} is not a SQLite database")
        if not readonly and not os.access(p, os.W_OK):
            raise StoreError(f"store {str(p)!r} cannot be written (read-only file, folder or filesystem)")
    elif readonly:
        raise StoreError(f"store {str(p)!r} does not exist; give the results.db a sweep or reproduce wrote")
    else:
        from ..files import check_writable_dir

        check_writable_dir(p.parent, "store folder", StoreError)
