"""Benchmark cases of the convolution family: conv2d, conv_transpose2d and
conv1d, forward and forward+backward, on layers of real networks (ResNet-50,
MobileNet, EfficientNet, VGG, ResNeXt, a DCGAN generator, WaveNet).

Compute-bound accounting: `flops` is set, so every case is measured against
the machine's SGEMM ceiling. The FLOPs are those of direct convolution,
2 * N * K * (C / groups) * R * S * P * Q for a forward (the transposed
convolution counts 2 * N * C * (K / groups) * R * S * H * W, its input
pixels times its taps), whatever algorithm runs (Winograd can pass 100%);
a backward counts twice the forward (data and weight gradients) plus the
N * K * P * Q additions of the bias gradient. Depthwise layers are
memory-bound: their GB/s (minimum traffic: x, weight, bias, y once) is the
figure to read there.

Batches. Every forward runs at batch 1 (inference latency) and batch 8
(throughput, the batch of the issue's peer figures), except VGG's 224x224
layer, at batch 1 only: one image is already 3.7 GFLOP (a call of 10-25
ms, long enough to time stably), and batch 8 would spend about a quarter of
the family's time on 30 GFLOP per call that measure the same 3x3 64->64
algorithm as ResNet's 56x56 layer at batch 8. Forward+backward runs at
batch 8 only: training runs batches, and at batch 1 the weight gradient's
reduction over images, the part a training step adds, has nothing to
reduce. With these choices the family (both groups) runs in about 4 minutes
on the 2-core CI machine.

Reference check. Cases at batch 8 are checked against the float64
reference at batch 2 (the same layer; two images so that the batch stride
is exercised): the NumPy reference runs at about 2 GFLOP/s, and the batch-8
references would take over a minute. The timed batch-8 outputs are still
compared with PyTorch's and ONNX Runtime's (a warning above 1e-4).

Peers. PyTorch runs torch.nn.functional (conv2d, conv_transpose2d,
conv1d; the causal conv1d pads with F.pad first, as a PyTorch model must)
and autograd for forward+backward (x, weight and bias all require
gradients, so it computes what conv*_backward computes). ONNX Runtime runs
a one-node Conv / ConvTranspose model whose weight and bias are
initializers, as in a deployed model: that lets ORT prepack the weights
into its blocked (NCHWc) layout, which measured 1.3-3.3x faster here than
the same model with the weights as graph inputs. ORT only infers, so it has
no forward+backward cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

import minidnn
from minidnn import reference

from .harness import Case, Inputs, OverheadCase, overhead_case

Padding = Union[int, str]  # the forms the cases use: symmetric, or "causal" (conv1d)

BATCHES = (1, 8)
CHECK_BATCH = 2  # the batch at which batch-8 cases are checked against the reference

# 3x3 stride-1 layers with many channels may run Winograd, whose error the
# issue allows up to 1e-4 (relative, element-wise in its test; this check
# takes norms, where it is smaller still). Everything else is a direct sum.
TOL_DIRECT, TOL_WINOGRAD = 1e-5, 1e-4


@dataclass(frozen=True)
class Layer:
    """One convolution layer: op is "conv2d", "conv_transpose2d" or
    "conv1d"; size is the input's (H, W) or (L,); kernel likewise (R, S) or
    (S,). For conv_transpose2d, c is its input channels and k its output
    channels, and the weight is (C, K / groups, R, S) as in PyTorch."""

    label: str
    op: str
    c: int
    k: int
    size: Tuple[int, ...]
    kernel: Tuple[int, ...]
    stride: int = 1
    padding: Padding = 0
    dilation: int = 1
    groups: int = 1
    output_padding: int = 0  # conv_transpose2d only
    batch: int = 1

    @property
    def transposed(self) -> bool:
        return self.op == "conv_transpose2d"

    @property
    def pads(self) -> Tuple[Tuple[int, int], ...]:
        """(before, after) per spatial axis."""
        if self.padding == "causal":
            return ((self.dilation * (self.kernel[0] - 1), 0),)
        return tuple((self.padding, self.padding) for _ in self.size)

    @property
    def out_size(self) -> Tuple[int, ...]:
        sizes = []
        for size, kernel, (before, after) in zip(self.size, self.kernel, self.pads):
            span = self.dilation * (kernel - 1) + 1
            if self.transposed:
                sizes.append((size - 1) * self.stride + span + self.output_padding - before - after)
            else:
                sizes.append((size + before + after - span) // self.stride + 1)
        return tuple(sizes)

    @property
    def x_shape(self) -> Tuple[int, ...]:
        return (self.batch, self.c, *self.size)

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        if self.transposed:
            return (self.c, self.k // self.groups, *self.kernel)
        return (self.k, self.c // self.groups, *self.kernel)

    @property
    def y_shape(self) -> Tuple[int, ...]:
        return (self.batch, self.k, *self.out_size)

    @property
    def forward_flops(self) -> int:
        """Direct convolution: one multiply-add per weight tap per output
        (per input pixel for the transposed convolution)."""
        taps = math.prod(self.weight_shape)  # K * C/g * R * S, or C * K/g * R * S
        pixels = math.prod(self.size if self.transposed else self.out_size)
        return 2 * self.batch * taps * pixels

    @property
    def kwargs(self) -> dict:
        """The geometry arguments of minidnn's op, its reference and its backward."""
        kwargs = {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                  "groups": self.groups}
        if self.transposed:
            kwargs["output_padding"] = self.output_padding
        return kwargs

    def at_batch(self, batch: int) -> "Layer":
        return replace(self, batch=batch)

    def name(self, what: str) -> str:
        return f"{self.op} {what} {self.label} N={self.batch}"


