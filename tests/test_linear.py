"""linear and linear_backward against the float64 reference (and against
PyTorch when it imports): every CPU path, 1 and 2 threads, shapes that hit
each GEMM route (dot products at small batch, the packed path, in-place B
in the backward), real network shapes, empty extents, determinism and bad
input."""

from __future__ import annotations

import numpy as np
import pytest

import minidnn
import minidnn.reference as ref

from conftest import assert_raises_naming, assert_same_at_thread_counts

# (x shape, out_features): 1-D x, batches of 1 to 64 rows (the inference and
# LSTM-step cases), primes, leading axes, and layer shapes of real networks.
SHAPES = [
    ((7,), 5), ((1, 1), 1), ((1, 33), 17), ((3, 16), 31), ((8, 100), 65), ((13, 37), 29), ((31, 64), 3),
    ((33, 129), 47), ((64, 257), 100), ((2, 5, 3), 8), ((4, 3, 50), 33),
    ((1, 4096), 1000),     # classifier head, batch 1
    ((32, 768), 3072),     # transformer MLP up-projection, 32 tokens
    ((128, 512), 512),     # attention projection
    ((16, 1024), 4096),    # LSTM gates (4 x 1024) of a step at batch 16
    # W's rows 8 KB apart as the tiles' rows, in two halves (gemm_impl.h's
    # in_place_row_passes), with one- and two-vector panels of x.
    ((40, 2048), 45),
]


def _data(rng, x_shape, out_features, bias=True):
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = (rng.standard_normal((out_features, x_shape[-1])) / np.sqrt(max(x_shape[-1], 1))).astype(np.float32)
    b = rng.standard_normal(out_features, dtype=np.float32) if bias else None
    return x, w, b


def _assert_within_condition(out, expected, condition, tol=2e-6):
    """Error relative to the sum of the magnitudes of the terms of each
    output (see test_gemm._check): outputs that cancel to near zero are
    judged against the size of what cancelled."""
    out = np.asarray(out, dtype=np.float64)
    assert out.shape == expected.shape, (out.shape, expected.shape)
    err = np.max(np.abs(out - expected) / np.maximum(condition, 1e-30)) if out.size else 0.0
    assert err <= tol, f"error {err:.3g} relative to the condition"


@pytest.mark.parametrize("x_shape,out_features", SHAPES, ids=str)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_forward(isa, threads, rng, x_shape, out_features, with_bias):
    x, w, b = _data(rng, x_shape, out_features, with_bias)
    y = minidnn.linear(x, w, b)
    cond = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T + (0 if b is None else np.abs(b))
    _assert_within_condition(y, ref.linear(x, w, b), cond)
    assert y.dtype == np.float32


@pytest.mark.parametrize("x_shape,out_features", SHAPES, ids=str)
def test_backward(isa, threads, rng, x_shape, out_features):
    x, w, _ = _data(rng, x_shape, out_features)
    g = rng.standard_normal(x_shape[:-1] + (out_features,), dtype=np.float32)
    gx, gw, gb = minidnn.linear_backward(g, x, w)
    rx, rw, rb = ref.linear_backward(g, x, w)
    a64 = lambda v: np.abs(v.astype(np.float64))  # noqa: E731
    g2, x2 = a64(g).reshape(-1, out_features), a64(x).reshape(-1, x_shape[-1])
    _assert_within_condition(gx, rx, (g2 @ a64(w)).reshape(x_shape))
    _assert_within_condition(gw, rw, g2.T @ x2)
    _assert_within_condition(gb, rb, g2.sum(axis=0))
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (out_features,)


