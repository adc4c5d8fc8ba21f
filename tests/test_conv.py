"""The public convolution ops (conv2d, conv2d_backward, conv_transpose2d,
conv_transpose2d_backward, conv1d, conv1d_backward) against the float64
reference: a randomized sweep of every parameter (odd sizes and SIMD tails,
N = 0, 1x1 images, kernels as large as the padded input, groups 1, 2 and
C, every padding form, every fused activation), every CPU path, 1 and 2
threads, poisoned outputs; bit-identical results across thread counts;
agreement with torch.nn.functional when it imports; bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minidnn
import minidnn.reference as ref
from minidnn import _C
from minidnn.conv import _conv2d_on_route, _conv2d_route

from conftest import assert_raises_naming

ISA_NAMES = ["avx512", "avx2", "scalar"]

ACTIVATIONS = {
    None: lambda v: v,
    "relu": lambda v: np.maximum(v, 0.0),
    "leaky_relu": lambda v: np.where(v > 0, v, 0.01 * v),
    "sigmoid": lambda v: 0.5 * (1.0 + np.tanh(0.5 * v)),
    "tanh": np.tanh,
}

# Per-element error bound, relative to the condition of each output (the
# same sum over the magnitudes of its terms): float32 accumulation of L
# terms in a fixed order has a worst case of L ulp but a typical error that
# grows as sqrt(L) (the roundings are independent), so the tolerance is
# 2^-20 x sqrt(L): 1e-6 at L = 1, 5e-5 at the largest L here (2700).
def _tolerance(reduction: int) -> float:
    return 2.0**-20 * math.sqrt(max(reduction, 1))


def _activated_condition(activation, condition, expected):
    """The condition of f(conv): f' <= 1 carries the convolution's error
    through; sigmoid and tanh add a few ulp of their own output."""
    return condition + np.abs(expected) if activation in ("sigmoid", "tanh") else condition


def _check(out, expected, condition, reduction, what=""):
    out = np.asarray(out)
    assert out.dtype == np.float32, what
    assert out.shape == expected.shape, (what, out.shape, expected.shape)
    assert not np.isnan(out).any(), f"{what}: NaN (an output left unwritten?)"
    if out.size:
        err = np.max(np.abs(out.astype(np.float64) - expected) / np.maximum(condition, 1e-30))
        assert err <= _tolerance(reduction), f"{what}: error {err:.3g} relative to the condition"


def _pads_of(padding, sizes, kernels, strides, dilations):
    """((top, bottom), (left, right)) of a padding form, for the sweep's validity check."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        out = []
        for size, k, st, d in zip(sizes, kernels, strides, dilations):
            total = max(0, (-(-size // st) - 1) * st + (k - 1) * d + 1 - size)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    if isinstance(padding[0], tuple):
        return padding
    return (padding[0], padding[0]), (padding[1], padding[1])


class Case2d:
    def __init__(self, n, c, h, w, k, r, s, stride=1, padding=0, dilation=1, groups=1, activation=None, bias=True):
        self.n, self.c, self.h, self.w, self.k, self.r, self.s = n, c, h, w, k, r, s
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.activation, self.bias = activation, bias

    def __repr__(self):
        return (f"x{(self.n, self.c, self.h, self.w)}-w{(self.k, self.c // self.groups, self.r, self.s)}-st{self.stride}"
                f"-pad{self.padding}-d{self.dilation}-g{self.groups}-{self.activation}-{'b' if self.bias else 'nob'}")

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def reduction(self):
        return self.c // self.groups * self.r * self.s

    def data(self, rng):
        x = rng.standard_normal((self.n, self.c, self.h, self.w), dtype=np.float32)
        w = rng.standard_normal((self.k, self.c // self.groups, self.r, self.s), dtype=np.float32)
        b = rng.standard_normal(self.k, dtype=np.float32) if self.bias else None
        return x, w, b


def _valid(case) -> bool:
    st = case.stride if isinstance(case.stride, tuple) else (case.stride,) * 2
    d = case.dilation if isinstance(case.dilation, tuple) else (case.dilation,) * 2
    pads = _pads_of(case.padding, (case.h, case.w), (case.r, case.s), st, d)
    return (case.h + sum(pads[0]) >= d[0] * (case.r - 1) + 1) and (case.w + sum(pads[1]) >= d[1] * (case.s - 1) + 1)


def _sweep(count: int, seed: int):
    """Random conv2d geometries (fixed seed): sizes 1..19 (past the 16-lane
    tails), strides 1..3, dilations 1..3, groups 1, 2 or C (depthwise, with
    channel multipliers), every padding form, every activation."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        groups_kind = rng.integers(0, 3)
        cg = int(rng.integers(1, 6))
        groups = 1 if groups_kind == 0 else (2 if groups_kind == 1 else int(rng.integers(2, 9)))
        c = cg * groups if groups_kind != 2 else groups  # depthwise: C_g = 1
        kg = int(rng.integers(1, 8)) if groups_kind != 2 else int(rng.integers(1, 3))
        r, s = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 4, 2))
        form = rng.integers(0, 5)
        padding = [
            int(rng.integers(0, 3)),
            (int(rng.integers(0, 3)), int(rng.integers(0, 3))),
            tuple(tuple(int(v) for v in rng.integers(0, 4, 2)) for _ in range(2)),
            "valid",
            "same",
        ][form]
        case = Case2d(
            int(rng.integers(1, 4)), c, int(rng.integers(1, 20)), int(rng.integers(1, 20)), kg * groups, r, s,
            stride, padding, dilation, groups, list(ACTIVATIONS)[int(rng.integers(0, 5))], bool(rng.integers(0, 2)),
        )
        if _valid(case):
            cases.append(case)
    return cases


CASES_2D = _sweep(40, 2024) + [
    Case2d(0, 3, 5, 5, 4, 3, 3, padding=1),                            # N = 0
    Case2d(2, 3, 1, 1, 5, 1, 1, activation="relu"),                    # 1x1 images
    Case2d(2, 4, 7, 6, 3, 7, 6),                                       # kernel = input
    Case2d(1, 4, 5, 4, 3, 7, 8, padding=((1, 1), (2, 2))),            # kernel = padded input
    Case2d(2, 6, 9, 9, 6, 3, 3, padding=1, groups=6, activation="tanh"),  # depthwise
    Case2d(2, 64, 9, 9, 40, 1, 1),                                     # 1x1 stride 1 unpadded
    Case2d(1, 32, 15, 17, 33, 1, 1, stride=2),                         # 1x1 strided
    Case2d(2, 16, 14, 14, 29, 3, 3, padding="same", activation="sigmoid"),
    Case2d(1, 300, 6, 6, 20, 3, 3, padding=1),                         # C*R*S = 2700: several K blocks
    Case2d(1, 3, 45, 47, 17, 7, 7, stride=2, padding=3, activation="leaky_relu"),  # conv1-like
    Case2d(1, 8, 40, 33, 15, 3, 3, padding=(1, 0)),                    # > nc outputs: several column blocks
    Case2d(3, 2, 5, 5, 0, 3, 3),                                       # K = 0
    Case2d(2, 9, 9, 13, 43, 3, 3, padding=1),                          # stride 1, implicit GEMM on every path
    Case2d(1, 16, 9, 3, 4, 3, 5, padding=(1, 4), dilation=2),          # stride 1, grid too wide: implicit GEMM
]


@pytest.mark.parametrize("case", CASES_2D, ids=repr)
def test_conv2d(isa, threads, rng, case):
    x, w, b = case.data(rng)
    y = minidnn.conv2d(x, w, b, activation=case.activation, **case.kwargs())
    expected = ACTIVATIONS[case.activation](ref.conv2d(x, w, b, **case.kwargs()))
    condition = ref.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **case.kwargs())
    condition = _activated_condition(case.activation, condition, expected)
    _check(y, expected, condition, case.reduction(), "y")


# The microkernel's tile height (GemmBlocking.mr) of each CPU path
# (csrc/cpu/gemm/gemm_<isa>.cpp): the route rule counts A panels of it.
_TILE_ROWS = {"avx512": 14, "avx2": 6, "scalar": 4}


def _output_size(case):
    st = case.stride if isinstance(case.stride, tuple) else (case.stride,) * 2
    d = case.dilation if isinstance(case.dilation, tuple) else (case.dilation,) * 2
    pads = _pads_of(case.padding, (case.h, case.w), (case.r, case.s), st, d)
    return tuple((size + sum(pad) - dd * (k - 1) - 1) // s + 1
                 for size, pad, dd, k, s in zip((case.h, case.w), pads, d, (case.r, case.s), st))


def _few_positions_large_weight(case) -> bool:
    """The rule of csrc/cpu/conv/conv_forward.cpp that sends a shape to the
    implicit GEMM ahead of the tap route: N * P * Q <= 256 output positions
    and a weight of at least 2^16 floats (read in place there)."""
    p, q = _output_size(case)
    return case.n * p * q <= 256 and case.k * (case.c // case.groups) * case.r * case.s >= 1 << 16


def _tap_route(case, isa: str) -> bool:
    """Whether conv2d takes the tap route on `isa` (the rule of
    csrc/cpu/conv/conv_forward_taps.cpp: stride 1, a padded grid row wp = Q +
    (S-1) * dilation at most 2 Q, and a 1x1 kernel or C/groups >= 16 or
    C/groups >= 3 x the A panels of K/groups), unless few positions with a
    large weight go to the implicit GEMM first; the implicit GEMM otherwise."""
    st = case.stride if isinstance(case.stride, tuple) else (case.stride,) * 2
    d = case.dilation if isinstance(case.dilation, tuple) else (case.dilation,) * 2
    q = _output_size(case)[1]
    cg, kg = case.c // case.groups, case.k // case.groups
    a_panels = -(-kg // _TILE_ROWS[isa])
    return (st == (1, 1) and q + (case.s - 1) * d[1] <= 2 * q and not _few_positions_large_weight(case)
            and (case.r * case.s == 1 or cg >= 16 or cg >= 3 * a_panels))


def _random_padding(rng, widest: int):
    """One of the padding forms: an int, a pair, ((top, bottom), (left,
    right)) of pads below `widest`, "valid" or "same"."""
    return [
        int(rng.integers(0, 3)),
        (int(rng.integers(0, 3)), int(rng.integers(0, 3))),
        tuple(tuple(int(v) for v in rng.integers(0, widest, 2)) for _ in range(2)),
        "valid",
        "same",
    ][int(rng.integers(0, 5))]


def _tap_sweep(count: int, seed: int):
    """Random stride-1 geometries with 16..20 channels per group, so that the
    tap route is taken: kernels 1..5 (dilated 1..3), every padding form,
    sizes 1..19, more output channels than one A panel (14 rows on avx512, 6
    on avx2, 4 on scalar) and fewer."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        groups = int(rng.integers(1, 3))
        cg, kg = int(rng.integers(16, 21)), int(rng.integers(1, 31))
        r, s = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        dilation = tuple(int(v) for v in rng.integers(1, 4, 2))
        padding = _random_padding(rng, 4)
        case = Case2d(
            int(rng.integers(1, 4)), cg * groups, int(rng.integers(1, 20)), int(rng.integers(1, 20)), kg * groups,
            r, s, 1, padding, dilation, groups, list(ACTIVATIONS)[int(rng.integers(0, 5))], bool(rng.integers(0, 2)),
        )
        if _valid(case) and all(_tap_route(case, isa) for isa in ISA_NAMES):
            cases.append(case)
    return cases


# The tap route's own cases: the sweep, then its blocking edges.
TAP_CASES = _tap_sweep(30, 4242) + [
    Case2d(1, 400, 5, 6, 9, 3, 3, padding=1),                   # C_g > kc: several channel chunks
    Case2d(2, 16, 37, 29, 5, 3, 3, padding=1, activation="relu"),  # several column blocks of the grid
    Case2d(1, 24, 31, 9, 17, 3, 3, padding="valid"),            # the input read in place as the grid
    Case2d(2, 20, 15, 15, 30, 1, 1),                            # 1x1 read in place
    Case2d(1, 18, 7, 7, 16, 1, 1, padding=2),                   # 1x1 padded: a grid of zeros around
    Case2d(2, 64, 14, 14, 40, 1, 1),                            # 196 columns: 4 as dot products on avx512
    # A kernel one tap wide drops no grid column, so y itself is the
    # accumulator tile (tile_is_y): padded rows (the band), several column
    # blocks and channel chunks summed in y, bias and activation applied there.
    Case2d(2, 17, 9, 11, 23, 3, 1, padding=((1, 2), (0, 0)), activation="sigmoid"),
    Case2d(1, 400, 23, 17, 29, 1, 1, activation="leaky_relu"),
    # Planes of more than 512 floats are copied into the band rather than
    # read in place (kInPlaceMaxPlaneFloats): 1x1 over 3 column blocks, and
    # "valid" 3x3 whose blocks reach the plane's last element.
    Case2d(2, 20, 23, 29, 17, 1, 1, activation="relu"),
    Case2d(1, 16, 26, 24, 9, 3, 3, padding="valid"),
    Case2d(1, 800, 7, 7, 30, 1, 1, groups=2, activation="relu"),  # 49 columns, a dot per channel chunk
    Case2d(1, 16, 6, 40, 7, 2, 7, padding=((0, 3), (5, 0)), dilation=(3, 2)),  # asymmetric, dilated
    Case2d(1, 32, 4, 4, 8, 3, 3, padding=((2, 2), (4, 4))),     # pads wider than the image
    # Inputs of 16 MB and more: the band after next is prefetched while the
    # current one is used (kPrefetchMinInputFloats), its input rows clamped
    # to the image (a padded grid), the next image's after an image's last.
    Case2d(1, 64, 256, 257, 8, 1, 1, padding=1),
    Case2d(2, 64, 182, 182, 5, 1, 1),
    Case2d(1, 64, 1, 65537, 4, 1, 3, padding=((0, 0), (2, 0))),  # a long row: blocks prefetch slices of it
]


@pytest.mark.parametrize("case", TAP_CASES, ids=repr)
def test_conv2d_tap_route(isa, threads, rng, case):
    assert _tap_route(case, isa), case
    x, w, b = case.data(rng)
    y = minidnn.conv2d(x, w, b, activation=case.activation, **case.kwargs())
    expected = ACTIVATIONS[case.activation](ref.conv2d(x, w, b, **case.kwargs()))
    condition = ref.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **case.kwargs())
    condition = _activated_condition(case.activation, condition, expected)
    _check(y, expected, condition, case.reduction(), "y")


# Few output positions and a large weight: the implicit GEMM with the weight
# read in place, ahead of the tap route (the rule in conv_forward.cpp). With
# N * groups * column blocks below the thread count the team packs each
# unit's `col` together (a share of its rows each, cut across K blocks) and
# splits its output channels, or, with many output channels (kOwnPackPanels
# A panels a thread), each thread packs all of `col` for its own rows. One
# unit with at least kSplitKPanels A panels and two K blocks is summed as
# two halves of its K blocks, added at the end, at every thread count.
# Positions whose head columns fill 48-column tiles (49, 196) run avx512's
# 9 x 48 tile (GemmKernels::wide_tile), K past whole tiles of 9 rows.
FEW_POSITION_CASES = [
    Case2d(1, 300, 6, 7, 37, 3, 3, padding=1, activation="relu"),       # 8 K blocks, K and P*Q past whole tiles
    Case2d(1, 512, 7, 7, 128, 3, 3, padding=1),                         # ResNet-50's 7x7 layer, fewer filters
    Case2d(1, 256, 13, 15, 263, 1, 1, activation="tanh"),               # 1x1, 195 positions
    Case2d(3, 128, 5, 5, 130, 2, 2, padding="same", dilation=2),        # a unit per image
    Case2d(1, 64, 17, 19, 67, 5, 5, stride=2, padding=2, activation="leaky_relu"),  # strided
    Case2d(1, 64, 9, 9, 256, 3, 3, padding=1, groups=2, bias=False),    # a unit per group
    Case2d(1, 1000, 1, 1, 67, 1, 1),                                    # one position, 3 K blocks
    Case2d(2, 300, 9, 11, 230, 1, 1, activation="sigmoid"),             # 1x1, x read in place, a unit per image
    Case2d(1, 260, 6, 6, 256, 1, 1, padding=1),                         # 1x1 padded: `col` packed
    # The last ncols % lanes columns as dot products when at most lanes / 4
    # (1..4 of 16 on avx512, 1..2 of 8 on avx2); 195 above: 3 on avx512.
    Case2d(1, 300, 5, 10, 41, 3, 3, padding=1, activation="relu"),      # 50 positions: 2 on avx512 and avx2
    Case2d(1, 256, 14, 14, 45, 3, 3, padding=1, bias=False),            # ResNet-50's 14x14: 4 on avx512
    Case2d(1, 256, 14, 14, 229, 3, 3, padding=1, activation="relu"),    # many filters: the K split
    Case2d(1, 100, 9, 11, 229, 3, 3, padding=1, activation="leaky_relu"),  # K split over 3 K blocks on avx512
    Case2d(1, 512, 7, 7, 300, 1, 1),                                    # 49 positions, x read in place
    Case2d(1, 129, 3, 3, 520, 3, 3, padding=(2, 1), dilation=(2, 1)),   # 9 positions: 1 on avx2
    Case2d(1, 1024, 6, 6, 75, 1, 1, activation="relu"),                 # weight rows 4 KB apart: half tiles
]


@pytest.mark.parametrize("case", FEW_POSITION_CASES, ids=repr)
def test_conv2d_few_positions(isa, threads, rng, case):
    assert _few_positions_large_weight(case), case
    x, w, b = case.data(rng)
    assert _conv2d_route(x, w, **case.kwargs()) == "implicit_gemm"
    y = minidnn.conv2d(x, w, b, activation=case.activation, **case.kwargs())
    expected = ACTIVATIONS[case.activation](ref.conv2d(x, w, b, **case.kwargs()))
    condition = ref.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **case.kwargs())
    condition = _activated_condition(case.activation, condition, expected)
    _check(y, expected, condition, case.reduction(), "y")


def _implicit_sweep(count: int, seed: int):
    """Random geometries for the implicit GEMM forced on them: strides 1..3,
    column stride 1 in half of them (the packing copies stride-1 rows as
    masked vector pieces, tap by tap, and others element by element), kernels 1..5 dilated 1..3, every padding
    form including pads wider than the image, sizes 1..19, 1..40 channels
    (K blocks of C*R*S cut anywhere), output counts with every remainder of
    the vector width (the dot-product tail)."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        r, s = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        padding = _random_padding(rng, 7)
        case = Case2d(
            int(rng.integers(1, 3)), int(rng.integers(1, 41)), int(rng.integers(1, 20)), int(rng.integers(1, 20)),
            int(rng.integers(1, 31)), r, s, (int(rng.integers(1, 4)), [1, 1, 2, 3][int(rng.integers(0, 4))]), padding,
            tuple(int(v) for v in rng.integers(1, 4, 2)), 1, list(ACTIVATIONS)[int(rng.integers(0, 5))],
            bool(rng.integers(0, 2)),
        )
        if _valid(case):
            cases.append(case)
    return cases


@pytest.mark.parametrize("case", _implicit_sweep(32, 1313), ids=repr)
def test_conv2d_implicit_gemm_forced(isa, threads, rng, case):
    x, w, b = case.data(rng)
    y = _conv2d_on_route("implicit_gemm", x, w, b, activation=case.activation, **case.kwargs())
    expected = ACTIVATIONS[case.activation](ref.conv2d(x, w, b, **case.kwargs()))
    condition = ref.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **case.kwargs())
    condition = _activated_condition(case.activation, condition, expected)
    _check(y, expected, condition, case.reduction(), "y")


@pytest.mark.parametrize("isa_name", ISA_NAMES)
def test_few_positions_rule_edges(isa_name):
    """One position more, or one weight float fewer, and the tap route's rule decides again."""
    from minidnn import _runtime

    if not _C.cpu_supports()[isa_name]:
        pytest.skip(f"this CPU lacks {isa_name}")
    edges = [(Case2d(1, 256, 16, 16, 256, 1, 1), "implicit_gemm"),   # 256 positions, 2^16 floats
             (Case2d(1, 256, 16, 17, 256, 1, 1), "taps"),            # 272 positions
             (Case2d(1, 256, 16, 16, 255, 1, 1), "taps"),            # 2^16 - 256 floats
             (Case2d(2, 256, 8, 8, 256, 1, 1), "implicit_gemm"),     # 2 x 64 positions
             (Case2d(5, 256, 8, 8, 256, 1, 1), "taps")]              # 5 x 64
    with _runtime._isa(isa_name):
        for case, route in edges:
            x, w, _ = case.data(np.random.default_rng(0))
            assert _conv2d_route(x, w, **case.kwargs()) == route, case


@pytest.mark.parametrize("isa_name", ISA_NAMES)
def test_both_routes_covered(isa_name):
    """test_conv2d keeps stride-1 cases of both routes on every CPU path."""
    stride_1 = [c for c in CASES_2D if c.stride in (1, (1, 1)) and c.n and c.k]
    assert any(_tap_route(c, isa_name) for c in stride_1)
    assert any(not _tap_route(c, isa_name) for c in stride_1)


@pytest.mark.parametrize("case", CASES_2D[::3] + CASES_2D[-14:], ids=repr)
def test_conv2d_backward(isa, threads, rng, case):
    x, w, _ = case.data(rng)
    y = ref.conv2d(x, w, None, **case.kwargs())
    g = rng.standard_normal(y.shape, dtype=np.float32)
    gx, gw, gb = minidnn.conv2d_backward(g, x, w, **case.kwargs())
    rx, rw, rb = ref.conv2d_backward(g, x, w, **case.kwargs())
    ax, aw, ag = np.abs(x), np.abs(w), np.abs(g)
    cx, cw, cb = ref.conv2d_backward(ag, ax, aw, **case.kwargs())
    pq = int(np.prod(y.shape[2:]))
    _check(gx, rx, cx, case.k // case.groups * case.r * case.s, "grad_x")
    _check(gw, rw, cw, case.n * pq, "grad_weight")
    _check(gb, rb, cb, case.n * pq, "grad_bias")


def _transpose_cases():
    """conv_transpose2d geometries: every padding form as crops, output_padding
    up to max(stride, dilation) - 1, groups 1, 2 and C."""
    cases = []
    rng = np.random.default_rng(77)
    while len(cases) < 24:
        groups = [1, 2, 3][int(rng.integers(0, 3))]
        c, kg = groups * int(rng.integers(1, 4)), int(rng.integers(1, 5))
        r, s = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        output_padding = tuple(int(rng.integers(0, max(st, d))) for st, d in zip(stride, dilation))
        padding = [0, 1, (1, 2), ((0, 2), (1, 0)), "valid", "same"][int(rng.integers(0, 6))]
        h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        full = [(size - 1) * st + d * (k - 1) + 1 + op for size, st, d, k, op in zip((h, w), stride, dilation, (r, s), output_padding)]
        if padding not in ("same", "valid"):
            pads = _pads_of(padding, (h, w), (r, s), stride, dilation)
            if any(f - sum(p) < 1 for f, p in zip(full, pads)):
                continue
        cases.append(dict(n=int(rng.integers(0, 3)), c=c, h=h, w=w, kg=kg, r=r, s=s,
                          kwargs=dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                                      dilation=dilation)))
    return cases


TRANSPOSE_CASES = _transpose_cases()


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: f"x{(c['n'], c['c'], c['h'], c['w'])}-{c['kwargs']}")
def test_conv_transpose2d(isa, threads, rng, case):
    groups = case["kwargs"]["groups"]
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]), dtype=np.float32)
    w = rng.standard_normal((case["c"], case["kg"], case["r"], case["s"]), dtype=np.float32)
    b = rng.standard_normal(case["kg"] * groups, dtype=np.float32)
    y = minidnn.conv_transpose2d(x, w, b, **case["kwargs"])
    expected = ref.conv_transpose2d(x, w, b, **case["kwargs"])
    ax, aw = np.abs(x), np.abs(w)
    _check(y, expected, ref.conv_transpose2d(ax, aw, np.abs(b), **case["kwargs"]), case["c"] * case["r"] * case["s"], "y")
    g = rng.standard_normal(y.shape, dtype=np.float32)
    grads = minidnn.conv_transpose2d_backward(g, x, w, **case["kwargs"])
    expected = ref.conv_transpose2d_backward(g, x, w, **case["kwargs"])
    conditions = ref.conv_transpose2d_backward(np.abs(g), ax, aw, **case["kwargs"])
    lengths = (case["kg"] * case["r"] * case["s"], case["n"] * case["h"] * case["w"], int(np.prod(y.shape)) // max(y.shape[1], 1))
    for name, out, e, cond, length in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected, conditions, lengths):
        _check(out, e, cond, length, name)


