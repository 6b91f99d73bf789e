"""The schemas of a run: task (one schema per family), model and training settings.

Defaults live here and in the task families' schemas (``sparsemem.tasks``), nowhere else.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Optional, Union

import yaml
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, field_validator, model_validator

from ..fields import SEED_MAX, Bool, Float, Int, Strict
from ..registry import ARCHS as _ARCHS
from ..registry import ATTENTION, RPES, TASKS, TRACKERS, rpes
from ..tasks import TASK_CONFIGS
from ..tasks.fixed import FixedTaskConfig
from .loading import FieldError, apply_overrides, load_yaml, validate_config

RPE_TYPES = tuple(RPES)
ATTENTION_KINDS = tuple(ATTENTION)
ARCHS = tuple(_ARCHS)
TASK_KINDS = tuple(TASKS)
TMX_RPE_TYPES = rpes(tmx=True)  # phi extends to real arguments, as TMX attention needs
SIGNED_RPE_TYPES = rpes(signed=True)  # a trainable p, which `model.rpe_sign = free` may let turn negative

# A target family's schema, chosen by its `kind`.
TaskConfig = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in TASK_CONFIGS.items())],
    Discriminator(lambda v: v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)),
]
TASK_ADAPTER = TypeAdapter(TaskConfig)


def with_kind(data: Any) -> Any:
    """A task's kind picks its family; the default is fixed, or adaptive when an example is named."""
    if isinstance(data, dict):
        kind = data.get("kind", "adaptive" if data.get("example") is not None else "fixed")
        if not isinstance(kind, str) or kind not in TASK_CONFIGS:
            allowed = ", ".join(repr(k) for k in TASK_CONFIGS)
            raise FieldError("kind", kind, f"Input should be {allowed}")
        if data.get("example") is not None and kind != "adaptive":
            raise FieldError("kind", kind, f"example {data['example']!r} is an adaptive task; kind must be adaptive")
        return {**data, "kind": kind}
    return data


def task_config(data: dict):
    """The task schema for a mapping (its kind picks the family); pydantic's ValidationError if bad."""
    return TASK_ADAPTER.validate_python(with_kind(data))


# The task section as one flat schema had it before the families split, every field at its default: a
# record of the past, not derived from today's schemas, so that a field a family gains later changes no
# other family's hashes (a new field joins HASH_NEUTRAL, as train.blowup and model.rpe_sign did).
LEGACY_TASK = {
    "kind": "fixed",
    "seq_len": 64,
    "dim": 1,
    "input": {"kind": "rademacher", "values": None},
    "output": "last",
    "lags": [],
    "readout": {"kind": "sum", "width": 64, "weights": None},
    "kernels": [],
    "depth": 0,
    "g": None,
    "example": None,
    "seed": 0,
    "corpus": None,
    "max_bytes": 50_000_000,
}


