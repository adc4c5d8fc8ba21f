"""Recurrent cells (one time step) and layers (sequences, several layers,
both directions) on the project's SGEMM and fused SIMD gate kernels: LSTM,
GRU (both published forms) and Elman RNN, forward and backward (through
time for the layers), with PyTorch's formulas, weight shapes and gate
order, so the weights of torch.nn.LSTMCell / GRUCell / RNNCell and
torch.nn.LSTM / GRU / RNN load as they are. The layers are described
above their code below.

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
    "lstm",
    "lstm_backward",
    "gru",
    "gru_backward",
    "rnn",
    "rnn_backward",
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


# ---------------------------------------------------------------- layers
#
# x (T, N, I), or (N, T, I) with batch_first; params one (w_ih, w_hh, b_ih,
# b_hh) tuple per layer and direction in PyTorch's order (layer 0 forward,
# layer 0 reverse, layer 1 ...), so the number of layers is len(params) /
# directions; a layer above the first reads the (T, N, directions * H)
# outputs of the one below. Initial states (layers * directions, N, H),
# zeros when None. T = 0 is a ValueError, as in PyTorch (N = 0 is fine).
# Each layer is one _C call that runs the whole time loop of its
# directions (at once on two threads: csrc/cpu/recurrent/layers.cpp).

_LAYER_STATES = {"lstm": ("h0", "c0"), "gru": ("h0",), "rnn": ("h0",)}


class RecurrentCache:
    """What lstm_backward / gru_backward / rnn_backward need, made by the
    layer with return_cache=True; read-only to the backward, so it may be
    used more than once.

    It holds the validated params (the weight arrays themselves, not
    copies: update weights in place only after the backward), each
    layer's input (x itself, not a copy, for the first layer; the outputs of the layer below for the
    others), and for each layer and direction the buffers of its forward
    kernel: the states of the T + 1 instants, h_states (T + 1, N, H), and
    for the LSTM c_states (T + 1, N, H) and the gate pre-activations
    (T, N, 4H); for the GRU the two maps' outputs gi and gh (T, N, 3H) and,
    with linear_before_reset=False, r * h (T, N, H); for the RNN the
    pre-activations (T, N, H). `nbytes` counts what the cache holds
    beyond x: a unidirectional layer's input is a view of the states of
    the layer below, not counted twice.
    """

    __slots__ = ("kind", "option", "params", "inputs", "buffers", "dirs", "batch_first", "output_shape")

    def __init__(self, kind, option, params, inputs, buffers, dirs, batch_first, output_shape):
        self.kind, self.option, self.params, self.inputs = kind, option, params, inputs
        self.buffers, self.dirs, self.batch_first, self.output_shape = buffers, dirs, batch_first, output_shape

    @property
    def nbytes(self) -> int:
        inputs = self.inputs[1:] if self.dirs == 2 else []
        arrays = inputs + [a for bufs in self.buffers for a in bufs if a is not None]
        return sum(a.nbytes for a in arrays)

    @property
    def hidden_size(self) -> int:
        return self.params[0][1].shape[1]


def _layer_forward_call(kind, x, w, initial, option):
    """One layer's _C call: w its directions' params, initial its states
    (directions, N, H) or None; a list of each direction's buffers."""
    if kind == "lstm":
        return _C.lstm_layer(x, w, *initial)
    return getattr(_C, f"{kind}_layer")(x, w, *initial, option)


def _layer_backward_call(kind, x, w, buffers, option, grad_y, grad_finals):
    """A list of each direction's (grad_x, initial states' gradients...,
    weight gradients...)."""
    if kind == "lstm":
        return _C.lstm_layer_backward(x, w, buffers, grad_y, *grad_finals)
    return getattr(_C, f"{kind}_layer_backward")(x, w, buffers, option, grad_y, *grad_finals)


def _bidirectional(value) -> int:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"bidirectional: expected a bool, got {type(value).__name__}")
    return 2 if value else 1


