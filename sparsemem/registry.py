"""One name, one place: every RPE type, attention kind, architecture and task family.

Each entry says what a name means and what it supports. The config schemas
take their allowed values from here, ``sparsemem list`` prints it, the models
evaluate phi from here and the theory modules ask it which types they cover.
Adding an RPE type is one entry below (its phi) plus its tests; an entry
whose ``params`` the RPE module does not know yet needs that module too.

phi is written once, as a function of the lag s (a float tensor of integer
lags) without the scale p_h; inadmissible lags are -inf. ``bias`` applies a
scale so that no gradient ever meets the infinity.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

# ---------------------------------------------------------------------------- phi, written once


def _phi_lin(s: torch.Tensor, **_) -> torch.Tensor:
    return -s


def _phi_log(s: torch.Tensor, **_) -> torch.Tensor:
    return torch.where(s >= 1, -torch.log(s.clamp(min=1)), torch.full_like(s, -math.inf))


@functools.lru_cache(maxsize=64)
def _t5_table(B: int, D: int) -> tuple[int, ...]:
    """r(n) for n = 0..D, in integers. For B <= n < D the bucket is B + k with k the largest integer such
    that B log(n/B) / log(D/B) >= k, i.e. n^B >= D^k B^(B-k): exact at the boundaries, where a
    floating-point log can land one bucket low (B = 12, D = 192, n = 96 is exactly B + 9)."""
    table = list(range(min(B, D + 1)))
    for n in range(B, D):
        k, lhs = 0, n**B
        while k + 1 < B and lhs >= D ** (k + 1) * B ** (B - k - 1):
            k += 1
        table.append(B + k)
    return tuple(table + [2 * B - 1])


def t5_bucket(s: torch.Tensor, buckets: int, max_distance: int) -> torch.Tensor:
    """The T5 bucket r(n): n below B, B + floor(B log(n/B) / log(D/B)) up to D, 2B - 1 from D on."""
    table = torch.tensor(_t5_table(buckets, max_distance), dtype=torch.float64, device=s.device)
    return table[s.to(torch.long).clamp(0, max_distance)]


def _phi_t5(s: torch.Tensor, buckets: int = 16, max_distance: int = 128, **_) -> torch.Tensor:
    return -t5_bucket(s, buckets, max_distance).to(s.dtype)


def _phi_kerple_log(s: torch.Tensor, a=1.0, **_) -> torch.Tensor:
    return -torch.log1p(a * s)


def _phi_none(s: torch.Tensor, **_) -> torch.Tensor:
    return torch.zeros_like(s)


# phi at real arguments u = w_h . x_t, for TMX attention; where the paper's phi is undefined we clamp:
# log-type at max(u, 1e-6), kerple_log at max(u, 0). lin-type needs no guard.
def _real_log(u: torch.Tensor, **_) -> torch.Tensor:
    return -torch.log(u.clamp(min=1e-6))


def _real_kerple_log(u: torch.Tensor, a=1.0, **_) -> torch.Tensor:
    return -torch.log1p(a * u.clamp(min=0))


def alibi_slopes(heads: int) -> torch.Tensor:
    """ALiBi's fixed slopes as published (Press et al. 2022), float64. For H a power of two, the geometric
    sequence p_h = 2^(-8h/H), h = 1..H. Otherwise, with P the largest power of two below H: the P slopes of
    P heads, then every other slope of 2P heads (those with odd h), up to H in all."""
    if heads & (heads - 1) == 0:
        return 2.0 ** (-8.0 * torch.arange(1, heads + 1, dtype=torch.float64) / heads)
    low = 1 << (heads.bit_length() - 1)
    return torch.cat([alibi_slopes(low), alibi_slopes(2 * low)[0::2][: heads - low]])


def bias(p: torch.Tensor, f: torch.Tensor, guard: bool = True) -> torch.Tensor:
    """p phi: the scale times phi, -inf where phi is -inf, through `where` so that no gradient meets
    the infinity. ``guard=False`` says phi is finite everywhere (static: known from the type, never
    read from the data, so fleets can batch it)."""
    if not guard:
        return p * f
    finite = torch.isfinite(f)
    return torch.where(finite, p * torch.where(finite, f, torch.zeros_like(f)), torch.full_like(f, -math.inf))


# ---------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class RPEType:
    """A relative positional encoding: bias p_h phi(s) at lag s."""

    name: str
    family: Optional[str]  # the paper's grouping: "lin", "log", or None
    formula: str  # the bias at lag s, for the docs and `sparsemem list`
    params: tuple[str, ...]  # what training moves: p (per-head scale), a (kerple), table (learned)
    phi: Optional[Callable] = None  # phi(s, **shape) over integer lags; None: no fixed shape
    phi_real: Optional[Callable] = None  # phi at real u, for TMX; None: TMX cannot use it
    fixed_p: Optional[Callable[[int], torch.Tensor]] = None  # heads -> p_h when p is not trained
    # what else covers it: fit (optimal fits), construct (explicit constructions), scaling (head counts)
    theory: frozenset = field(default_factory=frozenset)

    @property
    def signed(self) -> bool:
        """Whether p is trained, so ``model.rpe_sign = free`` may let it turn negative."""
        return "p" in self.params

    @property
    def tmx(self) -> bool:
        return self.phi_real is not None

    @property
    def table(self) -> bool:
        """Whether training moves a value per lag (learned) rather than numbers per head."""
        return "table" in self.params

    @functools.cached_property
    def inf_at_zero(self) -> bool:
        """Whether lag 0 is inadmissible (a log-type head never sees x_t)."""
        zero = torch.zeros(1, dtype=torch.float64, device="cpu")  # on the CPU even under a meta-device context
        return self.phi is not None and not bool(torch.isfinite(self.phi(zero)).all())


_ALL_THEORY = frozenset({"fit", "construct"})
RPES: dict[str, RPEType] = {
    r.name: r
    for r in (
        RPEType("lin", "lin", "-p_h s", ("p",), _phi_lin, _phi_lin, theory=_ALL_THEORY | {"scaling"}),
        RPEType(
            "log",
            "log",
            "-p_h log s (s >= 1), -inf at s = 0",
            ("p",),
            _phi_log,
            _real_log,
            theory=_ALL_THEORY | {"scaling"},
        ),
        RPEType("t5", "log", "-p_h r(s), r the T5 bucket of s (B, D)", ("p",), _phi_t5, theory=_ALL_THEORY),
        RPEType(
            "kerple_log",
            "log",
            "-p_h log(1 + a_h s)",
            ("p", "a"),
            _phi_kerple_log,
            _real_kerple_log,
            theory=_ALL_THEORY,
        ),
        RPEType(
            "alibi",
            "lin",
            "-p_h s, p_h = 2^(-8h/H) fixed",
            (),
            _phi_lin,
            _phi_lin,
            fixed_p=alibi_slopes,
            theory=frozenset({"fit"}),
        ),
        RPEType("none", None, "0", (), _phi_none, theory=frozenset({"fit"})),
        RPEType("learned", None, "b_h(min(s, max_distance - 1)), one bias per distance", ("table",)),
    )
}


def rpes(
    *,
    family: Optional[str] = None,
    theory: Optional[str] = None,
    tmx: Optional[bool] = None,
    signed: Optional[bool] = None,
) -> tuple[str, ...]:
    """Names of the RPE types with the given properties, in registry order."""
    return tuple(
        r.name
        for r in RPES.values()
        if (family is None or r.family == family)
        and (theory is None or theory in r.theory)
        and (tmx is None or r.tmx == tmx)
        and (signed is None or r.signed == signed)
    )


def phi(kind: str, s: torch.Tensor, **shape) -> torch.Tensor:
    """phi(s) of an RPE type (without p); shape: buckets, max_distance (t5), a (kerple_log)."""
    entry = RPES.get(kind)
    if entry is None or entry.phi is None:
        raise ValueError(f"rpe {kind!r} has no fixed kernel shape to fit; use one of {', '.join(rpes(theory='fit'))}")
    return entry.phi(s, **shape)


@dataclass(frozen=True)
class Entry:
    """A named kind with a one-line meaning."""

    name: str
    meaning: str


def _by_name(*entries: Entry) -> dict:
    return {e.name: e for e in entries}


ATTENTION = _by_name(
    Entry("dp", "dot product plus RPE: <W_Q x_t, W_K x_{t-s}> + p_h phi(s)"),
    Entry("dp_free", "RPE only (W_Q = W_K = 0): a causal convolution with a fixed kernel"),
    Entry("tmx", "p_h (phi(s) - phi(w_h . x_t)), O(D) attention parameters (Prop 4.3)"),
)
ARCHS = _by_name(
    Entry("transformer", "the paper's Transformer (eq. 2-4)"),
    Entry("linear_rnn", "a diagonal linear recurrence with N states (baseline)"),
    Entry("lstm", "an LSTM with N states (baseline)"),
)
TASKS = _by_name(
    Entry("fixed", "Task I: y_t = f(x_t-T_1, ..., x_t-T_M), fixed lags"),
    Entry("adaptive", "Task II: nested lags t_i = g_i(x_t, x_t-t_1, ...)"),
    Entry("kernel", "Task III: y_t = f((X * rho_1)(t), ...), memory kernels"),
    Entry("text", "next-byte prediction on a text corpus"),
)
INPUTS = ("rademacher", "gaussian", "uniform", "discrete")
READOUTS = ("sum", "product", "linear", "relu_net", "relu_spline")
KERNEL_FORMS = ("exp:BETA", "power:BETA", "delta:T", "[w_0, w_1, ...]")
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb"}  # train.log names -> the package each needs
