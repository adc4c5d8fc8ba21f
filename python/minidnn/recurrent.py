"""Recurrent cells (one time step) on the project's SGEMM and fused SIMD
gate kernels: LSTM, GRU (both published forms) and Elman RNN, forward and
backward, with PyTorch's formulas, weight shapes and gate order, so the
weights of torch.nn.LSTMCell / GRUCell / RNNCell load as they are.

Shapes: x (N, I), h and c (N, H), w_ih (G*H, I), w_hh (G*H, H), b_ih and
b_hh (G*H,) or None; G = 4 for the LSTM (gates i, f, g, o), 3 for the GRU
(r, z, n), 1 for the RNN. H is read from w_hh.

The backwards take the gradients of the cell's outputs first, then the
cell's arguments, recompute the gates (a cell keeps no cache) and return
the gradients of the cell's array arguments in their order, None for a
bias that was None.
"""

from __future__ import annotations

import numpy as np

from . import _C, _validate

__all__ = [
    "lstm_cell",
    "lstm_cell_backward",
    "gru_cell",
    "gru_cell_backward",
    "rnn_cell",
    "rnn_cell_backward",
]

_GATES = {"lstm": (4, "i, f, g, o"), "gru": (3, "r, z, n"), "rnn": (1, "")}


# Each op calls its _C entry with the arguments as given; the entry returns
# None unless they are exactly what the kernels read (see
# csrc/bindings/common.h), and only then are they validated here.


def _cell(kind: str, x, h, w_ih, w_hh, b_ih, b_hh) -> tuple:
    """The validated (x, h, w_ih, w_hh, b_ih, b_hh) and (N, H)."""
    gates, names = _GATES[kind]
    g = f"{gates}*H" if gates > 1 else "H"
    what = f" ({kind} gates {names})" if names else ""
    w_hh = _validate.float_array("w_hh", w_hh)
    if w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
        raise ValueError(f"w_hh: expected shape ({g}, H){what}, got {w_hh.shape}")
    hidden = w_hh.shape[1]
    w_ih = _validate.float_array("w_ih", w_ih)
    if w_ih.ndim != 2 or w_ih.shape[0] != gates * hidden:
        raise ValueError(
            f"w_ih: expected shape ({gates * hidden}, input_size) ({g} with H = {hidden} from w_hh), got {w_ih.shape}"
        )
    x = _validate.float_array("x", x)
    if x.ndim != 2 or x.shape[1] != w_ih.shape[1]:
        raise ValueError(f"x: expected shape (N, {w_ih.shape[1]}) (input_size = w_ih.shape[1]), got {x.shape}")
    batch = x.shape[0]
    h = _state("h", h, batch, hidden)
    biases = []
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None:
            b = _validate.float_array(name, b)
            if b.shape != (gates * hidden,):
                raise ValueError(f"{name}: expected shape ({gates * hidden},) ({g} with H = {hidden}), got {b.shape}")
        biases.append(b)
    return (x, h, w_ih, w_hh, *biases), (batch, hidden)


def _state(name: str, a, batch: int, hidden: int) -> np.ndarray:
    a = _validate.float_array(name, a)
    if a.shape != (batch, hidden):
        raise ValueError(f"{name}: expected shape ({batch}, {hidden}) (N from x, H from w_hh), got {a.shape}")
    return a


def _optional_state(name: str, a, batch: int, hidden: int):
    return None if a is None else _state(name, a, batch, hidden)


def _linear_before_reset(value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"linear_before_reset: expected a bool, got {type(value).__name__}")
    return bool(value)


