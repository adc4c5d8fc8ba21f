"""Softmax family: softmax / log_softmax, cross-entropy and NLL loss, forward
and backward, with the semantics of torch.nn.functional."""

from __future__ import annotations

import numbers

import numpy as np

from . import _C, _validate

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


# Each op calls its _C entry with the arguments as given; the entry returns
# None unless they are exactly what the kernels read (see
# csrc/bindings/common.h), and only then are they validated here and the
# entry called again with the normalized arguments. Every op here also takes
# minidnn.cuda.Arrays (_validate.on_cuda decides): then the CUDA entries
# (_C.cuda) run and return an Array (0-d for a reduced loss).


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)) along `axis`. A slice of all -inf gives
    NaN (as PyTorch); logits up to float max never overflow."""
    y = _C.softmax(x, axis)
    return y if y is not None else _softmax_validated("softmax", x, axis)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """(x - max) - log(sum(exp(x - max))) along `axis`."""
    y = _C.log_softmax(x, axis)
    return y if y is not None else _softmax_validated("log_softmax", x, axis)


def _softmax_validated(op: str, x, axis):
    if _validate.on_cuda(("x", x)):
        x = _validate.cuda_float_array("x", x)
        entry = getattr(_C.cuda, op)
    else:
        x = _validate.float_array("x", x)
        entry = getattr(_C, op)
    return entry(x, _validate.axis("axis", axis, x.ndim))


def softmax_backward(grad_y: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient wrt x of softmax, from y = softmax(x): y * (grad_y - sum(grad_y * y))."""
    grad_x = _C.softmax_backward(grad_y, y, axis)
    return grad_x if grad_x is not None else _softmax_backward_validated("softmax_backward", grad_y, y, axis)


