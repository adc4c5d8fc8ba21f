"""Property tests of the softmax family and the activations against the
float64 reference, on inputs drawn by hypothesis: ranks 0 to 4 with
zero-size sides, every axis, magnitudes from subnormal to float max with 0,
+-inf and NaN mixed in, every reduction, weights, ignore_index, label
smoothing, class-index and probability targets; conv2d over random
geometries (every padding form, groups, strides, dilations, activations); max and
average pooling over random geometries (indices exact), adaptive pooling over
random input and output sizes. Each example runs on every
CPU path and 1 and 2 threads, with poisoned outputs.

Each result is checked element by element: NaN and +-inf where the
reference has them, and elsewhere an error of at most RTOL times the size
of the terms that make up the result (its condition), which each test
derives from the float32 operations any implementation performs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minidnn
import minidnn.reference as ref
from conftest import assert_agrees, on_every_cpu_path
from strategies import (
    FINITE_SPECIAL_VALUES,
    SMALLEST_NORMAL,
    SPECIAL_VALUES,
    axes,
    class_indices,
    conv2d_geometries,
    float32_arrays,
    probabilities,
    shapes,
)

# About 17 float32 epsilons (2^-24 each): a few roundings, a polynomial exp
# or tanh of a few ulp, and sums of up to 70 terms in SIMD partial sums.
RTOL = 1e-6

# A float32 result below SMALLEST_NORMAL keeps an absolute precision of half
# a subnormal step (2^-150), not a relative one; adding SMALLEST_NORMAL to
# each term of a scale allows for that (RTOL * 2^-126 > 2^-150).
TINY = SMALLEST_NORMAL


# The softmax-family kernels compute exp(x - max) with vexp_nonpositive
# (csrc/cpu/simd/math.h), which flushes results below SMALLEST_NORMAL to 0
# for speed, where PyTorch keeps them subnormal: so each such exp may be off
# by up to SMALLEST_NORMAL absolute. Added to an exp term of a scale (which
# is multiplied by RTOL), this allows exactly that.
FLUSHED_EXP = SMALLEST_NORMAL / RTOL


def with_floor(magnitude):
    return np.abs(magnitude) + TINY


def finite_abs(a):
    """|a| with +-inf and NaN as 0: the peaks (see assert_agrees) count the
    finite values that float32 arithmetic could carry past float max."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), np.abs(a), 0.0)


# ---------------------------------------------------------------------------
# softmax and log_softmax
# ---------------------------------------------------------------------------


@st.composite
def logits_and_axis(draw):
    shape = draw(shapes(min_rank=0))
    return draw(float32_arrays(shape)), draw(axes(len(shape)))


def distance_from_max(x, axis):
    """|x - max(x)| along axis, float64 (a 0-d array is its own slice)."""
    x = x.astype(np.float64)
    if x.size == 0 or x.ndim == 0:
        return np.zeros_like(x)
    with np.errstate(invalid="ignore"):
        return np.abs(x - np.max(x, axis=axis, keepdims=True))


def softmax_scale(y, x, axis):
    """exp(x - max) is computed from the float32 difference x - max, whose
    rounding (relative 2^-24 of |x - max|) becomes a relative error of
    |x - max| * 2^-24 in exp: a probability e^-20 below the largest is only
    good to about 20 epsilons. Exact zeros (-inf logits) stay exact."""
    with np.errstate(invalid="ignore"):
        return np.where(y == 0, 0.0, y * (1.0 + distance_from_max(x, axis))) + FLUSHED_EXP


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@given(case=logits_and_axis())
@example(case=(np.array([-1.0, np.nan], dtype=np.float32), 0))  # the scalar path's log_softmax gave [inf, nan]
def test_softmax_forward(op, case):
    x, axis = case
    expected = getattr(ref, op)(x, axis=axis)
    if op == "softmax":
        scale = softmax_scale(expected, x, axis)
    else:
        # y = (x - max) - log(sum): two terms of one sign, each good to a few
        # epsilons of itself, and log(sum) to a few epsilons absolute (the
        # sum's relative error), so |y| + 1; a y near 0 (the largest of a
        # peaked slice) is only good to about 1e-7 absolute, in PyTorch too.
        scale = np.abs(expected) + 1.0
    # log_softmax's x - max can pass float max (float max - -float max).
    peak = finite_abs(expected) if op == "log_softmax" else None
    for path, out in on_every_cpu_path(lambda: getattr(minidnn, op)(x, axis=axis)).items():
        assert_agrees(out, expected, scale, RTOL, peak=peak, path=path)


