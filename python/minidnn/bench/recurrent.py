"""Benchmark cases of the recurrent cells: one LSTM / GRU step at a
DeepBench-sized batch and hidden size (compute-bound: `flops` is the two
affine maps' multiply-adds, so each case is measured against the SGEMM
ceiling), forward and forward + backward, against PyTorch's cells; and
every cell op on a tiny step (N = 1, H = I = 32) in the call-overhead
group.

The layers over sequences (lstm, gru, rnn): DeepBench-style sequences
(LSTM and GRU at H = 512, T = 50, N = 64 and H = 1024, T = 25, N = 16; a
2-layer bidirectional LSTM at H = 256, T = 50, N = 32), forward and
forward + backward through time, against PyTorch's torch.lstm / torch.gru;
and every layer op on a tiny sequence in the call-overhead group.

ONNX Runtime is the second peer of every forward: its LSTM / GRU / RNN
node (a cell is the node on a sequence of one step), with the weights
converted outside the timed call to ONNX's layout and gate order (LSTM
i, o, f, c for PyTorch's i, f, g, o; GRU z, r, h for r, z, n, with
linear_before_reset = 1, which is PyTorch's GRU) as initializers, x the
graph input, and the outputs reshaped to ours by a few cheap nodes.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

import minidnn
from minidnn import reference

from .harness import Case, Inputs, OverheadCase, overhead_case

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _make(cell: str, n: int, i: int, h: int) -> Callable[[np.random.Generator], Inputs]:
    """x, h (and c) standard normal; weights scaled by 1/sqrt(fan-in); biases small."""
    g = GATES[cell]

    def make(rng: np.random.Generator) -> Inputs:
        f = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
        inputs = {
            "x": f(n, i),
            "h": f(n, h),
            "w_ih": f(g * h, i) / np.float32(np.sqrt(i)),
            "w_hh": f(g * h, h) / np.float32(np.sqrt(h)),
            "b_ih": f(g * h) * np.float32(0.1),
            "b_hh": f(g * h) * np.float32(0.1),
        }
        if cell == "lstm":
            inputs["c"] = f(n, h)
        return inputs

    return make


def _args(cell: str, inputs: Inputs) -> tuple:
    """The cell's arguments in its order."""
    states = ("x", "h", "c") if cell == "lstm" else ("x", "h")
    return tuple(inputs[k] for k in (*states, "w_ih", "w_hh", "b_ih", "b_hh"))


# ---------------------------------------------------------------- ONNX

# ONNX's gate order as indices into PyTorch's gate blocks.
ONNX_GATES = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}
ONNX_OPS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _onnx_gates(kind: str, a: np.ndarray) -> np.ndarray:
    """A weight (G*H, ...) or bias (G*H,) with its gate blocks in ONNX's order."""
    blocks = np.split(a, len(ONNX_GATES[kind]))
    return np.concatenate([blocks[g] for g in ONNX_GATES[kind]])


