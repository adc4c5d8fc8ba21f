"""CUDA devices and arrays. Importing minidnn never needs a GPU or a driver:
the extension links the CUDA runtime statically and asks for the driver
only when these functions run.

`MINIDNN_CUDA_EMULATOR=1` in the environment at import puts this module on
the emulated device: the same CUDA kernel source compiled for the CPU
against minidnn's own emulation layer (README "The emulated CUDA device").
`MINIDNN_CUDA_EMULATOR_ORDER` = `forward` | `reverse` | `shuffled[:SEED]`
selects the order in which the emulator runs the threads of a block between
two barriers."""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator

import numpy as np

from . import _C, _validate

__all__ = [
    "Array",
    "is_built",
    "is_available",
    "device_count",
    "get_device_name",
    "status",
    "to_device",
    "empty_cache",
]

Array = _C.cuda.Array
Array.__module__ = __name__

EMULATED_DEVICE_NAME = "minidnn emulated CUDA device"

# Read once, at import (API.md); _emulated() switches it for the tests.
_use_emulator = os.environ.get("MINIDNN_CUDA_EMULATOR", "") == "1"


def _parse_order(text: str) -> tuple[str, int]:
    name, _, seed = text.partition(":")
    if name not in ("forward", "reverse", "shuffled") or (seed and (name != "shuffled" or not seed.isdigit())):
        raise ValueError(f"expected forward, reverse or shuffled[:SEED], got {text!r}")
    return name, int(seed or 0)


def _order_from_environment() -> None:
    text = os.environ.get("MINIDNN_CUDA_EMULATOR_ORDER")
    if not text:
        return
    try:
        _C.cuda._set_emulator_order(*_parse_order(text))
    except ValueError as e:
        # Importing minidnn must not fail over a setting of the tests' tool.
        warnings.warn(f"MINIDNN_CUDA_EMULATOR_ORDER: {e}; the emulator keeps the forward order", RuntimeWarning, stacklevel=3)


_order_from_environment()


def _device() -> str:
    """Where to_device puts new arrays: 'emulated' or 'cuda'."""
    return "emulated" if _use_emulator else "cuda"


def is_built() -> bool:
    """True when this build contains the CUDA backend (the GPU's; the emulated
    device is in every build)."""
    return _C.cuda.built()


def device_count() -> int:
    """Number of usable CUDA devices (0 without a driver or a device; 1 on
    the emulated device)."""
    return 1 if _use_emulator else _C.cuda.device_count()


def is_available() -> bool:
    """True when CUDA arrays can be made: the emulated device is selected, or
    the CUDA backend is built and at least one device is usable."""
    return _use_emulator or (is_built() and _C.cuda.device_count() > 0)


def status() -> str:
    """Why is_available() is False, or "ok", or that the device is emulated."""
    return "emulated device (MINIDNN_CUDA_EMULATOR=1)" if _use_emulator else _C.cuda.status()


def get_device_name(index: int = 0) -> str:
    """The name of device `index` (IndexError when there is no such device)."""
    index = _validate.integer("index", index)
    if _use_emulator:
        if index != 0:
            raise IndexError(f"index: expected 0 (the emulated device is the only one), got {index}")
        return EMULATED_DEVICE_NAME
    return _C.cuda.device_name(index)


def to_device(x: np.ndarray) -> Array:
    """A copy of the NumPy array x on the CUDA device (float32 or int64;
    int32 is widened; other layouts are copied to C order first)."""
    if isinstance(x, Array):
        raise TypeError("x: expected a numpy.ndarray, got a minidnn.cuda.Array (already on a device)")
    x = _validate._as_ndarray(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a numpy.ndarray of float32, int64 or int32, got {type(x).__name__}")
    if x.dtype == np.int32:
        x = x.astype(np.int64)
    elif x.dtype not in (np.float32, np.int64):
        raise TypeError(f"x: expected dtype float32, int64 or int32, got {x.dtype}")
    if not is_available():
        raise RuntimeError(f"to_device: no CUDA device is available ({status()})")
    return _C.cuda.to_device(_validate._contiguous(x), _device())


def empty_cache() -> None:
    """Frees the device memory the caching allocator keeps for reuse (blocks
    of arrays that no longer exist)."""
    _C.cuda.empty_cache("emulated")
    if is_built():
        _C.cuda.empty_cache("cuda")


@contextlib.contextmanager
def _emulated(order: str = "forward", seed: int = 0) -> Iterator[None]:
    """Private (tests): this process on the emulated device inside the block,
    its threads run in `order`, as MINIDNN_CUDA_EMULATOR=1 and
    MINIDNN_CUDA_EMULATOR_ORDER would set it at import."""
    global _use_emulator
    previous, previous_order = _use_emulator, _C.cuda._emulator_order()
    _use_emulator = True
    _C.cuda._set_emulator_order(order, seed)
    try:
        yield
    finally:
        _use_emulator = previous
        _C.cuda._set_emulator_order(*previous_order)


@contextlib.contextmanager
def _emulated_interop() -> Iterator[None]:
    """Private (tests): inside the block, other libraries' CUDA arrays
    (__cuda_array_interface__, __dlpack__ on kDLCUDA) are taken to live on the
    emulated device, so that a test's stand-in for such a library, pointing
    at emulated arrays, goes through the ingestion real ones go through (the
    pointer is checked against the emulated device's arrays as it is against
    the GPU's memory on a real device)."""
    previous = _validate._interop_device
    _validate._interop_device = "emulated"
    try:
        yield
    finally:
        _validate._interop_device = previous
