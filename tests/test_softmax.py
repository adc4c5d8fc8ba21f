"""Softmax family against the float64 reference: every CPU path, 1 and 2
threads, tails of every SIMD width, the channel axis, and long rows that the
kernels split across threads."""

from __future__ import annotations

import functools
import zlib

import numpy as np
import pytest

import minidnn
import minidnn.reference as ref
from conftest import assert_close, assert_same_at_thread_counts

# Rows: 1, primes, around the 8/16-lane widths, around the 1024-float online
# chunk, and rows long and few enough to be split across threads.
ROW_SHAPES = [
    (1, 1), (1, 7), (3, 8), (5, 16), (2, 17), (4, 31), (3, 33), (6, 100), (2, 1023), (3, 1024), (2, 1025),
    (2, 2049), (1, 40000), (3, 20011), (64, 1000),
]
# (shape, axis): every axis of a 3-D array, and NCHW channel axes whose
# inner extent is 1, a full 4-vector block, a block plus a tail, a tail only.
AXIS_CASES = [
    ((2, 5, 7), 0), ((2, 5, 7), 1), ((2, 5, 7), -1), ((3, 5, 1, 1), 1), ((2, 3, 8, 8), 1), ((2, 21, 9, 13), 1),
    ((1, 4, 3), 1), ((2, 1000, 5), 1), ((4, 16, 2, 64), 1), ((), -1), ((5,), 0),
]


def logits(rng, shape, scale=4.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=str)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_rows_forward(isa, threads, rng, shape, op):
    x = logits(rng, shape)
    assert_close(getattr(minidnn, op)(x), getattr(ref, op)(x))


@pytest.mark.parametrize("shape,axis", AXIS_CASES, ids=str)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_any_axis_forward(isa, threads, rng, shape, axis, op):
    x = logits(rng, shape)
    assert_close(getattr(minidnn, op)(x, axis=axis), getattr(ref, op)(x, axis=axis))


@pytest.mark.parametrize("shape,axis", [(s, -1) for s in ROW_SHAPES] + AXIS_CASES, ids=str)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_backward(isa, threads, rng, shape, axis, op):
    x = logits(rng, shape)
    y = getattr(ref, op)(x, axis=axis).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    out = getattr(minidnn, op + "_backward")(g, y, axis=axis)
    assert_backward_close(op, out, g, y, axis)


def assert_backward_close(op, out, g, y, axis):
    """out, the float32 backward of op, against the reference. Both backwards
    subtract two terms that can nearly cancel (a peaked softmax makes
    y_k * (g_k - sum g y) tiny), so float32 error is bounded relative to the
    size of those terms, not of their difference."""
    expected = getattr(ref, op + "_backward")(g, y, axis=axis)
    y64, g64 = y.astype(np.float64), g.astype(np.float64)
    if op == "softmax":
        terms = np.abs(y64) * (np.abs(g64) + np.sum(np.abs(g64 * y64), axis=axis, keepdims=True))
    else:
        terms = np.abs(g64) + np.exp(y64) * np.sum(np.abs(g64), axis=axis, keepdims=True)
    err = np.linalg.norm(out - expected) / np.linalg.norm(terms)
    assert err <= 2e-6, f"error {err:.3g} relative to the cancelling terms"


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_special_values(isa, threads, op, axis):
    """Huge logits stay finite, all -inf gives NaN, NaN and +inf make their
    row NaN, and one bad row never leaks into its neighbours."""
    check_special_values(op, axis, lambda x: getattr(minidnn, op)(x, axis=axis))


SPECIAL_ROWS = np.array(
    [
        [1e30, 1e30, -1e30, 0.0, 3e38],
        [-np.inf] * 5,
        [1.0, np.nan, 2.0, 3.0, 4.0],
        [-np.inf, 0.0, -np.inf, 1.0, -np.inf],
        [-3e38, -3e38, -3e38, -3e38, -3e38],
        [0.5, 0.25, -0.5, 100.0, -100.0],
        [np.inf, 0.0, 1.0, 2.0, 3.0],
    ],
    dtype=np.float32,
)


