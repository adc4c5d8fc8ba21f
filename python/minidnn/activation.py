"""Elementwise activations and their backwards, on NumPy arrays (the CPU
kernels) or minidnn.cuda.Arrays (the CUDA kernels).

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
# csrc/bindings/common.h), and only then are they validated here, and the
# device chosen: minidnn.cuda.Arrays go to the CUDA kernels (_C.cuda) and
# come back as an Array.


def _forward(op: str, x, *params):
    if _validate.on_cuda(("x", x)):
        return getattr(_C.cuda, op)(_validate.cuda_float_array("x", x), *params)
    return getattr(_C, op)(_validate.float_array("x", x), *params)


def _backward(op: str, grad_y, saved, saved_name: str, *params):
    if _validate.on_cuda(("grad_y", grad_y), (saved_name, saved)):
        grad_y = _validate.cuda_float_array("grad_y", grad_y)
        saved = _validate.cuda_float_array(saved_name, saved)
        entry = getattr(_C.cuda, op)
    else:
        grad_y = _validate.float_array("grad_y", grad_y)
        saved = _validate.float_array(saved_name, saved)
        entry = getattr(_C, op)
    _validate.same_shape("grad_y", grad_y, saved_name, saved)
    return entry(grad_y, saved, *params)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0); NaN propagates."""
    y = _C.relu(x)
    return y if y is not None else _forward("relu", x)


def relu_backward(grad_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """grad_y where x > 0, else 0 (0 at x == 0; grad_y passes where x is NaN, as PyTorch)."""
    grad_x = _C.relu_backward(grad_y, x)
    return grad_x if grad_x is not None else _backward("relu_backward", grad_y, x, "x")


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """x where x > 0, else negative_slope * x."""
    y = _C.leaky_relu(x, negative_slope)
    if y is None:
        y = _forward("leaky_relu", x, _validate.real("negative_slope", negative_slope))
    return y


def leaky_relu_backward(grad_y: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """grad_y where x > 0, else negative_slope * grad_y (the slope at x == 0, as PyTorch)."""
    grad_x = _C.leaky_relu_backward(grad_y, x, negative_slope)
    if grad_x is None:
        slope = _validate.real("negative_slope", negative_slope)
        grad_x = _backward("leaky_relu_backward", grad_y, x, "x", slope)
    return grad_x


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), without overflow for any x."""
    y = _C.sigmoid(x)
    return y if y is not None else _forward("sigmoid", x)


def sigmoid_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """grad_y * y * (1 - y), from the output y = sigmoid(x)."""
    grad_x = _C.sigmoid_backward(grad_y, y)
    return grad_x if grad_x is not None else _backward("sigmoid_backward", grad_y, y, "y")


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent."""
    y = _C.tanh(x)
    return y if y is not None else _forward("tanh", x)


def tanh_backward(grad_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """grad_y * (1 - y * y), from the output y = tanh(x)."""
    grad_x = _C.tanh_backward(grad_y, y)
    return grad_x if grad_x is not None else _backward("tanh_backward", grad_y, y, "y")