@pytest.mark.parametrize("x_shape,out_features", [((5, 3), 4), ((3, 2, 65), 33), ((64, 300), 70)], ids=str)
def test_matches_torch(rng, x_shape, out_features):
    torch = pytest.importorskip("torch")
    x, w, b = _data(rng, x_shape, out_features)
    xt = torch.from_numpy(x).requires_grad_()
    wt = torch.from_numpy(w).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    yt = torch.nn.functional.linear(xt, wt, bt)
    g = rng.standard_normal(yt.shape, dtype=np.float32)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(minidnn.linear(x, w, b), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    for ours, theirs in zip(minidnn.linear_backward(g, x, w), (xt.grad, wt.grad, bt.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "x_shape,out_features",
    [((0, 5), 3), ((4, 0), 3), ((4, 5), 0), ((2, 0, 5), 3), ((0,), 2)],
    ids=str,
)
def test_empty(isa, threads, rng, x_shape, out_features):
    """No rows, no outputs, or no inputs (in_features == 0: y is the bias,
    grad_weight is empty, grad_bias still sums grad_y)."""
    x, w, b = _data(rng, x_shape, out_features)
    y = minidnn.linear(x, w, b)
    np.testing.assert_array_equal(y, ref.linear(x, w, b))
    g = rng.standard_normal(y.shape, dtype=np.float32)
    for ours, theirs in zip(minidnn.linear_backward(g, x, w), ref.linear_backward(g, x, w)):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("x_shape,out_features", [((1, 1024), 4096), ((24, 1000), 300), ((300, 700), 200)], ids=str)
def test_bit_identical_across_threads_and_runs(isa, rng, x_shape, out_features):
    x, w, b = _data(rng, x_shape, out_features)
    g = rng.standard_normal(x_shape[:-1] + (out_features,), dtype=np.float32)
    assert_same_at_thread_counts(lambda: (minidnn.linear(x, w, b), *minidnn.linear_backward(g, x, w)))


def test_non_contiguous_inputs(rng):
    x, w, b = _data(rng, (6, 10), 7)
    xt = np.ascontiguousarray(x.T).T  # Fortran order
    wt = np.ascontiguousarray(w.T).T
    np.testing.assert_allclose(minidnn.linear(xt, wt, b[::1]), ref.linear(x, w, b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(minidnn.linear(x[:, ::2], w[:, ::2]), ref.linear(x[:, ::2], w[:, ::2]), rtol=1e-5,
                               atol=1e-6)


X = np.ones((4, 5), np.float32)
W = np.ones((3, 5), np.float32)


@pytest.mark.parametrize(
    "call,error,words",
    [
        (lambda: minidnn.linear(X.astype(np.float64), W), TypeError, ["x", "float32", "float64"]),
        (lambda: minidnn.linear(X, W.astype(np.float16)), TypeError, ["weight", "float16"]),
        (lambda: minidnn.linear(X, [[1.0] * 5]), TypeError, ["weight", "ndarray", "list"]),
        (lambda: minidnn.linear(X, W, np.ones(3)), TypeError, ["bias", "float64"]),
        (lambda: minidnn.linear(X, W[0]), ValueError, ["weight", "2-D", "(5,)"]),
        (lambda: minidnn.linear(X, W[:, :4]), ValueError, ["x", "(..., 4)", "(4, 5)"]),
        (lambda: minidnn.linear(np.float32(1.0), W), ValueError, ["x", "(..., 5)", "()"]),
        (lambda: minidnn.linear(X, W, np.ones(4, np.float32)), ValueError, ["bias", "(3,)", "(4,)"]),
        (lambda: minidnn.linear_backward(np.ones((4, 4), np.float32), X, W), ValueError,
         ["grad_y", "(4, 3)", "(4, 4)"]),
        (lambda: minidnn.linear_backward(np.ones((4, 3)), X, W), TypeError, ["grad_y", "float64"]),
        (lambda: minidnn.linear_backward(np.ones((4, 3), np.float32), X[:, :2], W), ValueError,
         ["x", "(..., 5)", "(4, 2)"]),
    ],
)
def test_bad_input(call, error, words):
    assert_raises_naming(call, error, words)


def test_bench_cases_have_unique_names():
    from minidnn.bench import FAMILIES
    from minidnn.bench.linear import cases

    assert FAMILIES["linear"] == "minidnn.bench.linear"
    names = [case.name for case in cases("cpu", quick=True)]
    assert len(names) == len(set(names)) and cases("cuda", quick=True) == []
