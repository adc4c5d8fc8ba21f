"""Benchmark cases of the softmax family: softmax / log_softmax forward and
backward, cross-entropy forward and forward+backward, and the element-wise
activations. All are memory-bound: `bytes` is the minimum traffic of a call.
The call-overhead group has every public op of the family on a tiny input.

PyTorch and ONNX imports happen inside the peer builders, so this module
works without them (the harness skips peers that do not import).
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

import numpy as np

import minidnn
from minidnn import reference

from .harness import Case, Inputs, OverheadCase, onnx_model, overhead_case

CLASSIFIER_SHAPES = [(4096, 1000), (512, 32000), (64, 262144)]  # (N, C): classes, vocabularies
ACTIVATION_SIZE = 16 * 2**20
OVERHEAD_LOGITS = (8, 10)  # (N, C) for the call-overhead group
OVERHEAD_ACTIVATION = (64,)


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _normal(shape: tuple[int, ...]) -> Callable[[np.random.Generator], Inputs]:
    """make(): x standard normal."""
    return lambda rng: {"x": rng.standard_normal(shape, dtype=np.float32)}


def _logits_and_targets(shape: tuple[int, int]) -> Callable[[np.random.Generator], Inputs]:
    """make(): x standard normal (N, C) logits, target int64 class indices (N,)."""
    n, c = shape

    def make(rng: np.random.Generator) -> Inputs:
        return {
            "x": rng.standard_normal(shape, dtype=np.float32),
            "target": rng.integers(0, c, n, dtype=np.int64),
        }

    return make


def _softmax_forward(shape: tuple[int, ...], axis: int = -1, log: bool = False) -> Case:
    op, ref, op_name = (
        (minidnn.log_softmax, reference.log_softmax, "log_softmax")
        if log
        else (minidnn.softmax, reference.softmax, "softmax")
    )

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        x, fn = torch.as_tensor(inputs["x"]), torch.log_softmax if log else torch.softmax
        return lambda: fn(x, axis)

    suffix = "" if axis == -1 else f" axis={axis}"
    return Case(
        name=f"{op_name} fwd {_dims(shape)}{suffix}",
        make=_normal(shape),
        run=lambda inputs: op(inputs["x"], axis),
        reference=lambda inputs: ref(inputs["x"], axis),
        bytes=8 * int(np.prod(shape)),
        torch=torch_call,
        onnx=lambda inputs: onnx_model("LogSoftmax" if log else "Softmax", inputs, axis=axis),
    )


def _softmax_backward(shape: tuple[int, int]) -> Case:
    """softmax_backward(grad_y, y) with y a genuine softmax output."""

    def make(rng: np.random.Generator) -> Inputs:
        y = reference.softmax(rng.standard_normal(shape)).astype(np.float32)
        return {"grad_y": rng.standard_normal(shape, dtype=np.float32), "y": y}

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        grad_y, y = torch.as_tensor(inputs["grad_y"]), torch.as_tensor(inputs["y"])
        # The kernel autograd runs for softmax's backward (no public function exists).
        return lambda: torch.ops.aten._softmax_backward_data(grad_y, y, -1, torch.float32)

    return Case(
        name=f"softmax bwd {_dims(shape)}",
        make=make,
        run=lambda inputs: minidnn.softmax_backward(inputs["grad_y"], inputs["y"]),
        reference=lambda inputs: reference.softmax_backward(inputs["grad_y"], inputs["y"]),
        bytes=12 * int(np.prod(shape)),
        torch=torch_call,
    )


def _cross_entropy_forward(shape: tuple[int, int]) -> Case:
    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch
        import torch.nn.functional as F

        x, target = torch.as_tensor(inputs["x"]), torch.as_tensor(inputs["target"])
        return lambda: F.cross_entropy(x, target)

    return Case(
        name=f"cross_entropy fwd {_dims(shape)}",
        make=_logits_and_targets(shape),
        run=lambda inputs: minidnn.cross_entropy(inputs["x"], inputs["target"]),
        reference=lambda inputs: reference.cross_entropy(inputs["x"], inputs["target"]),
        bytes=4 * int(np.prod(shape)),
        torch=torch_call,
        onnx=lambda inputs: onnx_model("SoftmaxCrossEntropyLoss", inputs, reduction="mean"),
    )


def _cross_entropy_forward_backward(shape: tuple[int, int]) -> Case:
    """One call: the mean loss, then its gradient wrt the logits (grad_loss 1)."""

    def run(inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
        x, target = inputs["x"], inputs["target"]
        return minidnn.cross_entropy(x, target), minidnn.cross_entropy_backward(1.0, x, target)

    def ref(inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
        x, target = inputs["x"], inputs["target"]
        return reference.cross_entropy(x, target), reference.cross_entropy_backward(1.0, x, target)

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch
        import torch.nn.functional as F

        x = torch.as_tensor(inputs["x"]).requires_grad_()
        target = torch.as_tensor(inputs["target"])

        def call() -> tuple[Any, Any]:
            x.grad = None
            with torch.enable_grad():
                loss = F.cross_entropy(x, target)
                loss.backward()
            return loss.detach(), x.grad

        return call

    return Case(
        name=f"cross_entropy fwd+bwd {_dims(shape)}",
        make=_logits_and_targets(shape),
        run=run,
        reference=ref,
        bytes=12 * int(np.prod(shape)),  # forward reads x; backward reads x, writes grad
        working_set=8 * int(np.prod(shape)),  # x and grad
        torch=torch_call,
    )


def _activation_forward(name: str, onnx_op: str) -> Case:
    op, ref = getattr(minidnn, name), getattr(reference, name)

    def torch_call(inputs: Inputs) -> Callable[[], Any]:
        import torch

        x, fn = torch.as_tensor(inputs["x"]), getattr(torch, name)
        return lambda: fn(x)

    return Case(
        name=f"{name} fwd {ACTIVATION_SIZE // 2**20}M",
        make=lambda rng: {"x": 3 * rng.standard_normal(ACTIVATION_SIZE, dtype=np.float32)},
        run=lambda inputs: op(inputs["x"]),
        reference=lambda inputs: ref(inputs["x"]),
        bytes=8 * ACTIVATION_SIZE,
        torch=torch_call,
        onnx=lambda inputs: onnx_model(onnx_op, inputs),
    )


def cases(device: str, quick: bool) -> list[Case]:
    """The softmax-family cases on `device` (every op of the family has CUDA
    kernels; there the timed calls take minidnn.cuda.Arrays, which the
    PyTorch calls view through torch.as_tensor). The suite is the same with
    `quick`: the harness shrinks the repeats, not the shapes."""
    if device not in ("cpu", "cuda"):
        return []
    softmax = [
        *(_softmax_forward(shape) for shape in CLASSIFIER_SHAPES),
        _softmax_forward((96, 128, 128)),  # attention: 96 heads x 128 queries, rows of 128 keys
        _softmax_forward((8, 21, 128, 128), axis=1),  # per-pixel class scores, NCHW
        *(_softmax_forward(shape, log=True) for shape in CLASSIFIER_SHAPES),
        *(_softmax_backward(shape) for shape in CLASSIFIER_SHAPES[:2]),
    ]
    cross_entropy = [
        *(_cross_entropy_forward(shape) for shape in CLASSIFIER_SHAPES),
        *(_cross_entropy_forward_backward(shape) for shape in CLASSIFIER_SHAPES),
    ]
    activations = [
        _activation_forward("relu", "Relu"),
        _activation_forward("sigmoid", "Sigmoid"),
        _activation_forward("tanh", "Tanh"),
    ]
    return [*softmax, *cross_entropy, *activations]


# ---------------------------------------------------------------- call overhead
#
# PyTorch's side of each op is the call its user makes: the public function
# for the forwards (torch.softmax, F.cross_entropy, ...); for the backwards,
# which have no public function, the ATen kernel autograd runs, through its
# fastest Python binding (torch._softmax_backward_data where torch exposes
# one, else torch.ops.aten.<op>.default). The loss backwards get what
# PyTorch's forward saved (log-probabilities, total weight), prepared outside
# the timed call, while minidnn's backwards take the logits and recompute:
# the comparison is as strict for minidnn as PyTorch's training loop is kind
# to PyTorch.


def _with_output(forward: Callable[[np.ndarray], np.ndarray], shape: Tuple[int, ...],
                 scale: float = 1.0) -> Callable[[np.random.Generator], Inputs]:
    """make(): x (scale * standard normal), y = forward(x) in float32, and grad_y."""

    def make(rng: np.random.Generator) -> Inputs:
        x = scale * rng.standard_normal(shape, dtype=np.float32)
        return {"x": x, "y": forward(x).astype(np.float32),
                "grad_y": rng.standard_normal(shape, dtype=np.float32)}

    return make


def _loss_inputs(rng: np.random.Generator) -> Inputs:
    """Logits, their log-probabilities, class targets and a unit grad_loss."""
    n, c = OVERHEAD_LOGITS
    x = rng.standard_normal(OVERHEAD_LOGITS, dtype=np.float32)
    return {"x": x, "log_probs": reference.log_softmax(x).astype(np.float32),
            "target": rng.integers(0, c, n, dtype=np.int64),
            "grad_loss": np.array(1.0, dtype=np.float32)}


def _torch_loss_backward(torch: Any, t: dict, log_probs: Any) -> Callable[[Any], Any]:
    """PyTorch's nll_loss backward ("mean", no weight) from its saved tensors."""
    aten = torch.ops.aten
    mean, ignore_index = 1, -100  # ATen's reduction code for "mean"; F.nll_loss's default
    total_weight = aten.nll_loss_forward.default(log_probs, t["target"], None, mean, ignore_index)[1]
    return lambda grad_loss: aten.nll_loss_backward.default(
        grad_loss, log_probs, t["target"], None, mean, ignore_index, total_weight)


