"""The `sparsemem` command line: a thin layer over the package API."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .config import (
    ADAPTIVE_EXAMPLES,
    ARCHS,
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
    "arch": ARCHS,
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
    from .preflight import check_runs, check_writable_dir
    from .train import train

    check_runs([cfg])
    check_writable_dir(out, "--out")

    result = train(cfg, out_dir=out, progress=None if not args.no_progress else False)
    result.pop("model", None)
    result["out_dir"] = str(out)
    print(train_summary(result, out), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(_strict_json(result)))
    return 0


def _strict_json(obj):
    """The same data with NaN and inf as strings, so that --json output is standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict_json(v) for v in obj]
    return obj


def train_summary(result: dict, out) -> str:
    """One line for a finished run; a run that diverged before its first evaluation has no val MSE."""
    val, rel = result.get("val_loss"), result.get("val_rel")
    summary = (f"{result['status']}: {result['steps']} steps, "
               + (f"val MSE {val:.4g}" if val is not None else "no evaluation")
               + (f" (relative {rel:.3g})" if rel is not None else "")
               + f", {result['params']} parameters, {result['seconds']:.1f} s -> {out}")
    if result["status"] == "diverged":
        loss = result.get("diverged_loss")
        summary += f" (diverged at step {result['diverged_step']}" + (f", loss {loss:.3g}" if isinstance(loss, float) else f", loss {loss}" if loss else "") + ")"
    return summary


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import Store, load_spec, run_sweep
    from .sweep.runner import check_runner_args

    check_runner_args(args.workers, args.backend, args.fleet, args.fleet_size, args.compile)
    from .preflight import check_runs
    from .sweep.store import check_store_path

    spec = load_spec(args.spec, args.overrides)
    runs = spec.expand()
    if not runs:
        raise ConfigError(f"sweep spec {args.spec!r} expands to no runs (an empty grid, cases or seeds list)")
    check_runs(runs)
    store_path = Path(args.store) if args.store else Path("results") / spec.name / "results.db"
    try:
        check_store_path(store_path)
    except ConfigError as err:
        raise ConfigError(f"--store: {err}") from None
    with Store(store_path) as store:
        summary = run_sweep(runs, store, spec.name, workers=args.workers, backend=args.backend,
                            address=args.address, progress=None if not args.no_progress else False,
                            ray_temp_dir=str(store_path.parent.resolve() / "ray"), fleet=args.fleet,
                            fleet_size=args.fleet_size, compile=args.compile)
        counts = store.counts(spec.name)
    print(f"sweep {spec.name}: {summary['total']} runs, {summary['skipped']} already finished; "
          f"store now holds {', '.join(f'{v} {k}' for k, v in counts.items() if v)} -> {store_path}")
    return 0 if counts["failed"] == 0 else 1


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    command = "sparsemem reproduce " + " ".join(
        list(args.experiments) + ["--profile", args.profile, "--out", args.out, "--workers", str(args.workers)]
        + (["--backend", args.backend] if args.backend != "local" else [])
        + (["--fleet", args.fleet] if args.fleet != "auto" else [])
        + (["--fleet-size", str(args.fleet_size)] if args.fleet_size else [])
        + (["--compile", args.compile] if args.compile != "off" else []))
    if args.corpus:
        command += f" --corpus {args.corpus}"
    if args.device != "auto":
        command += f" --device {args.device}"
    result = reproduce(args.experiments, profile=args.profile, out=args.out, workers=args.workers,
                       backend=args.backend, address=args.address, corpus=args.corpus,
                       progress=None if not args.no_progress else False, command=command, device=args.device,
                       fleet=args.fleet, fleet_size=args.fleet_size, compile=args.compile)
    print(f"report: {Path(args.out) / 'REPORT.md'}")
    for name, verdict in result["verdicts"].items():
        print(f"  {name:14s} {verdict.label:14s} {verdict.ours}")
    failed = result["summary"]["failed"]
    if failed:
        print(f"sparsemem: {failed} of {result['summary']['total']} runs failed; their errors are in the "
              "report and the store", file=sys.stderr)
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    from .sweep.store import StoreError

    try:
        verdicts = build_report(args.store, args.out)
    except StoreError as err:
        raise ConfigError(f"--store: {err}") from None
    print(f"report: {Path(args.out) / 'REPORT.md'} ({len(verdicts)} experiments)")
    return 0


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} = {text!r}: give comma-separated positive integers") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{what} = {text!r}: give comma-separated positive integers")
    return values


