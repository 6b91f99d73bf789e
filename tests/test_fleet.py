"""Fleets: K runs as one batched model give each member its single run's numbers."""

import json

import pytest
import torch
from conftest import MODEL_COMBOS, RPE_TYPES

import sparsemem as sm
from sparsemem.models.fleet import FleetModel, squad_key
from sparsemem.sweep.plan import plan_jobs, step_elements
from sparsemem.training import DATA_SEED_OFFSET, FleetAdamW, lr_factor, train_fleet

SMALL = [
    "task.kind=fixed",
    "task.lags=[2,5]",
    "task.seq_len=16",
    "task.readout=relu_net",
    "model.dim=8",
    "model.ffn_width=8",
    "model.heads=2",
    "train.batch_size=8",
    "train.val_samples=64",
]


def cfg_of(*overrides):
    """SMALL's fixed task under the overrides; one that names another task family drops its lags."""
    other = any(o.startswith("task.kind=") and o != "task.kind=fixed" for o in overrides)
    base = [o for o in SMALL if not (other and o.startswith(("task.kind=", "task.lags=")))]
    return sm.RunConfig.from_dict({}, [*base, *overrides])


def dtype_of(cfg):
    return getattr(torch, cfg.train.dtype)


def single_step0(cfg):
    """A single run's step-0 loss and gradients, built exactly as train() builds them."""
    task = sm.make_task(cfg.task)
    torch.manual_seed(cfg.train.seed)
    model = sm.make_model(cfg.model, task).to(dtype_of(cfg))
    gen = torch.Generator().manual_seed(cfg.train.seed + DATA_SEED_OFFSET)
    x, y = task.sample(cfg.train.batch_size, gen, dtype_of(cfg))
    loss = task.loss(model(x), y)
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters()}


def fleet_step0(cfgs):
    task = sm.make_task(cfgs[0].task)
    fleet = FleetModel(cfgs, task, torch.device("cpu"), dtype_of(cfgs[0]))
    seeds = sorted({c.train.seed for c in cfgs})
    samples = [
        task.sample(cfgs[0].train.batch_size, torch.Generator().manual_seed(s + DATA_SEED_OFFSET), dtype_of(cfgs[0]))
        for s in seeds
    ]
    stream = torch.tensor([seeds.index(c.train.seed) for c in cfgs])
    x, y = torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])[stream]
    losses = torch.func.vmap(task.loss)(fleet(x, stream), y)
    losses.sum().backward()
    return losses.tolist(), [fleet.member_grads(i) for i in range(len(cfgs))]


def assert_close(a, b, tol, what):
    scale = max(1.0, b.abs().max().item())
    err = (a - b).abs().max().item()
    assert err <= tol * scale, f"{what}: {err:.2e}"


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("layers,output", [(1, "last"), (2, "all")])
@pytest.mark.parametrize("rpe,att,norm", MODEL_COMBOS)
def test_step0_loss_and_gradients_match_single_runs(rpe, att, norm, layers, output, padded):
    """Every family a fleet supports: members give their single runs' loss and every gradient at step 0.

    Members of one size (two seeds, two learning rates): within 1e-6 in float32. Members padded to the
    largest H and m: padding adds zeros to sums, which only reorders round-off, and a two-layer
    normalization-free model amplifies float32 round-off past 1e-6; so padded fleets are checked in
    float64, within 1e-10.
    """
    extra = [
        f"model.rpe={rpe}",
        f"model.attention={att}",
        f"model.normalize={str(norm).lower()}",
        f"model.layers={layers}",
        f"task.output={output}",
        "model.rpe_buckets=3",
        "model.rpe_max_distance=9",
        "model.head_dim=2",
    ]
    if padded:
        extra.append("train.dtype=float64")
        sizes = [[], ["model.heads=4", "model.ffn_width=12"], ["model.heads=1", "model.ffn_width=4"]]
    else:
        sizes = [[], [], ["train.lr=0.01"]]
    cfgs = [cfg_of(*extra, *size, f"train.seed={seed}") for size, seed in zip(sizes, (0, 1, 0))]
    tol = 1e-10 if padded else 1e-6
    losses, grads = fleet_step0(cfgs)
    for cfg, loss, g in zip(cfgs, losses, grads):
        ref_loss, ref_grads = single_step0(cfg)
        assert loss == pytest.approx(ref_loss, rel=tol, abs=tol)
        assert set(g) == set(ref_grads)
        for name, v in g.items():  # a parameter the loss does not reach (tmx's w under softmax) gets zeros
            assert_close(v, ref_grads[name] if ref_grads[name] is not None else torch.zeros_like(v), tol, name)


