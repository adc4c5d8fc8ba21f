"""conv2d's first-layer route on its own (csrc/cpu/conv/first_layer.h,
conv_forward_first_layer.cpp): a direct convolution for few input channels
with output channels in registers and output pixels of a row as the vector
dimension.

The sweep runs the route through the private `_conv2d_on_route`, so that
shapes the rule sends elsewhere (1x1 kernels, stride 1 on the tap route)
test the kernel too: C in 1..4, kernels 1..11 (square and not), strides
1..4, dilations 1..3, every padding form, widths that leave every tail of
a row's vectors (16, 8 and 1 lanes) and of its tiles of vectors, K not a
multiple of any path's channel block (8, 6, 4), bias or none, each
activation; grouped convolutions (the route computes one group at a time:
groups 2..32, a group's output channels below, at and past each path's
block); on every CPU path with 1 and 2 threads, outputs poisoned. Then: the rule (which shapes take the route unforced), N = 0, shapes large
enough for 2 threads bit-identical to 1, the forcing API's errors, and the
implicit GEMM forced on the shapes the rule now takes from it.

Error bound: test_conv.py's (relative to each output's condition, 2^-20 x
sqrt of the reduction C x R x S).
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
from minidnn.conv import _conv2d_on_route, _conv2d_route
from strategies import _conv_paddings, _padded_extent
from test_conv import ACTIVATIONS, CASES_2D, ISA_NAMES, Case2d, _activated_condition, _check, _valid


def _sweep(count: int, seed: int):
    """Random groups-1 geometries the route computes: C 1..4, kernels
    1..11, strides 1..4, dilations 1..3, every padding form, sizes up to
    60 (output rows up to 3 vectors of 16 and a tail), K 1..21."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        r, s = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        stride = tuple(int(v) for v in rng.integers(1, 5, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 4, 2)) if rng.integers(0, 3) == 0 else (1, 1)
        top, bottom, left, right = (int(v) for v in rng.integers(0, 6, 4))
        padding = [top, (top, left), ((top, bottom), (left, right)), "valid", "same"][int(rng.integers(0, 5))]
        case = Case2d(
            int(rng.integers(1, 3)), int(rng.integers(1, 5)), int(rng.integers(1, 30)), int(rng.integers(1, 61)),
            int(rng.integers(1, 22)), r, s, stride, padding, dilation, 1, list(ACTIVATIONS)[int(rng.integers(0, 5))],
            bool(rng.integers(0, 2)),
        )
        if _valid(case):
            cases.append(case)
    return cases


CASES = _sweep(40, 1313) + [
    Case2d(2, 3, 61, 57, 64, 7, 7, stride=2, padding=3, activation="relu"),  # ResNet conv1 (smaller image)
    Case2d(1, 3, 67, 67, 96, 11, 11, stride=4, padding=2),                # AlexNet conv1: Q = 16 (one vector)
    Case2d(1, 3, 99, 75, 70, 11, 11, stride=4, padding=2, activation="tanh"),  # Q = 18: a vector and 2 lanes
    Case2d(1, 4, 13, 200, 13, 3, 3, stride=(1, 2), padding=1),            # Q = 100: 7 vectors (tiles 3, 2, 2)
    Case2d(1, 1, 9, 9, 5, 11, 11, padding=5, activation="sigmoid"),       # C = 1 (the rule's is depthwise)
    Case2d(2, 2, 5, 4, 3, 7, 8, padding=((1, 1), (2, 2))),               # kernel = padded input: one output
    Case2d(1, 3, 4, 4, 17, 3, 3, padding=((4, 5), (6, 7))),              # pads wider than the image
    Case2d(1, 3, 40, 40, 9, 5, 5, stride=4, padding="same", dilation=3),
    Case2d(1, 2, 30, 31, 25, 1, 1, stride=3, activation="leaky_relu"),   # 1x1 (the rule's is the GEMM)
    Case2d(1, 3, 20, 150, 1, 2, 3, stride=(3, 1), padding=(0, 1)),       # K = 1, Q = 150
    Case2d(3, 3, 9, 33, 6, 3, 3, stride=2, padding=1, bias=False),
    # Grouped: ResNeXt-like 8 channels a group (Q = 29: a vector and 13
    # lanes), a group's K below the avx512 block (6), past it (10, 9), and
    # a strided, dilated one.
    Case2d(2, 64, 13, 29, 64, 3, 3, padding=1, groups=8, activation="relu"),
    Case2d(1, 12, 9, 33, 18, 3, 3, stride=2, padding=1, groups=3),
    Case2d(2, 32, 7, 7, 40, 3, 3, padding=1, groups=4, activation="leaky_relu"),
    Case2d(1, 6, 11, 17, 27, 5, 3, padding="same", dilation=2, groups=3, bias=False),
    Case2d(1, 64, 5, 40, 64, 3, 3, padding=((0, 2), (1, 1)), groups=32, activation="tanh"),
]


