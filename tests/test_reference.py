"""Tests of the float64 NumPy reference layer ``minidnn.reference``.

* finite-difference checks of every backward against its forward;
* known-value / edge-case tests (overflow, -inf, NaN, ignore_index, ...);
* exact comparisons against torch.nn.functional when torch is installed.
"""

import warnings
import zlib

import numpy as np
import pytest

import minidnn.reference as ref


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

FD_STEP = 1e-6
FD_RTOL = 1e-6
FD_ATOL = 1e-8
TORCH_RTOL = 1e-12
TORCH_ATOL = 1e-14

REDUCTIONS = ("none", "mean", "sum")


def numerical_grad(f, x, h=FD_STEP):
    """Central-difference gradient of the scalar function f at x (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        orig = x[i]
        x[i] = orig + h
        fp = f(x)
        x[i] = orig - h
        fm = f(x)
        x[i] = orig
        grad[i] = (fp - fm) / (2.0 * h)
    return grad


def assert_grad_close(analytic, numeric):
    assert analytic.shape == numeric.shape
    assert np.all(np.isfinite(analytic))
    # the check must be able to fail: the gradient is not identically zero
    assert np.max(np.abs(numeric)) > 1e-3
    np.testing.assert_allclose(analytic, numeric, rtol=FD_RTOL, atol=FD_ATOL)


def assert_f64_array(a, shape=None):
    assert isinstance(a, np.ndarray), type(a)
    assert a.dtype == np.float64
    if shape is not None:
        assert a.shape == tuple(shape)


def loss_grad_weight(rng, reduction, target_shape):
    """Random upstream gradient: 0-d for mean/sum, target-shaped for none."""
    if reduction == "none":
        return rng.uniform(0.5, 1.5, size=target_shape) * rng.choice([-1.0, 1.0], size=target_shape)
    return np.asarray(rng.uniform(0.5, 2.0))


# ---------------------------------------------------------------------------
# loss cases shared by the finite-difference and torch tests
# ---------------------------------------------------------------------------

SHAPES = [(6, 4), (2, 3, 2, 3), (5,)]
INDEX_KINDS = ["index", "index_ignore", "index_ignore_in_range"]
TARGET_KINDS = INDEX_KINDS + ["prob"]


def _seed(*parts):
    """Deterministic per-test seed (str hashes are randomised per process)."""
    return zlib.crc32(repr(parts).encode())


def make_loss_case(shape, kind, weighted, seed):
    """Return (logits, target, weight, ignore_index) for one loss test case."""
    rng = np.random.default_rng(seed)
    C = shape[0] if len(shape) == 1 else shape[1]
    logits = rng.normal(scale=2.0, size=shape)
    weight = rng.uniform(0.5, 2.0, size=C) if weighted else None
    ignore_index = -100
    if kind == "prob":
        class_axis = 0 if len(shape) == 1 else 1
        t = rng.uniform(0.1, 1.0, size=shape)
        target = t / t.sum(axis=class_axis, keepdims=True)
        return logits, target, weight, ignore_index
    tshape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
    target = rng.integers(0, C, size=tshape)
    if kind == "index_ignore":
        flat = target.reshape(-1)
        flat[0] = ignore_index                          # at least one ignored
        flat[1:][rng.random(flat.size - 1) < 0.3] = ignore_index
        flat[-1] = 1                                    # at least one kept
    elif kind == "index_ignore_in_range":
        ignore_index = 2                                # a real class, ignored
        flat = target.reshape(-1)
        flat[0] = 2
        flat[-1] = 0
    return logits, target, weight, ignore_index


def _loss_params(kinds, with_eps):
    params = []
    for shape in SHAPES:
        for kind in kinds:
            if len(shape) == 1 and kind.startswith("index_ignore"):
                continue  # an unbatched ignored sample is all-ignored (NaN mean)
            for weighted in (False, True):
                for reduction in REDUCTIONS:
                    for eps in ((0.0, 0.1) if with_eps else (0.0,)):
                        params.append((shape, kind, weighted, reduction, eps))
    return params


CE_PARAMS = _loss_params(TARGET_KINDS, with_eps=True)
NLL_PARAMS = _loss_params(INDEX_KINDS, with_eps=False)


def _ids(p):
    shape, kind, weighted, reduction, eps = p
    return f"{'x'.join(map(str, shape))}-{kind}-{'w' if weighted else 'now'}-{reduction}-eps{eps}"


# ---------------------------------------------------------------------------
# finite-difference checks
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_backward_fd(name, axis):
    rng = np.random.default_rng(_seed(name, axis))
    x = rng.normal(size=(3, 4, 5))
    G = rng.normal(size=x.shape)
    fwd = getattr(ref, name)
    bwd = getattr(ref, name + "_backward")
    y = fwd(x, axis=axis)
    analytic = bwd(G, y, axis=axis)
    assert_f64_array(analytic, x.shape)
    numeric = numerical_grad(lambda z: np.sum(G * fwd(z, axis=axis)), x)
    assert_grad_close(analytic, numeric)


@pytest.mark.parametrize("case", NLL_PARAMS, ids=_ids)
def test_nll_loss_backward_fd(case):
    shape, kind, weighted, reduction, _ = case
    logits, target, weight, ii = make_loss_case(shape, kind, weighted, _seed("nll", case))
    lp = ref.log_softmax(logits, axis=0 if len(shape) == 1 else 1)
    rng = np.random.default_rng(_seed("nllg", case))
    G = loss_grad_weight(rng, reduction, target.shape)

    def L(z):
        return np.sum(G * ref.nll_loss(z, target, weight, ii, reduction))

    analytic = ref.nll_loss_backward(G, lp, target, weight, ii, reduction)
    assert_f64_array(analytic, lp.shape)
    assert_grad_close(analytic, numerical_grad(L, lp))


@pytest.mark.parametrize("case", CE_PARAMS, ids=_ids)
def test_cross_entropy_backward_fd(case):
    shape, kind, weighted, reduction, eps = case
    logits, target, weight, ii = make_loss_case(shape, kind, weighted, _seed("ce", case))
    out_shape = target.shape if kind != "prob" else (() if len(shape) == 1 else (shape[0],) + shape[2:])
    rng = np.random.default_rng(_seed("ceg", case))
    G = loss_grad_weight(rng, reduction, out_shape)

    def L(z):
        return np.sum(G * ref.cross_entropy(z, target, weight, ii, reduction, eps))

    loss = ref.cross_entropy(logits, target, weight, ii, reduction, eps)
    assert_f64_array(loss, out_shape if reduction == "none" else ())
    assert np.all(np.isfinite(loss))
    analytic = ref.cross_entropy_backward(G, logits, target, weight, ii, reduction, eps)
    assert_f64_array(analytic, logits.shape)
    assert_grad_close(analytic, numerical_grad(L, logits))
    if kind.startswith("index_ignore"):
        # ignored samples receive exactly zero gradient
        ignored = np.moveaxis(analytic, 1, -1)[target == ii]
        assert ignored.size > 0 and np.all(ignored == 0.0)


def _away_from_zero(rng, shape):
    return rng.uniform(0.1, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


@pytest.mark.parametrize("name,uses_output,kwargs", [
    ("relu", False, {}),
    ("leaky_relu", False, {}),
    ("leaky_relu", False, {"negative_slope": 0.2}),
    ("sigmoid", True, {}),
    ("tanh", True, {}),
])
def test_activation_backward_fd(name, uses_output, kwargs):
    rng = np.random.default_rng(_seed(name, kwargs))
    x = _away_from_zero(rng, (4, 5))
    G = rng.normal(size=x.shape)
    fwd = getattr(ref, name)
    bwd = getattr(ref, name + "_backward")
    y = fwd(x, **kwargs)
    assert_f64_array(y, x.shape)
    analytic = bwd(G, y if uses_output else x, **kwargs)
    assert_f64_array(analytic, x.shape)
    numeric = numerical_grad(lambda z: np.sum(G * fwd(z, **kwargs)), x)
    assert_grad_close(analytic, numeric)


# ---------------------------------------------------------------------------
# known values and edge cases
# ---------------------------------------------------------------------------

def test_softmax_huge_logits_finite():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = ref.softmax(np.full((2, 5), 1e30))
        np.testing.assert_allclose(y, 0.2, rtol=1e-15)
        np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-15)
        y = ref.softmax(np.array([1e30, -1e30, 0.0, 1e30]))
        np.testing.assert_allclose(y, [0.5, 0.0, 0.0, 0.5], rtol=1e-15)
        lp = ref.log_softmax(np.array([1e30, -1e30, 0.0, 1e30]))
        np.testing.assert_allclose(lp, [-np.log(2.0), -2e30, -1e30 - np.log(2.0), -np.log(2.0)], rtol=1e-15)
        loss = ref.cross_entropy(np.array([[1e30, 0.0, -1e30]]), np.array([0]))
        assert loss == 0.0


def test_softmax_known_values():
    x = np.array([[0.0, np.log(2.0), np.log(5.0)]])
    np.testing.assert_allclose(ref.softmax(x), [[0.125, 0.25, 0.625]], rtol=1e-15)
    np.testing.assert_allclose(ref.log_softmax(x), np.log([[0.125, 0.25, 0.625]]), rtol=1e-14)
    np.testing.assert_allclose(ref.softmax(x.T, axis=0), [[0.125], [0.25], [0.625]], rtol=1e-15)


def test_softmax_all_neg_inf_row_is_nan():
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (ref.softmax, ref.log_softmax):
            y = f(x)
            assert np.all(np.isnan(y[0]))
            assert not np.any(np.isnan(y[1]))
        np.testing.assert_array_equal(ref.softmax(x)[1], [0.5, 0.0, 0.5])
        np.testing.assert_array_equal(ref.log_softmax(x)[1], [-np.log(2.0), -np.inf, -np.log(2.0)])


def test_softmax_nan_propagates():
    x = np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (ref.softmax, ref.log_softmax):
            y = f(x)
            assert np.all(np.isnan(y[0]))
            assert np.all(np.isfinite(y[1]))
            y0 = f(x, axis=0)
            assert np.all(np.isnan(y0[:, 1])) and np.all(np.isfinite(y0[:, [0, 2]]))


def test_cross_entropy_all_ignored():
    logits = np.random.default_rng(0).normal(size=(3, 4))
    target = np.full(3, -100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(ref.cross_entropy(logits, target))
        assert np.isnan(ref.cross_entropy(logits, target, label_smoothing=0.1))
        assert np.isnan(ref.nll_loss(ref.log_softmax(logits), target))
        assert ref.cross_entropy(logits, target, reduction="sum") == 0.0
        np.testing.assert_array_equal(ref.cross_entropy(logits, target, reduction="none"), 0.0)
        g = ref.cross_entropy_backward(1.0, logits, target)
        np.testing.assert_array_equal(g, 0.0)


@pytest.mark.parametrize("C", [2, 5, 10])
def test_label_smoothing_one_uniform_logits(C):
    logits = np.full((3, C), 0.7)
    target = np.array([0, C - 1, 1])
    for reduction in ("mean", "sum"):
        loss = ref.cross_entropy(logits, target, reduction=reduction, label_smoothing=1.0)
        expected = np.log(C) * (1 if reduction == "mean" else 3)
        np.testing.assert_allclose(loss, expected, rtol=1e-14)
    loss = ref.cross_entropy(logits, np.eye(C)[target], label_smoothing=1.0)
    np.testing.assert_allclose(loss, np.log(C), rtol=1e-14)


def test_nll_loss_known_values():
    lp = np.array([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]])
    t = np.array([2, 0])
    np.testing.assert_array_equal(ref.nll_loss(lp, t, reduction="none"), [3.0, 4.0])
    assert ref.nll_loss(lp, t, reduction="sum") == 7.0
    assert ref.nll_loss(lp, t) == 3.5
    w = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ref.nll_loss(lp, t, w, reduction="none"), [9.0, 4.0])
    assert ref.nll_loss(lp, t, w) == 13.0 / 4.0
    assert ref.nll_loss(lp, t, w, ignore_index=2) == 4.0
    g = ref.nll_loss_backward(1.0, lp, t, w)
    np.testing.assert_array_equal(g, [[0.0, 0.0, -0.75], [-0.25, 0.0, 0.0]])
    # one-hot log-probabilities that match the target: zero loss
    with np.errstate(divide="ignore"):
        onehot_lp = np.log(np.eye(4))[[1, 3, 0]]
    assert ref.nll_loss(onehot_lp, np.array([1, 3, 0])) == 0.0
    assert ref.nll_loss(onehot_lp, np.array([1, 3, 2])) == np.inf
    # unbatched
    out = ref.nll_loss(lp[0], np.array(1), reduction="none")
    assert_f64_array(out, ())
    assert out == 2.0


def test_cross_entropy_known_values():
    logits = np.array([[0.0, np.log(3.0)], [0.0, 0.0]])
    t = np.array([1, 0])
    np.testing.assert_allclose(ref.cross_entropy(logits, t, reduction="none"),
                               [-np.log(0.75), np.log(2.0)], rtol=1e-15)
    # probability targets equal to one-hot reproduce the class-index loss
    for reduction in REDUCTIONS:
        np.testing.assert_allclose(ref.cross_entropy(logits, np.eye(2)[t], reduction=reduction),
                                   ref.cross_entropy(logits, t, reduction=reduction), rtol=1e-15)
    g = ref.cross_entropy_backward(1.0, logits, t, reduction="sum")
    np.testing.assert_allclose(g, [[0.25, -0.25], [-0.5, 0.5]], rtol=1e-15)


def test_return_types():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = np.array([0, 2])
    for out in (ref.softmax(x), ref.log_softmax(x), ref.relu(x), ref.sigmoid(x),
                ref.tanh(x), ref.leaky_relu(x), ref.relu_backward(x, x)):
        assert_f64_array(out, x.shape)
    for reduction in ("mean", "sum"):
        assert_f64_array(ref.cross_entropy(x, t, reduction=reduction), ())
        assert_f64_array(ref.nll_loss(x, t, reduction=reduction), ())
    assert_f64_array(ref.relu(-1.0), ())
    assert_f64_array(ref.sigmoid([1, 2]), (2,))


def test_activation_known_values():
    x = np.array([-2.0, -0.0, 0.0, 3.0, np.nan, np.inf, -np.inf])
    g = np.arange(1.0, 8.0)
    np.testing.assert_array_equal(ref.relu(x), [0, 0, 0, 3, np.nan, np.inf, 0])
    np.testing.assert_array_equal(ref.relu_backward(g, x)[:4], [0, 0, 0, 4])
    np.testing.assert_array_equal(ref.leaky_relu(x, 0.1)[[0, 3, 5, 6]], [-0.2, 3, np.inf, -np.inf])
    assert np.isnan(ref.leaky_relu(x)[4])
    np.testing.assert_array_equal(ref.leaky_relu_backward(g, x, 0.5)[:4], [0.5, 1.0, 1.5, 4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ref.sigmoid(np.array([-1000.0, -700.0, 0.0, 700.0, 1000.0, np.nan]))
    np.testing.assert_array_equal(s[[0, 2, 4]], [0.0, 0.5, 1.0])
    assert 0.0 < s[1] < 1e-300 and np.isnan(s[5])
    np.testing.assert_allclose(ref.sigmoid(np.array([np.log(3.0)])), [0.75], rtol=1e-15)
    np.testing.assert_allclose(ref.sigmoid_backward(np.array([2.0]), np.array([0.75])), [0.375], rtol=1e-15)
    np.testing.assert_allclose(ref.tanh_backward(np.array([2.0]), np.array([0.5])), [1.5], rtol=1e-15)


# ---------------------------------------------------------------------------
# comparison against torch (skipped when torch is not installed)
# ---------------------------------------------------------------------------

def _assert_torch_close(ours, theirs):
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=TORCH_RTOL, atol=TORCH_ATOL, equal_nan=True)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_vs_torch(name, axis):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(_seed("t", name, axis))
    x = rng.normal(scale=3.0, size=(3, 4, 5))
    G = rng.normal(size=x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(F, name)(xt, dim=axis)
    yt.backward(torch.tensor(G))
    y = getattr(ref, name)(x, axis=axis)
    _assert_torch_close(y, yt)
    _assert_torch_close(getattr(ref, name + "_backward")(G, y, axis=axis), xt.grad)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_edge_cases_vs_torch(name):
    torch = pytest.importorskip("torch")
    x = np.array([[1e30, -1e30, 0.0, 1e30],
                  [-np.inf, -np.inf, -np.inf, -np.inf],
                  [0.0, -np.inf, 1.0, -np.inf],
                  [1.0, np.nan, 2.0, 3.0],
                  [-1e30, -1e30, -1e30, -1e30]])
    _assert_torch_close(getattr(ref, name)(x), getattr(torch.nn.functional, name)(torch.tensor(x), dim=-1))


@pytest.mark.parametrize("case", NLL_PARAMS, ids=_ids)
def test_nll_loss_vs_torch(case):
    torch = pytest.importorskip("torch")
    shape, kind, weighted, reduction, _ = case
    logits, target, weight, ii = make_loss_case(shape, kind, weighted, _seed("tnll", case))
    lp = ref.log_softmax(logits, axis=0 if len(shape) == 1 else 1)
    G = loss_grad_weight(np.random.default_rng(_seed("tnllg", case)), reduction, target.shape)
    lpt = torch.tensor(lp, requires_grad=True)
    wt = None if weight is None else torch.tensor(weight)
    out = torch.nn.functional.nll_loss(lpt, torch.tensor(target, dtype=torch.int64), weight=wt,
                                       ignore_index=ii, reduction=reduction)
    out.backward(torch.tensor(G))
    _assert_torch_close(ref.nll_loss(lp, target, weight, ii, reduction), out)
    _assert_torch_close(ref.nll_loss_backward(G, lp, target, weight, ii, reduction), lpt.grad)


@pytest.mark.parametrize("case", CE_PARAMS, ids=_ids)
def test_cross_entropy_vs_torch(case):
    torch = pytest.importorskip("torch")
    shape, kind, weighted, reduction, eps = case
    logits, target, weight, ii = make_loss_case(shape, kind, weighted, _seed("tce", case))
    ours = ref.cross_entropy(logits, target, weight, ii, reduction, eps)
    G = loss_grad_weight(np.random.default_rng(_seed("tceg", case)), reduction, ours.shape)
    xt = torch.tensor(logits, requires_grad=True)
    tt = torch.tensor(target) if kind == "prob" else torch.tensor(target, dtype=torch.int64)
    wt = None if weight is None else torch.tensor(weight)
    out = torch.nn.functional.cross_entropy(xt, tt, weight=wt, ignore_index=ii,
                                            reduction=reduction, label_smoothing=eps)
    out.backward(torch.tensor(G))
    _assert_torch_close(ours, out)
    _assert_torch_close(ref.cross_entropy_backward(G, logits, target, weight, ii, reduction, eps), xt.grad)


@pytest.mark.parametrize("eps", [0.0, 0.3])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_all_ignored_vs_torch(reduction, eps):
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(1).normal(size=(3, 4))
    target = np.full(3, -100)
    xt = torch.tensor(logits, requires_grad=True)
    out = torch.nn.functional.cross_entropy(xt, torch.tensor(target), reduction=reduction,
                                            label_smoothing=eps)
    out.sum().backward()
    _assert_torch_close(ref.cross_entropy(logits, target, reduction=reduction, label_smoothing=eps), out)
    G = np.ones(3) if reduction == "none" else 1.0
    _assert_torch_close(ref.cross_entropy_backward(G, logits, target, reduction=reduction,
                                                   label_smoothing=eps), xt.grad)


@pytest.mark.parametrize("name,uses_output,kwargs", [
    ("relu", False, {}),
    ("leaky_relu", False, {}),
    ("leaky_relu", False, {"negative_slope": 0.2}),
    ("sigmoid", True, {}),
    ("tanh", True, {}),
])
@pytest.mark.parametrize("special", [False, True])
def test_activation_vs_torch(name, uses_output, kwargs, special):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(_seed("tact", name, kwargs))
    x = rng.normal(scale=3.0, size=(4, 5))
    if special:
        x.flat[:8] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 40.0]
    G = rng.normal(size=x.shape)
    torch_fwd = {
        "relu": torch.nn.functional.relu,
        "leaky_relu": lambda t, **kw: torch.nn.functional.leaky_relu(t, **kw),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
    }[name]
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_fwd(xt, **kwargs)
    yt.backward(torch.tensor(G))
    y = getattr(ref, name)(x, **kwargs)
    _assert_torch_close(y, yt)
    _assert_torch_close(getattr(ref, name + "_backward")(G, y if uses_output else x, **kwargs), xt.grad)