def check_special_values(op, axis, run):
    """run(x) -> op(x, axis) as a NumPy array, on SPECIAL_ROWS along `axis`."""
    x = SPECIAL_ROWS if axis == -1 else np.ascontiguousarray(SPECIAL_ROWS.T[None, :, :, None])
    out = run(x)
    assert_close(out, getattr(ref, op)(x, axis=axis))
    row_sums = np.exp(out).sum(axis=axis) if op == "log_softmax" else out.sum(axis=axis)
    assert np.allclose(row_sums.ravel()[[0, 3, 4, 5]], 1.0, rtol=1e-6)


def test_long_row_tail_chunks_all_neg_inf(isa, threads):
    """Whole online chunks of -inf before and after the finite values."""
    x = np.full((2, 5000), -np.inf, dtype=np.float32)
    x[0, 2500] = 3.0
    x[0, 4999] = 1.0
    x[1, :3] = [0.0, 1.0, 2.0]
    assert_close(minidnn.softmax(x), ref.softmax(x))
    assert_close(minidnn.log_softmax(x), ref.log_softmax(x))


# Outputs of 8M floats and more are written with streaming stores
# (simd/store.h), whose plain-store head and tail depend on where each row
# or thread share starts: odd row lengths start rows off every vector
# boundary; 3 rows are split across 2 threads, and are longer than the
# one-pass softmax keeps (the exp then runs twice).
STREAMED_CASES = [
    ("softmax", (2049, 4099)),
    ("softmax", (3, 2796203)),
    ("log_softmax", (2049, 4099)),
    ("softmax_backward", (3, 2796203)),
]


@functools.lru_cache(maxsize=2)  # 0.1 GB each
def _streamed_case(op, shape):
    """(inputs, float64 reference) of one streamed case, built once for all
    paths and thread counts."""
    rng = np.random.default_rng(zlib.crc32(f"{op}{shape}".encode()))
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    if op.endswith("_backward"):
        y = ref.softmax(x, -1).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        return (g, y), ref.softmax_backward(g, y, -1)
    return (x,), getattr(ref, op)(x, -1)


@pytest.mark.parametrize("op,shape", STREAMED_CASES, ids=str)
def test_streamed_outputs(isa, threads, op, shape):
    inputs, expected = _streamed_case(op, shape)
    assert_close(getattr(minidnn, op)(*inputs, -1), expected)


def test_non_contiguous_and_empty(rng):
    x = logits(rng, (7, 9)).T
    assert not x.flags.c_contiguous
    assert_close(minidnn.softmax(x, axis=0), ref.softmax(x, axis=0))
    empty = np.zeros((0, 5), dtype=np.float32)
    assert minidnn.softmax(empty).shape == (0, 5)


# ---------------------------------------------------------------------------
# cross-entropy and NLL
# ---------------------------------------------------------------------------

# Logits of unit scale: with peaked rows a target at the max has a loss near
# 1e-5, whose float32 log(sum exp) carries an absolute error of ~1e-7 in any
# implementation (PyTorch's included); that is conditioning, not the kernel.
LOSS_SCALE = 1.0
# (16385, 3) and (2, 3, 90, 91): more targets than the reduced NLL takes
# in one pass (kNllReducedMaxTargets = 16384), so the per-element kernel.
LOSS_SHAPES = [(1, 1), (5, 3), (8, 17), (3, 1000), (2, 40000), (4, 5, 7), (2, 3, 4, 5), (3, 7, 40), (6,), (16385, 3), (2, 3, 90, 91)]


def class_targets(rng, shape, ignore_index=-100, ignored=True):
    classes = shape[1] if len(shape) > 1 else shape[0]
    tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    t = rng.integers(0, classes, size=tshape).astype(np.int64)
    if ignored and t.size > 2:
        t.flat[:: 3] = ignore_index
    return t


def prob_targets(rng, shape):
    axis = 1 if len(shape) > 1 else 0
    q = rng.random(shape) + 0.05
    return (q / q.sum(axis=axis, keepdims=True)).astype(np.float32)


def class_weight(rng, shape):
    classes = shape[1] if len(shape) > 1 else shape[0]
    return (rng.random(classes) + 0.5).astype(np.float32)


def grad_for(rng, reduction, tshape):
    if reduction == "none":
        return rng.standard_normal(tshape).astype(np.float32)
    return float(rng.standard_normal())


@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=str)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_class_targets(isa, threads, rng, shape, smoothing, weighted, reduction):
    x = logits(rng, shape, LOSS_SCALE)
    t = class_targets(rng, shape)
    w = class_weight(rng, shape) if weighted else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=smoothing)
    assert_close(minidnn.cross_entropy(x, t, **kw), ref.cross_entropy(x, t, **kw))
    g = grad_for(rng, reduction, t.shape)
    assert_close(minidnn.cross_entropy_backward(g, x, t, **kw), ref.cross_entropy_backward(g, x, t, **kw), tol=5e-6)


