"""The recurrent layers (lstm, gru in both forms, rnn with tanh and relu)
and their backwards through time against the float64 reference: every CPU
path, 1 and 2 threads, several layers, both directions, batch_first, odd
sizes with SIMD tails, an empty batch; a 200-step sequence; bit-identical
results for 1 and 2 threads; against torch.nn.LSTM / GRU / RNN with copied
weights; a property test over random configurations; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minidnn
import minidnn.reference as ref
from conftest import assert_same_at_thread_counts, on_every_cpu_path
from test_recurrent import _assert_identical, _check, _on_one_and_two_threads
from torch_recurrent import run_torch

# name -> (gates, number of states, layer, backward, keyword arguments)
LAYERS = {
    "lstm": (4, 2, "lstm", {}),
    "gru": (3, 1, "gru", {"linear_before_reset": True}),
    "gru_onnx": (3, 1, "gru", {"linear_before_reset": False}),
    "rnn_tanh": (1, 1, "rnn", {"nonlinearity": "tanh"}),
    "rnn_relu": (1, 1, "rnn", {"nonlinearity": "relu"}),
}


class Config:
    def __init__(self, steps, batch, inputs, hidden, layers=1, bidirectional=False, batch_first=False, bias=True,
                 initial=True):
        self.steps, self.batch, self.inputs, self.hidden = steps, batch, inputs, hidden
        self.layers, self.bidirectional, self.batch_first = layers, bidirectional, batch_first
        self.bias, self.initial = bias, initial
        self.dirs = 2 if bidirectional else 1

    def __repr__(self):
        flags = [f for f, on in (("bi", self.bidirectional), ("bf", self.batch_first), ("nobias", not self.bias),
                                 ("noinit", not self.initial)) if on]
        return f"T{self.steps}N{self.batch}I{self.inputs}H{self.hidden}L{self.layers}" + "".join("-" + f for f in flags)


def make_case(rng, name, cfg, scale=1.0):
    """x, params and the initial states, float32; weights 1/sqrt(fan-in)."""
    gates, states, _, _ = LAYERS[name]
    f = lambda *shape: (rng.standard_normal(shape) * scale).astype(np.float32)  # noqa: E731
    params = []
    for layer in range(cfg.layers):
        width = cfg.inputs if layer == 0 else cfg.dirs * cfg.hidden
        for _ in range(cfg.dirs):
            params.append((f(gates * cfg.hidden, width) / np.float32(np.sqrt(max(width, 1))),
                           f(gates * cfg.hidden, cfg.hidden) / np.float32(np.sqrt(cfg.hidden)),
                           f(gates * cfg.hidden) if cfg.bias else None,
                           f(gates * cfg.hidden) if cfg.bias else None))
    shape = (cfg.batch, cfg.steps, cfg.inputs) if cfg.batch_first else (cfg.steps, cfg.batch, cfg.inputs)
    initial = [f(cfg.layers * cfg.dirs, cfg.batch, cfg.hidden) if cfg.initial else None for _ in range(states)]
    return f(*shape), params, initial


def forward(lib, name, cfg, x, params, initial, return_cache=True):
    _, _, layer, kw = LAYERS[name]
    return getattr(lib, layer)(x, params, *initial, bidirectional=cfg.bidirectional, batch_first=cfg.batch_first,
                               return_cache=return_cache, **kw)


def backward(lib, name, cache, grads):
    return getattr(lib, LAYERS[name][2] + "_backward")(cache, *grads)


def output_grads(rng, outs):
    return [rng.standard_normal(o.shape).astype(np.float32) for o in outs]


def flatten(result):
    """Outputs or gradients as one list of arrays (None kept), params lists unrolled."""
    out = []
    for item in result:
        if isinstance(item, list):
            for entry in item:
                out.extend(entry)
        else:
            out.append(item)
    return out


def check(out, expected, what, cfg, tol=2e-6, carried=None):
    """test_recurrent's bound, tol x (largest magnitude + 1) x sqrt(the
    longest sum: I, directions * H, or T * N for the weight gradients),
    times sqrt(carried steps, T unless told): a step's rounding error
    carried through the later steps adds up like a random walk at worst."""
    length = max(cfg.inputs, cfg.dirs * cfg.hidden, cfg.steps * cfg.batch)
    steps = cfg.steps if carried is None else carried
    _check(flatten(out), flatten(expected), what, tol * np.sqrt(steps), length)


def compare_with_reference(rng, name, cfg, run_ours):
    x, params, initial = make_case(rng, name, cfg)
    *ref_outs, cache = forward(ref, name, cfg, x, params, initial)
    grads = output_grads(rng, ref_outs)
    expected = (*ref_outs, *backward(ref, name, cache, grads))
    return run_ours(x, params, initial, grads), expected


CONFIGS = [
    Config(1, 1, 7, 5),
    Config(5, 3, 16, 17, layers=2, bidirectional=True),
    Config(6, 17, 33, 32, layers=3, batch_first=True, bias=False),
    Config(4, 2, 9, 8, bidirectional=True, batch_first=True, initial=False),
    Config(3, 0, 5, 6, layers=2, bidirectional=True),  # an empty batch
    Config(3, 2, 0, 4, bidirectional=True),  # no input features
    # 16 rows: on avx512 the hidden map is computed transposed, on W_hh
    # packed by each thread (layers.cpp): units over several panels and
    # tiles; and fewer units than a tile's rows, all on one thread.
    Config(3, 16, 11, 70, layers=2, bidirectional=True),
    Config(3, 16, 4, 5),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=repr)
@pytest.mark.parametrize("name", list(LAYERS))
def test_against_reference(isa, threads, rng, name, cfg):
    def ours(x, params, initial, grads):
        *outs, cache = forward(minidnn, name, cfg, x, params, initial)
        return (*outs, *backward(minidnn, name, cache, grads))

    out, expected = compare_with_reference(rng, name, cfg, ours)
    check(out, expected, f"{name} {cfg}", cfg)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_two_hundred_steps(rng, name):
    """Accumulated error over T = 200 steps forward and back. The weights
    (1/sqrt(fan-in)) make each step's Jacobian a contraction on average, so
    an error made at one step decays over the next ones instead of adding
    up: the bound has no sqrt(T) factor (carried=1), only the sums over
    T * N = 600 rows of the weight gradients, 2e-6 x sqrt(616) = 5e-5 of
    the largest value. Seen: about 1e-6 (8 ulp)."""
    cfg = Config(200, 3, 8, 16, layers=2, bidirectional=True)

    def ours(x, params, initial, grads):
        *outs, cache = forward(minidnn, name, cfg, x, params, initial)
        return (*outs, *backward(minidnn, name, cache, grads))

    out, expected = compare_with_reference(rng, name, cfg, ours)
    check(out, expected, name, cfg, carried=1)


# (batch, hidden): 16 rows take the transposed hidden map on avx512; 256
# rows of 32 units (one panel of the avx512 GEMM's width) split the LSTM's
# and GRU's time loops by rows rather than units (threads_for gives two
# threads from 2^19 multiply-adds a step); 130 units make the backward's
# product (K = gates * 130) span two K blocks.
@pytest.mark.parametrize("batch,hidden", [(64, 96), (16, 96), (256, 32), (40, 130)])
@pytest.mark.parametrize("name", list(LAYERS))
def test_one_and_two_threads_agree_bitwise(rng, name, batch, hidden):
    # Large enough that the GEMMs and the gate kernels split; one direction,
    # so that two threads split each time loop (two directions would run
    # one a thread: test_directions_at_once).
    cfg = Config(4, batch, 40, hidden, layers=2)
    x, params, initial = make_case(rng, name, cfg)

    def run():
        *outs, cache = forward(minidnn, name, cfg, x, params, initial)
        grads = [np.ones_like(o) for o in outs]
        return flatten((*outs, *backward(minidnn, name, cache, grads)))

    _assert_identical(*_on_one_and_two_threads(run))


# At least layers.cpp's grain (2^16 multiply-adds a direction) in every
# layer and kind, so that on 2 threads the two directions run at once, one
# a thread, each on its kernels' one-thread path.
PARALLEL_DIRECTIONS = [
    Config(7, 13, 37, 45, layers=2, bidirectional=True, batch_first=True),  # odd sizes, SIMD tails
    # 16 rows: on avx512 the transposed hidden map (its per-thread h^T).
    Config(6, 16, 29, 40, layers=3, bidirectional=True, bias=False, initial=False),
    Config(9, 1, 61, 67, bidirectional=True),  # one row: latency-bound steps
]


@pytest.mark.parametrize("cfg", PARALLEL_DIRECTIONS, ids=repr)
@pytest.mark.parametrize("name", list(LAYERS))
def test_directions_at_once(isa, rng, name, cfg):
    """Both directions of a layer in one call: against the reference, and
    bit-identical on 1 and 2 threads (in turn on 1, at once on 2), the
    forward, and the backward through the cache, run twice on it."""
    x, params, initial = make_case(rng, name, cfg)
    *ref_outs, ref_cache = forward(ref, name, cfg, x, params, initial)
    grads = output_grads(rng, ref_outs)
    expected = (*ref_outs, *backward(ref, name, ref_cache, grads))

    def run():
        *outs, cache = forward(minidnn, name, cfg, x, params, initial)
        first = flatten(backward(minidnn, name, cache, grads))
        _assert_identical(first, flatten(backward(minidnn, name, cache, grads)))
        return (*outs, *first)

    assert_same_at_thread_counts(run)
    check(run(), expected, f"{name} {cfg}", cfg)


def test_directions_at_once_rest_on_any_thread_count(rng):
    """Three threads: the directions in turn, each on the whole team; the
    same bits as one and two threads."""
    cfg = PARALLEL_DIRECTIONS[0]
    x, params, initial = make_case(rng, "lstm", cfg)

    def run():
        *outs, cache = forward(minidnn, "lstm", cfg, x, params, initial)
        return (*outs, *flatten(backward(minidnn, "lstm", cache, [np.ones_like(o) for o in outs])))

    assert_same_at_thread_counts(run, counts=(1, 2, 3))


@pytest.mark.parametrize("cfg", [Config(6, 4, 13, 21, layers=2, bidirectional=True),
                                 Config(5, 3, 7, 8, batch_first=True, bias=False)], ids=repr)
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_matches_torch_modules(rng, name, cfg):
    """torch.nn.LSTM / GRU / RNN (float32) with our params copied in, and
    autograd's gradients."""
    torch = pytest.importorskip("torch")
    x, params, initial = make_case(rng, name, cfg)
    *outs, cache = forward(minidnn, name, cfg, x, params, initial)
    grads = output_grads(rng, outs)
    y, finals, gx, gparams, ginitial = run_torch(torch, name, x, params, initial, cfg.bidirectional, cfg.batch_first,
                                                 grads[0], grads[1:])
    for ours, theirs in zip(outs, [y, *finals]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=2e-6)
    grad_x, grad_params, *grad_initial = backward(minidnn, name, cache, grads)
    for ours, theirs in zip(flatten([grad_x, grad_params, *grad_initial]), flatten([gx, gparams, *ginitial])):
        if theirs is None:
            assert ours is None
        else:
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=2e-5)


