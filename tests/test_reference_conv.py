"""The float64 convolution reference (minidnn.reference.conv) against
PyTorch in float64, against finite differences, and against the adjoint
identity <conv2d(a), b> = <a, conv_transpose2d(b)> for the forms PyTorch
lacks (asymmetric and "same" padding with strides)."""

from __future__ import annotations

import numpy as np
import pytest

import minidnn.reference as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL = 1e-12


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def assert_same(ours, theirs):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=1e-12)


# (x shape, weight shape, stride, padding, dilation, groups)
CONV2D_CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 1, 1, 1),
    ((1, 4, 9, 8), (6, 2, 3, 2), (2, 1), (1, 0), (1, 2), 2),
    ((2, 6, 8, 8), (6, 1, 3, 3), 2, 1, 1, 6),  # depthwise
    ((1, 4, 5, 5), (8, 1, 3, 3), 1, 2, 2, 4),  # depthwise, channel multiplier 2
    ((1, 3, 11, 11), (5, 3, 7, 7), 2, 3, 1, 1),  # first-layer shape
    ((2, 5, 4, 4), (3, 5, 1, 1), 1, 0, 1, 1),  # 1x1
    ((1, 2, 3, 3), (2, 2, 3, 3), 1, 0, 1, 1),  # kernel as large as the input
    ((0, 2, 4, 4), (3, 2, 3, 3), 1, 1, 1, 1),  # empty batch
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CONV2D_CASES, ids=str)
def test_conv2d_forward_and_backward_match_torch(rng, xs, ws, stride, padding, dilation, groups):
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    y = ref.conv2d(x, w, b, stride, padding, dilation, groups)
    tx, tw, tb = (t64(a).requires_grad_() for a in (x, w, b))
    ty = F.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    assert_same(y, ty)
    g = rng.standard_normal(y.shape)
    ty.backward(t64(g))
    gx, gw, gb = ref.conv2d_backward(g, x, w, stride, padding, dilation, groups)
    assert_same(gx, tx.grad if tx.grad is not None else torch.zeros_like(tx))
    assert_same(gw, tw.grad)
    assert_same(gb, tb.grad)


def test_conv2d_padding_forms(rng):
    x, w = rng.standard_normal((1, 2, 6, 7)), rng.standard_normal((3, 2, 3, 2))
    padded = F.pad(t64(x), (0, 2, 1, 0))  # (left, right, top, bottom)
    assert_same(ref.conv2d(x, w, padding=((1, 0), (0, 2))), F.conv2d(padded, t64(w)))
    assert_same(ref.conv2d(x, w, padding="valid"), F.conv2d(t64(x), t64(w)))
    assert_same(ref.conv2d(x, w, padding="same", dilation=2), F.conv2d(t64(x), t64(w), padding="same", dilation=2))


@pytest.mark.parametrize(
    "size,kernel,stride,pads",
    [(5, 3, 2, (1, 1)), (6, 3, 2, (0, 1)), (7, 1, 3, (0, 0)), (4, 4, 1, (1, 2)), (8, 5, 4, (0, 1))],
)
def test_same_padding_is_onnx_same_upper(rng, size, kernel, stride, pads):
    """Output ceil(size / stride), the odd extra pad at the end."""
    x, w = rng.standard_normal((1, 1, size, 3)), rng.standard_normal((1, 1, kernel, 1))
    y = ref.conv2d(x, w, stride=(stride, 1), padding="same")
    assert y.shape[2] == -(-size // stride)
    assert_same(y, ref.conv2d(x, w, stride=(stride, 1), padding=(pads, (0, 0))))


# (x shape, weight shape, stride, padding, output_padding, groups, dilation)
TRANSPOSE_CASES = [
    ((2, 3, 4, 5), (3, 4, 3, 3), 2, 1, 1, 1, 1),
    ((1, 4, 3, 3), (4, 3, 2, 3), (2, 3), (0, 1), (1, 2), 2, 1),
    ((1, 2, 5, 4), (2, 2, 3, 3), 1, 2, 0, 1, 2),
    ((2, 4, 3, 3), (4, 1, 3, 3), 2, 1, 0, 4, 1),  # depthwise
]


@pytest.mark.parametrize("xs,ws,stride,padding,output_padding,groups,dilation", TRANSPOSE_CASES, ids=str)
def test_conv_transpose2d_matches_torch(rng, xs, ws, stride, padding, output_padding, groups, dilation):
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[1] * groups)
    y = ref.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
    tx, tw, tb = (t64(a).requires_grad_() for a in (x, w, b))
    ty = F.conv_transpose2d(tx, tw, tb, stride, padding, output_padding, groups, dilation)
    assert_same(y, ty)
    g = rng.standard_normal(y.shape)
    ty.backward(t64(g))
    gx, gw, gb = ref.conv_transpose2d_backward(g, x, w, stride, padding, output_padding, groups, dilation)
    assert_same(gx, tx.grad)
    assert_same(gw, tw.grad)
    assert_same(gb, tb.grad)


