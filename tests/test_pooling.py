"""The pooling ops (max / avg / adaptive pooling, backwards, max_unpool2d,
1-D forms) against the float64 reference: randomized geometries (odd
sizes, SIMD interiors and tails, strides 1, 2 and gathered, dilation,
asymmetric pads up to the dilated extent minus one, ceil_mode edges,
windows touching only padding, N = 0), every CPU path, 1 and 2 threads,
poisoned outputs; indices equal to PyTorch's when it imports; bad input."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import minidnn
import minidnn.reference as ref
from minidnn import _C

from conftest import assert_raises_naming


def _geometries(seed: int, count: int):
    """(x shape, kernel, stride, pads ((t, b), (l, r)), dilation, ceil_mode)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.choice([1, 1, 2, 2, 3], 2))
        d = tuple(int(v) for v in rng.choice([1, 1, 1, 2], 2))
        pads = tuple(tuple(int(v) for v in rng.integers(0, dd * (kk - 1) + 1, 2)) for kk, dd in zip(k, d))
        h, w = int(rng.integers(1, 10)), int(rng.integers(1, 60))
        if h + sum(pads[0]) < d[0] * (k[0] - 1) + 1 or w + sum(pads[1]) < d[1] * (k[1] - 1) + 1:
            continue
        out.append(((int(rng.choice([0, 1, 2, 3])), int(rng.integers(1, 4)), h, w), k, s, pads, d,
                    bool(rng.integers(0, 2))))
    return out


GEOMETRIES = _geometries(zlib.crc32(b"test_pooling"), 40)
# The benchmark's shapes (stride 2, 3x3 and 2x2 windows) at a small size, and a 1x1 window.
GEOMETRIES += [((2, 3, 14, 35), (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), False),
               ((1, 4, 12, 40), (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1), True),
               ((1, 2, 5, 33), (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), False)]
# Stride 1 along W (average pooling's separable passes): the benchmark's 3x3/1
# at a small size, asymmetric pads with H stride and dilation, a wide window.
GEOMETRIES += [((2, 3, 28, 28), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), False),
               ((1, 2, 9, 70), (3, 5), (2, 1), ((1, 3), (2, 4)), (2, 1), True),
               ((1, 1, 3, 41), (2, 9), (1, 1), ((0, 1), (8, 3)), (1, 1), False)]


