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
