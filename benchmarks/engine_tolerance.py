"""How far a run's numbers move with the engine that trains it: alone, in a fleet of 2, in a fleet of 4.

For each experiment named (optionally with a filter, ``3a:model.attention=dp``), four runs of its quick
profile that can share a fleet (same task and loop, fleet-capable model; spread evenly over the largest
such group, so they differ in heads and width) are trained alone and as fleets of 2 and 4 (the first two
runs always the first two members), for --steps steps. Prints one JSON object: per experiment, the first
two runs' validation losses under each engine and the largest relative differences (alone vs fleet,
fleet of 2 vs fleet of 4).

    python benchmarks/engine_tolerance.py [--experiments 1b,3a:model.attention=dp] [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def measure(item: str, steps: int) -> dict:
    from sparsemem.config import RunConfig
    from sparsemem.experiments import EXPERIMENTS, expand_all
    from sparsemem.models.fleet import fleet_supports
    from sparsemem.training import train, train_fleet
    from sparsemem.training.fleet import fleet_key

    name, _, where = item.partition(":")
    runs = [c for c in expand_all(EXPERIMENTS[name].make_specs("quick", None)) if fleet_supports(c)]
    if where:
        key, value = where.split("=", 1)
        runs = [c for c in runs if str(c.to_dict()[key.split(".")[0]][key.split(".")[1]]) == value]
    groups: dict = {}
    for c in runs:
        groups.setdefault(fleet_key(c), []).append(c)
    group = max(groups.values(), key=len, default=[])
    if len(group) < 4:
        return {"skipped": f"{len(group)} runs share a fleet"}
    group = [group[round(i * (len(group) - 1) / 3)] for i in range(4)]
    cfgs = [RunConfig.from_dict(c.to_dict(), [f"train.steps={steps}"]) for c in group]
    t0 = time.perf_counter()
    alone = [train(c, progress=False)["val_loss"] for c in cfgs[:2]]
    two = [r["val_loss"] for r in train_fleet(cfgs[:2], progress=False)]
    four = [r["val_loss"] for r in train_fleet(cfgs, progress=False)[:2]]
    return {
        "runs": [c.name for c in cfgs],
        "val_loss": {"alone": alone, "fleet_of_2": two, "fleet_of_4": four},
        "alone_vs_fleet": max(_rel(alone[i], f[i]) for i in range(2) for f in (two, four)),
        "fleet_2_vs_4": max(_rel(a, b) for a, b in zip(two, four)),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--experiments",
        default="1b,2b,3a:model.attention=dp",
        help="comma-separated experiment names, each with an optional key=value filter (default "
        "1b,2b,3a:model.attention=dp)",
    )
    ap.add_argument("--steps", type=int, default=2000, help="training steps a run (default 2000, the quick profile's)")
    args = ap.parse_args()
    out = {
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "steps": args.steps,
    }
    out["experiments"] = {n: measure(n, args.steps) for n in args.experiments.split(",")}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
