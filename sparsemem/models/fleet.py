"""K models of the Transformer family as one: parameters with a leading member axis.

A fleet trains K runs together (``sparsemem.training.train_fleet``). Its members
fall into squads, one per model structure; a squad is one module of the
family evaluated under ``torch.func.vmap`` over its members' stacked
parameters, so the model code is the very code a single run executes.

Within a squad members may differ in H and m: every member is padded to the
squad's largest with zeros, and a mask keeps the padded entries
at zero (their gradient is masked away). A padded head has W_V = 0 and zero
columns in W_O, and a padded FFN unit zero weights and bias, so neither
changes any output. Members whose structure differs in anything else (layers,
D, the head size, attention kind, RPE type, normalization, LayerNorm,
FFN-free or not, impl) form separate squads of the same fleet: they share the
fleet's data and loop, each squad runs as its own batched module.

Every member starts from exactly the parameters its single run starts from:
its own model is built under its own seed, then copied into the padded stack.
"""

from __future__ import annotations

import json
import re
from typing import Optional

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..config import ModelConfig, RunConfig
from . import is_memory_parameter, make_model

# ModelConfig fields a squad pads over; every other field splits squads
PADDED_FIELDS = ("heads", "head_dim", "ffn_width", "rpe_init")
_HEAD_ROWS = re.compile(r"^attn\.\d+\.(q|k|v)\.weight$")  # (H * hd, D)
_HEAD_COLS = re.compile(r"^attn\.\d+\.o\.weight$")  # (D, H * hd)
_RPE, _V, _O = "attn.0.rpe.", "attn.0.v.weight", "attn.0.o.weight"
_FC1, _FC2 = "readout.fc1.", "readout.fc2."


def fleet_supports(cfg: RunConfig) -> bool:
    """Whether a run can be a fleet member: the Transformer on a synthetic task, whole batches in the
    run's own dtype (micro-batches and autocast train alone)."""
    return (
        cfg.model.arch == "transformer"
        and cfg.task.kind != "text"
        and not cfg.train.micro_batch
        and cfg.train.autocast == "off"
    )


def squad_key(model: ModelConfig) -> str:
    """What members of one squad share: the model config less the padded fields."""
    d = model.model_dump(mode="json")
    for name in PADDED_FIELDS:
        d.pop(name)
    d["ffn_free"] = model.ffn_width == 0
    # members share a head size: padding H heads of size hd to the largest H and the largest hd would
    # cost H_max hd_max per token (64 x 64 for a grid over H at D = 64 with hd = D / H), not D
    d["head_size"] = model.head_size
    return json.dumps(d, sort_keys=True)


def _logical(name: str, t: torch.Tensor, heads: int) -> torch.Tensor:
    """A view of a parameter with its head axis split out, so padding is a prefix slice on every axis."""
    if _HEAD_ROWS.match(name):
        return t.view(heads, -1, t.shape[-1])
    if _HEAD_COLS.match(name):
        return t.view(t.shape[0], heads, -1)
    return t


