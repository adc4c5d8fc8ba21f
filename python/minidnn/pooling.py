"""Pooling (NCHW): max / average / adaptive pooling, their backwards,
max_unpool2d and the 1-D forms, with the semantics of torch.nn.functional
(see minidnn.reference.pooling for the exact rules) and, beyond PyTorch,
asymmetric padding ((top, bottom), (left, right)), pads up to the dilated
kernel extent minus one, and dilated average pooling, as ONNX has them.

Each op normalizes its parameters here (ints or pairs into (h, w) ints,
the padding forms into four pads) and makes one _C call
(csrc/bindings/pooling.cpp), which computes the output extents and checks
every relation itself. The entry returns None when an array is not exactly
what the kernels read (another dtype, non-contiguous, unaligned, int32
indices): only then are the arrays validated and converted once, and the
entry called again.
"""

from __future__ import annotations

import numpy as np

from . import _C, _validate

__all__ = [
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_backward",
    "max_unpool2d",
    "max_pool1d",
    "avg_pool1d",
]

_ndarray = np.ndarray
_PADDING_FORMS_2D = "an int >= 0, (ph, pw) or ((top, bottom), (left, right))"
_PADDING_FORMS_1D = "an int >= 0, (p,) or (left, right)"


def _pads_2d(padding) -> tuple[int, int, int, int]:
    """(top, bottom, left, right)."""
    if type(padding) is int and padding >= 0:
        return padding, padding, padding, padding
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(isinstance(p, (tuple, list)) for p in padding):
            if len(padding[0]) != 2 or len(padding[1]) != 2:
                raise ValueError(f"padding: expected {_PADDING_FORMS_2D}, got {padding!r}")
            pads = (_validate.plain_int("padding", padding[0][0]), _validate.plain_int("padding", padding[0][1]),
                    _validate.plain_int("padding", padding[1][0]), _validate.plain_int("padding", padding[1][1]))
        elif not any(isinstance(p, (tuple, list)) for p in padding):
            ph, pw = _validate.plain_int("padding", padding[0]), _validate.plain_int("padding", padding[1])
            pads = (ph, ph, pw, pw)
        else:
            raise ValueError(f"padding: expected {_PADDING_FORMS_2D}, got {padding!r}")
    elif isinstance(padding, (tuple, list, str)):
        raise ValueError(f"padding: expected {_PADDING_FORMS_2D}, got {padding!r}")
    else:
        v = _validate.plain_int("padding", padding)
        pads = (v, v, v, v)
    if min(pads) < 0:
        raise ValueError(f"padding: expected pads >= 0, got {padding!r}")
    return pads


def _pads_1d(padding) -> tuple[int, int]:
    if type(padding) is int and padding >= 0:
        return padding, padding
    if isinstance(padding, (tuple, list)) and len(padding) in (1, 2):
        pads = _validate.plain_int("padding", padding[0]), _validate.plain_int("padding", padding[-1])
    elif isinstance(padding, (tuple, list, str)):
        raise ValueError(f"padding: expected {_PADDING_FORMS_1D}, got {padding!r}")
    else:
        v = _validate.plain_int("padding", padding)
        pads = (v, v)
    if min(pads) < 0:
        raise ValueError(f"padding: expected pads >= 0, got {padding!r}")
    return pads


def _window_2d(kernel_size, stride, padding, dilation) -> tuple:
    """(kh, kw, sh, sw, top, bottom, left, right, dh, dw)."""
    if type(kernel_size) is int and type(padding) is int and type(dilation) is int and \
            (stride is None or type(stride) is int) and kernel_size > 0 and padding >= 0 and dilation > 0:
        s = kernel_size if stride is None else stride
        if s > 0:
            return kernel_size, kernel_size, s, s, padding, padding, padding, padding, dilation, dilation
    kh, kw = _validate.int_pair("kernel_size", kernel_size, 1)
    sh, sw = (kh, kw) if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _validate.int_pair("stride", stride, 1)
    dh, dw = _validate.int_pair("dilation", dilation, 1)
    return (kh, kw, sh, sw, *_pads_2d(padding), dh, dw)


def _window_1d(kernel_size, stride, padding, dilation) -> tuple:
    """The 2-D window of a 1-D pooling: H parameters 1, 1, 0, 0, 1."""
    k = _validate.int_single("kernel_size", kernel_size, 1, "1-D pooling")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _validate.int_single("stride", stride, 1, "1-D pooling")
    left, right = _pads_1d(padding)
    return 1, k, 1, s, 0, 0, left, right, 1, _validate.int_single("dilation", dilation, 1, "1-D pooling")


