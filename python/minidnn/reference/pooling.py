"""Float64 NumPy reference for pooling (NCHW): max / average / adaptive
pooling, their backwards, max_unpool2d and the 1-D forms (the oracle of the
pooling kernels).

Semantics follow ``torch.nn.functional`` exactly where PyTorch has the op:

* max pooling scans each window row by row; a value replaces the running
  maximum when it is greater or NaN (so the first maximum wins ties and the
  last NaN wins), starting from -inf and the window's first in-range
  position. Indices are int64, flat over each H x W plane.
* the output extent is ``floor((H + pad_before + pad_after - dilation *
  (k - 1) - 1) / stride) + 1`` (ceil with ``ceil_mode``), and with
  ``ceil_mode`` the last window must start inside the input or the left
  (top) padding, else it is dropped.
* average pooling divides the sum of the in-range values by
  ``divisor_override`` if given, else by the number of taps inside the
  padded input (``count_include_pad``, the default) or inside the input; a
  window with no in-range tap gives 0.
* adaptive windows along an axis of size H into ``out`` outputs are
  ``[floor(i * H / out), ceil((i + 1) * H / out))``.

Beyond PyTorch (as ONNX MaxPool / AveragePool allow): padding may be
asymmetric, ``((top, bottom), (left, right))``, and each pad may be as large
as the dilated kernel extent minus one, ``dilation * (k - 1)`` (PyTorch:
``k // 2``); average pooling takes ``dilation``. A max-pooling window that
would lie wholly in padding is an error (PyTorch's rule keeps every window
on the input; this one never yields -inf silently).
"""

import numpy as np

from ._common import f64 as _f64
from ._common import int_pair as _pair

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


def _pads(padding):
    """((top, bottom), (left, right)) from an int, (ph, pw) or a pair of pairs."""
    if isinstance(padding, (tuple, list)) and isinstance(padding[0], (tuple, list)):
        return (int(padding[0][0]), int(padding[0][1])), (int(padding[1][0]), int(padding[1][1]))
    ph, pw = _pair(padding)
    return (ph, ph), (pw, pw)


def _out_size(size, kernel, stride, pads, dilation, ceil_mode):
    before, after = pads
    span = dilation * (kernel - 1) + 1
    num = size + before + after - span
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + before:
        out -= 1  # the last window would start in the right padding
    return out


class _Axis:
    """One axis of a pooling geometry: for output o the taps are
    o * stride - pad_before + j * dilation, j in [0, kernel)."""

    def __init__(self, size, kernel, stride, pads, dilation, ceil_mode):
        self.size, self.kernel, self.stride, self.dilation = size, kernel, stride, dilation
        self.before, self.after = pads
        self.out = _out_size(size, kernel, stride, pads, dilation, ceil_mode)

    def taps(self, j):
        """(positions, in_range) of tap j at every output."""
        pos = np.arange(self.out) * self.stride - self.before + j * self.dilation
        return pos, (pos >= 0) & (pos < self.size)

    def counts(self, include_pad):
        """Per output: taps inside the input, or inside the padded input."""
        hi = self.size + self.after if include_pad else self.size
        lo = -self.before if include_pad else 0
        total = np.zeros(self.out, dtype=np.int64)
        for j in range(self.kernel):
            pos, _ = self.taps(j)
            total += (pos >= lo) & (pos < hi)
        return total


def _geometry(shape, kernel_size, stride, padding, dilation, ceil_mode):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None or stride == () else stride)
    dh, dw = _pair(dilation)
    ph, pw = _pads(padding)
    _, _, h, w = shape
    return _Axis(h, kh, sh, ph, dh, ceil_mode), _Axis(w, kw, sw, pw, dw, ceil_mode)


