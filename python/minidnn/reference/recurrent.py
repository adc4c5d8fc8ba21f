"""Float64 reference of the recurrent cells (PyTorch's formulas, weight
shapes and gate order) and their backwards.

Shapes: x (N, I), h and c (N, H); w_ih (G*H, I), w_hh (G*H, H), biases
(G*H,) or None, with G = 4 (LSTM: gates i, f, g, o), 3 (GRU: r, z, n) or
1 (Elman RNN).

Each backward takes the gradients of the cell's outputs first, then the
cell's own arguments, and returns the gradients of the cell's array
arguments in their order (as PyTorch autograd gives them): for the LSTM
(grad_x, grad_h, grad_c, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh), for
the GRU and RNN (grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b_ih,
grad_b_hh); a bias that was None has None for its gradient. A gradient of
an output given as None counts as zeros.
"""

from __future__ import annotations

import numpy as np

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


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _affine(x, w, b):
    y = x @ w.T
    return y if b is None else y + b


def _grad_or_zeros(g, shape):
    return np.zeros(shape) if g is None else _f64(g)


def _weight_grads(dgi, dgh, x, hh, b_ih, b_hh):
    """grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh from the gradients of the
    two affine maps' outputs (dgi of x W_ih^T + b_ih, dgh of hh W_hh^T +
    b_hh, hh the input of the second map)."""
    return (
        dgi.T @ x,
        dgh.T @ hh,
        None if b_ih is None else dgi.sum(axis=0),
        None if b_hh is None else dgh.sum(axis=0),
    )


# ------------------------------------------------------------------ LSTM


def _lstm_forward(x, h, c, w_ih, w_hh, b_ih, b_hh):
    a = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)
    i, f, g, o = np.split(a, 4, axis=1)
    i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
    c1 = f * c + i * g
    tc = np.tanh(c1)
    return (i, f, g, o, tc), o * tc, c1


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """(h1, c1): gates = x W_ih^T + b_ih + h W_hh^T + b_hh split as i, f, g,
    o; c1 = sigmoid(f) c + sigmoid(i) tanh(g); h1 = sigmoid(o) tanh(c1)."""
    args = [_f64(a) for a in (x, h, c, w_ih, w_hh, b_ih, b_hh)]
    _, h1, c1 = _lstm_forward(*args)
    return h1, c1


def lstm_cell_backward(grad_h1, grad_c1, x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """(grad_x, grad_h, grad_c, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)."""
    x, h, c, w_ih, w_hh, b_ih, b_hh = (_f64(a) for a in (x, h, c, w_ih, w_hh, b_ih, b_hh))
    (i, f, g, o, tc), _, _ = _lstm_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
    gh1 = _grad_or_zeros(grad_h1, h.shape)
    dc = _grad_or_zeros(grad_c1, c.shape) + gh1 * o * (1.0 - tc * tc)
    da = np.concatenate(
        [dc * g * i * (1.0 - i), dc * c * f * (1.0 - f), dc * i * (1.0 - g * g), gh1 * tc * o * (1.0 - o)], axis=1
    )
    return (da @ w_ih, da @ w_hh, dc * f, *_weight_grads(da, da, x, h, b_ih, b_hh))


# ------------------------------------------------------------------- GRU


def _gru_forward(x, h, w_ih, w_hh, b_ih, b_hh, linear_before_reset):
    hs = h.shape[1]
    gi = _affine(x, w_ih, b_ih)
    i_r, i_z, i_n = np.split(gi, 3, axis=1)
    if linear_before_reset:
        h_r, h_z, h_n = np.split(_affine(h, w_hh, b_hh), 3, axis=1)
        r = _sigmoid(i_r + h_r)
        n = np.tanh(i_n + r * h_n)
    else:
        h_rz = _affine(h, w_hh[: 2 * hs], None if b_hh is None else b_hh[: 2 * hs])
        h_r, h_z = np.split(h_rz, 2, axis=1)
        r = _sigmoid(i_r + h_r)
        h_n = _affine(r * h, w_hh[2 * hs :], None if b_hh is None else b_hh[2 * hs :])
        n = np.tanh(i_n + h_n)
    z = _sigmoid(i_z + h_z)
    return (r, z, n, h_n), (1.0 - z) * n + z * h


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, linear_before_reset=True):
    """h1 = (1 - z) n + z h with r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),
    z likewise, and n = tanh(W_in x + b_in + r (W_hn h + b_hn)) (PyTorch's
    form, linear_before_reset=True) or n = tanh(W_in x + b_in + W_hn (r h)
    + b_hn) (linear_before_reset=False, ONNX's default)."""
    args = [_f64(a) for a in (x, h, w_ih, w_hh, b_ih, b_hh)]
    return _gru_forward(*args, linear_before_reset)[1]