@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=str)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_prob_targets(isa, threads, rng, shape, weighted, reduction, smoothing):
    x = logits(rng, shape, LOSS_SCALE)
    q = prob_targets(rng, shape)
    w = class_weight(rng, shape) if weighted else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=smoothing)
    assert_close(minidnn.cross_entropy(x, q, **kw), ref.cross_entropy(x, q, **kw))
    tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    g = grad_for(rng, reduction, tshape)
    assert_close(minidnn.cross_entropy_backward(g, x, q, **kw), ref.cross_entropy_backward(g, x, q, **kw), tol=5e-6)


@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=str)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(threads, rng, shape, weighted, reduction):
    lp = ref.log_softmax(logits(rng, shape, LOSS_SCALE), axis=1 if len(shape) > 1 else 0).astype(np.float32)
    t = class_targets(rng, shape, ignore_index=0)
    w = class_weight(rng, shape) if weighted else None
    kw = dict(weight=w, ignore_index=0, reduction=reduction)
    assert_close(minidnn.nll_loss(lp, t, **kw), ref.nll_loss(lp, t, **kw))
    g = grad_for(rng, reduction, t.shape)
    assert_close(minidnn.nll_loss_backward(g, lp, t, **kw), ref.nll_loss_backward(g, lp, t, **kw))


@pytest.mark.parametrize("targets", [4, 16384, 16385])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_target_out_of_range_at_the_end(rng, targets, reduction):
    """The last target out of range: both the one-pass reduced NLL (up to
    16384 targets) and the per-element kernel find it."""
    lp = rng.standard_normal((targets, 3)).astype(np.float32)
    t = rng.integers(0, 3, targets)
    t[-1] = 3
    with pytest.raises(IndexError, match="target"):
        minidnn.nll_loss(lp, t, reduction=reduction)


def test_cross_entropy_int32_targets_and_ignore_in_range(rng):
    x = logits(rng, (9, 6))
    t = rng.integers(0, 6, size=9).astype(np.int32)
    kw = dict(ignore_index=2, label_smoothing=0.05)
    assert_close(minidnn.cross_entropy(x, t, **kw), ref.cross_entropy(x, t, **kw))
    assert_close(minidnn.cross_entropy_backward(1.0, x, t, **kw), ref.cross_entropy_backward(1.0, x, t, **kw))


def test_cross_entropy_huge_logits_and_all_ignored(isa, threads):
    # Near float max, smoothing's sum over classes of (lse - x) overflows
    # float32 (in PyTorch too), so that case stops at 1e38.
    x = np.array([[1e30, 0.0, -1e30], [0.0, 1e30, 3e38], [1.0, 2.0, 3.0]], dtype=np.float32)
    x_smooth = np.where(x > 1e38, np.float32(1e38), x)
    t = np.array([0, 1, 2], dtype=np.int64)
    for x, kw in ((x, dict(reduction="none")), (x_smooth, dict(reduction="none", label_smoothing=0.3))):
        out = minidnn.cross_entropy(x, t, **kw)
        assert np.isfinite(out[[0, 2]]).all()
        assert_close(out, ref.cross_entropy(x, t, **kw))
    ignored = np.full(3, -100, dtype=np.int64)
    assert np.isnan(minidnn.cross_entropy(x, ignored))
    assert minidnn.cross_entropy(x, ignored, reduction="sum") == 0.0
    assert (minidnn.cross_entropy_backward(1.0, x, ignored, reduction="sum") == 0.0).all()


def test_cross_entropy_nan_and_neg_inf_rows(isa, threads):
    x = np.array([[1.0, np.nan, 0.0], [-np.inf, -np.inf, -np.inf], [0.0, 1.0, -np.inf]], dtype=np.float32)
    t = np.array([0, 1, 1], dtype=np.int64)
    assert_close(minidnn.cross_entropy(x, t, reduction="none"), ref.cross_entropy(x, t, reduction="none"))
    q = np.full((3, 3), 1.0 / 3.0, dtype=np.float32)
    assert_close(minidnn.cross_entropy(x, q, reduction="none"), ref.cross_entropy(x, q, reduction="none"))