def test_cache_is_reusable_and_its_size_documented(rng):
    cfg = Config(5, 3, 4, 6, layers=2, bidirectional=True)
    x, params, initial = make_case(rng, "lstm", cfg)
    y, h_n, c_n, cache = forward(minidnn, "lstm", cfg, x, params, initial)
    grads = [np.ones_like(a) for a in (y, h_n, c_n)]
    _assert_identical(flatten(minidnn.lstm_backward(cache, *grads)), flatten(minidnn.lstm_backward(cache, *grads)))
    # Per layer and direction: h and c of T + 1 instants, 4H gates of T
    # steps; plus the input of the second layer (T, N, 2H). float32.
    t, n, h = cfg.steps, cfg.batch, cfg.hidden
    per_direction = 2 * (t + 1) * n * h + t * n * 4 * h
    assert cache.nbytes == 4 * (4 * per_direction + t * n * 2 * h)
    y2, *_ = forward(minidnn, "lstm", cfg, x, params, initial, return_cache=False)
    np.testing.assert_array_equal(y, y2)
    # Unidirectional: the second layer's input is the first's states.
    one_way = Config(5, 3, 4, 6, layers=2)
    x, params, initial = make_case(rng, "lstm", one_way)
    cache = forward(minidnn, "lstm", one_way, x, params, initial)[-1]
    assert cache.nbytes == 4 * 2 * per_direction