def _check_on_route(route, case, rng):
    """conv2d of the case's random data on `route` against the reference."""
    x, w, b = case.data(rng)
    y = _conv2d_on_route(route, x, w, b, activation=case.activation, **case.kwargs())
    expected = ACTIVATIONS[case.activation](ref.conv2d(x, w, b, **case.kwargs()))
    condition = ref.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **case.kwargs())
    condition = _activated_condition(case.activation, condition, expected)
    _check(y, expected, condition, case.reduction(), route)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_first_layer_route(isa, threads, rng, case):
    _check_on_route("first_layer", case, rng)


def test_sweep_covers_its_claims():
    """The sweep holds what the module docstring says it tests."""
    assert {c.c for c in CASES} >= {1, 2, 3, 4}
    assert {c.r for c in CASES} | {c.s for c in CASES} >= set(range(1, 12))
    assert {c.stride[1] for c in CASES if isinstance(c.stride, tuple)} >= {1, 2, 3, 4}
    assert {type(c.padding) for c in CASES} >= {int, tuple, str}
    assert any(c.dilation not in (1, (1, 1)) for c in CASES)
    assert {c.activation for c in CASES} == set(ACTIVATIONS)
    assert {c.groups for c in CASES} >= {1, 3, 8, 32}
    assert {c.k // c.groups for c in CASES if c.groups > 1} >= {2, 6, 8, 9, 10}


@pytest.mark.parametrize(
    "x_shape, k, r, kwargs, route",
    [
        ((1, 3, 224, 224), 64, 7, dict(stride=2, padding=3), "first_layer"),   # ResNet-50 conv1
        ((1, 3, 227, 227), 96, 11, dict(stride=4), "first_layer"),             # AlexNet conv1
        ((1, 8, 56, 56), 64, 3, dict(stride=2, padding=1), "first_layer"),
        ((1, 4, 32, 32), 64, 3, dict(padding=1), "first_layer"),               # stride 1, no tap route
        ((1, 9, 56, 56), 64, 3, dict(stride=2, padding=1), "implicit_gemm"),   # more than 8 channels
        ((1, 3, 56, 56), 64, 1, dict(stride=2), "implicit_gemm"),              # one tap
        ((1, 4, 56, 56), 64, 3, dict(stride=2, padding=1, groups=2), "first_layer"),   # 2 a group
        ((1, 256, 28, 28), 256, 3, dict(padding=1, groups=32), "first_layer"),     # ResNeXt: before taps
        ((1, 32, 28, 28), 16, 3, dict(padding=1, groups=4), "taps"),              # 4 outputs a group
        ((1, 64, 28, 28), 64, 3, dict(padding=1, groups=4), "taps"),              # 16 channels a group
        ((1, 1, 56, 56), 64, 7, dict(stride=2, padding=3), "depthwise"),       # C = 1 is depthwise
        ((1, 3, 32, 32), 4, 3, dict(padding=1), "taps"),                       # the tap route keeps its shapes
    ],
)
def test_route_rule(x_shape, k, r, kwargs, route):
    """2..8 channels a group (1 is depthwise), more than one tap and C/groups
    x R x S <= 363; groups 1 when neither Winograd nor the tap route takes
    the shape; grouped before the tap route, with at least 8 output
    channels a group; on every path (the rule is by shape alone)."""
    x = np.zeros(x_shape, np.float32)
    wt = np.zeros((k, x_shape[1] // kwargs.get("groups", 1), r, r), np.float32)
    for isa_name in ISA_NAMES:
        if _C.cpu_supports()[isa_name]:
            with _runtime._isa(isa_name):
                assert _conv2d_route(x, wt, **kwargs) == route, isa_name


def test_real_shapes_unforced(isa, rng):
    """The public conv2d on the route for conv1-like shapes."""
    case = Case2d(2, 3, 45, 47, 17, 7, 7, stride=2, padding=3, activation="leaky_relu")
    x, w, b = case.data(rng)
    assert _conv2d_route(x, w, **case.kwargs()) == "first_layer"
    y = minidnn.conv2d(x, w, b, activation=case.activation, **case.kwargs())
    expected = ACTIVATIONS[case.activation](ref.conv2d(x, w, b, **case.kwargs()))
    condition = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), **case.kwargs())
    _check(y, expected, condition, case.reduction(), "y")


def test_empty_batch(isa, threads):
    x = np.zeros((0, 3, 23, 23), np.float32)
    wt = np.ones((8, 3, 7, 7), np.float32)
    # N = 0 has nothing to compute: no algorithm (at N = 1 the first-layer route).
    assert _conv2d_route(x, wt, stride=2, padding=3) == "none"
    assert _conv2d_route(np.zeros((1, 3, 23, 23), np.float32), wt, stride=2, padding=3) == "first_layer"
    y = minidnn.conv2d(x, wt, np.ones(8, np.float32), stride=2, padding=3, activation="relu")
    assert y.shape == (0, 8, 12, 12) and y.dtype == np.float32
    y = _conv2d_on_route("none", x, wt, stride=2, padding=3)
    assert y.shape == (0, 8, 12, 12)


def test_forcing_errors():
    x = np.zeros((1, 4, 9, 9), np.float32)
    with pytest.raises(ValueError, match="route.*rule's: first_layer"):
        _conv2d_on_route("taps", x, np.zeros((4, 4, 3, 3), np.float32), stride=2)
    with pytest.raises(ValueError, match="route.*none, depthwise, first_layer"):
        _conv2d_on_route("fastest", x, np.zeros((4, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="route.*rule's: first_layer"):
        _conv2d_on_route("winograd", x, np.zeros((16, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="route.*rule's: none"):
        _conv2d_on_route("first_layer", np.zeros((0, 4, 9, 9), np.float32), np.zeros((4, 4, 3, 3), np.float32))


@pytest.mark.parametrize(
    "case",
    [Case2d(1, 3, 112, 112, 64, 7, 7, stride=2, padding=3, activation="relu"),
     Case2d(1, 4, 130, 99, 21, 11, 11, stride=4, padding="same", activation="tanh"),
     Case2d(5, 2, 40, 41, 19, 5, 3, stride=(2, 3), padding=((1, 2), (0, 3)), dilation=(1, 2)),
     Case2d(1, 256, 28, 28, 256, 3, 3, padding=1, groups=32, activation="relu")],
    ids=repr,
)
def test_bit_identical_across_thread_counts(rng, case):
    """Two threads split the bands of rows of one image (first two), the
    images (third) or the groups (fourth); on every CPU path."""
    x, w, b = case.data(rng)
    outs = on_every_cpu_path(
        lambda: _conv2d_on_route("first_layer", x, w, b, activation=case.activation, **case.kwargs()))
    for isa in ISA_NAMES:
        if f"{isa}/t1" in outs:
            np.testing.assert_array_equal(outs[f"{isa}/t1"], outs[f"{isa}/t2"], err_msg=isa)


# The shapes of test_conv.py's sweep that the first-layer rule takes: the
# implicit GEMM had them before, and keeps being tested on them here.
TAKEN_FROM_IMPLICIT_GEMM = [
    c for c in CASES_2D
    if c.n and c.k and c.groups == 1 and 2 <= c.c <= 8 and c.r * c.s > 1 and c.c * c.r * c.s <= 363
]


@pytest.mark.parametrize("case", TAKEN_FROM_IMPLICIT_GEMM, ids=repr)
def test_implicit_gemm_on_first_layer_shapes(isa, rng, case):
    _check_on_route("implicit_gemm", case, rng)


# Each example runs the float64 reference and six kernel calls.
@settings(max_examples=40)
@given(data=st.data())
def test_first_layer_shapes(data):
    """Random shapes on the route: 1..3 groups of C 1..4 and K 1..20 each,
    kernels 1..11, strides 1..4, dilation 1..2, every padding form, each
    activation, bias or not; every path and thread count within the bound,
    1 and 2 threads bit-identical."""
    groups = data.draw(st.integers(1, 3))
    c, k = groups * data.draw(st.integers(1, 4)), groups * data.draw(st.integers(1, 20))
    r, s = data.draw(st.integers(1, 11)), data.draw(st.integers(1, 11))
    stride = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    h, w = data.draw(st.integers(1, 24)), data.draw(st.integers(1, 40))
    padding = data.draw(_conv_paddings())
    extents = [_padded_extent(size, kern, st_, d, padding, axis)
               for axis, (size, kern, st_, d) in enumerate(zip((h, w), (r, s), stride, dilation))]
    assume(extents[0] >= (r - 1) * dilation[0] + 1 and extents[1] >= (s - 1) * dilation[1] + 1)
    case = Case2d(data.draw(st.integers(1, 2)), c, h, w, k, r, s, stride, padding, dilation, groups,
                  data.draw(st.sampled_from(list(ACTIVATIONS))), data.draw(st.booleans()))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, wt, b = case.data(rng)
    expected = ACTIVATIONS[case.activation](ref.conv2d(x, wt, b, **case.kwargs()))
    condition = ref.conv2d(np.abs(x), np.abs(wt), None if b is None else np.abs(b), **case.kwargs())
    condition = _activated_condition(case.activation, condition, expected)
    outs = on_every_cpu_path(
        lambda: _conv2d_on_route("first_layer", x, wt, b, activation=case.activation, **case.kwargs()))
    for path, y in outs.items():
        _check(y, expected, condition, case.reduction(), path)
    for isa in ISA_NAMES:
        if f"{isa}/t1" in outs:
            np.testing.assert_array_equal(outs[f"{isa}/t1"], outs[f"{isa}/t2"], err_msg=isa)