def test_cross_entropy_scalar_results_are_0d(rng):
    x = logits(rng, (4, 5))
    t = class_targets(rng, (4, 5), ignored=False)
    out = minidnn.cross_entropy(x, t)
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float32
    g = minidnn.cross_entropy_backward(np.asarray(2.0, dtype=np.float32), x, t)
    assert_close(g, ref.cross_entropy_backward(2.0, x, t))


# ---------------------------------------------------------------------------
# against PyTorch, when it is installed
# ---------------------------------------------------------------------------


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = logits(rng, (16, 37, 3))
    t = class_targets(rng, (16, 37, 3))
    w = class_weight(rng, (16, 37, 3))
    xt = torch.from_numpy(x).requires_grad_(True)
    loss = F.cross_entropy(xt, torch.from_numpy(t), weight=torch.from_numpy(w), label_smoothing=0.1)
    loss.backward()
    ours = minidnn.cross_entropy(x, t, weight=w, label_smoothing=0.1)
    assert abs(float(ours) - loss.item()) <= 1e-5 * abs(loss.item())
    assert_close(minidnn.cross_entropy_backward(1.0, x, t, weight=w, label_smoothing=0.1), xt.grad.numpy(), tol=1e-5)
    for axis in (0, 1, 2):
        assert_close(minidnn.softmax(x, axis=axis), torch.softmax(torch.from_numpy(x), axis).numpy(), tol=1e-5)
        assert_close(minidnn.log_softmax(x, axis=axis), torch.log_softmax(torch.from_numpy(x), axis).numpy(), tol=1e-5)


@pytest.mark.parametrize("shape", [(65, 32771), (1, 300007)], ids=str)
def test_large_outputs_and_rows_past_the_one_pass_limit(isa, threads, rng, shape):
    """Large outputs come from the reuse pool; rows longer than the one-pass
    softmax limit (2^18) recompute the exp instead of keeping it in y."""
    x = logits(rng, shape, LOSS_SCALE)
    assert_close(minidnn.softmax(x), ref.softmax(x))
    assert_close(minidnn.log_softmax(x), ref.log_softmax(x))
    t = class_targets(rng, shape)
    assert_close(minidnn.cross_entropy_backward(1.0, x, t), ref.cross_entropy_backward(1.0, x, t), tol=5e-6)


def test_empty_batches_follow_pytorch():
    x = np.zeros((0, 5), dtype=np.float32)
    t = np.zeros((0,), dtype=np.int64)
    assert np.isnan(minidnn.cross_entropy(x, t))
    assert minidnn.cross_entropy(x, t, reduction="sum") == 0.0
    assert minidnn.cross_entropy(x, t, reduction="none").shape == (0,)
    assert minidnn.cross_entropy_backward(1.0, x, t).shape == (0, 5)
    assert np.isnan(minidnn.nll_loss(x, t))
    spatial = np.ones((2, 5, 0), dtype=np.float32)
    assert minidnn.log_softmax(spatial, axis=1).shape == (2, 5, 0)
    assert minidnn.cross_entropy(spatial, np.zeros((2, 0), dtype=np.int64), reduction="none").shape == (2, 0)


@pytest.mark.parametrize("shape", [(2, 100003), (3, 40000), (1, 262149)], ids=str)
def test_few_long_rows_bit_identical_across_thread_counts(isa, rng, shape):
    """Few long rows are reduced in slices fixed by the shape, which the
    threads share out: every op of the family gives the same bits at 1 and
    2 threads (rows 2x100003 once differed by 1.9e-6 in log_softmax)."""
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    y = minidnn.softmax(x)
    target = rng.integers(0, shape[1], shape[0])
    prob = ref.softmax(rng.standard_normal(shape), -1).astype(np.float32)
    calls = [
        lambda: minidnn.softmax(x),
        lambda: minidnn.log_softmax(x),
        lambda: minidnn.softmax_backward(g, y),
        lambda: minidnn.log_softmax_backward(g, np.log(y)),
        lambda: minidnn.cross_entropy(x, target, reduction="none", label_smoothing=0.1),
        lambda: minidnn.cross_entropy(x, prob, reduction="none"),
        lambda: minidnn.cross_entropy_backward(np.float32(1.0), x, target, label_smoothing=0.1),
    ]
    for call in calls:
        assert_same_at_thread_counts(call)
