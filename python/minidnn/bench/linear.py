"""Benchmark cases of linear (the project's SGEMM): forward, and forward +
backward, at large squares, a wide layer, and small batches (the GEMV-like
cases of inference and LSTM steps). Compute-bound: `flops` is set, so each
case is measured against the machine's SGEMM ceiling (NumPy matmul at
2048^3), and the forward also against NumPy on its own shape: the issue's
SGEMM target is a fraction of NumPy's matmul.

Shapes are written M x K x N: x is (M, K), weight (N, K), y (M, N).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

import minidnn
from minidnn import reference

from .harness import Case, Inputs, OverheadCase, onnx_model, overhead_case

SQUARES = [512, 1024, 2048]
WIDE = (2048, 1024, 4096)
SMALL_M = [1, 8, 32, 64]  # with K = N = 1024
SMALL_M_LARGE = (1, 4096, 4096)  # one token through a 4096-wide layer


def _make(m: int, k: int, n: int) -> Callable[[np.random.Generator], Inputs]:
    """make(): x standard normal (M, K), weight (N, K) scaled by 1/sqrt(K), bias (N,)."""

    def make(rng: np.random.Generator) -> Inputs:
        return {
            "x": rng.standard_normal((m, k), dtype=np.float32),
            "weight": (rng.standard_normal((n, k), dtype=np.float32) / np.float32(np.sqrt(k))),
            "bias": rng.standard_normal(n, dtype=np.float32),
        }

    return make


def _forward(m: int, k: int, n: int) -> Case:
    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        x, w, b = (torch.from_numpy(inputs[name]) for name in ("x", "weight", "bias"))
        return lambda: torch.nn.functional.linear(x, w, b)

    def numpy_call(inputs: Inputs) -> Callable[[], Any]:
        """x @ W^T on NumPy's BLAS into a preallocated y, then the bias added in place."""
        x, w_t, b = inputs["x"], inputs["weight"].T, inputs["bias"]
        y = np.empty((m, n), dtype=np.float32)

        def call() -> np.ndarray:
            np.matmul(x, w_t, out=y)
            return np.add(y, b, out=y)

        return call

    return Case(
        name=f"linear fwd {m}x{k}x{n}",
        make=_make(m, k, n),
        run=lambda inputs: minidnn.linear(inputs["x"], inputs["weight"], inputs["bias"]),
        reference=lambda inputs: reference.linear(inputs["x"], inputs["weight"], inputs["bias"]),
        bytes=4 * (m * k + n * k + n + m * n),
        flops=2 * m * k * n,
        torch=torch_call,
        # ONNX Gemm with transB = 1 is exactly linear: x @ W^T + bias.
        onnx=lambda inputs: onnx_model("Gemm", inputs, transB=1),
        numpy=numpy_call,
    )


def _forward_backward(m: int, k: int, n: int) -> Case:
    """One training step of the layer: y, then (grad_x, grad_weight, grad_bias) for grad_y = y."""

    def run(inputs: Inputs) -> tuple[np.ndarray, ...]:
        x, w, b = inputs["x"], inputs["weight"], inputs["bias"]
        y = minidnn.linear(x, w, b)
        return (y, *minidnn.linear_backward(y, x, w))

    def ref(inputs: Inputs) -> tuple[np.ndarray, ...]:
        x, w, b = inputs["x"], inputs["weight"], inputs["bias"]
        y = minidnn.linear(x, w, b)  # the same grad_y as run(), so only the backward is compared
        return (reference.linear(x, w, b), *reference.linear_backward(y, x, w))

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        x = torch.from_numpy(inputs["x"]).requires_grad_()
        w = torch.from_numpy(inputs["weight"]).requires_grad_()
        b = torch.from_numpy(inputs["bias"]).requires_grad_()

        def call() -> tuple[Any, ...]:
            x.grad = w.grad = b.grad = None
            with torch.enable_grad():
                y = torch.nn.functional.linear(x, w, b)
                y.backward(y.detach())
            return y.detach(), x.grad, w.grad, b.grad

        return call

    return Case(
        name=f"linear fwd+bwd {m}x{k}x{n}",
        make=_make(m, k, n),
        run=run,
        reference=ref,
        bytes=4 * 3 * (m * k + n * k + m * n),
        flops=3 * 2 * m * k * n,
        torch=torch_call,
    )


def cases(device: str, quick: bool) -> list[Case]:
    """The linear cases on `device` (none on CUDA yet); the same with `quick`."""
    if device != "cpu":
        return []
    shapes = [(s, s, s) for s in SQUARES] + [WIDE] + [(m, 1024, 1024) for m in SMALL_M] + [SMALL_M_LARGE]
    return [
        *(_forward(*shape) for shape in shapes),
        *(_forward_backward(*shape) for shape in [(1024, 1024, 1024), WIDE, (32, 1024, 1024)]),
    ]


# A tiny layer: 4 rows of 16 features into 8 (x, weight and grad_y of at
# most 128 elements).
OVERHEAD_ROWS, OVERHEAD_IN, OVERHEAD_OUT = 4, 16, 8


def _overhead_inputs(rng: np.random.Generator) -> Inputs:
    return {
        "x": rng.standard_normal((OVERHEAD_ROWS, OVERHEAD_IN), dtype=np.float32),
        "weight": rng.standard_normal((OVERHEAD_OUT, OVERHEAD_IN), dtype=np.float32),
        "bias": rng.standard_normal(OVERHEAD_OUT, dtype=np.float32),
        "grad_y": rng.standard_normal((OVERHEAD_ROWS, OVERHEAD_OUT), dtype=np.float32),
    }


def _torch_linear_backward(torch: Any, t: dict) -> tuple[Callable[..., Any], tuple]:
    """What PyTorch's autograd runs for linear's backward: two matrix
    products and the bias sum."""

    def backward(grad_y, x, weight):
        return grad_y @ weight, grad_y.t() @ x, grad_y.sum(0)

    return backward, (t["grad_y"], t["x"], t["weight"])


def overhead_cases(device: str) -> list[OverheadCase]:
    """linear and linear_backward on a tiny layer."""
    if device != "cpu":
        return []
    shape = (OVERHEAD_ROWS, OVERHEAD_IN, OVERHEAD_OUT)
    return [
        overhead_case("linear", shape, _overhead_inputs,
                      lambda inputs: (inputs["x"], inputs["weight"], inputs["bias"]),
                      lambda torch, t: (torch.nn.functional.linear, (t["x"], t["weight"], t["bias"]))),
        overhead_case("linear_backward", shape, _overhead_inputs,
                      lambda inputs: (inputs["grad_y"], inputs["x"], inputs["weight"]),
                      _torch_linear_backward),
    ]