def _layer_params(kind: str, params, dirs: int, inputs: int) -> list:
    """The validated params list (tuples of float32 arrays or None)."""
    gates, names = _GATES[kind]
    what = f"{kind} gates {names}, " if names else ""
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"params: expected a list of (w_ih, w_hh, b_ih, b_hh) tuples, got {type(params).__name__}")
    if len(params) == 0 or len(params) % dirs:
        per = "2 per layer (bidirectional)" if dirs == 2 else "1 per layer"
        raise ValueError(f"params: expected a positive multiple of {dirs} (w_ih, w_hh, b_ih, b_hh) tuples "
                         f"({per}), got {len(params)}")
    out, hidden = [], None
    for k, entry in enumerate(params):
        if not isinstance(entry, (list, tuple)) or len(entry) != 4:
            raise ValueError(f"params[{k}]: expected a (w_ih, w_hh, b_ih, b_hh) tuple, got {_describe(entry)}")
        w_ih, w_hh, b_ih, b_hh = entry
        w_hh = _validate.float_array(f"params[{k}] w_hh", w_hh)
        if hidden is None and w_hh.ndim == 2 and w_hh.shape[1] >= 1 and w_hh.shape[0] == gates * w_hh.shape[1]:
            hidden = w_hh.shape[1]
        if hidden is None or w_hh.shape != (gates * hidden, hidden):
            expected = f"({gates}*H, H) with H >= 1" if hidden is None else f"({gates * hidden}, {hidden})"
            raise ValueError(f"params[{k}] w_hh: expected shape {expected} ({what}H from params[0] w_hh), "
                             f"got {w_hh.shape}")
        width = inputs if k < dirs else dirs * hidden
        w_ih = _validate.float_array(f"params[{k}] w_ih", w_ih)
        if w_ih.shape != (gates * hidden, width):
            source = "the input size of x" if k < dirs else f"{dirs} * H, the outputs of the layer below"
            raise ValueError(f"params[{k}] w_ih: expected shape ({gates * hidden}, {width}) ({source}), "
                             f"got {w_ih.shape}")
        biases = []
        for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
            if b is not None:
                b = _validate.float_array(f"params[{k}] {name}", b)
                if b.shape != (gates * hidden,):
                    raise ValueError(f"params[{k}] {name}: expected shape ({gates * hidden},) or None, got {b.shape}")
            biases.append(b)
        out.append((w_ih, w_hh, *biases))
    return out


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


def _layer_state(name: str, a, shape: tuple, count: str):
    if a is None:
        return None
    a = _validate.float_array(name, a)
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} ({count}, N from x, H from params), got {a.shape}")
    return a


def _time_major(a, batch_first: bool) -> np.ndarray:
    """A (T, N, F) C-contiguous copy or view of a 3-d array."""
    return np.ascontiguousarray(a.transpose(1, 0, 2)) if batch_first else a


