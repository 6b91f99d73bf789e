"""Speed of fleets, the paper profile and all-position DP training, side by side; prints one JSON object.

Sections (each can be skipped):
  fleet         member-steps per second of a fleet of K runs against the same runs one by one, for
                K = 1, 8, 64, at the exp-1b setting (1 layer, DP-free, lin RPE, H = 32, m = 256, D = 64,
                T = 1000, batch 100, last position) and at a 3a DP setting (same with DP attention, H = 8).
                Members differ in lr (one data stream, like the cells of one seed in a grid) and, for
                exp-1b, also in seed (K data streams).
  profile       the paper profile's wall time (1b, 2a, 2b, 3a, 4a, 4b, 1a_synthetic, 3b_synthetic, every
                cell, 10,000 steps; --seeds N keeps the first N seeds a cell), projected from measured
                step times: every job the sweep engine forms (a fleet or a single run) trains 5 steps and
                then n steps (n sized to take about --profile-seconds more) with threads = cores / workers,
                as the local pool runs it;
                (t_n - t_5) / (n - 5) is its time per step and t_5 bounds one validation (with set-up)
                from above; a job takes steps x step time + evaluations x t_5; jobs are packed longest
                first onto `--workers` lanes. Single runs that differ only in RPE type, seed or lr share one
                timing. With --compile auto (the default) the runs the sweep
                engine would compile are timed compiled, plus their first compile.
  dp_all        all-position DP training, L = 2, H = 8, D = 64, m = 64, T = 1024, batch 16: our alibi,
                trainable lin and trainable log models; our model with a frozen bias through
                scaled_dot_product_attention; lucidrains' x-transformers (ContinuousTransformerWrapper,
                alibi_pos_bias, with and without attn_flash; `pip install x-transformers`).
  train_speed   the figures of benchmarks/train_speed.py.

    python benchmarks/run.py [--device cpu|cuda] [--seconds S] [--workers W] [--profile-seconds S]
                             [--compile auto|off] [--seeds N] [--skip fleet,profile,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sparsemem as sm  # noqa: E402
from sparsemem.sweep.runner import plan_jobs  # noqa: E402
from sparsemem.training import train, train_fleet  # noqa: E402

EXP1B = [
    "task.kind=fixed",
    "task.seq_len=1000",
    "task.lags=[952,944,901]",
    "task.readout=relu_net",
    "model.layers=1",
    "model.heads=32",
    "model.dim=64",
    "model.ffn_width=256",
    "model.rpe=lin",
    "model.attention=dp_free",
    "train.batch_size=100",
    "train.val_samples=100",
]
DP3A = [o.replace("heads=32", "heads=8").replace("attention=dp_free", "attention=dp") for o in EXP1B]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def step_time(cfgs: list, device: str, seconds: float, n0: int = 5, compile: bool = False) -> dict:
    """A job's timings (one run, or a fleet): ``step`` seconds per step, ``first`` seconds of an n0-step run
    with one evaluation (set-up and one evaluation bounded from above), and for a compiled run ``compile``,
    the extra seconds its first compiled run took.

    After an untimed warm-up, an n0-step run and a longer one sized to take about ``seconds`` more;
    the difference over the extra steps is the time per step (set-up and the evaluation cancel).
    """

    def run(n, compiled=False):
        short = [c.model_copy(update={"train": c.train.model_copy(update={"steps": n, "eval_every": n})}) for c in cfgs]
        if len(short) == 1:
            return timed(lambda: train(short[0], progress=False, compile=compiled), device)
        return timed(lambda: train_fleet(short, progress=False), device)

    run(2)
    t0 = run(n0)
    out = {"first": t0}
    if compile:  # the first compile fills inductor's cache; the timed runs below reuse it
        out["compile"] = max(0.0, run(n0, True) - t0)
        t0 = run(n0, True)
    t0 = min(t0, run(n0, compile))  # each time the least of two: a stray pause elsewhere on the machine
    t_probe = run(n0 + 10, compile) - t0  # noisy: a floor and a cap keep the sized run sane
    n1 = n0 + min(2000, max(10, int(seconds / max(t_probe / 10, t0 / n0 / 10, 1e-5))))
    out["step"] = max(min(run(n1, compile), run(n1, compile)) - t0, 1e-9) / (n1 - n0)
    return out


def cost_key(job) -> tuple:
    """What sets a single run's speed: two runs that differ only in RPE type, seed or lr time alike."""
    c = job.members[0][0]
    m, t = c["model"], c["task"]
    return (
        m["attention"],
        m["layers"],
        m["heads"],
        m["ffn_width"],
        m["dim"],
        m["head_dim"],
        t["seq_len"],
        t["output"],
        t["kind"],
        c["train"]["batch_size"],
        c["train"]["steps"],
        job.compile,
    )


