"""Claims on running runs: who owns one (host:pid:token), until when (a lease), and the heartbeat that
renews a live sweep's leases. A claim whose owner is gone, or whose lease ran out, may be taken over."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Optional, Union

from .schema import FINISHED

LEASE_SECONDS = 60.0  # a claim lasts this long unless renewed; the heartbeat renews it 4 times as often
_RENEW_SQL = "UPDATE runs SET lease = ? WHERE owner = ? AND status = 'running'"
_CLAIM_SQL = (
    "UPDATE runs SET status = 'running', owner = ?, lease = ?, attempts = attempts + 1, error = NULL, updated = ? "
    "WHERE hash = ?"
)
EVENT_SQL = "INSERT INTO events (time, hash, kind, detail) VALUES (?, ?, ?, ?)"


def new_owner() -> str:
    """A claim owner: this host, this process and a token unique to the call."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_gone(owner: Optional[str]) -> bool:
    """Whether a claim's owner is known to be dead: no owner (an old store), or a process of this host that
    no longer exists. An owner on another host is never known dead: its lease decides."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(rest.split(":")[0]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def held_elsewhere(row: dict, owner: str, now: float) -> bool:
    """A row running under another owner's claim that is still live (lease ahead, owner not known dead)."""
    return (
        row["status"] == "running"
        and row.get("owner") != owner
        and (row.get("lease") or 0) > now
        and not owner_gone(row.get("owner"))
    )


class Heartbeat:
    """Renews ``owner``'s leases every ``lease / 4`` seconds from a thread with its own connection."""

    def __init__(self, path: Union[str, Path], owner: str, lease: float = LEASE_SECONDS):
        self.path, self.owner, self.lease = Path(path), owner, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparsemem-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        try:
            while not self._stop.wait(self.lease / 4):
                try:
                    db.execute(_RENEW_SQL, (time.time() + self.lease, self.owner))
                except sqlite3.Error:  # busy past the timeout: the next beat tries again
                    pass
        finally:
            db.close()


def claim_runs(db: sqlite3.Connection, hashes: list[str], owner: str, lease: float) -> list[str]:
    """Within the caller's transaction: mark those of ``hashes`` nobody else holds as running under
    ``owner`` until now + ``lease``, logging each takeover of another owner's expired claim; returns them."""
    if not hashes:
        return []
    now = time.time()
    marks = ", ".join("?" * len(hashes))
    rows = db.execute(f"SELECT hash, status, owner, lease FROM runs WHERE hash IN ({marks})", hashes).fetchall()
    state = {r["hash"]: dict(r) for r in rows}
    taken = []
    for h in hashes:
        r = state.get(h)
        if r is None or r["status"] in FINISHED or held_elsewhere(r, owner, now):
            continue
        if r["status"] == "running" and r["owner"] != owner:
            db.execute(
                EVENT_SQL, (now, h, "takeover", f"claim of {r['owner'] or 'an older sparsemem'} taken over by {owner}")
            )
        taken.append(h)
    db.executemany(_CLAIM_SQL, [(owner, now + lease, now, h) for h in taken])
    return taken


def claim_one(db: sqlite3.Connection, run_hash: str, owner: Optional[str]) -> None:
    """Claim one run regardless of other claims (an explicit, single-process use)."""
    now = time.time()
    db.execute(_CLAIM_SQL, (owner, now + LEASE_SECONDS if owner else None, now, run_hash))
