"""The CUDA kernels (activations, softmax family) on the emulated device (README "The emulated CUDA
device"), in this process: the private minidnn.cuda._emulated() does what
MINIDNN_CUDA_EMULATOR=1 does at import (one test checks the variable itself
in a subprocess). Every kernel runs with the threads of a block in three
orders (forward, reverse, shuffled) and on 1 and 2 CPU threads, and the
results must be bit-identical: a missing barrier or a shared-memory race
would make them differ. Both CI steps run these tests; the sanitizer step
thus checks every device access of the kernels with AddressSanitizer."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import minidnn
import minidnn.reference as ref
from minidnn import _C, cuda
from conftest import assert_close
from test_softmax import AXIS_CASES, ROW_SHAPES, assert_backward_close, check_special_values, logits

ORDERS = [("forward", 0), ("reverse", 0), ("shuffled", 12345)]
# The emulated device has 4 multiprocessors, and grid-stride kernels launch
# at most 16 blocks on each (kernels/prelude.cuh).
GRID_BLOCKS = 4 * 16

FORWARD = {"relu": {}, "leaky_relu": {"negative_slope": 0.1}, "sigmoid": {}, "tanh": {}}
# Sizes: below, at and past a float4 (the scalar tail), a partial block, many
# blocks, and more than the grid covers in one stride (GRID_BLOCKS blocks of
# 256 threads, 4 floats each), so that the grid-stride loop turns.
SIZES = [1, 3, 4, 5, 7, 8, 33, 1000, 4099, GRID_BLOCKS * 256 * 4 + 4 * 256 + 3]
SAVES_OUTPUT = {"relu": False, "leaky_relu": False, "sigmoid": True, "tanh": True}


@pytest.fixture
def emulated():
    with cuda._emulated():
        yield


def in_every_order(kernel):
    """kernel() (which returns a minidnn.cuda.Array) with the emulator's
    threads in every order of ORDERS and on 1 and 2 CPU threads; asserts
    that all results are bit-identical and returns one as a NumPy array."""
    results = {}
    previous = minidnn.get_num_threads()
    try:
        for order, seed in ORDERS:
            for threads in (1, 2):
                minidnn.set_num_threads(threads)
                with cuda._emulated(order, seed):
                    results[f"{order}/t{threads}"] = kernel().numpy()
    finally:
        minidnn.set_num_threads(previous)
    first_key, first = next(iter(results.items()))
    for key, out in results.items():
        # View as integers: bit-identical, NaN payloads included.
        assert np.array_equal(out.view(np.uint32), first.view(np.uint32)), f"{key} differs from {first_key}"
    return first


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("op", list(FORWARD))
def test_activations_against_the_reference(emulated, rng, op, n):
    kw = FORWARD[op]
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[: min(n, 3)] = [0.0, np.nan, -np.inf][: min(n, 3)]
    dx = cuda.to_device(x)
    y = in_every_order(lambda: getattr(minidnn, op)(dx, **kw))
    assert_close(y, getattr(ref, op)(x, **kw))

    g = rng.standard_normal(n).astype(np.float32)
    saved = y if SAVES_OUTPUT[op] else x
    dg, dsaved = cuda.to_device(g), cuda.to_device(saved)
    grad_x = in_every_order(lambda: getattr(minidnn, op + "_backward")(dg, dsaved, **kw))
    assert_close(grad_x, getattr(ref, op + "_backward")(g, saved, **kw))


@pytest.mark.parametrize("op", list(FORWARD))
def test_activations_keep_shape_and_take_empty_arrays(emulated, rng, op):
    kw = FORWARD[op]
    for shape in [(0,), (3, 0, 2), (2, 3, 5), ()]:
        x = rng.standard_normal(shape).astype(np.float32)
        y = getattr(minidnn, op)(cuda.to_device(x), **kw)
        assert isinstance(y, cuda.Array) and y.shape == shape and y.dtype == np.float32
        assert_close(y.numpy(), getattr(ref, op)(x, **kw))
        grad = getattr(minidnn, op + "_backward")(cuda.to_device(x), cuda.to_device(x), **kw)
        assert isinstance(grad, cuda.Array) and grad.shape == shape


def test_activation_bad_input(emulated):
    x = cuda.to_device(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"x: expected dtype float32, got int64"):
        minidnn.relu(cuda.to_device(np.ones(3, np.int64)))
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(2, 3\) \(the shape of y\), got \(3,\)"):
        minidnn.tanh_backward(cuda.to_device(np.ones(3, np.float32)), x)
    with pytest.raises(TypeError, match="negative_slope: expected a float, got str"):
        minidnn.leaky_relu(x, "0.1")
    with pytest.raises(TypeError, match="y: expected dtype float32, got int64"):
        minidnn.sigmoid_backward(x, cuda.to_device(np.ones((2, 3), np.int64)))


def test_mixed_devices_are_a_value_error(emulated):
    host = np.ones((2, 3), np.float32)
    device = cuda.to_device(host)
    with pytest.raises(ValueError, match=r"x: expected an array on the device of grad_y \(emulated\), got one on cpu"):
        minidnn.relu_backward(device, host)
    with pytest.raises(ValueError, match=r"y: expected an array on the device of grad_y \(cpu\), got one on emulated"):
        minidnn.sigmoid_backward(host, device)
    with pytest.raises(ValueError, match="x: expected an array on the device of grad_y"):
        minidnn.leaky_relu_backward(host, device, 0.2)


def test_ops_without_cuda_kernels_refuse_device_arrays(emulated):
    with pytest.raises(TypeError, match="x: expected a NumPy array"):
        minidnn.linear(cuda.to_device(np.ones((2, 3), np.float32)), np.ones((4, 3), np.float32))


def test_arrays_and_to_device(emulated, rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    a = cuda.to_device(x)
    assert (a.shape, a.ndim, a.size, a.nbytes, a.dtype, a.device) == ((3, 5), 2, 15, 60, np.float32, "emulated")
    assert repr(a) == "minidnn.cuda.Array(shape=(3, 5), dtype=float32, device=emulated)"
    back = a.numpy()
    assert isinstance(back, np.ndarray) and np.array_equal(back, x)
    back[0, 0] = 7.0  # a copy, not a view of device memory
    assert a.numpy()[0, 0] == x[0, 0]
    # Other layouts are copied to C order; int32 is widened; a 0-d array stays 0-d.
    assert np.array_equal(cuda.to_device(x.T).numpy(), x.T)
    i = cuda.to_device(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert i.dtype == np.int64 and np.array_equal(i.numpy(), np.arange(6).reshape(2, 3))
    assert cuda.to_device(np.float32(2.5)).shape == ()
    with pytest.raises(TypeError, match="x: expected dtype float32, int64 or int32, got float64"):
        cuda.to_device(np.ones(3))
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray, got a minidnn.cuda.Array"):
        cuda.to_device(a)
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray of float32, int64 or int32, got list"):
        cuda.to_device([1.0])
    with pytest.raises(TypeError):
        cuda.Array()  # only to_device and the ops make arrays
    # The real-device protocols are absent on the emulated device.
    assert not hasattr(a, "__cuda_array_interface__")


def test_the_allocator_reuses_and_empties_its_cache(emulated):
    cuda.empty_cache()
    assert _C.cuda.cached_bytes("emulated") == 0
    a = cuda.to_device(np.ones(1000, np.float32))
    del a
    assert _C.cuda.cached_bytes("emulated") == 4096  # 4000 bytes, rounded up to 512
    b = cuda.to_device(np.full(1000, 2.0, np.float32))  # the same block again
    assert _C.cuda.cached_bytes("emulated") == 0
    assert np.all(b.numpy() == 2.0)
    del b
    cuda.empty_cache()
    assert _C.cuda.cached_bytes("emulated") == 0


def test_queries_on_the_emulated_device(emulated):
    assert cuda.is_available() and cuda.device_count() == 1
    assert cuda.get_device_name(0) == cuda.EMULATED_DEVICE_NAME
    with pytest.raises(IndexError):
        cuda.get_device_name(1)
    cfg = minidnn.config()
    assert cfg["cuda_available"] and cfg["cuda_device"] == "emulated" and cfg["cuda_device_count"] == 1
    assert "emulated" in cfg["cuda_status"]


def test_without_the_emulator_nothing_changed():
    """Outside _emulated() the process is back on the real device, if any."""
    assert cuda.device_count() == _C.cuda.device_count()
    if _C.cuda.device_count() == 0:
        assert not cuda.is_available() and minidnn.config()["cuda_device"] is None
        with pytest.raises(RuntimeError, match="no CUDA device is available"):
            cuda.to_device(np.ones(3, np.float32))
    else:
        assert cuda.to_device(np.ones(3, np.float32)).device == "cuda"


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=120)


def test_environment_variable_at_import():
    code = (
        "import numpy as np, minidnn\n"
        "from minidnn import cuda, _C\n"
        "c = minidnn.config()\n"
        "y = minidnn.relu(cuda.to_device(np.array([-1.0, 2.0], np.float32)))\n"
        "print(cuda.is_available(), cuda.device_count(), c['cuda_device'], y.device, y.numpy().tolist(),"
        " _C.cuda._emulator_order())\n"
    )
    done = run_python(code, MINIDNN_CUDA_EMULATOR="1", MINIDNN_CUDA_EMULATOR_ORDER="shuffled:7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "True 1 emulated emulated [0.0, 2.0] ('shuffled', 7)"
    # A bad order is a warning, never an import failure.
    done = run_python("import minidnn; print(minidnn.cuda._C.cuda._emulator_order())",
                      MINIDNN_CUDA_EMULATOR="1", MINIDNN_CUDA_EMULATOR_ORDER="sideways")
    assert done.returncode == 0, done.stderr
    assert "MINIDNN_CUDA_EMULATOR_ORDER" in done.stderr and "('forward', 0)" in done.stdout


# Softmax: the row shapes and axes of the CPU tests (warp rows up to 1024,
# block rows beyond, the inner-axis form for axis != -1), plus enough rows
# or columns that the grid-stride loops turn (GRID_BLOCKS blocks of 8 warp
# rows, of one block row, or of 256 columns each).
SOFTMAX_CASES = [(s, -1) for s in ROW_SHAPES] + AXIS_CASES + [
    ((GRID_BLOCKS * 8 + 5, 3), -1),
    ((GRID_BLOCKS + 3, 1030), -1),
    ((GRID_BLOCKS * 256 + 7, 3, 1, 2), 1),
]


@pytest.mark.parametrize("shape,axis", SOFTMAX_CASES, ids=str)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_against_the_reference(emulated, rng, op, shape, axis):
    x = logits(rng, shape)
    dx = cuda.to_device(x)
    y = in_every_order(lambda: getattr(minidnn, op)(dx, axis=axis))
    assert_close(y, getattr(ref, op)(x, axis=axis))
    g = rng.standard_normal(shape).astype(np.float32)
    dg, dy = cuda.to_device(g), cuda.to_device(y)
    grad_x = in_every_order(lambda: getattr(minidnn, op + "_backward")(dg, dy, axis=axis))
    assert_backward_close(op, grad_x, g, y, axis)


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_special_values(emulated, op, axis):
    check_special_values(op, axis, lambda x: in_every_order(lambda: getattr(minidnn, op)(cuda.to_device(x), axis=axis)))


def test_softmax_long_rows_of_neg_inf(emulated):
    x = np.full((3, 5000), -np.inf, dtype=np.float32)
    x[0, 2500], x[0, 4999] = 3.0, 1.0
    x[1, :3] = [0.0, 1.0, 2.0]
    for op in ("softmax", "log_softmax"):
        assert_close(getattr(minidnn, op)(cuda.to_device(x)).numpy(), getattr(ref, op)(x))


def test_softmax_empty_and_bad_input(emulated):
    for shape, axis in [((0, 5), -1), ((3, 0), -1), ((2, 0, 3), 0)]:
        y = minidnn.softmax(cuda.to_device(np.ones(shape, np.float32)), axis=axis)
        assert isinstance(y, cuda.Array) and y.shape == shape
    x = cuda.to_device(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"axis: expected an axis in \[-2, 1\] for a 2-d array, got 2"):
        minidnn.log_softmax(x, axis=2)
    with pytest.raises(TypeError, match="x: expected dtype float32, got int64"):
        minidnn.softmax(cuda.to_device(np.ones(3, np.int64)))
    with pytest.raises(ValueError, match=r"y: expected an array on the device of grad_y \(cpu\), got one on emulated"):
        minidnn.softmax_backward(np.ones((2, 3), np.float32), x)
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(2, 3\) \(the shape of y\), got \(3, 2\)"):
        minidnn.log_softmax_backward(cuda.to_device(np.ones((3, 2), np.float32)), x)


# The emulator's own checks, on the test-only kernels of
# csrc/cuda/emu/checks_emu.cpp (compiled for the emulator only).


def check_kernel(name: str, x: np.ndarray):
    return _C.cuda._emulator_check(name, cuda.to_device(x))


@pytest.mark.parametrize("n", [1, 64, 100, 640])
def test_barriers_and_shared_memory(emulated, n):
    x = np.arange(n, dtype=np.float32) + 1
    y = in_every_order(lambda: check_kernel("reverse_chunks", x))
    padded = np.concatenate([x, np.zeros(-n % 64, np.float32)])
    assert np.array_equal(y, padded.reshape(-1, 64)[:, ::-1].reshape(-1)[:n])


@pytest.mark.parametrize("n", [64, 128, 200, 64 * 7])
def test_static_shared_memory_shuffles_and_ballots_on_3d_blocks(emulated, rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    y = in_every_order(lambda: check_kernel("chunk_sums", x))
    for start in range(0, n, 64):
        chunk = x[start : start + 64].astype(np.float64)
        assert abs(y[start] - chunk.sum()) <= 1e-5 * np.abs(chunk).sum()
        if start + 1 < n:
            assert y[start + 1] == (chunk > 0).sum()
        assert np.all(y[start + 2 : start + 64] == 0)


def test_a_missing_barrier_shows_as_differing_orders(emulated):
    """The same reversal without its barrier: each order gives another
    result, so in_every_order's comparison catches the race."""
    x = np.arange(256, dtype=np.float32) + 1
    with pytest.raises(AssertionError, match="differs"):
        in_every_order(lambda: check_kernel("reverse_chunks_without_barrier", x))


@pytest.mark.parametrize(
    "name,message",
    [
        ("partial_barrier", r"__syncthreads reached by 32 of the block's 64 threads \(32 had exited\)"),
        ("exit_before_barrier", r"block \(1, 0, 0\): __syncthreads reached by 36 of the block's 64 threads"),
        ("partial_shuffle", r"__shfl_down_sync with mask 0xffffffff reached by only part of warp 0: lanes 16-31 exited"),
    ],
)
@pytest.mark.parametrize("order", [o for o, _ in ORDERS])
def test_a_partial_rendezvous_is_a_runtime_error_naming_the_kernel(order, name, message):
    with cuda._emulated(order, 1):
        with pytest.raises(RuntimeError, match=rf"CUDA kernel {name} \(emulated device\), .*{message}"):
            check_kernel(name, np.ones(100, np.float32))
        # The emulator recovers: the next launch runs normally.
        x = np.arange(128, dtype=np.float32)
        y = check_kernel("reverse_chunks", x).numpy()
        assert np.array_equal(y, x.reshape(2, 64)[:, ::-1].reshape(-1))


def test_unknown_check_kernel(emulated):
    with pytest.raises(ValueError, match="no check kernel named 'nope'"):
        check_kernel("nope", np.ones(3, np.float32))