def _divisor(divisor_override) -> int:
    if divisor_override is None:
        return 0
    d = _validate.plain_int("divisor_override", divisor_override)
    if d < 1:
        raise ValueError(f"divisor_override: expected None or an int >= 1, got {d}")
    return d


def _as_array(name: str, a):
    """a itself when an ndarray (its dtype and layout are checked by the _C
    entry), else validated (TypeError for what is not a float32 array)."""
    return a if type(a) is _ndarray else _validate.float_array(name, a)


def _rank(name: str, a, rank: int, layout: str) -> None:
    if a.ndim != rank:
        raise ValueError(f"{name}: expected a {rank}-D array {layout}, got shape {a.shape}")


def _call(entry, arrays: tuple, names: tuple, *rest):
    """entry(*arrays, *rest), the arrays validated and converted once if the
    entry refuses them (None); names of index arrays start with 'indices'."""
    out = entry(*arrays, *rest)
    if out is None:
        arrays = tuple(
            _validate.index_array(n, a) if n.startswith("indices") else _validate.float_array(n, a)
            for a, n in zip(arrays, names)
        )
        out = entry(*arrays, *rest)
    return out


def _input_shape(input_shape, rank: int) -> tuple:
    """(n, c, h, w) of a backward's input_shape; h = -1 for the 3-D forms."""
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != rank:
        layout = "(N, C, H, W)" if rank == 4 else "(N, C, L)"
        raise ValueError(f"input_shape: expected {rank} ints {layout}, got {input_shape!r}")
    dims = tuple(_validate.plain_int("input_shape", v) for v in input_shape)
    return dims if rank == 4 else (dims[0], dims[1], -1, dims[2])