@st.composite
def softmax_backward_inputs(draw, op):
    """grad_y, and y as the forward gives it (rounded to float32)."""
    x, axis = draw(logits_and_axis())
    with np.errstate(over="ignore"):  # log_softmax of huge logits rounds to -inf in float32, as the kernel's would
        y = getattr(ref, op)(x, axis=axis).astype(np.float32)
    return draw(float32_arrays(x.shape)), y, axis


def sum_along(a, axis):
    return a if a.ndim == 0 else np.sum(a, axis=axis, keepdims=True)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_backward(op, data):
    g, y, axis = data.draw(softmax_backward_inputs(op))
    expected = getattr(ref, op + "_backward")(g, y, axis=axis)
    g64, y64 = g.astype(np.float64), y.astype(np.float64)
    unchecked = None
    with np.errstate(invalid="ignore", over="ignore"):
        if op == "softmax":
            # y * (g - sum(g * y)): the difference can cancel (a peaked y), so
            # the error is relative to the two terms, not to their difference.
            dot_terms = sum_along(with_floor(g64 * y64), axis)
            scale = np.abs(y64) * (np.abs(g64) + dot_terms) + TINY
            peak = finite_abs(g64) + sum_along(finite_abs(g64 * y64), axis)
        else:
            # g - exp(y) * sum(g): likewise a difference of two terms.
            total = sum_along(np.abs(g64), axis)
            scale = np.abs(g64) + (np.exp(y64) + FLUSHED_EXP) * total + TINY
            peak = sum_along(finite_abs(g64), axis)
            # exp(y) flushed to 0 (FLUSHED_EXP) times an infinite sum(g) is
            # 0 * inf = NaN, where PyTorch's subnormal exp gives +-inf; the
            # kernels flush some such exps and not others.
            unchecked = (np.exp(y64) < SMALLEST_NORMAL) & np.isinf(sum_along(g64, axis))
    for path, out in on_every_cpu_path(lambda: getattr(minidnn, op + "_backward")(g, y, axis=axis)).items():
        assert_agrees(out, expected, scale, RTOL, peak=peak, unchecked=unchecked, path=path)


# ---------------------------------------------------------------------------
# cross-entropy and NLL loss
# ---------------------------------------------------------------------------


