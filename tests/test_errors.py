"""Bad input raises TypeError / ValueError / IndexError naming the argument,
what was expected and what was given; nothing crashes or writes out of
bounds."""

from __future__ import annotations

import numpy as np
import pytest

import minidnn

from conftest import assert_raises_naming

X = np.ones((4, 5), dtype=np.float32)
T = np.array([0, 1, 2, 3], dtype=np.int64)


@pytest.mark.parametrize(
    "call,error,words",
    [
        (lambda: minidnn.softmax(X.astype(np.float64)), TypeError, ["x", "float32", "float64"]),
        (lambda: minidnn.softmax([[1.0, 2.0]]), TypeError, ["x", "ndarray", "list"]),
        (lambda: minidnn.softmax(X, axis=2), ValueError, ["axis", "[-2, 1]", "2"]),
        (lambda: minidnn.softmax(X, axis=1.0), TypeError, ["axis", "int", "float"]),
        (lambda: minidnn.log_softmax(X, axis=-3), ValueError, ["axis", "-3"]),
        (lambda: minidnn.softmax_backward(X, X[:, :4]), ValueError, ["grad_y", "(4, 4)", "(4, 5)"]),
        (lambda: minidnn.softmax_backward(X.astype(np.float16), X), TypeError, ["grad_y", "float16"]),
        (lambda: minidnn.cross_entropy(X, T[:3]), ValueError, ["target", "(4,)", "(3,)"]),
        (lambda: minidnn.cross_entropy(X, T.astype(np.uint8)), TypeError, ["target", "uint8"]),
        (lambda: minidnn.cross_entropy(X, X.astype(np.float64)), TypeError, ["target", "float64"]),
        (lambda: minidnn.cross_entropy(X, X[:, :3]), ValueError, ["target", "(4, 3)", "(4, 5)"]),
        (lambda: minidnn.cross_entropy(X, np.array([0, 1, 5, 2])), IndexError, ["target", "[0, 4]", "5"]),
        (lambda: minidnn.cross_entropy(X, np.array([0, -1, 2, 2])), IndexError, ["target", "-1"]),
        (lambda: minidnn.cross_entropy(X, T, weight=np.ones(4, np.float32)), ValueError, ["weight", "(5,)", "(4,)"]),
        (lambda: minidnn.cross_entropy(X, T, weight=np.ones(5)), TypeError, ["weight", "float64"]),
        (lambda: minidnn.cross_entropy(X, T, reduction="avg"), ValueError, ["reduction", "'avg'"]),
        (lambda: minidnn.cross_entropy(X, T, label_smoothing=1.5), ValueError, ["label_smoothing", "1.5"]),
        (lambda: minidnn.cross_entropy(X, T, label_smoothing=-0.1), ValueError, ["label_smoothing"]),
        (lambda: minidnn.cross_entropy(X, T, ignore_index=1.0), TypeError, ["ignore_index", "int"]),
        (lambda: minidnn.cross_entropy(np.float32(1.0), T), ValueError, ["logits", "()"]),
        (lambda: minidnn.cross_entropy(np.ones((4, 0), np.float32), T), ValueError, ["logits", "class"]),
        (lambda: minidnn.cross_entropy_backward(np.ones(3, np.float32), X, T, reduction="none"), ValueError,
         ["grad_loss", "(4,)", "(3,)"]),
        (lambda: minidnn.cross_entropy_backward(np.ones(4, np.float32), X, T), ValueError, ["grad_loss", "(4,)"]),
        (lambda: minidnn.cross_entropy_backward("1", X, T), TypeError, ["grad_loss", "str"]),
        (lambda: minidnn.nll_loss(X, X), TypeError, ["target", "float32"]),
        (lambda: minidnn.nll_loss(X, np.array([9, 0, 0, 0])), IndexError, ["target", "9"]),
        (lambda: minidnn.nll_loss_backward(1.0, X, np.array([0, 0, 0, 99])), IndexError, ["target", "99"]),
        (lambda: minidnn.leaky_relu(X, negative_slope="0.1"), TypeError, ["negative_slope", "str"]),
        (lambda: minidnn.sigmoid_backward(X, X.T), ValueError, ["grad_y", "(5, 4)"]),
        (lambda: minidnn.relu(X.astype(np.int32)), TypeError, ["x", "int32"]),
        (lambda: minidnn.set_num_threads(0), ValueError, ["n", ">= 1", "0"]),
        (lambda: minidnn.set_num_threads(2.0), TypeError, ["n", "int", "float"]),
        (lambda: minidnn.set_num_threads(True), TypeError, ["n", "bool"]),
    ],
)
def test_bad_input(call, error, words):
    assert_raises_naming(call, error, words)