class Squad:
    """Members of one model structure, stacked and padded; evaluated with vmap."""

    def __init__(self, cfgs: list[RunConfig], task, device, dtype):
        self.cfgs = cfgs
        models = [c.model for c in cfgs]
        H = max(m.heads for m in models)
        width = max(m.ffn_width for m in models)
        padded_cfg = models[0].model_copy(
            update={
                "heads": H,
                "head_dim": models[0].head_size,  # one per squad
                "ffn_width": width,
                "rpe_init": None,
            }
        )
        self.heads = H
        base = make_model(padded_cfg, task)
        names = dict(base.named_parameters())
        buffer_names = dict(base.named_buffers())
        for attn in getattr(base, "attn", []):
            attn.fused = False  # explicit softmax under vmap (see Attention.fused)
            attn.token_values = None  # alphabet_softmax's check reads the data, which vmap cannot
        self.base = base.to("meta")
        # one DP-free layer read at the last position runs as hand-batched products (_dp_free_last), the
        # rest under vmap: under vmap every per-member Linear became many tiny batched matmuls and a separate
        # bias add; measured on 2 cores at the exp-1b setting, K = 8, forward and backward took 2.4 ms by
        # hand against 3.4-4.0 ms under vmap (torch.compile of either gained nothing)
        self.hand_batched = base._time_first() and base.attn[0].kind == "dp_free"
        stacks = {n: [] for n in names}
        masks = {n: [] for n in names}
        bufs = {n: [] for n in buffer_names}
        self.num_params = []
        self.templates = []  # each member's own parameter shapes
        for cfg in cfgs:
            torch.manual_seed(cfg.train.seed)  # exactly what a single run does
            single = make_model(cfg.model, task).to(device=device, dtype=dtype)
            self.num_params.append(single.num_params())
            state = single.state_dict()
            self.templates.append({n: torch.empty_like(v, device="meta") for n, v in state.items()})
            for table, out in ((names, stacks), (buffer_names, bufs)):
                for name, ref in table.items():
                    padded, mask = self._pad(name, state[name], ref.shape, cfg.model.heads, device, dtype)
                    out[name].append(padded)
                    if out is stacks:
                        masks[name].append(mask)
        # stacked (K_s, ...) tensors, until FleetModel moves them into its one flat parameter
        self.params = {n: torch.stack(v) for n, v in stacks.items()}
        self.buffers = {n: torch.stack(v) for n, v in bufs.items()}
        # masks only where some member is padded: 1 on real entries, 0 on padding
        self.masks = {n: torch.stack(v) for n, v in masks.items() if not all(bool(m.all()) for m in v)}
        self.shapes = {n: p.shape for n, p in self.params.items()}
        self.size = sum(p.numel() for p in self.params.values())

    def views(self, parts) -> dict:
        """The squad's stacked parameters from its chunks of the fleet's flat tensor (``FleetModel.split``)."""
        return {name: part.view(shape) for (name, shape), part in zip(self.shapes.items(), parts)}

    def _pad(self, name: str, value: torch.Tensor, shape, heads: int, device, dtype):
        padded = torch.zeros(shape, device=device, dtype=value.dtype if not value.is_floating_point() else dtype)
        mask = torch.zeros(shape, device=device, dtype=torch.bool)
        src = _logical(name, value, heads)
        region = tuple(slice(0, n) for n in src.shape)
        _logical(name, padded, self.heads)[region] = src
        _logical(name, mask, self.heads)[region] = True
        return padded, mask

    def unpad(self, i: int, stacked: dict) -> dict:
        """Member i's entries of stacked tensors (parameters, buffers or gradients), at its own shapes."""
        heads = self.cfgs[i].model.heads
        out = {}
        for name, ref in self.templates[i].items():
            if name not in stacked:
                continue
            view = _logical(name, stacked[name][i].detach(), self.heads)
            small = _logical(name, ref, heads)
            out[name] = view[tuple(slice(0, n) for n in small.shape)].reshape(ref.shape).clone()
        return out

    def forward(self, params: dict, x: torch.Tensor, batched: bool) -> torch.Tensor:
        """Predictions of every member: x (B, T, d) shared, or (K, B, T, d) if ``batched``."""
        if self.hand_batched:
            return self._dp_free_last(params, x, batched)

        def one(p, buffers, xx):
            return functional_call(self.base, (p, buffers), (xx,))

        return vmap(one, in_dims=(0, 0, 0 if batched else None))(params, self.buffers, x)

    def _dp_free_last(self, params: dict, x: torch.Tensor, batched: bool) -> torch.Tensor:
        """``Transformer.stream`` and the readout of one DP-free layer read at the last position
        (``Attention.last_from_tokens``), written over the member axis: every product one batched matmul
        with the bias folded in. Same numbers as the vmapped model (its reference) up to round-off.

        u_h = sum_s w_h(s) x_{T-1-s} for every member in one product (the weights do not depend on the
        sample); then W_O^h W_V^h W_E per head as one (H d, D) map, so the attention output is one
        (B, H d) @ (H d, D) product per member, plus the constant term W_O^h W_V^h b_E sum_s w_h(s)."""
        attn = self.base.attn[0]
        K, H, hd = len(self.cfgs), self.heads, attn.head_dim
        B, T, d = x.shape[-3:]
        stored = {n[len(_RPE) :]: v for n, v in {**params, **self.buffers}.items() if n.startswith(_RPE)}
        bias = attn.rpe.bias_of(attn.rpe.scales(stored), T, x.device, x.dtype, reverse=True)
        w = attn.weights_of(bias.expand(K, H, T))  # (K, H, T) by key position
        if batched:  # member k reads its own stream's tokens x[k]: (K, B, T, d)
            u = torch.einsum("kht,kbtd->kbhd", w, x)
        elif d == 1:  # one (B, T) @ (T, K H) product
            u = (x.view(B, T) @ w.reshape(K * H, T).T).view(B, K, H).transpose(0, 1)
        else:
            u = torch.einsum("kht,btd->kbhd", w, x)
        u = u.reshape(K, B, H * d)
        WE, bE = params["embed.weight"], params["embed.bias"]  # (K, D, d), (K, D)
        D = WE.shape[1]
        wo = params[_O].view(K, D, H, hd, 1)
        # W_V^h W_E and W_V^h b_E for every head in one product per member: (K, H, hd, d + 1)
        vw = (params[_V] @ torch.cat([WE, bE[..., None]], -1)).view(K, 1, H, hd, d + 1)
        maps = (wo * vw[..., :d]).sum(3).permute(0, 2, 3, 1).reshape(K, H * d, D)  # W_O^h W_V^h W_E
        sigma = None if attn.normalize and not attn._dead_last(T) else w.sum(-1)  # softmax weights sum to 1
        vb = vw[..., d] if sigma is None else vw[..., d] * sigma.view(K, 1, H, 1)  # (K, 1, H, hd)
        const = (wo[..., 0] * vb).sum((2, 3))  # W_O^h W_V^h b_E sum_s w_h(s): (K, D)
        x_last = x[..., -1, :]  # (B, d) or (K, B, d)
        h = torch.einsum("bd,ked->kbe", x_last, WE) if not batched else x_last @ WE.transpose(1, 2)
        h = torch.baddbmm(h + (bE + const)[:, None], u, maps)  # the stream: (K, B, D)
        if _FC1 + "weight" in params:
            return _linear(params, _FC2, torch.relu(_linear(params, _FC1, h)))[..., 0]
        return _linear(params, "readout.", h)[..., 0]