class LossCase:
    """One drawn loss call: input (logits or log-probabilities), target,
    keyword arguments, and the upstream gradient for the backward. Shapes
    are (C,) with a 0-d target, or (N, C, d1..dk) with k <= 2. The helpers
    give float64 arrays in the reference's layout: a batch of one for an
    unbatched case, the class axis last."""

    def __init__(self, x, target, grad_loss, **kwargs):
        self.x, self.target, self.grad_loss, self.kwargs = x, target, grad_loss, kwargs
        self.prob = target.dtype.kind == "f"
        self.batched = x.ndim > 1
        self.elements = x.shape[:1] + x.shape[2:] if self.batched else (1,)

    def __repr__(self):
        return f"LossCase(x={self.x!r}, target={self.target!r}, grad_loss={self.grad_loss!r}, kwargs={self.kwargs!r})"

    def class_last(self, a):
        """(N, C, d..) or (C,) -> (N, d.., C)."""
        a = np.asarray(a, dtype=np.float64)
        return np.moveaxis(a if self.batched else a[None], 1, -1)

    def from_class_last(self, a):
        return np.moveaxis(a, -1, 1).reshape(self.x.shape)

    def weights(self):
        w = self.kwargs.get("weight")
        return np.ones(self.x.shape[1 if self.batched else 0]) if w is None else w.astype(np.float64)

    def index_parts(self):
        """(ignored, w[t] with 0 where ignored, one-hot of t), (N, d..) and (N, d.., C)."""
        t = (self.target if self.batched else self.target[None]).reshape(self.elements)
        ignored = t == self.kwargs["ignore_index"]
        safe = np.where(ignored, 0, t)
        w = self.weights()
        return ignored, np.where(ignored, 0.0, w[safe]), safe[..., None] == np.arange(w.size)

    def smoothed_target(self):
        """q * (1 - eps) + eps / C, (N, d.., C)."""
        eps = self.kwargs.get("label_smoothing", 0.0)
        q = self.class_last(self.target)
        return q * (1.0 - eps) + eps / q.shape[-1]

    def mean_divisor(self):
        return int(np.prod(self.elements)) if self.prob else self.index_parts()[1].sum()

    def reduce(self, per_element):
        """A per-element bound (N, d..) reduced like the loss: summed for
        "sum" and "mean" (divided by the mean's divisor), else in the shape
        of the per-element loss."""
        reduction = self.kwargs["reduction"]
        if reduction == "none":
            return per_element.reshape(self.elements if self.batched else ())
        total = per_element.sum()
        if reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                total = total / self.mean_divisor()
        return np.asarray(total)

    def reduce_peak(self, per_element_peak, reduced_scale):
        """The largest float32 intermediate of a reduced loss: the
        per-element ones (an element that overflows makes the sum inf) and
        the result. The sum itself is float64 in minidnn."""
        if self.kwargs["reduction"] == "none":
            return per_element_peak.reshape(reduced_scale.shape)
        return np.maximum(np.max(per_element_peak, initial=0.0), reduced_scale)

    def element_grads(self):
        """The upstream gradient of each element's loss, (N, d..)."""
        g = np.asarray(self.grad_loss, dtype=np.float64)
        if self.kwargs["reduction"] == "none":
            return g.reshape(self.elements)
        if self.kwargs["reduction"] == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                g = g / self.mean_divisor()
        return np.broadcast_to(g, self.elements)


@st.composite
def loss_cases(draw, *, prob_targets: bool, smoothing: bool, finite_grad_loss: bool = False):
    """Inputs of rank 1 to 4 with at least one class (any float32: nll_loss
    takes log-probabilities but does not require them), and everything else
    a loss call can take; grad_loss without +-inf and NaN if finite_grad_loss."""
    shape = draw(shapes(min_rank=1, max_rank=4))
    classes_axis = 0 if len(shape) == 1 else 1
    if shape[classes_axis] == 0:
        shape = shape[:classes_axis] + (1,) + shape[classes_axis + 1 :]
    classes = shape[classes_axis]
    x = draw(float32_arrays(shape))
    element_shape = shape[:classes_axis] + shape[classes_axis + 1 :]
    kwargs = {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))}
    # Weights of moderate size, exact zeros among them (a "mean" over
    # zero-weight targets is 0 / 0).
    if draw(st.booleans()):
        kwargs["weight"] = draw(
            float32_arrays((classes,), signed=False, min_exponent=-8, max_exponent=8, specials=(0.0,), max_specials=2)
        )
    if smoothing:
        kwargs["label_smoothing"] = draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)))
    if prob_targets:
        target = draw(probabilities(shape, classes_axis))
    else:
        kwargs["ignore_index"] = draw(st.one_of(st.just(-100), st.integers(0, classes - 1)))
        target = draw(class_indices(element_shape, classes, kwargs["ignore_index"]))
    if kwargs["reduction"] == "none":
        grad_loss = draw(float32_arrays(element_shape, specials=FINITE_SPECIAL_VALUES if finite_grad_loss else SPECIAL_VALUES))
    else:
        grad_loss = draw(st.floats(width=32, allow_nan=not finite_grad_loss, allow_infinity=not finite_grad_loss))
    return LossCase(x, target, grad_loss, **kwargs)


def log_softmax_terms(case):
    """|log_softmax| + 1 per class, class last: what the error of each
    log-probability inside the loss is relative to (see test_softmax_forward)."""
    return np.abs(case.class_last(ref.log_softmax(case.x, axis=0 if case.x.ndim == 1 else 1))) + 1.0