def gru_cell_backward(grad_h1, x, h, w_ih, w_hh, b_ih=None, b_hh=None, linear_before_reset=True):
    """(grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)."""
    x, h, w_ih, w_hh, b_ih, b_hh = (_f64(a) for a in (x, h, w_ih, w_hh, b_ih, b_hh))
    hs = h.shape[1]
    (r, z, n, h_n), _ = _gru_forward(x, h, w_ih, w_hh, b_ih, b_hh, linear_before_reset)
    g = _grad_or_zeros(grad_h1, h.shape)
    da_n = g * (1.0 - z) * (1.0 - n * n)
    da_z = g * (h - n) * z * (1.0 - z)
    if linear_before_reset:
        da_r = da_n * h_n * r * (1.0 - r)
        dgi = np.concatenate([da_r, da_z, da_n], axis=1)
        dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)
        grad_h = g * z + dgh @ w_hh
        gw_ih, gw_hh, gb_ih, gb_hh = _weight_grads(dgi, dgh, x, h, b_ih, b_hh)
    else:
        d_rh = da_n @ w_hh[2 * hs :]
        da_r = d_rh * h * r * (1.0 - r)
        dgi = np.concatenate([da_r, da_z, da_n], axis=1)
        dgh = dgi
        grad_h = g * z + d_rh * r + dgi[:, : 2 * hs] @ w_hh[: 2 * hs]
        gw_ih = dgi.T @ x
        gw_hh = np.concatenate([dgi[:, : 2 * hs].T @ h, da_n.T @ (r * h)], axis=0)
        gb_ih = None if b_ih is None else dgi.sum(axis=0)
        gb_hh = None if b_hh is None else dgh.sum(axis=0)
    return dgi @ w_ih, grad_h, gw_ih, gw_hh, gb_ih, gb_hh


# ------------------------------------------------------------------- RNN


def _check_nonlinearity(nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """h1 = f(x W_ih^T + b_ih + h W_hh^T + b_hh), f = tanh or relu."""
    _check_nonlinearity(nonlinearity)
    x, h, w_ih, w_hh, b_ih, b_hh = (_f64(a) for a in (x, h, w_ih, w_hh, b_ih, b_hh))
    a = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)
    return np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)


def rnn_cell_backward(grad_h1, x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """(grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh); relu's
    derivative at 0 is 0 (as PyTorch's)."""
    _check_nonlinearity(nonlinearity)
    x, h, w_ih, w_hh, b_ih, b_hh = (_f64(a) for a in (x, h, w_ih, w_hh, b_ih, b_hh))
    a = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)
    g = _grad_or_zeros(grad_h1, h.shape)
    if nonlinearity == "tanh":
        t = np.tanh(a)
        da = g * (1.0 - t * t)
    else:
        da = np.where(a > 0.0, g, 0.0)
    return (da @ w_ih, da @ w_hh, *_weight_grads(da, da, x, h, b_ih, b_hh))


# ---------------------------------------------------------------- layers
#
# The layers run the cells above step by step. x is (T, N, I) ((N, T, I)
# with batch_first); params holds one (w_ih, w_hh, b_ih, b_hh) tuple per
# layer and direction in PyTorch's order (layer 0 forward, layer 0 reverse,
# layer 1 ...), so the number of layers is len(params) / directions; the
# initial states are (layers * directions, N, H), zeros when None. A layer
# above the first reads the outputs of both directions of the one below,
# concatenated (forward first). T = 0 is an error, as in PyTorch.
#
# The cache of return_cache=True is a dict of what the backward replays:
# the kind, the cell keyword arguments, the parameters, each layer's input,
# and for each layer and direction the state before every time step.

_CELL_FORWARD = {"lstm": lstm_cell, "gru": gru_cell, "rnn": rnn_cell}
_CELL_BACKWARD = {"lstm": lstm_cell_backward, "gru": gru_cell_backward, "rnn": rnn_cell_backward}
_STATE_COUNT = {"lstm": 2, "gru": 1, "rnn": 1}


