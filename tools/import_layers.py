#!/usr/bin/env python3
"""The import contract (`make lint`): sparsemem's modules import downward only, and none takes part in a
circle.

Every import statement counts, those inside functions too, and importing ``a.b.c`` from outside ``a.b``
counts as importing ``a.b`` (its ``__init__`` runs first). A unit is a top-level module or package of
sparsemem; LAYERS lists them from the top down, units on one line being independent siblings (neither
imports the other). A unit may import units on lower lines only. Exit 1 with one line per breach.

    python tools/import_layers.py [PACKAGE_DIR]      (default: sparsemem)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LAYERS = [
    "__main__",
    "cli",
    "reproduce",
    "report",
    "experiments frames",
    "theory sweep",
    "training",
    "runfiles preflight distributed",
    "trackers",
    "models",
    "throughput",
    "config",
    "tasks",
    "registry fields convolution files plotting",
]


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports, its targets' enclosing packages included."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            anchor = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join(anchor + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    out = set()
    for target in found & set(mods):
        parts = target.split(".")
        for k in range(2, len(parts) + 1):  # a.b.c brings a.b (the root package's __init__ is not counted)
            enclosing = ".".join(parts[:k])
            if enclosing in mods and not (name == enclosing or name.startswith(enclosing + ".")):
                out.add(enclosing)
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    return comps


def breaches(root: Path, layers: list[str] = LAYERS) -> list[str]:
    mods = modules(root)
    pkg = root.name
    rank = {f"{pkg}.{u}": i for i, line in enumerate(layers) for u in line.split()}
    unit = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    graph = {name: imports(name, path, mods) for name, path in mods.items()}
    out = []
    for name in sorted(graph):
        if unit(name) != pkg and unit(name) not in rank:
            out.append(f"{name}: not in any layer of the import contract (tools/import_layers.py LAYERS)")
            continue
        for target in sorted(graph[name]):
            a, b = unit(name), unit(target)
            if a == b or a == pkg or b not in rank:
                continue
            if rank[b] <= rank[a]:
                where = "a sibling on its layer" if rank[b] == rank[a] else "a higher layer"
                out.append(f"{name} imports {target}: {where}")
    out += [f"import circle: {' -> '.join(c)}" for c in circles(graph)]
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "sparsemem")
    found = breaches(root)
    for line in found:
        print(line)
    print(f"import contract: {len(found)} breaches in {len(modules(root))} modules", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
