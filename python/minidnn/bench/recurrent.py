"""Benchmark cases of the recurrent cells: one LSTM / GRU step at a
DeepBench-sized batch and hidden size (compute-bound: `flops` is the two
affine maps' multiply-adds, so each case is measured against the SGEMM
ceiling), forward and forward + backward, against PyTorch's cells; and
every cell op on a tiny step (N = 1, H = I = 32) in the call-overhead
group.

The layers over sequences (lstm, gru, rnn) are not written yet.
"""

from __future__ import annotations

from typing import Any, Callable

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


def cases(device: str, quick: bool) -> list[Case]:
    """One DeepBench-sized step (N = 64, H = I = 512); the same with `quick`."""
    if device != "cpu":
        return []
    return [
        _forward("lstm", 64, 512, 512),
        _forward_backward("lstm", 64, 512, 512),
        _forward("gru", 64, 512, 512),
        _forward_backward("gru", 64, 512, 512),
    ]


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
    return out
