"""Runtime control: threads, CPU path selection (in process and through
MINIDNN_ISA), configuration, CUDA queries without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import minidnn
from minidnn import _C


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_threads_roundtrip():
    previous = minidnn.get_num_threads()
    try:
        minidnn.set_num_threads(3)
        assert minidnn.get_num_threads() == 3
    finally:
        minidnn.set_num_threads(previous)


def test_omp_num_threads_honoured():
    out = run_python("import minidnn; print(minidnn.get_num_threads())", OMP_NUM_THREADS="3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


@pytest.mark.parametrize("name", ["avx512", "avx2", "scalar"])
def test_minidnn_isa_env(name):
    code = "import minidnn, warnings; print(minidnn.config()['isa'])"
    out = run_python(code, MINIDNN_ISA=name)
    assert out.returncode == 0, out.stderr
    if _C.cpu_supports()[name]:
        assert out.stdout.strip() == name
        assert "RuntimeWarning" not in out.stderr
    else:
        # A path the CPU lacks is never taken: a warning, then the best one.
        assert out.stdout.strip() == _C.best_isa()
        assert "lacks it" in out.stderr


def test_minidnn_isa_unknown_value_warns():
    out = run_python("import minidnn; print(minidnn.config()['isa'])", MINIDNN_ISA="sse9")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _C.best_isa()
    assert "not one of avx512, avx2, scalar" in out.stderr


def test_forcing_an_unknown_isa_in_process_raises():
    with pytest.raises(ValueError, match="expected one of"):
        _C.set_isa("mmx")


def test_forcing_a_missing_isa_in_process_raises():
    missing = [name for name, ok in _C.cpu_supports().items() if not ok]
    if not missing:
        pytest.skip("this CPU supports every path")
    with pytest.raises(ValueError, match="does not support"):
        _C.set_isa(missing[0])


def test_config_and_show_config(capsys):
    cfg = minidnn.config()
    for key in ("version", "isa", "isa_compiled", "openmp", "num_threads", "cuda_built", "cuda_available"):
        assert key in cfg
    assert cfg["version"] == minidnn.__version__
    assert cfg["isa"] in cfg["isa_supported_by_cpu"]
    minidnn.show_config()
    assert "isa" in capsys.readouterr().out


def test_cuda_queries_never_fail():
    assert isinstance(minidnn.cuda.is_available(), bool)
    count = minidnn.cuda.device_count()
    assert count >= 0
    if count == 0:
        with pytest.raises(IndexError):
            minidnn.cuda.get_device_name(0)
    else:
        assert minidnn.cuda.get_device_name(0)


def test_concurrent_calls_from_python_threads():
    """Kernels run without the GIL, so two Python threads can be inside them
    at once; each result must still match the reference (no shared state)."""
    import threading

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((256, 4096)).astype(np.float32) for _ in range(2)]
    outs = [None, None]

    def work(i):
        outs[i] = minidnn.softmax(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, y in zip(xs, outs):
        np.testing.assert_allclose(y, minidnn.reference.softmax(x), rtol=1e-5, atol=1e-9)


def test_openmp_spin_setting_is_not_left_behind():
    code = "import os, minidnn; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
    kept = run_python(code, GOMP_SPINCOUNT="123")
    assert kept.stdout.strip() == "123"


def test_large_outputs_are_reused_only_when_free():
    from minidnn import _runtime

    shape = (64, 2**17 + 1)  # 32 MB and more: pooled
    nbytes = shape[0] * shape[1] * 4
    x = np.ones(shape, dtype=np.float32)
    minidnn.empty_cache()
    first = minidnn.relu(x)
    view = first[1:3]
    del first
    second = minidnn.relu(x)
    assert second.base is not view.base  # a live view keeps its buffer out of reuse
    assert (second == 1.0).all()
    del second
    third = minidnn.relu(x)
    assert third.base is not view.base
    del third
    minidnn.empty_cache()  # the in-use buffer comes first in the list
    assert [raw is view.base for raw in _runtime._pool[nbytes]] == [True]
    del view
    minidnn.empty_cache()
    assert _runtime._pool[nbytes] == []
