"""The two ways into every op (csrc/bindings/common.h): arguments that are
exactly what the kernels read go straight through one _C entry; anything
else (non-contiguous or unaligned arrays, int32 targets, NumPy scalars, 0-d
grad_loss arrays, int subclasses) is validated and normalized in Python
first. Both must give bit-identical results."""

from __future__ import annotations

import numpy as np
import pytest

import minidnn
from minidnn import _C


def _fortran(a):
    """The same values in a non-C-contiguous layout."""
    out = np.asfortranarray(a)
    assert a.ndim < 2 or not out.flags.c_contiguous
    return out


def _strided(a):
    """The same values as a strided view (every other element of a larger array)."""
    out = np.repeat(a.ravel(), 2)[::2].reshape(a.shape)
    assert a.size < 2 or not out.flags.c_contiguous
    return out


def _cases(rng):
    x = rng.standard_normal((6, 11)).astype(np.float32)
    g = rng.standard_normal((6, 11)).astype(np.float32)
    y = minidnn.softmax(x)
    logy = minidnn.log_softmax(x)
    t = rng.integers(0, 11, 6)
    t[2] = -100
    w = rng.random(11).astype(np.float32) + 0.5
    q = minidnn.softmax(rng.standard_normal((6, 11)).astype(np.float32))
    gl = rng.standard_normal(6).astype(np.float32)
    v = rng.standard_normal(37).astype(np.float32)
    gv = rng.standard_normal(37).astype(np.float32)
    lw = rng.standard_normal((5, 11)).astype(np.float32)
    lb = rng.standard_normal(5).astype(np.float32)
    lg = rng.standard_normal((6, 5)).astype(np.float32)
    return [
        # (op, arguments of the direct way, the same values the other way)
        ("softmax", (x, 1), (_fortran(x), np.int64(1))),
        ("log_softmax", (x, -1), (_strided(x), -1)),
        ("softmax_backward", (g, y, 0), (_fortran(g), y, 0)),
        ("log_softmax_backward", (g, logy, 1), (g, _strided(logy), np.int32(1))),
        ("cross_entropy", (x, t, w, -100, "mean", 0.1), (x, t.astype(np.int32), _strided(w), np.int64(-100), "mean", np.float64(0.1))),
        ("cross_entropy", (x, q, None, -100, "sum", 0.2), (_fortran(x), _fortran(q), None, -100, "sum", 0.2)),
        ("cross_entropy", (x, t, None, -100, "none", 0.0), (x, _strided(t), None, -100, "none", np.float64(0.0))),
        ("cross_entropy_backward", (2.0, x, t, w, -100, "mean", 0.1), (np.array(2.0), x, t.astype(np.int32), w, -100, "mean", 0.1)),
        ("cross_entropy_backward", (gl, x, q, None, -100, "none", 0.0), (_strided(gl), x, q, None, -100, "none", 0.0)),
        ("cross_entropy_backward", (3.0, x, t, None, -100, "sum", 0.0), (np.float32(3.0), x, t, None, -100, "sum", 0.0)),
        ("nll_loss", (logy, t, w, -100, "mean"), (_fortran(logy), t, w, -100, "mean")),
        ("nll_loss", (logy, np.abs(t), None, 100, "none"), (logy, np.abs(t), None, np.int64(100), "none")),
        ("nll_loss_backward", (1.5, logy, t, w, -100, "mean"), (np.float64(1.5), logy, t.astype(np.int32), w, -100, "mean")),
        ("nll_loss_backward", (gl, logy, t, None, -100, "none"), (_strided(gl), logy, t, None, -100, "none")),
        ("relu", (v,), (_strided(v),)),
        ("relu", (np.array(1.5, np.float32),), (np.float32(1.5),)),
        ("relu_backward", (gv, v), (gv, _strided(v))),
        ("leaky_relu", (v, 0.2), (v, np.float64(0.2))),
        ("leaky_relu_backward", (gv, v, 1), (_strided(gv), v, 1)),
        ("sigmoid", (v,), (_strided(v),)),
        ("sigmoid_backward", (gv, v), (_strided(gv), v)),
        ("tanh", (v,), (_strided(v),)),
        ("tanh_backward", (gv, v), (gv, _strided(v))),
        ("linear", (x, lw, lb), (_fortran(x), lw, _strided(lb))),
        ("linear", (x, lw, None), (x, _fortran(lw), None)),
        ("linear_backward", (lg, x, lw), (_fortran(lg), x, lw)),
    ]


def test_both_ways_agree_bit_for_bit(rng):
    for name, direct, other in _cases(rng):
        entry, op = getattr(_C, name), getattr(minidnn, name)
        assert entry(*direct) is not None, f"{name}: the direct way was refused"
        assert entry(*other) is None, f"{name}: the other way went straight through"
        expected = op(*direct)
        got = op(*other)
        for e, g in zip(*(r if isinstance(r, tuple) else (r,) for r in (expected, got))):
            assert g.dtype == np.float32 and g.shape == e.shape, name
            np.testing.assert_array_equal(g, e, err_msg=name)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 2)], ids=str)
def test_empty_arrays(shape):
    x = np.zeros(shape, dtype=np.float32)
    for out in (minidnn.relu(x), minidnn.softmax(x, 0), minidnn.tanh_backward(x, x)):
        assert out.shape == shape and out.dtype == np.float32


def test_outputs_are_fresh_arrays():
    x = np.ones((2, 3), dtype=np.float32)
    a, b = minidnn.relu(x), minidnn.relu(x)
    assert a.flags.c_contiguous and a.flags.writeable and a.flags.owndata
    assert not np.shares_memory(a, b) and not np.shares_memory(a, x)
    loss = minidnn.cross_entropy(x, np.array([0, 2]))
    assert loss.shape == () and loss.dtype == np.float32 and loss.flags.writeable


def test_conv_both_ways_agree_bit_for_bit(rng):
    """The convolution entries take a normalized geometry rather than the
    op's arguments (csrc/bindings/conv.cpp), so the pattern above applies
    through the public ops: non-contiguous and strided arrays are refused by
    the entry and copied once in Python, with the same bits as the direct way."""
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    assert _C.conv2d_forward(x, w, b, 1, 1, 1, 1, 1, 1, 9, 8, 2, 0, 0.01) is not None
    assert _C.conv2d_forward(_fortran(x), w, b, 1, 1, 1, 1, 1, 1, 9, 8, 2, 0, 0.01) is None
    assert _C.conv2d_forward(x, w, _strided(b), 1, 1, 1, 1, 1, 1, 9, 8, 2, 0, 0.01) is None
    expected = minidnn.conv2d(x, w, b, padding=1, groups=2, activation="relu")
    got = minidnn.conv2d(_fortran(x), _strided(w), _strided(b), padding=np.int64(1), groups=np.int32(2), activation="relu")
    np.testing.assert_array_equal(got, expected)
    x1, w1 = x[:, :, 0, :].copy(), w[:, :, 0, :].copy()
    expected = minidnn.conv1d(x1, w1, b, padding="causal", groups=2)
    np.testing.assert_array_equal(minidnn.conv1d(_strided(x1), _fortran(w1), b, padding="causal", groups=2), expected)
