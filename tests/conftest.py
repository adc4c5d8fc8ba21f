"""Shared fixtures: every CPU path, 1 and 2 threads, poisoned outputs."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import minidnn
from minidnn import _C, _runtime

ISAS = ["avx512", "avx2", "scalar"]


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test on one CPU path; a path this CPU lacks is skipped (and
    reported as skipped, never as passed)."""
    if not _C.cpu_supports()[request.param]:
        pytest.skip(f"this CPU lacks {request.param}")
    with _runtime._isa(request.param):
        yield request.param


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def threads(request):
    previous = minidnn.get_num_threads()
    minidnn.set_num_threads(request.param)
    yield request.param
    minidnn.set_num_threads(previous)


@pytest.fixture(autouse=True)
def poisoned_outputs():
    """Every output array starts as NaN, so an element a kernel fails to write
    shows up as a mismatch."""
    with _runtime.poisoned_outputs(float("nan")):
        yield


@pytest.fixture
def rng(request):
    # A seed per test, fixed so that a failure reproduces: crc32, not hash(),
    # whose value for a str changes with every process (PYTHONHASHSEED).
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def rel_err(out, ref) -> float:
    """||out - ref|| / ||ref|| over the finite entries of ref, after checking
    that NaN and +-inf sit in the same places."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref), err_msg="NaN positions differ")
    np.testing.assert_array_equal(np.isposinf(out), np.isposinf(ref), err_msg="+inf positions differ")
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(ref), err_msg="-inf positions differ")
    finite = np.isfinite(ref)
    denom = np.linalg.norm(ref[finite])
    diff = np.linalg.norm(out[finite] - ref[finite])
    if denom == 0.0:
        return diff
    return diff / denom


def assert_close(out, ref, tol: float = 2e-6) -> None:
    err = rel_err(out, ref)
    assert err <= tol, f"relative error {err:.3g} > {tol:.1g}"
