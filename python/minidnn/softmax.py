"""Softmax family: softmax / log_softmax, cross-entropy and NLL loss, forward
and backward, with the semantics of torch.nn.functional."""

from __future__ import annotations

import numpy as np

from . import _C, _validate
from ._runtime import empty

__all__ = [
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "nll_loss",
    "nll_loss_backward",
]


def _softmax(x, axis, log: bool) -> np.ndarray:
    x = _validate.float_array("x", x)
    ax = _validate.axis("axis", axis, x.ndim)
    out = empty(x.shape)
    if x.size:
        _C.softmax_forward(x, out, *_validate.axis_view(x.shape, ax), log)
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)) along `axis`. A slice of all -inf gives
    NaN (as PyTorch); logits up to float max never overflow."""
    return _softmax(x, axis, log=False)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """(x - max) - log(sum(exp(x - max))) along `axis`."""
    return _softmax(x, axis, log=True)


def _softmax_backward(grad_y, y, axis, log: bool) -> np.ndarray:
    grad_y = _validate.float_array("grad_y", grad_y)
    y = _validate.float_array("y", y)
    _validate.same_shape("grad_y", grad_y, "y", y)
    ax = _validate.axis("axis", axis, y.ndim)
    out = empty(y.shape)
    if y.size:
        _C.softmax_backward(grad_y, y, out, *_validate.axis_view(y.shape, ax), log)
    return out


def softmax_backward(grad_y: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient wrt x of softmax, from y = softmax(x): y * (grad_y - sum(grad_y * y))."""
    return _softmax_backward(grad_y, y, axis, log=False)


def log_softmax_backward(grad_y: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient wrt x of log_softmax, from y = log_softmax(x): grad_y - exp(y) * sum(grad_y)."""
    return _softmax_backward(grad_y, y, axis, log=True)


def _loss_target(inputs: _validate.LossInputs, label_smoothing: float = 0.0):
    prob = inputs.prob
    if prob is not None and label_smoothing > 0.0:
        # Smoothed probability targets are rare enough to pay one extra pass
        # (over the targets, not the logits) rather than a second kernel form.
        prob = prob * np.float32(1.0 - label_smoothing) + np.float32(label_smoothing / inputs.classes)
    return _C.LossTarget(inputs.index, prob, inputs.weight, inputs.ignore_index, label_smoothing)


def _mean_divisor(inputs: _validate.LossInputs) -> float:
    """What "mean" divides by: the element count for probability targets,
    the summed weights of the non-ignored targets for class indices."""
    return inputs.elements if inputs.prob is not None else inputs.class_weight_total()


def _loss(kernel, inputs: _validate.LossInputs, label_smoothing: float, reduction: str) -> np.ndarray:
    loss = np.empty(inputs.elements, dtype=np.float64)
    kernel(inputs.x, _loss_target(inputs, label_smoothing), inputs.outer, inputs.classes, inputs.inner, loss)
    if reduction == "none":
        return loss.astype(np.float32).reshape(inputs.target_shape)
    total = loss.sum()
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.float64(total) / np.float64(_mean_divisor(inputs))
    return np.asarray(total, dtype=np.float32)


def _scale(grad_loss, inputs: _validate.LossInputs, reduction: str):
    per_element, scalar = _validate.grad_loss(grad_loss, reduction, inputs.target_shape)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            scalar = float(np.float64(scalar) / np.float64(_mean_divisor(inputs)))
    return per_element, scalar


def cross_entropy(
    logits: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    """torch.nn.functional.cross_entropy, fused: one pass over the logits.

    logits (N, C), (N, C, d1..dk) or unbatched (C,); target int class indices
    (N, d1..dk), or float32 probabilities shaped like logits. "mean" divides
    by the summed weights of the non-ignored targets (class indices) or by
    the number of elements (probabilities)."""
    reduction = _validate.reduction(reduction)
    eps = _validate.label_smoothing(label_smoothing)
    inputs = _validate.LossInputs("logits", logits, target, weight, ignore_index, allow_prob=True)
    return _loss(_C.cross_entropy, inputs, eps, reduction)


def cross_entropy_backward(
    grad_loss,
    logits: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    """Gradient of cross_entropy wrt the logits: one pass for the row
    statistics, one that writes. grad_loss is a float or 0-d array for
    "mean" / "sum", an array shaped like the per-element loss for "none"."""
    reduction = _validate.reduction(reduction)
    eps = _validate.label_smoothing(label_smoothing)
    inputs = _validate.LossInputs("logits", logits, target, weight, ignore_index, allow_prob=True)
    per_element, scalar = _scale(grad_loss, inputs, reduction)
    out = empty(inputs.x.shape)
    _C.cross_entropy_backward(
        inputs.x, _loss_target(inputs, eps), inputs.outer, inputs.classes, inputs.inner, per_element, scalar, out
    )
    return out


def nll_loss(
    log_probs: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> np.ndarray:
    """torch.nn.functional.nll_loss: -weight[t] * log_probs[i, t], 0 for ignored targets."""
    reduction = _validate.reduction(reduction)
    inputs = _validate.LossInputs("log_probs", log_probs, target, weight, ignore_index, allow_prob=False)
    return _loss(_C.nll_loss, inputs, 0.0, reduction)


def nll_loss_backward(
    grad_loss,
    log_probs: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> np.ndarray:
    """Gradient of nll_loss wrt log_probs: -weight[t] * g at each target, 0 elsewhere."""
    reduction = _validate.reduction(reduction)
    inputs = _validate.LossInputs("log_probs", log_probs, target, weight, ignore_index, allow_prob=False)
    per_element, scalar = _scale(grad_loss, inputs, reduction)
    out = empty(inputs.x.shape)
    _C.nll_loss_backward(_loss_target(inputs), inputs.outer, inputs.classes, inputs.inner, per_element, scalar, out)
    return out
