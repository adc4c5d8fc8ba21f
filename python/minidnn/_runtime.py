"""Runtime control: threads, the CPU code path, configuration, and the
settings of output allocation (a reuse pool for large outputs, and the
poisoning hook the tests use); the _C entries allocate the outputs."""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from typing import Iterator

import numpy as np

from . import _C, _validate

__all__ = ["set_num_threads", "get_num_threads", "config", "show_config", "empty_cache"]

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
        # Where CUDA arrays live: "emulated" (MINIDNN_CUDA_EMULATOR=1), "cuda", or None.
        "cuda_device": cuda._device() if cuda.is_available() else None,
        "cuda_status": cuda.status(),
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

# Output buffers of this size and more are kept for reuse. Below it, malloc
# already recycles freed memory; above it (glibc maps large blocks afresh),
# a new array costs a page fault per page on first write, which for a 64 MB
# output takes longer than the kernel that fills it.
_POOL_MIN_BYTES = 32 << 20
_POOL_CAP_BYTES = 1 << 30
_pool: dict[int, list[np.ndarray]] = {}
_pool_lock = threading.Lock()


def _free_index(buffers: list[np.ndarray]) -> int | None:
    """The index of a buffer of the list that no array uses any more, or None."""
    for i in range(len(buffers)):
        # Every array handed out is a view whose .base is the buffer, and so
        # is every view of such an array: while one exists the buffer has
        # more references than the list's and getrefcount's argument.
        if sys.getrefcount(buffers[i]) <= 2:
            return i
    return None


def _pooled_bytes(nbytes: int) -> np.ndarray:
    with _pool_lock:
        buffers = _pool.setdefault(nbytes, [])
        i = _free_index(buffers)
        if i is not None:
            return buffers[i]
        total = sum(size * len(bufs) for size, bufs in _pool.items())
        raw = np.empty(nbytes, dtype=np.uint8)
        if total + nbytes <= _POOL_CAP_BYTES:
            buffers.append(raw)
        return raw


def empty_cache() -> None:
    """Releases the large output buffers minidnn keeps for reuse (those no
    array still uses)."""
    with _pool_lock:
        for buffers in _pool.values():
            # By index: list.remove would compare arrays with ==.
            while (i := _free_index(buffers)) is not None:
                del buffers[i]


def _pooled_float32(shape: tuple) -> np.ndarray:
    """A float32 array of at least _POOL_MIN_BYTES from the pool."""
    nbytes = 4 * int(np.prod(shape, dtype=np.int64))
    return _pooled_bytes(nbytes).view(np.float32).reshape(shape)


# The _C entries allocate their outputs themselves (csrc/bindings/common.cpp)
# and take large ones from this pool.
_C.set_output_pool(_pooled_float32, _POOL_MIN_BYTES)


@contextlib.contextmanager
def poisoned_outputs(value: float = float("nan")) -> Iterator[None]:
    """Every output allocated inside starts filled with `value`, so an
    element a kernel fails to write shows up (the tests use NaN)."""
    global _poison
    previous, _poison = _poison, value
    _C.set_output_poison(value)
    try:
        yield
    finally:
        _poison = previous
        _C.set_output_poison(previous)