@pytest.mark.parametrize("streams", ["one", "per member"])
@pytest.mark.parametrize("ffn,dim", [(8, 1), (0, 1), (8, 3)])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("rpe", RPE_TYPES)
def test_hand_batched_dp_free_path_matches_vmap(rpe, norm, ffn, dim, streams):
    """One DP-free layer read at the last position runs as hand-batched products; its reference is the same
    squad under vmap: outputs and every gradient agree in float64 (members padded, one data stream or
    one per member)."""
    extra = [
        f"model.rpe={rpe}",
        "model.attention=dp_free",
        f"model.normalize={str(norm).lower()}",
        f"model.ffn_width={ffn}",
        f"task.dim={dim}",
        "model.rpe_buckets=3",
        "model.rpe_max_distance=9",
        "model.head_dim=2",
        "train.dtype=float64",
    ]
    sizes = [[], ["model.heads=4"] + (["model.ffn_width=12"] if ffn else []), ["model.heads=1"]]
    cfgs = [cfg_of(*extra, *size, f"train.seed={seed}") for size, seed in zip(sizes, (0, 1, 0))]
    task = sm.make_task(cfgs[0].task)
    fleet = FleetModel(cfgs, task, torch.device("cpu"), torch.float64)
    assert fleet.squads[0].hand_batched and len(fleet.squads) == 1
    gen = torch.Generator().manual_seed(3)
    if streams == "one":
        (x, y), stream = task.sample(8, gen, torch.float64), None
    else:
        x, y = task.sample(24, gen, torch.float64)
        x, y, stream = x.view(3, 8, *x.shape[1:]), y.view(3, 8), torch.tensor([2, 0, 1])
        y = y[stream]
    got = []
    for hand in (True, False):
        fleet.squads[0].hand_batched = hand
        fleet.flat.grad = None
        pred = fleet(x, stream)
        task.member_losses(pred, y).sum().backward()
        got.append((pred.detach(), fleet.flat.grad.clone()))
    (p1, g1), (p2, g2) = got
    assert_close(p1, p2, 1e-10, "outputs")
    assert_close(g1, g2, 1e-10, "gradients")
    assert g2.abs().max() > 0


def test_member_losses_equal_the_loss_member_by_member():
    task = sm.make_task(cfg_of().task)
    pred, y = torch.randn(4, 8), torch.randn(8)
    want = torch.stack([task.loss(p, y) for p in pred])
    assert torch.allclose(task.member_losses(pred, y), want)
    ys = torch.randn(4, 8)
    assert torch.allclose(task.member_losses(pred, ys), torch.stack([task.loss(p, t) for p, t in zip(pred, ys)]))


FAMILIES_300 = {
    "dp_free lin, last": ["model.attention=dp_free", "model.rpe=lin"],
    "dp log, last": ["model.attention=dp", "model.rpe=log"],
    "tmx kerple_log, normalization-free": [
        "model.attention=tmx",
        "model.rpe=kerple_log",
        "model.normalize=false",
        "train.lr=3e-4",
    ],
    "dp t5, 2 layers, all positions": [
        "model.attention=dp",
        "model.rpe=t5",
        "model.layers=2",
        "task.output=all",
        "model.rpe_buckets=3",
        "model.rpe_max_distance=9",
    ],
    "dp learned, layer norm, scaled": [
        "model.attention=dp",
        "model.rpe=learned",
        "model.layer_norm=true",
        "model.scale=true",
        "model.rpe_max_distance=16",
    ],
    "dp_free log, p free in sign": ["model.attention=dp_free", "model.rpe=log", "model.rpe_sign=free"],
    "dp_free alibi, FFN-free, kernel task": [
        "model.attention=dp_free",
        "model.rpe=alibi",
        "model.ffn_width=0",
        "task.kind=kernel",
        "task.kernels=[exp:0.5]",
    ],
}