def fleet_section(device: str, seconds: float) -> list[dict]:
    rows = []
    for name, base in (("exp1b", EXP1B), ("dp3a", DP3A)):
        for K in (1, 8, 64):
            for streams in ("one", "K") if name == "exp1b" else ("one",):
                if K == 1 and streams == "K":
                    continue
                cfgs = [
                    sm.RunConfig.from_dict(
                        {},
                        base
                        + [
                            f"train.device={device}",
                            f"train.lr={1e-3 * (1 + 0.01 * k)}",
                            f"train.seed={k if streams == 'K' else 0}",
                        ],
                    )
                    for k in range(K)
                ]
                single = step_time(cfgs[:1], device, seconds)["step"]
                fleet = step_time(cfgs, device, seconds)["step"] if K > 1 else single
                rows.append(
                    {
                        "setting": name,
                        "K": K,
                        "data_streams": 1 if streams == "one" else K,
                        "one_by_one_member_steps_per_s": round(1 / single, 1),
                        "fleet_member_steps_per_s": round(K / fleet, 1),
                        "ratio": round(single * K / fleet, 2),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def profile_section(device: str, workers: int, seconds: float, compile: str, seeds: int = 0) -> dict:
    from sparsemem.experiments import EXPERIMENTS, GROUPS, expand_all
    from sparsemem.experiments.base import SEEDS

    kept = set(SEEDS["paper"][:seeds]) if seeds else None

    threads = max(1, (os.cpu_count() or 1) // workers)
    torch.set_num_threads(threads)
    runs = {}
    for name in GROUPS["paper"]:
        for c in expand_all(EXPERIMENTS[name].make_specs("paper")):
            if kept is not None and c.train.seed not in kept:
                continue
            c = c.model_copy(update={"train": c.train.model_copy(update={"device": device})})
            runs.setdefault(c.config_hash(), c)
    jobs = plan_jobs(list(runs.values()), Path("/nonexistent"), workers=workers, compile=compile)
    timings = []
    t_start = time.perf_counter()
    seen = {}
    for job in jobs:
        cfgs = [sm.RunConfig.model_validate(c) for c, _ in job.members]
        key = cost_key(job) if job.fleet_dir is None else id(job)
        timed = key not in seen
        if timed:
            seen[key] = step_time(cfgs, device, seconds, compile=job.compile)
        t = seen[key]
        tc = cfgs[0].train
        evals = len(range(tc.eval_interval, tc.steps + 1, tc.eval_interval)) + (tc.steps % tc.eval_interval != 0)
        projected = tc.steps * t["step"] + evals * t["first"] + t.get("compile", 0.0)
        timings.append(
            {
                "members": len(cfgs),
                "name": cfgs[0].name,
                "compiled": job.compile,
                "timed": timed,
                "seconds_per_step": round(t["step"], 5),
                "projected_s": round(projected, 1),
            }
        )
        print(json.dumps(timings[-1]), file=sys.stderr)
    lanes = [0.0] * workers
    for t in sorted((j["projected_s"] for j in timings), reverse=True):
        lanes[lanes.index(min(lanes))] += t
    return {
        "runs": len(runs),
        "seeds": seeds or len(SEEDS["paper"]),
        "jobs": len(jobs),
        "fleets": sum(j.fleet_dir is not None for j in jobs),
        "compiled_runs": sum(j.compile for j in jobs),
        "compile": compile,
        "workers": workers,
        "threads_per_worker": threads,
        "projected_wall_s": round(max(lanes), 1),
        "projected_cpu_s": round(sum(j["projected_s"] for j in timings), 1),
        "measuring_s": round(time.perf_counter() - t_start, 1),
        "jobs_timed": timings,
        "method": "per job: (t(n steps) - t(5 steps)) / (n - 5) per step; t(5 steps, one evaluation) per "
        "evaluation; a compiled run adds its first compile; steps x step time + evaluations x t5; "
        "single runs that differ only in RPE type, seed or lr are timed once; "
        "jobs packed longest first on the lanes",
    }


def dp_all_section(device: str, seconds: float) -> list[dict]:
    from train_speed import time_steps

    T, B = 1024, 16
    base = [
        "task.kind=fixed",
        "task.seq_len=1024",
        "task.lags=[1,100,1000]",
        "task.output=all",
        "model.layers=2",
        "model.heads=8",
        "model.dim=64",
        "model.ffn_width=64",
        "model.attention=dp",
    ]
    rows = []
    for label, rpe, variant in (
        ("sparsemem alibi", "alibi", "fast"),
        ("sparsemem lin (trainable)", "lin", "fast"),
        ("sparsemem log (trainable)", "log", "fast"),
        ("sparsemem lin, frozen bias through SDPA", "lin", "sdpa_fixed_bias"),
    ):
        cfg = sm.RunConfig.from_dict({}, base + [f"model.rpe={rpe}"])
        r = time_steps(cfg, variant, B, seconds, device)
        rows.append({"model": label, "steps_per_s": round(1 / r["seconds_per_step"], 3)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    try:
        from x_transformers import ContinuousTransformerWrapper, Decoder
    except ImportError:
        rows.append(
            {"model": "x-transformers", "steps_per_s": None, "note": "not installed: pip install x-transformers"}
        )
        return rows
    for flash in (False, True):
        torch.manual_seed(0)
        model = ContinuousTransformerWrapper(
            dim_in=1,
            dim_out=1,
            max_seq_len=T,
            use_abs_pos_emb=False,
            attn_layers=Decoder(dim=64, depth=2, heads=8, ff_mult=1, alibi_pos_bias=True, attn_flash=flash),
        ).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        task = sm.make_task(sm.RunConfig.from_dict({}, base).task)
        gen = torch.Generator(device=device).manual_seed(0)

        def step():
            x, y = task.sample(B, gen)
            loss = torch.mean((model(x)[..., 0] - y) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()

        step()
        n, t0 = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - t0 < seconds:
            step()
            n += 1
        sync(device)
        rows.append(
            {
                "model": f"x-transformers alibi{' + flash' if flash else ''}",
                "steps_per_s": round(n / (time.perf_counter() - t0), 3),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def train_speed_section(device: str, seconds: float) -> list[dict]:
    import subprocess

    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("train_speed.py")),
            "--device",
            device,
            "--seconds",
            str(seconds),
            "--threads",
            str(torch.get_num_threads()),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)["results"]


SECTIONS = ("fleet", "profile", "dp_all", "train_speed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per fleet, dp_all and train_speed measurement")
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=0.5,
        help="time per job of the paper-profile projection, besides set-up (default 0.5)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker lanes of the paper-profile projection (default: the cores)",
    )
    parser.add_argument(
        "--compile", choices=("off", "auto"), default="auto", help="the projection's --compile (default auto)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=0,
        help="project the paper profile with its first N seeds a cell (default: all of them)",
    )
    parser.add_argument("--skip", default="", help=f"comma-separated sections to skip: {', '.join(SECTIONS)}")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(SECTIONS):
        parser.error(f"--skip {args.skip}: sections are {', '.join(SECTIONS)}")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    out = {
        "benchmark": "run",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
    }
    if "fleet" not in skip:
        out["fleet"] = fleet_section(args.device, args.seconds)
    if "dp_all" not in skip:
        out["dp_all"] = dp_all_section(args.device, args.seconds)
    if "train_speed" not in skip:
        out["train_speed"] = train_speed_section(args.device, args.seconds)
    if "profile" not in skip:
        out["profile"] = profile_section(args.device, args.workers, args.profile_seconds, args.compile, args.seeds)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