def _nonlinearity(value) -> str:
    if not isinstance(value, str) or value not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {value!r}")
    return str(value)


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None) -> tuple[np.ndarray, np.ndarray]:
    """(h1, c1) of one LSTM step: gates = x W_ih^T + b_ih + h W_hh^T + b_hh
    split as i, f, g, o; c1 = sigmoid(f) c + sigmoid(i) tanh(g), h1 =
    sigmoid(o) tanh(c1) (torch.lstm_cell)."""
    out = _C.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh)
    if out is None:
        args, (batch, hidden) = _cell("lstm", x, h, w_ih, w_hh, b_ih, b_hh)
        c = _state("c", c, batch, hidden)
        x, h, w_ih, w_hh, b_ih, b_hh = args
        out = _C.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh)
    return out


def lstm_cell_backward(grad_h1, grad_c1, x, h, c, w_ih, w_hh, b_ih=None, b_hh=None) -> tuple:
    """(grad_x, grad_h, grad_c, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)
    of lstm_cell for the gradients grad_h1 and grad_c1 of its outputs
    (either may be None: zeros)."""
    out = _C.lstm_cell_backward(grad_h1, grad_c1, x, h, c, w_ih, w_hh, b_ih, b_hh)
    if out is None:
        args, (batch, hidden) = _cell("lstm", x, h, w_ih, w_hh, b_ih, b_hh)
        c = _state("c", c, batch, hidden)
        grad_h1 = _optional_state("grad_h1", grad_h1, batch, hidden)
        grad_c1 = _optional_state("grad_c1", grad_c1, batch, hidden)
        x, h, w_ih, w_hh, b_ih, b_hh = args
        out = _C.lstm_cell_backward(grad_h1, grad_c1, x, h, c, w_ih, w_hh, b_ih, b_hh)
    return out


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, linear_before_reset: bool = True) -> np.ndarray:
    """h1 of one GRU step: h1 = (1 - z) n + z h, r = sigmoid(W_ir x + b_ir +
    W_hr h + b_hr), z likewise, and n = tanh(W_in x + b_in + r (W_hn h +
    b_hn)) (PyTorch's form, linear_before_reset=True) or n = tanh(W_in x +
    b_in + W_hn (r h) + b_hn) (linear_before_reset=False, ONNX's default)."""
    out = _C.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh, linear_before_reset)
    if out is None:
        args, _ = _cell("gru", x, h, w_ih, w_hh, b_ih, b_hh)
        out = _C.gru_cell(*args, _linear_before_reset(linear_before_reset))
    return out


def gru_cell_backward(grad_h1, x, h, w_ih, w_hh, b_ih=None, b_hh=None, linear_before_reset: bool = True) -> tuple:
    """(grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of gru_cell."""
    out = _C.gru_cell_backward(grad_h1, x, h, w_ih, w_hh, b_ih, b_hh, linear_before_reset)
    if out is None:
        args, (batch, hidden) = _cell("gru", x, h, w_ih, w_hh, b_ih, b_hh)
        grad_h1 = _state("grad_h1", grad_h1, batch, hidden)
        out = _C.gru_cell_backward(grad_h1, *args, _linear_before_reset(linear_before_reset))
    return out


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity: str = "tanh") -> np.ndarray:
    """h1 = f(x W_ih^T + b_ih + h W_hh^T + b_hh), f = tanh or relu
    (torch.rnn_tanh_cell / rnn_relu_cell)."""
    out = _C.rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity)
    if out is None:
        args, _ = _cell("rnn", x, h, w_ih, w_hh, b_ih, b_hh)
        out = _C.rnn_cell(*args, _nonlinearity(nonlinearity))
    return out


def rnn_cell_backward(grad_h1, x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity: str = "tanh") -> tuple:
    """(grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of
    rnn_cell; relu's derivative at 0 is 0 (as PyTorch's)."""
    out = _C.rnn_cell_backward(grad_h1, x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity)
    if out is None:
        args, (batch, hidden) = _cell("rnn", x, h, w_ih, w_hh, b_ih, b_hh)
        grad_h1 = _state("grad_h1", grad_h1, batch, hidden)
        out = _C.rnn_cell_backward(grad_h1, *args, _nonlinearity(nonlinearity))
    return out
