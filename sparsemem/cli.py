"""The `sparsemem` command line: a thin layer over the package API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import (
    ADAPTIVE_EXAMPLES,
    ATTENTION_KINDS,
    INPUT_KINDS,
    KERNEL_FORMS,
    READOUT_KINDS,
    RPE_TYPES,
    TASK_KINDS,
    ConfigError,
    RunConfig,
)

CATALOGUE = {
    "rpe": RPE_TYPES,
    "attention": ATTENTION_KINDS,
    "task": TASK_KINDS,
    "adaptive example": ADAPTIVE_EXAMPLES,
    "input": INPUT_KINDS,
    "readout": READOUT_KINDS,
    "kernel": KERNEL_FORMS,
}


def _split_positionals(items: list[str]) -> tuple[str | None, list[str]]:
    """The first positional without '=' is the config file; the rest are overrides."""
    if items and "=" not in items[0]:
        path, rest = items[0], items[1:]
    else:
        path, rest = None, items
    for item in rest:
        if "=" not in item:
            raise ConfigError(f"argument {item!r} is not an override of the form key.path=value")
    return path, rest


def cmd_train(args: argparse.Namespace) -> int:
    path, overrides = _split_positionals(args.items)
    cfg = RunConfig.from_yaml(path, overrides)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.name or cfg.task.kind}-{cfg.config_hash()[:10]}"
    from .train import train

    result = train(cfg, out_dir=out, progress=None if not args.no_progress else False)
    result.pop("model", None)
    result["out_dir"] = str(out)
    rel = result["val_rel"]
    summary = (f"{result['status']}: {result['steps']} steps, val MSE {result['val_loss']:.4g}"
               + (f" (relative {rel:.3g})" if rel is not None else "")
               + f", {result['params']} parameters, {result['seconds']:.1f} s -> {out}")
    if result["status"] == "diverged":
        summary += f" (diverged at step {result['diverged_step']})"
    print(summary, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import Store, load_spec, run_sweep
    from .sweep.runner import check_runner_args

    check_runner_args(args.workers, args.backend)
    spec = load_spec(args.spec, args.overrides)
    runs = spec.expand()
    store_path = Path(args.store) if args.store else Path("results") / spec.name / "results.db"
    with Store(store_path) as store:
        summary = run_sweep(runs, store, spec.name, workers=args.workers, backend=args.backend,
                            address=args.address, progress=None if not args.no_progress else False,
                            ray_temp_dir=str(store_path.parent.resolve() / "ray"))
        counts = store.counts(spec.name)
    print(f"sweep {spec.name}: {summary['total']} runs, {summary['skipped']} already finished; "
          f"store now holds {', '.join(f'{v} {k}' for k, v in counts.items() if v)} -> {store_path}")
    return 0 if counts["failed"] == 0 else 1


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    command = "sparsemem reproduce " + " ".join(
        list(args.experiments) + ["--profile", args.profile, "--out", args.out, "--workers", str(args.workers)]
        + (["--backend", args.backend] if args.backend != "local" else []))
    if args.corpus:
        command += f" --corpus {args.corpus}"
    result = reproduce(args.experiments, profile=args.profile, out=args.out, workers=args.workers,
                       backend=args.backend, address=args.address, corpus=args.corpus,
                       progress=None if not args.no_progress else False, command=command)
    print(f"report: {Path(args.out) / 'REPORT.md'}")
    for name, verdict in result["verdicts"].items():
        print(f"  {name:14s} {verdict.label:14s} {verdict.ours}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    if not Path(args.store).is_file():
        raise ConfigError(f"--store {args.store!r} is not a file; give the results.db a sweep or reproduce wrote")
    verdicts = build_report(args.store, args.out)
    print(f"report: {Path(args.out) / 'REPORT.md'} ({len(verdicts)} experiments)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for group, names in CATALOGUE.items():
        print(f"{group}: {', '.join(names)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsemem",
        description="Transformers on long, sparse memory (Wang and E, NeurIPS 2024).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train one model on one task",
                       description="Train one run. CONFIG is a YAML file; overrides are dotted key=value "
                                   "pairs whose values are YAML (task.kernels=[power:1.5]).")
    p.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [key=value ...]")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<name>-<config hash>); resumes if it holds a checkpoint")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="run a sweep spec into a results store",
                       description="Expand SPEC.yaml (base config, grid, cases, seeds) and train every run not "
                                   "yet finished in the store. Rerunning resumes.")
    p.add_argument("spec", metavar="SPEC.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides applied to the base config")
    p.add_argument("--workers", type=int, default=1, help="parallel runs (default 1)")
    p.add_argument("--store", metavar="PATH", help="SQLite store (default results/<sweep name>/results.db)")
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_sweep)

    from .experiments import EXPERIMENTS

    p = sub.add_parser("reproduce", help="rerun the paper's experiments and write the report",
                       description="Run the paper's experiments (all by default) through the sweep engine and "
                                   "write results.db, tables/, figures/ and REPORT.md into --out. Rerunning "
                                   f"resumes. Experiments: {', '.join(EXPERIMENTS)} (the _text ones need "
                                   "--corpus).")
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT")
    p.add_argument("--profile", choices=("quick", "paper"), default="quick",
                   help="quick: CPU-sized grids and 2000 steps (default); paper: the paper's grids, 10,000 steps")
    p.add_argument("--out", default="results", metavar="DIR", help="output folder (default results)")
    p.add_argument("--workers", type=int, default=1, help="parallel runs (default 1)")
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--corpus", metavar="DIR", help="a folder of text files (or openwebtext) for 1a_text and "
                                                   "3b_text; with it, they run by default too")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("report", help="rebuild tables, figures and REPORT.md from a results store")
    p.add_argument("--store", required=True, metavar="PATH", help="the results.db to read")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write REPORT.md, tables/, figures/")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("list", help="list RPE types, attention kinds, tasks, inputs, readouts and kernels")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"sparsemem: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsemem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