# The layers (input size, channels in -> out). MobileNet's depthwise layers
# are v1's; the 5x5 depthwise is EfficientNet-B0's at 28 (expanded 40 -> 240
# channels), the shape of the 5x5 peer figure.
LAYERS = [
    Layer("resnet50 conv1 7x7/2 224 3->64", "conv2d", 3, 64, (224, 224), (7, 7), stride=2, padding=3),
    *(Layer(f"resnet50 3x3 {hw} {c}->{c}", "conv2d", c, c, (hw, hw), (3, 3), padding=1)
      for hw, c in ((56, 64), (28, 128), (14, 256), (7, 512))),
    *(Layer(f"resnet50 1x1 {hw} {c}->{k}", "conv2d", c, k, (hw, hw), (1, 1))
      for hw, c, k in ((56, 64, 256), (56, 256, 64), (14, 1024, 256), (14, 256, 1024))),
    Layer("mobilenet dw3x3 112 32", "conv2d", 32, 32, (112, 112), (3, 3), padding=1, groups=32),
    Layer("mobilenet dw3x3 56 128", "conv2d", 128, 128, (56, 56), (3, 3), padding=1, groups=128),
    Layer("mobilenet dw3x3/2 56 128", "conv2d", 128, 128, (56, 56), (3, 3), stride=2, padding=1,
          groups=128),
    Layer("efficientnet dw5x5 28 240", "conv2d", 240, 240, (28, 28), (5, 5), padding=2, groups=240),
    Layer("resnext g32 3x3 28 256", "conv2d", 256, 256, (28, 28), (3, 3), padding=1, groups=32),
    Layer("dcgan 4x4/2 14 256->128", "conv_transpose2d", 256, 128, (14, 14), (4, 4), stride=2,
          padding=1),
    Layer("wavenet k2 d8 causal L16000 64", "conv1d", 64, 64, (16000,), (2,), dilation=8,
          padding="causal"),
]
VGG = Layer("vgg 3x3 224 64->64", "conv2d", 64, 64, (224, 224), (3, 3), padding=1)


def _tol(layer: Layer) -> float:
    winograd = (layer.op == "conv2d" and layer.kernel == (3, 3) and layer.stride == 1
                and layer.dilation == 1 and layer.groups == 1)
    return TOL_WINOGRAD if winograd else TOL_DIRECT


