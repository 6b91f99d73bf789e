"""How far a run's numbers move with the engine that trains it: alone, in a fleet of 2, in a fleet of 4.

For each experiment named, the first four runs of its quick profile that can share a fleet (same task
and loop, fleet-capable model) are trained alone and as fleets of 2 and 4 (the first run always the
first member), for --steps steps. Prints one JSON object: per experiment, each run's validation loss
under each engine and the largest relative differences (alone vs fleet, fleet of 2 vs fleet of 4).

    python benchmarks/engine_tolerance.py [--experiments 1b,3a] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def measure(name: str, steps: int) -> dict:
    from sparsemem.config import RunConfig
    from sparsemem.experiments import EXPERIMENTS, expand_all
    from sparsemem.models.fleet import fleet_supports
    from sparsemem.training import train, train_fleet
    from sparsemem.training.fleet import fleet_key

    runs = [c for c in expand_all(EXPERIMENTS[name].make_specs("quick", None)) if fleet_supports(c)]
    key = fleet_key(runs[0])
    group = [c for c in runs if fleet_key(c) == key][:4]
    if len(group) < 4:
        return {"skipped": f"{len(group)} runs share a fleet"}
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
    ap.add_argument("--experiments", default="1b,3a", help="comma-separated experiment names (default 1b,3a)")
    ap.add_argument("--steps", type=int, default=300, help="training steps a run (default 300)")
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
