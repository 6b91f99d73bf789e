"""`sparsemem theory fit | memory | scaling | construct`: each verb's options are its spec's fields
(``theory/specs.py``: name, type, default and help), so the command line and the API cannot drift apart."""

from __future__ import annotations

import argparse
import json
import sys
import typing

from ..config import RunConfig
from .runs import split_positionals

# verb -> (spec class name, --help line, what --plot draws; None: the verb has no plot)
VERBS = {
    "fit": ("FitSpec", "best fit of a memory kernel by H DP-free heads of each RPE type", "the errors against H"),
    "memory": (
        "MemorySpec",
        "the curse of memory: smallest N of a linear recurrence against log H",
        "N and H against length",
    ),
    "scaling": (
        "ScalingSpec",
        "heads and weights against the lag of a delta memory (Thm 3.1); rates for Thm 5.1 kernels",
        "heads, weight digits and rates",
    ),
    "construct": (
        "ConstructSpec",
        "build a Thm 3.1 / 5.1 / 4.1 / 4.4 or Prop 4.2 / 4.3 construction and score it, no training",
        None,
    ),
}


def spec_options(p: argparse.ArgumentParser, spec) -> None:
    """One option per field of ``spec``: lists as comma-separated text, numbers typed, literals as choices."""
    from ..theory.specs import default_text

    for name, field in spec.model_fields.items():
        kind, kw = field.annotation, {}
        if typing.get_origin(kind) is typing.Literal:
            kw["choices"] = typing.get_args(kind)
        elif kind in (int, float):
            kw["type"] = kind
        required = field.is_required()
        help_ = field.description + ("" if required else f" (default {default_text(spec, name)})")
        p.add_argument("--" + name.replace("_", "-"), required=required, help=help_, **kw)


def cmd_theory(args: argparse.Namespace) -> int:
    """Build the verb's spec from the options, run it, print its table (text or JSON) and plot it."""
    spec_cls = args.spec
    options = {n: getattr(args, n) for n in spec_cls.model_fields}
    spec = spec_cls.from_options(**options)
    if args.theory_command == "construct":
        return _construct(spec, args)
    table = spec.run()
    print(json.dumps(spec.json(table)) if args.json else spec.text(table))
    if args.plot:
        spec.plot(table, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _construct(spec, args: argparse.Namespace) -> int:
    path, overrides = split_positionals(args.items)
    cfg = RunConfig.from_yaml(path, overrides)
    model, info = spec.run(cfg)
    if args.out:
        from ..theory.construct import save_construction

        save_construction(model, info, cfg, args.out)
    print(json.dumps(info) if args.json else spec.text(cfg, info, args.out))
    return 0


def add(sub) -> None:
    from ..theory import specs

    theory = sub.add_parser("theory", help="the paper's theory made numerical")
    verbs = theory.add_subparsers(dest="theory_command", required=True, metavar="WHAT")
    for verb, (name, help_, plot) in VERBS.items():
        spec = getattr(specs, name)
        p = verbs.add_parser(verb, help=help_, description=spec.about())
        if verb == "construct":
            p.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [key=value ...]")
        spec_options(p, spec)
        if plot:
            p.add_argument("--plot", metavar="FILE", help=f"draw {plot} into a PNG")
        else:
            p.add_argument("--out", metavar="DIR", help="save model.pt, config.yaml and result.json here")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.set_defaults(func=cmd_theory, spec=spec)
