"""Elementwise activations and their backwards.

Backwards take what PyTorch saves: the input x for relu and leaky_relu, the
output y for sigmoid and tanh."""

from __future__ import annotations

import numpy as np

from . import _C, _validate
from ._runtime import empty

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

_Kind = _C.Activation


def _forward(kind, x, alpha: float = 0.0) -> np.ndarray:
    x = _validate.float_array("x", x)
    out = empty(x.shape)
    _C.activation_forward(kind, x.reshape(-1), out.reshape(-1), alpha)
    return out


def _backward(kind, grad_y, saved, saved_name: str, alpha: float = 0.0) -> np.ndarray:
    grad_y = _validate.float_array("grad_y", grad_y)
    saved = _validate.float_array(saved_name, saved)
    _validate.same_shape("grad_y", grad_y, saved_name, saved)
    out = empty(saved.shape)
    _C.activation_backward(kind, grad_y.reshape(-1), saved.reshape(-1), out.reshape(-1), alpha)
    return out


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0); NaN propagates."""
    return _forward(_Kind.relu, x)


def relu_backward(grad_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """grad_y where x > 0, else 0 (0 at x == 0; grad_y passes where x is NaN, as PyTorch)."""
    return _backward(_Kind.relu, grad_y, x, "x")


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """x where x > 0, else negative_slope * x."""
    return _forward(_Kind.leaky_relu, x, _validate.real("negative_slope", negative_slope))


def leaky_relu_backward(grad_y: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """grad_y where x > 0, else negative_slope * grad_y (the slope at x == 0, as PyTorch)."""
    return _backward(_Kind.leaky_relu, grad_y, x, "x", _validate.real("negative_slope", negative_slope))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), without overflow for any x."""
    return _forward(_Kind.sigmoid, x)


def sigmoid_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """grad_y * y * (1 - y), from the output y = sigmoid(x)."""
    return _backward(_Kind.sigmoid, grad_y, y, "y")


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent."""
    return _forward(_Kind.tanh, x)


def tanh_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """grad_y * (1 - y * y), from the output y = tanh(x)."""
    return _backward(_Kind.tanh, grad_y, y, "y")
