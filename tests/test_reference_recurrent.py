"""The float64 reference of the recurrent cells: against PyTorch's cells
with autograd (float64) where torch imports, and its backwards by central
finite differences (the only check of the GRU with
linear_before_reset=False, which PyTorch lacks)."""

from __future__ import annotations

import numpy as np
import pytest

import minidnn.reference as ref

N, I, H = 3, 5, 4


def _args(rng, gates, bias=True, cell_state=False):
    x = rng.standard_normal((N, I))
    h = rng.standard_normal((N, H))
    c = rng.standard_normal((N, H)) if cell_state else None
    w_ih = rng.standard_normal((gates * H, I)) * 0.6
    w_hh = rng.standard_normal((gates * H, H)) * 0.6
    b_ih = rng.standard_normal(gates * H) if bias else None
    b_hh = rng.standard_normal(gates * H) if bias else None
    return x, h, c, w_ih, w_hh, b_ih, b_hh


# (name, gates, forward(args, **kw) -> outputs tuple, backward(grads, args, **kw), kw variants)
def _lstm_fwd(a, **kw):
    return ref.lstm_cell(*a)


def _lstm_bwd(g, a, **kw):
    return ref.lstm_cell_backward(g[0], g[1], *a)


def _gru_fwd(a, **kw):
    return (ref.gru_cell(*a, **kw),)


def _gru_bwd(g, a, **kw):
    return ref.gru_cell_backward(g[0], *a, **kw)


def _rnn_fwd(a, **kw):
    return (ref.rnn_cell(*a, **kw),)


def _rnn_bwd(g, a, **kw):
    return ref.rnn_cell_backward(g[0], *a, **kw)


CELLS = {
    "lstm": (4, True, _lstm_fwd, _lstm_bwd, {}),
    "gru": (3, False, _gru_fwd, _gru_bwd, {"linear_before_reset": True}),
    "gru_onnx": (3, False, _gru_fwd, _gru_bwd, {"linear_before_reset": False}),
    "rnn_tanh": (1, False, _rnn_fwd, _rnn_bwd, {"nonlinearity": "tanh"}),
    "rnn_relu": (1, False, _rnn_fwd, _rnn_bwd, {"nonlinearity": "relu"}),
}


def _cell_args(rng, name, bias):
    gates, has_c, *_ = CELLS[name]
    x, h, c, w_ih, w_hh, b_ih, b_hh = _args(rng, gates, bias, has_c)
    return [x, h, c, w_ih, w_hh, b_ih, b_hh] if has_c else [x, h, w_ih, w_hh, b_ih, b_hh]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", list(CELLS))
def test_backward_by_finite_differences(rng, name, bias):
    _, _, fwd, bwd, kw = CELLS[name]
    args = _cell_args(rng, name, bias)
    outs = fwd(args, **kw)
    grads_out = [rng.standard_normal(o.shape) for o in outs]

    def loss(a):
        return sum(float(np.sum(g * o)) for g, o in zip(grads_out, fwd(a, **kw)))

    grads = bwd(grads_out, args, **kw)
    assert len(grads) == len(args)
    eps = 1e-6
    for k, (arg, grad) in enumerate(zip(args, grads)):
        if arg is None:
            assert grad is None
            continue
        assert grad.shape == arg.shape
        for _ in range(3):  # directional derivatives along random directions
            d = rng.standard_normal(arg.shape)
            plus, minus = list(args), list(args)
            plus[k], minus[k] = arg + eps * d, arg - eps * d
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
            assert abs(numeric - float(np.sum(grad * d))) <= 1e-6 * (1 + abs(numeric)), (name, k)


def test_output_gradients_may_be_none(rng):
    args = _cell_args(rng, "lstm", True)
    gh = rng.standard_normal((N, H))
    a = ref.lstm_cell_backward(gh, None, *args)
    b = ref.lstm_cell_backward(gh, np.zeros((N, H)), *args)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_bad_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity"):
        ref.rnn_cell(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), nonlinearity="sigmoid")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_matches_torch_autograd(rng, name, bias):
    torch = pytest.importorskip("torch")
    _, _, fwd, bwd, kw = CELLS[name]
    args = _cell_args(rng, name, bias)
    ts = [None if a is None else torch.from_numpy(a.copy()).requires_grad_() for a in args]
    op = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn_tanh": torch.rnn_tanh_cell,
          "rnn_relu": torch.rnn_relu_cell}[name]
    if name == "lstm":
        x, h, c, w_ih, w_hh, b_ih, b_hh = ts
        outs = op(x, (h, c), w_ih, w_hh, b_ih, b_hh)
    else:
        outs = (op(*ts),)
    grads_out = [rng.standard_normal(tuple(o.shape)) for o in outs]
    torch.autograd.backward(list(outs), [torch.from_numpy(g) for g in grads_out])
    for ours, theirs in zip(fwd(args, **kw), outs):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
    for ours, t in zip(bwd(grads_out, args, **kw), ts):
        if t is None:
            assert ours is None
        else:
            np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- layers

from torch_recurrent import KINDS, run_torch  # noqa: E402

