"""Float64 reference of linear (torch.nn.functional.linear) and its backward."""

from __future__ import annotations

import numpy as np

__all__ = ["linear", "linear_backward"]


def linear(x, weight, bias=None) -> np.ndarray:
    x64 = np.asarray(x, dtype=np.float64)
    w64 = np.asarray(weight, dtype=np.float64)
    y = x64 @ w64.T
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y


def linear_backward(grad_y, x, weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.asarray(grad_y, dtype=np.float64)
    x64 = np.asarray(x, dtype=np.float64)
    w64 = np.asarray(weight, dtype=np.float64)
    rows = int(np.prod(x64.shape[:-1], dtype=np.int64))  # not -1: extents may be 0
    g2 = g.reshape(rows, w64.shape[0])
    x2 = x64.reshape(rows, w64.shape[1])
    return (g2 @ w64).reshape(x64.shape), g2.T @ x2, g2.sum(axis=0)