def _taps(ah, aw):
    """(flat input index, in-range mask) of every tap, in scan order (row by row)."""
    for jh in range(ah.kernel):
        ih, vh = ah.taps(jh)
        for jw in range(aw.kernel):
            iw, vw = aw.taps(jw)
            valid = vh[:, None] & vw[None, :]
            flat = ih[:, None] * aw.size + iw[None, :]
            yield np.where(valid, flat, 0), valid


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """y[n, c, p, q] = max over the window's in-range values (NaN if any is NaN)."""
    x = _f64(x)
    n, c, h, w = x.shape
    ah, aw = _geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    planes = x.reshape(n, c, h * w)
    y = np.full((n, c, ah.out, aw.out), -np.inf)
    idx = np.full((ah.out, aw.out), -1, dtype=np.int64)
    idx = np.broadcast_to(idx, y.shape).copy()
    met = np.zeros((ah.out, aw.out), dtype=bool)  # windows with a tap in range
    for flat, valid in _taps(ah, aw):
        met |= valid
        v = planes[:, :, flat]
        first = valid & (idx < 0)
        idx = np.where(first, flat, idx)  # the window's first in-range position
        update = valid & ((v > y) | np.isnan(v))
        y = np.where(update, v, y)
        idx = np.where(update, flat, idx)
    if not met.all():
        raise ValueError("padding: a max-pooling window lies wholly in padding")
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_y, indices, input_shape):
    """grad_x[n, c].flat[indices[n, c, p, q]] += grad_y[n, c, p, q]."""
    grad_y, indices = _f64(grad_y), np.asarray(indices, dtype=np.int64)
    n, c, h, w = input_shape
    grad_x = np.zeros((n * c, h * w))
    plane_size = grad_y.shape[2] * grad_y.shape[3]
    g, ix = grad_y.reshape(n * c, plane_size), indices.reshape(n * c, plane_size)
    if ix.size and (ix.min() < 0 or ix.max() >= h * w):
        raise IndexError(f"indices: expected values in [0, {h * w - 1}]")
    for plane in range(n * c):
        np.add.at(grad_x[plane], ix[plane], g[plane])
    return grad_x.reshape(n, c, h, w)


def _divisors(ah, aw, count_include_pad, divisor_override):
    if divisor_override is not None:
        return np.full((ah.out, aw.out), float(divisor_override))
    return (ah.counts(count_include_pad)[:, None] * aw.counts(count_include_pad)[None, :]).astype(np.float64)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, dilation=1):
    """y = (sum of the window's in-range values) / divisor; 0 where the divisor is 0."""
    x = _f64(x)
    n, c, h, w = x.shape
    ah, aw = _geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    planes = x.reshape(n, c, h * w)
    total = np.zeros((n, c, ah.out, aw.out))
    for flat, valid in _taps(ah, aw):
        total += np.where(valid, planes[:, :, flat], 0.0)
    div = _divisors(ah, aw, count_include_pad, divisor_override)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(div > 0, total / np.where(div > 0, div, 1.0), 0.0)


def avg_pool2d_backward(grad_y, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, dilation=1):
    """The adjoint of avg_pool2d: each in-range tap gets grad_y / divisor."""
    grad_y = _f64(grad_y)
    n, c, h, w = input_shape
    ah, aw = _geometry(input_shape, kernel_size, stride, padding, dilation, ceil_mode)
    div = _divisors(ah, aw, count_include_pad, divisor_override)
    share = np.where(div > 0, grad_y / np.where(div > 0, div, 1.0), 0.0).reshape(n * c, ah.out * aw.out)
    grad_x = np.zeros((n * c, h * w))
    for flat, valid in _taps(ah, aw):
        np.add.at(grad_x, (slice(None), flat[valid]), share[:, valid.ravel()])
    return grad_x.reshape(n, c, h, w)