def check_cross_entropy(case):
    expected = ref.cross_entropy(case.x, case.target, **case.kwargs)
    lp_terms = log_softmax_terms(case)
    w = case.weights()
    with np.errstate(invalid="ignore", over="ignore"):
        if case.prob:
            # -sum_c w_c q_c lp_c: a sum of terms of one sign for q >= 0.
            per_element = np.sum(w * case.smoothed_target() * lp_terms, axis=-1)
            sums = np.sum(finite_abs(w * case.smoothed_target() * lp_terms), axis=-1)
        else:
            eps = case.kwargs.get("label_smoothing", 0.0)
            ignored, w_t, one_hot = case.index_parts()
            lp_t_terms = np.sum(np.where(one_hot, lp_terms, 0.0), axis=-1)
            per_element = np.where(ignored, 0.0, (1.0 - eps) * w_t * lp_t_terms)
            sums = finite_abs(per_element)
            if eps:
                # The smoothing sum, before its factor eps / C, is a float32
                # sum in any implementation (-(lp * w).sum() in PyTorch).
                smoothing_sum = np.where(ignored, 0.0, np.sum(w * lp_terms, axis=-1))
                per_element += eps / w.size * smoothing_sum
                sums = np.maximum(sums, np.where(ignored, 0.0, np.sum(finite_abs(w * lp_terms), axis=-1)))
    scale = case.reduce(per_element + TINY)
    peak = case.reduce_peak(sums, scale)
    for path, out in on_every_cpu_path(lambda: minidnn.cross_entropy(case.x, case.target, **case.kwargs)).items():
        assert_agrees(out, expected, scale, RTOL, peak=peak, path=path)


@given(case=loss_cases(prob_targets=False, smoothing=True))
def test_cross_entropy_class_targets(case):
    check_cross_entropy(case)


@given(case=loss_cases(prob_targets=True, smoothing=True))
def test_cross_entropy_prob_targets(case):
    check_cross_entropy(case)


def softmax_terms(case):
    """Each probability with its error allowance (see softmax_scale), class last."""
    axis = 0 if case.x.ndim == 1 else 1
    return case.class_last(softmax_scale(ref.softmax(case.x, axis=axis), case.x, axis))


def check_cross_entropy_backward(case):
    expected = ref.cross_entropy_backward(case.grad_loss, case.x, case.target, **case.kwargs)
    p = softmax_terms(case)
    w = case.weights()
    g = np.abs(case.element_grads())[..., None]
    with np.errstate(invalid="ignore", over="ignore"):
        if case.prob:
            # g * (p_c * sum_k w_k q_k - w_c q_c): a difference of two terms.
            wq = with_floor(w * case.smoothed_target())
            scale = g * (p * np.sum(wq, axis=-1, keepdims=True) + wq) + TINY
            peak = g * (np.sum(wq, axis=-1, keepdims=True) + w * (1.0 + case.smoothed_target()))
        else:
            # g * ((1 - eps) w_t (p_c - [c == t]) + eps / C (W p_c - w_c)):
            # differences again, so relative to the terms.
            eps = case.kwargs.get("label_smoothing", 0.0)
            ignored, w_t, one_hot = case.index_parts()
            w_t = w_t[..., None]
            terms = (1.0 - eps) * w_t * (p + one_hot) + eps / w.size * (w.sum() * p + w)
            scale = np.where(ignored[..., None], 0.0, g * terms + TINY)
            peak = np.where(ignored[..., None], 0.0, g * (w_t + w.sum() + w))
    scale, peak = case.from_class_last(scale), case.from_class_last(peak)
    run = lambda: minidnn.cross_entropy_backward(case.grad_loss, case.x, case.target, **case.kwargs)  # noqa: E731
    for path, out in on_every_cpu_path(run).items():
        assert_agrees(out, expected, scale, RTOL, peak=peak, path=path)


# With an infinite or NaN grad_loss, which gradients are NaN and which +-inf
# is an accident of the formula (PyTorch's, through log_softmax's backward,
# differs from the one documented), so the backwards take a finite one.
@given(case=loss_cases(prob_targets=False, smoothing=True, finite_grad_loss=True))
@example(  # the column path gave NaN for an ignored element with an inf logit
    case=LossCase(
        np.array([[[np.inf, 0.25], [0.5, 0.75]]], dtype=np.float32),
        np.array([[-100, -100]]),
        1.0,
        reduction="sum",
        ignore_index=-100,
    )
)
def test_cross_entropy_backward_class_targets(case):
    check_cross_entropy_backward(case)


