"""minidnn: hand-written deep-learning kernels (C++ SIMD + OpenMP on the CPU,
CUDA on the GPU), each verified against the float64 NumPy reference in
minidnn.reference."""

import os as _os


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
from .conv import (
    conv1d,
    conv1d_backward,
    conv2d,
    conv2d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
)
from .linear import linear, linear_backward
from .recurrent import (
    gru,
    gru_backward,
    gru_cell,
    gru_cell_backward,
    lstm,
    lstm_backward,
    lstm_cell,
    lstm_cell_backward,
    rnn,
    rnn_backward,
    rnn_cell,
    rnn_cell_backward,
)
from .pooling import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_max_pool2d,
    adaptive_max_pool2d_backward,
    avg_pool1d,
    avg_pool2d,
    avg_pool2d_backward,
    max_pool1d,
    max_pool2d,
    max_pool2d_backward,
    max_unpool2d,
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
    "linear",
    "linear_backward",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv1d",
    "conv1d_backward",
    "lstm_cell",
    "lstm_cell_backward",
    "gru_cell",
    "gru_cell_backward",
    "rnn_cell",
    "rnn_cell_backward",
    "lstm",
    "lstm_backward",
    "gru",
    "gru_backward",
    "rnn",
    "rnn_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_backward",
    "max_unpool2d",
    "max_pool1d",
    "avg_pool1d",
]
