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


def cmd_list(args: argparse.Namespace) -> int:
    from ..config import catalogue

    for group, names in catalogue().items():
        print(f"{group}: {', '.join(names)}")
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

    p = sub.add_parser("list", help="list RPE types, attention kinds, tasks, inputs, readouts and kernels")
    p.set_defaults(func=cmd_list)