def _adaptive_windows(size, out):
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool2d(x, output_size):
    x = _f64(x)
    n, c, h, w = x.shape
    oh, ow = _pair(output_size)
    y = np.zeros((n, c, oh, ow))
    for i, (h0, h1) in enumerate(_adaptive_windows(h, oh)):
        for j, (w0, w1) in enumerate(_adaptive_windows(w, ow)):
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def adaptive_max_pool2d(x, output_size, return_indices=False):
    x = _f64(x)
    n, c, h, w = x.shape
    oh, ow = _pair(output_size)
    y = np.zeros((n, c, oh, ow))
    idx = np.zeros((n, c, oh, ow), dtype=np.int64)
    for i, (h0, h1) in enumerate(_adaptive_windows(h, oh)):
        for j, (w0, w1) in enumerate(_adaptive_windows(w, ow)):
            win = x[:, :, h0:h1, w0:w1].reshape(n, c, (h1 - h0) * (w1 - w0))
            flat = (np.arange(h0, h1)[:, None] * w + np.arange(w0, w1)[None, :]).ravel()
            nan = np.isnan(win)
            last_nan = win.shape[2] - 1 - np.argmax(nan[:, :, ::-1], axis=2)
            first_max = np.argmax(np.where(nan, -np.inf, win), axis=2)
            pick = np.where(nan.any(axis=2), last_nan, first_max)
            y[:, :, i, j] = np.take_along_axis(win, pick[:, :, None], axis=2)[:, :, 0]
            idx[:, :, i, j] = flat[pick]
    return (y, idx) if return_indices else y


def adaptive_avg_pool2d_backward(grad_y, input_shape):
    grad_y = _f64(grad_y)
    n, c, h, w = input_shape
    oh, ow = grad_y.shape[2:]
    grad_x = np.zeros((n, c, h, w))
    for i, (h0, h1) in enumerate(_adaptive_windows(h, oh)):
        for j, (w0, w1) in enumerate(_adaptive_windows(w, ow)):
            grad_x[:, :, h0:h1, w0:w1] += (grad_y[:, :, i, j] / ((h1 - h0) * (w1 - w0)))[:, :, None, None]
    return grad_x


def adaptive_max_pool2d_backward(grad_y, indices, input_shape):
    return max_pool2d_backward(grad_y, indices, input_shape)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """y (N, C, Ho, Wo) zero but y[n, c].flat[indices[n, c, p, q]] = x[n, c, p, q]
    (in scan order: a repeated index keeps the last value). Ho defaults to
    (H - 1) * stride - pad_top - pad_bottom + kernel."""
    x, indices = _f64(x), np.asarray(indices, dtype=np.int64)
    n, c, h, w = x.shape
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None or stride == () else stride)
    (pt, pb), (pl, pr) = _pads(padding)
    if output_size is None:
        out_h, out_w = (h - 1) * sh - pt - pb + kh, (w - 1) * sw - pl - pr + kw
    else:
        out_h, out_w = (int(v) for v in tuple(output_size)[-2:])
    y = np.zeros((n * c, out_h * out_w))
    ix, xv = indices.reshape(n * c, h * w), x.reshape(n * c, h * w)
    if ix.size and (ix.min() < 0 or ix.max() >= out_h * out_w):
        raise IndexError(f"indices: expected values in [0, {out_h * out_w - 1}]")
    for plane in range(n * c):
        y[plane, ix[plane]] = xv[plane]  # NumPy assigns in order: the last write wins
    return y.reshape(n, c, out_h, out_w)


def _pads_1d(padding):
    if isinstance(padding, (tuple, list)):
        return (int(padding[0]), int(padding[-1]))
    return int(padding), int(padding)


def _single(v):
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """max_pool2d over (N, C, 1, L); padding an int, (p,) or (left, right)."""
    x = _f64(x)
    stride = kernel_size if stride is None or stride == () else stride
    out = max_pool2d(x[:, :, None, :], (1, _single(kernel_size)), (1, _single(stride)),
                     ((0, 0), _pads_1d(padding)), (1, _single(dilation)), ceil_mode, return_indices)
    if return_indices:
        return out[0][:, :, 0, :], out[1][:, :, 0, :]
    return out[:, :, 0, :]


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, dilation=1):
    """avg_pool2d over (N, C, 1, L)."""
    x = _f64(x)
    stride = kernel_size if stride is None or stride == () else stride
    return avg_pool2d(x[:, :, None, :], (1, _single(kernel_size)), (1, _single(stride)),
                      ((0, 0), _pads_1d(padding)), ceil_mode, count_include_pad, divisor_override,
                      (1, _single(dilation)))[:, :, 0, :]
