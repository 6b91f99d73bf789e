"""Sweep specs: a base config, a grid over dotted keys, optional cases, and seeds.

    name: exp4a
    base: {task: {...}, model: {...}, train: {...}}   # or a path to a config YAML
    grid:                                             # the product of these
      model.rpe: [log, lin]
      model.heads: [1, 2, 4]
    cases:                                            # optional; crossed with the grid
      - {model.layers: 1, model.heads: 8}
      - {model.layers: 2, model.heads: 4}
    seeds: [0, 1]                                     # train.seed values
    seed_task: true                                   # seed s also sets task.seed = s (default false)

Every expanded run is a full :class:`RunConfig`, keyed by its config hash.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import Field, field_validator

from ..config import SEED_MAX, Int, RunConfig, Strict, load_yaml, unique_by_hash, validate_config
from ..config.loading import resolve_config_path


def _override(key: str, value: Any) -> str:
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


class SweepSpec(Strict):
    name: str
    base: Union[dict, str] = Field(default_factory=dict)
    grid: dict[str, list] = Field(default_factory=dict)
    cases: list[dict[str, Any]] = Field(default_factory=lambda: [{}])
    seeds: list[Annotated[Int, Field(ge=0, le=SEED_MAX)]] = Field(default_factory=lambda: [0])
    # seed s also draws task s (task.seed: readout weights, nested-lag tables, validation set), so that the
    # spread over seeds covers the task draw as well as the initialisation and data order
    seed_task: bool = False

    @field_validator("grid")
    @classmethod
    def _nonempty(cls, grid: dict) -> dict:
        for key, values in grid.items():
            if not values:
                raise ValueError(f"grid key {key} has no values")
        return grid

    @classmethod
    def from_yaml(cls, path: Union[str, Path], overrides: list[str] = ()) -> "SweepSpec":
        path = resolve_config_path(path)  # a path, or a packaged example by name
        data = load_yaml(path)
        spec = validate_config(cls, data)
        if isinstance(spec.base, str):  # a base config path is relative to the spec file
            base_path = Path(path).parent / spec.base
            spec = spec.model_copy(update={"base": load_yaml(base_path)})
        if overrides:
            spec = spec.model_copy(update={"base": _apply(spec.base, overrides)})
        return spec

    def expand(self) -> list[RunConfig]:
        """Every run of the sweep, in grid order, each validated; duplicates removed."""
        base = self.base if isinstance(self.base, dict) else load_yaml(self.base)
        keys = list(self.grid)
        runs = []
        for case in self.cases:
            for values in itertools.product(*(self.grid[k] for k in keys)):
                for seed in self.seeds:
                    # a grid or case over train.seed wins over `seeds`
                    seeded = {"train.seed": seed, **({"task.seed": seed} if self.seed_task else {})}
                    items = {**seeded, **case, **dict(zip(keys, values))}
                    overrides = [_override(k, v) for k, v in items.items()]
                    label = ",".join(f"{k.split('.')[-1]}={v}" for k, v in items.items() if k not in seeded)
                    cfg = RunConfig.from_dict(base, overrides)
                    runs.append(cfg.model_copy(update={"name": f"{self.name}/{label or 'base'}/s{seed}"}))
        return unique_by_hash(runs)


def _apply(base: dict, overrides: list[str]) -> dict:
    from ..config import apply_overrides

    return apply_overrides(base, overrides)


def load_spec(path: Union[str, Path], overrides: list[str] = ()) -> SweepSpec:
    return SweepSpec.from_yaml(path, overrides)