def _torch_cross_entropy_backward(torch: Any, t: dict) -> tuple[Callable[..., Any], tuple]:
    log_probs = torch.log_softmax(t["x"], 1)
    nll_backward = _torch_loss_backward(torch, t, log_probs)

    def backward(grad_loss: Any) -> Any:
        return torch._log_softmax_backward_data(nll_backward(grad_loss), log_probs, 1, torch.float32)

    return backward, (t["grad_loss"],)


def overhead_cases(device: str) -> list[OverheadCase]:
    """Every public op of the family on a tiny input: (8, 10) logits, (64,)
    activations."""
    if device != "cpu":
        return []
    logits, act = OVERHEAD_LOGITS, OVERHEAD_ACTIVATION
    softmax_outputs = _with_output(reference.softmax, logits)
    log_softmax_outputs = _with_output(reference.log_softmax, logits)
    relu_inputs = _with_output(reference.relu, act, scale=3.0)  # the relu ops read x, not y
    sigmoid_outputs = _with_output(reference.sigmoid, act, scale=3.0)
    tanh_outputs = _with_output(reference.tanh, act, scale=3.0)

    def x_only(inputs: Inputs) -> tuple:
        return (inputs["x"],)

    def grad_y_y(inputs: Inputs) -> tuple:
        return inputs["grad_y"], inputs["y"]

    def grad_y_x(inputs: Inputs) -> tuple:
        return inputs["grad_y"], inputs["x"]

    return [
        overhead_case("softmax", logits, softmax_outputs, x_only,
                       lambda torch, t: (torch.softmax, (t["x"], -1))),
        overhead_case("log_softmax", logits, log_softmax_outputs, x_only,
                       lambda torch, t: (torch.log_softmax, (t["x"], -1))),
        overhead_case("softmax_backward", logits, softmax_outputs, grad_y_y,
                       lambda torch, t: (torch._softmax_backward_data,
                                         (t["grad_y"], t["y"], -1, torch.float32))),
        overhead_case("log_softmax_backward", logits, log_softmax_outputs, grad_y_y,
                       lambda torch, t: (torch._log_softmax_backward_data,
                                         (t["grad_y"], t["y"], -1, torch.float32))),
        overhead_case("cross_entropy", logits, _loss_inputs,
                       lambda inputs: (inputs["x"], inputs["target"]),
                       lambda torch, t: (torch.nn.functional.cross_entropy, (t["x"], t["target"]))),
        overhead_case("cross_entropy_backward", logits, _loss_inputs,
                       lambda inputs: (inputs["grad_loss"], inputs["x"], inputs["target"]),
                       _torch_cross_entropy_backward),
        overhead_case("nll_loss", logits, _loss_inputs,
                       lambda inputs: (inputs["log_probs"], inputs["target"]),
                       lambda torch, t: (torch.nn.functional.nll_loss, (t["log_probs"], t["target"]))),
        overhead_case("nll_loss_backward", logits, _loss_inputs,
                       lambda inputs: (inputs["grad_loss"], inputs["log_probs"], inputs["target"]),
                       lambda torch, t: (_torch_loss_backward(torch, t, t["log_probs"]),
                                         (t["grad_loss"],))),
        overhead_case("relu", act, relu_inputs, x_only,
                       lambda torch, t: (torch.relu, (t["x"],))),
        overhead_case("relu_backward", act, relu_inputs, grad_y_x,
                       lambda torch, t: (torch.ops.aten.threshold_backward.default, (t["grad_y"], t["x"], 0))),
        overhead_case("leaky_relu", act, relu_inputs, x_only,
                       lambda torch, t: (torch.nn.functional.leaky_relu, (t["x"],))),
        overhead_case("leaky_relu_backward", act, relu_inputs, grad_y_x,
                       lambda torch, t: (torch.ops.aten.leaky_relu_backward.default,
                                         (t["grad_y"], t["x"], 0.01, False))),
        overhead_case("sigmoid", act, sigmoid_outputs, x_only,
                       lambda torch, t: (torch.sigmoid, (t["x"],))),
        overhead_case("sigmoid_backward", act, sigmoid_outputs, grad_y_y,
                       lambda torch, t: (torch.ops.aten.sigmoid_backward.default, (t["grad_y"], t["y"]))),
        overhead_case("tanh", act, tanh_outputs, x_only,
                       lambda torch, t: (torch.tanh, (t["x"],))),
        overhead_case("tanh_backward", act, tanh_outputs, grad_y_y,
                       lambda torch, t: (torch.ops.aten.tanh_backward.default, (t["grad_y"], t["y"]))),
    ]