def _layers_forward(kind, x, params, initial, bidirectional, batch_first, return_cache, cell_kw):
    dirs = 2 if bidirectional else 1
    x = _f64(x)
    if batch_first:
        x = x.transpose(1, 0, 2)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"x: expected a sequence of length T >= 1, got shape {x.shape}")
    if len(params) == 0 or len(params) % dirs:
        raise ValueError(f"params: expected a positive multiple of {dirs} tuples, got {len(params)}")
    params = [tuple(_f64(p) for p in w) for w in params]
    steps, batch, hidden = x.shape[0], x.shape[1], params[0][1].shape[1]
    count = _STATE_COUNT[kind]
    initial = [np.zeros((len(params), batch, hidden)) if s is None else _f64(s) for s in initial]
    layer_in, inputs, before, finals = x, [], [], [[] for _ in range(count)]
    for layer in range(len(params) // dirs):
        inputs.append(layer_in)
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            state = tuple(s[k] for s in initial)
            seen, ys = [None] * steps, [None] * steps
            for t in reversed(range(steps)) if d else range(steps):
                seen[t] = state
                out = _CELL_FORWARD[kind](layer_in[t], *state, *params[k], **cell_kw)
                state = out if count == 2 else (out,)
                ys[t] = state[0]
            before.append(seen)
            outs.append(np.stack(ys))
            for s, final in zip(state, finals):
                final.append(s)
        layer_in = np.concatenate(outs, axis=2)
    y = layer_in.transpose(1, 0, 2) if batch_first else layer_in
    result = (y, *(np.stack(f) for f in finals))
    if not return_cache:
        return result
    cache = {"kind": kind, "cell_kw": cell_kw, "params": params, "dirs": dirs, "batch_first": batch_first,
             "inputs": inputs, "before": before}
    return (*result, cache)


def _layers_backward(cache, grad_y, grad_finals):
    kind, dirs, params = cache["kind"], cache["dirs"], cache["params"]
    count = _STATE_COUNT[kind]
    hidden = params[0][1].shape[1]
    gy = _f64(grad_y)
    if cache["batch_first"]:
        gy = gy.transpose(1, 0, 2)
    grad_params = [None] * len(params)
    grad_initial = [[None] * len(params) for _ in range(count)]
    for layer in reversed(range(len(params) // dirs)):
        layer_in = cache["inputs"][layer]
        steps = layer_in.shape[0]
        grad_in = np.zeros_like(layer_in)
        for d in range(dirs):
            k = layer * dirs + d
            w = params[k]
            state_grads = [np.zeros(layer_in.shape[1:2] + (hidden,)) if g is None else _f64(g[k]) for g in grad_finals]
            weight_grads = [None if p is None else np.zeros_like(p) for p in w]
            for t in range(steps) if d else reversed(range(steps)):
                state_grads[0] = state_grads[0] + gy[t][:, d * hidden : (d + 1) * hidden]
                out = _CELL_BACKWARD[kind](*state_grads, layer_in[t], *cache["before"][k][t], *w, **cache["cell_kw"])
                grad_in[t] += out[0]
                state_grads = list(out[1 : 1 + count])
                weight_grads = [None if a is None else a + b for a, b in zip(weight_grads, out[1 + count :])]
            grad_params[k] = tuple(weight_grads)
            for g, s in zip(grad_initial, state_grads):
                g[k] = s
        gy = grad_in
    grad_x = gy.transpose(1, 0, 2) if cache["batch_first"] else gy
    return (grad_x, grad_params, *(np.stack(g) for g in grad_initial))


def lstm(x, params, h0=None, c0=None, bidirectional=False, batch_first=False, return_cache=False):
    """(y, h_n, c_n[, cache]) of a multi-layer LSTM (torch.nn.LSTM): y (T,
    N, directions * H) the last layer's outputs, h_n and c_n (layers *
    directions, N, H) the final states."""
    return _layers_forward("lstm", x, params, [h0, c0], bidirectional, batch_first, return_cache, {})


def lstm_backward(cache, grad_y, grad_h_n=None, grad_c_n=None):
    """(grad_x, grad_params, grad_h0, grad_c0): grad_params a list of
    (grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) tuples, None for a bias
    that was None. grad_h_n or grad_c_n None counts as zeros."""
    return _layers_backward(cache, grad_y, [grad_h_n, grad_c_n])


def gru(x, params, h0=None, bidirectional=False, batch_first=False, return_cache=False, linear_before_reset=True):
    """(y, h_n[, cache]) of a multi-layer GRU (torch.nn.GRU with
    linear_before_reset=True)."""
    kw = {"linear_before_reset": linear_before_reset}
    return _layers_forward("gru", x, params, [h0], bidirectional, batch_first, return_cache, kw)


def gru_backward(cache, grad_y, grad_h_n=None):
    """(grad_x, grad_params, grad_h0)."""
    return _layers_backward(cache, grad_y, [grad_h_n])


def rnn(x, params, h0=None, bidirectional=False, batch_first=False, return_cache=False, nonlinearity="tanh"):
    """(y, h_n[, cache]) of a multi-layer Elman RNN (torch.nn.RNN)."""
    _check_nonlinearity(nonlinearity)
    kw = {"nonlinearity": nonlinearity}
    return _layers_forward("rnn", x, params, [h0], bidirectional, batch_first, return_cache, kw)


def rnn_backward(cache, grad_y, grad_h_n=None):
    """(grad_x, grad_params, grad_h0)."""
    return _layers_backward(cache, grad_y, [grad_h_n])