def log_softmax_backward(grad_y: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient wrt x of log_softmax, from y = log_softmax(x): grad_y - exp(y) * sum(grad_y)."""
    grad_x = _C.log_softmax_backward(grad_y, y, axis)
    return grad_x if grad_x is not None else _softmax_backward_validated("log_softmax_backward", grad_y, y, axis)


def _softmax_backward_validated(op: str, grad_y, y, axis):
    if _validate.on_cuda(("grad_y", grad_y), ("y", y)):
        grad_y = _validate.cuda_float_array("grad_y", grad_y)
        y = _validate.cuda_float_array("y", y)
        entry = getattr(_C.cuda, op)
    else:
        grad_y = _validate.float_array("grad_y", grad_y)
        y = _validate.float_array("y", y)
        entry = getattr(_C, op)
    _validate.same_shape("grad_y", grad_y, "y", y)
    return entry(grad_y, y, _validate.axis("axis", axis, y.ndim))


def _grad_loss_on_device(grad_loss, reduction) -> bool:
    """Whether grad_loss is an array on the loss's device: always for "none"
    (shaped like the per-element loss); for "mean" / "sum" unless it is a
    host value (a float, a NumPy scalar or array)."""
    return reduction == "none" or not isinstance(grad_loss, (numbers.Real, np.ndarray, np.generic))


def _loss_on_cuda(input_name, x, target, weight, grad_loss=None, reduction="none") -> bool:
    """Whether a loss runs on a CUDA device (see _validate.on_cuda); weight
    None and a host scalar grad_loss of "mean" / "sum" belong to no device."""
    named = [(input_name, x), ("target", target)]
    if weight is not None:
        named.append(("weight", weight))
    if grad_loss is not None and _grad_loss_on_device(grad_loss, reduction):
        named.append(("grad_loss", grad_loss))
    return _validate.on_cuda(*named)


class _CudaLoss:
    """The validated arguments of a loss on CUDA arrays, as _validate.LossInputs
    for NumPy ones; class targets are range-checked by the kernels (an
    IndexError after they ran)."""

    def __init__(self, input_name, x, target, weight, ignore_index, allow_prob):
        self.x = _validate.cuda_float_array(input_name, x)
        if self.x.ndim == 0:
            raise ValueError(f"{input_name}: expected shape (C,), (N, C) or (N, C, d1, ..., dk), got ()")
        class_axis = 0 if self.x.ndim == 1 else 1
        classes = self.x.shape[class_axis]
        if classes < 1:
            raise ValueError(
                f"{input_name}: expected at least one class on axis {class_axis}, got shape {self.x.shape}"
            )
        self.target_shape = self.x.shape[:class_axis] + self.x.shape[class_axis + 1 :]
        target = _validate.device_array("target", target)
        if "float" in str(target.dtype):
            if not allow_prob:
                raise TypeError(f"target: expected dtype int64 (class indices), got {target.dtype}")
            self.target = _validate.cuda_float_array("target", target)
            _validate.same_shape("target", self.target, input_name, self.x)
        else:
            self.target = _validate.cuda_index_array("target", target)
            if self.target.shape != self.target_shape:
                raise ValueError(
                    f"target: expected class indices of shape {self.target_shape} for {input_name} of shape "
                    f"{self.x.shape}, got {self.target.shape}"
                )
        self.weight = None
        if weight is not None:
            self.weight = _validate.cuda_float_array("weight", weight)
            if self.weight.shape != (classes,):
                raise ValueError(f"weight: expected shape ({classes},), got {self.weight.shape}")
        self.ignore_index = _validate.int64("ignore_index", ignore_index)

    def args(self, reduction):
        return self.x, self.target, self.weight, self.ignore_index, reduction

    def grad_loss(self, value, reduction):
        """grad_loss as the CUDA entries take it: a float32 Array shaped like
        the per-element loss for "none", else a 0-d Array or a float."""
        if _grad_loss_on_device(value, reduction):
            g = _validate.cuda_float_array("grad_loss", value)
            expected = self.target_shape if reduction == "none" else ()
            if g.shape != expected:
                raise ValueError(f"grad_loss: expected shape {expected} for reduction={reduction!r}, got {g.shape}")
            return g
        return _validate.grad_loss(value, reduction, self.target_shape)[1]


def _loss_args(input_name, x, target, weight, ignore_index, reduction, allow_prob):
    """The validated arguments of a loss entry up to `reduction` (already
    validated), raising the documented errors (IndexError for a class target
    out of range)."""
    inputs = _validate.LossInputs(input_name, x, target, weight, ignore_index, allow_prob)
    target = inputs.prob if inputs.prob is not None else inputs.index
    return inputs, (inputs.x, target, inputs.weight, inputs.ignore_index, reduction)


def _checked(result):
    """The result of an entry called with validated arguments: never None,
    unless the inputs changed under the call (another thread wrote them)."""
    if result is None:
        raise RuntimeError("minidnn: inputs were modified during the call")
    return result


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
    loss = _C.cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing)
    if loss is None:
        reduction = _validate.reduction(reduction)
        eps = _validate.label_smoothing(label_smoothing)
        if _loss_on_cuda("logits", logits, target, weight):
            loss = _CudaLoss("logits", logits, target, weight, ignore_index, True)
            return _C.cuda.cross_entropy(*loss.args(reduction), eps)
        _, args = _loss_args("logits", logits, target, weight, ignore_index, reduction, allow_prob=True)
        loss = _checked(_C.cross_entropy(*args, eps))
    return loss


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
    grad = _C.cross_entropy_backward(grad_loss, logits, target, weight, ignore_index, reduction, label_smoothing)
    if grad is None:
        reduction = _validate.reduction(reduction)
        eps = _validate.label_smoothing(label_smoothing)
        if _loss_on_cuda("logits", logits, target, weight, grad_loss, reduction):
            loss = _CudaLoss("logits", logits, target, weight, ignore_index, True)
            return _C.cuda.cross_entropy_backward(loss.grad_loss(grad_loss, reduction), *loss.args(reduction), eps)
        inputs, args = _loss_args("logits", logits, target, weight, ignore_index, reduction, allow_prob=True)
        grad = _checked(_C.cross_entropy_backward(_grad_loss(grad_loss, reduction, inputs), *args, eps))
    return grad


def nll_loss(
    log_probs: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> np.ndarray:
    """torch.nn.functional.nll_loss: -weight[t] * log_probs[i, t], 0 for ignored targets."""
    loss = _C.nll_loss(log_probs, target, weight, ignore_index, reduction)
    if loss is None:
        reduction = _validate.reduction(reduction)
        if _loss_on_cuda("log_probs", log_probs, target, weight):
            loss = _CudaLoss("log_probs", log_probs, target, weight, ignore_index, False)
            return _C.cuda.nll_loss(*loss.args(reduction))
        _, args = _loss_args("log_probs", log_probs, target, weight, ignore_index, reduction, allow_prob=False)
        loss = _checked(_C.nll_loss(*args))
    return loss


def nll_loss_backward(
    grad_loss,
    log_probs: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> np.ndarray:
    """Gradient of nll_loss wrt log_probs: -weight[t] * g at each target, 0 elsewhere."""
    grad = _C.nll_loss_backward(grad_loss, log_probs, target, weight, ignore_index, reduction)
    if grad is None:
        reduction = _validate.reduction(reduction)
        if _loss_on_cuda("log_probs", log_probs, target, weight, grad_loss, reduction):
            loss = _CudaLoss("log_probs", log_probs, target, weight, ignore_index, False)
            return _C.cuda.nll_loss_backward(loss.grad_loss(grad_loss, reduction), *loss.args(reduction))
        inputs, args = _loss_args("log_probs", log_probs, target, weight, ignore_index, reduction, allow_prob=False)
        grad = _checked(_C.nll_loss_backward(_grad_loss(grad_loss, reduction, inputs), *args))
    return grad


def _grad_loss(value, reduction: str, inputs: _validate.LossInputs):
    """grad_loss as the entries take it: a float32 array shaped like the
    per-element loss for "none", else a float."""
    per_element, scalar = _validate.grad_loss(value, reduction, inputs.target_shape)
    return per_element if per_element is not None else scalar
