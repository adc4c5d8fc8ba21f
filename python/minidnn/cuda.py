"""CUDA device queries. Importing minidnn never needs a GPU or a driver: the
extension links the CUDA runtime statically and asks for the driver only
when these functions run."""

from __future__ import annotations

from . import _C, _validate

__all__ = ["is_built", "is_available", "device_count", "get_device_name"]


def is_built() -> bool:
    """True when this build contains the CUDA backend."""
    return _C.cuda.built()


def device_count() -> int:
    """Number of usable CUDA devices (0 without a driver or a device)."""
    return _C.cuda.device_count()


def is_available() -> bool:
    """True when the CUDA backend is built and at least one device is usable."""
    return is_built() and device_count() > 0


def get_device_name(index: int = 0) -> str:
    """The name of device `index` (IndexError when there is no such device)."""
    return _C.cuda.device_name(_validate.integer("index", index))
