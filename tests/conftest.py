"""Shared fixtures: every CPU path, 1 and 2 threads, poisoned outputs; the
hypothesis profiles and helpers of the property tests."""

from __future__ import annotations

import importlib.util
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

import minidnn
from minidnn import _C, _runtime

ISAS = ["avx512", "avx2", "scalar"]

# Property tests run derandomized: their examples depend only on the test and
# on hypothesis's version (pinned in pyproject.toml), so a CI failure
# reproduces anywhere, and print_blob prints the @reproduce_failure line that
# replays it. No deadline: one example runs every CPU path and thread count,
# and timings on shared 2-core machines vary. 200 examples a test keep the
# property tests near 30 s on 2 cores. HYPOTHESIS_PROFILE=explore hunts locally
# with fresh random examples, many more of them.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200, print_blob=True, database=None)
settings.register_profile("explore", deadline=None, max_examples=2000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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


def on_every_cpu_path(kernel) -> dict:
    """{"isa/tN": kernel()} over every CPU path this CPU supports and 1 and 2
    threads. For @given tests, which cannot use the isa and threads fixtures:
    a function-scoped fixture runs once per test, not once per example."""
    # poisoned_outputs() sets the _C allocator's poison and this mirror together.
    assert _runtime._poison is not None and np.isnan(_runtime._poison), "outputs are not poisoned in this test"
    supported = _C.cpu_supports()
    previous = minidnn.get_num_threads()
    outputs = {}
    try:
        for isa in ISAS:
            if not supported[isa]:
                continue
            with _runtime._isa(isa):
                for threads in (1, 2):
                    minidnn.set_num_threads(threads)
                    outputs[f"{isa}/t{threads}"] = kernel()
    finally:
        minidnn.set_num_threads(previous)
    return outputs


# Float32 results whose exact intermediates exceed this are not compared:
# float32 overflows there in any implementation (PyTorch's too); the factor
# of 2 below float max leaves room for rounding at the boundary.
OVERFLOW_MARGIN = float(np.finfo(np.float32).max) / 2


def assert_same_at_thread_counts(call, counts=(1, 2, 1)) -> None:
    """`call()` at each thread count in turn (the caller's count restored
    after): every result bit-identical to the first. `call` returns an array
    or a tuple of arrays (None where an output is absent)."""
    previous = minidnn.get_num_threads()
    runs = []
    try:
        for t in counts:
            minidnn.set_num_threads(t)
            result = call()
            runs.append(result if isinstance(result, tuple) else (result,))
    finally:
        minidnn.set_num_threads(previous)
    for run in runs[1:]:
        for ours, first in zip(run, runs[0], strict=True):
            np.testing.assert_array_equal(ours, first)


def assert_raises_naming(call, error, words) -> None:
    """`call()` raises `error`, and its message contains each of `words`:
    the argument's name, what was expected and what was given."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def assert_agrees(out, expected, scale, rtol: float, peak=None, unchecked=None, path: str = "") -> None:
    """Element by element, `out` (float32) against the float64 reference
    `expected`: NaN, +inf and -inf in the same places, and elsewhere
    |out - expected| <= rtol * scale, where `scale` is the size of the terms
    that make up each result (its conditioning: a difference of two large
    terms can only be as accurate as the terms). Elements whose exact finite
    intermediates `peak` exceed OVERFLOW_MARGIN are left out: there float32
    overflow may turn a finite result into inf, or an inf into NaN; so are
    those of the mask `unchecked` (the caller says why)."""
    out = np.asarray(out)
    expected = np.asarray(expected, dtype=np.float64)
    assert out.dtype == np.float32, f"{path}: dtype {out.dtype}"
    assert out.shape == expected.shape, f"{path}: shape {out.shape}, expected {expected.shape}"
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), expected.shape)
    checked = np.ones(expected.shape, dtype=bool) if peak is None else ~(np.asarray(peak) > OVERFLOW_MARGIN)
    if unchecked is not None:
        checked = checked & ~np.asarray(unchecked)
    out64 = out.astype(np.float64)
    for name, kind in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        differ = checked & (kind(out64) != kind(expected))
        assert not differ.any(), (
            f"{path}: {name} positions differ at {np.argwhere(differ)[:5].tolist()}: "
            f"got {out64[differ][:5]}, expected {expected[differ][:5]}"
        )
    finite = checked & np.isfinite(expected)
    assert np.isfinite(scale[finite]).all(), f"{path}: the error bound is not finite where the result is"
    with np.errstate(invalid="ignore"):
        error = np.abs(out64 - expected)
    bad = finite & ~(error <= rtol * scale)
    if bad.any():
        with np.errstate(divide="ignore"):
            worst = np.unravel_index(np.argmax(np.where(bad, error / scale, -1.0)), expected.shape)
        raise AssertionError(
            f"{path}: {bad.sum()} of {finite.sum()} elements off by more than {rtol:g} x their scale; "
            f"worst at {list(worst)}: got {out64[worst]!r}, expected {expected[worst]!r}, "
            f"error {error[worst]:.3g} = {error[worst] / scale[worst]:.3g} x scale {scale[worst]:.3g}"
        )


def import_example(name: str):
    """examples/<name>.py as a module, for the tests that run its steps."""
    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