LAYER_CALLS = {
    "lstm": (ref.lstm, ref.lstm_backward, {}),
    "gru": (ref.gru, ref.gru_backward, {"linear_before_reset": True}),
    "gru_onnx": (ref.gru, ref.gru_backward, {"linear_before_reset": False}),
    "rnn_tanh": (ref.rnn, ref.rnn_backward, {"nonlinearity": "tanh"}),
    "rnn_relu": (ref.rnn, ref.rnn_backward, {"nonlinearity": "relu"}),
}


def _layer_case(rng, name, steps, batch, inputs, hidden, layers, dirs, bias=True):
    gates = CELLS[name][0]
    params = []
    for layer in range(layers):
        width = inputs if layer == 0 else dirs * hidden
        for _ in range(dirs):
            params.append((rng.standard_normal((gates * hidden, width)) * 0.5,
                           rng.standard_normal((gates * hidden, hidden)) * 0.5,
                           rng.standard_normal(gates * hidden) * 0.5 if bias else None,
                           rng.standard_normal(gates * hidden) * 0.5 if bias else None))
    states = 2 if name == "lstm" else 1
    initial = [rng.standard_normal((layers * dirs, batch, hidden)) for _ in range(states)]
    return rng.standard_normal((steps, batch, inputs)), params, initial


def _layer_forward(name, x, params, initial, bidirectional, batch_first=False):
    fwd, _, kw = LAYER_CALLS[name]
    return fwd(x, params, *initial, bidirectional=bidirectional, batch_first=batch_first, return_cache=True, **kw)


@pytest.mark.parametrize("batch_first", [False, True], ids=["tnc", "batch_first"])
@pytest.mark.parametrize("shape", [(1, 1, 0), (2, 2, 1), (3, 1, 2)], ids=["1layer", "2layers_bi", "1layer_bi"])
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_layers_match_torch_autograd(rng, name, shape, batch_first):
    """Layers, directions and batch_first as torch.nn.LSTM / GRU / RNN (float64)."""
    torch = pytest.importorskip("torch")
    layers, dirs, _ = shape
    steps, batch = 4, 3
    x, params, initial = _layer_case(rng, name, steps, batch, 5, 4, layers, dirs, bias=shape[2] != 0)
    if batch_first:
        x = x.transpose(1, 0, 2).copy()
    *outs, cache = _layer_forward(name, x, params, initial, dirs == 2, batch_first)
    grad_y = rng.standard_normal(outs[0].shape)
    grad_finals = [rng.standard_normal(o.shape) for o in outs[1:]]
    grads = LAYER_CALLS[name][1](cache, grad_y, *grad_finals)
    y, finals, gx, gparams, ginitial = run_torch(torch, name, x, params, initial, dirs == 2, batch_first, grad_y,
                                                 grad_finals)
    for ours, theirs in zip([*outs, grads[0], *grads[2:]], [y, *finals, gx, *ginitial]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    assert len(grads[1]) == len(gparams)
    for ours, theirs in zip(grads[1], gparams):
        for a, b in zip(ours, theirs):
            if b is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(LAYER_CALLS))
def test_layer_backward_by_finite_differences(rng, name):
    """Two layers, bidirectional, 3 steps: every gradient along random directions."""
    _, bwd, _ = LAYER_CALLS[name]
    x, params, initial = _layer_case(rng, name, 3, 2, 3, 2, 2, 2)
    *outs, cache = _layer_forward(name, x, params, initial, True)
    grads_out = [rng.standard_normal(o.shape) for o in outs]

    def loss(x, params, initial):
        return sum(float(np.sum(g * o)) for g, o in zip(grads_out, _layer_forward(name, x, params, initial, True)[:-1]))

    grad_x, grad_params, *grad_initial = bwd(cache, *grads_out)
    eps = 1e-6

    def check(grad, perturbed):
        d = rng.standard_normal(grad.shape)
        numeric = (loss(*perturbed(eps * d)) - loss(*perturbed(-eps * d))) / (2 * eps)
        assert abs(numeric - float(np.sum(grad * d))) <= 1e-6 * (1 + abs(numeric))

    check(grad_x, lambda e: (x + e, params, initial))
    for k, tensors in enumerate(grad_params):
        for j, g in enumerate(tensors):
            def perturbed(e, k=k, j=j):
                changed = list(params)
                changed[k] = tuple(p + e if i == j else p for i, p in enumerate(params[k]))
                return x, changed, initial
            check(g, perturbed)
    for s, g in enumerate(grad_initial):
        check(g, lambda e, s=s: (x, params, [a + e if i == s else a for i, a in enumerate(initial)]))


def test_layer_zero_steps_is_an_error_as_in_pytorch():
    params = [(np.zeros((4, 3)), np.zeros((4, 1)), None, None)]
    with pytest.raises(ValueError, match="x: expected a sequence of length T >= 1"):
        ref.lstm(np.zeros((0, 2, 3)), [(np.zeros((16, 3)), np.zeros((16, 4)), None, None)])
    with pytest.raises(ValueError, match="params"):
        ref.rnn(np.zeros((1, 2, 3)), params, bidirectional=True)
