"""The depthwise convolution kernel (csrc/cpu/conv/depthwise*.cpp) through
its private entry _C._depthwise_conv2d_forward, against the float64
reference conv2d with groups = C: every CPU path, 1 and 2 threads, strides
1 to 3 (3 takes the gather path), dilation 1 and 2, 3x3 and 5x5 (the
compile-time kernels) and other sizes (the run-time one), channel
multipliers, widths around the SIMD widths (tails), padding on every side
(stride 1 reads the input in place, masking the edge tiles' loads, and so
does 3x3 at stride 2 without dilation, splitting even and odd columns in
registers; other strides copy into a zero-padded scratch, whose rows
stride 2 splits into even and odd columns) and none, N = 0,
the fused activations, determinism and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import minidnn
from minidnn import _C
from minidnn import reference as ref

from conftest import assert_close

# (N, C, multiplier, H, W, (R, S), stride, dilation, ((top, bottom), (left, right)))
CASES = [
    (2, 3, 1, 11, 13, (3, 3), 1, 1, ((1, 1), (1, 1))),
    (1, 4, 2, 17, 37, (5, 5), 2, 2, ((2, 2), (2, 2))),
    (1, 2, 1, 9, 40, (3, 3), 2, 1, ((1, 1), (1, 1))),
    (1, 5, 3, 7, 23, (3, 5), 3, 1, ((2, 2), (2, 2))),      # stride 3: the gathered loads
    (1, 3, 1, 32, 71, (3, 3), 1, 2, ((0, 0), (0, 0))),     # no padding: read in place
    (1, 2, 1, 5, 5, (7, 7), 1, 1, ((3, 3), (3, 3))),       # kernel wider than half the input
    (3, 6, 1, 28, 28, (5, 5), 1, 1, ((2, 2), (2, 2))),     # EfficientNet's 5x5 at 28
    (2, 8, 1, 14, 14, (3, 3), 2, 1, ((0, 1), (0, 1))),     # TF "same" at stride 2: pad bottom / right
    (1, 3, 1, 1, 1, (3, 3), 1, 1, ((1, 1), (1, 1))),       # 1x1 image
    (1, 2, 1, 6, 9, (1, 1), 1, 1, ((0, 0), (0, 0))),       # 1x1 kernel
    (1, 2, 1, 4, 6, (2, 4), 1, 2, ((3, 0), (5, 2))),       # asymmetric padding, even kernel
    (0, 3, 1, 8, 8, (3, 3), 1, 1, ((1, 1), (1, 1))),       # N = 0
    *((1, 2, 1, 5, w, (3, 3), s, 1, ((1, 1), (1, 1))) for w in (7, 8, 9, 15, 16, 17, 31, 33, 65) for s in (1, 2)),
    # 3x3 and 5x5 with stride_h 1 or 2 and dil_h 1 share input rows between
    # a tile's output rows: heights whose rows group as 8 + 4 + 2 + 1, widths
    # around the SIMD widths, the row stride apart from the column stride
    # and the column dilation apart from the row's.
    *((1, 2, 1, h, w, (5, 5), s, 1, ((2, 2), (2, 2))) for h in (7, 10) for w in (7, 16, 17, 33) for s in (1, 2)),
    *((1, 2, 1, h, 19, (k, k), s, 1, ((k // 2, k // 2),) * 2) for h in (15, 31) for k in (3, 5) for s in (1, 2)),
    (1, 3, 2, 11, 29, (5, 5), (1, 2), 1, ((2, 2), (2, 2))),
    (1, 3, 1, 13, 35, (3, 3), (2, 1), 1, ((1, 0), (0, 1))),
    (1, 2, 1, 12, 41, (3, 3), (2, 3), 1, ((1, 1), (1, 1))),          # row-shared tile, gathered loads
    (1, 2, 1, 12, 30, (5, 5), 1, (1, 2), ((2, 2), (4, 4))),          # column dilation only
    (1, 2, 1, 12, 30, (3, 3), 1, (2, 1), ((2, 2), (1, 1))),          # row dilation: the general tile
    (1, 2, 1, 40, 700, (5, 5), 1, 1, ((2, 2), (2, 2))),              # several bands a plane
    # 3x3 at stride_w 2 without dilation reads the rows in place, one pair
    # of masked loads a row and vector for all three taps: every parity of
    # pad_left, widths whose last vector is full or not, stride_h 1.
    *((1, 2, 1, 9, w, (3, 3), 2, 1, ((1, 1), (left, 2))) for w in (15, 16, 33, 34) for left in (0, 2, 3)),
    (1, 3, 2, 11, 29, (3, 3), (1, 2), 1, ((1, 1), (1, 1))),
    # Other stride_w 2 kernels split the scratch rows into even and odd
    # columns: the input's columns land in either half by the parity of
    # pad_left and the taps by the parity of s * dil_w.
    (2, 3, 1, 9, 33, (5, 5), 2, 3, ((2, 2), (1, 1))),                # odd column dilation
    (1, 2, 1, 9, 33, (3, 3), 2, (1, 2), ((1, 1), (3, 2))),           # 3x3 with column dilation
    (1, 2, 1, 8, 2, (1, 1), 2, 1, ((0, 0), (0, 0))),                 # rows one column wide
    # stride_w 1 reads the input in place: masked loads at the edge tiles,
    # a zero row above and below the input.
    (1, 2, 1, 6, 17, (3, 3), 1, 1, ((2, 3), (4, 3))),                # whole lanes and rows of padding
    (2, 3, 1, 5, 16, (5, 5), 1, 2, ((4, 4), (4, 4))),                # dilated 5x5
    (1, 2, 1, 9, 64, (3, 3), 1, 1, ((1, 1), (1, 1))),                # interior tiles between edge ones
]


def _case_id(case):
    n, c, m, h, w, (r, s), stride, dil, pads = case
    return f"n{n}c{c}m{m}-{h}x{w}-k{r}x{s}-s{_pair(stride)}d{_pair(dil)}-p{pads[0][0]}{pads[0][1]}{pads[1][0]}{pads[1][1]}"


def _data(rng, case, bias=True):
    n, c, m, h, w, (r, s), _, _, _ = case
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    weight = rng.standard_normal((c * m, 1, r, s), dtype=np.float32)
    b = rng.standard_normal(c * m, dtype=np.float32) if bias else None
    return x, weight, b


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _run(case, x, weight, b, **epilogue):
    """The kernel and the reference's output for the same geometry."""
    _, c, _, _, _, _, stride, dil, pads = case
    expected = ref.conv2d(x, weight, b, stride, pads, dil, groups=c)
    p, q = expected.shape[2:]
    y = _C._depthwise_conv2d_forward(x, weight, b, *_pair(stride), *_pair(dil), pads[0][0], pads[1][0], p, q,
                                     **epilogue)
    return y, expected


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_the_reference(case, isa, threads, rng):
    x, weight, b = _data(rng, case, bias=case[0] != 1 or case[1] != 2)
    y, expected = _run(case, x, weight, b)
    # At most 49 products per output: float32 rounding stays near 1e-7.
    assert_close(y, expected, tol=2e-6)


