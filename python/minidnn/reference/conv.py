"""Float64 NumPy reference for convolution: conv2d, conv_transpose2d and
conv1d, forward and backward (the oracle of the convolution kernels).

Semantics follow ``torch.nn.functional`` (NCHW activations, weights
``(K, C/groups, R, S)`` for convolution and ``(C, K/groups, R, S)`` for
transposed convolution), with the padding forms of API.md:

* an int, a pair ``(ph, pw)``, a pair of pairs ``((top, bottom), (left, right))``,
  ``"valid"`` (no padding) or ``"same"`` (output size ``ceil(input / stride)``,
  an odd extra pad at the end, as ONNX SAME_UPPER); 1-D adds ``"causal"``
  (all padding on the left).
* for ``conv_transpose2d`` the padding crops the full output
  ``(H - 1) * stride + dilation * (R - 1) + 1 + output_padding``; ``"same"``
  crops it to ``H * stride`` with the crop placed as the padding of the
  matching ``conv2d(..., padding="same")`` (the odd extra at the end), and
  where the full output is shorter than that it is extended with zeros at
  the end, as ``output_padding`` does.

Every convolution is a sum over the kernel taps of a strided window of the
padded input times one (K, C) slice of the weight; the backward passes are
written out the same way (scatter into the padded input, correlate with the
output gradient) rather than derived from the forward.
"""

import numpy as np

from ._common import f64 as _f64
from ._common import int_pair as _pair

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv1d",
    "conv1d_backward",
]


def _same_pads(size, kernel, stride, dilation):
    """(before, after) that give ceil(size / stride) outputs, odd extra after."""
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    return total // 2, total - total // 2


def _pads(padding, sizes, kernels, strides, dilations):
    """((top, bottom), (left, right)) from any padding form of API.md."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return tuple(_same_pads(*args) for args in zip(sizes, kernels, strides, dilations))
        raise ValueError(f"padding: unknown form {padding!r}")
    if isinstance(padding, (tuple, list)) and isinstance(padding[0], (tuple, list)):
        return (int(padding[0][0]), int(padding[0][1])), (int(padding[1][0]), int(padding[1][1]))
    ph, pw = _pair(padding)
    return (ph, ph), (pw, pw)


def _window(xp, r, s, out_hw, stride, dilation):
    """The input values tap (r, s) meets at every output position."""
    (p, q), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return xp[:, :, r * dh : r * dh + (p - 1) * sh + 1 : sh, s * dw : s * dw + (q - 1) * sw + 1 : sw]


def _conv_geometry(x_shape, w_shape, stride, padding, dilation):
    stride, dilation = _pair(stride), _pair(dilation)
    (_, _, h, w), (_, _, kr, ks) = x_shape, w_shape
    pads = _pads(padding, (h, w), (kr, ks), stride, dilation)
    hp, wp = h + sum(pads[0]), w + sum(pads[1])
    p = (hp - dilation[0] * (kr - 1) - 1) // stride[0] + 1
    q = (wp - dilation[1] * (ks - 1) - 1) // stride[1] + 1
    return stride, dilation, pads, (p, q)


def _padded(x, pads):
    return np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, k, p, q] = bias[k] + sum_{c, r, s} w[k, c, r, s] x_pad[n, g(k) C/g + c, p sh + r dh, q sw + s dw]."""
    x, weight = _f64(x), _f64(weight)
    stride, dilation, pads, out_hw = _conv_geometry(x.shape, weight.shape, stride, padding, dilation)
    xp = _padded(x, pads)
    n, k = x.shape[0], weight.shape[0]
    cg, kg = weight.shape[1], k // groups
    y = np.zeros((n, k) + out_hw)
    for g in range(groups):
        xg = xp[:, g * cg : (g + 1) * cg]
        wg = weight[g * kg : (g + 1) * kg]
        for r in range(weight.shape[2]):
            for s in range(weight.shape[3]):
                y[:, g * kg : (g + 1) * kg] += np.einsum(
                    "ncpq,kc->nkpq", _window(xg, r, s, out_hw, stride, dilation), wg[:, :, r, s]
                )
    if bias is not None:
        y += _f64(bias)[None, :, None, None]
    return y


def conv2d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1, groups=1):
    """(grad_x, grad_weight, grad_bias) of conv2d."""
    grad_y, x, weight = _f64(grad_y), _f64(x), _f64(weight)
    stride, dilation, pads, out_hw = _conv_geometry(x.shape, weight.shape, stride, padding, dilation)
    xp = _padded(x, pads)
    grad_xp = np.zeros_like(xp)
    grad_w = np.zeros_like(weight)
    cg, kg = weight.shape[1], weight.shape[0] // groups
    for g in range(groups):
        cs, ks = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        gy = grad_y[:, ks]
        for r in range(weight.shape[2]):
            for s in range(weight.shape[3]):
                _window(grad_xp[:, cs], r, s, out_hw, stride, dilation)[...] += np.einsum(
                    "nkpq,kc->ncpq", gy, weight[ks, :, r, s]
                )
                grad_w[ks, :, r, s] = np.einsum("nkpq,ncpq->kc", gy, _window(xp[:, cs], r, s, out_hw, stride, dilation))
    (top, _), (left, _) = pads
    grad_x = grad_xp[:, :, top : top + x.shape[2], left : left + x.shape[3]]
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3))