@pytest.mark.parametrize(
    "in_hw,kernel,stride,dilation,conv_padding,transpose_padding,output_padding",
    [
        ((6, 8), (3, 3), (2, 2), (1, 1), "same", "same", 0),
        ((9, 4), (4, 2), (3, 2), (1, 2), "same", "same", 0),
        ((4, 6), (1, 1), (2, 3), (1, 1), "same", "same", 0),  # full output shorter than input * stride
        ((7, 7), (3, 2), (2, 1), (1, 1), ((2, 0), (0, 1)), ((2, 0), (0, 1)), (0, 0)),
        ((9, 5), (3, 3), (2, 2), (1, 1), ((0, 1), (1, 1)), ((0, 1), (1, 1)), (1, 0)),
    ],
)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(rng, in_hw, kernel, stride, dilation, conv_padding,
                                                   transpose_padding, output_padding):
    """<conv2d(a), b> = <a, conv_transpose2d(b)> with the same weight, for
    the padding forms PyTorch's conv_transpose2d lacks; and its backward
    against conv2d (the transposed op is linear in x)."""
    w = rng.standard_normal((3, 2) + kernel)
    a = rng.standard_normal((2, 2) + in_hw)
    ya = ref.conv2d(a, w, stride=stride, padding=conv_padding, dilation=dilation)
    b = rng.standard_normal(ya.shape)
    tb = ref.conv_transpose2d(b, w, stride=stride, padding=transpose_padding, output_padding=output_padding,
                              dilation=dilation)
    assert tb.shape == a.shape
    np.testing.assert_allclose(np.vdot(ya, b), np.vdot(a, tb), rtol=1e-12)
    g = rng.standard_normal(tb.shape)
    gx, _, _ = ref.conv_transpose2d_backward(g, b, w, stride, transpose_padding, output_padding, 1, dilation)
    # conv_transpose2d is linear in x, so its input gradient is conv2d of g.
    assert_same(gx, ref.conv2d(g, w, stride=stride, padding=conv_padding, dilation=dilation))


def test_conv_backward_weight_by_finite_differences(rng):
    x, w = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((2, 2, 2, 3))
    g = rng.standard_normal(ref.conv2d(x, w, padding=((1, 0), (2, 1)), stride=2).shape)
    _, gw, _ = ref.conv2d_backward(g, x, w, stride=2, padding=((1, 0), (2, 1)))
    h = 1e-6
    numeric = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        wp, wm = w.copy(), w.copy()
        wp[i] += h
        wm[i] -= h
        numeric[i] = np.vdot(g, ref.conv2d(x, wp, stride=2, padding=((1, 0), (2, 1))) -
                             ref.conv2d(x, wm, stride=2, padding=((1, 0), (2, 1)))) / (2 * h)
    np.testing.assert_allclose(gw, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "xs,ws,stride,padding,dilation,groups",
    [((2, 3, 17), (4, 3, 5), 2, 2, 1, 1), ((1, 4, 12), (4, 1, 3), 1, "same", 2, 4), ((2, 2, 9), (6, 2, 1), 3, 0, 1, 1)],
    ids=str,
)
def test_conv1d_matches_torch(rng, xs, ws, stride, padding, dilation, groups):
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    y = ref.conv1d(x, w, b, stride, padding, dilation, groups)
    tx, tw, tb = (t64(a).requires_grad_() for a in (x, w, b))
    ty = F.conv1d(tx, tw, tb, stride, padding, dilation, groups)
    assert_same(y, ty)
    g = rng.standard_normal(y.shape)
    ty.backward(t64(g))
    for ours, theirs in zip(ref.conv1d_backward(g, x, w, stride, padding, dilation, groups), (tx, tw, tb)):
        assert_same(ours, theirs.grad)


def test_conv1d_causal_pads_the_left_only(rng):
    x, w = rng.standard_normal((2, 3, 10)), rng.standard_normal((5, 3, 3))
    y = ref.conv1d(x, w, padding="causal", dilation=2)
    assert y.shape[2] == 10
    assert_same(y, F.conv1d(F.pad(t64(x), (4, 0)), t64(w), dilation=2))
    # y[t] depends on x[..t] only
    x2 = x.copy()
    x2[:, :, 6:] += 1.0
    np.testing.assert_array_equal(ref.conv1d(x2, w, padding="causal", dilation=2)[:, :, :6], y[:, :, :6])
    gx, gw, gb = ref.conv1d_backward(np.ones_like(y), x, w, padding="causal", dilation=2)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (5,)
    np.testing.assert_array_equal(gx[:, :, -1], np.einsum("kc->c", w[:, :, 2])[None, :].repeat(2, 0))
