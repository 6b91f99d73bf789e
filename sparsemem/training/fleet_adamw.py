"""AdamW for a fleet: one flat parameter, a learning rate, betas, decay and clipping per member."""

from __future__ import annotations

import math

import torch

from ..config import RunConfig
from .basics import lr_factor


class FleetAdamW:
    """AdamW over a fleet's flat parameter with a learning rate, betas, decay and clipping per member.

    The update is torch's AdamW, member by member: decay p *= 1 - lr wd (weight
    matrices only), then the bias-corrected Adam step; RPE parameters at
    lr * rpe_lr_scale. Frozen (diverged) members and padded entries get no
    update: their gradients are replaced by zeros and their learning rate is 0.
    """

    def __init__(self, fleet, cfgs: list[RunConfig], eps: float = 1e-8):
        self.fleet, self.cfgs, self.eps = fleet, cfgs, eps
        flat = fleet.flat
        col = lambda vals: torch.tensor(vals, device=flat.device, dtype=flat.dtype)  # noqa: E731
        at = fleet.member_of
        self.lr = col([c.train.lr for c in cfgs])
        self.clip = col([c.train.grad_clip for c in cfgs])
        self.beta1 = col([c.train.betas[0] for c in cfgs])
        self.beta2 = col([c.train.betas[1] for c in cfgs])
        # per entry of the flat parameter
        self.lr_scale = torch.where(fleet.is_memory, col([c.train.rpe_lr_scale for c in cfgs])[at], 1.0)
        self.wd = col([c.train.weight_decay for c in cfgs])[at] * fleet.is_decay
        self.one_minus_beta1 = 1 - self.beta1[at]
        self.beta2_at = self.beta2[at]
        self.one_minus_beta2 = 1 - self.beta2_at
        self.decays = any(c.train.weight_decay > 0 for c in cfgs)
        self.same_betas = len({tuple(c.train.betas) for c in cfgs}) == 1
        self.clips = any(c.train.grad_clip > 0 for c in cfgs)
        self.step_count = 0
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        # scratch space: the update works in place, with no temporaries the size of the fleet at each step
        self.buf = [torch.empty_like(flat) for _ in range(3)]
        self._frozen, self._alive_seen, self._any_frozen, self._rate = None, None, True, None
        # the usual grid: one schedule, one pair of betas, no decay, no clipping; then the per-entry step size
        # is a constant times one scalar a step, and an update takes 7 passes over the fleet instead of 11
        self.plain = (
            self.same_betas
            and not self.decays
            and not self.clips
            and len({(c.train.warmup_steps, c.train.schedule, c.train.min_lr_ratio, c.train.steps) for c in cfgs}) == 1
        )

    def factors(self, step: int) -> torch.Tensor:
        """Per-member lr multipliers for the update of loop step `step` (LambdaLR: lr_factor(step - 1))."""
        return torch.tensor(
            [lr_factor(step - 1, c.train) for c in self.cfgs], device=self.lr.device, dtype=self.lr.dtype
        )

    @torch.no_grad()
    def step(self, step: int, alive: torch.Tensor) -> None:
        """One update of every alive member; ``alive`` (K,) bool."""
        self.step_count += 1
        n = self.step_count
        p, at = self.fleet.flat, self.fleet.member_of
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        g = p.grad
        key = tuple(alive.tolist())
        if key != self._alive_seen:  # entries that get no update: padding and frozen members
            self._frozen, self._alive_seen = ~(alive[at] & self.fleet.mask), key
            self._any_frozen = bool(self._frozen.any())
            self._rate = torch.where(self._frozen, 0.0, self.lr[at] * self.lr_scale)  # plain: lr of each entry
        if self._any_frozen:  # a frozen member's gradient may be NaN: it must not reach its moments
            g.masked_fill_(self._frozen, 0.0)
        a, b, c = self.buf
        if self.plain:
            # torch's AdamW, p -= lr / bc1 * m / (sqrt(v) / bc2 + eps), with numerator and denominator times bc2
            b1, b2 = self.cfgs[0].train.betas
            self.exp_avg.lerp_(g, 1 - b1)
            self.exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
            bc2 = math.sqrt(1 - b2**n)
            torch.sqrt(self.exp_avg_sq, out=c).add_(self.eps * bc2)
            torch.mul(self.exp_avg, self._rate, out=a)
            p.addcdiv_(a, c, value=-lr_factor(step - 1, self.cfgs[0].train) * bc2 / (1 - b1**n))
            return
        if self.clips:  # per-member gradient-norm clipping, as clip_grad_norm_
            torch.mul(g, g, out=a)
            norm = torch.zeros_like(self.lr).index_add_(0, at, a).sqrt()
            coef = torch.where(self.clip > 0, (self.clip / (norm + 1e-6)).clamp(max=1.0), torch.ones_like(norm))
            torch.index_select(coef, 0, at, out=a)
            g.mul_(a)
        lr = self.lr * self.factors(step) * alive.to(self.lr.dtype)  # (K,)
        if self.decays:  # decoupled weight decay: p *= 1 - lr wd
            torch.index_select(lr, 0, at, out=a)
            a.mul_(self.lr_scale).mul_(self.wd)
            p.addcmul_(p, a, value=-1.0)
        if self.same_betas:  # the usual case: scalars, no per-entry betas
            b1, b2 = self.cfgs[0].train.betas
            self.exp_avg.lerp_(g, 1 - b1)
            self.exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        else:
            self.exp_avg.lerp_(g, self.one_minus_beta1)
            torch.mul(g, self.one_minus_beta2, out=b)
            self.exp_avg_sq.mul_(self.beta2_at).addcmul_(g, b)
        torch.sqrt(self.exp_avg_sq, out=c)
        bc2 = (1 - self.beta2**n).sqrt()
        if self.same_betas:  # the usual case: one bias correction for all, no gather
            c.div_(bc2[0])
        else:
            torch.index_select(bc2, 0, at, out=b)
            c.div_(b)
        c.add_(self.eps)  # the denominator
        torch.index_select(lr / (1 - self.beta1**n), 0, at, out=a)
        a.mul_(self.lr_scale).mul_(self.exp_avg)  # step size times the first moment
        p.addcdiv_(a, c, value=-1.0)

    def current_lr(self, step: int) -> list[float]:
        """Each member's learning rate of its weight group after `step` updates, as LambdaLR reports it."""
        return [c.train.lr * lr_factor(step, c.train) for c in self.cfgs]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