@pytest.mark.parametrize("name", list(LAYERS))
def test_outputs_without_cache_are_those_with_it(threads, rng, name):
    """return_cache changes nothing in the outputs: the same bits with and
    without it, two layers with both directions at once on two threads,
    then one direction."""
    for cfg in (Config(6, 13, 37, 45, layers=2, bidirectional=True), Config(3, 5, 7, 9, layers=2)):
        x, params, initial = make_case(rng, name, cfg)
        *with_cache, _ = forward(minidnn, name, cfg, x, params, initial)
        without = forward(minidnn, name, cfg, x, params, initial, return_cache=False)
        _assert_identical(flatten(with_cache), flatten(without))


def test_output_gradients_may_be_none(rng):
    cfg = Config(3, 2, 4, 5, bidirectional=True)
    x, params, initial = make_case(rng, "lstm", cfg)
    y, h_n, c_n, cache = forward(minidnn, "lstm", cfg, x, params, initial)
    zeros = [np.zeros_like(a) for a in (y, h_n, c_n)]
    gy = rng.standard_normal(y.shape).astype(np.float32)
    _assert_identical(flatten(minidnn.lstm_backward(cache, gy)), flatten(minidnn.lstm_backward(cache, gy, *zeros[1:])))
    _assert_identical(flatten(minidnn.lstm_backward(cache, None, h_n)),
                      flatten(minidnn.lstm_backward(cache, zeros[0], h_n, zeros[2])))


