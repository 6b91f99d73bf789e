"""Drop a store's rows of the older design, in which every seed trained on task draw 0, from the named sweeps.

Since the paper profile draws task s for seed s, a rerun adds the new rows beside the old ones; this keeps
the new. A row leaves a sweep when its task seed differs from its training seed; a run no sweep keeps
any more is deleted with its events, and the file is vacuumed. Sweeps not named keep their rows (3a reads
1b's older DP-free rows beside its own older DP rows until it is rerun).

    python tools/drop_old_task_draws.py docs/paper-report/results.db 1b 2b 4a
"""

from __future__ import annotations

import json
import sqlite3
import sys


def old_design(config: dict) -> bool:
    return config.get("task", {}).get("seed", 0) != config.get("train", {}).get("seed", 0)


def main(path: str, sweeps: list[str]) -> None:
    db = sqlite3.connect(path)
    known = {r[0] for r in db.execute("SELECT DISTINCT sweep FROM members")}
    unknown = [s for s in sweeps if s not in known]
    if unknown or not sweeps:
        sys.exit(f"error: sweeps {unknown or '(none)'} are not in {path}; it has {', '.join(sorted(known))}")
    dropped = {}
    with db:
        for sweep in sweeps:
            rows = db.execute(
                "SELECT r.hash, r.config FROM runs r JOIN members m ON m.hash = r.hash WHERE m.sweep = ?", (sweep,)
            ).fetchall()
            old = [h for h, c in rows if old_design(json.loads(c))]
            db.executemany("DELETE FROM members WHERE sweep = ? AND hash = ?", [(sweep, h) for h in old])
            dropped[sweep] = (len(old), len(rows))
        orphans = [r[0] for r in db.execute("SELECT hash FROM runs WHERE hash NOT IN (SELECT hash FROM members)")]
        db.executemany("DELETE FROM events WHERE hash = ?", [(h,) for h in orphans])
        db.executemany("DELETE FROM runs WHERE hash = ?", [(h,) for h in orphans])
    db.execute("VACUUM")
    for sweep, (n, total) in dropped.items():
        print(f"{sweep}: {n} of {total} rows dropped")
    print(f"{len(orphans)} runs deleted (in no sweep any more)")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