@pytest.mark.parametrize("family", list(FAMILIES_300))
def test_300_steps_match_single_runs(family, tmp_path):
    """After 300 steps each member's validation loss is within 1% of its single run's (or both tiny);
    members differ in seed, lr, rpe_lr_scale, schedule, grad clipping and size."""
    extra = FAMILIES_300[family] + ["train.steps=300", "train.eval_every=100"]
    ffn = [] if "model.ffn_width=0" in extra else ["model.ffn_width=4"]
    cfgs = [
        cfg_of(*extra, "train.seed=0", "train.rpe_lr_scale=10"),
        cfg_of(*extra, "train.seed=1", "train.schedule=cosine", "train.warmup_steps=30", "train.grad_clip=0.5"),
        cfg_of(*extra, "train.seed=0", "model.heads=1", *ffn, "train.weight_decay=0.1", "train.betas=[0.8,0.99]"),
    ]
    fleet = train_fleet(cfgs, [tmp_path / f"m{i}" for i in range(3)], tmp_path / "fleet", progress=False)
    for i, (cfg, got) in enumerate(zip(cfgs, fleet)):
        ref = sm.train(cfg, progress=False)
        assert got["status"] == ref["status"] == "done" and got["steps"] == 300
        if not (got["val_rel"] < 1e-8 and ref["val_rel"] < 1e-8):
            assert got["val_loss"] == pytest.approx(ref["val_loss"], rel=0.01), family
        rows = [json.loads(ln) for ln in (tmp_path / f"m{i}" / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [100, 200, 300]
        assert rows[-1]["lr"] == pytest.approx(cfg.train.lr * lr_factor(300, cfg.train))
        # the member's run folder holds its final weights, loadable into its own single model
        saved = torch.load(tmp_path / f"m{i}" / "checkpoint.pt", weights_only=False)
        assert saved["config_hash"] == cfg.config_hash()
        sm.make_model(cfg.model, sm.make_task(cfg.task)).load_state_dict(saved["model"])


@pytest.mark.parametrize("attention", ["dp", "dp_free"])
def test_padding_changes_no_output_and_padded_entries_never_move(attention):
    """A member padded from H = 2 to 8 and m = 16 to 64 computes its own model's outputs; after training
    its padded entries are still exactly zero, and its unpadded model still matches the fleet."""
    small = cfg_of(
        "model.heads=2",
        "model.ffn_width=16",
        "model.dim=16",
        "model.head_dim=4",
        f"model.attention={attention}",
        "train.steps=20",
        "train.eval_every=10",
    )
    big = cfg_of(
        "model.heads=8",
        "model.ffn_width=64",
        "model.dim=16",
        "model.head_dim=4",
        f"model.attention={attention}",
        "train.steps=20",
        "train.eval_every=10",
        "train.seed=3",
    )
    task = sm.make_task(small.task)
    fleet = FleetModel([small, big], task, torch.device("cpu"), torch.float32)
    squad = fleet.squads[0]
    params = fleet.split(fleet.flat.detach())[0]  # views of the live parameters
    assert len(fleet.squads) == 1 and squad.heads == 8 and params["attn.0.v.weight"].shape[1:] == (8 * 4, 16)
    x = task.sample_x(32, torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    own = sm.make_model(small.model, task)
    assert_close(fleet(x)[0], own(x), 1e-6, "padded member output")
    padding = {n: ~m[0] for n, m in squad.masks.items()}
    assert padding and all(bool(p.any()) for p in padding.values())
    for n, pad in padding.items():
        assert bool((params[n][0][pad] == 0).all()), n
    opt = FleetAdamW(fleet, [small, big])
    gen = torch.Generator().manual_seed(1)
    for step in range(1, 21):
        xb, yb = task.sample(8, gen)
        fleet.flat.grad = None
        torch.func.vmap(task.loss, in_dims=(0, None))(fleet(xb), yb).sum().backward()
        opt.step(step, torch.ones(2, dtype=torch.bool))
    for n, pad in padding.items():
        assert bool((params[n][0][pad] == 0).all()), f"padded entries of {n} moved"
    trained = fleet.member_model(0, task)
    assert_close(fleet(x)[0], trained(x), 1e-6, "trained member output")
    assert not torch.equal(trained.attn[0].v.weight, own.attn[0].v.weight)


def test_diverged_member_is_frozen_and_others_unchanged(tmp_path):
    """A member whose loss turns inf ends as diverged at its step; the others finish as without it."""
    base = ["model.attention=dp", "model.normalize=false", "train.steps=60", "train.eval_every=20"]
    good = [cfg_of(*base, "train.seed=0"), cfg_of(*base, "train.seed=1", "model.heads=4")]
    bad = cfg_of(*base, "train.seed=0", "train.lr=1000")
    alone = sm.train(bad, progress=False)
    assert alone["status"] == "diverged"
    with_bad = train_fleet(
        [good[0], bad, good[1]], [tmp_path / "a", tmp_path / "b", tmp_path / "c"], tmp_path / "f", progress=False
    )
    without = train_fleet(good, progress=False)
    assert with_bad[1]["status"] == "diverged"
    assert with_bad[1]["diverged_step"] == alone["diverged_step"] and with_bad[1]["steps"] == alone["steps"]
    for got, ref in zip((with_bad[0], with_bad[2]), without):
        assert got["status"] == "done" and got["steps"] == 60
        assert got["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-5)
    assert json.loads((tmp_path / "b" / "final.json").read_text())["status"] == "diverged"


def test_killed_fleet_resumes_from_its_checkpoint_with_the_same_numbers(tmp_path, monkeypatch):
    cfgs = [cfg_of("train.steps=40", "train.eval_every=10", f"train.seed={s}", "train.schedule=cosine") for s in (0, 1)]
    whole = train_fleet(cfgs, progress=False)
    outs = [tmp_path / "a", tmp_path / "b"]
    calls = {"n": 0}
    real_step = FleetAdamW.step

    def dying_step(self, step, alive):
        calls["n"] += 1
        if calls["n"] == 27:
            raise KeyboardInterrupt  # killed between the checkpoints of steps 20 and 30
        return real_step(self, step, alive)

    monkeypatch.setattr(FleetAdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_fleet(cfgs, outs, tmp_path / "f", progress=False)
    monkeypatch.setattr(FleetAdamW, "step", real_step)
    resumed = train_fleet(cfgs, outs, tmp_path / "f", progress=False)
    for got, ref in zip(resumed, whole):
        assert got["resumed_from"] == 20
        assert got["val_loss"] == ref["val_loss"] and got["train_loss"] == ref["train_loss"]
        assert got["curve"] == ref["curve"] and [s for s, _ in got["curve"]] == [10, 20, 30, 40]
    steps = [json.loads(ln)["step"] for ln in (outs[0] / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 40]


def test_fleet_refuses_runs_that_cannot_share_a_loop():
    with pytest.raises(sm.ConfigError, match="differs from the fleet"):
        train_fleet([cfg_of(), cfg_of("train.batch_size=4")], progress=False)
    with pytest.raises(sm.ConfigError, match="transformer"):
        train_fleet([cfg_of("model.arch=lstm"), cfg_of("model.arch=lstm", "train.seed=1")], progress=False)


def test_squads_split_by_structure_not_by_size():
    a = cfg_of("model.heads=1", "model.head_dim=2")
    b = cfg_of("model.heads=4", "model.head_dim=2", "model.ffn_width=32", "model.rpe_init=0.5")
    assert squad_key(a.model) == squad_key(b.model)
    for other in (
        "model.rpe=log",
        "model.attention=dp_free",
        "model.layers=2",
        "model.ffn_width=0",
        "model.head_dim=4",
    ):
        assert squad_key(cfg_of("model.heads=1", "model.head_dim=2", other).model) != squad_key(a.model), other
    # the default head size D / H differs with H: no padding of heads of another size
    assert squad_key(cfg_of("model.heads=1").model) != squad_key(cfg_of("model.heads=2").model)


def test_plan_jobs_forms_the_same_fleets_in_any_order(tmp_path):
    runs = [
        cfg_of(f"model.heads={h}", f"train.seed={s}", f"model.rpe={r}")
        for h in (1, 2)
        for s in (0, 1)
        for r in ("lin", "log")
    ]
    runs.append(cfg_of("model.arch=lstm"))  # not fleet material: alone
    runs.append(cfg_of("task.seq_len=32"))  # another task: alone
    a = plan_jobs(runs, tmp_path, fleet_size=3)
    b = plan_jobs(list(reversed(runs)), tmp_path, fleet_size=3)
    assert sorted(map(tuple, (j.hashes for j in a))) == sorted(map(tuple, (j.hashes for j in b)))
    fleets = [j for j in a if j.fleet_dir]
    assert [len(j.hashes) for j in fleets] == [3, 3, 2] and sum(len(j.hashes) for j in a) == len(runs)
    assert len({j.fleet_dir for j in fleets}) == 3
    # members of a fleet that share a seed sit together
    assert {c["train"]["seed"] for c, _ in fleets[0].members} == {0}
    assert all(len(j.hashes) == 1 and j.fleet_dir is None for j in plan_jobs(runs, tmp_path, fleet="off"))
    # with more workers than jobs, the largest fleets are halved until every worker has one
    spread = plan_jobs(runs[:8], tmp_path, workers=4)
    assert sorted(len(j.hashes) for j in spread) == [2, 2, 2, 2]


def test_cpu_fleets_leave_big_members_alone(tmp_path):
    """On a CPU a member whose step holds a big softmax (DP read at every key) trains alone."""
    dp = ["task.seq_len=1000", "task.lags=[900]", "train.batch_size=100", "model.attention=dp", "model.heads=8"]
    free = [x.replace("attention=dp", "attention=dp_free") for x in dp]
    assert step_elements(cfg_of(*dp)) == 100 * 8 * 1000
    jobs = plan_jobs(
        [cfg_of(*dp, f"train.seed={s}") for s in range(3)] + [cfg_of(*free, f"train.seed={s}") for s in range(3)],
        tmp_path,
    )
    assert sorted(len(j.hashes) for j in jobs) == [1, 1, 1, 3]


def test_cli_rejects_bad_fleet_options(tmp_path):
    import subprocess
    import sys

    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "c", "base": {"task": {"lags": [1]}}}))
    for args in (["--fleet-size", "-1"], ["--fleet", "sometimes"], ["--compile", "always"]):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "sparsemem",
                "sweep",
                str(tmp_path / "s.yaml"),
                "--store",
                str(tmp_path / "c.db"),
                *args,
            ],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 2 and ("--fleet" in out.stderr or "--compile" in out.stderr), out.stderr
        assert not (tmp_path / "c.db").exists()


def test_compile_auto_marks_big_single_runs_only(tmp_path):
    """Big single runs compile, but not those whose first layer sums its weights per token value (+-1
    tokens): that path reads the data, which a compiled graph cannot."""
    dp = ["task.seq_len=1000", "task.lags=[900]", "train.batch_size=100", "model.attention=dp", "model.heads=8"]
    gauss = [*dp, "task.input=gaussian"]
    runs = [cfg_of(*gauss), cfg_of(*gauss, "train.seed=1"), cfg_of("train.seed=2"), cfg_of("train.seed=3")]
    runs.append(cfg_of(*dp, "train.seed=4"))
    jobs = plan_jobs(runs, tmp_path, compile="auto")
    assert sorted((len(j.hashes), j.compile) for j in jobs) == [(1, False), (1, True), (1, True), (2, False)]
    assert [j.compile for j in jobs if j.hashes == [runs[-1].config_hash()]] == [False]
    assert not any(j.compile for j in plan_jobs(runs, tmp_path))
