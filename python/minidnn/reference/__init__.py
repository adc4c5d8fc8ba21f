"""Float64 NumPy reference implementations (the test oracle for the C++ kernels).

Readable, exact, numpy-only; semantics follow torch.nn.functional.
"""

from .softmax import (
    softmax,
    log_softmax,
    softmax_backward,
    log_softmax_backward,
    nll_loss,
    nll_loss_backward,
    cross_entropy,
    cross_entropy_backward,
)
from .conv import (
    conv2d,
    conv2d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
    conv1d,
    conv1d_backward,
)
from .linear import linear, linear_backward
from .recurrent import (
    lstm_cell,
    lstm_cell_backward,
    gru_cell,
    gru_cell_backward,
    rnn_cell,
    rnn_cell_backward,
)
from .pooling import (
    max_pool2d,
    max_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_max_pool2d_backward,
    max_unpool2d,
    max_pool1d,
    avg_pool1d,
)
from .activation import (
    relu,
    relu_backward,
    leaky_relu,
    leaky_relu_backward,
    sigmoid,
    sigmoid_backward,
    tanh,
    tanh_backward,
)

__all__ = [
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "nll_loss",
    "nll_loss_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv1d",
    "conv1d_backward",
    "linear",
    "linear_backward",
    "lstm_cell",
    "lstm_cell_backward",
    "gru_cell",
    "gru_cell_backward",
    "rnn_cell",
    "rnn_cell_backward",
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
