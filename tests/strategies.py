"""Hypothesis strategies shared by the property tests of every op family:
shapes with zero-size dimensions, axes, and float32 arrays whose magnitudes
run from the smallest subnormal to float max with 0, +-inf and NaN mixed in.

Array contents come from NumPy, seeded by a drawn integer, and hypothesis
draws only the seed, the magnitude range and where the special values go:
drawing thousands of elements one by one through hypothesis would make each
example slow and trip its too_slow health check. A failing example still
shrinks (to seed 0, a narrower range, fewer special values) and reproduces
from its printed blob.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

FLOAT32_MAX = float(np.finfo(np.float32).max)
SMALLEST_SUBNORMAL = 2.0**-149
SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)

# Base-2 exponents of float32 magnitudes: 2^-149 is the smallest subnormal,
# 2^128 rounds down to float max (values are clipped to it).
MIN_EXPONENT = -149
MAX_EXPONENT = 128

# Magnitude ranges of realistic activations and logits, drawn as often as an
# arbitrary range so that most examples are not all-underflow or all-overflow.
TYPICAL_EXPONENTS = [(-4, 3), (-12, 6), (-1, 8)]

SPECIAL_VALUES = (
    0.0,
    -0.0,
    SMALLEST_SUBNORMAL,
    -SMALLEST_SUBNORMAL,
    SMALLEST_NORMAL * (1 - 2.0**-23),  # the largest subnormal
    SMALLEST_NORMAL,
    FLOAT32_MAX,
    -FLOAT32_MAX,
    math.inf,
    -math.inf,
    math.nan,
)
FINITE_SPECIAL_VALUES = tuple(v for v in SPECIAL_VALUES if math.isfinite(v))


def exponent_ranges(min_exponent: int = MIN_EXPONENT, max_exponent: int = MAX_EXPONENT):
    """(lo, hi) with lo < hi: array magnitudes are 2^uniform(lo, hi)."""
    typical = [(lo, hi) for lo, hi in TYPICAL_EXPONENTS if min_exponent <= lo and hi <= max_exponent]
    arbitrary = st.integers(min_exponent, max_exponent - 1).flatmap(
        lambda lo: st.tuples(st.just(lo), st.integers(lo + 1, max_exponent))
    )
    return st.one_of(st.sampled_from(typical), arbitrary) if typical else arbitrary


@st.composite
def float32_arrays(
    draw,
    shape,
    *,
    signed: bool = True,
    min_exponent: int = MIN_EXPONENT,
    max_exponent: int = MAX_EXPONENT,
    specials=SPECIAL_VALUES,
    max_specials: int = 4,
):
    """A float32 array of `shape`: magnitudes log-uniform over a drawn range
    of exponents (within [min_exponent, max_exponent]), random signs unless
    `signed` is False, and up to `max_specials` entries replaced by values
    drawn from `specials` (which may be empty)."""
    lo, hi = draw(exponent_ranges(min_exponent, max_exponent))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = math.prod(shape)
    magnitudes = np.minimum(np.exp2(rng.uniform(lo, hi, size)), FLOAT32_MAX)
    values = magnitudes * rng.choice([-1.0, 1.0], size) if signed else magnitudes
    array = values.astype(np.float32)
    if size and specials:
        for _ in range(draw(st.integers(0, max_specials))):
            array[draw(st.integers(0, size - 1))] = draw(st.sampled_from(specials))
    return array.reshape(shape)


@st.composite
def shapes(draw, *, min_rank: int = 1, max_rank: int = 4, max_side: int = 12, max_last: int = 70, max_size: int = 6000):
    """A shape of rank min_rank..max_rank with sides 0..max_side, whose last
    side is sometimes longer (up to max_last) to reach past the tails of
    16-lane vectors; about one shape in five has a zero-size side. Sides are
    halved, largest first, until the size is at most max_size."""
    rank = draw(st.integers(min_rank, max_rank))
    if rank == 0:
        return ()
    sides = [draw(st.integers(1, max_side)) for _ in range(rank - 1)]
    sides.append(draw(st.one_of(st.integers(1, max_side), st.integers(max_side + 1, max_last))))
    if draw(st.integers(0, 4)) == 0:
        sides[draw(st.integers(0, rank - 1))] = 0
    while math.prod(sides) > max_size:
        largest = max(range(rank), key=lambda i: sides[i])
        sides[largest] //= 2
    return tuple(sides)


def axes(rank: int):
    """Any axis of a rank-`rank` array, in positive or negative form (a 0-d
    array has the one axis 0 / -1)."""
    rank = max(rank, 1)
    return st.integers(-rank, rank - 1)


@st.composite
def class_indices(draw, shape, classes: int, ignore_index: int):
    """int64 class indices in [0, classes) of `shape`, with none, some or all
    set to ignore_index."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    target = rng.integers(0, classes, size=shape).astype(np.int64)
    ignored_fraction = draw(st.sampled_from([0.0, 0.3, 1.0]))
    target[np.asarray(rng.random(shape)) < ignored_fraction] = ignore_index
    return target


@st.composite
def probabilities(draw, shape, axis: int):
    """Non-negative float32 targets of `shape` with exact zeros mixed in,
    normalized along `axis` or not (the losses accept any non-negative
    target, as PyTorch)."""
    q = draw(float32_arrays(shape, signed=False, min_exponent=-30, max_exponent=2, specials=(0.0,), max_specials=8))
    if draw(st.booleans()):
        with np.errstate(invalid="ignore", divide="ignore"):
            q = (q / q.sum(axis=axis, keepdims=True, dtype=np.float64)).astype(np.float32)
        q[~np.isfinite(q)] = 0.0  # a slice of all zeros has no normalization
    return q


# Padding forms of conv2d (API.md), as strategies of their own value.
def _conv_paddings():
    pad = st.integers(0, 3)
    return st.one_of(
        pad,
        st.tuples(pad, pad),
        st.tuples(st.tuples(pad, pad), st.tuples(pad, pad)),
        st.sampled_from(["valid", "same"]),
    )


def _padded_extent(size, kernel, stride, dilation, padding, axis):
    if padding == "valid":
        return size
    if padding == "same":
        out = -(-size // stride)
        return max(size, (out - 1) * stride + (kernel - 1) * dilation + 1)
    if isinstance(padding, int):
        return size + 2 * padding
    if isinstance(padding[0], tuple):
        return size + sum(padding[axis])
    return size + 2 * padding[axis]


@st.composite
def conv2d_geometries(draw):
    """Keyword arguments of a conv2d call and the shapes of x and weight:
    N 0..2, groups 1, 2 or depthwise, sides 1..12, kernels 1..5 fitting the
    padded input, strides and dilations 1..3, every padding form."""
    groups_kind = draw(st.sampled_from(["one", "two", "depthwise"]))
    groups = {"one": 1, "two": 2, "depthwise": draw(st.integers(1, 6))}[groups_kind]
    cg = 1 if groups_kind == "depthwise" else draw(st.integers(1, 5))
    kg = draw(st.integers(1, 6))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(_conv_paddings())
    kernel = []
    for axis, size in enumerate((h, w)):
        k = draw(st.integers(1, 5))
        # Shrink the kernel until its dilated extent fits the padded input.
        while k > 1 and _padded_extent(size, k, stride[axis], dilation[axis], padding, axis) < dilation[axis] * (k - 1) + 1:
            k -= 1
        kernel.append(k)
    n = draw(st.integers(0, 2))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return (n, cg * groups, h, w), (kg * groups, cg, *kernel), kwargs