@given(case=loss_cases(prob_targets=True, smoothing=True, finite_grad_loss=True))
def test_cross_entropy_backward_prob_targets(case):
    check_cross_entropy_backward(case)


@given(case=loss_cases(prob_targets=False, smoothing=False))
def test_nll_loss(case):
    expected = ref.nll_loss(case.x, case.target, **case.kwargs)
    _, w_t, one_hot = case.index_parts()
    with np.errstate(invalid="ignore", over="ignore"):
        # -w_t * lp_t: one product, exact in float64; the bound allows for
        # the final rounding to float32.
        per_element = np.where(w_t == 0, 0.0, w_t * with_floor(np.sum(np.where(one_hot, case.class_last(case.x), 0), axis=-1)))
    scale = case.reduce(per_element)
    peak = case.reduce_peak(finite_abs(per_element), finite_abs(scale))
    for path, out in on_every_cpu_path(lambda: minidnn.nll_loss(case.x, case.target, **case.kwargs)).items():
        assert_agrees(out, expected, scale, RTOL, peak=peak, path=path)


@given(case=loss_cases(prob_targets=False, smoothing=False))
def test_nll_loss_backward(case):
    expected = ref.nll_loss_backward(case.grad_loss, case.x, case.target, **case.kwargs)
    ignored, w_t, one_hot = case.index_parts()
    g = case.element_grads()
    with np.errstate(invalid="ignore", over="ignore"):
        # -w_t * g at the target and an exact 0 elsewhere.
        at_target = np.where(ignored, 0.0, with_floor(w_t * g))
    scale = case.from_class_last(np.where(one_hot, at_target[..., None], 0.0))
    run = lambda: minidnn.nll_loss_backward(case.grad_loss, case.x, case.target, **case.kwargs)  # noqa: E731
    for path, out in on_every_cpu_path(run).items():
        assert_agrees(out, expected, scale, RTOL, peak=finite_abs(scale), path=path)


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------

# Slopes of either sign and above 1, and the default; float32 values, as the
# kernels (and PyTorch's) use the slope in float32.
slopes = st.one_of(st.just(0.01), st.just(0.0), st.floats(-4.0, 4.0, width=32))


@pytest.mark.parametrize("op", ["relu", "leaky_relu", "sigmoid", "tanh"])
@given(data=st.data())
def test_activation_forward(op, data):
    x = data.draw(float32_arrays(data.draw(shapes(min_rank=0))))
    kwargs = {"negative_slope": data.draw(slopes)} if op == "leaky_relu" else {}
    with np.errstate(invalid="ignore"):  # 0 * inf in leaky_relu's reference
        expected = getattr(ref, op)(x, **kwargs)
    # relu is exact; the others round once (leaky_relu) or are a few ulp
    # (sigmoid, tanh: see test_activation.py's ulp test).
    scale = 0.0 if op == "relu" else with_floor(expected)
    peak = finite_abs(expected)
    for path, out in on_every_cpu_path(lambda: getattr(minidnn, op)(x, **kwargs)).items():
        assert_agrees(out, expected, scale, RTOL, peak=peak, path=path)


@pytest.mark.parametrize("op", ["relu", "leaky_relu", "sigmoid", "tanh"])
@given(data=st.data())
def test_activation_backward(op, data):
    shape = data.draw(shapes(min_rank=0))
    kwargs = {"negative_slope": data.draw(slopes)} if op == "leaky_relu" else {}
    g = data.draw(float32_arrays(shape))
    x = data.draw(float32_arrays(shape))
    # relu and leaky_relu take the input; sigmoid and tanh their output.
    saved = getattr(ref, op)(x).astype(np.float32) if op in ("sigmoid", "tanh") else x
    with np.errstate(invalid="ignore"):  # 0 * inf in leaky_relu's reference
        expected = getattr(ref, op + "_backward")(g, saved, **kwargs)
    g64, s64 = g.astype(np.float64), saved.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        if op == "relu":
            scale = 0.0  # grad_y or 0: exact
        elif op == "tanh":
            # grad_y * (1 - y * y): near |y| = 1 the difference cancels, and
            # a float32 y * y (PyTorch's formula) is only good to 2^-24 of 1.
            scale = np.abs(g64) * (1.0 + s64 * s64) + TINY
        else:
            scale = with_floor(expected)  # a product or two, no cancellation
        peak = finite_abs(expected)
    run = lambda: getattr(minidnn, op + "_backward")(g, saved, **kwargs)  # noqa: E731
    for path, out in on_every_cpu_path(run).items():
        assert_agrees(out, expected, scale, RTOL, peak=peak, path=path)


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------

