"""The `sparsemem` command line: a thin layer over the package API.

Each module adds its verbs (``add(sub)``) and runs them by calling the API: ``runs.py`` (train,
sweep), ``results.py`` (reproduce, report), ``stores.py`` (export, store merge, list), ``theory.py`` (the
theory verbs, built from their specs' fields). Here: the parser, and the one place errors become a
line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import errno
import sys

from ..config import ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is one line (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    from . import results, runs, stores, theory

    parser = _Parser(prog="sparsemem", description="Transformers on long, sparse memory (Wang and E, NeurIPS 2024).")
    try:
        here = version("sparsemem")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree that is not installed
        here = "(not installed)"
    parser.add_argument("--version", action="version", version=f"sparsemem {here}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runs.add(sub)
    results.add(sub)
    stores.add(sub)
    theory.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input is one line on stderr and exit code 2."""
    from ..sweep.store import StoreError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        for flag in ("out", "store", "corpus"):
            if getattr(args, flag, None) == "":
                raise ConfigError(f"--{flag} is empty; give a path")
        return args.func(args)
    except (ConfigError, StoreError) as err:
        flag = "--out" if args.command == "reproduce" else "--store"  # the store a command was given
        where = f"{flag}: " if isinstance(err, StoreError) else ""
        print(f"sparsemem: error: {where}{err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system refused (a full disk, a read-only mount): one line, no traceback
        if err.errno is None:
            raise
        print(f"sparsemem: error: {file_fault(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsemem: interrupted", file=sys.stderr)
        return 130


def file_fault(err: OSError) -> str:
    """One line for a file-system error: the file (a temporary named as the file it stood for), the
    reason, and for a full disk what to do; atomic writes leave no temporary behind."""
    name = str(err.filename).removesuffix(".tmp") if err.filename else "a file"
    hint = ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "; nothing half-written was kept: free space and run the same command to go on from the last checkpoint"
    return f"{name}: {err.strerror or err}{hint}"
