"""The conv2d backward drivers through their private _C entries
(_conv2d_backward_data, _conv2d_backward_weight) against the float64
reference: every CPU path, 1 and 2 threads, random geometries (strides,
dilations, asymmetric pads, groups up to depthwise with channel
multipliers, 1x1, kernels as large as the padded input, explicit output
sizes shorter than the padding allows), real network layers, N = 0,
bit-identical results across thread counts, and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import minidnn
import minidnn.reference as ref
from minidnn import _C

from conftest import assert_agrees, assert_raises_naming, assert_same_at_thread_counts


class Case:
    """A geometry in the reference's terms (((top, bottom), (left, right))
    padding) and the drivers' (top / left padding and P, Q taken from
    grad_y). crop_p / crop_q drop that many output rows / columns at the end:
    an explicit P, Q smaller than the padding gives, whose windows leave the
    last input rows untouched; the reference sees grad_y extended by zeros
    there, which is the same thing."""

    def __init__(self, n, c, h, w, k, r, s, stride=(1, 1), dil=(1, 1), pads=((0, 0), (0, 0)), groups=1,
                 crop_p=0, crop_q=0):
        self.n, self.c, self.h, self.w, self.k, self.r, self.s = n, c, h, w, k, r, s
        self.stride, self.dil, self.pads, self.groups = stride, dil, pads, groups
        self.p_full = (h + sum(pads[0]) - dil[0] * (r - 1) - 1) // stride[0] + 1
        self.q_full = (w + sum(pads[1]) - dil[1] * (s - 1) - 1) // stride[1] + 1
        assert self.p_full >= 1 and self.q_full >= 1, "the reference needs at least one window"
        self.p = max(self.p_full - crop_p, 0)
        self.q = max(self.q_full - crop_q, 0)

    def __repr__(self):
        return (f"x{(self.n, self.c, self.h, self.w)}-w{(self.k, self.c // self.groups, self.r, self.s)}"
                f"-st{self.stride}-d{self.dil}-pad{self.pads}-g{self.groups}-pq{(self.p, self.q)}")

    def args(self):
        return (*self.stride, *self.dil, self.pads[0][0], self.pads[1][0], self.groups)

    def data(self, rng):
        x = rng.standard_normal((self.n, self.c, self.h, self.w), dtype=np.float32)
        w = rng.standard_normal((self.k, self.c // self.groups, self.r, self.s), dtype=np.float32)
        gy = rng.standard_normal((self.n, self.k, self.p, self.q), dtype=np.float32)
        return x, w, gy

    def reference(self, gy, x, w):
        full = np.zeros((self.n, self.k, self.p_full, self.q_full))
        full[:, :, : self.p, : self.q] = gy
        return ref.conv2d_backward(full, x, w, self.stride, self.pads, self.dil, self.groups)


def _random_case(rng):
    groups_kind = rng.choice(["1", "2", "depthwise"])
    groups = {"1": 1, "2": 2, "depthwise": int(rng.integers(1, 6))}[groups_kind]
    cg = 1 if groups_kind == "depthwise" else int(rng.integers(1, 6))
    kg = int(rng.integers(1, 4)) if groups_kind == "depthwise" else int(rng.integers(1, 7))  # multiplier
    stride = tuple(int(v) for v in rng.integers(1, 4, 2))
    dil = tuple(int(v) for v in rng.integers(1, 3, 2))
    if rng.random() < 0.2:
        r = s = 1
    else:
        r, s = (int(v) for v in rng.integers(1, 6, 2))
    pads = tuple(tuple(int(v) for v in rng.integers(0, 4, 2)) for _ in range(2))
    n = int(rng.integers(0, 3)) if rng.random() < 0.15 else int(rng.integers(1, 4))
    # At least one window: H + pads >= the dilated kernel. Sometimes exactly
    # that (the kernel as large as the padded input: one output row).
    h_min = max(1, dil[0] * (r - 1) + 1 - sum(pads[0]))
    w_min = max(1, dil[1] * (s - 1) + 1 - sum(pads[1]))
    exact = rng.random() < 0.2
    h = h_min if exact else h_min + int(rng.integers(0, 12))
    w = w_min if exact else w_min + int(rng.integers(0, 12))
    crop = rng.random() < 0.2
    return Case(n, cg * groups, h, w, kg * groups, r, s, stride, dil, pads, groups,
                crop_p=int(rng.integers(0, 3)) if crop else 0, crop_q=int(rng.integers(0, 3)) if crop else 0)


RANDOM_CASES = [_random_case(np.random.default_rng(1000 + i)) for i in range(60)]

FIXED_CASES = [
    Case(1, 1, 1, 1, 1, 1, 1),
    Case(2, 3, 5, 7, 4, 1, 1),                                         # 1x1
    Case(2, 16, 9, 9, 33, 1, 1),                                       # 1x1 over SIMD tails
    Case(2, 40, 7, 11, 17, 1, 1),                                      # 1x1, C > K, few positions: grad_x on taps
    # 1x1 grad_weight with one operand read in place: x's rows (C > K, the
    # product transposed) over two K blocks of positions; grad_y's rows in
    # 4 strips of 2 panels (the threads split the panels too); groups; and
    # an operand too large to pack whole, where the GEMM runs instead.
    Case(2, 40, 23, 29, 17, 1, 1),
    Case(2, 40, 11, 13, 50, 1, 1),
    Case(2, 12, 9, 10, 18, 1, 1, groups=3),
    Case(1, 96, 40, 70, 100, 1, 1),
    Case(2, 8, 8, 8, 16, 1, 1, stride=(2, 2)),                         # strided 1x1 (downsampling)
    Case(1, 5, 7, 6, 3, 3, 3, pads=((1, 1), (1, 1))),
    Case(2, 17, 13, 11, 19, 3, 3, pads=((1, 1), (1, 1))),              # primes
    Case(1, 4, 4, 4, 4, 3, 3, pads=((0, 2), (2, 0))),                  # asymmetric
    Case(1, 3, 4, 4, 2, 6, 6, pads=((1, 1), (1, 1))),                  # kernel = padded input
    Case(1, 3, 4, 4, 2, 7, 7, dil=(2, 2), pads=((4, 5), (5, 4))),      # dilated kernel past the input
    Case(1, 4, 9, 9, 4, 3, 3, stride=(3, 3), dil=(2, 2), pads=((2, 1), (0, 3)), groups=2),
    Case(2, 6, 10, 10, 12, 3, 3, pads=((1, 1), (1, 1)), groups=6),     # depthwise, multiplier 2
    Case(2, 8, 10, 10, 8, 5, 5, stride=(2, 2), pads=((2, 2), (2, 2)), groups=8),
    Case(1, 6, 11, 11, 6, 3, 3, pads=((1, 1), (1, 1)), groups=6, crop_p=2, crop_q=1),
    Case(1, 4, 12, 12, 4, 3, 3, stride=(2, 2), pads=((1, 1), (1, 1)), crop_p=3, crop_q=5),  # P = Q = 1
    Case(0, 4, 5, 5, 6, 3, 3, pads=((1, 1), (1, 1))),                  # N = 0
    Case(1, 4, 5, 5, 6, 3, 3, crop_p=3, crop_q=1),                     # P = 0: grad_x and grad_w zero
    Case(2, 3, 23, 23, 8, 7, 7, stride=(2, 2), pads=((3, 3), (3, 3))),  # ResNet stem, scaled down
    Case(1, 6, 7, 9, 400, 3, 3, pads=((1, 1), (1, 1)), groups=2),     # K/groups past the GEMM's K block
    # Grouped with few channels a group: threads split the groups of the
    # weight gradient; stride 1 takes grad_x through the forward's tap or
    # first-layer route.
    Case(2, 64, 14, 14, 64, 3, 3, pads=((1, 1), (1, 1)), groups=8),
    Case(2, 15, 13, 11, 21, 5, 3, stride=(2, 1), pads=((2, 1), (0, 2)), groups=3),  # groups split 1 / 2
    Case(2, 15, 12, 11, 21, 5, 3, pads=((2, 1), (0, 2)), groups=3),    # stride 1, asymmetric pads
    Case(1, 12, 9, 17, 18, 3, 3, dil=(2, 1), pads=((2, 2), (1, 1)), groups=3, crop_p=1, crop_q=2),
    Case(1, 12, 9, 10, 18, 3, 3, pads=((3, 0), (1, 1)), groups=3),    # pad past the kernel: the GEMM route
    Case(1, 128, 14, 14, 128, 3, 3, pads=((1, 1), (1, 1)), groups=2),  # large groups: each GEMM split instead
    # Stride 1, grad_x's phase (K/groups channels in, C/groups out) on the
    # first-layer route's direct kernel: 10 outputs a group (past avx512's
    # block of 8), dilated, asymmetric pads; then a pad past the kernel
    # (the phase's padding is negative).
    Case(2, 30, 11, 13, 12, 3, 3, dil=(1, 2), pads=((2, 0), (1, 3)), groups=3),
    Case(1, 24, 9, 10, 24, 3, 3, pads=((3, 0), (1, 1)), groups=3),
    # grad_weight's GEMM reduces over tiles of positions that span images
    # (576 taps: tiles of at most 256 positions): 405 positions as 2 tiles
    # of 203, each starting and ending inside an image; 448 positions of 7
    # images, 2 groups.
    Case(5, 64, 9, 9, 20, 3, 3, pads=((1, 1), (1, 1))),
    Case(7, 128, 8, 8, 24, 3, 3, pads=((1, 1), (1, 1)), groups=2),
]

# Real layers (ResNet-50, MobileNet), one or two images: the reference is slow.
NETWORK_CASES = [
    Case(1, 64, 56, 56, 64, 3, 3, pads=((1, 1), (1, 1))),
    Case(2, 256, 14, 14, 256, 3, 3, pads=((1, 1), (1, 1))),
    Case(1, 64, 28, 28, 256, 1, 1),
    Case(1, 256, 28, 28, 64, 1, 1),
    Case(1, 512, 14, 14, 1024, 1, 1, stride=(2, 2)),
    Case(1, 3, 64, 64, 64, 7, 7, stride=(2, 2), pads=((3, 3), (3, 3))),
    Case(2, 144, 28, 28, 144, 3, 3, stride=(2, 2), pads=((0, 1), (0, 1)), groups=144),  # TF "same" padding
    Case(2, 256, 28, 28, 256, 3, 3, pads=((1, 1), (1, 1)), groups=32),  # ResNeXt's 32 groups of 8
]


def _backward(case, x, w, gy, want_bias=True):
    gx = _C._conv2d_backward_data(gy, w, x.shape, *case.args())
    gw, gb = _C._conv2d_backward_weight(gy, x, w.shape, *case.args(), want_bias)
    return gx, gw, gb


def _check(case, rng):
    x, w, gy = case.data(rng)
    gx, gw, gb = _backward(case, x, w, gy)
    expected = case.reference(gy, x, w)
    # Each result is a sum of products: its error is judged against the sum
    # of the magnitudes of those products (the same backward on |values|).
    # Float32 sums of n terms err by about eps * sqrt(n) of that (rounding
    # errors add up like a random walk), so the tolerance grows with the
    # reduction length: K/groups * R * S for grad_x, N * P * Q for the weight
    # and bias; 1e-6 * sqrt(n) is ~15x eps * sqrt(n).
    scales = case.reference(np.abs(gy), np.abs(x), np.abs(w))
    lengths = (case.k // case.groups * case.r * case.s, case.n * case.p * case.q, case.n * case.p * case.q)
    for name, out, exp, scale, length in zip(("grad_x", "grad_weight", "grad_bias"), (gx, gw, gb), expected, scales,
                                             lengths):
        rtol = 1e-6 * max(4.0, np.sqrt(length))
        assert_agrees(out, exp, scale, rtol, path=name)


@pytest.mark.parametrize("case", FIXED_CASES + RANDOM_CASES, ids=repr)
def test_against_reference(isa, threads, rng, case):
    _check(case, rng)


@pytest.mark.parametrize("case", NETWORK_CASES, ids=repr)
def test_network_layers(isa, threads, rng, case):
    _check(case, rng)


def test_without_bias(rng):
    case = Case(2, 4, 6, 6, 5, 3, 3, pads=((1, 1), (1, 1)))
    x, w, gy = case.data(rng)
    gw, gb = _C._conv2d_backward_weight(gy, x, w.shape, *case.args(), False)
    assert gb is None
    assert_agrees(gw, case.reference(gy, x, w)[1], case.reference(np.abs(gy), np.abs(x), np.abs(w))[1], 4e-6)


def test_negative_padding(rng):
    """A negative pad starts the windows inside the input: the rows and
    columns before it are never read, so their gradient is zero."""
    case = Case(2, 4, 9, 8, 6, 3, 3, pads=((0, 1), (0, 0)))
    x, w, gy = case.data(rng)
    top, left = 2, 3
    x_big = np.zeros((2, 4, 9 + top, 8 + left), np.float32)
    x_big[:, :, top:, left:] = x
    args = (1, 1, 1, 1, -top, -left, 1)
    gx = _C._conv2d_backward_data(gy, w, x_big.shape, *args)
    gw, _ = _C._conv2d_backward_weight(gy, x_big, w.shape, *args, False)
    rx, rw, _ = case.reference(gy, x, w)
    sx, sw, _ = case.reference(np.abs(gy), np.abs(x), np.abs(w))
    np.testing.assert_array_equal(gx[:, :, :top], 0)
    np.testing.assert_array_equal(gx[:, :, :, :left], 0)
    assert_agrees(gx[:, :, top:, left:], rx, sx, 4e-6)
    assert_agrees(gw, rw, sw, 1e-5)


@pytest.mark.parametrize("case", [
    Case(3, 32, 20, 20, 48, 3, 3, pads=((1, 1), (1, 1))),
    Case(2, 64, 15, 17, 64, 1, 1),
    Case(2, 40, 23, 29, 17, 1, 1),
    Case(2, 40, 11, 13, 50, 1, 1),
    Case(4, 24, 19, 19, 48, 3, 3, stride=(2, 2), pads=((1, 1), (1, 1)), groups=24),
    Case(2, 3, 40, 40, 16, 7, 7, stride=(2, 2), pads=((3, 3), (3, 3))),
    Case(3, 12, 16, 16, 18, 3, 3, dil=(2, 2), pads=((2, 2), (2, 2)), groups=3),
    Case(3, 64, 14, 14, 64, 3, 3, pads=((1, 1), (1, 1)), groups=8),
    Case(2, 15, 13, 11, 21, 5, 3, stride=(2, 1), pads=((2, 1), (0, 2)), groups=3),
    Case(1, 128, 14, 14, 128, 3, 3, pads=((1, 1), (1, 1)), groups=2),
    Case(5, 64, 9, 9, 20, 3, 3, pads=((1, 1), (1, 1))),                # grad_weight's tiles span images
    Case(8, 64, 7, 7, 48, 3, 3, pads=((1, 1), (1, 1))),                # grad_x on the Winograd route
], ids=repr)
def test_bit_identical_across_threads_and_runs(isa, rng, case):
    x, w, gy = case.data(rng)
    assert_same_at_thread_counts(lambda: _backward(case, x, w, gy))


F = np.ones((2, 4, 6, 6), np.float32)      # grad_y of x (2, 4, 8, 8), weight (4, 2, 3, 3), groups 2
X = np.ones((2, 4, 8, 8), np.float32)
W = np.ones((4, 2, 3, 3), np.float32)
GEOM = (1, 1, 1, 1, 0, 0, 2)


@pytest.mark.parametrize(
    "call,error,words",
    [
        (lambda: _C._conv2d_backward_data(F.astype(np.float64), W, X.shape, *GEOM), TypeError, ["grad_y", "float32"]),
        (lambda: _C._conv2d_backward_data(F, np.asfortranarray(W), X.shape, *GEOM), TypeError, ["weight"]),
        (lambda: _C._conv2d_backward_weight(F, X[:, :, :, ::2], W.shape, *GEOM, True), TypeError, ["x"]),
        (lambda: _C._conv2d_backward_data(F, W, [2, 4, 8, 8.0], *GEOM), TypeError, ["x_shape"]),
        (lambda: _C._conv2d_backward_data(F[0], W, X.shape, *GEOM), ValueError, ["grad_y", "4 dimensions"]),
        (lambda: _C._conv2d_backward_data(F, W, (2, 4, 8), *GEOM), ValueError, ["x_shape", "4"]),
        (lambda: _C._conv2d_backward_data(F, W, (2, 4, -8, 8), *GEOM), ValueError, ["x_shape", "negative"]),
        (lambda: _C._conv2d_backward_data(F, W, (2, 4, 1 << 40, 1 << 40), *GEOM), ValueError, ["too many"]),
        (lambda: _C._conv2d_backward_data(F, W, (3, 4, 8, 8), *GEOM), ValueError, ["grad_y", "(3, 4, P, Q)"]),
        (lambda: _C._conv2d_backward_data(F, W, (2, 6, 8, 8), *GEOM), ValueError, ["weight", "3 channels"]),
        (lambda: _C._conv2d_backward_data(F, W, X.shape, 1, 1, 1, 1, 0, 0, 3), ValueError, ["groups 3"]),
        (lambda: _C._conv2d_backward_data(F, W, X.shape, 0, 1, 1, 1, 0, 0, 2), ValueError, ["stride_h"]),
        (lambda: _C._conv2d_backward_data(F, W, X.shape, 1, 1, 1, 0, 0, 0, 2), ValueError, ["dil_w"]),
        (lambda: _C._conv2d_backward_data(F, W, X.shape, 1, 1, 1, 1, 1 << 40, 0, 2), ValueError, ["pad_top"]),
        (lambda: _C._conv2d_backward_data(F, W, X.shape, 1, 1, 1, 1, 0, 0, 0), ValueError, ["groups"]),
        (lambda: _C._conv2d_backward_data(F, W[:, :, :0], X.shape, *GEOM), ValueError, ["kernel"]),
        (lambda: _C._conv2d_backward_weight(F, X, (4, 2, 3), *GEOM, True), ValueError, ["weight_shape"]),
        (lambda: _C._conv2d_backward_weight(F, X, (6, 2, 3, 3), *GEOM, True), ValueError, ["grad_y", "(2, 6, P, Q)"]),
        (lambda: _C._conv2d_backward_weight(F, X, (4, 4, 3, 3), *GEOM, True), ValueError, ["weight", "2 channels"]),
        (lambda: _C._conv2d_backward_weight(F, X[:1], W.shape, *GEOM, True), ValueError, ["grad_y", "(1, 4, P, Q)"]),
    ],
)
def test_bad_input(call, error, words):
    assert_raises_naming(call, error, words)
