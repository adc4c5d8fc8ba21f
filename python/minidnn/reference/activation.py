"""Float64 NumPy reference for element-wise activations and their gradients.

Semantics follow PyTorch (NaN propagation, gradient at x == 0).
"""

import numpy as np

from ._common import f64 as _f64

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


def relu(x):
    """y = max(x, 0)   (NaN propagates)"""
    x = _f64(x)
    return _f64(np.maximum(x, 0.0))


def relu_backward(grad_y, x):
    """grad_x = grad_y if x > 0 else 0   (0 at x == 0, as PyTorch)

    Like PyTorch's threshold_backward, the gradient is zeroed where x <= 0, so a
    NaN input lets grad_y through.
    """
    grad_y = _f64(grad_y)
    x = _f64(x)
    return _f64(np.where(x <= 0, 0.0, grad_y))


def leaky_relu(x, negative_slope=0.01):
    """y = x if x > 0 else negative_slope * x   (NaN propagates)"""
    x = _f64(x)
    return _f64(np.where(x > 0, x, negative_slope * x))


def leaky_relu_backward(grad_y, x, negative_slope=0.01):
    """grad_x = grad_y if x > 0 else negative_slope * grad_y   (x == 0 takes the slope)"""
    grad_y = _f64(grad_y)
    x = _f64(x)
    return _f64(np.where(x > 0, grad_y, negative_slope * grad_y))


def sigmoid(x):
    """y = 1 / (1 + exp(-x)), computed stably with e = exp(-|x|):
    y = 1 / (1 + e) for x >= 0, y = e / (1 + e) for x < 0."""
    x = _f64(x)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return _f64(np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


def sigmoid_backward(grad_y, y):
    """grad_x = grad_y * y * (1 - y), given y = sigmoid(x)"""
    grad_y = _f64(grad_y)
    y = _f64(y)
    return _f64(grad_y * y * (1.0 - y))


def tanh(x):
    """y = tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))"""
    x = _f64(x)
    return _f64(np.tanh(x))


def tanh_backward(grad_y, y):
    """grad_x = grad_y * (1 - y * y), given y = tanh(x)"""
    grad_y = _f64(grad_y)
    y = _f64(y)
    return _f64(grad_y * (1.0 - y * y))