class ModelConfig(Strict):
    """The Transformer family of docs/models.md, and the recurrent baselines."""

    arch: Literal[ARCHS] = "transformer"
    hidden: Int = Field(16, ge=1)  # N, the state size of linear_rnn and lstm
    layers: Int = Field(1, ge=1)
    heads: Int = Field(1, ge=1)
    dim: Int = Field(64, ge=1)  # D, the residual width
    head_dim: Optional[Int] = Field(None, ge=1)  # default dim // heads
    ffn_width: Int = Field(64, ge=0)  # m; 0 = FFN-free (linear readout)
    rpe: Literal[RPE_TYPES] = "lin"
    rpe_init: Optional[Float] = Field(None, gt=0)  # initial p for every head; None: a spread
    # positive: p_h = exp(a free parameter), as the paper requires; free: p_h itself is the parameter and may
    # turn negative (a variant, not the paper's family: the kernel then grows with the lag)
    rpe_sign: Literal["positive", "free"] = "positive"
    rpe_buckets: Int = Field(16, ge=1)  # t5: B
    rpe_max_distance: Int = Field(128, ge=1)  # t5: D; learned: number of distances
    attention: Literal[ATTENTION_KINDS] = "dp"
    normalize: Bool = True  # softmax; False = normalization-free
    layer_norm: Bool = False
    scale: Bool = False  # 1/sqrt(d_k) on dot products
    ffn_precision: Bool = False  # round hidden FFN outputs (docs/models.md)
    impl: Literal["fast", "reference"] = "fast"
    # how softmax dp attention over all positions runs (impl fast): chunked (query rows in chunks, own
    # backward), sdpa (scaled_dot_product_attention, the RPE as a float mask), triton (a fused kernel with
    # the RPE's per-head parameters trained in it; needs triton, runs interpreted on a CPU) or auto
    # (chunked on a CPU, sdpa elsewhere)
    attention_kernel: Literal["auto", "chunked", "sdpa", "triton"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.head_dim is None and self.dim % self.heads != 0:
            raise FieldError("heads", self.heads, f"heads must divide dim={self.dim}, or set model.head_dim")
        if self.attention == "tmx" and self.rpe not in TMX_RPE_TYPES:
            raise FieldError("rpe", self.rpe, f"tmx attention needs rpe in {', '.join(TMX_RPE_TYPES)}")
        if self.rpe_sign == "free" and self.rpe not in SIGNED_RPE_TYPES:
            raise FieldError(
                "rpe_sign", self.rpe_sign, f"a sign-free p needs a trainable p: rpe in {', '.join(SIGNED_RPE_TYPES)}"
            )
        if self.attention_kernel == "triton" and RPES[self.rpe].table:
            raise FieldError(
                "attention_kernel",
                self.attention_kernel,
                f"the triton kernel trains per-head RPE parameters; rpe {self.rpe!r} has one per lag (use auto)",
            )
        if self.rpe == "t5" and self.rpe_max_distance <= self.rpe_buckets:
            raise FieldError(
                "rpe_max_distance",
                self.rpe_max_distance,
                f"t5 needs rpe_max_distance > rpe_buckets = {self.rpe_buckets}",
            )
        return self

    @property
    def head_size(self) -> int:
        return self.head_dim if self.head_dim is not None else self.dim // self.heads


class TrainConfig(Strict):
    """AdamW on fresh samples every step.

    The optimizer defaults are the setting every toy experiment uses (experiments/base.py reads them from
    here): lr 1e-3 with the memory parameters (RPE p, recurrence decay rates) at 30x, a cosine schedule.
    Measured on one DP-free lin head learning an exp:0.3 kernel (T = 256, 1,500 steps, seeds 0-2): relative
    validation MSE 1e-14 to 1e-13, against 5e-3 to 8e-3 with the memory parameters at 1x and a constant lr.
    """

    steps: Int = Field(1000, ge=1)
    batch_size: Int = Field(100, ge=1)
    lr: Float = Field(1e-3, gt=0)
    rpe_lr_scale: Float = Field(30.0, gt=0)  # lr of RPE parameters and recurrence decay rates = lr * this
    weight_decay: Float = Field(0.0, ge=0)
    betas: tuple[Float, Float] = (0.9, 0.999)
    warmup_steps: Int = Field(0, ge=0)
    schedule: Literal["constant", "cosine"] = "cosine"
    min_lr_ratio: Float = Field(0.0, ge=0, le=1)  # cosine floor, as a fraction of lr
    grad_clip: Float = Field(0.0, ge=0)  # 0 = off
    seed: Int = Field(0, ge=0, le=SEED_MAX)
    val_samples: Int = Field(1000, ge=1)
    eval_every: Int = Field(0, ge=0)  # 0 = about ten evaluations per run
    eval_lengths: list[Int] = Field(default_factory=list)  # also score the final model at these seq_lens
    checkpoint_every: Int = Field(0, ge=0)  # 0 = at every evaluation
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    dtype: Literal["float32", "float64"] = "float32"
    # a training or validation loss above blowup x Var(y) ends the run as diverged, like NaN or inf; 0 = off
    blowup: Float = Field(1e6, ge=0)
    # trackers that stream the evaluations (sparsemem/trackers.py); how a run is watched, not what it is:
    # outside the config hash
    log: list[Literal[tuple(TRACKERS)]] = Field(default_factory=list)
    # gradient accumulation: forward and backward micro-batches of this many samples (0 = the whole batch)
    micro_batch: Int = Field(0, ge=0)
    autocast: Literal["off", "bf16"] = "off"  # bf16: forward passes under torch.autocast in bfloat16

    @field_validator("log")
    @classmethod
    def _log(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("names a tracker twice")
        return v

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError("each beta must be in [0, 1)")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        ok = v in ("cpu", "cuda", "auto", "mps") or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError(f"device {v!r} is not one of cpu, cuda, cuda:N, mps, auto")
        return v

    @field_validator("eval_lengths")
    @classmethod
    def _lengths(cls, v: list[int]) -> list[int]:
        if any(n < 1 for n in v):
            raise ValueError("every eval length must be at least 1")
        return v

    @model_validator(mode="after")
    def _micro(self) -> "TrainConfig":
        if self.micro_batch and self.batch_size % self.micro_batch:
            raise FieldError(
                "micro_batch",
                self.micro_batch,
                f"must divide train.batch_size = {self.batch_size} (0 = the whole batch)",
            )
        return self

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.steps // 10)

    @property
    def checkpoint_interval(self) -> int:
        return self.checkpoint_every or self.eval_interval


# (section, field) -> the default at which a field added later leaves config hashes as they were
HASH_NEUTRAL = {
    ("train", "blowup"): 1e6,
    ("model", "rpe_sign"): "positive",
    ("task", "tokenizer"): "byte",
    ("task", "vocab_size"): 8192,
    ("train", "micro_batch"): 0,
    ("train", "autocast"): "off",
    ("model", "attention_kernel"): "auto",
}
HASH_EXCLUDED = (("train", "log"),)  # fields that never enter the hash: they change no number of a run


class RunConfig(Strict):
    """One training run: task, model and training settings."""

    name: Optional[str] = None
    task: TaskConfig = Field(default_factory=FixedTaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @field_validator("task", mode="before")
    @classmethod
    def _task_kind(cls, data: Any) -> Any:
        return with_kind(data)

    @model_validator(mode="after")
    def _lengths_fit_task(self) -> "RunConfig":
        for n in self.train.eval_lengths:
            try:
                task_config({**self.task.model_dump(), "seq_len": n})
            except ValidationError as exc:
                raise FieldError(
                    "train.eval_lengths",
                    n,
                    f"the task is not valid at this length: {exc.errors()[0]['msg'].removeprefix('Value error, ')}",
                ) from None
        return self

    @classmethod
    def from_dict(cls, data: dict, overrides: list[str] = ()) -> "RunConfig":
        data = apply_overrides(dict(data or {}), overrides)
        return validate_config(cls, data)

    @classmethod
    def from_yaml(cls, path: Union[str, Path, None] = None, overrides: list[str] = ()) -> "RunConfig":
        return cls.from_dict(load_yaml(path) if path is not None else {}, overrides)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def folder_name(self) -> str:
        """The run's folder under a runs folder, whichever command trains it (train, sweep, reproduce): the
        first 16 hex digits of its config hash."""
        return self.config_hash()[:16]

    def config_hash(self) -> str:
        """A stable hash of the whole config (name excluded).

        Fields added after stores existed (``HASH_NEUTRAL``) count only when they differ from their
        default, so every run keeps the hash it had before they came. The task is hashed in the flat form
        it had before each family got its own schema: every family's fields, the others' at their
        defaults (``LEGACY_TASK``).
        """
        text = json.dumps(hash_payload(self.to_dict()), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def hash_payload(config: dict) -> dict:
    """What a config hash covers, from a config as a dict (a stored row's, whichever version wrote it): no
    name, no HASH_EXCLUDED field, the task in its flat LEGACY_TASK form, HASH_NEUTRAL fields only where they
    differ from their default. Two configs that train the same run have the same payload."""
    payload = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items() if k != "name"}
    for section, key in HASH_EXCLUDED:
        payload.get(section, {}).pop(key, None)
    payload["task"] = {**LEGACY_TASK, **payload.get("task", {})}
    for (section, key), default in HASH_NEUTRAL.items():
        if section in payload and payload[section].get(key) == default:
            del payload[section][key]
    return payload


def unique_by_hash(configs: Iterable) -> list:
    """The configs in order, each config hash once (the first wins)."""
    out, seen = [], set()
    for cfg in configs:
        h = cfg.config_hash()
        if h not in seen:
            seen.add(h)
            out.append(cfg)
    return out
