"""The CUDA side of the benchmark harness (`--device cuda`, bench/cuda_timing.py),
run end to end on the emulated device: the same pipeline a GPU run takes
(device inputs, checks on NumPy, L2 flush before each repeat, median,
device copy ceiling), with the host clock the emulator's synchronous kernels
allow. The GPU's events and PyTorch's peer run only in bench/gpu_validate.sh."""

from __future__ import annotations

import json
import sys

import numpy as np

from minidnn import cuda
from minidnn.bench import cuda_timing
from minidnn.bench.__main__ import main
from test_bench import RESULT_KEYS


def test_cuda_run_on_the_emulated_device_writes_the_suite_json(tmp_path):
    path = tmp_path / "cuda.json"
    with cuda._emulated():
        status = main(["--device", "cuda", "--quick", "--ops", "softmax", "--groups", "throughput",
                       "--cases", "log_softmax fwd 4096x1000", "--json", str(path)])
    assert status == 0
    (result,) = json.loads(path.read_text())["results"]
    assert set(result) == RESULT_KEYS
    assert result["device"] == "emulated" and result["pass"]  # "cuda" on a GPU
    assert result["time_ms"] > 0 and result["ceiling_GBps"] > 0 and result["torch_time_ms"] is None


class CountingClock(cuda_timing.DeviceClock):
    def __init__(self, durations):
        super().__init__(None, np.empty(4, np.float32))
        self.durations, self.events = iter(durations), []

    def flush(self):
        self.events.append("flush")

    def one_call(self, fn):
        fn()
        self.events.append("call")
        return next(self.durations)


def test_each_repeat_is_one_call_after_a_flush_and_the_median_is_reported():
    calls = []
    clock = CountingClock([5.0, 1.0, 3.0, 100.0, 2.0])
    seconds = cuda_timing.time_per_call(lambda: calls.append(1), clock, samples=5, warmup_s=0.0)
    assert seconds == 3.0  # the median, not the fastest or the mean
    assert len(calls) == cuda_timing.WARMUP_CALLS + 5
    assert clock.events == ["flush", "call"] * 5


def test_outputs_come_back_to_the_host():
    with cuda._emulated():
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        device = cuda_timing.to_device({"x": x})
        assert isinstance(device["x"], cuda.Array)
        back = cuda_timing.to_host((device["x"], device["x"]))
        assert all(np.array_equal(b, x) for b in back)


def _resources_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "scripts" / "cuda_resources.py"
    spec = importlib.util.spec_from_file_location("cuda_resources", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cuda_resources"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_theoretical_occupancy_as_the_cuda_calculator():
    """bench/scripts/cuda_resources.py's formula, on cases worked by hand
    from the CUDA Occupancy Calculator's rules (sm_80: 64K registers, 64
    warps, 32 blocks, 164 KiB shared an SM; 1 KiB reserved a block)."""
    r = _resources_script()
    sm80, sm90 = r.LIMITS["sm_80"], r.LIMITS["sm_90"]

    def occ(registers, shared, block, limits=sm80):
        return r.occupancy(r.Kernel("k", registers, shared, 0, 0, block), limits)

    assert occ(32, 0, 256) == (1.0, 8, "warps")
    assert occ(40, 0, 256) == (0.75, 6, "registers")  # 40 * 32 = 1280 registers a warp: 51 warps
    assert occ(64, 0, 256) == (0.5, 4, "registers")
    assert occ(72, 0, 256) == (0.375, 3, "registers")  # 2304 a warp (rounded to 256): 28 warps
    assert occ(32, 48 * 1024, 256) == (0.375, 3, "shared memory")  # 49 KiB a block: 3 in 164
    assert occ(16, 0, 32) == (0.5, 32, "blocks")  # one warp a block, 32 blocks at most
    # sm_90 reports the reserved KiB inside SHARED (1152 = 128 + 1024): not counted twice.
    assert occ(32, 1152, 256, sm90) == occ(32, 128, 256, sm80)[:2] + ("warps",)
    assert occ(32, 200 * 1024 + 1024, 1024, sm90) == (0.5, 1, "shared memory")  # 201 KiB: 1 in 228
