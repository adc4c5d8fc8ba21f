"""Benchmark cases of the pooling family (issue 14): the ResNet stem max
pool 3x3/2 on (8, 64, 112, 112), 2x2/2 on (8, 256, 56, 56), average
pooling of the same (and 3x3/1 at 28, a peer figure of the issue), global
average pooling on (32, 2048, 7, 7), and adaptive average and max pooling
to 6 x 6 on AlexNet's (32, 256, 13, 13) (overlapping windows of 2 and 3);
forward and forward+backward. All are
memory-bound: `bytes` is the minimum traffic of a call, and the figure is
GB/s against the copy ceiling at the case's working set.

Peers: PyTorch (F.max_pool2d / avg_pool2d / adaptive_avg_pool2d, and their
autograd backward) and ONNX Runtime (one MaxPool / AveragePool /
GlobalAveragePool node; inference only; ONNX has no adaptive pooling to
other sizes). Cases at batch 8 and more are
checked against the float64 reference at batch 1.

The call-overhead group has every public op of the family on a tiny input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Tuple

import numpy as np

import minidnn
from minidnn import reference

from .harness import Case, Inputs, OverheadCase, onnx_model, overhead_case

CHECK_BATCH = 1


@dataclass(frozen=True)
class Pool:
    """One pooling layer: kind "max", "avg", "global" (adaptive average to
    1 x 1), "adaptive avg" or "adaptive max" (to output x output)."""

    kind: str
    shape: Tuple[int, int, int, int]
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    output: int = 1

    @property
    def label(self) -> str:
        if self.kind == "global":
            return f"global avg {'x'.join(map(str, self.shape))}"
        if self.kind.startswith("adaptive"):
            return f"{self.kind} {self.output}x{self.output} {'x'.join(map(str, self.shape))}"
        return f"{self.kind} {self.kernel}x{self.kernel}/{self.stride} {'x'.join(map(str, self.shape))}"

    @property
    def out_shape(self) -> Tuple[int, int, int, int]:
        n, c, h, w = self.shape
        if self.kind == "global":
            return n, c, 1, 1
        if self.kind.startswith("adaptive"):
            return n, c, self.output, self.output
        span = lambda size: (size + 2 * self.padding - self.kernel) // self.stride + 1  # noqa: E731
        return n, c, span(h), span(w)

    def at_batch(self, batch: int) -> "Pool":
        return replace(self, shape=(batch,) + self.shape[1:])

    def name(self, what: str) -> str:
        op = {"max": "max_pool2d", "avg": "avg_pool2d", "global": "adaptive_avg_pool2d",
              "adaptive avg": "adaptive_avg_pool2d", "adaptive max": "adaptive_max_pool2d"}[self.kind]
        return f"{op} {what} {self.label}"

    # The op, its reference and its backward, with this layer's arguments.
    @property
    def with_indices(self) -> bool:
        return self.kind in ("max", "adaptive max")

    def forward(self, lib: Any, x: np.ndarray, indices: bool = False) -> Any:
        if self.kind == "max":
            return lib.max_pool2d(x, self.kernel, self.stride, self.padding, return_indices=indices)
        if self.kind == "avg":
            return lib.avg_pool2d(x, self.kernel, self.stride, self.padding)
        if self.kind == "adaptive max":
            return lib.adaptive_max_pool2d(x, self.output, return_indices=indices)
        return lib.adaptive_avg_pool2d(x, self.output)

    def backward(self, lib: Any, grad_y: np.ndarray, indices: Optional[np.ndarray], shape: tuple) -> Any:
        if self.kind == "max":
            return lib.max_pool2d_backward(grad_y, indices, shape)
        if self.kind == "avg":
            return lib.avg_pool2d_backward(grad_y, shape, self.kernel, self.stride, self.padding)
        if self.kind == "adaptive max":
            return lib.adaptive_max_pool2d_backward(grad_y, indices, shape)
        return lib.adaptive_avg_pool2d_backward(grad_y, shape)

    def torch_forward(self, torch: Any, x: Any) -> Any:
        F = torch.nn.functional
        if self.kind == "max":
            return F.max_pool2d(x, self.kernel, self.stride, self.padding)
        if self.kind == "avg":
            return F.avg_pool2d(x, self.kernel, self.stride, self.padding)
        if self.kind == "adaptive max":
            return F.adaptive_max_pool2d(x, self.output)
        return F.adaptive_avg_pool2d(x, self.output)

    @property
    def onnx(self) -> Optional[Callable[[Inputs], Any]]:
        """The ONNX model maker, None where ONNX has no such node."""
        return None if self.kind.startswith("adaptive") else self._onnx

    def _onnx(self, inputs: Inputs) -> Any:
        if self.kind == "global":
            return onnx_model("GlobalAveragePool", inputs)
        attributes = dict(kernel_shape=[self.kernel] * 2, strides=[self.stride] * 2, pads=[self.padding] * 4)
        if self.kind == "avg":
            attributes["count_include_pad"] = 1  # PyTorch's default (ONNX's is 0)
        return onnx_model("MaxPool" if self.kind == "max" else "AveragePool", inputs, **attributes)


LAYERS = [
    Pool("max", (8, 64, 112, 112), 3, 2, 1),  # ResNet stem
    Pool("max", (8, 256, 56, 56), 2, 2, 0),
    Pool("avg", (8, 64, 112, 112), 3, 2, 1),
    Pool("avg", (8, 256, 56, 56), 2, 2, 0),
    Pool("avg", (8, 256, 28, 28), 3, 1, 1),
    Pool("global", (32, 2048, 7, 7)),
    Pool("adaptive avg", (32, 256, 13, 13), output=6),  # AlexNet's
    Pool("adaptive max", (32, 256, 13, 13), output=6),
]


def _make(layer: Pool) -> Callable[[np.random.Generator], Inputs]:
    return lambda rng: {"x": rng.standard_normal(layer.shape, dtype=np.float32)}


def _check(layer: Pool) -> Optional[Callable[[np.random.Generator], Inputs]]:
    return _make(layer.at_batch(CHECK_BATCH)) if layer.shape[0] > CHECK_BATCH else None


def _forward(layer: Pool) -> Case:
    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        x = torch.from_numpy(inputs["x"])
        return lambda: layer.torch_forward(torch, x)

    x, y = math.prod(layer.shape), math.prod(layer.out_shape)
    return Case(
        name=layer.name("fwd"),
        make=_make(layer),
        check=_check(layer),
        run=lambda inputs: layer.forward(minidnn, inputs["x"]),
        reference=lambda inputs: layer.forward(reference, inputs["x"]),
        bytes=4 * (x + y),
        torch=torch_call,
        onnx=layer.onnx,
    )


def _forward_backward(layer: Pool) -> Case:
    """One training step: y (with the indices for max pooling), then grad_x for grad_y = y."""
    indexed = layer.with_indices

    def run(inputs: Inputs) -> tuple:
        out = layer.forward(minidnn, inputs["x"], indices=indexed)
        y, idx = out if indexed else (out, None)
        return y, layer.backward(minidnn, y, idx, inputs["x"].shape)

    def ref_run(inputs: Inputs) -> tuple:
        out = layer.forward(reference, inputs["x"], indices=indexed)
        y, idx = out if indexed else (out, None)
        y32 = layer.forward(minidnn, inputs["x"])  # the same grad_y as run()
        return y, layer.backward(reference, y32, idx, inputs["x"].shape)

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        x = torch.from_numpy(inputs["x"]).requires_grad_()

        def call() -> tuple:
            x.grad = None
            with torch.enable_grad():
                y = layer.torch_forward(torch, x)
                y.backward(y.detach())
            return y.detach(), x.grad

        return call

    x, y = math.prod(layer.shape), math.prod(layer.out_shape)
    # Forward: reads x, writes y (and 8-byte indices); backward: reads
    # grad_y (and the indices), writes grad_x.
    index_bytes = 16 * y if indexed else 0
    return Case(
        name=layer.name("fwd+bwd"),
        make=_make(layer),
        check=_check(layer),
        run=run,
        reference=ref_run,
        bytes=8 * x + 8 * y + index_bytes,
        working_set=8 * x + 8 * y + index_bytes // 2,
        torch=torch_call,
    )


def cases(device: str, quick: bool) -> list[Case]:
    """The pooling cases on `device` (none on CUDA yet)."""
    if device != "cpu":
        return []
    return [*(_forward(layer) for layer in LAYERS), *(_forward_backward(layer) for layer in LAYERS)]


# ---------------------------------------------------------------- call overhead

OVERHEAD_X = (2, 4, 8, 8)
OVERHEAD_X1 = (2, 4, 16)


def _pooled(rng: np.random.Generator) -> Inputs:
    """x, the 2x2/2 max pooling's y and indices, a grad_y of its shape, and
    a global pooling's grad_y."""
    x = rng.standard_normal(OVERHEAD_X, dtype=np.float32)
    y, idx = reference.max_pool2d(x, 2, return_indices=True)
    return {"x": x, "y": y.astype(np.float32), "indices": idx,
            "grad_y": rng.standard_normal(y.shape, dtype=np.float32),
            "grad_g": rng.standard_normal(OVERHEAD_X[:2] + (1, 1), dtype=np.float32)}


