"""Elementwise activations and their backwards.

Backwards take what PyTorch saves: the input x for relu and leaky_relu, the
output y for sigmoid and tanh."""

from __future__ import annotations

import numpy as np

from . import _C, _validate

__all__ = [
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
]

# Each op calls its _C entry with the arguments as given; the entry returns
# None unless they are exactly what the kernel reads (see
# csrc/bindings/common.h), and only then are they validated here.


def _backward_args(grad_y, saved, saved_name: str):
    grad_y = _validate.float_array("grad_y", grad_y)
    saved = _validate.float_array(saved_name, saved)
    _validate.same_shape("grad_y", grad_y, saved_name, saved)
    return grad_y, saved


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0); NaN propagates."""
    y = _C.relu(x)
    return y if y is not None else _C.relu(_validate.float_array("x", x))


def relu_backward(grad_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """grad_y where x > 0, else 0 (0 at x == 0; grad_y passes where x is NaN, as PyTorch)."""
    grad_x = _C.relu_backward(grad_y, x)
    return grad_x if grad_x is not None else _C.relu_backward(*_backward_args(grad_y, x, "x"))


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """x where x > 0, else negative_slope * x."""
    y = _C.leaky_relu(x, negative_slope)
    if y is None:
        slope = _validate.real("negative_slope", negative_slope)
        y = _C.leaky_relu(_validate.float_array("x", x), slope)
    return y


def leaky_relu_backward(grad_y: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """grad_y where x > 0, else negative_slope * grad_y (the slope at x == 0, as PyTorch)."""
    grad_x = _C.leaky_relu_backward(grad_y, x, negative_slope)
    if grad_x is None:
        slope = _validate.real("negative_slope", negative_slope)
        grad_x = _C.leaky_relu_backward(*_backward_args(grad_y, x, "x"), slope)
    return grad_x


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), without overflow for any x."""
    y = _C.sigmoid(x)
    return y if y is not None else _C.sigmoid(_validate.float_array("x", x))


def sigmoid_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """grad_y * y * (1 - y), from the output y = sigmoid(x)."""
    grad_x = _C.sigmoid_backward(grad_y, y)
    return grad_x if grad_x is not None else _C.sigmoid_backward(*_backward_args(grad_y, y, "y"))


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent."""
    y = _C.tanh(x)
    return y if y is not None else _C.tanh(_validate.float_array("x", x))


def tanh_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """grad_y * (1 - y * y), from the output y = tanh(x)."""
    grad_x = _C.tanh_backward(grad_y, y)
    return grad_x if grad_x is not None else _C.tanh_backward(*_backward_args(grad_y, y, "y"))