def _onnx_graph(kind: str, x: np.ndarray, params: list, h0: np.ndarray, c0: Optional[np.ndarray],
                dirs: int, cell: bool) -> Any:
    """One ONNX node per layer (both directions in one node), x the graph
    input, weights and initial states initializers. The outputs are ours:
    y (T, N, dirs*H), h_n and c_n (layers*dirs, N, H); for a cell (x of
    (N, I), one layer, one direction, one step) h1 and c1 (N, H)."""
    import onnx
    from onnx import helper, numpy_helper

    hidden = h0.shape[-1]
    layers = len(params) // dirs
    inits, nodes = [], []

    def const(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a), name))
        return name

    def node(op: str, inputs: list, outputs: list, **attributes: Any) -> None:
        nodes.append(helper.make_node(op, inputs, outputs, **attributes))

    seq = "x"
    if cell:
        node("Unsqueeze", ["x", const("axis0", np.array([0], np.int64))], ["x_seq"])
        seq = "x_seq"
    finals = {"h": [], "c": []}
    for layer in range(layers):
        entries = params[layer * dirs:(layer + 1) * dirs]
        w = np.stack([_onnx_gates(kind, e[0]) for e in entries])
        r = np.stack([_onnx_gates(kind, e[1]) for e in entries])
        b = np.stack([np.concatenate([_onnx_gates(kind, e[2]), _onnx_gates(kind, e[3])]) for e in entries])
        states = [const(f"h0_{layer}", h0[layer * dirs:(layer + 1) * dirs])]
        if kind == "lstm":
            states.append(const(f"c0_{layer}", c0[layer * dirs:(layer + 1) * dirs]))
        outputs = [f"y_{layer}", f"h_{layer}"] + ([f"c_{layer}"] if kind == "lstm" else [])
        attributes = {"hidden_size": hidden, "direction": "bidirectional" if dirs == 2 else "forward"}
        if kind == "gru":
            attributes["linear_before_reset"] = 1
        node(ONNX_OPS[kind], [seq, const(f"w_{layer}", w), const(f"r_{layer}", r), const(f"b_{layer}", b), "",
                              *states], outputs, **attributes)
        finals["h"].append(f"h_{layer}")
        if kind == "lstm":
            finals["c"].append(f"c_{layer}")
        if not cell:
            # Y (T, dirs, N, H) -> (T, N, dirs*H): the next layer's input and our y.
            node("Transpose", [f"y_{layer}"], [f"yt_{layer}"], perm=[0, 2, 1, 3])
            node("Reshape", [f"yt_{layer}", const(f"shape_{layer}", np.array([0, 0, -1], np.int64))], [f"ys_{layer}"])
            seq = f"ys_{layer}"
    names = ["h", "c"] if kind == "lstm" else ["h"]
    if cell:
        outputs = []
        for n in names:
            node("Squeeze", [finals[n][0], "axis0"], [f"{n}1"])
            outputs.append(f"{n}1")
    else:
        node("Identity", [seq], ["y"])
        outputs = ["y"]
        for n in names:
            node("Concat", finals[n], [f"{n}_n"], axis=0)
            outputs.append(f"{n}_n")
    graph = helper.make_graph(
        nodes, ONNX_OPS[kind],
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def _onnx_cell(cell: str, inputs: Inputs) -> Any:
    params = [tuple(inputs[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh"))]
    c0 = inputs["c"][None] if cell == "lstm" else None
    return _onnx_graph(cell, inputs["x"], params, inputs["h"][None], c0, 1, cell=True)


def _torch_cell(torch: Any, cell: str) -> Callable[..., Any]:
    """PyTorch's cell with the argument order of ours, returning a tuple."""
    if cell == "lstm":
        return lambda x, h, c, *w: torch.lstm_cell(x, (h, c), *w)
    op = {"gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}[cell]
    return lambda *args: (op(*args),)


def _flops(cell: str, n: int, i: int, h: int) -> int:
    """The multiply-adds of x W_ih^T and h W_hh^T, x2."""
    return 2 * n * GATES[cell] * h * (i + h)


def _bytes(cell: str, n: int, i: int, h: int) -> int:
    g = GATES[cell]
    states = 2 if cell == "lstm" else 1
    return 4 * (g * h * (i + h + 2) + n * i + 2 * states * n * h)


def _forward(cell: str, n: int, i: int, h: int) -> Case:
    fn = getattr(minidnn, f"{cell}_cell")
    ref = getattr(reference, f"{cell}_cell")

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        op = _torch_cell(torch, cell)
        args = tuple(torch.from_numpy(a) for a in _args(cell, inputs))
        return lambda: op(*args)

    return Case(
        name=f"{cell}_cell fwd N={n} I={i} H={h}",
        make=_make(cell, n, i, h),
        run=lambda inputs: fn(*_args(cell, inputs)),
        reference=lambda inputs: ref(*_args(cell, inputs)),
        bytes=_bytes(cell, n, i, h),
        flops=_flops(cell, n, i, h),
        torch=torch_call,
        onnx=lambda inputs: _onnx_cell(cell, inputs),
    )


def _forward_backward(cell: str, n: int, i: int, h: int) -> Case:
    """One training step of the cell: the outputs, then every gradient for
    output gradients equal to the outputs. FLOPs: the forward's and twice
    that for the backward (grad_x, grad_h and the weight gradients), as a
    framework that saves the gates does it; ours recomputes the gates (one
    forward's more arithmetic, not counted)."""
    fn = getattr(minidnn, f"{cell}_cell")
    bwd = getattr(minidnn, f"{cell}_cell_backward")
    ref_fn = getattr(reference, f"{cell}_cell")
    ref_bwd = getattr(reference, f"{cell}_cell_backward")

    def outputs(out) -> tuple:
        return out if isinstance(out, tuple) else (out,)

    def run(inputs: Inputs) -> tuple:
        args = _args(cell, inputs)
        out = outputs(fn(*args))
        return (*out, *bwd(*out, *args))

    def ref(inputs: Inputs) -> tuple:
        args = _args(cell, inputs)
        out = outputs(fn(*args))  # the same output gradients as run(), so only the backward is compared
        return (*outputs(ref_fn(*args)), *ref_bwd(*out, *args))

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        op = _torch_cell(torch, cell)
        args = tuple(torch.from_numpy(a).requires_grad_() for a in _args(cell, inputs))

        def call() -> tuple:
            with torch.enable_grad():
                out = op(*args)
                grads = torch.autograd.grad(out, args, [o.detach() for o in out])
            return (*(o.detach() for o in out), *grads)

        return call

    return Case(
        name=f"{cell}_cell fwd+bwd N={n} I={i} H={h}",
        make=_make(cell, n, i, h),
        run=run,
        reference=ref,
        bytes=3 * _bytes(cell, n, i, h),
        flops=3 * _flops(cell, n, i, h),
        torch=torch_call,
    )


# ---------------------------------------------------------------- layers


class Layer:
    """A recurrent layer stack: kind, sequence length T, batch N, input size
    I, hidden size H, layers, directions; always with biases."""

    def __init__(self, kind: str, steps: int, batch: int, inputs: int, hidden: int, layers: int = 1,
                 bidirectional: bool = False):
        self.kind, self.steps, self.batch, self.inputs, self.hidden = kind, steps, batch, inputs, hidden
        self.layers, self.bidirectional = layers, bidirectional
        self.dirs = 2 if bidirectional else 1
        self.states = ("h0", "c0") if kind == "lstm" else ("h0",)

    def label(self) -> str:
        stack = f" {self.layers}-layer" if self.layers > 1 else ""
        bi = " bidirectional" if self.bidirectional else ""
        return f"{self.kind}{stack}{bi} T={self.steps} N={self.batch} I={self.inputs} H={self.hidden}"

    def widths(self) -> list[int]:
        """The input width of each layer direction's W_ih."""
        return [self.inputs if k < self.dirs else self.dirs * self.hidden for k in range(self.layers * self.dirs)]

    def make(self, rng: np.random.Generator) -> Inputs:
        """x and the initial states standard normal; weights 1/sqrt(fan-in); biases small."""
        g, h = GATES[self.kind], self.hidden
        f = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
        inputs = {"x": f(self.steps, self.batch, self.inputs)}
        for s in self.states:
            inputs[s] = f(self.layers * self.dirs, self.batch, h)
        for k, width in enumerate(self.widths()):
            inputs[f"w_ih{k}"] = f(g * h, width) / np.float32(np.sqrt(width))
            inputs[f"w_hh{k}"] = f(g * h, h) / np.float32(np.sqrt(h))
            inputs[f"b_ih{k}"] = f(g * h) * np.float32(0.1)
            inputs[f"b_hh{k}"] = f(g * h) * np.float32(0.1)
        return inputs

    def params(self, inputs: Inputs) -> list:
        return [tuple(inputs[f"{w}{k}"] for w in ("w_ih", "w_hh", "b_ih", "b_hh"))
                for k in range(self.layers * self.dirs)]

    def call(self, lib: Any, inputs: Inputs, return_cache: bool = False) -> tuple:
        fn = getattr(lib, self.kind)
        return fn(inputs["x"], self.params(inputs), *(inputs[s] for s in self.states),
                  bidirectional=self.bidirectional, return_cache=return_cache)

    def backward(self, lib: Any, cache: Any, grads: tuple) -> tuple:
        """The gradients flattened: grad_x, each layer direction's four
        weight gradients, the initial states' gradients (autograd's order
        for x, the flat weights and the states)."""
        grad_x, grad_params, *grad_states = getattr(lib, f"{self.kind}_backward")(cache, *grads)
        return (grad_x, *(g for entry in grad_params for g in entry), *grad_states)

    def flops(self) -> int:
        """The multiply-adds of every step's two affine maps, x2."""
        g, h = GATES[self.kind], self.hidden
        return sum(2 * self.steps * self.batch * g * h * (width + h) for width in self.widths())

    def bytes(self) -> int:
        """Weights, x, y and the states, once each."""
        g, h = GATES[self.kind], self.hidden
        weights = sum(g * h * (width + h + 2) for width in self.widths())
        states = 2 * len(self.states) * self.layers * self.dirs * self.batch * h
        return 4 * (weights + self.steps * self.batch * (self.inputs + self.dirs * h) + states)

    def torch_args(self, t: dict) -> tuple:
        """(op, args) of PyTorch's functional layer with our arguments."""
        import torch

        flat = [t[f"{w}{k}"] for k in range(self.layers * self.dirs) for w in ("w_ih", "w_hh", "b_ih", "b_hh")]
        states = tuple(t[s] for s in self.states)
        rest = (True, self.layers, 0.0, False, self.bidirectional, False)
        if self.kind == "lstm":
            return (lambda x, *a: torch.lstm(x, a[:2], a[2:], *rest)), (t["x"], *states, *flat)
        op = {"gru": torch.gru, "rnn": torch.rnn_tanh}[self.kind]
        return (lambda x, h0, *a: op(x, h0, a, *rest)), (t["x"], *states, *flat)

    def onnx_model(self, inputs: Inputs) -> Any:
        c0 = inputs["c0"] if self.kind == "lstm" else None
        return _onnx_graph(self.kind, inputs["x"], self.params(inputs), inputs["h0"], c0, self.dirs, cell=False)

    def torch_grad_args(self, t: dict) -> list:
        """The tensors whose gradients we return, in our flattened order."""
        flat = [t[f"{w}{k}"] for k in range(self.layers * self.dirs) for w in ("w_ih", "w_hh", "b_ih", "b_hh")]
        return [t["x"], *flat, *(t[s] for s in self.states)]


def _layer_forward(layer: Layer) -> Case:
    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        op, args = layer.torch_args({k: torch.from_numpy(v) for k, v in inputs.items()})
        return lambda: op(*args)

    return Case(
        name=f"{layer.label()} fwd",
        make=layer.make,
        run=lambda inputs: layer.call(minidnn, inputs),
        reference=lambda inputs: layer.call(reference, inputs),
        bytes=layer.bytes(),
        flops=layer.flops(),
        torch=torch_call,
        onnx=layer.onnx_model,
    )


def _layer_forward_backward(layer: Layer) -> Case:
    """One training step through time: the outputs, then every gradient for
    output gradients equal to the outputs. FLOPs: the forward's and twice
    that for the backward (the gradients of the maps' inputs and of the
    weights)."""

    def run(inputs: Inputs) -> tuple:
        *out, cache = layer.call(minidnn, inputs, return_cache=True)
        return (*out, *layer.backward(minidnn, cache, out))

    def ref(inputs: Inputs) -> tuple:
        out = layer.call(minidnn, inputs)  # the same output gradients as run(), so only the backward is compared
        *ref_out, cache = layer.call(reference, inputs, return_cache=True)
        return (*ref_out, *layer.backward(reference, cache, out))

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        t = {k: torch.from_numpy(v).requires_grad_() for k, v in inputs.items()}
        op, args = layer.torch_args(t)
        wrt = layer.torch_grad_args(t)

        def call() -> tuple:
            with torch.enable_grad():
                out = op(*args)
                grads = torch.autograd.grad(out, wrt, [o.detach() for o in out])
            return (*(o.detach() for o in out), *grads)

        return call

    return Case(
        name=f"{layer.label()} fwd+bwd",
        make=layer.make,
        run=run,
        reference=ref,
        bytes=3 * layer.bytes(),
        flops=3 * layer.flops(),
        torch=torch_call,
    )


# DeepBench-style sequences.
LAYERS = [
    Layer("lstm", 50, 64, 512, 512),
    Layer("lstm", 25, 16, 1024, 1024),
    Layer("gru", 50, 64, 512, 512),
    Layer("gru", 25, 16, 1024, 1024),
    Layer("lstm", 50, 32, 256, 256, layers=2, bidirectional=True),
]


def cases(device: str, quick: bool) -> list[Case]:
    """One DeepBench-sized cell step (N = 64, H = I = 512) and the layer
    sequences of LAYERS, forward and forward + backward; the same with `quick`."""
    if device != "cpu":
        return []
    out = [
        _forward("lstm", 64, 512, 512),
        _forward_backward("lstm", 64, 512, 512),
        _forward("gru", 64, 512, 512),
        _forward_backward("gru", 64, 512, 512),
    ]
    for layer in LAYERS:
        out += [_layer_forward(layer), _layer_forward_backward(layer)]
    return out


# A single step at batch 1, H = I = 32: latency, not arithmetic. The shape
# is written (N, H).
OVERHEAD_N, OVERHEAD_H = 1, 32


def _overhead_inputs(cell: str) -> Callable[[np.random.Generator], Inputs]:
    make = _make(cell, OVERHEAD_N, OVERHEAD_H, OVERHEAD_H)

    def inputs(rng: np.random.Generator) -> Inputs:
        out = make(rng)
        out["grad_h1"] = rng.standard_normal((OVERHEAD_N, OVERHEAD_H), dtype=np.float32)
        out["grad_c1"] = rng.standard_normal((OVERHEAD_N, OVERHEAD_H), dtype=np.float32)
        return out

    return inputs


def _torch_backward(cell: str) -> Callable[[Any, dict], tuple[Callable[..., Any], tuple]]:
    """What PyTorch runs for a cell's gradients from its arguments alone
    (no saved forward): the forward under autograd, then autograd.grad,
    the gradients in our order."""

    def prepare(torch: Any, t: dict) -> tuple[Callable[..., Any], tuple]:
        op = _torch_cell(torch, cell)
        args = tuple(a.requires_grad_() for a in _args(cell, t))
        grads = (t["grad_h1"], t["grad_c1"]) if cell == "lstm" else (t["grad_h1"],)

        def backward(*args):
            with torch.enable_grad():
                return torch.autograd.grad(op(*args), args, grads)

        return backward, args

    return prepare


def _ours_backward_args(cell: str) -> Callable[[Inputs], tuple]:
    grads = ("grad_h1", "grad_c1") if cell == "lstm" else ("grad_h1",)
    return lambda inputs: (*(inputs[k] for k in grads), *_args(cell, inputs))


def overhead_cases(device: str) -> list[OverheadCase]:
    """Every cell op at N = 1, H = I = 32 against PyTorch's cell (for the
    backwards: its forward under autograd and autograd.grad)."""
    if device != "cpu":
        return []
    shape = (OVERHEAD_N, OVERHEAD_H)
    out = []
    for cell in ("lstm", "gru", "rnn"):
        out.append(overhead_case(
            f"{cell}_cell", shape, _overhead_inputs(cell),
            lambda inputs, cell=cell: _args(cell, inputs),
            lambda torch, t, cell=cell: (_torch_cell(torch, cell), _args(cell, t))))
        out.append(overhead_case(
            f"{cell}_cell_backward", shape, _overhead_inputs(cell), _ours_backward_args(cell),
            _torch_backward(cell)))
    for kind in ("lstm", "gru", "rnn"):
        out += _layer_overhead_cases(Layer(kind, OVERHEAD_T, OVERHEAD_N, OVERHEAD_H, OVERHEAD_H))
    return out


# A layer's tiny sequence: T = 4 steps of the tiny cell. The shape is written (T, N, H).
OVERHEAD_T = 4


def _layer_overhead_cases(layer: Layer) -> list[OverheadCase]:
    """The layer against PyTorch's functional layer (torch.lstm, ...); its
    backward (from a cache made beforehand) against PyTorch's forward under
    autograd and autograd.grad, as for the cells."""
    shape = (layer.steps, layer.batch, layer.hidden)

    def torch_forward(torch: Any, t: dict) -> tuple[Callable[..., Any], tuple]:
        return layer.torch_args(t)

    forward = overhead_case(layer.kind, shape, layer.make, lambda inputs: (
        inputs["x"], layer.params(inputs), *(inputs[s] for s in layer.states)), torch_forward)

    def run(inputs: Inputs) -> Callable[[], Any]:
        *out, cache = layer.call(minidnn, inputs, return_cache=True)
        return lambda: layer.backward(minidnn, cache, out)

    def ref(inputs: Inputs) -> tuple:
        out = layer.call(minidnn, inputs)
        return layer.backward(reference, layer.call(reference, inputs, return_cache=True)[-1], out)

    def torch_backward(inputs: Inputs) -> Callable[[], Any]:
        import torch

        t = {k: torch.from_numpy(v).requires_grad_() for k, v in inputs.items()}
        op, args = layer.torch_args(t)
        wrt = layer.torch_grad_args(t)
        with torch.enable_grad():
            grads = [o.detach() for o in op(*args)]

        def call() -> tuple:
            with torch.enable_grad():
                return torch.autograd.grad(op(*args), wrt, grads)

        return call

    backward = OverheadCase(op=f"{layer.kind}_backward", shape=shape, make=layer.make, run=run, reference=ref,
                            torch=torch_backward)
    return [forward, backward]
