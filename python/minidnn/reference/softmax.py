"""Float64 NumPy reference for softmax, log-softmax, NLL loss and cross-entropy.

Semantics follow ``torch.nn.functional`` exactly (including NaN / -inf edge
cases, ``ignore_index``, class weights, ``label_smoothing`` and probability
targets).  Clarity is preferred over speed: this module is the oracle that the
tests of the fast kernels compare against.

Layout conventions for the losses: inputs are ``(N, C)`` or ``(N, C, d1..dk)``
with the class axis at axis 1, or unbatched ``(C,)`` with a 0-d target.
Internally every loss moves the class axis to the end, so the working arrays
are ``(N, d1..dk, C)`` and per-element quantities are ``(N, d1..dk)``.
"""

import numpy as np

from ._common import f64 as _f64

__all__ = [
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "nll_loss",
    "nll_loss_backward",
    "cross_entropy",
    "cross_entropy_backward",
]

_REDUCTIONS = ("none", "mean", "sum")

# -inf - (-inf), 0 * inf, 0 / 0 and exp overflow are all expected here and give
# the same NaN / inf results that PyTorch gives; silence numpy's warnings.
_quiet = dict(invalid="ignore", over="ignore", divide="ignore")


# --------------------------------------------------------------------------
# softmax / log_softmax
# --------------------------------------------------------------------------

def softmax(x, axis=-1):
    """Softmax along ``axis``.

    y_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x))

    An all -inf slice gives NaN (as PyTorch); NaN propagates to its slice.
    """
    x = _f64(x)
    if x.size == 0:  # an empty result, as PyTorch (np.max of an empty slice raises)
        return x.copy()
    with np.errstate(**_quiet):
        shifted = x - np.max(x, axis=axis, keepdims=True)
        e = np.exp(shifted)
        y = e / np.sum(e, axis=axis, keepdims=True)
    return _f64(y)


def log_softmax(x, axis=-1):
    """Log-softmax along ``axis``.

    y_i = (x_i - max(x)) - log(sum_j exp(x_j - max(x)))

    An all -inf slice gives NaN (as PyTorch); NaN propagates to its slice.
    """
    x = _f64(x)
    if x.size == 0:  # an empty result, as PyTorch (np.max of an empty slice raises)
        return x.copy()
    with np.errstate(**_quiet):
        shifted = x - np.max(x, axis=axis, keepdims=True)
        y = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return _f64(y)


def softmax_backward(grad_y, y, axis=-1):
    """Gradient of softmax, given its output y = softmax(x).

    grad_x_i = y_i * (grad_y_i - sum_j grad_y_j * y_j)
    """
    grad_y = _f64(grad_y)
    y = _f64(y)
    with np.errstate(**_quiet):
        dot = np.sum(grad_y * y, axis=axis, keepdims=True)
        grad_x = y * (grad_y - dot)
    return _f64(grad_x)


def log_softmax_backward(grad_y, y, axis=-1):
    """Gradient of log-softmax, given its output y = log_softmax(x).

    grad_x_i = grad_y_i - exp(y_i) * sum_j grad_y_j
    """
    grad_y = _f64(grad_y)
    y = _f64(y)
    with np.errstate(**_quiet):
        grad_x = grad_y - np.exp(y) * np.sum(grad_y, axis=axis, keepdims=True)
    return _f64(grad_x)


# --------------------------------------------------------------------------
# shared helpers for the losses
# --------------------------------------------------------------------------

def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _is_prob_target(target):
    """Floating dtype means class probabilities; anything else class indices."""
    return np.issubdtype(target.dtype, np.floating)


def _class_weights(weight, num_classes):
    """w_c for c in 0..C-1 (all ones when weight is None)."""
    if weight is None:
        return np.ones(num_classes, dtype=np.float64)
    return _f64(weight)


def _to_class_last(a):
    """(N, C, d1..dk) -> (N, d1..dk, C)."""
    return np.moveaxis(a, 1, -1)


def _from_class_last(a):
    """(N, d1..dk, C) -> (N, C, d1..dk)."""
    return np.moveaxis(a, -1, 1)


def _index_target_parts(target, w, ignore_index):
    """For class-index targets (N, d1..dk) return
    (ignored mask, safe target with ignored entries set to class 0,
     per-element weight w[t_i] with 0 for ignored entries)."""
    ignored = target == ignore_index
    safe_t = np.where(ignored, 0, target)
    w_t = np.where(ignored, 0.0, w[safe_t])
    return ignored, safe_t, w_t