def _input(shape, rng, specials=True):
    x = np.round(rng.standard_normal(shape) * 4) / 4  # ties
    flat = x.reshape(-1)
    if specials and flat.size > 8:
        for value in (np.nan, -np.inf, np.inf):
            flat[rng.integers(0, flat.size, max(1, flat.size // 50))] = value
    return x.astype(np.float32)


def _assert_exact(out, expected, what):
    out = np.asarray(out)
    assert out.dtype == np.float32 and out.shape == expected.shape, (what, out.dtype, out.shape, expected.shape)
    np.testing.assert_array_equal(out, expected.astype(np.float32), err_msg=what)


def _assert_close(out, expected, scale, what, rtol=2e-6):
    out = np.asarray(out)
    assert out.dtype == np.float32 and out.shape == expected.shape, (what, out.dtype, out.shape, expected.shape)
    assert not np.isnan(out).any(), f"{what}: NaN (an output left unwritten?)"
    err = np.abs(out.astype(np.float64) - expected)
    bad = err > rtol * (scale + 1e-30)
    assert not bad.any(), f"{what}: {bad.sum()} elements off, worst {err[bad].max():.3g} at {np.argwhere(bad)[:3].tolist()}"


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_max_pool2d(geometry, isa, threads, rng):
    shape, k, s, pads, d, ceil_mode = geometry
    x = _input(shape, rng)
    try:
        y_ref, idx_ref = ref.max_pool2d(x, k, s, pads, d, ceil_mode, return_indices=True)
    except ValueError:
        with pytest.raises(ValueError, match="padding"):
            minidnn.max_pool2d(x, k, s, pads, d, ceil_mode)
        return
    y, idx = minidnn.max_pool2d(x, k, s, pads, d, ceil_mode, return_indices=True)
    _assert_exact(y, y_ref, "y")
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, idx_ref)
    _assert_exact(minidnn.max_pool2d(x, k, s, pads, d, ceil_mode), y_ref, "y without indices")
    g = rng.standard_normal(y.shape).astype(np.float32)
    gx_ref = ref.max_pool2d_backward(g, idx_ref, shape)
    _assert_close(minidnn.max_pool2d_backward(g, idx, shape), gx_ref,
                  ref.max_pool2d_backward(np.abs(g), idx_ref, shape), "grad_x")


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_avg_pool2d(geometry, isa, threads, rng):
    shape, k, s, pads, d, ceil_mode = geometry
    x = _input(shape, rng, specials=False)
    g = None
    for count_include_pad, divisor in ((True, None), (False, None), (True, 5)):
        kwargs = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad, divisor_override=divisor, dilation=d)
        y_ref = ref.avg_pool2d(x, k, s, pads, **kwargs)
        y = minidnn.avg_pool2d(x, k, s, pads, **kwargs)
        _assert_close(y, y_ref, ref.avg_pool2d(np.abs(x), k, s, pads, **kwargs), f"y {count_include_pad} {divisor}")
        if g is None:
            g = rng.standard_normal(y.shape).astype(np.float32)
        gx_ref = ref.avg_pool2d_backward(g, shape, k, s, pads, **kwargs)
        scale = ref.avg_pool2d_backward(np.abs(g), shape, k, s, pads, **kwargs)
        _assert_close(minidnn.avg_pool2d_backward(g, shape, k, s, pads, **kwargs), gx_ref, scale, "grad_x")


# (13, 13) -> 6 (AlexNet's), (16, 16) -> (5, 16) and (9, 1) -> (4, 1): rows that
# fit a vector (AVX-512, AVX2, scalar) take the scans across the outputs' lanes.
@pytest.mark.parametrize("size,out", [((7, 7), 1), ((5, 37), (3, 2)), ((4, 9), (4, 4)), ((3, 3), (5, 6)),
                                      ((1, 50), (1, 7)), ((20, 17), (6, 5)), ((64, 3), 1), ((13, 13), 6),
                                      ((16, 16), (5, 16)), ((9, 1), (4, 1))], ids=str)
def test_adaptive_pooling(size, out, isa, threads, rng):
    for n in (0, 2):
        x = _input((n, 3) + size, rng)
        y_ref, idx_ref = ref.adaptive_max_pool2d(x, out, return_indices=True)
        y, idx = minidnn.adaptive_max_pool2d(x, out, return_indices=True)
        _assert_exact(y, y_ref, "max")
        np.testing.assert_array_equal(idx, idx_ref)
        _assert_exact(minidnn.adaptive_max_pool2d(x, out), y_ref, "max without indices")
        g = rng.standard_normal(y.shape).astype(np.float32)
        _assert_close(minidnn.adaptive_max_pool2d_backward(g, idx, x.shape),
                      ref.adaptive_max_pool2d_backward(g, idx_ref, x.shape),
                      ref.adaptive_max_pool2d_backward(np.abs(g), idx_ref, x.shape), "max grad_x")
        x = _input(x.shape, rng, specials=False)
        _assert_close(minidnn.adaptive_avg_pool2d(x, out), ref.adaptive_avg_pool2d(x, out),
                      ref.adaptive_avg_pool2d(np.abs(x), out), "avg")
        _assert_close(minidnn.adaptive_avg_pool2d_backward(g, x.shape), ref.adaptive_avg_pool2d_backward(g, x.shape),
                      ref.adaptive_avg_pool2d_backward(np.abs(g), x.shape), "avg grad_x")


@pytest.mark.parametrize("shape", [(2, 1100, 23, 23), (3, 5, 4, 5)], ids=str)
def test_global_avg_pool2d_backward_fills_each_plane(shape, isa, threads, rng):
    """Global pooling's backward writes the planes as one flat row (vectors
    straddle planes of 529 and 20 floats), streamed when it has 2^20 floats
    or more: each plane exactly its grad_y / (H * W)."""
    g = rng.standard_normal(shape[:2] + (1, 1)).astype(np.float32)
    expected = np.broadcast_to(g / np.float32(shape[2] * shape[3]), shape)
    _assert_exact(minidnn.adaptive_avg_pool2d_backward(g, shape), expected, "grad_x")


def test_1d_forms(isa, threads, rng):
    x = _input((2, 3, 45), rng)
    y, idx = minidnn.max_pool1d(x, 3, 2, (2, 1), 2, True, return_indices=True)
    y_ref, idx_ref = ref.max_pool1d(x, 3, 2, (2, 1), 2, True, return_indices=True)
    _assert_exact(y, y_ref, "max_pool1d")
    np.testing.assert_array_equal(idx, idx_ref)
    g = rng.standard_normal(y.shape).astype(np.float32)
    expected = ref.max_pool2d_backward(g[:, :, None], idx_ref[:, :, None], (2, 3, 1, 45))[:, :, 0]
    scale = ref.max_pool2d_backward(np.abs(g)[:, :, None], idx_ref[:, :, None], (2, 3, 1, 45))[:, :, 0]
    _assert_close(minidnn.max_pool2d_backward(g, idx, x.shape), expected, scale, "max_pool1d grad_x")
    x = _input(x.shape, rng, specials=False)
    _assert_close(minidnn.avg_pool1d(x, 4, 1, 2, False, False), ref.avg_pool1d(x, 4, 1, 2, False, False),
                  ref.avg_pool1d(np.abs(x), 4, 1, 2, False, False), "avg_pool1d")


@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 2, 0), (3, 1, 1), ((4, 3), (3, 2), (1, 2))], ids=str)
def test_max_pool2d_signed_zero_ties_and_nan_rows(k, s, p, isa, threads, rng):
    """Max pooling without indices reduces separably (rows, then columns):
    the first maximum in scan order still wins (a -0 before a +0 gives -0),
    and input rows holding a NaN send their windows to the direct scan,
    wide rows (several vectors plus a tail) included."""
    x = rng.choice(np.array([-0.0, 0.0, -1.0], np.float32), (2, 3, 19, 75))
    x[0, 1, 7, 30] = x[1, 2, 0, 0] = x[1, 2, 18, 74] = np.nan
    x[0, 2, 4, 11] = np.inf
    x[0, 2, 9, 50] = -np.inf
    y, y_ref = minidnn.max_pool2d(x, k, s, p), ref.max_pool2d(x, k, s, p)
    _assert_exact(y, y_ref, "y")
    np.testing.assert_array_equal(np.signbit(y), np.signbit(y_ref))
    assert np.isnan(y[0, 1]).any() and not np.isnan(y[0, 0]).any()


