"""The C++ SGEMM (csrc/cpu/gemm) through its private binding _C.gemm: every
CPU path, 1 and 2 threads, both transposes of both operands, alpha / beta,
the fused bias, leading dimensions wider than the matrix, B packed once
(pack_b + gemm_packed_b), and shapes that sweep every microkernel's edge
tiles (M around mr, N around nr and its SIMD width) and the cache blocks
(K around kc, N around nc, M around mc)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import minidnn
from minidnn import _C

# Rows around every ISA's mr (4, 6, 14; B is read in place up to mr rows),
# the dot-product route (up to 6 or 8 rows) and the weight-rows route (up to
# 128 rows; its tiles' columns are rows of C, one-vector tiles up to the lane
# width), columns around every nr (8, 16, 32), lane width and half lane
# width (AVX-512's 8-float tail kernel; 72: two whole tiles and such a tail),
# K = 1 and around kc (256, 384).
M_SWEEP = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 24, 25, 28, 29, 32, 33, 47, 127, 128, 129]
N_SWEEP = [1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 72]
K_SWEEP = [1, 2, 17, 255, 256, 257, 383, 385]
SWEEP = [(m, N_SWEEP[i % len(N_SWEEP)], K_SWEEP[i % len(K_SWEEP)]) for i, m in enumerate(M_SWEEP)] + [
    (m, n, 5) for m, n in itertools.product([1, 6, 14, 29], N_SWEEP)
]
# Across the cache blocks: M past every mc (512, 1536, 2016), N past every
# nc (128, 512, 640), K past several kc.
BLOCKS = [(2100, 40, 20), (33, 700, 9), (70, 150, 800), (300, 300, 300)]
TRANSPOSES = list(itertools.product([False, True], repeat=2))


def _operands(rng, m, n, k, trans_a, trans_b, pad=0):
    """A, B stored as op(X) asks, each `pad` columns wider than needed (so
    the leading dimension exceeds the row length), and C likewise."""
    a = rng.standard_normal(((k, m + pad) if trans_a else (m, k + pad)), dtype=np.float32)
    b = rng.standard_normal(((n, k + pad) if trans_b else (k, n + pad)), dtype=np.float32)
    c = rng.standard_normal((m, n + pad), dtype=np.float32)
    return a, b, c


def _op(x, rows, cols, trans):
    return (x[:cols, :rows].T if trans else x[:rows, :cols]).astype(np.float64)


def _check(a, b, c_in, c_out, m, n, k, trans_a, trans_b, alpha, beta, bias):
    """Each C element is a length-K dot product plus beta * C + bias. Its
    float32 error is bounded by (a small multiple of) the unit roundoff times
    the sum of the magnitudes of its terms, not times |C|, which can cancel
    to near zero: so the error is measured relative to
    |alpha| |A| |B| + |beta| |C| + |bias| (the problem's condition). With
    random signs the error grows like sqrt(K) u, far below the K u worst
    case; 2e-6 leaves room for K in the thousands."""
    a64, b64 = _op(a, m, k, trans_a), _op(b, k, n, trans_b)
    c64 = c_in[:m, :n].astype(np.float64)
    bias64 = np.zeros(n) if bias is None else bias.astype(np.float64)
    ref = alpha * (a64 @ b64) + (beta * c64 if beta != 0 else 0.0) + bias64
    cond = abs(alpha) * (np.abs(a64) @ np.abs(b64)) + (abs(beta) * np.abs(c64) if beta != 0 else 0.0) + np.abs(bias64)
    cond = np.maximum(cond, np.finfo(np.float32).tiny)
    err = np.max(np.abs(c_out[:m, :n] - ref) / cond) if m * n else 0.0
    assert err <= 2e-6, f"error {err:.3g} relative to the condition"


def _run(rng, m, n, k, trans_a, trans_b, alpha=1.0, beta=0.0, with_bias=False, pack_b=False, pad=0, nan_c=False):
    a, b, c = _operands(rng, m, n, k, trans_a, trans_b, pad)
    if nan_c:
        c[:m, :n] = np.nan  # beta == 0 must never read C
    bias = rng.standard_normal(n, dtype=np.float32) if with_bias else None
    c_in = c.copy()
    _C.gemm(a, b, c, m, n, k, trans_a, trans_b, alpha, beta, bias, pack_b)
    _check(a, b, c_in, c, m, n, k, trans_a, trans_b, alpha, beta, bias)
    # Nothing outside the m x n corner of C's storage is touched.
    np.testing.assert_array_equal(c[:, n:], c_in[:, n:])
    np.testing.assert_array_equal(c[m:, :], c_in[m:, :])


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=lambda t: "T" if t else "N")
@pytest.mark.parametrize("m,n,k", SWEEP, ids=str)
def test_edge_tiles(isa, threads, rng, m, n, k, trans_a, trans_b):
    _run(rng, m, n, k, trans_a, trans_b, nan_c=True)


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=lambda t: "T" if t else "N")
@pytest.mark.parametrize("m,n,k", BLOCKS, ids=str)
def test_cache_blocks(isa, threads, rng, m, n, k, trans_a, trans_b):
    _run(rng, m, n, k, trans_a, trans_b, alpha=0.75, beta=-0.5, with_bias=True)


@pytest.mark.parametrize("pack_b", [False, True], ids=["", "packed_b"])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=lambda t: "T" if t else "N")
@pytest.mark.parametrize("m,n,k", [(1, 33, 7), (5, 17, 300), (29, 40, 385), (47, 65, 2)], ids=str)
def test_alpha_beta_bias_ld(isa, threads, rng, m, n, k, trans_a, trans_b, pack_b):
    _run(rng, m, n, k, trans_a, trans_b, alpha=-1.5, beta=0.25, with_bias=True, pack_b=pack_b, pad=3)


@pytest.mark.parametrize("m,n,k", [(40, 100, 700), (3, 50, 9), (20, 1, 1)], ids=str)
def test_packed_b_matches_unpacked(isa, threads, rng, m, n, k):
    _run(rng, m, n, k, False, True, pack_b=True, nan_c=True)
    _run(rng, m, n, k, True, False, pack_b=True, beta=1.0)


@pytest.mark.parametrize("m,n", [(0, 5), (5, 0), (3, 4)], ids=str)
@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_empty_k(isa, m, n, beta):
    """K == 0: C = beta * C + bias; beta == 0 overwrites even NaN."""
    a = np.zeros((m, 0), np.float32)
    b = np.zeros((0, n), np.float32)
    c = np.full((m, n), np.nan if beta == 0 else 3.0, np.float32)
    bias = np.arange(n, dtype=np.float32)
    _C.gemm(a, b, c, m, n, 0, False, False, 1.0, beta, bias, False)
    expected = (0.0 if beta == 0 else beta * 3.0) + np.broadcast_to(bias, (m, n))
    np.testing.assert_array_equal(c, expected)


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=lambda t: "T" if t else "N")
@pytest.mark.parametrize(
    "m,n,k", [(3, 300, 500), (30, 97, 1000), (600, 200, 450), (64, 1024, 64), (128, 301, 40)], ids=str
)
def test_bit_identical_across_threads(isa, rng, m, n, k, trans_a, trans_b):
    """Threads split only the output, never K: 1, 2 and 3 threads and a
    repeated run give the same bits."""
    a, b, _ = _operands(rng, m, n, k, trans_a, trans_b)
    results = []
    previous = minidnn.get_num_threads()
    try:
        for t in (1, 2, 3, 2):
            minidnn.set_num_threads(t)
            c = np.full((m, n), np.nan, np.float32)
            _C.gemm(a, b, c, m, n, k, trans_a, trans_b, 1.0, 0.0, None, False)
            results.append(c)
    finally:
        minidnn.set_num_threads(previous)
    for c in results[1:]:
        np.testing.assert_array_equal(c, results[0])


def test_binding_rejects_short_storage():
    a = np.ones((4, 5), np.float32)
    c = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="a: expected storage of at least 4 x 6"):
        _C.gemm(a, a.T.copy(), c, 4, 4, 6, False, False, 1.0, 0.0, None, False)
    with pytest.raises(ValueError, match="c: expected storage of at least 4 x 5"):
        _C.gemm(a, a, c, 4, 5, 4, False, False, 1.0, 0.0, None, False)
