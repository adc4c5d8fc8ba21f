"""The CUDA kernels on a real GPU: the cases of tests/test_cuda_emulated.py
(which runs them on the emulated device, in every thread order) run here on
the device itself, plus shapes too large for the emulator, each twice to
check that results are bit-identical from run to run. Without a GPU every
test is skipped (reported as skipped, never as passed); bench/gpu_validate.sh
runs this file on a GPU, under compute-sanitizer too."""

from __future__ import annotations

import numpy as np
import pytest

import minidnn
import minidnn.reference as ref
from minidnn import _C, cuda
from conftest import assert_close
from test_cuda_emulated import (
    FORWARD,
    LOSS_CUDA_LARGE_SHAPES,
    LOSS_CUDA_SHAPES,
    LOSS_KINDS,
    SAVES_OUTPUT,
    SIZES,
    SOFTMAX_CASES,
    check_cross_entropy,
    check_nll_loss,
)
from test_softmax import assert_backward_close, check_special_values, logits

pytestmark = pytest.mark.skipif(
    not (cuda.is_built() and _C.cuda.device_count() > 0 and cuda._device() == "cuda"),
    reason="needs an NVIDIA GPU (bench/gpu_validate.sh)",
)

# Real network shapes: classifier and vocabulary logits, attention rows, NCHW
# class scores; far more blocks than the device has multiprocessors.
LARGE_SOFTMAX_CASES = [((4096, 1000), -1), ((512, 32000), -1), ((64, 262144), -1), ((96 * 128, 128), -1),
                       ((8, 21, 128, 128), 1)]

# The benchmark's classifier and vocabulary logits, and per-pixel class
# scores (inner > 1).
LARGE_LOSS_SHAPES = [(4096, 1000), (512, 32000), (64, 262144), (8, 21, 64, 64)]


def twice(kernel):
    """kernel() as NumPy, run twice; the two runs must agree bit for bit."""
    first, second = kernel().numpy(), kernel().numpy()
    assert np.array_equal(first.view(np.uint32), second.view(np.uint32)), "two runs differ"
    return first


def check_op_and_backward(rng, op, x, saved_is_output, check_backward, **kw):
    """op(x) and op_backward(grad_y, saved) on the GPU, each twice, against
    the reference; saved is y or x (see the op's backward)."""
    y = twice(lambda: getattr(minidnn, op)(cuda.to_device(x), **kw))
    assert_close(y, getattr(ref, op)(x, **kw))
    g = rng.standard_normal(x.shape).astype(np.float32)
    saved = y if saved_is_output else x
    grad_x = twice(lambda: getattr(minidnn, op + "_backward")(cuda.to_device(g), cuda.to_device(saved), **kw))
    check_backward(grad_x, g, saved)


@pytest.mark.parametrize("n", SIZES + [16 * 2**20 + 3])
@pytest.mark.parametrize("op", list(FORWARD))
def test_activations(rng, op, n):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[: min(n, 3)] = [0.0, np.nan, -np.inf][: min(n, 3)]

    def check_backward(grad_x, g, saved):
        assert_close(grad_x, getattr(ref, op + "_backward")(g, saved, **FORWARD[op]))

    check_op_and_backward(rng, op, x, SAVES_OUTPUT[op], check_backward, **FORWARD[op])


@pytest.mark.parametrize("shape,axis", SOFTMAX_CASES + LARGE_SOFTMAX_CASES, ids=str)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax(rng, op, shape, axis):
    def check_backward(grad_x, g, y):
        assert_backward_close(op, grad_x, g, y, axis)

    check_op_and_backward(rng, op, logits(rng, shape), True, check_backward, axis=axis)


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_special_values(op, axis):
    check_special_values(op, axis, lambda x: twice(lambda: getattr(minidnn, op)(cuda.to_device(x), axis=axis)))


@pytest.mark.parametrize("shape", LOSS_CUDA_SHAPES + LOSS_CUDA_LARGE_SHAPES + LARGE_LOSS_SHAPES, ids=str)
@pytest.mark.parametrize("kind,smoothing", LOSS_KINDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(rng, shape, kind, smoothing, weighted, reduction):
    check_cross_entropy(rng, shape, kind, smoothing, weighted, reduction, run=twice)


@pytest.mark.parametrize("shape", [(5, 3), (3, 1000), (2, 1025), (4, 5, 7), (6,), (4096, 1000), (64, 5, 1000)], ids=str)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(rng, shape, weighted, reduction):
    check_nll_loss(rng, shape, weighted, reduction, run=twice)


def test_empty_arrays_and_errors():
    for shape in [(0,), (3, 0), ()]:
        assert minidnn.relu(cuda.to_device(np.ones(shape, np.float32))).shape == shape
    x = cuda.to_device(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"y: expected an array on the device of grad_y \(cpu\), got one on cuda"):
        minidnn.softmax_backward(np.ones((2, 3), np.float32), x)
    with pytest.raises(TypeError, match="x: expected dtype float32, got int64"):
        minidnn.softmax(cuda.to_device(np.ones(3, np.int64)))
