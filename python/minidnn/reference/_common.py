"""Helpers the reference modules share."""

from __future__ import annotations

import numpy as np


def f64(x) -> np.ndarray:
    """x as a float64 array: the oracle computes in float64."""
    return np.asarray(x, dtype=np.float64)


def int_pair(value) -> tuple[int, int]:
    """An int, or a pair of them, as a pair of ints (kernel sizes, strides)."""
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)