def _pooled1d(rng: np.random.Generator) -> Inputs:
    return {"x": rng.standard_normal(OVERHEAD_X1, dtype=np.float32)}


def overhead_cases(device: str) -> list[OverheadCase]:
    """Every public op of the family on a tiny input: (2, 4, 8, 8), 2x2
    windows (global for the adaptive average), (2, 4, 16) for the 1-D forms."""
    if device != "cpu":
        return []
    aten = lambda torch: torch.ops.aten  # noqa: E731
    shape = OVERHEAD_X
    return [
        overhead_case("max_pool2d", shape, _pooled, lambda i: (i["x"], 2),
                      lambda torch, t: (torch.nn.functional.max_pool2d, (t["x"], 2))),
        overhead_case("max_pool2d_backward", shape, _pooled, lambda i: (i["grad_y"], i["indices"], shape),
                      lambda torch, t: (aten(torch).max_pool2d_with_indices_backward.default,
                                        (t["grad_y"], t["x"], [2, 2], [2, 2], [0, 0], [1, 1], False, t["indices"]))),
        overhead_case("avg_pool2d", shape, _pooled, lambda i: (i["x"], 2),
                      lambda torch, t: (torch.nn.functional.avg_pool2d, (t["x"], 2))),
        overhead_case("avg_pool2d_backward", shape, _pooled, lambda i: (i["grad_y"], shape, 2),
                      lambda torch, t: (aten(torch).avg_pool2d_backward.default,
                                        (t["grad_y"], t["x"], [2, 2], [2, 2], [0, 0], False, True, None))),
        overhead_case("adaptive_avg_pool2d", shape, _pooled, lambda i: (i["x"], 1),
                      lambda torch, t: (torch.nn.functional.adaptive_avg_pool2d, (t["x"], 1))),
        overhead_case("adaptive_avg_pool2d_backward", shape, _pooled, lambda i: (i["grad_g"], shape),
                      lambda torch, t: (aten(torch)._adaptive_avg_pool2d_backward.default, (t["grad_g"], t["x"]))),
        overhead_case("adaptive_max_pool2d", shape, _pooled, lambda i: (i["x"], 4),
                      lambda torch, t: (torch.nn.functional.adaptive_max_pool2d, (t["x"], 4))),
        overhead_case("adaptive_max_pool2d_backward", shape, _pooled, lambda i: (i["grad_y"], i["indices"], shape),
                      lambda torch, t: (aten(torch).adaptive_max_pool2d_backward.default,
                                        (t["grad_y"], t["x"], t["indices"]))),
        overhead_case("max_unpool2d", shape, _pooled, lambda i: (i["y"], i["indices"], 2),
                      lambda torch, t: (torch.nn.functional.max_unpool2d, (t["y"], t["indices"], 2))),
        overhead_case("max_pool1d", OVERHEAD_X1, _pooled1d, lambda i: (i["x"], 2),
                      lambda torch, t: (torch.nn.functional.max_pool1d, (t["x"], 2))),
        overhead_case("avg_pool1d", OVERHEAD_X1, _pooled1d, lambda i: (i["x"], 2),
                      lambda torch, t: (torch.nn.functional.avg_pool1d, (t["x"], 2))),
    ]
