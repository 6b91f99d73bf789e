"""`sparsemem export`, `sparsemem store merge` and `sparsemem list`."""

from __future__ import annotations

import argparse


def cmd_export(args: argparse.Namespace) -> int:
    from ..frames import check_export_path, export

    check_export_path(args.out)  # before the store is opened
    n = export(args.store, args.out, sweep=args.sweep, curves=args.curves)
    print(f"export: {n} {'evaluations' if args.curves else 'runs'} -> {args.out}")
    return 0


def cmd_store_merge(args: argparse.Namespace) -> int:
    from ..sweep.merge import merge_stores

    summary = merge_stores(args.stores, args.out)
    status = ", ".join(f"{n} {s}" for s, n in summary["status"].items() if n)
    print(
        f"merged {len(summary['inputs'])} stores ({sum(summary['inputs'].values())} rows) into {args.out}: "
        f"{summary['runs']} runs ({status or 'none'})"
    )
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import json

    from ..runfiles import strict_json
    from ..sweep.retrain import retrain

    out = retrain(args.store, args.run, progress=False if args.no_progress else None)
    how = "alone" if out["engine"] == "single" else f"in its fleet of {out['fleet_size']}"
    same = "bit-identical" if out["rel_diff"] == 0.0 else f"relative difference {out['rel_diff']:.3g}"
    print(f"retrain {out['hash'][:12]} {how}: stored val_loss {out['stored']}, now {out['retrained']} ({same})")
    if args.json:
        print(json.dumps(strict_json(out)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ..config import catalogue
    from ..experiments.outcomes import OUTCOMES

    for group, names in catalogue().items():
        print(f"{group}: {', '.join(names)}")
    print(f"outcomes: {', '.join(OUTCOMES)}")  # what a claim of `sparsemem reproduce` can come out as
    return 0


def add(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a store's runs (or learning curves) to CSV or Parquet",
        description="One row per run: status, metrics, timings, the sweeps it belongs to and the config as "
        "dotted columns (model.heads), as sm.load_results gives it. The format comes from the extension of "
        "--out: .csv or .parquet.",
    )
    p.add_argument("--store", required=True, metavar="PATH", help="the results.db to read")
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.csv or FILE.parquet")
    p.add_argument("--sweep", metavar="NAME", help="only the runs of this sweep (or experiment)")
    p.add_argument(
        "--curves",
        action="store_true",
        help="one row per evaluation (hash, name, step, val_loss) instead of one per run",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("store", help="work on stores: merge stores written on separate machines")
    p = p.add_subparsers(dest="store_command", required=True, metavar="WHAT").add_parser(
        "merge",
        help="merge stores into a new one, every run once",
        description="Merge stores written on separate machines (one store a machine; never one SQLite file over "
        "a network filesystem) into a new store. Every run is kept once: finished over unfinished, done over "
        "diverged, then the first to finish. Stores of a newer schema are refused.",
    )
    p.add_argument("stores", nargs="+", metavar="STORE.db")
    p.add_argument("--out", required=True, metavar="ALL.db", help="the merged store (must not exist)")
    p.set_defaults(func=cmd_store_merge)

    p = sub.add_parser(
        "retrain",
        help="train a stored run again exactly as it was trained (alone, or in its fleet) and compare",
        description="Train a run of a store again with the engine that trained it (alone, or in a fleet with "
        "the same members in the same order) and print the stored and the new validation loss. The store is "
        "only read.",
    )
    p.add_argument("run", metavar="RUN", help="a run name, or 6 or more characters of its config hash")
    p.add_argument("--store", required=True, metavar="PATH", help="the results.db to read")
    p.add_argument("--json", action="store_true", help="also print the comparison as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser(
        "list", help="list RPE types, attention kinds, tasks, inputs, readouts, kernels and the outcomes of a claim"
    )
    p.set_defaults(func=cmd_list)