_CONV_ACTIVATIONS = {
    None: lambda v: v,
    "relu": lambda v: np.maximum(v, 0.0),
    "leaky_relu": lambda v: np.where(v > 0, v, 0.01 * v),
    "sigmoid": lambda v: 0.5 * (1.0 + np.tanh(0.5 * v)),
    "tanh": np.tanh,
}


# Fewer examples than the elementwise ops: each runs a float64 reference
# convolution and six kernel calls.
@settings(max_examples=60)
@given(data=st.data())
def test_conv2d(data):
    x_shape, w_shape, kwargs = data.draw(conv2d_geometries())
    activation = data.draw(st.sampled_from(list(_CONV_ACTIVATIONS)))
    # Finite values over 2^-20..2^20: the sums stay far from overflow, and the
    # zero padding never meets an inf (0 * inf is NaN in any implementation).
    x = data.draw(float32_arrays(x_shape, min_exponent=-20, max_exponent=20, specials=FINITE_SPECIAL_VALUES[:2]))
    w = data.draw(float32_arrays(w_shape, min_exponent=-20, max_exponent=20, specials=FINITE_SPECIAL_VALUES[:2]))
    b = data.draw(st.one_of(st.none(), float32_arrays((w_shape[0],), min_exponent=-20, max_exponent=20, specials=())))
    expected = _CONV_ACTIVATIONS[activation](ref.conv2d(x, w, b, **kwargs))
    # The condition of each output: the sum of the magnitudes of its terms
    # (plus the activation's own few ulp for sigmoid and tanh); float32
    # accumulation of L = C/groups * R * S terms is good to about L ulp of it.
    scale = ref.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **kwargs) + TINY
    if activation in ("sigmoid", "tanh"):
        scale = scale + np.abs(expected)
    reduction = w_shape[1] * w_shape[2] * w_shape[3]
    run = lambda: minidnn.conv2d(x, w, b, activation=activation, **kwargs)  # noqa: E731
    for path, out in on_every_cpu_path(run).items():
        assert_agrees(out, expected, scale, RTOL * max(reduction, 4) / 4, path=path)


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------


@st.composite
def pool2d_geometries(draw):
    """(x shape, kernel, stride, pads ((t, b), (l, r)), dilation, ceil_mode):
    kernels up to 4, strides up to 3, dilations up to 2, each pad up to the
    dilated extent minus one; rows up to 40 wide (past a 16-lane vector)."""
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple((draw(st.integers(0, dd * (kk - 1))), draw(st.integers(0, dd * (kk - 1)))) for kk, dd in zip(k, d))
    spans = [dd * (kk - 1) + 1 - sum(pp) for kk, dd, pp in zip(k, d, pads)]
    h = draw(st.integers(max(1, spans[0]), max(1, spans[0]) + 8))
    w = draw(st.integers(max(1, spans[1]), max(1, spans[1]) + 40))
    shape = (draw(st.integers(0, 2)), draw(st.integers(1, 3)), h, w)
    return shape, k, s, pads, d, draw(st.booleans())


# Fewer examples than the elementwise ops: each runs the float64 reference
# and six kernel calls per op.
@settings(max_examples=60)
@given(geometry=pool2d_geometries(), data=st.data())
def test_max_pool2d(geometry, data):
    shape, k, s, pads, d, ceil_mode = geometry
    x = data.draw(float32_arrays(shape))
    try:
        expected, indices = ref.max_pool2d(x, k, s, pads, d, ceil_mode, return_indices=True)
    except ValueError:  # a window wholly in padding: the op refuses it too
        with pytest.raises(ValueError, match="padding"):
            minidnn.max_pool2d(x, k, s, pads, d, ceil_mode)
        return
    run = lambda: minidnn.max_pool2d(x, k, s, pads, d, ceil_mode, return_indices=True)  # noqa: E731
    for path, (out, idx) in on_every_cpu_path(run).items():
        assert_agrees(out, expected, 0.0, RTOL, path=path)  # exact: a maximum rounds nothing
        np.testing.assert_array_equal(idx, indices, err_msg=path)


