"""The theory verbs as validated specs: fit, memory, scaling, construct.

Each spec checks its options when it is built (one-line :class:`ConfigError`,
naming the option), ``run()`` returns the verb's table, and ``text(table)``
formats it. The command line builds a spec from its options and prints; a
notebook builds the same spec from keywords::

    from sparsemem.theory.specs import FitSpec
    table = FitSpec(kernel="power:1.5", rpe=["log", "lin"], heads=[1, 2, 4]).run()
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..config import ConfigError, FieldError, Float, Int, Strict, validate_config
from ..registry import rpes
from ..tasks.kernel import check_kernel


def _ints(value: Any) -> Any:
    """ "1,2,4" (the command line's form) or a list: positive integers."""
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise ValueError("give comma-separated positive integers") from None
    if isinstance(value, list) and (not value or any(not isinstance(v, int) or v < 1 for v in value)):
        raise ValueError("give comma-separated positive integers")
    return value


def default_text(spec: type[TheorySpec], name: str) -> str:
    """A field's default as the command line writes it (lists comma-joined)."""
    value = spec.model_fields[name].get_default(call_default_factory=True)
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _names(value: Any) -> Any:
    return [v for v in value.split(",") if v] if isinstance(value, str) else value


def _check_among(field: str, names: list[str], allowed: tuple[str, ...]) -> None:
    for name in names:
        if name not in allowed:
            raise FieldError(field, name, f"must be among {', '.join(allowed)}")


class TheorySpec(Strict):
    """A theory verb's options."""

    @classmethod
    def about(cls) -> str:
        """The verb's description (its docstring as one paragraph), for --help."""
        return " ".join((cls.__doc__ or "").split())

    @classmethod
    def from_options(cls, **options):
        """Build from command-line options; errors name the option (``--seq-len``), not the field."""
        try:
            return validate_config(cls, {k: v for k, v in options.items() if v is not None})
        except ConfigError as err:
            msg = str(err)
            for name in cls.model_fields:
                if msg.startswith(f"{name} = ") or msg.startswith(f"{name}."):
                    msg = "--" + name.replace("_", "-") + msg[len(name) :]
                    break
            raise ConfigError(msg) from None


class FitSpec(TheorySpec):
    """The smallest MSE (l2) and l1 error with which H DP-free heads of an RPE type, read linearly,
    represent a kernel: global greedy search over the head scales p on a grid, then joint refinement,
    weights by least squares. For i.i.d. unit-variance inputs l2 is the MSE floor of a 1-layer FFN-free
    model on the linear target with that kernel."""

    kernel: str = Field(description="exp:BETA, power:BETA, delta:T, or a sum of deltas deltas:T1+T2+...")
    rpe: list[str] = Field(default_factory=lambda: ["lin", "log"], description="comma-separated RPE types")
    heads: list[Int] = Field(default_factory=lambda: [1, 2, 4, 8], description="comma-separated head counts")
    seq_len: Int = Field(1000, ge=2, description="number of lags S")

    _lists = field_validator("heads", mode="before")(_ints)
    _rpes = field_validator("rpe", mode="before")(_names)

    @model_validator(mode="after")
    def _check(self) -> "FitSpec":
        if self.kernel.startswith("deltas:"):
            lags = _ints(self.kernel[len("deltas:") :].replace("+", ","))
            if max(lags) >= self.seq_len:
                raise FieldError("kernel", self.kernel, f"every lag must be below --seq-len {self.seq_len}")
        else:
            form, arg = check_kernel(self.kernel, "kernel")
            if form == "delta" and arg >= self.seq_len:
                raise FieldError("kernel", self.kernel, f"the lag must be below --seq-len {self.seq_len}")
        _check_among("rpe", self.rpe, rpes(theory="fit"))
        return self

    def run(self) -> dict:
        from .fit import fit_table

        return fit_table(self.kernel, self.rpe, self.heads, self.seq_len)

    def json(self, table: dict) -> dict:
        return {
            r: {H: {"l2": f.l2, "l1": f.l1, "p": f.p, "c": f.c, "c0": f.c0} for H, f in fits.items()}
            for r, fits in table.items()
        }

    def text(self, table: dict) -> str:
        lines = [
            f"best fit of {self.kernel} over lags 0..{self.seq_len - 1} by H DP-free heads (l2 = MSE floor)",
            "H".rjust(5) + "".join(f"{r + ' l2':>14}{r + ' l1':>14}" for r in self.rpe),
        ]
        for H in self.heads:
            lines.append(f"{H:5d}" + "".join(f"{table[r][H].l2:14.3e}{table[r][H].l1:14.3e}" for r in self.rpe))
        return "\n".join(lines)

    def plot(self, table: dict, path: str) -> None:
        from .fit import plot_fits

        plot_fits(table, self.kernel, path)


class MemorySpec(TheorySpec):
    """For each kernel and sequence length, the fewest states N of a diagonal linear recurrence (a sum of
    N exponentials: the span of N lin-RPE heads) and the fewest log-RPE heads whose optimal fit reaches
    the target relative MSE."""

    kernels: list[str] = Field(
        default_factory=lambda: ["power:0.5", "power:1.5", "exp:0.5"], description="comma-separated kernels"
    )
    lengths: list[Int] = Field(
        default_factory=lambda: [64, 128, 256, 512, 1024], description="comma-separated sequence lengths"
    )
    target: Float = Field(1e-3, gt=0, lt=1, description="relative MSE to reach")
    max_heads: Int = Field(64, ge=1, description="largest N or H tried")

    _lists = field_validator("lengths", mode="before")(_ints)
    _kernels = field_validator("kernels", mode="before")(_names)

    @model_validator(mode="after")
    def _check(self) -> "MemorySpec":
        for k in self.kernels:
            check_kernel(k)
        if min(self.lengths) < 2:
            raise FieldError("lengths", self.lengths, "every length must be at least 2")
        return self

    def run(self) -> dict:
        from .memory import memory_table

        return memory_table(self.kernels, self.lengths, self.target, self.max_heads)

    def json(self, table: dict) -> dict:
        return table

    def text(self, table: dict) -> str:
        lines = [
            f"smallest N (linear recurrence = lin heads) and log H with relative MSE <= {self.target:g} "
            f"(optimal fits; '-' means more than {self.max_heads})",
            f"{'kernel':>12} {'':>22}" + "".join(f"{S:>7}" for S in self.lengths),
        ]
        for kernel, rows in table.items():
            for label, pts in rows.items():
                lines.append(
                    f"{kernel:>12} {label:>22}" + "".join(f"{pts[S] if pts[S] else '-':>7}" for S in self.lengths)
                )
        return "\n".join(lines)

    def plot(self, table: dict, path: str) -> None:
        from .memory import plot_memory

        plot_memory(table, self.target, self.max_heads, path)


class ScalingSpec(TheorySpec):
    """For the delta kernel at each lag T: H = T DP-free heads with exponents p_h = a h (the theorem's
    substitution) and the residual reach l1 error <= eps at the smallest scale a found; prints a and
    log10 of the head weights, and fits their growth in T. --check T1,... bounds from below, in exact
    arithmetic (mpmath), the l1 error of T - 1 such heads at six scales. With --rate-heads N, also the
    optimal l2 error of the Thm 5.1 kernels with 1..N heads and the fitted slope in log H."""

    lags: list[Int] = Field(
        default_factory=lambda: [8, 16, 32, 64, 128, 256, 512, 1024], description="comma-separated lags T"
    )
    rpe: list[str] = Field(default_factory=lambda: ["lin", "log"], description="lin, log or both")
    eps: list[Float] = Field(default_factory=lambda: [0.1, 0.01], description="comma-separated l1 targets")
    check: list[Int] = Field(
        default_factory=lambda: [4, 8], description="lags (2..16) for the exact T - 1 check; '' for none"
    )
    rate_heads: Int = Field(8, ge=0, description="Thm 5.1 rates with 1..N heads, 0: skip")

    _lists = field_validator("lags", mode="before")(_ints)

    @field_validator("check", mode="before")
    @classmethod
    def _check_lags(cls, value: Any) -> Any:
        return [] if value == "" else _ints(value)

    _rpes = field_validator("rpe", mode="before")(_names)

    @field_validator("eps", mode="before")
    @classmethod
    def _eps(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = [float(e) for e in value.split(",") if e]
            except ValueError:
                raise ValueError("must be comma-separated numbers in (0, 1)") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> "ScalingSpec":
        if min(self.lags) < 2:
            raise FieldError("lags", self.lags, "every lag must be at least 2")
        _check_among("rpe", self.rpe, rpes(theory="scaling"))
        if not self.eps or not all(0 < e < 1 for e in self.eps):
            raise FieldError("eps", self.eps, "every eps must be in (0, 1)")
        if self.check and (min(self.check) < 2 or max(self.check) > 16):
            raise FieldError("check", self.check, "lags from 2 to 16 (exact arithmetic grows fast)")
        return self

    def run(self) -> dict:
        from .scaling import THM51_KERNELS, exact_fewer, rates, scaling_table

        table = scaling_table(self.lags, self.rpe, self.eps)
        table["checks"] = [exact_fewer(T, r, min(self.eps)) for T in self.check for r in self.rpe]
        table["rates"] = rates(list(THM51_KERNELS), self.rpe, self.rate_heads, 1000) if self.rate_heads else None
        return table

    def json(self, table: dict) -> dict:
        return {
            "rows": {r: {f"{e:g}": v for e, v in by.items()} for r, by in table["rows"].items()},
            "fits": table["fits"],
            "checks": table["checks"],
            "rates": table["rates"],
        }

    def text(self, table: dict) -> str:
        lines = [
            "delta memory at lag T, the H = T construction (exponents p_h = a h, lags 0..4T): "
            "scale a and log10 of the head weights",
            f"{'T':>6}" + "".join(f"{f'{r} l1<={e:g}':>26}" for r in self.rpe for e in self.eps),
        ]
        for i, T in enumerate(self.lags):
            cells = [table["rows"][r][e][i] for r in self.rpe for e in self.eps]
            cell = ["H={} a={:.3g} w=1e{:.0f}".format(c["heads"], c["a"], c["log10_weight"]) for c in cells]
            lines.append(f"{T:6d}" + "".join(f"{x:>26}" for x in cell))
        for name, f in table["fits"].items():
            lines.append(
                f"growth {name}: heads ~ T^{f['heads']['power']['slope']:.2f}, "
                f"weight digits ~ T^{f['log10_weight']['power']['slope']:.2f}"
            )
        for c in table["checks"]:
            lines.append(f"check T = {c['T']} {c['rpe']}: {c['heads']} grid heads leave l1 >= {c['l1_at_least']:.3f}")
        for kernel, by in (table["rates"] or {}).items():
            for r, v in by.items():
                slope = f"slope {v['fit']['power']['slope']:.2f}" if v["fit"] else "exact at H = 1"
                lines.append(f"Thm 5.1 {kernel:>14} {r}: l2 " + " ".join(f"{e:.1e}" for e in v["l2"]) + f"  ({slope})")
        return "\n".join(lines)

    def plot(self, table: dict, path: str) -> None:
        from .scaling import plot_scaling

        plot_scaling(table, path, table["rates"])


class ConstructSpec(TheorySpec):
    """Load the explicit construction for a fixed (Thm 3.1) or kernel (Thm 5.1) task into an ordinary
    1-layer DP-free model: each memory's kernel fitted by H heads of model.rpe, a readout fitted to f
    (linear, or random ReLU features of width --width with a least-squares output layer); for an adaptive
    task over discrete tokens the DP construction of Prop 4.2 / Thm 4.1 (depth 0, e.g.
    task.example=prop42) or Thm 4.4 (depth K: one layer per nested memory, e.g.
    task.example=nested_product) in a normalization-free model, H lin exponentials per lag (or, with
    model.rpe=learned, one exact head per lag), the FFN between layers snapping each memory onto the
    token grid where it is wide enough. Then score it on the validation set."""

    heads: Int = Field(
        ge=1,
        description="heads per memory (adaptive: lin exponentials per lag; model.rpe=learned: one exact head "
        "per lag, whatever H)",
    )
    width: Int = Field(0, ge=0, description="readout width m, 0 = linear")
    attention: Literal["dp", "tmx"] = Field(
        "dp", description="adaptive tasks: gates by the dot product (dp) or by TMX heads (Prop 4.3)"
    )

    def run(self, cfg) -> tuple[Any, dict]:
        """(model, info) for a RunConfig: Thm 4.1 / 4.4 gates for an adaptive task, Thm 3.1 / 5.1 otherwise."""
        from .adaptive import construct_adaptive
        from .construct import construct

        if cfg.task.kind == "adaptive":
            return construct_adaptive(cfg, self.heads, self.width, attention=self.attention)
        if self.attention != "dp":
            raise ConfigError(
                f"--attention = {self.attention!r}: tmx is built for adaptive tasks; fixed and kernel "
                "tasks use DP-free heads"
            )
        return construct(cfg, self.heads, self.width)

    def text(self, cfg, info: dict, out: Optional[str] = None) -> str:
        adaptive = cfg.task.kind == "adaptive"
        what = (
            f"{self.attention.upper()} gates, {info['layers']} layer(s), heads per layer "
            f"{', '.join(map(str, info['heads_per_layer']))}, {info['rpe']} RPE"
            + (", memories snapped onto the token grid" if info["snapped"] else "")
            if adaptive
            else f"{self.heads} {cfg.model.rpe} heads per memory, readout "
            f"{'linear' if self.width == 0 else f'width {self.width}'}"
        )
        errs = (
            f"delta fit l1 per lag {', '.join(f'{l}: {v:.3g}' for l, v in info['kernel_l1'].items())}"
            if adaptive
            else f"kernel fit l2 per memory {', '.join(f'{v:.3g}' for v in info['kernel_l2'])}"
        )
        return (
            f"construction: {cfg.task.kind} task, {what}: validation MSE {info['val_loss']:.4g} "
            f"(relative {info['val_rel']:.3g}); {errs}" + (f" -> {out}" if out else "")
        )
