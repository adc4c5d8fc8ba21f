"""Convolution (NCHW): conv2d, conv_transpose2d and conv1d, forward and
backward, with the semantics of torch.nn.functional and the padding forms
of API.md (an int, a pair, a pair of pairs, "valid", "same" as ONNX
SAME_UPPER; 1-D also "causal").

Each op resolves its padding form and output size here, in plain integer
arithmetic, and makes one _C call with the normalized geometry
(csrc/bindings/conv.cpp). The entry returns None when an array is not
exactly what the kernels read (another dtype, non-contiguous, unaligned):
only then are the arrays validated and copied once, and the entry called
again.
"""

from __future__ import annotations

import numpy as np

from . import _C, _validate

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv1d",
    "conv1d_backward",
]

# The activation fused into conv2d / conv1d: its code in the _C entries
# (csrc/bindings/conv.cpp: -1 none, else cpu::Activation).
_ACTIVATIONS = {None: -1, "relu": 0, "leaky_relu": 1, "sigmoid": 2, "tanh": 3}
# leaky_relu's negative slope when fused: torch.nn.functional.leaky_relu's default.
LEAKY_RELU_SLOPE = 0.01

_ndarray = np.ndarray


# ---------------------------------------------------------------------------
# Argument normalization (every check names the argument, the expected and
# the given).
# ---------------------------------------------------------------------------


