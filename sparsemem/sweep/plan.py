"""How a sweep's runs become jobs: which train together as one fleet, which alone, which compiled."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import RunConfig


@dataclass
class Job:
    """What one worker trains: one run, or several as a fleet (``fleet_dir`` set)."""

    hashes: list[str]
    members: list[tuple[dict, str]]  # (config dict, run folder)
    fleet_dir: Optional[str] = None
    compile: bool = False  # a single run through torch.compile


# On a CPU a fleet gains most while its step is bound by per-operation overhead; a member whose largest
# activation is big (softmax DP read at every key for a whole batch) already keeps a core busy alone.
# Measured on 2 cores, 8 members as one fleet against one by one: exp-1b DP-free (57k elements each)
# 2.2-2.6x, Prop 4.2 DP (51k) 2.1x, 1a synthetic 2-layer DP (205k) 1.4x; 3a DP with H = 8 (800k) 0.6x
# before its first layer got a fused softmax backward, 1.65x after. Letting such runs into fleets then
# projected the paper profile at 4,231 s against 4,320 s (within the noise), so the cap stays.
CPU_MEMBER_ELEMENTS = 250_000  # above this a run trains alone on a CPU
CPU_FLEET_ELEMENTS = 8_000_000  # and a CPU fleet's members hold at most this many together
# Such a run is bound by passes over its big tensors, which torch.compile fuses: measured on 2 cores, the
# 3a DP cell H = 64, m = 256 (T = 1000, batch 100) took 57 ms a step eagerly and 14 ms compiled, after
# 23 s of compiling (eagerly about 20 ms since the fused first-layer softmax and the malloc setting).
# `--compile auto` compiles these runs; small runs would not earn back the 20 s. Runs whose first layer sums
# its weights per token value (``sums_per_token_value``: +-1 tokens) do not compile: the check that path
# reads from the data breaks the graph, and eagerly that cell took 13 ms a step (measured on 1 thread).
COMPILE_MODES = ("off", "auto")


def step_elements(cfg: RunConfig) -> int:
    """About the number of elements in one member's largest activation per training step."""
    m, t, B = cfg.model, cfg.task, cfg.train.batch_size
    T, H = t.seq_len, m.heads
    rows = 1 if (t.output == "last" and m.layers == 1) else T  # query rows the attention forms
    if m.attention == "dp_free" and rows == 1:
        attn = H * T  # one kernel for the whole batch
    elif m.attention == "dp_free":
        attn = 4 * B * T * H * m.head_size  # FFT convolution
    else:
        attn = B * H * rows * T
    return max(attn, B * rows * max(m.ffn_width, m.dim))


def _on_gpu(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def default_fleet_size(device: str) -> int:
    """Members per fleet: a GPU trains hundreds at the price of one; a CPU core gains up to a few dozen."""
    return 256 if _on_gpu(device) else 64


def _chunks(members: list[RunConfig], fleet_size: int) -> list[list[RunConfig]]:
    """Consecutive chunks of at most ``fleet_size`` members (0: from the device); on a CPU, big members
    alone and each chunk's activations within ``CPU_FLEET_ELEMENTS``."""
    device = members[0].train.device
    size = fleet_size or default_fleet_size(device)
    if fleet_size or _on_gpu(device):
        return [members[i : i + size] for i in range(0, len(members), size)]
    out, part, total = [], [], 0
    for c in members:
        e = step_elements(c)
        if e > CPU_MEMBER_ELEMENTS:
            out.append([c])
            continue
        if part and (len(part) == size or total + e > CPU_FLEET_ELEMENTS):
            out.append(part)
            part, total = [], 0
        part.append(c)
        total += e
    return out + ([part] if part else [])


def plan_jobs(
    runs: list[RunConfig],
    runs_dir: Path,
    fleet: str = "auto",
    fleet_size: int = 0,
    workers: int = 1,
    compile: str = "off",
) -> list[Job]:
    """Group runs into jobs: with ``fleet="auto"``, runs that can train together (same task and loop, a
    supported model) form fleets of at most ``fleet_size`` members (0: chosen from the device); the rest
    run alone. While there are fewer jobs than ``workers``, the largest fleet is halved, so no worker
    idles. Grouping depends on the set of runs alone, not their order, so a rerun forms the same fleets
    and resumes them from their checkpoints. Jobs keep the order of their first run. With
    ``compile="auto"``, single runs on a CPU whose step holds more than ``CPU_MEMBER_ELEMENTS`` elements
    train through torch.compile."""
    from ..models import sums_per_token_value
    from ..models.fleet import fleet_supports, squad_key
    from ..training import fleet_key

    def single(c: RunConfig) -> Job:
        big = compile == "auto" and not _on_gpu(c.train.device) and step_elements(c) > CPU_MEMBER_ELEMENTS
        big = big and not sums_per_token_value(c)
        return Job([c.config_hash()], [(c.to_dict(), str(runs_dir / c.folder_name()))], compile=big)

    if fleet == "off":
        return [single(c) for c in runs]
    groups: dict[str, list[RunConfig]] = {}
    for c in runs:
        groups.setdefault(fleet_key(c) if fleet_supports(c) else "single:" + c.config_hash(), []).append(c)
    first = {id(c): i for i, c in enumerate(runs)}
    jobs: list[tuple[int, Job]] = []
    parts: list[list[RunConfig]] = []
    for key, members in groups.items():
        if key.startswith("single:") or len(members) == 1:
            parts += [[c] for c in members]
            continue
        # members that share a data stream (seed) and a structure (squad) side by side
        members = sorted(members, key=lambda c: (c.train.seed, squad_key(c.model), c.config_hash()))
        parts.extend(_chunks(members, fleet_size))
    parts.sort(key=lambda part: part[0].config_hash())  # an order of the set, not of the list given
    while len(parts) < workers and max(map(len, parts), default=1) > 1:
        big = max(range(len(parts)), key=lambda i: len(parts[i]))
        half = (len(parts[big]) + 1) // 2
        parts[big : big + 1] = [parts[big][:half], parts[big][half:]]
    for part in parts:
        if len(part) == 1:
            jobs.append((first[id(part[0])], single(part[0])))
            continue
        hashes = [c.config_hash() for c in part]
        fid = hashlib.sha256("".join(hashes).encode()).hexdigest()[:16]
        jobs.append(
            (
                min(first[id(c)] for c in part),
                Job(
                    hashes,
                    [(c.to_dict(), str(runs_dir / c.folder_name())) for c in part],
                    str(runs_dir / f"fleet-{fid}"),
                ),
            )
        )
    return [job for _, job in sorted(jobs, key=lambda t: t[0])]


def subjob(job: Job, hashes: list[str], runs_dir: Path) -> Job:
    """The part of ``job`` with these members (the others are held by another sweep)."""
    members = [m for h, m in zip(job.hashes, job.members) if h in set(hashes)]
    if len(members) == 1:
        return Job(list(hashes), members)
    fid = hashlib.sha256("".join(hashes).encode()).hexdigest()[:16]
    return Job(list(hashes), members, str(runs_dir / f"fleet-{fid}"))