def test_real_layers_are_bit_identical_for_1_and_2_threads(isa, rng):
    """MobileNet's 3x3 at 112 and 3x3/2 at 56 at batch 2, EfficientNet's 5x5
    at 28: planes split between threads (and rows of planes when planes are
    few, which regroups the rows of the row-shared tiles)."""
    for case in [(2, 32, 1, 112, 112, (3, 3), 1, 1, ((1, 1), (1, 1))),
                 (1, 3, 1, 56, 56, (3, 3), 2, 1, ((1, 1), (1, 1))),
                 (1, 3, 1, 29, 28, (5, 5), 1, 1, ((2, 2), (2, 2)))]:
        x, weight, b = _data(rng, case)
        outputs = []
        for threads in (1, 2):
            minidnn.set_num_threads(threads)
            y, expected = _run(case, x, weight, b)
            assert_close(y, expected, tol=2e-6)
            outputs.append(y)
        np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.parametrize("name, code", [("relu", 0), ("leaky_relu", 1), ("sigmoid", 2), ("tanh", 3)])
def test_fused_activation(name, code, isa, threads, rng):
    case = (2, 5, 2, 13, 19, (3, 3), 1, 1, ((1, 1), (1, 1)))
    x, weight, b = _data(rng, case)
    y, expected = _run(case, x, weight, b, activation_code=code, alpha=0.2)
    fused = ref.leaky_relu(expected, 0.2) if name == "leaky_relu" else getattr(ref, name)(expected)
    assert_close(y, fused, tol=2e-6)


def _call(x, weight, bias=None, **overrides):
    args = dict(stride_h=1, stride_w=1, dil_h=1, dil_w=1, pad_top=1, pad_left=1, p=4, q=4)
    args.update(overrides)
    return _C._depthwise_conv2d_forward(x, weight, bias, **args)


def test_bad_input_raises():
    x = np.zeros((1, 3, 4, 4), np.float32)
    w = np.zeros((3, 1, 3, 3), np.float32)
    assert _call(x, w).shape == (1, 3, 4, 4)
    with pytest.raises(TypeError, match="x: expected a C-contiguous float32"):
        _call(x.astype(np.float64), w)
    with pytest.raises(TypeError, match="weight: expected a C-contiguous float32"):
        _call(x, np.asfortranarray(np.zeros((3, 1, 3, 2), np.float32)))
    with pytest.raises(ValueError, match="x: expected a 4-D array"):
        _call(x[0], w)
    with pytest.raises(ValueError, match="x: expected at least one channel"):
        _call(np.zeros((1, 0, 4, 4), np.float32), w)
    for bad in [np.zeros((3, 2, 3, 3), np.float32), np.zeros((2, 1, 3, 3), np.float32),
                np.zeros((4, 1, 3, 3), np.float32), np.zeros((3, 1, 0, 3), np.float32),
                np.zeros((3, 1, 3), np.float32)]:
        with pytest.raises(ValueError, match=r"weight: expected shape \(C \* m, 1, R, S\)"):
            _call(x, bad)
    with pytest.raises(ValueError, match=r"bias: expected shape \(3,\)"):
        _call(x, w, np.zeros(4, np.float32))
    for name, value in [("stride_h", 0), ("stride_w", -1), ("dil_h", 0), ("dil_w", 0), ("pad_top", -1),
                        ("pad_left", -2), ("p", -1), ("q", -1), ("q", 2**31)]:
        with pytest.raises(ValueError, match=name):
            _call(x, w, **{name: value})
    with pytest.raises(ValueError, match="output size"):
        _call(x, w, p=2**31 - 1, q=2**31 - 1)
    with pytest.raises(ValueError, match="activation_code"):
        _call(x, w, activation_code=4)


def test_any_output_size_stays_in_bounds(rng):
    """P and Q are the caller's: outputs far past the input (all padding)
    get the bias alone, never a read outside x."""
    x = rng.standard_normal((1, 2, 3, 3), dtype=np.float32)
    w = rng.standard_normal((2, 1, 3, 3), dtype=np.float32)
    b = np.array([1.5, -2.0], np.float32)
    for stride_w in (1, 2, 3):  # the stride-2 scratch splits its rows: other bounds
        y = _call(x, w, b, stride_w=stride_w, pad_top=40, pad_left=50, p=3, q=70)
        np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], (1, 2, 3, 70)))
