"""The CUDA kernels (activations, softmax family, losses) on the emulated device (README "The emulated CUDA
device"), in this process: the private minidnn.cuda._emulated() does what
MINIDNN_CUDA_EMULATOR=1 does at import (one test checks the variable itself
in a subprocess). Every kernel runs with the threads of a block in three
orders (forward, reverse, shuffled) and on 1 and 2 CPU threads, and the
results must be bit-identical: a missing barrier or a shared-memory race
would make them differ. Both CI steps run these tests; the sanitizer step
thus checks every device access of the kernels with AddressSanitizer, in
one thread order (SANITIZED below)."""

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
from test_softmax import (
    AXIS_CASES,
    SPECIAL_ROWS,
    LOSS_SCALE,
    ROW_SHAPES,
    assert_backward_close,
    check_special_values,
    class_targets,
    class_weight,
    grad_for,
    logits,
    prob_targets,
)

# The sanitizer step (.ci/sanitize sets MINIDNN_TEST_SANITIZED) runs one
# order: an out-of-bounds access is one in any order, and the orders'
# agreement is the first step's check. Under ASan the emulated threads run
# about 10x slower than in the first step (the large loss cases took over a
# minute each in three orders).
SANITIZED = os.environ.get("MINIDNN_TEST_SANITIZED") == "1"
ALL_ORDERS = [("forward", 0), ("reverse", 0), ("shuffled", 12345)]
ORDERS = ALL_ORDERS[2:] if SANITIZED else ALL_ORDERS
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


def in_every_order(kernel, orders=ORDERS):
    """kernel() (which returns a minidnn.cuda.Array) with the emulator's
    threads in every order of `orders` and on 1 and 2 CPU threads; asserts
    that all results are bit-identical and returns one as a NumPy array."""
    results = {}
    previous = minidnn.get_num_threads()
    try:
        for order, seed in orders:
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


# The forward's row variants (csrc/cuda/kernels/softmax.cuh), each with
# C % 4 == 0 (16-byte loads) and not (scalar loads): a warp per row with
# 1, 2, 4 and 8 packs of 4 floats a lane (C up to 128, 256, 512, 1024); a
# block of 1024 threads per row with 1, 2, 4 and 8 packs a thread (up to
# 4096, 8192, 16384, 32768), with enough rows that its grid-stride loop
# turns; rows past 32768 split into parts of whole tiles of 4096
# (softmax_split_parts: min(tiles, ceil(1024 / rows)) parts a row): a part
# a tile, the last one partial; and 128 rows of 9 tiles, 8 parts a row, one
# part of two tiles, more parts than the grid covers in one stride.
FORWARD_ROW_SHAPES = [
    (3, 128), (2, 127), (3, 256), (2, 255), (2, 512), (2, 509), (3, 1024), (2, 1021),
    (2, 4096), (GRID_BLOCKS + 3, 4097), (2, 8192), (2, 8191), (2, 16384), (2, 16383), (2, 32768), (2, 32767),
    (1, 32772), (3, 40001), (128, 32772), (128, 32769),
]


@pytest.mark.parametrize("shape", FORWARD_ROW_SHAPES, ids=str)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_forward_row_variants(emulated, rng, op, shape):
    x = logits(rng, shape)
    dx = cuda.to_device(x)
    # The 4M-float cases in one order (each order costs seconds on the emulator).
    orders = ORDERS if shape[0] * shape[1] < 1 << 20 else ORDERS[-1:]
    y = in_every_order(lambda: getattr(minidnn, op)(dx), orders)
    assert_close(y, getattr(ref, op)(x))


