"""Configuration: the one place for defaults and validation.

A run is described by a :class:`RunConfig` with three parts, ``task``,
``model`` and ``train``. Configs come from YAML files plus dotted
``key=value`` overrides; any bad value raises :class:`ConfigError` whose
message is one line naming the field, the value and what is allowed.

Components that take parameters (``task.input``, ``task.readout``) accept a
mapping ``{kind: NAME, ...}`` or the bare string ``NAME``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

RPE_TYPES = ("lin", "log", "t5", "kerple_log", "alibi", "none", "learned")
ATTENTION_KINDS = ("dp", "dp_free", "tmx")
ARCHS = ("transformer", "linear_rnn", "lstm")
TASK_KINDS = ("fixed", "adaptive", "kernel", "text")
INPUT_KINDS = ("rademacher", "gaussian", "uniform", "discrete")
READOUT_KINDS = ("sum", "product", "linear", "relu_net")
KERNEL_FORMS = ("exp:BETA", "power:BETA", "delta:T", "[w_0, w_1, ...]")
ADAPTIVE_EXAMPLES = ("nested_product", "prop42")
DEFAULT_FIXED_LAGS = (1, 8)  # a fixed task's lags when none are given: y = f(x_{t-1}, x_{t-8})
# RPE types whose phi extends to real arguments, as TMX attention needs.
TMX_RPE_TYPES = ("lin", "log", "alibi", "kerple_log")
# RPE types with a trainable scale p_h, which ``model.rpe_sign = free`` may let turn negative.
SIGNED_RPE_TYPES = ("lin", "log", "t5", "kerple_log")


class ConfigError(ValueError):
    """A bad configuration value; ``str(err)`` is one line for the user."""


class FieldError(ValueError):
    """Raised inside validators to blame one field (relative to the model validated)."""

    def __init__(self, field: str, value: Any, message: str):
        super().__init__(message)
        self.field, self.value, self.message = field, value, message


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean; give a number")
    return value


def _only_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError("give true or false")
    return value


# Numbers that refuse booleans (YAML's `true` would otherwise become 1) and flags that refuse numbers;
# with allow_inf_nan off, every float is finite.
Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
Bool = Annotated[bool, BeforeValidator(_only_bool)]
SEED_MAX = 2**63 - 1  # seeds are 64-bit signed integers (torch.Generator, numpy)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False, allow_inf_nan=False)


def _kind_shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else value


class InputConfig(_Strict):
    """Distribution of the tokens x_t (i.i.d. over time and coordinates)."""

    kind: Literal["rademacher", "gaussian", "uniform", "discrete"] = "rademacher"
    values: Optional[list[Float]] = None  # the value set of `discrete`

    @model_validator(mode="after")
    def _check(self) -> "InputConfig":
        if self.kind == "discrete":
            if not self.values or len(set(self.values)) != len(self.values):
                raise FieldError("values", self.values, "discrete input needs a list of distinct numbers")
        elif self.values is not None:
            raise FieldError("values", self.values, f"values apply to discrete input only, not {self.kind}")
        return self

    def value_set(self) -> Optional[list[float]]:
        """The finite value set of a discrete input, or None for continuous ones."""
        if self.kind == "rademacher":
            return [-1.0, 1.0]
        if self.kind == "discrete":
            return list(self.values)
        return None


class ReadoutConfig(_Strict):
    """The readout f applied to the memory vector z."""

    kind: Literal["sum", "product", "linear", "relu_net"] = "sum"
    width: Int = Field(64, ge=1)  # relu_net: number of ReLU units
    weights: Optional[list[Float]] = None  # linear: one weight per entry of z

    @model_validator(mode="after")
    def _check(self) -> "ReadoutConfig":
        if self.kind == "linear" and not self.weights:
            raise FieldError("weights", self.weights, "a linear readout needs weights, one number per entry of z")
        return self


def parse_kernel(spec: Union[str, list[float]]) -> tuple[str, Any]:
    """Parse one memory-kernel spec into (form, parameter)."""
    if isinstance(spec, list):
        if not spec:
            raise ValueError("an explicit kernel list is empty")
        values = [float(v) for v in spec]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("an explicit kernel list holds a value that is not a finite number")
        return "list", values
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"kernel {spec!r} is not one of {', '.join(KERNEL_FORMS)}")
    form, _, arg = spec.partition(":")
    try:
        value = float(arg)
    except ValueError:
        raise ValueError(f"kernel {spec!r}: {arg!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"kernel {spec!r}: {arg!r} is not a finite number")
    if form in ("exp", "power"):
        if not value > 0:
            raise ValueError(f"kernel {spec!r}: BETA must be > 0")
        return form, value
    if form == "delta":
        if value != int(value) or value < 0:
            raise ValueError(f"kernel {spec!r}: T must be an integer >= 0")
        return form, int(value)
    raise ValueError(f"kernel {spec!r} is not one of {', '.join(KERNEL_FORMS)}")


_NESTED_G = [
    {"1": 1, "-1": 2},
    {"1,1": 1, "1,-1": 2, "-1,1": 1, "-1,-1": 2},
]
ADAPTIVE_PRESETS: dict[str, dict[str, Any]] = {
    # y_t = x_t x_{t-g(x_t)} x_{t-g(x_{t-g(x_t)})}, g(1) = 1, g(-1) = 2 (K = M = 2).
    "nested_product": {
        "input": "rademacher",
        "lags": [2, 2],
        "depth": 2,
        "g": _NESTED_G,
        "readout": "product",
    },
    # Prop 4.2: y_t = x_{t-g(x_t)}, x in {-1, 0, 1}, g(-1) = 0, g(0) = 1, g(1) = 2.
    "prop42": {
        "input": {"kind": "discrete", "values": [-1, 0, 1]},
        "lags": [2],
        "depth": 0,
        "g": [{"-1": 0, "0": 1, "1": 2}],
        "readout": {"kind": "linear", "weights": [0, 1]},
    },
}


def _format_value(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def table_key(values: tuple[float, ...]) -> str:
    """The key of a g-table entry for these argument values, e.g. ``"1,-1"``."""
    return ",".join(_format_value(v) for v in values)


class TaskConfig(_Strict):
    """A target family (PAPER.md section 3) and its sampling."""

    kind: Literal["fixed", "adaptive", "kernel", "text"] = "fixed"
    seq_len: Int = Field(64, ge=1)
    dim: Int = Field(1, ge=1)  # d, the token dimension
    input: InputConfig = Field(default_factory=InputConfig)
    output: Literal["last", "all"] = "last"
    # fixed: the lags T_1..T_M (0 means x_t itself);
    # adaptive: the bounds T_i of the lags t_i = g_i(...) in [0, T_i].
    lags: list[Int] = Field(default_factory=list)
    readout: ReadoutConfig = Field(default_factory=ReadoutConfig)
    kernels: list[Union[str, list[Float]]] = Field(default_factory=list)
    depth: Int = Field(0, ge=0)  # K, the nesting depth of an adaptive task
    g: Optional[list[dict[str, Int]]] = None  # adaptive lag tables; None: random
    example: Optional[Literal["nested_product", "prop42"]] = None
    seed: Int = Field(0, ge=0, le=SEED_MAX)  # seeds the target itself (random g, relu_net weights, validation set)
    corpus: Optional[str] = None  # text: a folder of text files, or "openwebtext" (needs `datasets`)
    max_bytes: Int = Field(50_000_000, ge=1)  # text: read at most this many bytes of the corpus

    _norm_input = field_validator("input", mode="before")(_kind_shorthand)
    _norm_lags = field_validator("lags", "kernels", mode="before")(_listify)
    _norm_readout = field_validator("readout", mode="before")(_kind_shorthand)

    @model_validator(mode="before")
    @classmethod
    def _apply_example(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("example") is not None:
            preset = ADAPTIVE_PRESETS.get(data["example"])
            if preset is not None:
                data = {**preset, **data}
                data.setdefault("kind", "adaptive")
        if isinstance(data, dict) and data.get("kind", "fixed") == "fixed" and "lags" not in data:
            # the default task is a valid one; other kinds keep lags [] (no change to their config hashes)
            T = data.get("seq_len", 64)
            T = T if isinstance(T, int) and not isinstance(T, bool) else 64
            data = {**data, "lags": [lag for lag in DEFAULT_FIXED_LAGS if lag < T] or [0]}
        return data

    @model_validator(mode="after")
    def _check(self) -> "TaskConfig":
        if self.example is not None and self.kind != "adaptive":
            raise FieldError("kind", self.kind, f"example {self.example!r} is an adaptive task; kind must be adaptive")
        if self.kind == "text":
            if not self.corpus:
                raise FieldError("corpus", self.corpus, "a text task needs a corpus: a folder of text files or openwebtext")
            if self.corpus != "openwebtext" and not Path(self.corpus).is_dir():
                raise FieldError("corpus", self.corpus, "not a folder; give a folder of text files or openwebtext")
            if self.output != "all":
                raise FieldError("output", self.output, "a text task predicts every next byte: output must be all")
            return self
        for spec in self.kernels:  # checked whatever the kind, so a bad spec never passes silently
            try:
                parse_kernel(spec)
            except ValueError as err:
                raise FieldError("kernels", spec, str(err)) from None
        if self.kind == "fixed":
            if not self.lags:
                raise FieldError("lags", self.lags, "a fixed task needs a non-empty list of lags")
            self._check_lags()
        elif self.kind == "kernel":
            if not self.kernels:
                raise FieldError("kernels", self.kernels, f"a kernel task needs a non-empty list of {', '.join(KERNEL_FORMS)}")
            for spec in self.kernels:
                try:
                    form, arg = parse_kernel(spec)
                except ValueError as err:
                    raise FieldError("kernels", spec, str(err)) from None
                if form == "delta" and arg >= self.seq_len:
                    raise FieldError("kernels", spec, f"delta lag must be below seq_len={self.seq_len}")
        else:
            self._check_adaptive()
        if self.readout.kind == "linear" and len(self.readout.weights) != self.memory_size():
            raise FieldError("readout.weights", self.readout.weights,
                             f"linear readout needs {self.memory_size()} weights, one per entry of z")
        return self

    def _check_lags(self) -> None:
        for lag in self.lags:
            if not 0 <= lag < self.seq_len:
                raise FieldError("lags", lag, f"each lag must be in [0, seq_len) = [0, {self.seq_len})")

    def _check_adaptive(self) -> None:
        vals = self.input.value_set()
        if vals is None:
            raise FieldError("input", self.input.kind, "an adaptive task needs discrete tokens: rademacher or discrete")
        if self.dim != 1:
            raise FieldError("dim", self.dim, "an adaptive task needs dim 1")
        if not self.lags:
            raise FieldError("lags", self.lags, "an adaptive task needs the bounds T_i of its lags")
        self._check_lags()
        if self.depth > len(self.lags):
            raise FieldError("depth", self.depth, f"depth must be at most the number of memories, {len(self.lags)}")
        if self.g is None:
            return
        if len(self.g) != len(self.lags):
            raise FieldError("g", f"{len(self.g)} tables", f"g needs one table per lag bound, {len(self.lags)}")
        import itertools

        for i, table in enumerate(self.g):
            nargs = self.g_arity(i)
            for args in itertools.product(vals, repeat=nargs):
                key = table_key(args)
                if key not in table:
                    raise FieldError(f"g.{i}", key, f"table lacks this key; it needs every tuple of {nargs} comma-separated token values")
            for key, lag in table.items():
                if not 0 <= lag <= self.lags[i]:
                    raise FieldError(f"g.{i}.{key}", lag, f"a lag of memory {i + 1} must be in [0, {self.lags[i]}]")

    def g_arity(self, i: int) -> int:
        """Number of arguments of g_{i+1}: x_t and the first min(i, K) memories."""
        return 1 + min(i, self.depth)

    def memory_size(self) -> int:
        """Length of the vector z the readout sees."""
        if self.kind == "fixed":
            return len(self.lags) * self.dim
        if self.kind == "kernel":
            return len(self.kernels) * self.dim
        return 1 + len(self.lags)  # adaptive: (x_t, x_{t-t_1}, ..., x_{t-t_M})


class ModelConfig(_Strict):
    """The Transformer family of PAPER.md section 2, and the recurrent baselines."""

    arch: Literal["transformer", "linear_rnn", "lstm"] = "transformer"
    hidden: Int = Field(16, ge=1)  # N, the state size of linear_rnn and lstm
    layers: Int = Field(1, ge=1)
    heads: Int = Field(1, ge=1)
    dim: Int = Field(64, ge=1)  # D, the residual width
    head_dim: Optional[Int] = Field(None, ge=1)  # default dim // heads
    ffn_width: Int = Field(64, ge=0)  # m; 0 = FFN-free (linear readout)
    rpe: Literal["lin", "log", "t5", "kerple_log", "alibi", "none", "learned"] = "lin"
    rpe_init: Optional[Float] = Field(None, gt=0)  # initial p for every head; None: a spread
    # positive: p_h = exp(a free parameter), as the paper requires; free: p_h itself is the parameter and may
    # turn negative (a variant, not the paper's family: the kernel then grows with the lag)
    rpe_sign: Literal["positive", "free"] = "positive"
    rpe_buckets: Int = Field(16, ge=1)  # t5: B
    rpe_max_distance: Int = Field(128, ge=1)  # t5: D; learned: number of distances
    attention: Literal["dp", "dp_free", "tmx"] = "dp"
    normalize: Bool = True  # softmax; False = normalization-free
    layer_norm: Bool = False
    scale: Bool = False  # 1/sqrt(d_k) on dot products
    ffn_precision: Bool = False  # round hidden FFN outputs (PAPER.md section 2)
    impl: Literal["fast", "reference"] = "fast"

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.head_dim is None and self.dim % self.heads != 0:
            raise FieldError("heads", self.heads, f"heads must divide dim={self.dim}, or set model.head_dim")
        if self.attention == "tmx" and self.rpe not in TMX_RPE_TYPES:
            raise FieldError("rpe", self.rpe, f"tmx attention needs rpe in {', '.join(TMX_RPE_TYPES)}")
        if self.rpe_sign == "free" and self.rpe not in SIGNED_RPE_TYPES:
            raise FieldError("rpe_sign", self.rpe_sign,
                             f"a sign-free p needs a trainable p: rpe in {', '.join(SIGNED_RPE_TYPES)}")
        if self.rpe == "t5" and self.rpe_max_distance <= self.rpe_buckets:
            raise FieldError("rpe_max_distance", self.rpe_max_distance,
                             f"t5 needs rpe_max_distance > rpe_buckets = {self.rpe_buckets}")
        return self

    @property
    def head_size(self) -> int:
        return self.head_dim if self.head_dim is not None else self.dim // self.heads


class TrainConfig(_Strict):
    """AdamW on fresh samples every step."""

    steps: Int = Field(1000, ge=1)
    batch_size: Int = Field(100, ge=1)
    lr: Float = Field(1e-3, gt=0)
    rpe_lr_scale: Float = Field(1.0, gt=0)  # lr of RPE parameters and recurrence decay rates = lr * this
    weight_decay: Float = Field(0.0, ge=0)
    betas: tuple[Float, Float] = (0.9, 0.999)
    warmup_steps: Int = Field(0, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
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

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.steps // 10)

    @property
    def checkpoint_interval(self) -> int:
        return self.checkpoint_every or self.eval_interval


# (section, field) -> the default at which a field added later leaves config hashes as they were
HASH_NEUTRAL = {("train", "blowup"): 1e6, ("model", "rpe_sign"): "positive"}


class RunConfig(_Strict):
    """One training run: task, model and training settings."""

    name: Optional[str] = None
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _lengths_fit_task(self) -> "RunConfig":
        for n in self.train.eval_lengths:
            try:
                TaskConfig.model_validate({**self.task.model_dump(), "seq_len": n})
            except ValidationError as exc:
                raise FieldError("train.eval_lengths", n, f"the task is not valid at this length: "
                                 f"{exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
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

    def config_hash(self) -> str:
        """A stable hash of the whole config (name excluded).

        Fields added after stores existed (``HASH_NEUTRAL``) count only when they differ from their
        default, so every run keeps the hash it had before they came.
        """
        payload = self.to_dict()
        payload.pop("name", None)
        for (section, key), default in HASH_NEUTRAL.items():
            if payload[section].get(key) == default:
                del payload[section][key]
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the base loader reports it
                break
            if not repeated:
                seen[key] = key_node.start_mark.line + 1
            else:
                first = seen[key]
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {first} and {key_node.start_mark.line + 1})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str):
    """YAML text to Python objects, refusing repeated keys; yaml.YAMLError otherwise."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml(path: Union[str, Path]) -> dict:
    """Read a YAML config file into a dict; ConfigError if unreadable."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {err.object[err.start]:#04x} "
                          f"at offset {err.start})") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None)
        detail = f": {problem}" if problem and "appears twice" in problem else ""
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{where}{detail}") from None
    except RecursionError:
        raise ConfigError(f"config file {str(p)!r} nests too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping with task, model, train; got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set dotted ``key=value`` overrides into a nested dict (values parsed as YAML)."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        try:
            value = parse_yaml(raw) if raw != "" else None
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value {raw!r} is not valid YAML") from None
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str):  # a bare name stands for {kind: name}
                child = {"kind": child}
            elif child is None:
                child = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {item!r}: {where} is a value, not a section")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return data


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """Allowed keys at a location, for unknown-key messages."""
    for part in loc:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            break
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return list(model.model_fields)


def validate_config(model: type[BaseModel], data: dict):
    """Validate ``data`` into ``model``; ConfigError with a one-line message otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # of a union's branches, the one that got furthest into the value says best what is wrong
        err = max(errors, key=lambda e: len(e["loc"]))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # drop the union branch tags pydantic adds to locations
        loc = tuple(p for p in loc if not (isinstance(p, str) and (p == "str" or "[" in p)))
        value, msg = err.get("input"), err["msg"]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            loc = loc + tuple(cause.field.split("."))
            value, msg = cause.value, cause.message
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        field = ".".join(str(p) for p in loc) or "config"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_field_names(model, loc[:-1]))
            raise ConfigError(f"unknown key {field}; allowed here: {allowed}{more}") from None
        shown = json.dumps(value, default=str)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise ConfigError(f"{field} = {shown}: {msg}{more}") from None
