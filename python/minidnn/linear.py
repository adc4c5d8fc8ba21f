"""Linear layer on the project's own SGEMM: forward and backward, with the
semantics of torch.nn.functional.linear."""

from __future__ import annotations

import numpy as np

from . import _C, _validate
from ._runtime import empty

__all__ = ["linear", "linear_backward"]


def _weight(weight) -> np.ndarray:
    weight = _validate.float_array("weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"weight: expected a 2-D array (out_features, in_features), got shape {weight.shape}")
    return weight


def _input(name: str, x, features: int, what: str) -> tuple[np.ndarray, int]:
    """x (..., features) as a C-contiguous float32 array, and its row count."""
    x = _validate.float_array(name, x)
    if x.ndim == 0 or x.shape[-1] != features:
        raise ValueError(f"{name}: expected shape (..., {features}) ({what}), got {x.shape}")
    return x, int(np.prod(x.shape[:-1], dtype=np.int64))


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """x @ weight.T + bias: x (..., in_features), weight (out_features,
    in_features), bias (out_features,) or None -> (..., out_features).
    in_features == 0 gives the bias (or zeros)."""
    weight = _weight(weight)
    out_features, in_features = weight.shape
    x, rows = _input("x", x, in_features, "in_features = weight.shape[1]")
    if bias is not None:
        bias = _validate.float_array("bias", bias)
        if bias.shape != (out_features,):
            raise ValueError(f"bias: expected shape ({out_features},) (out_features = weight.shape[0]), got {bias.shape}")
    out = empty(x.shape[:-1] + (out_features,))
    _C.linear_forward(x, weight, bias, out, rows, in_features, out_features)
    return out


def linear_backward(
    grad_y: np.ndarray, x: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grad_x, grad_weight, grad_bias) of y = linear(x, weight, bias):
    grad_x = grad_y @ weight, grad_weight = grad_y^T @ x over all leading
    axes, grad_bias = grad_y summed over all but the last axis (returned
    whether or not the forward had a bias)."""
    weight = _weight(weight)
    out_features, in_features = weight.shape
    x, rows = _input("x", x, in_features, "in_features = weight.shape[1]")
    grad_y = _validate.float_array("grad_y", grad_y)
    expected = x.shape[:-1] + (out_features,)
    if grad_y.shape != expected:
        raise ValueError(
            f"grad_y: expected shape {expected} (x.shape[:-1] + (out_features,)), got {grad_y.shape}"
        )
    grad_x = empty(x.shape)
    grad_weight = empty(weight.shape)
    grad_bias = empty((out_features,))
    _C.linear_backward(grad_y, x, weight, grad_x, grad_weight, grad_bias, rows, in_features, out_features)
    return grad_x, grad_weight, grad_bias
