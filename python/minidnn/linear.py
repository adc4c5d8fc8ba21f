"""Linear layer on the project's own SGEMM: forward and backward, with the
semantics of torch.nn.functional.linear."""

from __future__ import annotations

import numpy as np

from . import _C, _validate

__all__ = ["linear", "linear_backward"]


# Each op calls its _C entry with the arguments as given; the entry returns
# None unless they are exactly what the kernels read (see
# csrc/bindings/common.h), and only then are they validated here.


def _weight(weight) -> np.ndarray:
    weight = _validate.float_array("weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"weight: expected a 2-D array (out_features, in_features), got shape {weight.shape}")
    return weight


def _input(name: str, x, features: int, what: str) -> np.ndarray:
    """x (..., features) as a C-contiguous float32 array."""
    x = _validate.float_array(name, x)
    if x.ndim == 0 or x.shape[-1] != features:
        raise ValueError(f"{name}: expected shape (..., {features}) ({what}), got {x.shape}")
    return x


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """x @ weight.T + bias: x (..., in_features), weight (out_features,
    in_features), bias (out_features,) or None -> (..., out_features).
    in_features == 0 gives the bias (or zeros)."""
    y = _C.linear(x, weight, bias)
    if y is None:
        weight = _weight(weight)
        out_features, in_features = weight.shape
        x = _input("x", x, in_features, "in_features = weight.shape[1]")
        if bias is not None:
            bias = _validate.float_array("bias", bias)
            if bias.shape != (out_features,):
                raise ValueError(
                    f"bias: expected shape ({out_features},) (out_features = weight.shape[0]), got {bias.shape}"
                )
        y = _C.linear(x, weight, bias)
    return y


def linear_backward(
    grad_y: np.ndarray, x: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grad_x, grad_weight, grad_bias) of y = linear(x, weight, bias):
    grad_x = grad_y @ weight, grad_weight = grad_y^T @ x over all leading
    axes, grad_bias = grad_y summed over all but the last axis (returned
    whether or not the forward had a bias)."""
    grads = _C.linear_backward(grad_y, x, weight)
    if grads is None:
        weight = _weight(weight)
        out_features, in_features = weight.shape
        x = _input("x", x, in_features, "in_features = weight.shape[1]")
        grad_y = _validate.float_array("grad_y", grad_y)
        expected = x.shape[:-1] + (out_features,)
        if grad_y.shape != expected:
            raise ValueError(
                f"grad_y: expected shape {expected} (x.shape[:-1] + (out_features,)), got {grad_y.shape}"
            )
        grads = _C.linear_backward(grad_y, x, weight)
    return grads