def cmd_theory_fit(args: argparse.Namespace) -> int:
    from .config import parse_kernel
    from .theory.fit import FIT_RPES, fit_table, plot_fits

    if not args.kernel.startswith("deltas:"):
        try:
            form, arg = parse_kernel(args.kernel)
        except ValueError as err:
            raise ConfigError(f"--kernel = {args.kernel!r}: {err}") from None
        if form == "delta" and arg >= args.seq_len:
            raise ConfigError(f"--kernel = {args.kernel!r}: the lag must be below --seq-len {args.seq_len}")
    else:
        lags = _int_list(args.kernel[len("deltas:"):].replace("+", ","), "--kernel deltas")
        if max(lags) >= args.seq_len:
            raise ConfigError(f"--kernel = {args.kernel!r}: every lag must be below --seq-len {args.seq_len}")
    rpes = [r for r in args.rpe.split(",") if r]
    for r in rpes:
        if r not in FIT_RPES:
            raise ConfigError(f"--rpe = {r!r}: must be among {', '.join(FIT_RPES)}")
    heads = _int_list(args.heads, "--heads")
    if args.seq_len < 2:
        raise ConfigError(f"--seq-len = {args.seq_len}: must be at least 2")
    table = fit_table(args.kernel, rpes, heads, args.seq_len)
    if args.json:
        print(json.dumps({r: {H: {"l2": f.l2, "l1": f.l1, "p": f.p, "c": f.c, "c0": f.c0}
                              for H, f in fits.items()} for r, fits in table.items()}))
    else:
        print(f"best fit of {args.kernel} over lags 0..{args.seq_len - 1} by H DP-free heads (l2 = MSE floor)")
        print("H".rjust(5) + "".join(f"{r + ' l2':>14}{r + ' l1':>14}" for r in rpes))
        for H in heads:
            print(f"{H:5d}" + "".join(f"{table[r][H].l2:14.3e}{table[r][H].l1:14.3e}" for r in rpes))
    if args.plot:
        plot_fits(table, args.kernel, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_theory_memory(args: argparse.Namespace) -> int:
    from .config import parse_kernel
    from .theory.memory import memory_table, plot_memory

    kernels = [k for k in args.kernels.split(",") if k]
    for k in kernels:
        try:
            parse_kernel(k)
        except ValueError as err:
            raise ConfigError(f"--kernels: {err}") from None
    lengths = _int_list(args.lengths, "--lengths")
    if min(lengths) < 2:
        raise ConfigError(f"--lengths = {args.lengths!r}: every length must be at least 2")
    if not 0 < args.target < 1:
        raise ConfigError(f"--target = {args.target}: must be in (0, 1)")
    if args.max_heads < 1:
        raise ConfigError(f"--max-heads = {args.max_heads}: must be at least 1")
    table = memory_table(kernels, lengths, args.target, args.max_heads)
    if args.json:
        print(json.dumps(table))
    else:
        print(f"smallest N (linear recurrence = lin heads) and log H with relative MSE <= {args.target:g} "
              f"(optimal fits; '-' means more than {args.max_heads})")
        print(f"{'kernel':>12} {'':>22}" + "".join(f"{S:>7}" for S in lengths))
        for kernel, rows in table.items():
            for label, pts in rows.items():
                print(f"{kernel:>12} {label:>22}" + "".join(f"{pts[S] if pts[S] else '-':>7}" for S in lengths))
    if args.plot:
        plot_memory(table, args.target, args.max_heads, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_theory_scaling(args: argparse.Namespace) -> int:
    from .theory.scaling import SCALING_RPES, THM51_KERNELS, exact_fewer, rates, scaling_table

    lags = _int_list(args.lags, "--lags")
    if min(lags) < 2:
        raise ConfigError(f"--lags = {args.lags!r}: every lag must be at least 2")
    rpes = [r for r in args.rpe.split(",") if r]
    for r in rpes:
        if r not in SCALING_RPES:
            raise ConfigError(f"--rpe = {r!r}: must be among {', '.join(SCALING_RPES)}")
    try:
        eps = [float(e) for e in args.eps.split(",") if e]
    except ValueError:
        raise ConfigError(f"--eps = {args.eps!r}: must be comma-separated numbers in (0, 1)") from None
    if not eps or not all(0 < e < 1 for e in eps):
        raise ConfigError(f"--eps = {args.eps!r}: every eps must be in (0, 1)")
    check = _int_list(args.check, "--check") if args.check else []
    if check and (min(check) < 2 or max(check) > 16):
        raise ConfigError(f"--check = {args.check!r}: lags from 2 to 16 (exact arithmetic grows fast)")
    if args.rate_heads < 0:
        raise ConfigError(f"--rate-heads = {args.rate_heads}: must be >= 0")
    table = scaling_table(lags, rpes, eps)
    checks = [exact_fewer(T, r, min(eps)) for T in check for r in rpes]
    rate = rates(list(THM51_KERNELS), rpes, args.rate_heads, 1000) if args.rate_heads else None
    if args.json:
        print(json.dumps({"rows": {r: {f"{e:g}": v for e, v in by.items()} for r, by in table["rows"].items()},
                          "fits": table["fits"], "checks": checks, "rates": rate}))
    else:
        print("delta memory at lag T, the H = T construction (exponents p_h = a h, lags 0..4T): "
              "scale a and log10 of the head weights")
        print(f"{'T':>6}" + "".join(f"{f'{r} l1<={e:g}':>26}" for r in rpes for e in eps))
        for i, T in enumerate(lags):
            cells = [table["rows"][r][e][i] for r in rpes for e in eps]
            cell = ["H={} a={:.3g} w=1e{:.0f}".format(c["heads"], c["a"], c["log10_weight"]) for c in cells]
            print(f"{T:6d}" + "".join(f"{x:>26}" for x in cell))
        for name, f in table["fits"].items():
            print(f"growth {name}: heads ~ T^{f['heads']['power']['slope']:.2f}, "
                  f"weight digits ~ T^{f['log10_weight']['power']['slope']:.2f}")
        for c in checks:
            print(f"check T = {c['T']} {c['rpe']}: {c['heads']} grid heads leave l1 >= {c['l1_at_least']:.3f}")
        for kernel, by in (rate or {}).items():
            for r, v in by.items():
                slope = f"slope {v['fit']['power']['slope']:.2f}" if v["fit"] else "exact at H = 1"
                print(f"Thm 5.1 {kernel:>14} {r}: l2 " + " ".join(f"{e:.1e}" for e in v["l2"]) + f"  ({slope})")
    if args.plot:
        from .theory.scaling import plot_scaling

        plot_scaling(table, args.plot, rate)
        print(f"plot: {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_theory_construct(args: argparse.Namespace) -> int:
    from .theory.construct import construct, construct_adaptive

    path, overrides = _split_positionals(args.items)
    cfg = RunConfig.from_yaml(path, overrides)
    if args.heads < 1 or args.width < 0:
        raise ConfigError(f"--heads = {args.heads}, --width = {args.width}: need heads >= 1 and width >= 0")
    adaptive = cfg.task.kind == "adaptive"
    if args.attention != "dp" and not adaptive:
        raise ConfigError(f"--attention = {args.attention!r}: tmx is built for adaptive tasks; fixed and kernel "
                          "tasks use DP-free heads")
    if adaptive:
        model, info = construct_adaptive(cfg, args.heads, args.width, attention=args.attention)
    else:
        model, info = construct(cfg, args.heads, args.width)
    if args.out:
        import torch
        import yaml

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out / "model.pt")
        (out / "config.yaml").write_text(yaml.safe_dump(
            {"task": cfg.to_dict()["task"], "model": info["model_config"], "train": cfg.to_dict()["train"]},
            sort_keys=False))
        (out / "result.json").write_text(json.dumps(info, indent=2))
    if args.json:
        print(json.dumps(info))
    else:
        what = (f"{args.attention.upper()} gates, {info['layers']} layer(s), heads per layer "
                f"{', '.join(map(str, info['heads_per_layer']))}" if adaptive else
                f"{args.heads} {cfg.model.rpe} heads per memory, readout "
                f"{'linear' if args.width == 0 else f'width {args.width}'}")
        errs = (f"delta fit l1 per lag {', '.join(f'{l}: {v:.3g}' for l, v in info['kernel_l1'].items())}"
                if adaptive else f"kernel fit l2 per memory {', '.join(f'{v:.3g}' for v in info['kernel_l2'])}")
        print(f"construction: {cfg.task.kind} task, {what}: validation MSE {info['val_loss']:.4g} "
              f"(relative {info['val_rel']:.3g}); {errs}" + (f" -> {args.out}" if args.out else ""))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for group, names in CATALOGUE.items():
        print(f"{group}: {', '.join(names)}")
    return 0


def _runner_args(p: argparse.ArgumentParser) -> None:
    """The options `sweep` and `reproduce` share: how runs are executed."""
    p.add_argument("--workers", type=int, default=1,
                   help="parallel worker processes, each training one run or one fleet at a time (default 1)")
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--fleet", choices=("auto", "off"), default="auto",
                   help="auto (default): runs that share a task and a training loop train together as one "
                        "batched model, each still its own row; off: every run alone")
    p.add_argument("--fleet-size", type=int, default=0, metavar="K",
                   help="most runs per fleet (default: 64 on a CPU, 256 on a GPU)")
    p.add_argument("--compile", choices=("off", "auto"), default="off",
                   help="auto: runs that train alone on a CPU with big steps (softmax DP over long sequences) "
                        "go through torch.compile, about 4x faster after some 20 s of compiling; off (default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is one line (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    p.add_argument("--store", metavar="PATH", help="SQLite store (default results/<sweep name>/results.db)")
    _runner_args(p)
    p.set_defaults(func=cmd_sweep)

    from .experiments import EXPERIMENTS, GROUPS

    p = sub.add_parser("reproduce", help="rerun the paper's experiments and write the report",
                       description="Run the paper's experiments (by default the paper group and length_gen) through the sweep engine and "
                                   "write results.db, tables/, figures/ and REPORT.md into --out. Rerunning "
                                   f"resumes. Experiments: {', '.join(EXPERIMENTS)} (the _text ones need "
                                   f"--corpus); groups: {', '.join(f'{g} = {chr(32).join(m)}' for g, m in GROUPS.items())}.")
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT")
    p.add_argument("--profile", choices=("auto", "quick", "paper"), default="auto",
                   help="quick: CPU-sized grids and 2000 steps; paper: the paper's grids, 10,000 steps; auto "
                        "(default): paper where the runs go to a CUDA device, quick otherwise")
    p.add_argument("--out", default="results", metavar="DIR", help="output folder (default results)")
    _runner_args(p)
    p.add_argument("--corpus", metavar="DIR", help="a folder of text files (or openwebtext) for 1a_text and "
                                                   "3b_text; with it, they run by default too")
    p.add_argument("--device", default="auto", help="train.device of every run: cpu, cuda, cuda:N or auto "
                                                    "(default: cuda where present, else cpu); runs on another "
                                                    "device are other runs in the store")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("report", help="rebuild tables, figures and REPORT.md from a results store")
    p.add_argument("--store", required=True, metavar="PATH", help="the results.db to read")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write REPORT.md, tables/, figures/")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("theory", help="the paper's theory made numerical")
    theory = p.add_subparsers(dest="theory_command", required=True, metavar="WHAT")
    p = theory.add_parser("fit", help="best fit of a memory kernel by H DP-free heads of each RPE type",
                          description="The smallest MSE (l2) and l1 error with which H DP-free heads of an "
                                      "RPE type, read linearly, represent a kernel: global greedy search over "
                                      "the head scales p on a grid, then joint refinement, weights by least "
                                      "squares. For i.i.d. unit-variance inputs l2 is the MSE floor of a "
                                      "1-layer FFN-free model on the linear target with that kernel.")
    p.add_argument("--kernel", required=True,
                   help="exp:BETA, power:BETA, delta:T, or a sum of deltas deltas:T1+T2+...")
    p.add_argument("--rpe", default="lin,log", help="comma-separated RPE types (default lin,log)")
    p.add_argument("--heads", default="1,2,4,8", help="comma-separated head counts (default 1,2,4,8)")
    p.add_argument("--seq-len", type=int, default=1000, help="number of lags S (default 1000)")
    p.add_argument("--plot", metavar="FILE", help="draw the errors against H into a PNG")
    p.add_argument("--json", action="store_true", help="print the fits as JSON")
    p.set_defaults(func=cmd_theory_fit)

    p = theory.add_parser("memory", help="the curse of memory: smallest N of a linear recurrence against log H",
                          description="For each kernel and sequence length, the fewest states N of a diagonal "
                                      "linear recurrence (a sum of N exponentials: the span of N lin-RPE "
                                      "heads) and the fewest log-RPE heads whose optimal fit reaches the "
                                      "target relative MSE.")
    p.add_argument("--kernels", default="power:0.5,power:1.5,exp:0.5", help="comma-separated kernels")
    p.add_argument("--lengths", default="64,128,256,512,1024", help="comma-separated sequence lengths")
    p.add_argument("--target", type=float, default=1e-3, help="relative MSE to reach (default 1e-3)")
    p.add_argument("--max-heads", type=int, default=64, help="largest N or H tried (default 64)")
    p.add_argument("--plot", metavar="FILE", help="draw N and H against length into a PNG")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_theory_memory)

    p = theory.add_parser("scaling", help="heads and weights against the lag of a delta memory (Thm 3.1); "
                                          "rates for Thm 5.1 kernels",
                          description="For the delta kernel at each lag T: H = T DP-free heads with exponents "
                                      "p_h = a h (the theorem's substitution) and the residual reach l1 error "
                                      "<= eps at the smallest scale a found; prints a and log10 of the head "
                                      "weights, and fits their growth in T. --check T1,... bounds from below, "
                                      "in exact arithmetic (mpmath), the l1 error of T - 1 such heads at six "
                                      "scales. With "
                                      "--rate-heads N, also the optimal l2 error of the Thm 5.1 kernels with "
                                      "1..N heads and the fitted slope in log H.")
    p.add_argument("--lags", default="8,16,32,64,128,256,512,1024", help="comma-separated lags T")
    p.add_argument("--rpe", default="lin,log", help="lin, log or both (default lin,log)")
    p.add_argument("--eps", default="0.1,0.01", help="comma-separated l1 targets (default 0.1,0.01)")
    p.add_argument("--check", default="4,8", help="lags (2..16) for the exact T - 1 check; '' for none")
    p.add_argument("--rate-heads", type=int, default=8, help="Thm 5.1 rates with 1..N heads (0: skip)")
    p.add_argument("--plot", metavar="FILE", help="draw heads, weight digits and rates into a PNG")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_theory_scaling)

    p = theory.add_parser("construct", help="build a Thm 3.1 / 5.1 / 4.1 / 4.4 or Prop 4.2 / 4.3 construction "
                                            "and score it, no training",
                          description="Load the explicit construction for a fixed (Thm 3.1) or kernel (Thm 5.1) "
                                      "task into an ordinary 1-layer DP-free model: each memory's kernel fitted "
                                      "by H heads of model.rpe, a readout fitted to f (linear, or random ReLU "
                                      "features of width --width with a least-squares output layer); for an "
                                      "adaptive task over discrete tokens the DP construction of Prop 4.2 / "
                                      "Thm 4.1 (depth 0, e.g. task.example=prop42) or Thm 4.4 (depth K: one "
                                      "layer per nested memory, e.g. task.example=nested_product) in a "
                                      "normalization-free model, H exponentials per lag. Then score it on "
                                      "the validation set.")
    p.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [key=value ...]")
    p.add_argument("--heads", type=int, required=True, help="heads per memory (adaptive: exponentials per lag)")
    p.add_argument("--width", type=int, default=0, help="readout width m (0 = linear, default)")
    p.add_argument("--attention", choices=("dp", "tmx"), default="dp",
                   help="adaptive tasks: gates by the dot product (dp, default) or by TMX heads (Prop 4.3)")
    p.add_argument("--out", metavar="DIR", help="save model.pt, config.yaml and result.json here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_theory_construct)

    p = sub.add_parser("list", help="list RPE types, attention kinds, tasks, inputs, readouts and kernels")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for flag in ("out", "store", "corpus"):
            if getattr(args, flag, None) == "":
                raise ConfigError(f"--{flag} is empty; give a path")
        return args.func(args)
    except ConfigError as err:
        print(f"sparsemem: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsemem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