@pytest.mark.parametrize("C", [1000, 1001, 5000, 5001, 40000, 40001])
def test_softmax_forward_row_variants_special_values(emulated, C):
    """NaN, +inf, rows of -inf, huge values, in every forward row variant
    (the two-pass max and sum over registers and the split's merged parts)."""
    x = np.zeros((7, C), np.float32)
    x[:, : SPECIAL_ROWS.shape[1]] = SPECIAL_ROWS
    x[1] = -np.inf
    x[3, C // 2 :] = -np.inf  # whole parts of -inf after finite ones
    x[4, C - 1] = np.nan  # in the last pack, tile and part
    for op in ("softmax", "log_softmax"):
        y = in_every_order(lambda: getattr(minidnn, op)(cuda.to_device(x)))
        assert_close(y, getattr(ref, op)(x))


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


# Losses: cross_entropy and nll_loss (csrc/cuda/kernels/loss.cuh). Rows
# below, at and past a warp's register cache (32 lanes x 8), the warp-row
# limit (1024), a block's register cache (1024 threads x 8) and longer;
# enough rows (or positions) that every grid-stride loop turns; the inner
# form ((N, C, d1..dk)); unbatched (C,); and the reduction over more
# elements than one block of partials covers (256 x 8).
# Every option combination runs on the small shapes (each kernel form);
# the large ones, slow on the emulator, with weights, smoothing and two
# reductions.
LOSS_CUDA_SHAPES = [
    (1, 1), (5, 3), (8, 17), (3, 256), (3, 257), (3, 1000), (2, 1024), (2, 1025), (2, 8192),
    (GRID_BLOCKS * 8 + 5, 3), (4, 5, 7), (2, 3, 4, 5), (3, 7, 40), (6,),
]
LOSS_CUDA_LARGE_SHAPES = [(2, 8193), (2, 40000), (GRID_BLOCKS + 3, 1030), (GRID_BLOCKS * 256 + 7, 3, 2), (2048 + 5, 2)]
LOSS_KINDS = [("class", 0.0), ("class", 0.1), ("prob", 0.0), ("prob", 0.2)]


def target_shape(shape):
    return shape[:1] + shape[2:] if len(shape) > 1 else ()


def on_device(*arrays):
    return [None if a is None else a if isinstance(a, float) else cuda.to_device(a) for a in arrays]


@pytest.mark.parametrize("shape", LOSS_CUDA_SHAPES, ids=str)
@pytest.mark.parametrize("kind,smoothing", LOSS_KINDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_against_the_reference(emulated, rng, shape, kind, smoothing, weighted, reduction):
    check_cross_entropy(rng, shape, kind, smoothing, weighted, reduction)


@pytest.mark.parametrize("shape", LOSS_CUDA_LARGE_SHAPES, ids=str)
@pytest.mark.parametrize("kind,smoothing", [("class", 0.1), ("prob", 0.2)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_large_against_the_reference(emulated, rng, shape, kind, smoothing, reduction):
    check_cross_entropy(rng, shape, kind, smoothing, True, reduction)


def check_cross_entropy(rng, shape, kind, smoothing, weighted, reduction, run=in_every_order):
    """cross_entropy and its backward on the device against the reference,
    each call through run() (here every thread order; twice on a GPU, in
    tests/test_cuda_device.py)."""
    x = logits(rng, shape, LOSS_SCALE)
    t = class_targets(rng, shape) if kind == "class" else prob_targets(rng, shape)
    w = class_weight(rng, shape) if weighted else None
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    dx, dt, dw = on_device(x, t, w)
    loss = run(lambda: minidnn.cross_entropy(dx, dt, weight=dw, **kw))
    assert loss.shape == target_shape(shape) if reduction == "none" else loss.shape == ()
    assert_close(loss, ref.cross_entropy(x, t, weight=w, **kw))
    g = grad_for(rng, reduction, target_shape(shape))
    (dg,) = on_device(g)
    grad = run(lambda: minidnn.cross_entropy_backward(dg, dx, dt, weight=dw, **kw))
    assert_close(grad, ref.cross_entropy_backward(g, x, t, weight=w, **kw), tol=5e-6)


@pytest.mark.parametrize("shape", [(5, 3), (3, 1000), (2, 1025), (4, 5, 7), (6,), (2050 + 3, 2)], ids=str)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_against_the_reference(emulated, rng, shape, weighted, reduction):
    check_nll_loss(rng, shape, weighted, reduction)


def check_nll_loss(rng, shape, weighted, reduction, run=in_every_order):
    """nll_loss and its backward on the device against the reference (run as
    in check_cross_entropy)."""
    lp = ref.log_softmax(logits(rng, shape, LOSS_SCALE), axis=1 if len(shape) > 1 else 0).astype(np.float32)
    t = class_targets(rng, shape, ignore_index=0)
    w = class_weight(rng, shape) if weighted else None
    kw = dict(ignore_index=0, reduction=reduction)
    dlp, dt, dw = on_device(lp, t, w)
    loss = run(lambda: minidnn.nll_loss(dlp, dt, weight=dw, **kw))
    assert_close(loss, ref.nll_loss(lp, t, weight=w, **kw))
    g = grad_for(rng, reduction, t.shape)
    (dg,) = on_device(g)
    grad = run(lambda: minidnn.nll_loss_backward(dg, dlp, dt, weight=dw, **kw))
    assert_close(grad, ref.nll_loss_backward(g, lp, t, weight=w, **kw))


def test_loss_gradient_from_a_device_scalar(emulated, rng):
    """grad_loss of "mean" / "sum" as the 0-d Array a reduced loss returns."""
    x = logits(rng, (7, 300))
    t = class_targets(rng, (7, 300))
    dx, dt = on_device(x, t)
    for reduction in ("mean", "sum"):
        loss = minidnn.cross_entropy(dx, dt, reduction=reduction)
        grad = minidnn.cross_entropy_backward(loss, dx, dt, reduction=reduction)
        value = float(loss.numpy())
        assert_close(grad.numpy(), ref.cross_entropy_backward(value, x, t, reduction=reduction), tol=5e-6)
        grad = minidnn.nll_loss_backward(np.float32(2.0), dx, dt, reduction=reduction)
        assert_close(grad.numpy(), ref.nll_loss_backward(2.0, x, t, reduction=reduction))


def test_cross_entropy_special_values(emulated):
    """As test_softmax's huge-logit, all-ignored, NaN and -inf cases."""
    huge = np.array([[1e30, 0.0, -1e30], [0.0, 1e30, 3e38], [1.0, 2.0, 3.0]], dtype=np.float32)
    smooth = np.where(huge > 1e38, np.float32(1e38), huge)
    t = np.array([0, 1, 2], dtype=np.int64)
    for x, kw in ((huge, dict(reduction="none")), (smooth, dict(reduction="none", label_smoothing=0.3))):
        out = in_every_order(lambda: minidnn.cross_entropy(*on_device(x, t), **kw))
        assert np.isfinite(out[[0, 2]]).all()
        assert_close(out, ref.cross_entropy(x, t, **kw))
    ignored = np.full(3, -100, dtype=np.int64)
    dx, di = on_device(huge, ignored)
    assert np.isnan(minidnn.cross_entropy(dx, di).numpy())
    assert minidnn.cross_entropy(dx, di, reduction="sum").numpy() == 0.0
    assert (minidnn.cross_entropy_backward(1.0, dx, di, reduction="sum").numpy() == 0.0).all()
    assert (minidnn.cross_entropy_backward(1.0, dx, di).numpy() == 0.0).all()  # mean over nothing: rows are 0

    x = np.array([[1.0, np.nan, 0.0], [-np.inf, -np.inf, -np.inf], [0.0, 1.0, -np.inf], [-np.inf, 2.0, 1.0]],
                 dtype=np.float32)
    q = np.full((4, 3), 1.0 / 3.0, dtype=np.float32)
    q[3] = [0.5, 0.5, 0.0]  # probability on a -inf logit: loss inf
    for target, kw in ((np.array([0, 1, 1, 2]), {}), (q, {}), (np.array([0, 1, 1, 2]), dict(label_smoothing=0.1))):
        out = in_every_order(lambda: minidnn.cross_entropy(*on_device(x, target), reduction="none", **kw))
        assert_close(out, ref.cross_entropy(x, target, reduction="none", **kw))
    # Long rows (block rows, past the register cache) with -inf at the start.
    x = np.full((2, 9000), -np.inf, dtype=np.float32)
    x[0, 8999], x[1, 4000:4010] = 5.0, np.arange(10)
    t = np.array([8999, 4005])
    for kw in ({}, dict(label_smoothing=0.1)):
        out = in_every_order(lambda: minidnn.cross_entropy(*on_device(x, t), reduction="none", **kw))
        assert_close(out, ref.cross_entropy(x, t, reduction="none", **kw))
        grad = in_every_order(lambda: minidnn.cross_entropy_backward(1.0, *on_device(x, t), reduction="sum", **kw))
        assert_close(grad, ref.cross_entropy_backward(1.0, x, t, reduction="sum", **kw), tol=5e-6)


def test_losses_of_empty_batches_follow_pytorch(emulated):
    dx, dt = on_device(np.zeros((0, 5), np.float32), np.zeros((0,), np.int64))
    assert np.isnan(minidnn.cross_entropy(dx, dt).numpy())
    assert minidnn.cross_entropy(dx, dt, reduction="sum").numpy() == 0.0
    assert minidnn.cross_entropy(dx, dt, reduction="none").shape == (0,)
    assert minidnn.cross_entropy_backward(1.0, dx, dt).shape == (0, 5)
    assert np.isnan(minidnn.nll_loss(dx, dt).numpy())
    assert minidnn.nll_loss_backward(1.0, dx, dt, reduction="sum").shape == (0, 5)
    spatial, st = on_device(np.ones((2, 5, 0), np.float32), np.zeros((2, 0), np.int64))
    assert minidnn.cross_entropy(spatial, st, reduction="none").shape == (2, 0)
    assert minidnn.cross_entropy_backward(cuda.to_device(np.zeros((2, 0), np.float32)), spatial, st,
                                          reduction="none").shape == (2, 5, 0)


# 2049: two blocks of partials; 256 * 2048 + 5: more than the 256 blocks of
# partials cover in one stride.
@pytest.mark.parametrize("op,targets", [(op, n) for op in ("cross_entropy", "nll_loss") for n in (4, 2049)]
                         + [("nll_loss", 256 * 2048 + 5)])
def test_loss_target_out_of_range_is_an_index_error(emulated, rng, op, targets):
    """The first target out of range, wherever the reduction's partials put it."""
    x = rng.standard_normal((targets, 3)).astype(np.float32)
    t = rng.integers(0, 3, targets)
    t[-1], t[targets // 2] = -1, 3
    dx, dt = on_device(x, t)
    message = rf"target: expected class indices in \[0, 2\] or ignore_index=-100, got 3"
    for reduction in ("mean", "sum", "none"):
        with pytest.raises(IndexError, match=message):
            getattr(minidnn, op)(dx, dt, reduction=reduction)
        with pytest.raises(IndexError, match=message):
            getattr(minidnn, op + "_backward")(1.0 if reduction != "none" else cuda.to_device(x[:, 0].copy()), dx, dt,
                                               reduction=reduction)


def test_loss_bad_input(emulated):
    dx, dt, dw = on_device(np.ones((4, 3), np.float32), np.zeros(4, np.int64), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="logits: expected dtype float32, got int64"):
        minidnn.cross_entropy(dt, dt)
    with pytest.raises(TypeError, match=r"target: expected dtype int64 \(class indices\), got float32"):
        minidnn.nll_loss(dx, dx)
    with pytest.raises(ValueError, match=r"target: expected class indices of shape \(4,\) for logits of shape \(4, 3\)"):
        minidnn.cross_entropy(dx, cuda.to_device(np.zeros(3, np.int64)))
    with pytest.raises(ValueError, match=r"target: expected shape \(4, 3\) \(the shape of logits\), got \(3, 4\)"):
        minidnn.cross_entropy(dx, cuda.to_device(np.ones((3, 4), np.float32)))
    with pytest.raises(ValueError, match=r"weight: expected shape \(3,\), got \(4,\)"):
        minidnn.cross_entropy(dx, dt, weight=cuda.to_device(np.ones(4, np.float32)))
    with pytest.raises(ValueError, match=r"logits: expected shape \(C,\), \(N, C\) or"):
        minidnn.cross_entropy(cuda.to_device(np.float32(1.0)), dt)
    with pytest.raises(ValueError, match="logits: expected at least one class on axis 1"):
        minidnn.cross_entropy(cuda.to_device(np.ones((4, 0), np.float32)), dt)
    with pytest.raises(ValueError, match="reduction: expected one of"):
        minidnn.cross_entropy(dx, dt, reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing: expected a float in \[0.0, 1.0\]"):
        minidnn.cross_entropy(dx, dt, label_smoothing=1.5)
    with pytest.raises(TypeError, match="ignore_index: expected an int"):
        minidnn.nll_loss(dx, dt, ignore_index=1.0)
    with pytest.raises(ValueError, match=r"grad_loss: expected shape \(4,\) for reduction='none', got \(3,\)"):
        minidnn.cross_entropy_backward(cuda.to_device(np.ones(3, np.float32)), dx, dt, reduction="none")
    with pytest.raises(ValueError, match=r"grad_loss: expected shape \(\) for reduction='mean', got \(4,\)"):
        minidnn.nll_loss_backward(cuda.to_device(np.ones(4, np.float32)), dx, dt)
    with pytest.raises(TypeError, match="weight: expected dtype float32, got int64"):
        minidnn.nll_loss(dx, dt, weight=cuda.to_device(np.ones(3, np.int64)))


def test_losses_refuse_mixed_devices(emulated):
    x, t, w = np.ones((4, 3), np.float32), np.zeros(4, np.int64), np.ones(3, np.float32)
    dx, dt, dw = on_device(x, t, w)
    on = r"expected an array on the device of {} \({}\), got one on {}"
    with pytest.raises(ValueError, match="target: " + on.format("logits", "emulated", "cpu")):
        minidnn.cross_entropy(dx, t)
    with pytest.raises(ValueError, match="target: " + on.format("logits", "cpu", "emulated")):
        minidnn.cross_entropy(x, dt)
    with pytest.raises(ValueError, match="weight: " + on.format("log_probs", "emulated", "cpu")):
        minidnn.nll_loss(dx, dt, weight=w)
    with pytest.raises(ValueError, match="grad_loss: " + on.format("logits", "emulated", "cpu")):
        minidnn.cross_entropy_backward(np.ones(4, np.float32), dx, dt, reduction="none")
    with pytest.raises(ValueError, match="grad_loss: " + on.format("log_probs", "cpu", "emulated")):
        minidnn.nll_loss_backward(cuda.to_device(np.float32(1.0)), x, t)


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
    result, so in_every_order's comparison catches the race (in all three
    orders, under the sanitizer too)."""
    x = np.arange(256, dtype=np.float32) + 1
    with pytest.raises(AssertionError, match="differs"):
        in_every_order(lambda: check_kernel("reverse_chunks_without_barrier", x), orders=ALL_ORDERS)


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
