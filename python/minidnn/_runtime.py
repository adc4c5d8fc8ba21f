"""Runtime control: threads, the CPU code path, configuration, and output
allocation (with the poisoning hook the tests use)."""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import numpy as np

from . import _C, _validate

__all__ = ["set_num_threads", "get_num_threads", "config", "show_config"]

if _C.isa_warning():
    warnings.warn(_C.isa_warning(), RuntimeWarning, stacklevel=3)


def set_num_threads(n: int) -> None:
    """Sets the number of threads every CPU kernel uses (default: OMP_NUM_THREADS,
    else the number of cores). Does not change PyTorch's or NumPy's setting."""
    _C.set_num_threads(_validate.positive_int("n", n))


def get_num_threads() -> int:
    """The number of threads CPU kernels use."""
    return _C.get_num_threads()


def config() -> dict:
    """The build and run-time configuration as a dict."""
    from . import __version__, cuda

    supported = _C.cpu_supports()
    return {
        "version": __version__,
        "isa": _C.active_isa(),
        "isa_best": _C.best_isa(),
        "isa_compiled": ["avx512", "avx2", "scalar"],
        "isa_supported_by_cpu": [name for name, ok in supported.items() if ok],
        "openmp": _C.openmp_version(),
        "num_threads": get_num_threads(),
        "cuda_built": cuda.is_built(),
        "cuda_available": cuda.is_available(),
        "cuda_device_count": cuda.device_count(),
        "cuda_status": _C.cuda.status(),
    }


def show_config() -> None:
    """Prints config() one item per line."""
    for key, value in config().items():
        print(f"{key:22s} {value}")


@contextlib.contextmanager
def _isa(name: str) -> Iterator[None]:
    """Runs the body on the given CPU path (ValueError if the CPU lacks it)."""
    previous = _C.active_isa()
    _C.set_isa(name)
    try:
        yield
    finally:
        _C.set_isa(previous)


_poison: float | None = None


def empty(shape, dtype=np.float32) -> np.ndarray:
    """An uninitialized output array (filled with the poison value inside
    poisoned_outputs(), so a kernel that skips an element is caught)."""
    if _poison is None:
        return np.empty(shape, dtype=dtype)
    return np.full(shape, _poison, dtype=dtype)


@contextlib.contextmanager
def poisoned_outputs(value: float = float("nan")) -> Iterator[None]:
    global _poison
    previous, _poison = _poison, value
    try:
        yield
    finally:
        _poison = previous
