"""conv2d's Winograd F(4x4, 3x3) route on its own
(csrc/cpu/conv/conv_forward_winograd.cpp): every case first asserts that
conv2d takes that route on the CPU path under test, then compares with the
float64 reference, on every CPU path and with 1 and 2 threads (outputs
poisoned by conftest): odd H and W (the 4x4 tiles' tails), every padding
form, bias or none and each activation, C and K not multiples of 16, the
blocking edges (several tile blocks, channel chunks of C and of K, tiles of
one A panel from several images), N = 0; bit-identical for 1 and 2 threads.

Error. Winograd is not the direct sum: the input and output transforms
scale values by up to 5 and 8 and the weight transform divides by 24, so
its float32 rounding error is larger than the direct convolution's (the
bound of test_conv.py does not apply). The issue's bound is a relative
error of at most 1e-4; it is checked here two ways, each <= 1e-4:
* max |y - ref| / max |ref| over the output (relative to the output's
  scale), measured at most 2.5e-5 over these cases on every path;
* max over elements of |y - ref| / the condition of its tile: the sum of
  the magnitudes of the terms an output adds up (the same convolution of
  |x| and |w|, plus |b|), its largest over the output's 4x4 tile. The
  tile's, not the output's own: the 16 outputs of a tile are computed
  together from one 6x6 input patch, and their errors are of the order of
  the patch's magnitudes (an output whose 3x3 window is all padding is
  not exactly zero, as in the direct sum, but within rounding of its
  neighbours). Measured at most 2.2e-6 (relative to each output's own
  condition, 1.6e-5 on these cases).
(Measured with other seeds than the tests' own; the direct sum's errors
on the same cases are about 10x smaller.)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minidnn
import minidnn.reference as ref
from conftest import on_every_cpu_path
from minidnn import _C, _runtime
from minidnn.conv import _conv2d_route
from strategies import _conv_paddings, _padded_extent
from test_conv import ACTIVATIONS, ISA_NAMES

TOLERANCE = 1e-4

# (N, C, H, W, K, padding, activation, bias): 3x3, stride 1, groups 1, at
# least 32 tiles of 4x4 outputs over the batch (the route's rule).
CASES = [
    (1, 24, 23, 23, 24, 1, None, True),                     # the smallest channel counts routed
    (4, 33, 9, 11, 35, 1, "relu", True),                    # odd sizes: partial tiles at the bottom and right
    (8, 37, 5, 7, 41, 1, "leaky_relu", False),
    (32, 34, 3, 3, 33, "valid", "sigmoid", True),           # one output: a single tile, 15 of 16 dropped
    (6, 33, 13, 10, 45, "valid", "tanh", True),
    (8, 40, 6, 6, 50, 2, None, False),                      # pads of 2: whole tile rows of zeros read
    (6, 36, 10, 9, 39, (1, 0), "relu", True),               # a pair
    (8, 40, 5, 6, 50, ((0, 2), (2, 1)), "leaky_relu", True),  # a pair of pairs, asymmetric
    (6, 35, 8, 12, 37, "same", "tanh", False),
    (32, 33, 1, 1, 34, 1, None, True),                      # a 1x1 image: all but the centre tap padding
    (9, 32, 5, 5, 33, 1, "sigmoid", True),                  # 4 tiles an image: A panels span images
    (1, 40, 41, 37, 40, 1, "relu", True),                   # several tile blocks
    (8, 400, 6, 5, 33, 1, None, True),                      # C > kc on every path: several C chunks
    (4, 35, 9, 9, 150, 1, "leaky_relu", True),              # K > 128: several output channel chunks
    (2, 64, 14, 14, 64, 1, "relu", True),                   # ResNet-50 3x3 layers (at reduced batch)
    (8, 512, 7, 7, 64, 1, None, True),
]


def _ids(case):
    n, c, h, w, k, padding, activation, bias = case
    return f"x{(n, c, h, w)}-k{k}-pad{padding}-{activation}-{'b' if bias else 'nob'}"


def _data(rng, n, c, h, w, k, bias):
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    # Weights of unit fan-in variance, as in a trained network (outputs of order 1).
    wt = rng.standard_normal((k, c, 3, 3), dtype=np.float32) / np.float32(np.sqrt(9 * c))
    b = rng.standard_normal(k, dtype=np.float32) if bias else None
    return x, wt, b


def _tile_maximum(a):
    """Each element of a (N, K, P, Q) array replaced by the largest of its
    4x4 output tile (tiles from output (0, 0), as the route cuts them)."""
    n, k, p, q = a.shape
    tiles = np.zeros((n, k, -(-p // 4) * 4, -(-q // 4) * 4))
    tiles[:, :, :p, :q] = a
    tiles = tiles.reshape(n, k, tiles.shape[2] // 4, 4, tiles.shape[3] // 4, 4).max(axis=(3, 5))
    return np.repeat(np.repeat(tiles, 4, axis=2), 4, axis=3)[:, :, :p, :q]


def _errors(y, x, wt, b, padding, activation):
    """(max |y - ref| / max |ref|, max |y - ref| / the condition of its tile)."""
    expected = ACTIVATIONS[activation](ref.conv2d(x, wt, b, padding=padding))
    condition = _tile_maximum(ref.conv2d(np.abs(x), np.abs(wt), None if b is None else np.abs(b), padding=padding))
    if activation in ("sigmoid", "tanh"):  # they add a few ulp of their own output
        condition = condition + np.abs(expected)
    assert y.shape == expected.shape
    diff = np.abs(np.asarray(y, dtype=np.float64) - expected)
    return float(diff.max() / np.abs(expected).max()), float(np.max(diff / np.maximum(condition, 1e-30)))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_winograd_route(isa, threads, rng, case):
    n, c, h, w, k, padding, activation, bias = case
    x, wt, b = _data(rng, n, c, h, w, k, bias)
    assert _conv2d_route(x, wt, padding=padding) == "winograd"
    y = minidnn.conv2d(x, wt, b, padding=padding, activation=activation)
    assert y.dtype == np.float32
    assert not np.isnan(y).any(), "NaN: an output left unwritten"
    scale_err, condition_err = _errors(y, x, wt, b, padding, activation)
    assert scale_err <= TOLERANCE, f"max error {scale_err:.3g} of the output's scale"
    assert condition_err <= TOLERANCE, f"max error {condition_err:.3g} relative to the condition"


def test_empty_batch(isa, threads):
    x = np.zeros((0, 40, 23, 23), np.float32)
    wt = np.ones((33, 40, 3, 3), np.float32)
    # N = 0 has nothing to compute, so it takes no algorithm (the same shape
    # at N = 1 is Winograd's).
    assert _conv2d_route(x, wt, padding=1) == "none"
    assert _conv2d_route(np.zeros((1, 40, 23, 23), np.float32), wt, padding=1) == "winograd"
    y = minidnn.conv2d(x, wt, np.ones(33, np.float32), padding=1, activation="relu")
    assert y.shape == (0, 33, 23, 23) and y.dtype == np.float32


@pytest.mark.parametrize(
    "x_shape, k, kwargs, route",
    [
        ((1, 23, 28, 28), 64, dict(padding=1), "taps"),       # too few input channels
        ((1, 64, 28, 28), 23, dict(padding=1), "taps"),       # too few output channels
        ((1, 24, 28, 28), 24, dict(padding=1), "winograd"),
        ((1, 512, 7, 7), 512, dict(padding=1), "implicit_gemm"),  # too few tiles (4); 49 positions, weight in place
        ((7, 512, 7, 7), 512, dict(padding=1), "taps"),       # 28 tiles
        ((8, 512, 7, 7), 512, dict(padding=1), "winograd"),   # 32 tiles
        ((1, 64, 28, 28), 64, dict(padding=1, stride=2), "implicit_gemm"),
        ((1, 64, 28, 28), 64, dict(padding=2, dilation=2), "taps"),
        ((1, 64, 28, 28), 64, dict(padding=1, groups=2), "taps"),
    ],
)
def test_route_rule(x_shape, k, kwargs, route):
    """Only 3x3 stride-1 undilated ungrouped layers with at least 24
    channels in and out and 32 tiles go to Winograd, on every path (the
    rule is by shape alone)."""
    groups = kwargs.get("groups", 1)
    x = np.zeros(x_shape, np.float32)
    wt = np.zeros((k, x_shape[1] // groups, 3, 3), np.float32)
    for isa_name in ISA_NAMES:
        if _C.cpu_supports()[isa_name]:
            with _runtime._isa(isa_name):
                assert _conv2d_route(x, wt, **kwargs) == route, isa_name


@pytest.mark.parametrize("isa_name", ISA_NAMES)
def test_bit_identical_across_thread_counts(isa_name, rng):
    """Two threads split the tile blocks (first case), the output channel
    chunks of one block (second: 32 tiles, one block) or both (third)."""
    if not _C.cpu_supports()[isa_name]:
        pytest.skip(f"this CPU lacks {isa_name}")
    cases = [(2, 40, 30, 29, 36, 1, "relu", True), (8, 64, 7, 7, 300, 1, None, True),
             (3, 48, 13, 15, 140, "same", "tanh", False)]
    previous = minidnn.get_num_threads()
    try:
        with _runtime._isa(isa_name):
            for n, c, h, w, k, padding, activation, bias in cases:
                x, wt, b = _data(rng, n, c, h, w, k, bias)
                assert _conv2d_route(x, wt, padding=padding) == "winograd"
                outs = []
                for threads in (1, 2):
                    minidnn.set_num_threads(threads)
                    outs.append(minidnn.conv2d(x, wt, b, padding=padding, activation=activation))
                np.testing.assert_array_equal(outs[0], outs[1], err_msg=str((n, c, h, w, k, padding)))
    finally:
        minidnn.set_num_threads(previous)


# Each example runs the float64 reference and six kernel calls.
@settings(max_examples=40)
@given(data=st.data())
def test_winograd_shapes(data):
    """Random shapes the route takes: sides 1..20, C and K 24..40, every
    padding form, each activation, bias or not, the batch of 32 tiles and
    up to 3 more images; every path and thread count within the bound, 1
    and 2 threads bit-identical."""
    c, k = data.draw(st.integers(24, 40)), data.draw(st.integers(24, 40))
    h, w = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 20))
    padding = data.draw(_conv_paddings())
    p, q = (_padded_extent(size, 3, 1, 1, padding, axis) - 2 for axis, size in enumerate((h, w)))
    assume(p >= 1 and q >= 1)
    # Enough images for the route's 32 tiles, and up to 3 more.
    n = -(-32 // (-(-p // 4) * -(-q // 4))) + data.draw(st.integers(0, 3))
    activation = data.draw(st.sampled_from(list(ACTIVATIONS)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, wt, b = _data(rng, n, c, h, w, k, data.draw(st.booleans()))
    assert _conv2d_route(x, wt, padding=padding) == "winograd"
    outs = on_every_cpu_path(lambda: minidnn.conv2d(x, wt, b, padding=padding, activation=activation))
    for path, y in outs.items():
        assert not np.isnan(y).any(), path
        scale_err, condition_err = _errors(y, x, wt, b, padding, activation)
        assert scale_err <= TOLERANCE and condition_err <= TOLERANCE, (path, scale_err, condition_err)
    for isa in ISA_NAMES:
        if f"{isa}/t1" in outs:
            np.testing.assert_array_equal(outs[f"{isa}/t1"], outs[f"{isa}/t2"], err_msg=isa)


# ---------------------------------------------------------------------------
# Backward data on this route (winograd.h): grad_x of a 3x3 stride-1
# undilated layer with groups 1 is the convolution of grad_y (K channels)
# with the kernel rotated by 180 degrees and its channel axes swapped, into
# C channels, padded by 2 - pad on each side; it takes this route when that
# convolution would (at least 24 channels each way, 32 tiles of grad_x).
# Same error, same bound: the two measures above, on that convolution
# (measured on these cases, other seeds, every path: at most 9.5e-6 of
# grad_x's scale, 2.1e-6 of the tile's condition).
# ---------------------------------------------------------------------------

# (N, C, H, W, K, ((top, bottom), (left, right))): x (N, C, H, W), grad_y
# (N, K, P, Q) of the layer with those pads (each at most 2, so that the
# rotated convolution's pads are not negative).
BACKWARD_DATA_CASES = [
    (1, 24, 23, 23, 24, ((1, 1), (1, 1))),      # the smallest channel counts routed
    (4, 33, 9, 11, 35, ((1, 1), (1, 1))),       # odd sizes: partial tiles of grad_x
    (6, 36, 10, 9, 39, ((1, 0), (0, 2))),       # asymmetric pads
    (3, 40, 13, 10, 45, ((0, 0), (0, 0))),      # "valid": the rotated convolution pads by 2
    (8, 40, 6, 6, 50, ((2, 2), (2, 2))),        # pads of 2: the rotated one pads by 0
    (4, 33, 12, 12, 400, ((1, 1), (1, 1))),     # K > kc on every path: several chunks of grad_y's channels
    (4, 150, 9, 9, 35, ((1, 1), (1, 1))),       # C > 128: several chunks of grad_x's channels
    (1, 40, 41, 37, 40, ((1, 1), (1, 1))),      # several tile blocks
    (8, 512, 7, 7, 64, ((1, 1), (1, 1))),       # ResNet-50's 3x3 at 7 (fewer output channels)
]


def _backward_data_ids(case):
    n, c, h, w, k, pads = case
    return f"x{(n, c, h, w)}-k{k}-pad{pads}"


def _backward_data(rng, case):
    """(grad_x, the rotated convolution as conv2d: (grad_y, its weight, its
    padding), the reference grad_x) of a case."""
    n, c, h, w, k, ((top, bottom), (left, right)) = case
    x, wt, _ = _data(rng, n, c, h, w, k, False)
    p, q = h + top + bottom - 2, w + left + right - 2
    gy = rng.standard_normal((n, k, p, q), dtype=np.float32)
    gx = _C._conv2d_backward_data(gy, wt, x.shape, 1, 1, 1, 1, top, left, 1)
    rotated = np.ascontiguousarray(wt[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    padding = ((2 - top, 2 - bottom), (2 - left, 2 - right))
    expected = ref.conv2d_backward(gy, x, wt, 1, ((top, bottom), (left, right)), 1, 1)[0]
    return gx, (gy, rotated, padding), expected


@pytest.mark.parametrize("case", BACKWARD_DATA_CASES, ids=_backward_data_ids)
def test_backward_data(isa, threads, rng, case):
    gx, (gy, rotated, padding), expected = _backward_data(rng, case)
    # The route: the rotated convolution is Winograd's, and grad_x is its
    # result bit for bit (the same transforms and GEMMs, the kernel read
    # rotated in place rather than copied).
    assert _conv2d_route(gy, rotated, padding=padding) == "winograd"
    np.testing.assert_array_equal(gx, minidnn.conv2d(gy, rotated, None, padding=padding))
    assert not np.isnan(gx).any(), "NaN: an output left unwritten"
    # The oracle is the reference's own backward; the condition is that of
    # the rotated convolution's tiles.
    diff = np.abs(np.asarray(gx, dtype=np.float64) - expected)
    condition = _tile_maximum(ref.conv2d(np.abs(gy), np.abs(rotated), None, padding=padding))
    scale_err = float(diff.max() / np.abs(expected).max())
    condition_err = float(np.max(diff / np.maximum(condition, 1e-30)))
    assert scale_err <= TOLERANCE, f"max error {scale_err:.3g} of grad_x's scale"
    assert condition_err <= TOLERANCE, f"max error {condition_err:.3g} relative to the condition"


@pytest.mark.parametrize("isa_name", ISA_NAMES)
def test_backward_data_bit_identical_across_thread_counts(isa_name, rng):
    if not _C.cpu_supports()[isa_name]:
        pytest.skip(f"this CPU lacks {isa_name}")
    previous = minidnn.get_num_threads()
    try:
        with _runtime._isa(isa_name):
            for case in [(2, 40, 30, 29, 36, ((1, 1), (1, 1))), (8, 300, 7, 7, 64, ((1, 1), (1, 1)))]:
                outs = []
                for threads in (1, 2):
                    minidnn.set_num_threads(threads)
                    outs.append(_backward_data(np.random.default_rng(7), case)[0])
                np.testing.assert_array_equal(outs[0], outs[1], err_msg=str(case))
    finally:
        minidnn.set_num_threads(previous)


@settings(max_examples=25)
@given(data=st.data())
def test_backward_data_shapes(data):
    """Random layers whose grad_x takes the route: sides 1..20, C and K
    24..40, each pad 0..2, the batch of 32 tiles of grad_x and up to 2 more
    images; every path and thread count within the bound and equal to the
    rotated convolution, 1 and 2 threads bit-identical."""
    c, k = data.draw(st.integers(24, 40)), data.draw(st.integers(24, 40))
    h, w = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 20))
    pads = tuple(tuple(data.draw(st.integers(0, 2)) for _ in range(2)) for _ in range(2))
    assume(h + sum(pads[0]) >= 3 and w + sum(pads[1]) >= 3)
    n = -(-32 // (-(-h // 4) * -(-w // 4))) + data.draw(st.integers(0, 2))
    case = (n, c, h, w, k, pads)
    seed = data.draw(st.integers(0, 2**32 - 1))
    outs = on_every_cpu_path(lambda: _backward_data(np.random.default_rng(seed), case)[0])
    _, (gy, rotated, padding), expected = _backward_data(np.random.default_rng(seed), case)
    condition = _tile_maximum(ref.conv2d(np.abs(gy), np.abs(rotated), None, padding=padding))
    for path, gx in outs.items():
        diff = np.abs(np.asarray(gx, dtype=np.float64) - expected)
        scale_err = float(diff.max() / max(np.abs(expected).max(), 1e-30))
        condition_err = float(np.max(diff / np.maximum(condition, 1e-30)))
        assert scale_err <= TOLERANCE and condition_err <= TOLERANCE, (path, scale_err, condition_err)
    for isa in ISA_NAMES:
        if f"{isa}/t1" in outs:
            np.testing.assert_array_equal(outs[f"{isa}/t1"], outs[f"{isa}/t2"], err_msg=isa)
            with _runtime._isa(isa):
                assert _conv2d_route(gy, rotated, padding=padding) == "winograd", isa
                np.testing.assert_array_equal(outs[f"{isa}/t1"], minidnn.conv2d(gy, rotated, None, padding=padding))