# ---------------------------------------------------------------------------
# max / average pooling
# ---------------------------------------------------------------------------


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling of x (N, C, H, W) -> y, or (y, indices) with int64
    indices flat over each H x W plane (as torch.nn.functional.max_pool2d;
    the first maximum wins ties, NaN counts as the maximum).

    ``padding``: an int, (ph, pw) or ((top, bottom), (left, right)), each
    pad at most dilation * (kernel - 1); a window that would lie wholly in
    padding is a ValueError. ``stride`` defaults to ``kernel_size``."""
    x = _as_array("x", x)
    _rank("x", x, 4, "(N, C, H, W)")
    window = _window_2d(kernel_size, stride, padding, dilation)
    return _call(_C.max_pool2d, (x,), ("x",), *window, bool(ceil_mode), bool(return_indices))


def max_pool2d_backward(grad_y, indices, input_shape):
    """grad_x (input_shape) of max_pool2d: each grad_y value added at its
    index in its plane. Indices outside the plane raise IndexError."""
    grad_y = _as_array("grad_y", grad_y)
    shape = _input_shape(input_shape, grad_y.ndim if grad_y.ndim in (3, 4) else 4)
    return _call(_C.max_pool2d_backward, (grad_y, indices), ("grad_y", "indices"), *shape)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, dilation=1):
    """Average pooling of x (N, C, H, W), as torch.nn.functional.avg_pool2d:
    the window sum over its in-range values divided by ``divisor_override``,
    or by the taps inside the padded input (``count_include_pad``) or inside
    the input; a window with none gives 0. ``padding`` as max_pool2d's;
    ``dilation`` goes beyond PyTorch (ONNX AveragePool)."""
    x = _as_array("x", x)
    _rank("x", x, 4, "(N, C, H, W)")
    window = _window_2d(kernel_size, stride, padding, dilation)
    return _call(_C.avg_pool2d, (x,), ("x",), *window, bool(ceil_mode), bool(count_include_pad),
                 _divisor(divisor_override))


def avg_pool2d_backward(grad_y, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, dilation=1):
    """grad_x (input_shape) of avg_pool2d with the same arguments."""
    grad_y = _as_array("grad_y", grad_y)
    shape = _input_shape(input_shape, 4)
    window = _window_2d(kernel_size, stride, padding, dilation)
    return _call(_C.avg_pool2d_backward, (grad_y,), ("grad_y",), *shape, *window, bool(ceil_mode),
                 bool(count_include_pad), _divisor(divisor_override))


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """max_pool2d of x (N, C, L) as H = 1 (no copy); ``padding`` an int,
    (p,) or (left, right). Indices are positions along L."""
    x = _as_array("x", x)
    _rank("x", x, 3, "(N, C, L)")
    window = _window_1d(kernel_size, stride, padding, dilation)
    return _call(_C.max_pool2d, (x,), ("x",), *window, bool(ceil_mode), bool(return_indices))


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, dilation=1):
    """avg_pool2d of x (N, C, L) as H = 1."""
    x = _as_array("x", x)
    _rank("x", x, 3, "(N, C, L)")
    window = _window_1d(kernel_size, stride, padding, dilation)
    return _call(_C.avg_pool2d, (x,), ("x",), *window, bool(ceil_mode), bool(count_include_pad),
                 _divisor(divisor_override))


# ---------------------------------------------------------------------------
# adaptive pooling
# ---------------------------------------------------------------------------


def _output_size(output_size, h: int, w: int) -> tuple[int, int]:
    """An int or a pair; None in a pair keeps that input extent."""
    if type(output_size) is int:
        oh = ow = output_size
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        oh = h if output_size[0] is None else _validate.plain_int("output_size", output_size[0])
        ow = w if output_size[1] is None else _validate.plain_int("output_size", output_size[1])
    elif isinstance(output_size, (tuple, list)):
        raise ValueError(f"output_size: expected an int or a pair, got {output_size!r}")
    else:
        oh = ow = _validate.plain_int("output_size", output_size)
    if oh < 1 or ow < 1:
        raise ValueError(f"output_size: expected extents >= 1, got {output_size!r}")
    return oh, ow


def adaptive_avg_pool2d(x, output_size):
    """Adaptive average pooling of x (N, C, H, W) to output_size: output i
    along H averages rows [floor(i H / out), ceil((i + 1) H / out)).
    Global average pooling is output_size=1."""
    x = _as_array("x", x)
    _rank("x", x, 4, "(N, C, H, W)")
    oh, ow = _output_size(output_size, x.shape[2], x.shape[3])
    return _call(_C.adaptive_pool2d, (x,), ("x",), oh, ow, 0)


def adaptive_max_pool2d(x, output_size, return_indices=False):
    """Adaptive max pooling (windows as adaptive_avg_pool2d's), with
    indices as max_pool2d's."""
    x = _as_array("x", x)
    _rank("x", x, 4, "(N, C, H, W)")
    oh, ow = _output_size(output_size, x.shape[2], x.shape[3])
    return _call(_C.adaptive_pool2d, (x,), ("x",), oh, ow, 2 if return_indices else 1)


def adaptive_avg_pool2d_backward(grad_y, input_shape):
    """grad_x (input_shape) of adaptive_avg_pool2d; the output size is grad_y's."""
    grad_y = _as_array("grad_y", grad_y)
    return _call(_C.adaptive_avg_pool2d_backward, (grad_y,), ("grad_y",), *_input_shape(input_shape, 4))


def adaptive_max_pool2d_backward(grad_y, indices, input_shape):
    """grad_x (input_shape) of adaptive_max_pool2d (as max_pool2d_backward)."""
    grad_y = _as_array("grad_y", grad_y)
    return _call(_C.max_pool2d_backward, (grad_y, indices), ("grad_y", "indices"), *_input_shape(input_shape, 4))


# ---------------------------------------------------------------------------
# unpooling
# ---------------------------------------------------------------------------


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of max_pool2d, as torch.nn.functional.max_unpool2d:
    y (N, C, Ho, Wo) zero except y[n, c].flat[indices[n, c, p, q]] =
    x[n, c, p, q] (a repeated index keeps the last value in scan order).
    Ho defaults to (H - 1) * stride - pad_top - pad_bottom + kernel;
    ``output_size`` ((Ho, Wo) or the full shape) may differ from that by less
    than the stride. Indices outside [0, Ho * Wo) raise IndexError."""
    x = _as_array("x", x)
    _rank("x", x, 4, "(N, C, H, W)")
    kh, kw, sh, sw, top, bottom, left, right, _, _ = _window_2d(kernel_size, stride, padding, 1)
    default = ((x.shape[2] - 1) * sh - top - bottom + kh, (x.shape[3] - 1) * sw - left - right + kw)
    if output_size is None:
        out = default
    else:
        if not isinstance(output_size, (tuple, list)) or len(output_size) not in (2, 4):
            raise ValueError(f"output_size: expected (Ho, Wo) or (N, C, Ho, Wo), got {output_size!r}")
        out = tuple(_validate.plain_int("output_size", v) for v in output_size[-2:])
        for size, d, s in zip(out, default, (sh, sw)):
            if not d - s < size < d + s:
                raise ValueError(
                    f"output_size: expected extents between {(default[0] - sh + 1, default[1] - sw + 1)} and "
                    f"{(default[0] + sh - 1, default[1] + sw - 1)}, got {tuple(output_size)}"
                )
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"output_size: expected extents >= 1, got {out} (from the default formula)")
    return _call(_C.max_unpool2d, (x, indices), ("x", "indices"), *out)
