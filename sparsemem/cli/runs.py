"""`sparsemem train` and `sparsemem sweep`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import ConfigError, RunConfig


def split_positionals(items: list[str]) -> tuple[str | None, list[str]]:
    """The first positional without '=' is the config file; the rest are overrides."""
    if items and "=" not in items[0]:
        path, rest = items[0], items[1:]
    else:
        path, rest = None, items
    for item in rest:
        if "=" not in item:
            raise ConfigError(f"argument {item!r} is not an override of the form key.path=value")
    return path, rest


def default_folder(cfg: RunConfig) -> Path:
    """runs/<folder name>, the folder a sweep into runs/ would use too; a folder of the name earlier
    versions used (runs/<name>-<10 hex digits>) is resumed where it exists."""
    older = Path("runs") / f"{cfg.name or cfg.task.kind}-{cfg.config_hash()[:10]}"
    here = Path("runs") / cfg.folder_name()
    return older if older.is_dir() and not here.exists() else here


def cmd_train(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..preflight import check_runs
    from ..runfiles import strict_json, summary_line
    from ..training import train

    path, overrides = split_positionals(args.items)
    cfg = RunConfig.from_yaml(path, overrides)
    out = Path(args.out) if args.out else default_folder(cfg)
    check_runs([cfg])  # the run folder is checked by train(), after a finished run is served from it
    with distributed.ending():
        result = dict(train(cfg, out_dir=out, progress=False if args.no_progress else None, compile=args.compile))
    if distributed.rank() != 0:  # a data-parallel rank other than 0: rank 0 reports the run
        return 0
    result["out_dir"] = str(out)
    print(summary_line(result, out), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(strict_json(result)))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..sweep import run_spec

    out = run_spec(args.spec, args.overrides, store=args.store, **runner_options(args))
    counts = out["counts"]
    print(
        f"sweep {out['name']}: {out['total']} runs, {out['skipped']} already finished; "
        f"store now holds {', '.join(f'{v} {k}' for k, v in counts.items() if v)} -> {out['store']}"
    )
    return 0 if counts["failed"] == 0 else 1


def runner_options(args: argparse.Namespace) -> dict:
    """The execution options of `sweep` and `reproduce` as the API takes them."""
    names = ("workers", "backend", "address", "fleet", "fleet_size", "compile")
    return {**{n: getattr(args, n) for n in names}, "progress": False if args.no_progress else None}


def runner_args(p: argparse.ArgumentParser) -> None:
    """The options `sweep` and `reproduce` share: how runs are executed."""
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="parallel worker processes, each training one run or one fleet at a time (default 1)",
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local Ray)")
    p.add_argument(
        "--fleet",
        choices=("auto", "off"),
        default="auto",
        help="auto (default): runs that share a task and a training loop train together as one "
        "batched model, each still its own row; off: every run alone",
    )
    p.add_argument(
        "--fleet-size",
        type=int,
        default=0,
        metavar="K",
        help="most runs per fleet (default: 64 on a CPU, 256 on a GPU)",
    )
    p.add_argument(
        "--compile",
        choices=("off", "auto"),
        default="off",
        help="auto: runs that train alone on a CPU with big steps (softmax DP over long sequences) "
        "go through torch.compile, about 4x faster after some 20 s of compiling; off (default)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one model on one task",
        description="Train one run. CONFIG is a YAML file; overrides are dotted key=value "
        "pairs whose values are YAML (task.kernels=[power:1.5]).",
    )
    p.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [key=value ...]")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="run folder (default runs/<first 16 hex digits of the config hash>, as a sweep into runs/ names "
        "it); resumes if it holds a checkpoint",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--compile",
        action="store_true",
        help="train through torch.compile (the same numbers to round-off; eagerly if the compiler fails)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "sweep",
        help="run a sweep spec into a results store",
        description="Expand SPEC.yaml (base config, grid, cases, seeds) and train every run not "
        "yet finished in the store. Rerunning resumes.",
    )
    p.add_argument("spec", metavar="SPEC.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides applied to the base config")
    p.add_argument("--store", metavar="PATH", help="SQLite store (default results/<sweep name>/results.db)")
    runner_args(p)
    p.set_defaults(func=cmd_sweep)