# Windows of stride 1 or 2 along W (kernel 2 or 3, pad up to 1) and at most 3
# rows along H take the blocked W pass with the taps shifted across blocks:
# rows of 1 to 3 blocks of every ISA's width and their part-filled last block,
# H windows that share rows, skip rows or end in padding (ceil_mode), and
# padding at both ends of every row; average pooling's backward spreads the
# shares through the same shifts.
@pytest.mark.parametrize("kw,sw,pw", [(3, 2, 1), (2, 2, 0), (3, 2, 0), (3, 1, 1), (2, 1, 0)], ids=str)
@pytest.mark.parametrize("kh,sh,ph,ceil_mode", [(3, 2, 1, False), (2, 2, 0, True), (3, 1, 1, False), (2, 3, 1, True),
                                                (3, 3, 0, True)], ids=str)
def test_pooling_shifted_taps(kw, sw, pw, kh, sh, ph, ceil_mode, isa, threads, rng):
    for width in (1, 2, 3, 9, 16, 17, 31, 32, 33, 47, 64, 65, 97):
        if width + 2 * pw < kw:
            continue
        shape = (2, 3, 8, width)
        x = _input(shape, rng, specials=False)
        args = ((kh, kw), (sh, sw), (ph, pw), 1, ceil_mode)
        _assert_exact(minidnn.max_pool2d(x, *args), ref.max_pool2d(x, *args), f"max {width}")
        for count_include_pad in (True, False):
            y_ref = ref.avg_pool2d(x, *args[:3], ceil_mode=ceil_mode, count_include_pad=count_include_pad)
            y = minidnn.avg_pool2d(x, *args[:3], ceil_mode=ceil_mode, count_include_pad=count_include_pad)
            scale = ref.avg_pool2d(np.abs(x), *args[:3], ceil_mode=ceil_mode, count_include_pad=count_include_pad)
            _assert_close(y, y_ref, scale, f"avg {width} {count_include_pad}")
            g = rng.standard_normal(y.shape).astype(np.float32)
            kwargs = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad)
            _assert_close(minidnn.avg_pool2d_backward(g, shape, *args[:3], **kwargs),
                          ref.avg_pool2d_backward(g, shape, *args[:3], **kwargs),
                          ref.avg_pool2d_backward(np.abs(g), shape, *args[:3], **kwargs), f"avg grad_x {width}")
        # A NaN or infinities in one row: the output rows over it take the direct scan.
        x[1, 2, 5, width // 2] = np.nan
        x[0, 1, 3, width - 1] = np.inf
        x[0, 1, 4, 0] = -np.inf
        _assert_exact(minidnn.max_pool2d(x, *args), ref.max_pool2d(x, *args), f"max {width} with NaN")


def test_max_unpool2d(isa, threads, rng):
    x = _input((2, 3, 11, 37), rng, specials=False)
    y, idx = minidnn.max_pool2d(x, 3, 2, 1, return_indices=True)
    out = minidnn.max_unpool2d(y, idx, 3, 2, 1, output_size=x.shape)
    _assert_exact(out, ref.max_unpool2d(y, idx, 3, 2, 1, output_size=x.shape), "unpool")
    # Overlapping windows repeat indices: the last value in scan order stays.
    dup = np.zeros((1, 1, 2, 2), np.int64)
    vals = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    _assert_exact(minidnn.max_unpool2d(vals, dup, 2, 1), ref.max_unpool2d(vals, dup, 2, 1), "duplicates")
    assert minidnn.max_unpool2d(vals, dup, 2, 1)[0, 0, 0, 0] == 3.0
    empty = np.zeros((0, 3, 4, 4), np.float32)
    assert minidnn.max_unpool2d(empty, np.zeros(empty.shape, np.int64), 2).shape == (0, 3, 8, 8)


def test_indices_equal_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _input((2, 4, 23, 41), rng)
    for k, s, p, d, ceil_mode in [(3, 2, 1, 1, False), (2, 2, 0, 1, True), (3, 1, 1, 2, True), ((2, 4), 3, (1, 2), 1, True)]:
        y, idx = minidnn.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
        ty, ti = F.max_pool2d(torch.from_numpy(x), k, s, p, d, ceil_mode, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, ti.numpy())
    y, idx = minidnn.adaptive_max_pool2d(x, (5, 7), return_indices=True)
    ty, ti = F.adaptive_max_pool2d(torch.from_numpy(x), (5, 7), return_indices=True)
    np.testing.assert_array_equal(idx, ti.numpy())


def test_results_do_not_depend_on_threads(rng):
    x = rng.standard_normal((3, 5, 30, 50)).astype(np.float32)
    outs = []
    for t in (1, 2):
        minidnn.set_num_threads(t)
        outs.append((minidnn.avg_pool2d(x, 3, 2, 1), minidnn.avg_pool2d_backward(x[:, :, :15, :25], x.shape, 3, 2, 1),
                     minidnn.adaptive_avg_pool2d(x, 1)))
    minidnn.set_num_threads(2)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_non_contiguous_inputs_and_int32_indices(rng):
    x = rng.standard_normal((2, 3, 9, 12)).astype(np.float32)
    y, idx = minidnn.max_pool2d(x, 2, return_indices=True)
    xf = np.asfortranarray(x)
    assert _C.max_pool2d(xf, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, False, False) is None
    np.testing.assert_array_equal(minidnn.max_pool2d(xf, np.int64(2)), y)
    assert _C.max_pool2d_backward(y, idx.astype(np.int32), 2, 3, 9, 12) is None
    np.testing.assert_array_equal(minidnn.max_pool2d_backward(y, idx.astype(np.int32), x.shape),
                                  minidnn.max_pool2d_backward(y, idx, x.shape))
    np.testing.assert_array_equal(minidnn.avg_pool2d(x[:, :, ::-1], (2, 3), [1, 2]),
                                  minidnn.avg_pool2d(x[:, :, ::-1].copy(), (2, 3), (1, 2)))


X = np.ones((1, 2, 4, 4), np.float32)
Y, IDX = minidnn.max_pool2d(X, 2, return_indices=True)


@pytest.mark.parametrize("call,error,words", [
    (lambda: minidnn.max_pool2d(np.ones((1, 1, 1, 4), np.float32), (2, 1), 1, ((2, 1), (0, 0)), (3, 1)), ValueError,
     ["padding", "window", "wholly in padding"]),
    (lambda: minidnn.max_pool2d(X, 3, padding=3), ValueError, ["padding", "at most", "2", "3"]),
    (lambda: minidnn.avg_pool2d(X, 6), ValueError, ["kernel_size", "padded input", "6"]),
    (lambda: minidnn.max_pool2d(X, 0), ValueError, ["kernel_size", ">= 1"]),
    (lambda: minidnn.max_pool2d(X, 2, padding=-1), ValueError, ["padding", ">= 0"]),
    (lambda: minidnn.max_pool2d(X, 2, padding="same"), ValueError, ["padding", "'same'"]),
    (lambda: minidnn.max_pool2d(X, 2.0), TypeError, ["kernel_size", "int", "float"]),
    (lambda: minidnn.max_pool2d(X[0], 2), ValueError, ["x", "4-D", "(2, 4, 4)"]),
    (lambda: minidnn.max_pool2d(X.astype(np.float64), 2), TypeError, ["x", "float32", "float64"]),
    (lambda: minidnn.max_pool1d(X, 2), ValueError, ["x", "3-D"]),
    (lambda: minidnn.max_pool2d(np.ones((1, 1, 0, 4), np.float32), 1), ValueError, ["x", "at least 1"]),
    (lambda: minidnn.avg_pool2d(X, 2, divisor_override=0), ValueError, ["divisor_override", ">= 1", "0"]),
    (lambda: minidnn.max_pool2d_backward(Y, IDX + 16, X.shape), IndexError, ["indices", "[0, 15]"]),
    (lambda: minidnn.max_pool2d_backward(Y, -IDX - 1, X.shape), IndexError, ["indices"]),
    (lambda: minidnn.max_pool2d_backward(Y, IDX[:, :1], X.shape), ValueError, ["indices", "(1, 2, 2, 2)"]),
    (lambda: minidnn.max_pool2d_backward(Y, IDX.astype(np.float32), X.shape), TypeError, ["indices", "float32"]),
    (lambda: minidnn.max_pool2d_backward(Y, IDX, (1, 3, 4, 4)), ValueError, ["grad_y", "(1, 3, ...)"]),
    (lambda: minidnn.avg_pool2d_backward(Y[:, :, :1], X.shape, 2), ValueError, ["grad_y", "(1, 2, 2, 2)", "(1, 2, 1, 2)"]),
    (lambda: minidnn.avg_pool2d_backward(Y, (1, 2, 4), 2), ValueError, ["input_shape", "4 ints"]),
    (lambda: minidnn.adaptive_avg_pool2d(X, 0), ValueError, ["output_size", ">= 1"]),
    (lambda: minidnn.adaptive_max_pool2d(X, (1, 2, 3)), ValueError, ["output_size", "pair"]),
    (lambda: minidnn.max_unpool2d(Y, IDX + 64, 2), IndexError, ["indices", "[0, 15]"]),
    (lambda: minidnn.max_unpool2d(Y, IDX, 2, output_size=(6, 4)), ValueError, ["output_size", "(6, 4)"]),
    (lambda: minidnn.max_unpool2d(Y, IDX[..., :1], 2), ValueError, ["indices", "shape of x"]),
])
def test_bad_input(call, error, words):
    assert_raises_naming(call, error, words)


def test_entries_check_every_relation():
    """Called directly, skipping Python's normalization, an entry raises
    rather than reading or writing out of bounds."""
    with pytest.raises(ValueError, match="pad_top"):
        _C.max_pool2d(X, 2, 2, 2, 2, -1, 0, 0, 0, 1, 1, False, False)
    with pytest.raises(ValueError, match="stride_w"):
        _C.avg_pool2d(X, 2, 2, 2, 0, 0, 0, 0, 0, 1, 1, False, True, 0)
    with pytest.raises(ValueError, match="3-D"):
        _C.max_pool2d(X[0], 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, False, False)
    with pytest.raises(ValueError, match="grad_y"):
        _C.avg_pool2d_backward(Y, 1, 2, 7, 7, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, False, True, 0)
    with pytest.raises(ValueError, match="output_size"):
        _C.max_unpool2d(Y, IDX, 0, 4)