@settings(max_examples=60)
@given(geometry=pool2d_geometries(), data=st.data())
def test_avg_pool2d(geometry, data):
    shape, k, s, pads, d, ceil_mode = geometry
    x = data.draw(float32_arrays(shape, min_exponent=-20, max_exponent=20, specials=FINITE_SPECIAL_VALUES[:2]))
    kwargs = dict(ceil_mode=ceil_mode, count_include_pad=data.draw(st.booleans()),
                  divisor_override=data.draw(st.one_of(st.none(), st.integers(1, 20))), dilation=d)
    expected = ref.avg_pool2d(x, k, s, pads, **kwargs)
    # A float32 sum of up to k_h * k_w terms, then one division.
    scale = ref.avg_pool2d(np.abs(x), k, s, pads, **kwargs) + TINY
    run = lambda: minidnn.avg_pool2d(x, k, s, pads, **kwargs)  # noqa: E731
    for path, out in on_every_cpu_path(run).items():
        assert_agrees(out, expected, scale, RTOL * max(k[0] * k[1], 4) / 4, path=path)
    # The backward: each grad_x element sums the shares of up to k_h * k_w windows.
    g = data.draw(float32_arrays(expected.shape, min_exponent=-20, max_exponent=20, specials=FINITE_SPECIAL_VALUES[:2]))
    expected = ref.avg_pool2d_backward(g, shape, k, s, pads, **kwargs)
    scale = ref.avg_pool2d_backward(np.abs(g), shape, k, s, pads, **kwargs) + TINY
    run = lambda: minidnn.avg_pool2d_backward(g, shape, k, s, pads, **kwargs)  # noqa: E731
    for path, out in on_every_cpu_path(run).items():
        assert_agrees(out, expected, scale, RTOL * max(k[0] * k[1], 4) / 4, path=path)


@st.composite
def adaptive_geometries(draw):
    """(x shape, output size): planes up to 12 x 45 (past a 16-lane vector),
    output sizes from 1 (global) to past the input's (overlapping windows)."""
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 45))
    out = (draw(st.integers(1, h + 3)), draw(st.integers(1, w + 3)))
    return (draw(st.integers(0, 2)), draw(st.integers(1, 3)), h, w), out


@settings(max_examples=60)
@given(geometry=adaptive_geometries(), data=st.data())
def test_adaptive_pooling(geometry, data):
    shape, out_size = geometry
    x = data.draw(float32_arrays(shape, min_exponent=-20, max_exponent=20, specials=FINITE_SPECIAL_VALUES[:2]))
    expected = ref.adaptive_avg_pool2d(x, out_size)
    # A float32 sum of up to ceil(H / out) * ceil(W / out) + 1 terms, then one division.
    terms = (-(-shape[2] // out_size[0]) + 1) * (-(-shape[3] // out_size[1]) + 1)
    scale = ref.adaptive_avg_pool2d(np.abs(x), out_size) + TINY
    for path, out in on_every_cpu_path(lambda: minidnn.adaptive_avg_pool2d(x, out_size)).items():
        assert_agrees(out, expected, scale, RTOL * max(terms, 4) / 4, path=path)
    # Max: NaN, +-inf and signed zeros among the values, and, rounded to
    # integers, ties everywhere (indices name the first maximum, the last NaN).
    x = data.draw(float32_arrays(shape, max_specials=8))
    if data.draw(st.booleans()):
        x = np.round(x)
    expected, indices = ref.adaptive_max_pool2d(x, out_size, return_indices=True)
    run = lambda: minidnn.adaptive_max_pool2d(x, out_size, return_indices=True)  # noqa: E731
    for path, (out, idx) in on_every_cpu_path(run).items():
        assert_agrees(out, expected, 0.0, RTOL, path=path)
        np.testing.assert_array_equal(idx, indices, err_msg=path)
