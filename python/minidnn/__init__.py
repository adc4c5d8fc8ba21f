"""minidnn: hand-written deep-learning kernels (C++ SIMD + OpenMP on the CPU,
CUDA on the GPU), each verified against the float64 NumPy reference in
minidnn.reference."""

from . import _C
from ._runtime import config, empty_cache, get_num_threads, set_num_threads, show_config
from .activation import (
    leaky_relu,
    leaky_relu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    tanh,
    tanh_backward,
)
from .softmax import (
    cross_entropy,
    cross_entropy_backward,
    log_softmax,
    log_softmax_backward,
    nll_loss,
    nll_loss_backward,
    softmax,
    softmax_backward,
)
from . import cuda, reference  # noqa: E402  (submodules, after the ops they may use)

__version__ = _C.__version__

__all__ = [
    "__version__",
    "config",
    "show_config",
    "empty_cache",
    "set_num_threads",
    "get_num_threads",
    "cuda",
    "reference",
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "nll_loss",
    "nll_loss_backward",
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
]