def _make(layer: Layer) -> Callable[[np.random.Generator], Inputs]:
    """make(): x standard normal, weight scaled by 1/sqrt(fan-in) (outputs of
    order 1, as in a trained network), bias standard normal."""
    fan_in = math.prod(layer.weight_shape[1:])
    if layer.transposed:  # each output sums C/g * R*S / stride^2 products on average
        fan_in = max(1, layer.c // layer.groups * math.prod(layer.kernel) // layer.stride ** 2)

    def make(rng: np.random.Generator) -> Inputs:
        return {
            "x": rng.standard_normal(layer.x_shape, dtype=np.float32),
            "weight": rng.standard_normal(layer.weight_shape, dtype=np.float32) / np.float32(math.sqrt(fan_in)),
            "bias": rng.standard_normal(layer.k, dtype=np.float32),
        }

    return make


def _check(layer: Layer) -> Optional[Callable[[np.random.Generator], Inputs]]:
    return _make(layer.at_batch(CHECK_BATCH)) if layer.batch > CHECK_BATCH else None


def _bytes(layer: Layer) -> int:
    """x, weight, bias and y, each once (float32)."""
    return 4 * (math.prod(layer.x_shape) + math.prod(layer.weight_shape) + layer.k
                + math.prod(layer.y_shape))


# ---------------------------------------------------------------- PyTorch


def _torch_forward(torch: Any, layer: Layer) -> Callable[..., Any]:
    """f(x, weight, bias) -> y with PyTorch's functional op."""
    F = torch.nn.functional
    if layer.op == "conv2d":
        return lambda x, w, b: F.conv2d(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)
    if layer.op == "conv_transpose2d":
        return lambda x, w, b: F.conv_transpose2d(x, w, b, layer.stride, layer.padding,
                                                  layer.output_padding, layer.groups, layer.dilation)
    if layer.padding == "causal":  # PyTorch has no causal padding: pad the left, then convolve
        left = layer.pads[0][0]
        return lambda x, w, b: F.conv1d(F.pad(x, (left, 0)), w, b, layer.stride, 0, layer.dilation,
                                        layer.groups)
    return lambda x, w, b: F.conv1d(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)


def _tensors(torch: Any, inputs: Inputs, requires_grad: bool = False) -> tuple:
    return tuple(torch.from_numpy(inputs[name]).requires_grad_(requires_grad)
                 for name in ("x", "weight", "bias"))


# ---------------------------------------------------------------- ONNX


def _onnx_model(layer: Layer, inputs: Inputs) -> Any:
    """One Conv or ConvTranspose node, x the graph input, weight and bias
    initializers."""
    import onnx
    from onnx import helper, numpy_helper

    attributes = {
        "kernel_shape": list(layer.kernel),
        "strides": [layer.stride] * len(layer.kernel),
        "dilations": [layer.dilation] * len(layer.kernel),
        # ONNX orders pads as all the befores, then all the afters.
        "pads": [before for before, _ in layer.pads] + [after for _, after in layer.pads],
        "group": layer.groups,
    }
    if layer.transposed:
        attributes["output_padding"] = [layer.output_padding] * len(layer.kernel)
    node = helper.make_node("ConvTranspose" if layer.transposed else "Conv",
                            ["x", "weight", "bias"], ["y"], **attributes)
    graph = helper.make_graph(
        [node], layer.op,
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, inputs["x"].shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(inputs[name], name) for name in ("weight", "bias")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


# ---------------------------------------------------------------- cases


def _forward(layer: Layer) -> Case:
    op, ref = getattr(minidnn, layer.op), getattr(reference, layer.op)

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        forward, (x, w, b) = _torch_forward(torch, layer), _tensors(torch, inputs)
        return lambda: forward(x, w, b)

    return Case(
        name=layer.name("fwd"),
        make=_make(layer),
        check=_check(layer),
        run=lambda inputs: op(inputs["x"], inputs["weight"], inputs["bias"], **layer.kwargs),
        reference=lambda inputs: ref(inputs["x"], inputs["weight"], inputs["bias"], **layer.kwargs),
        bytes=_bytes(layer),
        flops=layer.forward_flops,
        torch=torch_call,
        onnx=lambda inputs: _onnx_model(layer, inputs),
        tol=_tol(layer),
    )


def _forward_backward(layer: Layer) -> Case:
    """One training step of the layer: y, then (grad_x, grad_weight,
    grad_bias) for grad_y = y."""
    op, ref = getattr(minidnn, layer.op), getattr(reference, layer.op)
    op_backward = getattr(minidnn, f"{layer.op}_backward")
    ref_backward = getattr(reference, f"{layer.op}_backward")

    def run(inputs: Inputs) -> tuple[np.ndarray, ...]:
        x, w, b = inputs["x"], inputs["weight"], inputs["bias"]
        y = op(x, w, b, **layer.kwargs)
        return (y, *op_backward(y, x, w, **layer.kwargs))

    def ref_run(inputs: Inputs) -> tuple[np.ndarray, ...]:
        x, w, b = inputs["x"], inputs["weight"], inputs["bias"]
        y = op(x, w, b, **layer.kwargs)  # the same grad_y as run(), so only the backward is compared
        return (ref(x, w, b, **layer.kwargs), *ref_backward(y, x, w, **layer.kwargs))

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        forward, (x, w, b) = _torch_forward(torch, layer), _tensors(torch, inputs, requires_grad=True)

        def call() -> tuple[Any, ...]:
            x.grad = w.grad = b.grad = None
            with torch.enable_grad():
                y = forward(x, w, b)
                y.backward(y.detach())
            return y.detach(), x.grad, w.grad, b.grad

        return call

    x, w, y = (math.prod(shape) for shape in (layer.x_shape, layer.weight_shape, layer.y_shape))
    return Case(
        name=layer.name("fwd+bwd"),
        make=_make(layer),
        check=_check(layer),
        run=run,
        reference=ref_run,
        # Forward: x, weight, bias, y. Backward: reads grad_y, x, weight;
        # writes grad_x, grad_weight, grad_bias.
        bytes=4 * (3 * x + 3 * w + 2 * layer.k + 2 * y),
        flops=3 * layer.forward_flops + layer.batch * layer.k * math.prod(layer.out_size),
        torch=torch_call,
        tol=_tol(layer),
    )


def cases(device: str, quick: bool) -> list[Case]:
    """The convolution cases on `device` (none on CUDA yet). The suite is the
    same with `quick`: the harness shrinks the repeats, not the shapes."""
    if device != "cpu":
        return []
    return [
        *(_forward(layer.at_batch(batch)) for batch in BATCHES for layer in LAYERS),
        _forward(VGG),
        *(_forward_backward(layer.at_batch(8)) for layer in LAYERS),
    ]


# ---------------------------------------------------------------- call overhead
#
# Each op on a tiny input: conv2d on (1, 3, 8, 8) with a 3x3 kernel into 4
# channels, its transposed twin from those 4 channels back to 3, conv1d on
# (1, 4, 16) with a kernel of 3; padding 1 keeps the sizes. PyTorch's side
# of a backward is the ATen kernel autograd runs,
# aten.convolution_backward, asked for all three gradients.

OVERHEAD_CONV2D = (1, 3, 8, 8)
OVERHEAD_CONV1D = (1, 4, 16)
OVERHEAD_K = 4  # output channels of conv2d and conv1d (input channels of conv_transpose2d)


def _overhead_inputs(x_shape: Tuple[int, ...], weight_shape: Tuple[int, ...], y_shape: Tuple[int, ...],
                     bias: int) -> Callable[[np.random.Generator], Inputs]:
    def make(rng: np.random.Generator) -> Inputs:
        return {
            "x": rng.standard_normal(x_shape, dtype=np.float32),
            "weight": rng.standard_normal(weight_shape, dtype=np.float32),
            "bias": rng.standard_normal(bias, dtype=np.float32),
            "grad_y": rng.standard_normal(y_shape, dtype=np.float32),
        }

    return make


def _torch_backward(transposed: bool, dims: int) -> Callable[[Any, dict], tuple[Callable[..., Any], tuple]]:
    """aten.convolution_backward for stride 1, padding 1, all three gradients."""

    def torch_call(torch: Any, t: dict) -> tuple[Callable[..., Any], tuple]:
        bias_sizes = [t["weight"].shape[1 if transposed else 0]]
        ones, zeros = [1] * dims, [0] * dims
        return torch.ops.aten.convolution_backward.default, (
            t["grad_y"], t["x"], t["weight"], bias_sizes, ones, ones, ones, transposed, zeros, 1,
            [True, True, True])

    return torch_call


def overhead_cases(device: str) -> list[OverheadCase]:
    """Every op of the family on a tiny input."""
    if device != "cpu":
        return []
    n, c, h, w = OVERHEAD_CONV2D
    conv2d_inputs = _overhead_inputs(OVERHEAD_CONV2D, (OVERHEAD_K, c, 3, 3), (n, OVERHEAD_K, h, w), OVERHEAD_K)
    transpose_shape = (n, OVERHEAD_K, h, w)
    transpose_inputs = _overhead_inputs(transpose_shape, (OVERHEAD_K, c, 3, 3), OVERHEAD_CONV2D, c)
    n1, c1, length = OVERHEAD_CONV1D
    conv1d_inputs = _overhead_inputs(OVERHEAD_CONV1D, (OVERHEAD_K, c1, 3), (n1, OVERHEAD_K, length), OVERHEAD_K)

    def forward_args(inputs: Inputs) -> tuple:
        return inputs["x"], inputs["weight"], inputs["bias"], 1, 1  # stride 1, padding 1

    def backward_args(inputs: Inputs) -> tuple:
        return inputs["grad_y"], inputs["x"], inputs["weight"], 1, 1

    return [
        overhead_case("conv2d", OVERHEAD_CONV2D, conv2d_inputs, forward_args,
                      lambda torch, t: (torch.nn.functional.conv2d, (t["x"], t["weight"], t["bias"], 1, 1))),
        overhead_case("conv2d_backward", OVERHEAD_CONV2D, conv2d_inputs, backward_args,
                      _torch_backward(transposed=False, dims=2)),
        overhead_case("conv_transpose2d", transpose_shape, transpose_inputs, forward_args,
                      lambda torch, t: (torch.nn.functional.conv_transpose2d,
                                        (t["x"], t["weight"], t["bias"], 1, 1))),
        overhead_case("conv_transpose2d_backward", transpose_shape, transpose_inputs, backward_args,
                      _torch_backward(transposed=True, dims=2)),
        overhead_case("conv1d", OVERHEAD_CONV1D, conv1d_inputs, forward_args,
                      lambda torch, t: (torch.nn.functional.conv1d, (t["x"], t["weight"], t["bias"], 1, 1))),
        overhead_case("conv1d_backward", OVERHEAD_CONV1D, conv1d_inputs, backward_args,
                      _torch_backward(transposed=False, dims=1)),
    ]
