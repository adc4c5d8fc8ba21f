"""Float64 NumPy reference implementations (the test oracle for the C++ kernels).

Readable, exact, numpy-only; semantics follow torch.nn.functional.
"""

import sys as _sys

# Each module's __all__ is its public part; the package exports their union.
from .softmax import *  # noqa: F403
from .conv import *  # noqa: F403
from .linear import *  # noqa: F403
from .recurrent import *  # noqa: F403
from .pooling import *  # noqa: F403
from .activation import *  # noqa: F403

# The modules by sys.modules: the names `linear` and `softmax` here are the
# functions now.
__all__ = [
    name
    for module in ("softmax", "activation", "conv", "linear", "recurrent", "pooling")
    for name in _sys.modules[f"{__name__}.{module}"].__all__
]
