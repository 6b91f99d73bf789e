"""`sparsemem reproduce`: the paper's experiments through the sweep engine, then the report."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Optional, Sequence, Union

from .config import ConfigError, RunConfig
from .experiments import DEFAULT_EXPERIMENTS, EXPERIMENTS, GROUPS, PROFILES, expand_all, floors
from .preflight import concrete_device
from .report import build_report
from .sweep.runner import check_runner_args, run_sweep
from .sweep.store import Store


def cost(cfg: RunConfig) -> float:
    """A rough relative cost, to start the longest runs first."""
    m, t = cfg.model, cfg.train
    per_step = m.heads * m.layers * (8 if m.attention == "dp" else 1) + m.ffn_width / 64
    return t.steps * t.batch_size * per_step * (cfg.task.seq_len / 1000) * (m.layers if m.layers > 1 else 1)


def resolve_profile(profile: str, device: str) -> tuple[str, str]:
    """The profile to run and why: ``auto`` is the paper's protocol where the runs go to a CUDA device
    (there it takes minutes), the quick profile elsewhere (the paper's is hours on a CPU)."""
    if profile != "auto":
        return profile, "asked for"
    if device.startswith("cuda"):
        return "paper", f"auto: the runs go to {device}"
    return "quick", f"auto: the runs go to {device}, where the paper profile takes hours"


def reproduce(
    names: Optional[list[str]] = None,
    profile: str = "auto",
    out: Union[str, Path] = "results",
    workers: int = 1,
    backend: str = "local",
    address: Optional[str] = None,
    progress: Optional[bool] = None,
    command: str = "sparsemem reproduce",
    corpus: Optional[str] = None,
    device: str = "auto",
    fleet: str = "auto",
    fleet_size: int = 0,
    compile: str = "off",
    overrides: Sequence[str] = (),
) -> dict:
    """Run the named experiments and write the report into ``out``.

    By default every experiment that needs no corpus; with ``corpus`` the text
    experiments too. ``overrides`` (dotted ``key=value``) apply to every run, after the
    experiment's grid: ``["train.steps=50"]`` makes a smoke run of an experiment, whose
    verdicts then say nothing about the paper. An --out folder holds one profile and one
    set of overrides.
    """
    if profile != "auto" and profile not in PROFILES:
        raise ConfigError(f"--profile = {profile!r}: must be one of auto, {', '.join(PROFILES)}")
    check_runner_args(workers, backend, fleet, fleet_size, compile)
    device = concrete_device(device)  # so a CPU machine's runs keep the hashes of --device cpu
    profile, why = resolve_profile(profile, device)
    names = expand_names(names, profile, corpus)
    overrides = list(overrides)
    planned = plan(names, profile, corpus, overrides, device)
    out = Path(out)
    store_path = out / "results.db"
    check_out(out, store_path, profile, overrides)
    import torch

    with Store(store_path) as store:
        # CUDA's presence was checked in plan() for a cuda device
        label = f"cuda ({torch.cuda.get_device_name()})" if device == "cuda" else device
        meta = dict(out=str(out), command=command, torch=torch.__version__, device=label, overrides=overrides)
        store.set_meta(profile=profile, profile_reason=why, **meta)
        runs_by_hash = {}
        for name in names:
            store.add(name, [(c.config_hash(), c.name, c.to_dict()) for c in planned[name]])
            for c in planned[name]:
                runs_by_hash.setdefault(c.config_hash(), c)
        todo = sorted(runs_by_hash.values(), key=cost, reverse=True)
        t0 = time.perf_counter()
        summary = run_sweep(
            todo,
            store,
            None,
            workers=workers,
            backend=backend,
            address=address,
            runs_dir=out / "runs",
            progress=progress,
            ray_temp_dir=str((out / "ray").resolve()) if backend == "ray" else None,
            fleet=fleet,
            fleet_size=fleet_size,
            compile=compile,
        )
        seconds = store.meta().get("seconds", 0.0)
        compute_extras(store, names, planned, profile, overrides, progress)
        store.set_meta(seconds=round(seconds + time.perf_counter() - t0, 1))
    verdicts = build_report(store_path, out, names)
    return {"summary": summary, "verdicts": verdicts}


def expand_names(names: Optional[list[str]], profile: str, corpus: Optional[str]) -> list[str]:
    """The experiments to run, groups expanded, in order, each once; an unknown name is refused."""
    default = GROUPS["text"] if profile == "text" else DEFAULT_EXPERIMENTS + (GROUPS["text"] if corpus else [])
    names = list(dict.fromkeys(n for name in (names or default) for n in GROUPS.get(name, [name])))
    for name in names:
        if name not in EXPERIMENTS:
            raise ConfigError(
                f"experiment {name!r} is unknown; known: {', '.join(EXPERIMENTS)} and the groups {', '.join(GROUPS)}"
            )
    return names


def plan(names: list[str], profile: str, corpus: Optional[str], overrides: list[str], device: str) -> dict:
    """Every experiment's run configs, validated and checked before anything is written; text corpora are
    fetched and tokenized here, once."""
    from .preflight import check_device, check_runs
    from .tasks.text import prepare as prepare_text

    specs = {name: EXPERIMENTS[name].make_specs(profile, corpus) for name in names}
    planned = {name: expand_all(s) for name, s in specs.items()}  # validates every config before writing
    if overrides:
        planned = {name: [RunConfig.from_dict(c.to_dict(), overrides) for c in runs] for name, runs in planned.items()}
    if device != "cpu":
        from .config import TrainConfig

        try:
            TrainConfig(device=device)
        except ValueError as err:
            msg = err.errors()[0]["msg"] if hasattr(err, "errors") else str(err)
            raise ConfigError(f"--device = {device!r}: {msg.removeprefix('Value error, ')}") from None
        check_device(device, "--device")
        planned = {
            name: [c.model_copy(update={"train": c.train.model_copy(update={"device": device})}) for c in runs]
            for name, runs in planned.items()
        }
    check_runs(c for runs in planned.values() for c in runs)
    prepare_text(c for runs in planned.values() for c in runs)
    return planned


def check_out(out: Path, store_path: Path, profile: str, overrides: list[str]) -> None:
    """--out must be writable and hold no reproduction of another profile or other overrides."""
    from .files import check_writable_dir
    from .sweep.store import check_store_path

    check_writable_dir(out, "--out", ConfigError)
    check_writable_dir(out / "runs", "runs folder", ConfigError)
    check_store_path(store_path)
    if not (store_path.exists() and store_path.stat().st_size):
        return
    with Store(store_path, readonly=True) as store:
        had = store.meta().get("profile")
        had_overrides = store.meta().get("overrides", [])
    if had and had != profile:
        raise ConfigError(f"--out {str(out)!r} holds a {had} reproduction; pick another --out for {profile}")
    if had and had_overrides != overrides:
        raise ConfigError(
            f"--out {str(out)!r} holds a reproduction with overrides "
            f"{' '.join(had_overrides) or '(none)'}; pick another --out for "
            f"{' '.join(overrides) or 'none'}"
        )


def compute_extras(store: Store, names: list[str], planned: dict, profile: str, overrides: list[str], progress) -> None:
    """What experiments compute besides training (tables, fits), computed once and kept in the store."""
    meta = store.meta()
    show = progress if progress is not None else sys.stderr.isatty()
    for name in names:
        exp = EXPERIMENTS[name]
        stored = meta.get(f"computed:{name}")
        if exp.compute and (stored is None or not set(exp.compute_keys) <= set(stored)):
            store.set_meta(**{f"computed:{name}": exp.compute(profile)})
        wanted = exp.floors(profile) if exp.floors else []
        lengths = {c.task.seq_len for c in planned[name]}
        if overrides and len(lengths) == 1:  # floors at the length the (overridden) runs train at
            wanted = [dataclasses.replace(f, seq_len=min(lengths)) if f.quantity != "linear" else f for f in wanted]
        todo_floors = floors.missing([f for f in wanted if f.fits()], store.computed(name))
        if todo_floors:
            store.add_computed(name, floors.compute_rows(todo_floors, show))
