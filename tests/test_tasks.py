"""Each target generator against a brute-force evaluation of its formula."""

import math

import numpy as np
import pytest
import torch

from sparsemem import RunConfig, make_task


def task_of(*overrides):
    return make_task(RunConfig.from_dict({}, list(overrides)).task)


def x_at(x, b, t, lag):
    return x[b, t - lag].tolist() if t - lag >= 0 else [0.0] * x.shape[2]


def positions(task):
    T = task.seq_len
    return [T - 1] if task.cfg.output == "last" else list(range(T))


def as_rows(y, task):
    return y[:, None] if task.cfg.output == "last" else y


def relu_net(weights, z):
    return sum(max(0.0, sum(w * v for w, v in zip(row, z))) for row in weights.tolist())


def relu_spline(seed, width, z):
    """The spline as docs/tasks.md defines it, drawn again here: direction v ~ N(0, I) scaled to |v|_1 = 1,
    knots t_k ~ U(-1, 1) sorted, values y_k ~ N(0, 1); linear between knots, constant beyond the ends."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(len(z), generator=gen, dtype=torch.float64)
    t = (2 * torch.rand(width, generator=gen, dtype=torch.float64) - 1).sort().values
    y = torch.randn(width, generator=gen, dtype=torch.float64)
    return float(np.interp(float(v @ torch.tensor(z, dtype=torch.float64)) / float(v.abs().sum()), t, y))


@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("readout", ["sum", "product", "linear", "relu_net", "relu_spline"])
@pytest.mark.parametrize("inp", ["rademacher", "gaussian"])
def test_fixed_brute_force(output, readout, inp, gen):
    lags = [0, 3, 7]
    extra = ["task.readout.weights=[0.5,-1,2,0.25,3,-0.5]"] if readout == "linear" else []
    task = task_of(
        "task.kind=fixed",
        "task.seq_len=10",
        "task.dim=2",
        f"task.lags={lags}",
        f"task.output={output}",
        f"task.readout={readout}",
        f"task.input={inp}",
        *extra,
    )
    x, y = task.sample(3, gen, torch.float64)
    y = as_rows(y, task)
    for b in range(3):
        for i, t in enumerate(positions(task)):
            z = [v for lag in lags for v in x_at(x, b, t, lag)]
            if readout == "sum":
                want = sum(z)
            elif readout == "product":
                want = math.prod(z)
            elif readout == "linear":
                want = sum(w * v for w, v in zip([0.5, -1, 2, 0.25, 3, -0.5], z))
            elif readout == "relu_spline":
                want = relu_spline(task.cfg.seed, task.cfg.readout.width, z)
            else:
                want = relu_net(task.readout.weights, z)
            # a spline's slopes reach (value gap) / (knot gap): summing its units rounds more than interpolating
            assert y[b, i].item() == pytest.approx(want, abs=1e-9 if readout == "relu_spline" else 1e-12)


def rho_formula(spec, s):
    form, arg = spec.split(":")
    arg = float(arg)
    if form == "exp":
        return math.exp(-arg * s)
    if form == "power":
        return s ** (-arg) if s >= 1 else 0.0
    return 1.0 if s == int(arg) else 0.0


@pytest.mark.parametrize("output", ["last", "all"])
def test_kernel_brute_force(output, gen):
    kernels = ["exp:0.5", "power:1.5", "delta:4"]
    task = task_of(
        "task.kind=kernel",
        "task.seq_len=12",
        f"task.kernels=[{','.join(kernels)}]",
        f"task.output={output}",
        "task.input=uniform",
        "task.readout=product",
    )
    x, y = task.sample(2, gen, torch.float64)
    y = as_rows(y, task)
    for b in range(2):
        for i, t in enumerate(positions(task)):
            conv = [sum(x[b, t - s, 0].item() * rho_formula(k, s) for s in range(t + 1)) for k in kernels]
            assert y[b, i].item() == pytest.approx(math.prod(conv), abs=1e-10)


def test_kernel_explicit_list_and_truncation(gen):
    task = task_of(
        "task.kind=kernel", "task.seq_len=5", "task.kernels=[[1.0, -2.0, 0.5, 9, 9, 9, 9]]", "task.output=all"
    )
    assert task.rho.tolist() == [[1.0, -2.0, 0.5, 9.0, 9.0]]
    x, y = task.sample(2, gen, torch.float64)
    assert y[0, 2].item() == pytest.approx(x[0, 2, 0] - 2 * x[0, 1, 0] + 0.5 * x[0, 0, 0])


@pytest.mark.parametrize("output", ["last", "all"])
def test_nested_product_is_the_papers_formula(output, gen):
    """y_t = x_t x_{t-g(x_t)} x_{t-g(x_{t-g(x_t)})}, g(1) = 1, g(-1) = 2."""
    task = task_of("task.kind=adaptive", "task.example=nested_product", "task.seq_len=9", f"task.output={output}")
    x, y = task.sample(16, gen, torch.float64)
    y = as_rows(y, task)

    def val(b, p):
        return x[b, p, 0].item() if p >= 0 else 0.0

    def g(v):
        return 1 if v == 1 else 2  # the pre-start value 0 never matters: the product is 0

    for b in range(16):
        for i, t in enumerate(positions(task)):
            t1 = g(val(b, t))
            want = val(b, t) * val(b, t - t1) * val(b, t - g(val(b, t - t1)))
            assert y[b, i].item() == want


@pytest.mark.parametrize("output", ["last", "all"])
def test_prop42_is_the_papers_formula(output, gen):
    """y_t = x_{t-g(x_t)}, x in {-1, 0, 1}, g(-1) = 0, g(0) = 1, g(1) = 2."""
    task = task_of("task.kind=adaptive", "task.example=prop42", "task.seq_len=7", f"task.output={output}")
    x, y = task.sample(16, gen, torch.float64)
    assert set(x.unique().tolist()) <= {-1.0, 0.0, 1.0}
    y = as_rows(y, task)
    g = {-1.0: 0, 0.0: 1, 1.0: 2}
    for b in range(16):
        for i, t in enumerate(positions(task)):
            lag = g[x[b, t, 0].item()]
            assert y[b, i].item() == (x[b, t - lag, 0].item() if t - lag >= 0 else 0.0)


def test_random_adaptive_tables_walk(gen):
    """K = 1, M = 3 with random g: lags in [1, T_i], and the walk of the definition."""
    lags = [3, 5, 4]
    task = task_of(
        "task.kind=adaptive",
        "task.input={kind: discrete, values: [-1, 0.5, 2]}",
        "task.seq_len=12",
        f"task.lags={lags}",
        "task.depth=1",
        "task.output=all",
        "task.readout=sum",
        "task.seed=3",
    )
    x, y = task.sample(8, gen, torch.float64)
    S = len(task.symbols)
    sym = {v: i for i, v in enumerate(task.symbols)}
    for table, T_i in zip(task.tables, lags):
        assert table.min() >= 1 and table.max() <= T_i
    got_lags = task.lags(x)
    for b in range(8):
        for t in range(12):

            def s_at(p):
                return sym[x[b, p, 0].item()] if p >= 0 else task.pad

            arg0 = s_at(t)
            t1 = task.tables[0][arg0].item()
            m1 = s_at(t - t1)
            # g_2 and g_3 read (x_t, x_{t-t_1}) since K = 1
            t2 = task.tables[1][arg0 * S + m1].item()
            t3 = task.tables[2][arg0 * S + m1].item()
            assert got_lags[b, t].tolist() == [t1, t2, t3]
            want = sum(x[b, t - lag, 0].item() if t - lag >= 0 else 0.0 for lag in (0, t1, t2, t3))
            assert y[b, t].item() == pytest.approx(want)
    again = task_of(
        "task.kind=adaptive",
        "task.input={kind: discrete, values: [-1, 0.5, 2]}",
        "task.seq_len=12",
        f"task.lags={lags}",
        "task.depth=1",
        "task.seed=3",
    )
    assert all(torch.equal(a, b) for a, b in zip(task.tables, again.tables))


def test_inputs(gen):
    n = (200, 50, 2)
    for kind, check in [
        ("rademacher", lambda x: set(x.unique().tolist()) == {-1.0, 1.0}),
        ("uniform", lambda x: x.min() >= -1 and x.max() <= 1 and x.std() > 0.5),
        ("gaussian", lambda x: abs(x.std().item() - 1) < 0.05),
        ("{kind: discrete, values: [0.25, 3]}", lambda x: set(x.unique().tolist()) == {0.25, 3.0}),
    ]:
        task = task_of("task.lags=[1]", f"task.input={kind}", "task.dim=2", "task.seq_len=50")
        x = task.sample_x(200, gen, torch.float64)
        assert x.shape == n and check(x), kind


def test_validation_set_is_fixed_by_task_seed():
    t0 = task_of("task.lags=[2]", "task.readout=relu_net")
    a, b = t0.validation_set(5), t0.validation_set(5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = task_of("task.lags=[2]", "task.readout=relu_net", "task.seed=1").validation_set(5)
    assert not torch.equal(a[0], c[0])