def _linear(params: dict, prefix: str, h: torch.Tensor) -> torch.Tensor:
    """Every member's nn.Linear ``prefix`` at once, the bias folded in: h (K, B, in) -> (K, B, out)."""
    return torch.baddbmm(params[prefix + "bias"][:, None], h, params[prefix + "weight"].transpose(1, 2))


class FleetModel:
    """Every member of a fleet, in the order given, grouped into squads."""

    def __init__(self, cfgs: list[RunConfig], task, device, dtype):
        keys = [squad_key(c.model) for c in cfgs]
        order = list(dict.fromkeys(keys))
        self.slots: list[tuple[int, int]] = [None] * len(cfgs)  # member -> (squad, index in squad)
        self.squads: list[Squad] = []
        self.members: list[list[int]] = []  # squad -> member indices
        for s, key in enumerate(order):
            idx = [i for i, k in enumerate(keys) if k == key]
            self.members.append(idx)
            self.squads.append(Squad([cfgs[i] for i in idx], task, device, dtype))
            for j, i in enumerate(idx):
                self.slots[i] = (s, j)
        self.size = len(cfgs)
        # every parameter of every member in one flat tensor: the optimizer updates it in a few ops, and
        # one split (whose gradient is one concatenation) hands each squad its stacked parameters
        stacked = [sq.params for sq in self.squads]
        for sq in self.squads:
            sq.params = None
        ref = next(iter(stacked[0].values()))
        self.sizes = [p.numel() for params in stacked for p in params.values()]
        total = sum(self.sizes)
        flat = torch.cat([p.reshape(-1) for params in stacked for p in params.values()])
        member, memory, decay, mask = (
            torch.empty(total, dtype=torch.long),
            torch.zeros(total, dtype=torch.bool),
            torch.zeros(total, dtype=torch.bool),
            torch.ones(total, dtype=torch.bool),
        )
        off = 0
        for sq, idx, params in zip(self.squads, self.members, stacked):
            for name, p in params.items():
                n = p.numel()
                member[off : off + n] = torch.tensor(idx)[:, None].expand(p.shape[0], n // p.shape[0]).reshape(-1)
                memory[off : off + n] = is_memory_parameter(name)
                decay[off : off + n] = not is_memory_parameter(name) and p.dim() - 1 >= 2
                if name in sq.masks:
                    mask[off : off + n] = sq.masks[name].reshape(-1).cpu()
                off += n
        self.flat = flat.detach().to(ref.device).requires_grad_()
        dev = self.flat.device
        self.member_of = member.to(dev)  # (N,) which member each entry belongs to
        self.is_memory = memory.to(dev)  # RPE parameters: lr * rpe_lr_scale, no decay
        self.is_decay = decay.to(dev)  # weight matrices: decayed
        self.mask = mask.to(dev)  # False on padding

    def split(self, flat: Optional[torch.Tensor] = None) -> list[dict]:
        """Per squad, its stacked parameters (name -> (K_s, ...)) as pieces of ``flat`` (default the fleet's)."""
        parts = (self.flat if flat is None else flat).split(self.sizes)
        out, i = [], 0
        for sq in self.squads:
            n = len(sq.shapes)
            out.append(sq.views(parts[i : i + n]))
            i += n
        return out

    def __call__(self, x: torch.Tensor, stream: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(K, B, ...) predictions. ``x`` is shared (B, T, d) if ``stream`` is None, else (S, B, T, d)
        with member i reading x[stream[i]]."""
        outs = [None] * self.size
        for squad, idx, params in zip(self.squads, self.members, self.split()):
            if stream is None:
                pred = squad.forward(params, x, batched=False)
            else:
                pred = squad.forward(params, x[stream[idx]], batched=True)
            for j, i in enumerate(idx):
                outs[i] = pred[j]
        if len(self.squads) == 1:
            return pred
        return torch.stack(outs)

    def member_state(self, i: int) -> dict:
        """Member i's parameters and buffers, unpadded: the state dict of its single model."""
        s, j = self.slots[i]
        return self.squads[s].unpad(j, {**self.split()[s], **self.squads[s].buffers})

    def member_grads(self, i: int) -> dict:
        """Member i's gradients at its own shapes (after a backward pass)."""
        s, j = self.slots[i]
        squad = self.squads[s]
        return squad.unpad(j, self.split(self.flat.grad)[s])

    def member_model(self, i: int, task) -> nn.Module:
        """Member i as an ordinary single model (its own config), on the fleet's device and dtype."""
        s, j = self.slots[i]
        model = make_model(self.squads[s].cfgs[j].model, task).to(device=self.flat.device, dtype=self.flat.dtype)
        model.load_state_dict(self.member_state(i))
        return model

    def num_params(self, i: int) -> int:
        s, j = self.slots[i]
        return self.squads[s].num_params[j]

    def state_dict(self) -> dict:
        return {"flat": self.flat.detach(), "buffers": [dict(sq.buffers) for sq in self.squads]}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.flat.copy_(state["flat"])
            for sq, buffers in zip(self.squads, state["buffers"]):
                for n, b in sq.buffers.items():
                    b.copy_(buffers[n])
