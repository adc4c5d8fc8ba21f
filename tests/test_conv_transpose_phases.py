"""conv_transpose2d's forward (conv2d's backward data) split by stride phase
(conv_backward.cpp, backward_data_phases): every kind of phase, on every
CPU path, 1 and 2 threads, against the float64 reference; each case first
checks that the rule sends it to the phase route, so that a change of the
rule cannot leave the phases untested."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

import minidnn
import minidnn.reference as ref
from minidnn import _C
from minidnn.conv import _transpose_geometry

from conftest import assert_agrees, assert_same_at_thread_counts


@dataclass(frozen=True)
class Transposed:
    """x (n, c, h, w), weight (c, k / groups, r, s); the rest as
    conv_transpose2d's arguments."""

    n: int
    c: int
    k: int
    h: int
    w: int
    r: int
    s: int
    stride: tuple = (2, 2)
    padding: object = 0
    output_padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    what: str = ""

    def __repr__(self) -> str:
        return self.what

    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    dilation=self.dilation, groups=self.groups)

    def data(self, rng):
        x = rng.standard_normal((self.n, self.c, self.h, self.w), dtype=np.float32)
        w = rng.standard_normal((self.c, self.k // self.groups, self.r, self.s), dtype=np.float32)
        b = rng.standard_normal(self.k, dtype=np.float32)
        return x, w, b

    def route(self, x, w) -> str:
        sh, sw, dh, dw, top, left, out_h, out_w, groups, k = _transpose_geometry(
            x.shape, w.shape, self.stride, self.padding, self.output_padding, self.groups, self.dilation)
        return _C._conv2d_backward_data_route(x, w, (self.n, k, out_h, out_w), sh, sw, dh, dw, top, left, groups)


# At least 16 input and 14 output channels a group (the phase route's rule:
# the tap route takes 16 channels, and a microkernel tile of output channels
# is up to 14 high), and phases of at least 32 columns where a phase has two
# kernel columns or more (the rule's dropped columns).
PHASE_CASES = [
    Transposed(2, 16, 16, 5, 33, 4, 4, padding=1, what="dcgan 4x4/2, two taps a phase each way"),
    Transposed(2, 16, 16, 4, 7, 4, 3, stride=(2, 3), what="kernel columns = stride 3: one tap a column phase"),
    Transposed(1, 19, 17, 5, 6, 4, 2, stride=(2, 3), what="kernel columns < stride: column phase 2 is the bias alone"),
    Transposed(2, 16, 16, 4, 5, 3, 1, output_padding=(1, 1), what="3x1/2 + output_padding: odd columns bias alone"),
    Transposed(2, 16, 16, 5, 6, 3, 1, padding=(1, 0), dilation=(2, 1),
               what="dilation 2 = stride: odd rows all taps, even rows none"),
    Transposed(2, 16, 16, 4, 5, 3, 2, padding=2, output_padding=(1, 2), dilation=(3, 3),
               what="dilation 3 / stride 2: taps 0 and 2 or 1, dilation 3"),
    Transposed(2, 32, 32, 5, 4, 5, 3, stride=(2, 3), padding=(2, 1), groups=2,
               what="stride (2, 3), groups 2"),
    Transposed(1, 16, 16, 4, 40, 4, 2, padding=((4, 1), (3, 0)),
               what="crops past the first taps: negative phase pads"),
    Transposed(2, 16, 16, 3, 33, 3, 4, stride=(3, 2), padding=(4, 0), what="crop leaves row phase 0 only"),
    Transposed(2, 17, 16, 1, 1, 4, 1, what="1 x 1 input"),
    Transposed(2, 32, 32, 6, 7, 3, 3, stride=(1, 1), padding=1, groups=2, what="stride 1, groups 2: one phase"),
]


def _tolerance(reduction: int) -> float:
    # As test_conv.py: float32 sums of L terms in a fixed order err by about
    # eps * sqrt(L) of the sum of their magnitudes; 2^-20 sqrt(L) is ~8x that.
    return 2.0**-20 * math.sqrt(max(reduction, 1))


def _check_forward(case, x, w, b):
    y = minidnn.conv_transpose2d(x, w, b, **case.kwargs())
    expected = ref.conv_transpose2d(x, w, b, **case.kwargs())
    condition = ref.conv_transpose2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **case.kwargs())
    assert_agrees(y, expected, condition, _tolerance(case.c // case.groups * case.r * case.s), path="y")
    return y


@pytest.mark.parametrize("case", PHASE_CASES, ids=repr)
def test_phases_against_reference(isa, threads, rng, case):
    x, w, b = case.data(rng)
    assert case.route(x, w) == "phases"
    _check_forward(case, x, w, b)
    _check_forward(case, x, w, None)
    # The backward's grad_x is conv2d's forward, its grad_weight conv2d's
    # weight gradient: the transposed convolution end to end.
    y = minidnn.conv_transpose2d(x, w, b, **case.kwargs())
    g = rng.standard_normal(y.shape, dtype=np.float32)
    grads = minidnn.conv_transpose2d_backward(g, x, w, **case.kwargs())
    expected = ref.conv_transpose2d_backward(g, x, w, **case.kwargs())
    conditions = ref.conv_transpose2d_backward(np.abs(g), np.abs(x), np.abs(w), **case.kwargs())
    lengths = (case.k // case.groups * case.r * case.s, case.n * case.h * case.w, y.size // y.shape[1])
    for name, out, e, cond, length in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected, conditions, lengths):
        assert_agrees(out, e, cond, _tolerance(length), path=name)


@pytest.mark.parametrize("case", PHASE_CASES, ids=repr)
def test_phases_bit_identical_across_threads(isa, rng, case):
    x, w, b = case.data(rng)
    assert_same_at_thread_counts(lambda: minidnn.conv_transpose2d(x, w, b, **case.kwargs()))


def test_conv2d_backward_data_on_phases(isa, threads, rng):
    """conv2d's backward data of a strided layer is the same driver: a 3x3/2
    layer's grad_x as four phases of 2 x 2, 2 x 1, 1 x 2 and 1 x 1 taps."""
    n, c, k, h, w = 2, 16, 24, 9, 66
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    weight = rng.standard_normal((k, c, 3, 3), dtype=np.float32)
    args = (2, 2, 1, 1, 1, 1, 1)
    p, q = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
    gy = rng.standard_normal((n, k, p, q), dtype=np.float32)
    assert _C._conv2d_backward_data_route(gy, weight, x.shape, *args) == "phases"
    gx = _C._conv2d_backward_data(gy, weight, x.shape, *args)
    kw = dict(stride=2, padding=1)
    expected = ref.conv2d_backward(gy, x, weight, **kw)[0]
    condition = ref.conv2d_backward(np.abs(gy), np.abs(x), np.abs(weight), **kw)[0]
    assert_agrees(gx, expected, condition, _tolerance(k * 9), path="grad_x")


# Where the rule keeps the general route (GEMM and col2im), which measured
# faster there (bench/NOTES.md, "Transposed convolution by stride phases").
@pytest.mark.parametrize("case", [
    Transposed(2, 16, 3, 5, 33, 4, 4, padding=1, what="3 output channels: under a microkernel tile"),
    Transposed(2, 16, 16, 5, 14, 4, 4, padding=1, what="phases of 14 columns, 1 in 15 dropped"),
    Transposed(2, 16, 16, 5, 33, 2, 2, what="kernel = stride: no two taps overlap"),
], ids=repr)
def test_general_route_where_phases_lose(isa, rng, case):
    x, w, b = case.data(rng)
    assert case.route(x, w) == "gemm"
    _check_forward(case, x, w, b)


# The general route's col2im with column stride 2 (the row kernels'
# add_stride2: sources onto the even elements of a split and re-interleaved
# span) and, in the backward, the weight gradient's im2col of grad_y with
# column stride 2 (copy_stride2): tap windows of 1 to 40 columns, across one
# and two SIMD vectors of every ISA and their tails, with odd and even
# kernels, output_padding and a dilation; 3 output channels keep them off
# the phase route on every ISA.
@pytest.mark.parametrize("case", [
    Transposed(2, 5, 3, 3, 1, 4, 4, padding=1, what="1 input column: windows of 1"),
    Transposed(2, 5, 3, 3, 7, 3, 3, padding=1, output_padding=(1, 1), what="3x3/2 7 columns, output_padding"),
    Transposed(1, 5, 3, 2, 8, 4, 4, padding=1, what="windows of 7 and 8"),
    Transposed(1, 5, 3, 2, 9, 5, 5, padding=2, what="windows of 8 and 9"),
    Transposed(1, 5, 3, 2, 16, 4, 4, padding=1, what="windows of 15 and 16"),
    Transposed(1, 5, 3, 2, 17, 4, 4, padding=1, what="windows of 16 and 17"),
    Transposed(2, 5, 3, 3, 33, 3, 3, padding=(0, 1), what="windows of 32 and 33"),
    Transposed(1, 5, 3, 2, 40, 4, 4, padding=1, dilation=(1, 2), what="dilation 2: windows of 38 to 40"),
], ids=repr)
def test_general_route_stride2_col2im_im2col(isa, threads, rng, case):
    x, w, b = case.data(rng)
    assert case.route(x, w) == "gemm"
    y = _check_forward(case, x, w, b)
    assert_same_at_thread_counts(lambda: minidnn.conv_transpose2d(x, w, b, **case.kwargs()))
    g = rng.standard_normal(y.shape, dtype=np.float32)
    grad_weight = minidnn.conv_transpose2d_backward(g, x, w, **case.kwargs())[1]
    expected = ref.conv_transpose2d_backward(g, x, w, **case.kwargs())[1]
    condition = ref.conv_transpose2d_backward(np.abs(g), np.abs(x), np.abs(w), **case.kwargs())[1]
    assert_agrees(grad_weight, expected, condition, _tolerance(case.n * case.h * case.w), path="grad_weight")


# The general route's column tiles run over the positions of all images in
# a row (backward_data_gemm): tiles that cross images mid-row (99 positions
# of rows of 11, in AVX-512's tiles of 256 columns) and at a row boundary
# (rows of 14: tiles of whole rows where panels hold them, 224 columns),
# spans of images split between 2 threads in the middle of a tile, and a
# GEMM of two K blocks (400 input channels: more than any ISA's kc) whose
# grad_y tile is packed again for each channel block. Bit-identical for 1
# and 2 threads, whose spans differ.
@pytest.mark.parametrize("case", [
    Transposed(3, 40, 3, 9, 11, 4, 4, padding=1, what="3 images of 99 positions"),
    Transposed(3, 40, 3, 7, 14, 4, 4, padding=1, what="rows of 14"),
    Transposed(2, 400, 3, 5, 7, 3, 3, padding=1, what="two K blocks"),
], ids=repr)
def test_general_route_tiles_span_images(isa, threads, rng, case):
    x, w, b = case.data(rng)
    assert case.route(x, w) == "gemm"
    _check_forward(case, x, w, b)
    assert_same_at_thread_counts(lambda: minidnn.conv_transpose2d(x, w, b, **case.kwargs()))


def test_empty_batch(rng):
    case = Transposed(0, 16, 16, 5, 33, 4, 4, padding=1)
    x, w, b = case.data(rng)
    assert case.route(x, w) == "none"
    assert minidnn.conv_transpose2d(x, w, b, stride=2, padding=1).shape == (0, 16, 10, 66)