CASES_1D = [
    # (n, c, length, k, s, stride, padding, dilation, groups, activation)
    (2, 3, 17, 5, 3, 1, 0, 1, 1, None),
    (1, 4, 33, 6, 5, 2, "same", 1, 2, "relu"),
    (3, 6, 20, 6, 3, 1, "causal", 2, 6, "tanh"),
    (2, 8, 64, 16, 1, 1, "valid", 1, 1, "sigmoid"),
    (1, 5, 9, 7, 4, 3, (2, 1), 2, 1, "leaky_relu"),
    (0, 2, 5, 3, 3, 1, 1, 1, 1, None),
    (2, 2, 1, 3, 1, 1, 0, 1, 1, None),
    (1, 3, 7, 2, 9, 1, (1, 1), 1, 1, None),  # kernel = padded input
    (2, 12, 100, 9, 7, 1, "causal", 3, 3, None),
    # Padded rows longer than the tap route's column blocks of 256 (each
    # block's band holds only the columns it reads), as WaveNet's layers.
    (2, 16, 1031, 16, 2, 1, "causal", 8, 1, None),
    (1, 16, 700, 8, 3, 1, "same", 5, 1, "relu"),
]


@pytest.mark.parametrize("case", CASES_1D, ids=str)
def test_conv1d(isa, threads, rng, case):
    n, c, length, k, s, stride, padding, dilation, groups, activation = case
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = rng.standard_normal((n, c, length), dtype=np.float32)
    w = rng.standard_normal((k, c // groups, s), dtype=np.float32)
    b = rng.standard_normal(k, dtype=np.float32)
    y = minidnn.conv1d(x, w, b, activation=activation, **kwargs)
    expected = ACTIVATIONS[activation](ref.conv1d(x, w, b, **kwargs))
    condition = _activated_condition(activation, ref.conv1d(np.abs(x), np.abs(w), np.abs(b), **kwargs), expected)
    _check(y, expected, condition, c // groups * s, "y")
    g = rng.standard_normal(y.shape, dtype=np.float32)
    grads = minidnn.conv1d_backward(g, x, w, **kwargs)
    expected = ref.conv1d_backward(g, x, w, **kwargs)
    conditions = ref.conv1d_backward(np.abs(g), np.abs(x), np.abs(w), **kwargs)
    lengths = (k // groups * s, n * y.shape[2], n * y.shape[2])
    for name, out, e, cond, length in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected, conditions, lengths):
        _check(out, e, cond, length, name)


# Layers of ResNet-50 and MobileNet (batch 2, spatial sizes cut where the
# float64 reference would be slow): the routes real networks take.
NETWORK_2D = [
    Case2d(2, 3, 56, 56, 64, 7, 7, stride=2, padding=3, activation="relu"),
    Case2d(2, 64, 14, 14, 64, 3, 3, padding=1, activation="relu"),
    Case2d(2, 64, 14, 14, 256, 1, 1),
    Case2d(2, 256, 14, 14, 64, 1, 1, activation="relu"),
    Case2d(2, 128, 14, 14, 128, 3, 3, stride=2, padding=1),
    Case2d(2, 32, 28, 28, 32, 3, 3, padding=1, groups=32, activation="relu"),
]


@pytest.mark.parametrize("case", NETWORK_2D, ids=repr)
def test_network_layers(isa, rng, case):
    x, w, b = case.data(rng)
    x /= 4
    y = minidnn.conv2d(x, w, b, activation=case.activation, **case.kwargs())
    expected = ACTIVATIONS[case.activation](ref.conv2d(x, w, b, **case.kwargs()))
    condition = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), **case.kwargs())
    condition = _activated_condition(case.activation, condition, expected)
    _check(y, expected, condition, case.reduction(), "y")


@pytest.mark.parametrize("isa_name", ISA_NAMES)
def test_bit_identical_across_thread_counts(isa_name, rng):
    """Shapes large enough that 2 threads split images, column blocks and
    (for N = 1) rows of the output among them, on every stride-1 route (the
    first two take the tap route, the third the implicit GEMM, the fourth the
    depthwise kernel, the next two the implicit GEMM with one unit for the
    team: its `col` packed together, then x read in place as `col`; then
    the implicit GEMM's 7x7 and 14x14 layers, whose last columns are dot
    products, the 14x14 one's columns split among the team on avx512; last
    the tap route's 1x1 on 14x14, likewise)."""
    from minidnn import _runtime

    if not _C.cpu_supports()[isa_name]:
        pytest.skip(f"this CPU lacks {isa_name}")
    cases = [Case2d(3, 16, 20, 21, 24, 3, 3, padding=1, activation="relu"),
             Case2d(1, 32, 30, 30, 45, 3, 3, padding="same"),
             Case2d(1, 9, 40, 33, 45, 3, 3, padding=(1, 0), activation="tanh"),
             Case2d(2, 8, 25, 25, 8, 3, 3, padding=1, groups=8),
             FEW_POSITION_CASES[0], FEW_POSITION_CASES[2], FEW_POSITION_CASES[1],
             Case2d(1, 256, 14, 14, 45, 3, 3, padding=1), Case2d(2, 64, 14, 14, 40, 1, 1)]
    previous = minidnn.get_num_threads()
    try:
        with _runtime._isa(isa_name):
            for case in cases:
                x, w, b = case.data(rng)
                outs = []
                for threads in (1, 2):
                    minidnn.set_num_threads(threads)
                    outs.append(minidnn.conv2d(x, w, b, activation=case.activation, **case.kwargs()))
                np.testing.assert_array_equal(outs[0], outs[1], err_msg=repr(case))
    finally:
        minidnn.set_num_threads(previous)


def test_implicit_gemm_team_splits_agree(rng):
    """With fewer units than threads the implicit GEMM's team splits each
    unit's columns (whole panels dividing evenly among the threads) or else
    its output channels. 712 output positions make two column blocks: 384
    (12 panels of 32 on avx512, so split by columns at 2, 3 and 4 threads)
    and 328 (split by rows); the results are the same at every count."""
    x = rng.standard_normal((1, 16, 8, 89), dtype=np.float32)
    w = rng.standard_normal((40, 16, 3, 3), dtype=np.float32)
    previous = minidnn.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3, 4):
            minidnn.set_num_threads(threads)
            outs.append(_conv2d_on_route("implicit_gemm", x, w, padding=1))
    finally:
        minidnn.set_num_threads(previous)
    expected = ref.conv2d(x, w, padding=1)
    _check(outs[0], expected, ref.conv2d(np.abs(x), np.abs(w), padding=1), 16 * 9, "y")
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_implicit_gemm_k_split_agrees(isa, rng):
    """One unit of many output channels is summed as two halves of its K
    blocks, the second into a buffer added at the end (conv_forward.cpp):
    an odd number of K blocks (3 on avx512, 4 on avx2 and the portable
    path), a short last A panel, dot-product columns (99 positions), bias
    and an activation applied after the halves are added. Two threads take
    a half each; three and four cut the halves' panels between threads;
    every count gives the same bits."""
    case = Case2d(1, 100, 9, 11, 229, 3, 3, padding=1, activation="leaky_relu")
    x, w, b = case.data(rng)
    previous = minidnn.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3, 4):
            minidnn.set_num_threads(threads)
            outs.append(minidnn.conv2d(x, w, b, activation=case.activation, **case.kwargs()))
    finally:
        minidnn.set_num_threads(previous)
    assert _conv2d_route(x, w, **case.kwargs()) == "implicit_gemm"
    expected = ACTIVATIONS[case.activation](ref.conv2d(x, w, b, **case.kwargs()))
    condition = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), **case.kwargs())
    condition = _activated_condition(case.activation, condition, expected)
    _check(outs[0], expected, condition, case.reduction(), "y")
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