def _one_hot(safe_t, num_classes):
    """(N, d1..dk) integer -> (N, d1..dk, C) float one-hot."""
    return (safe_t[..., None] == np.arange(num_classes)).astype(np.float64)


def _reduce(per_element, reduction, divisor):
    """Apply 'none' / 'sum' / 'mean' (mean = sum / divisor)."""
    if reduction == "none":
        return _f64(per_element)
    total = np.sum(per_element)
    if reduction == "sum":
        return _f64(total)
    with np.errstate(**_quiet):
        return _f64(total / divisor)


def _per_element_grad(grad_loss, reduction, divisor, shape):
    """g_i: the upstream gradient of each per-element loss, shape ``shape``."""
    grad_loss = _f64(grad_loss)  # shaped like the target for "none", else 0-d
    if reduction == "mean":
        with np.errstate(**_quiet):
            grad_loss = grad_loss / divisor
    return np.broadcast_to(grad_loss, shape)


# --------------------------------------------------------------------------
# nll_loss
# --------------------------------------------------------------------------

def nll_loss(log_probs, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood loss (torch.nn.functional.nll_loss).

    loss_i = -weight[t_i] * log_probs[i, t_i, ...]   (0 where t_i == ignore_index)
    reduction: "none" -> loss (shaped like target); "sum" -> sum_i loss_i;
    "mean" -> sum_i loss_i / sum_i weight[t_i] over non-ignored i
    (0/0 = NaN when every element is ignored).
    log_probs: (N, C), (N, C, d1..dk) or unbatched (C,) with a 0-d target.
    """
    _check_reduction(reduction)
    lp = _f64(log_probs)
    target = np.asarray(target)
    if lp.ndim == 1:  # unbatched: (C,) with 0-d target
        out = nll_loss(lp[None], target[None], weight, ignore_index, reduction)
        return _f64(out[0]) if reduction == "none" else out

    num_classes = lp.shape[1]
    w = _class_weights(weight, num_classes)
    ignored, safe_t, w_t = _index_target_parts(target, w, ignore_index)

    lp_last = _to_class_last(lp)                                   # (N, d.., C)
    picked = np.take_along_axis(lp_last, safe_t[..., None], axis=-1)[..., 0]
    with np.errstate(**_quiet):
        loss = np.where(ignored, 0.0, -w_t * picked)
    return _reduce(loss, reduction, divisor=np.sum(w_t))


def nll_loss_backward(grad_loss, log_probs, target, weight=None, ignore_index=-100,
                      reduction="mean"):
    """Gradient of nll_loss with respect to log_probs (same shape as log_probs).

    grad[i, t_i, ...] = -weight[t_i] * g_i, zero elsewhere and for ignored i, where
    g_i = grad_loss[i] ("none"), grad_loss ("sum"), grad_loss / sum_j weight[t_j] ("mean").
    """
    _check_reduction(reduction)
    lp = _f64(log_probs)
    target = np.asarray(target)
    if lp.ndim == 1:  # unbatched
        g = _f64(grad_loss)
        if reduction == "none":
            g = g[None]
        out = nll_loss_backward(g, lp[None], target[None], weight, ignore_index, reduction)
        return _f64(out[0])

    num_classes = lp.shape[1]
    w = _class_weights(weight, num_classes)
    ignored, safe_t, w_t = _index_target_parts(target, w, ignore_index)
    g = _per_element_grad(grad_loss, reduction, np.sum(w_t), target.shape)

    with np.errstate(**_quiet):
        grad_per_element = np.where(ignored, 0.0, -w_t * g)        # (N, d..)
    # Selected, not multiplied by the one-hot: an infinite or NaN g_i gives
    # NaN or inf at the target only (0 * inf would spread NaN over the row).
    on_target = _one_hot(safe_t, num_classes).astype(bool)
    grad_last = np.where(on_target, grad_per_element[..., None], 0.0)
    return _f64(_from_class_last(grad_last))


# --------------------------------------------------------------------------
# cross_entropy
# --------------------------------------------------------------------------

def _ce_batched(logits, target):
    """Add a batch axis to unbatched (C,) logits (and their target)."""
    return logits[None], target[None]


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy loss (torch.nn.functional.cross_entropy).

    Class axis is 1 (0 for unbatched (C,) logits); lp = log_softmax(logits, class axis).

    Class-index targets (integer dtype), eps = label_smoothing:
      nll     = nll_loss(lp, target, weight, ignore_index, reduction)
      smooth_i = -sum_c w_c * lp[i, c]   (0 for ignored i)
      smooth  reduced like nll ("mean" divides by sum_i w[t_i] over non-ignored i,
              i.e. by the non-ignored count without weight)
      loss    = (1 - eps) * nll + (eps / C) * smooth

    Probability targets (floating dtype, shaped like logits):
      q       = target * (1 - eps) + eps / C
      loss_i  = -sum_c w_c * q[i, c] * lp[i, c]
      "mean"  = sum_i loss_i / (N * d1 * ... * dk)   (weights not in the divisor)
    """
    _check_reduction(reduction)
    logits = _f64(logits)
    target = np.asarray(target)
    eps = float(label_smoothing)
    if logits.ndim == 1:  # unbatched
        out = cross_entropy(*_ce_batched(logits, target), weight, ignore_index,
                            reduction, label_smoothing)
        return _f64(out[0]) if reduction == "none" else out

    num_classes = logits.shape[1]
    w = _class_weights(weight, num_classes)
    lp = log_softmax(logits, axis=1)
    lp_last = _to_class_last(lp)                                   # (N, d.., C)

    if _is_prob_target(target):
        q = _to_class_last(_f64(target)) * (1.0 - eps) + eps / num_classes
        with np.errstate(**_quiet):
            loss = -np.sum(w * q * lp_last, axis=-1)               # (N, d..)
        return _reduce(loss, reduction, divisor=loss.size)

    nll = nll_loss(lp, target, weight, ignore_index, reduction)
    if eps == 0.0:
        return nll
    ignored, _, w_t = _index_target_parts(target, w, ignore_index)
    with np.errstate(**_quiet):
        smooth = np.where(ignored, 0.0, -np.sum(w * lp_last, axis=-1))
    divisor = np.sum(w_t) if weight is not None else np.sum(~ignored)
    smooth_reduced = _reduce(smooth, reduction, divisor)
    with np.errstate(**_quiet):
        out = (1.0 - eps) * nll + (eps / num_classes) * smooth_reduced
    return _f64(out)


def cross_entropy_backward(grad_loss, logits, target, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0):
    """Gradient of cross_entropy with respect to logits (same shape as logits).

    p = softmax(logits, class axis), eps = label_smoothing, W = sum_c w_c.
    Class-index targets:
      d/dz_c = g_i * [(1 - eps) * w_t * (p_c - [c == t]) + (eps / C) * (W * p_c - w_c)]
      (zero for ignored i); g_i = grad_loss[i] ("none"), grad_loss ("sum"),
      grad_loss / (sum_i w[t_i] over non-ignored i) ("mean").
    Probability targets (q = target * (1 - eps) + eps / C):
      d/dz_c = g_i * (p_c * sum_k w_k q_k - w_c q_c);
      g_i = grad_loss / (N * d1 * ... * dk) for "mean".
    """
    _check_reduction(reduction)
    logits = _f64(logits)
    target = np.asarray(target)
    eps = float(label_smoothing)
    if logits.ndim == 1:  # unbatched
        g = _f64(grad_loss)
        if reduction == "none":
            g = g[None]
        out = cross_entropy_backward(g, *_ce_batched(logits, target), weight,
                                     ignore_index, reduction, label_smoothing)
        return _f64(out[0])

    num_classes = logits.shape[1]
    w = _class_weights(weight, num_classes)
    p = _to_class_last(softmax(logits, axis=1))                    # (N, d.., C)
    elem_shape = p.shape[:-1]                                      # (N, d..)

    if _is_prob_target(target):
        q = _to_class_last(_f64(target)) * (1.0 - eps) + eps / num_classes
        g = _per_element_grad(grad_loss, reduction, int(np.prod(elem_shape)), elem_shape)
        with np.errstate(**_quiet):
            wq_sum = np.sum(w * q, axis=-1, keepdims=True)
            grad_last = g[..., None] * (p * wq_sum - w * q)
        return _f64(_from_class_last(grad_last))

    ignored, safe_t, w_t = _index_target_parts(target, w, ignore_index)
    divisor = np.sum(w_t)  # without weight this is the non-ignored count
    g = _per_element_grad(grad_loss, reduction, divisor, elem_shape)
    one_hot = _one_hot(safe_t, num_classes)
    with np.errstate(**_quiet):
        d = (1.0 - eps) * w_t[..., None] * (p - one_hot)
        if eps != 0.0:
            d = d + (eps / num_classes) * (np.sum(w) * p - w)
        grad_last = np.where(ignored[..., None], 0.0, g[..., None] * d)
    return _f64(_from_class_last(grad_last))