# Few examples: each runs a layer's forward and backward on every CPU path
# with 1 and 2 threads.
@settings(max_examples=25)
@given(
    name=st.sampled_from(list(LAYERS)),
    steps=st.integers(1, 7),
    batch=st.integers(0, 6),
    inputs=st.integers(0, 12),
    hidden=st.integers(1, 20),
    layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    batch_first=st.booleans(),
    bias=st.booleans(),
    initial=st.booleans(),
    scale=st.sampled_from([0.1, 1.0, 3.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_configurations_on_every_path(name, steps, batch, inputs, hidden, layers, bidirectional, batch_first,
                                             bias, initial, scale, seed):
    """Scale 3: gates often saturated and pre-activations (products of
    scaled inputs and scaled weights) of up to about 9 units, whose
    rounding (eps x their size) the tolerance grows with."""
    rng = np.random.default_rng(seed)
    cfg = Config(steps, batch, inputs, hidden, layers, bidirectional, batch_first, bias, initial)
    x, params, init = make_case(rng, name, cfg, scale)
    *ref_outs, cache = forward(ref, name, cfg, x, params, init)
    grads = output_grads(rng, ref_outs)
    expected = (*ref_outs, *backward(ref, name, cache, grads))

    def ours():
        *outs, c = forward(minidnn, name, cfg, x, params, init)
        return (*outs, *backward(minidnn, name, c, grads))

    for path, out in on_every_cpu_path(ours).items():
        check(out, expected, f"{name} {cfg} {path}", cfg, tol=2e-6 * max(1.0, scale**2))


# ------------------------------------------------------------------ errors


def _ok(rng, layers=2, bidirectional=True):
    cfg = Config(3, 2, 5, 4, layers=layers, bidirectional=bidirectional)
    return make_case(rng, "lstm", cfg)


def test_params_errors(rng):
    x, params, (h0, c0) = _ok(rng)
    with pytest.raises(ValueError, match=r"params: expected a positive multiple of 2 .* got 3"):
        minidnn.lstm(x, params[:3], bidirectional=True)
    with pytest.raises(ValueError, match=r"params: expected a positive multiple of 1 .* got 0"):
        minidnn.lstm(x, [])
    with pytest.raises(TypeError, match="params: expected a list of .* got ndarray"):
        minidnn.lstm(x, params[0][0])
    with pytest.raises(ValueError, match=r"params\[0\]: expected a \(w_ih, w_hh, b_ih, b_hh\) tuple, got ndarray"):
        minidnn.lstm(x, params[0])  # one tuple, not a list of them
    with pytest.raises(ValueError, match=r"params\[1\]: expected a \(w_ih, w_hh, b_ih, b_hh\) tuple, got a tuple of 2"):
        minidnn.lstm(x, [params[0], params[1][:2]] + params[2:], bidirectional=True)
    bad = list(params)
    bad[2] = (params[2][0][:, :5], *params[2][1:])
    with pytest.raises(ValueError, match=r"params\[2\] w_ih: expected shape \(16, 8\) \(2 \* H, the outputs of the layer"):
        minidnn.lstm(x, bad, bidirectional=True)
    bad[2] = (params[2][0], np.zeros((16, 5), np.float32), *params[2][2:])
    with pytest.raises(ValueError, match=r"params\[2\] w_hh: expected shape \(16, 4\)"):
        minidnn.lstm(x, bad, bidirectional=True)
    bad[2] = (*params[2][:3], np.zeros(12, np.float32))
    with pytest.raises(ValueError, match=r"params\[2\] b_hh: expected shape \(16,\) or None"):
        minidnn.lstm(x, bad, bidirectional=True)
    with pytest.raises(ValueError, match=r"params\[0\] w_hh: expected shape \(4\*H, H\) with H >= 1"):
        minidnn.lstm(x, [(params[0][0], np.zeros((12, 4), np.float32), None, None)])
    with pytest.raises(ValueError, match=r"params\[0\] w_ih: expected shape \(16, 4\) \(the input size of x\), got \(16, 5\)"):
        minidnn.lstm(x[:, :, :4].copy(), params, bidirectional=True)
    with pytest.raises(TypeError, match=r"params\[0\] w_ih: expected dtype float32"):
        minidnn.lstm(x, [(params[0][0].astype(np.float64), *params[0][1:])])
    with pytest.raises(ValueError, match=r"params\[0\] w_hh: expected shape \(3\*H, H\) with H >= 1 \(gru gates r, z, n"):
        minidnn.gru(x, params[:1])  # an LSTM's weights


def test_input_and_state_errors(rng):
    x, params, (h0, c0) = _ok(rng)
    with pytest.raises(ValueError, match=r"x: expected shape \(T, N, input_size\) with T >= 1 \(as PyTorch\), got \(0, 2, 5\)"):
        minidnn.lstm(x[:0], params, bidirectional=True)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, T, input_size\) \(batch_first\)"):
        minidnn.lstm(x[0], params, bidirectional=True, batch_first=True)
    with pytest.raises(ValueError, match=r"h0: expected shape \(4, 2, 4\) \(layers \* directions = 4"):
        minidnn.lstm(x, params, h0[:2], c0, bidirectional=True)
    with pytest.raises(ValueError, match=r"c0: expected shape \(4, 2, 4\)"):
        minidnn.lstm(x, params, h0, c0[:, :1], bidirectional=True)
    with pytest.raises(TypeError, match="bidirectional: expected a bool"):
        minidnn.lstm(x, params, bidirectional=2)
    with pytest.raises(TypeError, match="batch_first: expected a bool"):
        minidnn.lstm(x, params, bidirectional=True, batch_first=None)
    with pytest.raises(ValueError, match="nonlinearity: expected 'tanh' or 'relu'"):
        minidnn.rnn(x, params, nonlinearity="gelu")
    with pytest.raises(TypeError, match="linear_before_reset: expected a bool"):
        minidnn.gru(x, params, linear_before_reset=1)


def test_backward_errors(rng):
    x, params, (h0, c0) = _ok(rng)
    y, h_n, c_n, cache = minidnn.lstm(x, params, h0, c0, bidirectional=True, return_cache=True)
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(3, 2, 8\) \(that of y\), got \(3, 2, 4\)"):
        minidnn.lstm_backward(cache, y[:, :, :4].copy())
    with pytest.raises(ValueError, match=r"grad_h_n: expected shape \(4, 2, 4\)"):
        minidnn.lstm_backward(cache, y, h_n[:1])
    with pytest.raises(ValueError, match=r"grad_c_n: expected shape \(4, 2, 4\)"):
        minidnn.lstm_backward(cache, y, None, c_n[:, :, :2])
    with pytest.raises(TypeError, match=r"cache: expected the cache of gru\(\.\.\., return_cache=True\)"):
        minidnn.gru_backward(cache, y)
    with pytest.raises(TypeError, match="cache: expected the cache of lstm"):
        minidnn.lstm_backward((y, h_n), y)