# torch warns that its "same" with an even kernel copies the input.
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_matches_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((2, 6, 13, 11), dtype=np.float32)
    w = rng.standard_normal((8, 3, 3, 2), dtype=np.float32)
    b = rng.standard_normal(8, dtype=np.float32)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    yt = F.conv2d(xt, wt, bt, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    y = minidnn.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    for act, f in (("relu", F.relu), ("leaky_relu", F.leaky_relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh)):
        ya = minidnn.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, activation=act)
        np.testing.assert_allclose(ya, f(yt).detach().numpy(), rtol=1e-4, atol=1e-4, err_msg=act)
    g = rng.standard_normal(yt.shape, dtype=np.float32)
    yt.backward(torch.from_numpy(g))
    for ours, theirs in zip(minidnn.conv2d_backward(g, x, w, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
                            (xt.grad, wt.grad, bt.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-4)
    # Asymmetric padding is F.pad then an unpadded convolution.
    pads = ((0, 2), (1, 3))
    yp = F.conv2d(F.pad(torch.from_numpy(x), (1, 3, 0, 2)), torch.from_numpy(w), groups=2)
    np.testing.assert_allclose(minidnn.conv2d(x, w, padding=pads, groups=2), yp.numpy(), rtol=1e-4, atol=1e-4)
    # "same" at stride 1 is torch's "same" (torch allows no other stride).
    ys = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same", dilation=(2, 1), groups=2)
    np.testing.assert_allclose(minidnn.conv2d(x, w, padding="same", dilation=(2, 1), groups=2), ys.numpy(), rtol=1e-4, atol=1e-4)
    # Transposed, with output_padding, groups and dilation; and its backward.
    wt2 = rng.standard_normal((6, 2, 3, 3), dtype=np.float32)
    kw = dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=3, dilation=(1, 1))
    xt2, wtt2 = torch.from_numpy(x).requires_grad_(), torch.from_numpy(wt2).requires_grad_()
    bt2 = torch.zeros(6, requires_grad=True)
    yt2 = F.conv_transpose2d(xt2, wtt2, bt2, **kw)
    np.testing.assert_allclose(minidnn.conv_transpose2d(x, wt2, None, **kw), yt2.detach().numpy(), rtol=1e-4, atol=1e-4)
    g2 = rng.standard_normal(yt2.shape, dtype=np.float32)
    yt2.backward(torch.from_numpy(g2))
    for ours, theirs in zip(minidnn.conv_transpose2d_backward(g2, x, wt2, **kw), (xt2.grad, wtt2.grad, bt2.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-4)
    # conv1d.
    x1 = rng.standard_normal((2, 4, 30), dtype=np.float32)
    w1 = rng.standard_normal((6, 2, 5), dtype=np.float32)
    y1 = F.conv1d(torch.from_numpy(x1), torch.from_numpy(w1), stride=2, padding=3, dilation=2, groups=2)
    np.testing.assert_allclose(minidnn.conv1d(x1, w1, stride=2, padding=3, dilation=2, groups=2), y1.numpy(),
                               rtol=1e-4, atol=1e-4)


def test_causal_is_left_padding(rng):
    x = rng.standard_normal((2, 3, 12), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3), dtype=np.float32)
    y = minidnn.conv1d(x, w, padding="causal", dilation=2)
    assert y.shape == (2, 4, 12)
    np.testing.assert_array_equal(y, minidnn.conv1d(x, w, padding=(4, 0), dilation=2))
    # Output t sees inputs up to t only.
    x2 = x.copy()
    x2[:, :, 7:] = 100.0
    np.testing.assert_array_equal(minidnn.conv1d(x2, w, padding="causal", dilation=2)[:, :, :7], y[:, :, :7])


def test_same_shapes():
    x = np.ones((1, 2, 7, 10), np.float32)
    w = np.ones((3, 2, 3, 4), np.float32)
    assert minidnn.conv2d(x, w, padding="same", stride=(2, 3)).shape == (1, 3, 4, 4)
    assert minidnn.conv_transpose2d(x, np.ones((2, 3, 3, 4), np.float32), padding="same", stride=(2, 3)).shape == (1, 3, 14, 30)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

X = np.ones((2, 4, 6, 6), np.float32)
W = np.ones((6, 2, 3, 3), np.float32)
WT = np.ones((4, 3, 3, 3), np.float32)  # conv_transpose2d weight (C, K/groups, R, S)
X1 = np.ones((2, 4, 10), np.float32)
W1 = np.ones((6, 4, 3), np.float32)


@pytest.mark.parametrize(
    "call,error,words",
    [
        (lambda: minidnn.conv2d(X.astype(np.float64), W, groups=2), TypeError, ["x", "float64"]),
        (lambda: minidnn.conv2d(X, W.astype(np.int32), groups=2), TypeError, ["weight", "int32"]),
        (lambda: minidnn.conv2d(X, W, np.ones(6, np.float16), groups=2), TypeError, ["bias", "float16"]),
        (lambda: minidnn.conv2d([[1.0]], W), TypeError, ["x", "list"]),
        (lambda: minidnn.conv2d(X, W), ValueError, ["weight", "shape[1] = 4", "(6, 2, 3, 3)"]),
        (lambda: minidnn.conv2d(X, W, groups=3), ValueError, ["groups", "4 channels", "3"]),
        (lambda: minidnn.conv2d(X, np.ones((5, 1, 3, 3), np.float32), groups=4), ValueError, ["groups", "5", "4"]),
        (lambda: minidnn.conv2d(X, W, groups=0), ValueError, ["groups", ">= 1", "0"]),
        (lambda: minidnn.conv2d(X, W, groups=2, stride=0), ValueError, ["stride", ">= 1", "0"]),
        (lambda: minidnn.conv2d(X, W, groups=2, stride=(1, -2)), ValueError, ["stride", "-2"]),
        (lambda: minidnn.conv2d(X, W, groups=2, dilation=0), ValueError, ["dilation", ">= 1", "0"]),
        (lambda: minidnn.conv2d(X, W, groups=2, padding=-1), ValueError, ["padding", ">= 0", "-1"]),
        (lambda: minidnn.conv2d(X, W, groups=2, padding=((0, -1), (0, 0))), ValueError, ["padding", "-1"]),
        (lambda: minidnn.conv2d(X, W, groups=2, padding="full"), ValueError, ["padding", "'same'", "'full'"]),
        (lambda: minidnn.conv2d(X, W, groups=2, padding=(1, 2, 3)), ValueError, ["padding", "(1, 2, 3)"]),
        (lambda: minidnn.conv2d(X, W, groups=2, padding=1.5), ValueError, ["padding", "1.5"]),
        (lambda: minidnn.conv2d(X, W, groups=2, stride=1.0), TypeError, ["stride", "int", "float"]),
        (lambda: minidnn.conv2d(X, np.ones((6, 2, 7, 3), np.float32), groups=2), ValueError,
         ["weight", "along H", "7", "6"]),
        (lambda: minidnn.conv2d(X, W, groups=2, dilation=(1, 3)), ValueError, ["weight", "along W", "dilation 3", "7"]),
        (lambda: minidnn.conv2d(X, W, np.ones(5, np.float32), groups=2), ValueError, ["bias", "(6,)", "(5,)"]),
        (lambda: minidnn.conv2d(X[0], W, groups=2), ValueError, ["x", "4-D", "(4, 6, 6)"]),
        (lambda: minidnn.conv2d(X, W[0], groups=2), ValueError, ["weight", "4-D", "(2, 3, 3)"]),
        (lambda: minidnn.conv2d(X, np.ones((6, 2, 0, 3), np.float32), groups=2), ValueError, ["weight", ">= 1"]),
        (lambda: minidnn.conv2d(X, W, groups=2, activation="gelu"), ValueError, ["activation", "'relu'", "'gelu'"]),
        (lambda: minidnn.conv2d(X, W, groups=2, padding=2**40, stride=1), ValueError, ["output size"]),
        (lambda: minidnn.conv2d_backward(np.ones((2, 6, 4, 3), np.float32), X, W, groups=2), ValueError,
         ["grad_y", "(2, 6, 4, 4)", "(2, 6, 4, 3)"]),
        (lambda: minidnn.conv2d_backward(np.ones((2, 6, 4, 4)), X, W, groups=2), TypeError, ["grad_y", "float64"]),
        (lambda: minidnn.conv_transpose2d(X, W), ValueError, ["weight", "shape[0] = 4", "(6, 2, 3, 3)"]),
        (lambda: minidnn.conv_transpose2d(X, WT, output_padding=1), ValueError,
         ["output_padding", "max(stride, dilation)", "1"]),
        (lambda: minidnn.conv_transpose2d(X, WT, stride=2, output_padding=(1, 2)), ValueError, ["output_padding", "(1, 2)"]),
        (lambda: minidnn.conv_transpose2d(X, WT, padding=4), ValueError, ["padding", "8 x 8", "4"]),
        (lambda: minidnn.conv_transpose2d(X, WT, np.ones(4, np.float32)), ValueError, ["bias", "(3,)", "(4,)"]),
        (lambda: minidnn.conv_transpose2d(X, WT, groups=3), ValueError, ["groups", "4 channels", "3"]),
        (lambda: minidnn.conv_transpose2d_backward(np.ones((2, 3, 8, 7), np.float32), X, WT), ValueError,
         ["grad_y", "(2, 3, 8, 8)", "(2, 3, 8, 7)"]),
        (lambda: minidnn.conv1d(X1, W1, padding="causa"), ValueError, ["padding", "'causal'", "'causa'"]),
        (lambda: minidnn.conv1d(X1, W1, padding=((1, 1), (1, 1))), ValueError, ["padding"]),
        (lambda: minidnn.conv1d(X1, W1, stride=(1, 2)), ValueError, ["stride", "1-tuple", "(1, 2)"]),
        (lambda: minidnn.conv1d(X, W1), ValueError, ["x", "3-D", "(2, 4, 6, 6)"]),
        (lambda: minidnn.conv1d(X1, np.ones((6, 4, 11), np.float32)), ValueError, ["weight", "along L", "11", "10"]),
        (lambda: minidnn.conv1d(X1, W1, groups=2), ValueError, ["weight", "shape[1] = 2", "(6, 4, 3)"]),
        (lambda: minidnn.conv1d_backward(np.ones((2, 6, 9), np.float32), X1, W1), ValueError, ["grad_y", "(2, 6, 8)"]),
    ],
)
def test_bad_input(call, error, words):
    assert_raises_naming(call, error, words)


def test_entries_check_every_relation():
    """The _C entries, callable directly with any integers, raise ValueError
    rather than read or write out of bounds."""
    x, w, b = X, W, np.ones(6, np.float32)
    ok = (1, 1, 1, 1, 0, 0, 4, 4, 2, -1, 0.01)
    assert _C.conv2d_forward(x, w, b, *ok).shape == (2, 6, 4, 4)
    bad = [
        ((x, w, np.ones(5, np.float32)), ok, "bias"),
        ((x, w, b), (0, 1, 1, 1, 0, 0, 4, 4, 2, -1, 0.01), "stride_h"),
        ((x, w, b), (1, 1, 1, 0, 0, 0, 4, 4, 2, -1, 0.01), "dil_w"),
        ((x, w, b), (1, 1, 1, 1, -1, 0, 4, 4, 2, -1, 0.01), "pad_top"),
        ((x, w, b), (1, 1, 1, 1, 0, 0, -4, 4, 2, -1, 0.01), "p"),
        ((x, w, b), (1, 1, 1, 1, 0, 0, 4, 4, 3, -1, 0.01), "groups"),
        ((x, w, b), (1, 1, 1, 1, 0, 0, 4, 4, 1, -1, 0.01), "weight"),
        ((x, w, b), (1, 1, 1, 1, 0, 0, 4, 4, 2, 7, 0.01), "activation_code"),
        ((x, w, b), (1, 1, 1, 1, 0, 0, 2**40, 4, 2, -1, 0.01), "p"),
        ((x, w, b), (1, 1, 1, 1, 0, 0, 2**31 - 1, 2**31 - 1, 2, -1, 0.01), "output size"),
        ((x[0], w, b), ok, "x"),
        ((X1, w, b), ok, "weight"),
        ((X1, W1, None), (1, 1, 1, 1, 0, 0, 3, 8, 1, -1, 0.01), "p"),
    ]
    for arrays, args, word in bad:
        with pytest.raises(ValueError, match=word):
            _C.conv2d_forward(*arrays, *args)
    with pytest.raises(ValueError, match="grad_y"):
        _C.conv2d_backward(np.ones((2, 5, 4, 4), np.float32), x, w, 1, 1, 1, 1, 0, 0, 2)
    with pytest.raises(ValueError, match="weight"):
        _C.conv_transpose2d(x, w, None, 1, 1, 1, 1, 0, 0, 8, 8, 1)
    with pytest.raises(ValueError, match="grad_y"):
        _C.conv_transpose2d_backward(np.ones((2, 4, 8, 8), np.float32), x, WT, 1, 1, 1, 1, 0, 0, 1)
    # Output sizes beyond what the windows reach are zero-padded reads, never out of bounds.
    y = _C.conv_transpose2d(x, WT, None, 1, 1, 1, 1, 0, 0, 12, 3, 1)
    assert y.shape == (2, 3, 12, 3)
