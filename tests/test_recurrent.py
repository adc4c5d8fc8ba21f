"""The recurrent cells (lstm_cell, gru_cell in both forms, rnn_cell with
tanh and relu) and their backwards against the float64 reference: every CPU
path, 1 and 2 threads, batches of 1, 3 and 17, hidden and input sizes with
SIMD tails, with and without biases; bit-identical results for 1 and 2
threads; against PyTorch's cells with copied weights; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minidnn
import minidnn.reference as ref
from conftest import on_every_cpu_path

# (N, I, H): batch 1 (the latency case), odd sizes that leave tails on every
# vector width (4, 8, 16), widths that are multiples of 16, no input
# features, an empty batch; from 16 rows on the weights are read in place
# (cells.cpp): the first such batch, one with more inputs than a K block
# of any ISA's GEMM and units over several panels and tiles, and one whose
# gate rows (the K of the backward's grad_x = d W_ih and grad_h = d W_hh,
# read in place) span more than one K block of every ISA (130 units: 4 or
# 3 gates of them, 520 and 390 rows, past avx512's 384) with a partial last
# panel of units and of input columns; and W_ih's rows 4 KB apart, whose
# tiles run in two halves (gemm_impl.h's in_place_row_passes).
SHAPES = [
    (1, 7, 5), (3, 16, 17), (17, 33, 32), (3, 0, 4), (0, 5, 6), (16, 3, 33), (37, 389, 70), (19, 21, 130),
    (16, 1024, 11),
]

# name -> (gates, has a cell state, keyword arguments)
CELLS = {
    "lstm": (4, True, {}),
    "gru": (3, False, {"linear_before_reset": True}),
    "gru_onnx": (3, False, {"linear_before_reset": False}),
    "rnn_tanh": (1, False, {"nonlinearity": "tanh"}),
    "rnn_relu": (1, False, {"nonlinearity": "relu"}),
}


def _args(rng, name, n, i, h, bias=True, scale=1.0, bias_scale=1.0):
    gates, has_c, _ = CELLS[name]
    f = lambda *shape: (rng.standard_normal(shape) * scale).astype(np.float32)  # noqa: E731
    x, hx = f(n, i), f(n, h)
    w_ih = f(gates * h, i) / np.float32(np.sqrt(max(i, 1)))
    w_hh = f(gates * h, h) / np.float32(np.sqrt(h))
    b_ih, b_hh = (f(gates * h) * np.float32(bias_scale), f(gates * h) * np.float32(bias_scale)) if bias else (None, None)
    if has_c:
        return [x, hx, f(n, h), w_ih, w_hh, b_ih, b_hh]
    return [x, hx, w_ih, w_hh, b_ih, b_hh]


def _forward(lib, name, args):
    kw = CELLS[name][2]
    if name == "lstm":
        return lib.lstm_cell(*args)
    return (getattr(lib, name[:3] + "_cell")(*args, **kw),)


def _backward(lib, name, grads, args):
    kw = CELLS[name][2]
    if name == "lstm":
        return lib.lstm_cell_backward(grads[0], grads[1], *args)
    return getattr(lib, name[:3] + "_cell_backward")(grads[0], *args, **kw)


def _output_grads(rng, name, n, h):
    count = 2 if name == "lstm" else 1
    return [rng.standard_normal((n, h), dtype=np.float32) for _ in range(count)]


def _check(out, expected, what, tol=2e-6, length=None):
    """Each array within tol x (its largest reference magnitude + 1) x
    sqrt(the longest sum behind it: `length`, else the array's largest
    extent): float32 sums of products of O(1) terms, through
    well-conditioned sigmoid and tanh."""
    assert len(out) == len(expected), what
    for k, (o, e) in enumerate(zip(out, expected)):
        if e is None:
            assert o is None, (what, k)
            continue
        assert o.dtype == np.float32 and o.shape == e.shape, (what, k, o.dtype, o.shape, e.shape)
        if e.size:
            terms = length if length is not None else max(e.shape + o.shape)
            scale = (np.abs(e).max() + 1.0) * np.sqrt(terms + 16)
            err = np.abs(o.astype(np.float64) - e).max()
            assert err <= tol * scale, f"{what}[{k}]: error {err:.3g} > {tol * scale:.3g}"


def _on_one_and_two_threads(run) -> list:
    """[run() on 1 thread, run() on 2 threads]."""
    previous = minidnn.get_num_threads()
    results = []
    try:
        for t in (1, 2):
            minidnn.set_num_threads(t)
            results.append(run())
    finally:
        minidnn.set_num_threads(previous)
    return results


def _assert_identical(first, second) -> None:
    """The same arrays bit for bit, None where None."""
    assert len(first) == len(second)
    for a, b in zip(first, second):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(CELLS))
def test_against_reference(isa, threads, rng, name, shape, bias):
    n, i, h = shape
    args = _args(rng, name, n, i, h, bias)
    _check(_forward(minidnn, name, args), _forward(ref, name, args), "forward")
    grads = _output_grads(rng, name, n, h)
    _check(_backward(minidnn, name, grads, args), _backward(ref, name, grads, args), "backward")


# Few examples: each runs every cell variant's forward and backward on every
# CPU path with 1 and 2 threads.
@settings(max_examples=25)
@given(
    name=st.sampled_from(list(CELLS)),
    n=st.integers(0, 20),
    i=st.integers(0, 40),
    h=st.integers(1, 40),
    bias=st.booleans(),
    scale=st.sampled_from([0.05, 1.0, 6.0]),
    bias_scale=st.sampled_from([1.0, 12.0]),  # 12: saturated gates
    seed=st.integers(0, 2**32 - 1),
)
def test_random_sizes_on_every_path(name, n, i, h, bias, scale, bias_scale, seed):
    """Saturated gates from large inputs and weights (scale 6) and from
    large biases (bias_scale 12)."""
    rng = np.random.default_rng(seed)
    args = _args(rng, name, n, i, h, bias, scale, bias_scale)
    grads = _output_grads(rng, name, n, h)
    expected = (*_forward(ref, name, args), *_backward(ref, name, grads, args))
    outputs = on_every_cpu_path(lambda: (*_forward(minidnn, name, args), *_backward(minidnn, name, grads, args)))
    # A pre-activation is rounded in float32 to about eps x the sum of its
    # terms' magnitudes, and the gates' gradients move by about their own
    # size per unit of pre-activation: the bound grows with that sum.
    x, hx, w_ih, w_hh, b_ih, b_hh = (args[0], args[1], *args[-4:])
    terms = np.abs(x.astype(np.float64)) @ np.abs(w_ih.T) + np.abs(hx.astype(np.float64)) @ np.abs(w_hh.T)
    if b_ih is not None:
        terms = terms + np.abs(b_ih) + np.abs(b_hh)
    condition = max(1.0, terms.max(initial=0.0) / 4)
    for path, out in outputs.items():
        _check(out, expected, f"{name} {path}", tol=4e-6 * condition)


# Large enough that the products and the gate kernel split; the second
# shape's backward splits units and column panels unevenly, past a K block.
@pytest.mark.parametrize("shape", [(64, 40, 96), (37, 389, 130)], ids=str)
@pytest.mark.parametrize("name", list(CELLS))
def test_one_and_two_threads_agree_bitwise(rng, name, shape):
    n, i, h = shape
    args = _args(rng, name, n, i, h)
    grads = _output_grads(rng, name, n, h)
    _assert_identical(*_on_one_and_two_threads(
        lambda: [*_forward(minidnn, name, args), *_backward(minidnn, name, grads, args)]))


def test_lstm_output_gradients_may_be_none(rng):
    args = _args(rng, "lstm", 3, 5, 6)
    gh = rng.standard_normal((3, 6), dtype=np.float32)
    zero = np.zeros((3, 6), dtype=np.float32)
    _assert_identical(minidnn.lstm_cell_backward(gh, None, *args), minidnn.lstm_cell_backward(gh, zero, *args))
    _assert_identical(minidnn.lstm_cell_backward(None, gh, *args), minidnn.lstm_cell_backward(zero, gh, *args))


@pytest.mark.parametrize("name", list(CELLS))
def test_validating_path_gives_the_same_bits(rng, name):
    """Fortran-ordered and strided arrays go through the Python validation
    and give exactly what the direct path gives."""
    args = _args(rng, name, 5, 9, 7)
    grads = _output_grads(rng, name, 5, 7)
    direct = [*_forward(minidnn, name, args), *_backward(minidnn, name, grads, args)]
    other = [None if a is None else np.asfortranarray(a) if a.ndim == 2 else a[::-1].copy()[::-1] for a in args]
    other_grads = [np.asfortranarray(g) for g in grads]
    slow = [*_forward(minidnn, name, other), *_backward(minidnn, name, other_grads, other)]
    _assert_identical(direct, slow)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_matches_torch_modules(rng, name, bias):
    """torch.nn.LSTMCell / GRUCell / RNNCell weights used as they are."""
    torch = pytest.importorskip("torch")
    n, i, h = 4, 13, 21
    torch.manual_seed(0)
    cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn_tanh": torch.nn.RNNCell,
           "rnn_relu": torch.nn.RNNCell}[name]
    kw = {"nonlinearity": name[4:]} if name.startswith("rnn") else {}
    cell = cls(i, h, bias=bias, **kw)
    weights = [cell.weight_ih, cell.weight_hh] + ([cell.bias_ih, cell.bias_hh] if bias else [])
    x = torch.from_numpy(rng.standard_normal((n, i), dtype=np.float32)).requires_grad_()
    states = [torch.from_numpy(rng.standard_normal((n, h), dtype=np.float32)).requires_grad_()
              for _ in range(2 if name == "lstm" else 1)]
    outs = cell(x, tuple(states)) if name == "lstm" else (cell(x, states[0]),)
    grads = _output_grads(rng, name, n, h)
    torch.autograd.backward(list(outs), [torch.from_numpy(g) for g in grads])

    np_w = [w.detach().numpy() for w in weights] + ([] if bias else [None, None])
    args = [x.detach().numpy(), *(s.detach().numpy() for s in states), *np_w]
    for ours, theirs in zip(_forward(minidnn, name, args), outs):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-5, atol=1e-6)
    expected = [x.grad, *(s.grad for s in states), *(w.grad for w in weights)]
    expected += [] if bias else [None, None]
    for ours, theirs in zip(_backward(minidnn, name, grads, args), expected):
        if theirs is None:
            assert ours is None
        else:
            np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ errors


def _ok(rng):
    return _args(rng, "lstm", 2, 3, 4)


@pytest.mark.parametrize(
    "position,value,match",
    [
        (3, np.zeros((15, 3), np.float32), r"w_ih: expected shape \(16, input_size\)"),
        (3, np.zeros(16, np.float32), r"w_ih: expected shape"),
        (4, np.zeros((16, 5), np.float32), r"w_hh: expected shape \(4\*H, H\)"),
        (4, np.zeros((12, 4), np.float32), r"w_hh: expected shape \(4\*H, H\)"),
        (0, np.zeros((2, 5), np.float32), r"x: expected shape \(N, 3\)"),
        (0, np.zeros(3, np.float32), r"x: expected shape \(N, 3\)"),
        (1, np.zeros((2, 5), np.float32), r"h: expected shape \(2, 4\)"),
        (1, np.zeros((3, 4), np.float32), r"h: expected shape \(2, 4\)"),
        (2, np.zeros((2, 3), np.float32), r"c: expected shape \(2, 4\)"),
        (5, np.zeros(15, np.float32), r"b_ih: expected shape \(16,\)"),
        (6, np.zeros((1, 16), np.float32), r"b_hh: expected shape \(16,\)"),
    ],
)
def test_lstm_shape_errors(rng, position, value, match):
    args = _ok(rng)
    args[position] = value
    with pytest.raises(ValueError, match=match):
        minidnn.lstm_cell(*args)
    with pytest.raises(ValueError, match=match):
        minidnn.lstm_cell_backward(None, None, *args)


def test_other_errors(rng):
    args = _ok(rng)
    with pytest.raises(ValueError, match=r"grad_h1: expected shape \(2, 4\)"):
        minidnn.lstm_cell_backward(np.zeros((2, 5), np.float32), None, *args)
    with pytest.raises(ValueError, match=r"grad_c1: expected shape \(2, 4\)"):
        minidnn.lstm_cell_backward(None, np.zeros((4, 2), np.float32), *args)
    bad = list(args)
    bad[0] = bad[0].astype(np.float64)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        minidnn.lstm_cell(*bad)
    with pytest.raises(TypeError, match="w_hh: expected a numpy.ndarray"):
        minidnn.lstm_cell(args[0], args[1], args[2], args[3], [[1.0]])

    g = _args(rng, "gru", 2, 3, 4)
    with pytest.raises(ValueError, match=r"w_hh: expected shape \(3\*H, H\) \(gru gates r, z, n\)"):
        minidnn.gru_cell(g[0], g[1], g[2], g[3][:8], *g[4:])
    with pytest.raises(ValueError, match=r"w_ih: expected shape \(12, input_size\)"):
        minidnn.gru_cell(g[0], g[1], args[3], g[3])
    with pytest.raises(TypeError, match="linear_before_reset: expected a bool"):
        minidnn.gru_cell(*g, linear_before_reset="yes")
    with pytest.raises(ValueError, match=r"grad_h1: expected shape \(2, 4\)"):
        minidnn.gru_cell_backward(np.zeros((2, 3), np.float32), *g)
    assert np.array_equal(minidnn.gru_cell(*g, linear_before_reset=np.bool_(False)),
                          minidnn.gru_cell(*g, linear_before_reset=False))

    r = _args(rng, "rnn_tanh", 2, 3, 4)
    with pytest.raises(ValueError, match="nonlinearity: expected 'tanh' or 'relu', got 'sigmoid'"):
        minidnn.rnn_cell(*r, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity"):
        minidnn.rnn_cell_backward(np.zeros((2, 4), np.float32), *r, nonlinearity=None)
    with pytest.raises(ValueError, match=r"w_hh: expected shape \(H, H\)"):
        minidnn.rnn_cell(r[0], r[1], r[2], np.zeros((4, 5), np.float32))