def _transpose_geometry(x_shape, w_shape, stride, padding, output_padding, dilation):
    """Stride, dilation, the full output size, and (crop before, crop after)
    per axis; a negative crop after is an extension with zeros."""
    stride, dilation, output_padding = _pair(stride), _pair(dilation), _pair(output_padding)
    (_, _, h, w), (_, _, kr, ks) = x_shape, w_shape
    full = tuple(
        (size - 1) * st + d * (kk - 1) + 1 + op
        for size, st, d, kk, op in zip((h, w), stride, dilation, (kr, ks), output_padding)
    )
    if padding == "same":
        crops = []
        for size, st, d, kk, f in zip((h, w), stride, dilation, (kr, ks), full):
            before = _same_pads(size * st, kk, st, d)[0]
            crops.append((before, f - before - size * st))
    else:
        crops = _pads(padding, (h, w), (kr, ks), stride, dilation)
    return stride, dilation, full, tuple(crops)


def _crop(full, crops):
    """full[..., cropped] with negative crops at the end extended by zeros."""
    (top, bottom), (left, right) = crops
    out = full[:, :, top : full.shape[2] - max(bottom, 0), left : full.shape[3] - max(right, 0)]
    return np.pad(out, ((0, 0), (0, 0), (0, max(-bottom, 0)), (0, max(-right, 0))))


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The adjoint of conv2d in x: every input value scatters weight[c, k] times
    itself into the full output at (h sh + r dh, w sw + s dw), then the
    padding crops it."""
    x, weight = _f64(x), _f64(weight)
    stride, dilation, full_hw, crops = _transpose_geometry(x.shape, weight.shape, stride, padding, output_padding, dilation)
    n, c = x.shape[:2]
    kg, cg = weight.shape[1], c // groups
    full = np.zeros((n, kg * groups) + full_hw)
    in_hw = x.shape[2:]
    for g in range(groups):
        cs, ks = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        for r in range(weight.shape[2]):
            for s in range(weight.shape[3]):
                _window(full[:, ks], r, s, in_hw, stride, dilation)[...] += np.einsum(
                    "nchw,ck->nkhw", x[:, cs], weight[cs, :, r, s]
                )
    y = _crop(full, crops)
    if bias is not None:
        y += _f64(bias)[None, :, None, None]
    return y


def conv_transpose2d_backward(grad_y, x, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """(grad_x, grad_weight, grad_bias) of conv_transpose2d."""
    grad_y, x, weight = _f64(grad_y), _f64(x), _f64(weight)
    stride, dilation, full_hw, crops = _transpose_geometry(x.shape, weight.shape, stride, padding, output_padding, dilation)
    (top, bottom), (left, right) = crops
    # The gradient of the full output: grad_y where it was kept, 0 where cropped.
    grad_full = np.zeros(grad_y.shape[:2] + full_hw)
    kept = grad_y[:, :, : grad_y.shape[2] - max(-bottom, 0), : grad_y.shape[3] - max(-right, 0)]
    grad_full[:, :, top : top + kept.shape[2], left : left + kept.shape[3]] = kept
    grad_x = np.zeros_like(x)
    grad_w = np.zeros_like(weight)
    kg, cg = weight.shape[1], x.shape[1] // groups
    in_hw = x.shape[2:]
    for g in range(groups):
        cs, ks = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        for r in range(weight.shape[2]):
            for s in range(weight.shape[3]):
                window = _window(grad_full[:, ks], r, s, in_hw, stride, dilation)
                grad_x[:, cs] += np.einsum("nkhw,ck->nchw", window, weight[cs, :, r, s])
                grad_w[cs, :, r, s] = np.einsum("nchw,nkhw->ck", x[:, cs], window)
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3))


def _padding_1d(padding, kernel, dilation):
    """A 1-D padding form as the (H = 1) form of conv2d."""
    if isinstance(padding, str):
        if padding == "causal":
            return (0, 0), ((kernel - 1) * _pair(dilation)[0], 0)
        return padding
    if isinstance(padding, (tuple, list)):
        return (0, 0), (int(padding[0]), int(padding[1]))
    return (0, 0), (int(padding), int(padding))


def _as_2d(stride, dilation):
    return (1, _pair(stride)[0]), (1, _pair(dilation)[0])


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """conv2d on (N, C, 1, L); padding also "causal" (all on the left)."""
    x, weight = _f64(x), _f64(weight)
    stride2, dilation2 = _as_2d(stride, dilation)
    pad = _padding_1d(padding, weight.shape[2], dilation)
    if pad == "same":  # "same" pads only along L
        pad = ((0, 0), _same_pads(x.shape[2], weight.shape[2], stride2[1], dilation2[1]))
    y = conv2d(x[:, :, None, :], weight[:, :, None, :], bias, stride2, pad, dilation2, groups)
    return y[:, :, 0, :]


def conv1d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1, groups=1):
    """(grad_x, grad_weight, grad_bias) of conv1d."""
    x, weight, grad_y = _f64(x), _f64(weight), _f64(grad_y)
    stride2, dilation2 = _as_2d(stride, dilation)
    pad = _padding_1d(padding, weight.shape[2], dilation)
    if pad == "same":
        pad = ((0, 0), _same_pads(x.shape[2], weight.shape[2], stride2[1], dilation2[1]))
    gx, gw, gb = conv2d_backward(
        grad_y[:, :, None, :], x[:, :, None, :], weight[:, :, None, :], stride2, pad, dilation2, groups
    )
    return gx[:, :, 0, :], gw[:, :, 0, :], gb