def _is_int(v) -> bool:
    return type(v) is int or (isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)))


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) giving ceil(size / stride) outputs, any odd extra after
    (ONNX SAME_UPPER)."""
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    return total // 2, total - total // 2


_PADDING_FORMS_2D = "an int >= 0, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same'"
_PADDING_FORMS_1D = "an int >= 0, (left, right), 'valid', 'same' or 'causal'"


def _pads_2d(padding, sizes, kernels, strides, dilations):
    """((top, bottom), (left, right)) of any 2-D padding form."""
    if type(padding) is int and padding >= 0:
        return (padding, padding), (padding, padding)
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return tuple(_same_pads(*a) for a in zip(sizes, kernels, strides, dilations))
        raise ValueError(f"padding: expected {_PADDING_FORMS_2D}, got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(isinstance(p, (tuple, list)) for p in padding):
            if len(padding[0]) != 2 or len(padding[1]) != 2:
                raise ValueError(f"padding: expected {_PADDING_FORMS_2D}, got {padding!r}")
            pads = tuple((_validate.plain_int("padding", p[0]), _validate.plain_int("padding", p[1])) for p in padding)
        elif all(_is_int(p) for p in padding):
            ph, pw = int(padding[0]), int(padding[1])
            pads = ((ph, ph), (pw, pw))
        else:
            raise ValueError(f"padding: expected {_PADDING_FORMS_2D}, got {padding!r}")
    elif _is_int(padding):
        v = int(padding)
        pads = ((v, v), (v, v))
    else:
        raise ValueError(f"padding: expected {_PADDING_FORMS_2D}, got {padding!r}")
    if min(min(pads[0]), min(pads[1])) < 0:
        raise ValueError(f"padding: expected pads >= 0, got {padding!r}")
    return pads


def _pads_1d(padding, size, kernel, stride, dilation):
    """(left, right) of any 1-D padding form."""
    if type(padding) is int and padding >= 0:
        return padding, padding
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0
        if padding == "same":
            return _same_pads(size, kernel, stride, dilation)
        if padding == "causal":
            return (kernel - 1) * dilation, 0
        raise ValueError(f"padding: expected {_PADDING_FORMS_1D}, got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(_is_int(p) for p in padding):
        pads = int(padding[0]), int(padding[1])
    elif isinstance(padding, (tuple, list)) and len(padding) == 1 and _is_int(padding[0]):
        pads = int(padding[0]), int(padding[0])
    elif _is_int(padding):
        pads = int(padding), int(padding)
    else:
        raise ValueError(f"padding: expected {_PADDING_FORMS_1D}, got {padding!r}")
    if min(pads) < 0:
        raise ValueError(f"padding: expected pads >= 0, got {padding!r}")
    return pads


def _out_size(axis: str, padded: int, kernel: int, stride: int, dilation: int) -> int:
    span = dilation * (kernel - 1) + 1
    if span > padded:
        raise ValueError(
            f"weight: expected a kernel whose dilated extent along {axis} ({span} = dilation {dilation} x "
            f"(kernel {kernel} - 1) + 1) fits the padded input ({padded}), got a larger one"
        )
    return (padded - span) // stride + 1


def _shape(name: str, a, rank: int, layout: str) -> tuple:
    shape = a.shape
    if len(shape) != rank:
        raise ValueError(f"{name}: expected a {rank}-D array {layout}, got shape {shape}")
    return shape


def _groups(groups, in_channels: int, input_name: str, out_channels: int, weight_shape: tuple, out_axis: str) -> int:
    groups = _validate.plain_int("groups", groups)
    if groups < 1:
        raise ValueError(f"groups: expected an int >= 1, got {groups}")
    if in_channels % groups:
        raise ValueError(
            f"groups: expected a divisor of the {in_channels} channels of {input_name}, got {groups}"
        )
    if out_channels % groups:
        raise ValueError(
            f"groups: expected a divisor of weight.shape[{out_axis}] = {out_channels} ({weight_shape}), got {groups}"
        )
    return groups


def _check_weight_channels(weight_shape: tuple, expected: int, what: str) -> None:
    if weight_shape[1] != expected:
        raise ValueError(f"weight: expected shape[1] = {expected} ({what}), got shape {weight_shape}")
    if any(e < 1 for e in weight_shape[2:]):
        raise ValueError(f"weight: expected a kernel of extent >= 1, got shape {weight_shape}")


def _activation_code(activation) -> int:
    try:
        return _ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation: expected None, 'relu', 'leaky_relu', 'sigmoid' or 'tanh', got {activation!r}"
        ) from None


def _check_bias(bias, channels: int) -> None:
    if bias is not None and (not isinstance(bias, _ndarray) or bias.shape != (channels,)):
        bias = _validate.float_array("bias", bias)
        if bias.shape != (channels,):
            raise ValueError(f"bias: expected shape ({channels},) (one value per output channel), got {bias.shape}")


def _as_array(name: str, a):
    """a itself when an ndarray (its dtype and layout are checked by the _C
    entry), else validated (TypeError for what is not a float32 array)."""
    return a if type(a) is _ndarray else _validate.float_array(name, a)


def _check_output_size(*extents: int) -> None:
    total = 1
    for e in extents:
        total *= e
    if total >= 2**60 or max(extents) >= 2**31:
        raise ValueError(f"output size: expected a shape that fits in memory, got {extents}")


def _call(entry, arrays: tuple, names: tuple, *rest):
    """entry(*arrays, *rest), the arrays validated and converted once if the
    entry refuses them (None)."""
    out = entry(*arrays, *rest)
    if out is None:
        arrays = tuple(None if a is None else _validate.float_array(n, a) for a, n in zip(arrays, names))
        out = entry(*arrays, *rest)
    return out


# ---------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------


def _conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """(sh, sw, dh, dw, top, left, p, q, groups) of conv2d."""
    n, c, h, w = x_shape
    k, cg, r, s = w_shape
    # The common call (every argument a plain int, all valid) in a few
    # integer operations; anything else takes the checks below.
    if type(stride) is int and type(padding) is int and type(dilation) is int and type(groups) is int:
        if stride > 0 and dilation > 0 and padding >= 0 and groups > 0 and r > 0 and s > 0:
            span_r, span_s = dilation * (r - 1) + 1, dilation * (s - 1) + 1
            padded_h, padded_w = h + 2 * padding, w + 2 * padding
            if cg * groups == c and k % groups == 0 and span_r <= padded_h and span_s <= padded_w:
                p, q = (padded_h - span_r) // stride + 1, (padded_w - span_s) // stride + 1
                if n * k * p * q < 2**60 and p < 2**31 and q < 2**31:
                    return stride, stride, dilation, dilation, padding, padding, p, q, groups
    groups = _groups(groups, c, "x", k, w_shape, "0")
    _check_weight_channels(w_shape, c // groups, f"x channels {c} / groups {groups}")
    sh, sw = _validate.int_pair("stride", stride, 1)
    dh, dw = _validate.int_pair("dilation", dilation, 1)
    (top, bottom), (left, right) = _pads_2d(padding, (h, w), (r, s), (sh, sw), (dh, dw))
    p = _out_size("H", h + top + bottom, r, sh, dh)
    q = _out_size("W", w + left + right, s, sw, dw)
    _check_output_size(n, k, p, q)
    return sh, sw, dh, dw, top, left, p, q, groups


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """2-D convolution (cross-correlation, as torch.nn.functional.conv2d):
    x (N, C, H, W), weight (K, C/groups, R, S), bias (K,) or None ->
    y (N, K, P, Q).

    ``padding``: an int, (ph, pw), ((top, bottom), (left, right)), "valid",
    or "same" (P = ceil(H / stride), an odd extra pad at the bottom / right,
    as ONNX SAME_UPPER; any stride).

    ``activation`` (an extension): None, "relu", "leaky_relu" (negative
    slope 0.01, torch's default), "sigmoid" or "tanh", applied to
    conv + bias in the kernel's output tiles: ``y = f(conv2d(...))``.
    """
    return _conv2d_forward(_C.conv2d_forward, x, weight, bias, stride, padding, dilation, groups, activation)


def _conv2d_forward(entry, x, weight, bias, stride, padding, dilation, groups, activation):
    """conv2d's arguments checked and normalized, then entry(x, weight,
    bias, *geometry, activation code, slope): _C.conv2d_forward or, for
    _conv2d_on_route, the entry that names its route."""
    x, weight = _as_array("x", x), _as_array("weight", weight)
    x_shape = _shape("x", x, 4, "(N, C, H, W)")
    w_shape = _shape("weight", weight, 4, "(K, C/groups, R, S)")
    geometry = _conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    _check_bias(bias, w_shape[0])
    code = _activation_code(activation)
    return _call(entry, (x, weight, bias), ("x", "weight", "bias"), *geometry, code, LEAKY_RELU_SLOPE)


def _conv2d_route(x, weight, stride=1, padding=0, dilation=1, groups=1) -> str:
    """The algorithm conv2d runs for these arguments on the active CPU path:
    "winograd", "taps", "first_layer", "implicit_gemm", "depthwise" or "none" (the rule is
    in csrc/cpu/conv/conv_forward.cpp). For the tests, which test each
    route on its own."""
    x, weight = _as_array("x", x), _as_array("weight", weight)
    geometry = _conv2d_geometry(_shape("x", x, 4, "(N, C, H, W)"), _shape("weight", weight, 4, "(K, C/groups, R, S)"),
                                stride, padding, dilation, groups)
    return _call(_C.conv2d_forward_route, (x, weight), ("x", "weight"), *geometry)


def _conv2d_on_route(route: str, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """conv2d computed on the named route (see _conv2d_route) rather than
    the rule's: the rule's own route, "implicit_gemm" or "first_layer"
    (any shape), or "taps" (where the tap route's own rule admits the
    shape); a ValueError for a route the shape cannot take. For the tests, which test a route on shapes the rule sends
    elsewhere."""
    return _conv2d_forward(lambda *args: _C.conv2d_forward_on_route(route, *args), x, weight, bias, stride, padding,
                           dilation, groups, activation)


def _check_grad_y(grad_y, expected: tuple, what: str):
    grad_y = _as_array("grad_y", grad_y)
    if grad_y.shape != expected:
        raise ValueError(f"grad_y: expected shape {expected} ({what}), got {grad_y.shape}")
    return grad_y


def conv2d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1, groups=1):
    """(grad_x, grad_weight, grad_bias) of conv2d with the same arguments;
    grad_bias = grad_y summed over N, P, Q (returned whether or not the
    forward had a bias). An activation fused into the forward is not part of
    this: apply its backward to grad_y first."""
    x, weight = _as_array("x", x), _as_array("weight", weight)
    x_shape = _shape("x", x, 4, "(N, C, H, W)")
    w_shape = _shape("weight", weight, 4, "(K, C/groups, R, S)")
    sh, sw, dh, dw, top, left, p, q, groups = _conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    grad_y = _check_grad_y(grad_y, (x_shape[0], w_shape[0], p, q), "(N, K, P, Q) of the forward's output")
    return _call(
        _C.conv2d_backward, (grad_y, x, weight), ("grad_y", "x", "weight"), sh, sw, dh, dw, top, left, groups
    )


# ---------------------------------------------------------------------------
# conv_transpose2d
# ---------------------------------------------------------------------------


def _transpose_geometry(x_shape, w_shape, stride, padding, output_padding, groups, dilation):
    """(sh, sw, dh, dw, crop_top, crop_left, out_h, out_w, groups, k) of
    conv_transpose2d: the output is the full scatter
    (H - 1) * stride + dilation * (R - 1) + 1 + output_padding, cropped by
    the padding (a negative crop at the end extends with zeros)."""
    n, c, h, w = x_shape
    _, kg, r, s = w_shape
    groups = _groups(groups, c, "x", w_shape[0], w_shape, "0")
    if w_shape[0] != c:
        raise ValueError(f"weight: expected shape[0] = {c} (the channels of x), got shape {w_shape}")
    if any(e < 1 for e in w_shape[2:]):
        raise ValueError(f"weight: expected a kernel of extent >= 1, got shape {w_shape}")
    sh, sw = _validate.int_pair("stride", stride, 1)
    dh, dw = _validate.int_pair("dilation", dilation, 1)
    oph, opw = _validate.int_pair("output_padding", output_padding, 0)
    if oph >= max(sh, dh) or opw >= max(sw, dw):
        raise ValueError(
            f"output_padding: expected values < max(stride, dilation) = ({max(sh, dh)}, {max(sw, dw)}), "
            f"got {output_padding!r}"
        )
    full_h = (h - 1) * sh + dh * (r - 1) + 1 + oph
    full_w = (w - 1) * sw + dw * (s - 1) + 1 + opw
    if isinstance(padding, str) and padding == "same":
        top = _same_pads(h * sh, r, sh, dh)[0]
        left = _same_pads(w * sw, s, sw, dw)[0]
        out_h, out_w = h * sh, w * sw
    else:
        (top, bottom), (left, right) = _pads_2d(padding, (h, w), (r, s), (sh, sw), (dh, dw))
        out_h, out_w = full_h - top - bottom, full_w - left - right
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"padding: expected crops leaving an output of at least 1 x 1 of the full {full_h} x {full_w}, "
                f"got {padding!r} (output {out_h} x {out_w})"
            )
    k = kg * groups
    _check_output_size(n, k, out_h, out_w)
    return sh, sw, dh, dw, top, left, out_h, out_w, groups, k


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution (the adjoint of conv2d in its input, as
    torch.nn.functional.conv_transpose2d): x (N, C, H, W), weight
    (C, K/groups, R, S), bias (K,) or None -> (N, K, Ho, Wo).

    The full output (H - 1) * stride + dilation * (R - 1) + 1 + output_padding
    is cropped by ``padding`` (an int, a pair, or a pair of pairs cropping
    top / bottom and left / right unequally; "valid" crops nothing);
    ``"same"`` gives Ho = H * stride, the crop placed as the padding of the
    matching conv2d(..., padding="same"). output_padding < max(stride, dilation).
    """
    x, weight = _as_array("x", x), _as_array("weight", weight)
    x_shape = _shape("x", x, 4, "(N, C, H, W)")
    w_shape = _shape("weight", weight, 4, "(C, K/groups, R, S)")
    *geometry, k = _transpose_geometry(x_shape, w_shape, stride, padding, output_padding, groups, dilation)
    _check_bias(bias, k)
    return _call(_C.conv_transpose2d, (x, weight, bias), ("x", "weight", "bias"), *geometry)