def _layers(kind, x, params, initial, bidirectional, batch_first, return_cache, option):
    dirs = _bidirectional(bidirectional)
    if not isinstance(batch_first, (bool, np.bool_)):
        raise TypeError(f"batch_first: expected a bool, got {type(batch_first).__name__}")
    x = _validate.float_array("x", x)
    layout = "(N, T, input_size) (batch_first)" if batch_first else "(T, N, input_size)"
    if x.ndim != 3 or x.shape[1 if batch_first else 0] == 0:
        raise ValueError(f"x: expected shape {layout} with T >= 1 (as PyTorch), got {x.shape}")
    x = _time_major(x, batch_first)
    steps, batch, inputs = x.shape
    params = _layer_params(kind, params, dirs, inputs)
    hidden = params[0][1].shape[1]
    count = f"layers * directions = {len(params)}"
    initial = [_layer_state(name, s, (len(params), batch, hidden), count)
               for name, s in zip(_LAYER_STATES[kind], initial)]
    layer_in, layer_inputs, buffers, finals = x, [], [], [[] for _ in initial]
    for layer in range(len(params) // dirs):
        layer_inputs.append(layer_in)
        outs = []
        mine = slice(layer * dirs, (layer + 1) * dirs)
        layer_initial = [None if s is None else s[mine] for s in initial]
        directions = _layer_forward_call(kind, layer_in, params[mine], layer_initial, option)
        for d, bufs in enumerate(directions):
            buffers.append(bufs)
            # The states of the T + 1 instants, initial first in time order
            # for the forward direction and last for the reverse one.
            outs.append(bufs[0][:-1] if d else bufs[0][1:])
            states = (bufs[0], bufs[1]) if kind == "lstm" else (bufs[0],)
            for final, s in zip(finals, states):
                final.append(s[0] if d else s[-1])
        layer_in = outs[0] if dirs == 1 else np.concatenate(outs, axis=2)
    y = layer_in
    if batch_first:
        y = np.ascontiguousarray(y.transpose(1, 0, 2))
    elif return_cache and dirs == 1:
        y = y.copy()  # a view of the cache's states otherwise
    result = (y, *(np.stack(f) for f in finals))
    if not return_cache:
        return result
    cache = RecurrentCache(kind, option, params, layer_inputs, buffers, dirs, bool(batch_first), y.shape)
    return (*result, cache)


def _layers_backward(kind: str, cache, grad_y, grad_finals, names) -> tuple:
    if not isinstance(cache, RecurrentCache) or cache.kind != kind:
        raise TypeError(f"cache: expected the cache of {kind}(..., return_cache=True), got {_describe(cache)}")
    hidden, dirs, params = cache.hidden_size, cache.dirs, cache.params
    batch = cache.inputs[0].shape[1]
    if grad_y is not None:
        grad_y = _validate.float_array("grad_y", grad_y)
        if grad_y.shape != cache.output_shape:
            raise ValueError(f"grad_y: expected shape {cache.output_shape} (that of y), got {grad_y.shape}")
        grad_y = _time_major(grad_y, cache.batch_first)
    count = f"layers * directions = {len(params)}"
    grad_finals = [_layer_state(name, g, (len(params), batch, hidden), count) for name, g in zip(names, grad_finals)]
    grad_params = [None] * len(params)
    grad_initial = [[None] * len(params) for _ in names]
    for layer in reversed(range(len(params) // dirs)):
        grad_in = None
        mine = slice(layer * dirs, (layer + 1) * dirs)
        directions = _layer_backward_call(kind, cache.inputs[layer], params[mine], cache.buffers[mine], cache.option,
                                          grad_y, [None if g is None else g[mine] for g in grad_finals])
        for d, out in enumerate(directions):
            k = layer * dirs + d
            grad_in = out[0] if grad_in is None else np.add(grad_in, out[0], out=grad_in)
            for g, s in zip(grad_initial, out[1:-4]):
                g[k] = s
            grad_params[k] = tuple(out[-4:])
        grad_y = grad_in
    grad_x = np.ascontiguousarray(grad_y.transpose(1, 0, 2)) if cache.batch_first else grad_y
    return (grad_x, grad_params, *(np.stack(g) for g in grad_initial))


def lstm(x, params, h0=None, c0=None, bidirectional=False, batch_first=False, return_cache=False) -> tuple:
    """(y, h_n, c_n[, cache]) of a multi-layer LSTM (torch.nn.LSTM): y (T,
    N, directions * H) the last layer's outputs ((N, T, ...) with
    batch_first), h_n and c_n (layers * directions, N, H) the final states;
    the cache (RecurrentCache) for lstm_backward when return_cache."""
    return _layers("lstm", x, params, (h0, c0), bidirectional, batch_first, return_cache, None)


def lstm_backward(cache, grad_y, grad_h_n=None, grad_c_n=None) -> tuple:
    """(grad_x, grad_params, grad_h0, grad_c0) of lstm for the gradients of
    its outputs (None: zeros); grad_params a list of (grad_w_ih, grad_w_hh,
    grad_b_ih, grad_b_hh) tuples like params, None for a bias that was None."""
    return _layers_backward("lstm", cache, grad_y, (grad_h_n, grad_c_n), ("grad_h_n", "grad_c_n"))


def gru(x, params, h0=None, bidirectional=False, batch_first=False, return_cache=False,
        linear_before_reset=True) -> tuple:
    """(y, h_n[, cache]) of a multi-layer GRU (torch.nn.GRU, or ONNX's
    default form with linear_before_reset=False; see gru_cell)."""
    lbr = _linear_before_reset(linear_before_reset)
    return _layers("gru", x, params, (h0,), bidirectional, batch_first, return_cache, lbr)


def gru_backward(cache, grad_y, grad_h_n=None) -> tuple:
    """(grad_x, grad_params, grad_h0) of gru."""
    return _layers_backward("gru", cache, grad_y, (grad_h_n,), ("grad_h_n",))


def rnn(x, params, h0=None, bidirectional=False, batch_first=False, return_cache=False,
        nonlinearity: str = "tanh") -> tuple:
    """(y, h_n[, cache]) of a multi-layer Elman RNN (torch.nn.RNN)."""
    relu = _nonlinearity(nonlinearity) == "relu"
    return _layers("rnn", x, params, (h0,), bidirectional, batch_first, return_cache, relu)


def rnn_backward(cache, grad_y, grad_h_n=None) -> tuple:
    """(grad_x, grad_params, grad_h0) of rnn."""
    return _layers_backward("rnn", cache, grad_y, (grad_h_n,), ("grad_h_n",))
