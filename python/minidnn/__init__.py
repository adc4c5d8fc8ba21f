"""minidnn: hand-written deep-learning kernels (C++ SIMD + OpenMP on the CPU,
CUDA on the GPU), each verified against the float64 NumPy reference in
minidnn.reference."""

import os as _os
import sys as _sys


def _load_extension():
    """Imports _C, which loads the OpenMP runtime (libgomp) unless another
    library loaded it first. libgomp reads its spin setting once, at load:
    by default idle workers spin for milliseconds after each parallel
    region, which on a 2-core machine made the caller's next NumPy matmul
    12x slower (bench/NOTES.md). 5000 spins (~0.1 ms) keep back-to-back
    minidnn calls fast and let the cores go soon after. A setting of the
    user's own (GOMP_SPINCOUNT, OMP_WAIT_POLICY) is left alone, and the
    variable is not left behind for child processes."""
    if "GOMP_SPINCOUNT" in _os.environ or "OMP_WAIT_POLICY" in _os.environ:
        from . import _C
        return _C
    _os.environ["GOMP_SPINCOUNT"] = "5000"
    try:
        from . import _C
    finally:
        del _os.environ["GOMP_SPINCOUNT"]
    return _C


_C = _load_extension()

# Each module's __all__ is its public part; the package exports their union.
from ._runtime import *  # noqa: E402,F403
from .activation import *  # noqa: E402,F403
from .conv import *  # noqa: E402,F403
from .linear import *  # noqa: E402,F403
from .recurrent import *  # noqa: E402,F403
from .pooling import *  # noqa: E402,F403
from .softmax import *  # noqa: E402,F403
from . import cuda, reference  # noqa: E402  (submodules, after the ops they may use)

__version__ = _C.__version__

# The modules by sys.modules: the names `linear` and `softmax` here are the
# functions now.
__all__ = ["__version__", "cuda", "reference"] + [
    name
    for module in ("_runtime", "activation", "conv", "linear", "recurrent", "pooling", "softmax")
    for name in _sys.modules[f"{__name__}.{module}"].__all__
]