def conv_transpose2d_backward(grad_y, x, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """(grad_x, grad_weight, grad_bias) of conv_transpose2d with the same
    arguments; grad_bias = grad_y summed over N, Ho, Wo."""
    x, weight = _as_array("x", x), _as_array("weight", weight)
    x_shape = _shape("x", x, 4, "(N, C, H, W)")
    w_shape = _shape("weight", weight, 4, "(C, K/groups, R, S)")
    sh, sw, dh, dw, top, left, out_h, out_w, groups, k = _transpose_geometry(
        x_shape, w_shape, stride, padding, output_padding, groups, dilation
    )
    grad_y = _check_grad_y(grad_y, (x_shape[0], k, out_h, out_w), "(N, K, Ho, Wo) of the forward's output")
    return _call(
        _C.conv_transpose2d_backward, (grad_y, x, weight), ("grad_y", "x", "weight"), sh, sw, dh, dw, top, left,
        groups,
    )


# ---------------------------------------------------------------------------
# conv1d: conv2d with H = 1 (the _C entries take the 3-D arrays as they are)
# ---------------------------------------------------------------------------


def _conv1d_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    n, c, length = x_shape
    k, cg, s = w_shape
    # The common call in a few integer operations (see _conv2d_geometry).
    if type(stride) is int and type(dilation) is int and type(groups) is int and stride > 0 and dilation > 0:
        if type(padding) is int and padding >= 0:
            left = right = padding
        elif isinstance(padding, str) and padding == "causal":
            left, right = (s - 1) * dilation, 0
        else:
            left = -1
        span = dilation * (s - 1) + 1
        if left >= 0 and groups > 0 and s > 0 and cg * groups == c and k % groups == 0 and span <= length + left + right:
            q = (length + left + right - span) // stride + 1
            if n * k * q < 2**60 and q < 2**31:
                return 1, stride, 1, dilation, 0, left, 1, q, groups
    groups = _groups(groups, c, "x", k, w_shape, "0")
    _check_weight_channels(w_shape, c // groups, f"x channels {c} / groups {groups}")
    st = _validate.int_single("stride", stride, 1, "a 1-D convolution")
    dil = _validate.int_single("dilation", dilation, 1, "a 1-D convolution")
    left, right = _pads_1d(padding, length, s, st, dil)
    q = _out_size("L", length + left + right, s, st, dil)
    _check_output_size(n, k, q)
    return 1, st, 1, dil, 0, left, 1, q, groups


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """1-D convolution (as torch.nn.functional.conv1d): x (N, C, L), weight
    (K, C/groups, S), bias (K,) or None -> (N, K, Lout).

    ``padding``: an int, (left, right), "valid", "same" (Lout = ceil(L /
    stride), odd extra on the right) or "causal" (all (S - 1) * dilation on
    the left). ``activation`` as conv2d's (leaky_relu slope 0.01).
    """
    x, weight = _as_array("x", x), _as_array("weight", weight)
    x_shape = _shape("x", x, 3, "(N, C, L)")
    w_shape = _shape("weight", weight, 3, "(K, C/groups, S)")
    geometry = _conv1d_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    _check_bias(bias, w_shape[0])
    code = _activation_code(activation)
    return _call(_C.conv2d_forward, (x, weight, bias), ("x", "weight", "bias"), *geometry, code, LEAKY_RELU_SLOPE)


def conv1d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1, groups=1):
    """(grad_x, grad_weight, grad_bias) of conv1d with the same arguments."""
    x, weight = _as_array("x", x), _as_array("weight", weight)
    x_shape = _shape("x", x, 3, "(N, C, L)")
    w_shape = _shape("weight", weight, 3, "(K, C/groups, S)")
    sh, sw, dh, dw, top, left, _, q, groups = _conv1d_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    grad_y = _check_grad_y(grad_y, (x_shape[0], w_shape[0], q), "(N, K, Lout) of the forward's output")
    return _call(
        _C.conv2d_backward, (grad_y, x, weight), ("grad_y", "x", "weight"), sh, sw, dh, dw, top, left, groups
    )