def test_ignore_index_out_of_class_range_is_fine():
    t = np.array([0, -100, 2, 3])
    assert np.isfinite(minidnn.cross_entropy(X, t))


def test_cuda_array_rejected_with_a_clear_message():
    class FakeCudaArray:
        __cuda_array_interface__ = {"shape": (4, 5), "typestr": "<f4", "data": (0, False), "version": 3}

    # softmax has CUDA kernels and takes such arrays (tests/test_cuda_interop.py), checking what they describe.
    with pytest.raises(ValueError, match="x: expected a device address, got a null pointer"):
        minidnn.softmax(FakeCudaArray())
    with pytest.raises(TypeError, match="x: expected a NumPy array"):
        minidnn.linear(FakeCudaArray(), np.ones((3, 5), np.float32))


def test_entries_take_only_what_the_kernels_read():
    """A _C entry called directly, skipping the Python validation, returns
    None for anything but exactly the arrays and values its kernel reads,
    and never reads or writes out of bounds."""
    from minidnn import _C

    t = np.array([0, 1, 2, 3], dtype=np.int64)
    assert _C.cross_entropy(X, t, None, -100, "mean", 0.0) is not None
    assert _C.cross_entropy(X, np.array([0, 7, 1, 2]), None, -100, "mean", 0.0) is None  # class out of range
    assert _C.cross_entropy(X, np.array([0, -3, 1, 2]), None, -100, "mean", 0.0) is None
    assert _C.cross_entropy(X, t.astype(np.int32), None, -100, "mean", 0.0) is None  # widened in Python
    assert _C.cross_entropy(X, t[:3], None, -100, "mean", 0.0) is None
    assert _C.cross_entropy(X, t, np.ones(4, np.float32), -100, "mean", 0.0) is None  # weight of C - 1
    assert _C.cross_entropy(X, t, None, True, "mean", 0.0) is None  # bool is not an index
    assert _C.cross_entropy(X, t, None, -100, "average", 0.0) is None
    assert _C.cross_entropy(X, t, None, -100, "mean", float("nan")) is None
    assert _C.nll_loss_backward(np.ones(3, np.float32), X, t, None, -100, "none") is None  # grad_loss shape
    assert _C.nll_loss(X, X, None, -100, "mean") is None  # probabilities: cross_entropy only
    assert _C.softmax(X, 2) is None
    assert _C.softmax(X[:, ::2], 1) is None  # non-contiguous: copied in Python
    assert _C.softmax(X.astype(">f4"), 1) is None
    unaligned = np.frombuffer(np.zeros(81, np.uint8).data, dtype=np.float32, offset=1, count=20).reshape(4, 5)
    assert not unaligned.flags.aligned
    assert _C.relu(unaligned) is None
    np.testing.assert_array_equal(minidnn.relu(unaligned), np.zeros((4, 5), np.float32))  # copied, then run
    assert _C.relu_backward(X, X[:3]) is None
    assert _C.leaky_relu(X, "0.1") is None


def test_ignore_index_beyond_int64():
    with pytest.raises(ValueError, match=f"ignore_index: expected an int in the int64 range, got {2**70}"):
        minidnn.cross_entropy(X, np.array([0, 1, 2, 3]), ignore_index=2**70)
