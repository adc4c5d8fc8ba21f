"""Benchmark cases of convolution: the conv2d forward on the layers of
ResNet-50 at batch 8 (3x3 at 56, 28 and 14; the 1x1 expansions and
reductions at 56; conv1, 7x7 stride 2 on 3 channels), compute-bound
(flops = 2 N K C/groups R S P Q, measured against the SGEMM ceiling), with
PyTorch and ONNX Runtime (Conv) as peers; and every public convolution op
on a tiny input for the call overhead."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

import minidnn
from minidnn import reference

from .harness import Case, Inputs, OverheadCase, onnx_model, overhead_case

# (name, C, H = W, K, R = S, stride, padding) of ResNet-50's layers.
RESNET50 = [
    ("3x3 56", 64, 56, 64, 3, 1, 1),
    ("3x3 28", 128, 28, 128, 3, 1, 1),
    ("3x3 14", 256, 14, 256, 3, 1, 1),
    ("1x1 64->256 56", 64, 56, 256, 1, 1, 0),
    ("1x1 256->64 56", 256, 56, 64, 1, 1, 0),
    ("conv1 7x7/2", 3, 224, 64, 7, 2, 3),
]


def _forward(name: str, n: int, c: int, h: int, k: int, r: int, stride: int, padding: int) -> Case:
    p = (h + 2 * padding - r) // stride + 1

    def make(rng: np.random.Generator) -> Inputs:
        return {
            "x": rng.standard_normal((n, c, h, h), dtype=np.float32),
            "weight": rng.standard_normal((k, c, r, r), dtype=np.float32) / np.float32(np.sqrt(c * r * r)),
            "bias": rng.standard_normal(k, dtype=np.float32),
        }

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        x, w, b = (torch.from_numpy(inputs[key]) for key in ("x", "weight", "bias"))
        return lambda: torch.nn.functional.conv2d(x, w, b, stride, padding)

    return Case(
        name=f"conv2d {name} N={n}",
        make=make,
        run=lambda inputs: minidnn.conv2d(inputs["x"], inputs["weight"], inputs["bias"], stride, padding),
        reference=lambda inputs: reference.conv2d(inputs["x"], inputs["weight"], inputs["bias"], stride, padding),
        bytes=4 * (n * c * h * h + k * c * r * r + k + n * k * p * p),
        flops=2 * n * k * c * r * r * p * p,
        torch=torch_call,
        onnx=lambda inputs: onnx_model("Conv", inputs, strides=[stride, stride], pads=[padding] * 4),
    )


def cases(device: str, quick: bool) -> list[Case]:
    """The ResNet-50 layers at batch 8 (batch 1 with `quick`); none on CUDA yet."""
    if device != "cpu":
        return []
    n = 1 if quick else 8
    return [_forward(name, n, *shape) for name, *shape in RESNET50]


def _overhead_inputs(rng: np.random.Generator) -> Inputs:
    """A tiny layer: 1 image of 2 channels, 6 x 6, into 4 channels by 3 x 3."""
    return {
        "x": rng.standard_normal((1, 2, 6, 6), dtype=np.float32),
        "weight": rng.standard_normal((4, 2, 3, 3), dtype=np.float32),
        "weight_t": rng.standard_normal((2, 4, 3, 3), dtype=np.float32),
        "bias": rng.standard_normal(4, dtype=np.float32),
        "grad_y": rng.standard_normal((1, 4, 6, 6), dtype=np.float32),
        "x1": rng.standard_normal((1, 2, 16), dtype=np.float32),
        "weight1": rng.standard_normal((4, 2, 3), dtype=np.float32),
        "grad_y1": rng.standard_normal((1, 4, 16), dtype=np.float32),
    }


def _torch_backward(transposed: bool, one_d: bool) -> Callable[[Any, dict], tuple[Callable[..., Any], tuple]]:
    """What PyTorch's autograd runs for the convolution's backward (padding 1)."""

    def call(torch: Any, t: dict):
        dims = 1 if one_d else 2
        grad_y, x, w = ((t["grad_y1"], t["x1"], t["weight1"]) if one_d
                        else (t["grad_y"], t["x"], t["weight_t" if transposed else "weight"]))
        channels = w.shape[1] if transposed else w.shape[0]

        def backward(grad_y, x, w):
            return torch.ops.aten.convolution_backward(grad_y, x, w, [channels], [1] * dims, [1] * dims, [1] * dims,
                                                       transposed, [0] * dims, 1, [True, True, True])

        return backward, (grad_y, x, w)

    return call


def overhead_cases(device: str) -> list[OverheadCase]:
    """Every convolution op on a tiny input (padding 1: outputs the size of the input)."""
    if device != "cpu":
        return []
    shape = (1, 2, 6, 6)
    return [
        overhead_case("conv2d", shape, _overhead_inputs,
                      lambda i: (i["x"], i["weight"], i["bias"], 1, 1),
                      lambda torch, t: (torch.nn.functional.conv2d, (t["x"], t["weight"], t["bias"], 1, 1))),
        overhead_case("conv2d_backward", shape, _overhead_inputs,
                      lambda i: (i["grad_y"], i["x"], i["weight"], 1, 1), _torch_backward(False, False)),
        overhead_case("conv_transpose2d", shape, _overhead_inputs,
                      lambda i: (i["x"], i["weight_t"], i["bias"], 1, 1),
                      lambda torch, t: (torch.nn.functional.conv_transpose2d,
                                        (t["x"], t["weight_t"], t["bias"], 1, 1))),
        overhead_case("conv_transpose2d_backward", shape, _overhead_inputs,
                      lambda i: (i["grad_y"], i["x"], i["weight_t"], 1, 1), _torch_backward(True, False)),
        overhead_case("conv1d", (1, 2, 16), _overhead_inputs,
                      lambda i: (i["x1"], i["weight1"], i["bias"], 1, 1),
                      lambda torch, t: (torch.nn.functional.conv1d, (t["x1"], t["weight1"], t["bias"], 1, 1))),
        overhead_case("conv1d_backward", (1, 2, 16), _overhead_inputs,
                      lambda i: (i["grad_y1"], i["x1"], i["weight1"], 1, 1), _torch_backward(False, True)),
    ]
