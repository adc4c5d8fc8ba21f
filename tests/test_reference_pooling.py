"""The float64 pooling reference (minidnn.reference.pooling) against PyTorch
in float64, indices included (ties, NaN, -inf windows), over randomized
geometries within PyTorch's rules; and the forms beyond PyTorch (asymmetric
padding, pads up to the dilated extent minus one, dilated average pooling)
against the same reference on an explicitly padded input."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import minidnn.reference as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def same(ours, theirs):
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def _geometries(seed, count):
    """(x shape, kernel, stride, padding, dilation, ceil_mode) within PyTorch's rules."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        kh, kw = rng.integers(1, 5, 2)
        sh, sw = rng.integers(1, 4, 2)
        dh, dw = rng.integers(1, 3, 2)
        ph, pw = rng.integers(0, kh // 2 + 1), rng.integers(0, kw // 2 + 1)
        h, w = rng.integers(1, 12, 2)
        ceil_mode = bool(rng.integers(0, 2))
        if (h + 2 * ph - dh * (kh - 1) - 1) < 0 or (w + 2 * pw - dw * (kw - 1) - 1) < 0:
            continue
        out.append(((int(rng.integers(0, 3)), 3, int(h), int(w)), (int(kh), int(kw)), (int(sh), int(sw)),
                    (int(ph), int(pw)), (int(dh), int(dw)), ceil_mode))
    return out


GEOMETRIES = _geometries(zlib.crc32(b"pooling"), 60)


def _input(shape, rng, ties=True):
    x = rng.standard_normal(shape)
    if ties:
        x = np.round(x * 2) / 2  # many ties
        flat = x.reshape(-1)
        if flat.size > 4:
            flat[rng.integers(0, flat.size, flat.size // 8)] = np.nan
            flat[rng.integers(0, flat.size, flat.size // 8)] = -np.inf
    return x


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_max_pool2d_matches_torch(geometry):
    shape, k, s, p, d, ceil_mode = geometry
    rng = np.random.default_rng(zlib.crc32(str(geometry).encode()))
    x = _input(shape, rng)
    try:
        ty, ti = F.max_pool2d(t64(x), k, s, p, d, ceil_mode, return_indices=True)
    except RuntimeError:
        pytest.skip("torch rejects this geometry")
    y, idx = ref.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, ti.numpy())
    g = rng.standard_normal(y.shape)
    xt = t64(x).requires_grad_()
    F.max_pool2d(xt, k, s, p, d, ceil_mode).backward(t64(g))
    same(ref.max_pool2d_backward(g, idx, x.shape), xt.grad)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_matches_torch(geometry, count_include_pad):
    shape, k, s, p, d, ceil_mode = geometry
    if d != (1, 1):
        d = (1, 1)  # PyTorch's avg_pool2d has no dilation
        if shape[2] + 2 * p[0] < k[0] or shape[3] + 2 * p[1] < k[1]:
            pytest.skip("kernel larger than the padded input")
    rng = np.random.default_rng(zlib.crc32(str(geometry).encode()))
    x = _input(shape, rng, ties=False)
    for divisor in (None, 3):
        ty = F.avg_pool2d(t64(x), k, s, p, ceil_mode, count_include_pad, divisor)
        y = ref.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor)
        same(y, ty)
        g = rng.standard_normal(y.shape)
        xt = t64(x).requires_grad_()
        F.avg_pool2d(xt, k, s, p, ceil_mode, count_include_pad, divisor).backward(t64(g))
        same(ref.avg_pool2d_backward(g, x.shape, k, s, p, ceil_mode, count_include_pad, divisor), xt.grad)


@pytest.mark.parametrize("size,out", [((5, 7), (3, 2)), ((7, 7), 1), ((4, 9), (4, 4)), ((3, 3), (5, 6)),
                                      ((1, 10), (1, 3))])
def test_adaptive_pooling_matches_torch(size, out):
    rng = np.random.default_rng(zlib.crc32(str((size, out)).encode()))
    x = _input((2, 3) + size, rng)
    ty, ti = F.adaptive_max_pool2d(t64(x), out, return_indices=True)
    y, idx = ref.adaptive_max_pool2d(x, out, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, ti.numpy())
    g = rng.standard_normal(y.shape)
    xt = t64(x).requires_grad_()
    F.adaptive_max_pool2d(xt, out).backward(t64(g))
    same(ref.adaptive_max_pool2d_backward(g, idx, x.shape), xt.grad)
    x = rng.standard_normal(x.shape)
    same(ref.adaptive_avg_pool2d(x, out), F.adaptive_avg_pool2d(t64(x), out))
    xt = t64(x).requires_grad_()
    F.adaptive_avg_pool2d(xt, out).backward(t64(g))
    same(ref.adaptive_avg_pool2d_backward(g, x.shape), xt.grad)


@pytest.mark.parametrize("hw,k,s,p,output_size", [((10, 8), 2, 2, 0, None), ((9, 9), 3, 2, 1, None),
                                                  ((11, 10), 3, 2, 1, (11, 10)),
                                                  ((7, 6), (2, 3), (2, 1), (1, 0), (7, 6))])
def test_max_unpool2d_matches_torch(hw, k, s, p, output_size):
    rng = np.random.default_rng(zlib.crc32(str((k, s, p)).encode()))
    x = rng.standard_normal((2, 3) + hw)
    y, idx = ref.max_pool2d(x, k, s, p, return_indices=True)
    theirs = F.max_unpool2d(t64(y), torch.from_numpy(idx), k, s, p, output_size)
    same(ref.max_unpool2d(y, idx, k, s, p, output_size), theirs)


def test_1d_forms_match_torch():
    rng = np.random.default_rng(1)
    x = _input((2, 3, 13), rng)
    ty, ti = F.max_pool1d(t64(x), 3, 2, 1, 2, True, return_indices=True)
    y, idx = ref.max_pool1d(x, 3, 2, 1, 2, True, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, ti.numpy())
    x = rng.standard_normal((2, 3, 13))
    same(ref.avg_pool1d(x, 4, 3, 2, True, False), F.avg_pool1d(t64(x), 4, 3, 2, True, False))


@pytest.mark.parametrize("k,s,pads,d,ceil_mode", [
    ((3, 3), (2, 2), ((0, 2), (1, 0)), (1, 1), False),
    ((3, 2), (1, 2), ((2, 2), (1, 1)), (1, 2), True),  # pads up to the dilated extent - 1
    ((2, 3), (2, 3), ((1, 0), (3, 4)), (2, 2), True),
])
def test_forms_beyond_torch_equal_explicit_padding(k, s, pads, d, ceil_mode):
    """Max pooling with padding P equals max pooling of the input padded
    with -inf (torch, float64), as long as every window meets the input;
    average pooling with count_include_pad equals the zero-padded input's."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 2, 9, 10))
    (pt, pb), (pl, pr) = pads
    neg = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=-np.inf)
    y, idx = ref.max_pool2d(x, k, s, pads, d, ceil_mode, return_indices=True)
    # ceil_mode windows past the padded input are clipped the same way by both
    y_explicit = ref.max_pool2d(neg, k, s, 0, d, ceil_mode)[:, :, : y.shape[2], : y.shape[3]]
    if y_explicit.shape == y.shape:
        np.testing.assert_array_equal(y, y_explicit)
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(2, 2, -1), idx.reshape(2, 2, -1), 2).reshape(y.shape), y)
    if not ceil_mode:
        zero = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        np.testing.assert_allclose(ref.avg_pool2d(x, k, s, pads, dilation=d),
                                   ref.avg_pool2d(zero, k, s, 0, dilation=d), rtol=1e-12)
        # the dilated average against torch's conv2d with a uniform kernel
        w = torch.full((2, 1) + k, 1.0 / (k[0] * k[1]), dtype=torch.float64)
        same(ref.avg_pool2d(x, k, s, pads, dilation=d), F.conv2d(t64(zero), w, None, s, 0, d, groups=2))


def test_window_wholly_in_padding_is_an_error():
    """Only dilation can make one: taps -2 and 1 of a 1-row input."""
    x = np.ones((1, 1, 1, 4))
    with pytest.raises(ValueError, match="padding"):
        ref.max_pool2d(x, (2, 1), 1, ((2, 1), (0, 0)), (3, 1))
    # the average of such a window is 0
    y = ref.avg_pool2d(x, (2, 1), 1, ((2, 1), (0, 0)), count_include_pad=False, dilation=(3, 1))
    np.testing.assert_array_equal(y, np.zeros((1, 1, 1, 4)))
