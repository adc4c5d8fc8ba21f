"""Timing on a CUDA device for the benchmark harness (`--device cuda`).

On a GPU every library's call is timed the same way:
- warm-up: calls for timing.warmup_s (at least WARMUP_CALLS), then a device
  synchronization;
- each of timing.samples repeats first writes a buffer twice the size of the
  GPU's L2 (so no input is left in L2 by the previous repeat: the numbers
  are those of data coming from HBM), then times ONE call between two CUDA
  events recorded on the legacy default stream, where minidnn's kernels run
  and PyTorch's default stream is;
- the median of the repeats is reported (on a dedicated GPU the spread is
  small, and the median is what a training loop sees; the CPU harness takes
  the fastest sample because its machine is shared).
The copy ceiling is PyTorch's device-to-device `copy_` of the case's working
set (half read, half written, counted as read + write bytes), timed the same
way. PyTorch with CUDA is required on a GPU: it provides the events, the
flush buffer, the copy and the peer.

On the emulated device (MINIDNN_CUDA_EMULATOR=1) kernels run synchronously
on the CPU, so a host clock times them; the flush writes a host buffer and
the copy ceiling is a host copy. That mode only exercises the pipeline (the
smoke test in tests/test_bench_cuda.py); its times say nothing of a GPU.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Optional

import numpy as np

import minidnn

WARMUP_CALLS = 3
# The H100's L2 is 50 MB; without a device to ask, flush with more than that.
DEFAULT_L2_BYTES = 64 * 2**20
GB = 1e9


def emulated() -> bool:
    return minidnn.cuda._device() == "emulated"


@dataclass
class DeviceClock:
    """Elapsed seconds of one call on the device, and the L2 flush."""

    torch: Optional[ModuleType]  # with CUDA on a GPU; None on the emulated device
    flush_buffer: Any

    @classmethod
    def create(cls, torch: Optional[ModuleType]) -> "DeviceClock":
        if emulated():
            return cls(None, np.empty(2 * DEFAULT_L2_BYTES // 4, np.float32))
        if torch is None or not torch.cuda.is_available():
            raise RuntimeError("--device cuda on a GPU needs PyTorch with CUDA (events, L2 flush, copy, peer)")
        l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or DEFAULT_L2_BYTES
        return cls(torch, torch.empty(2 * l2 // 4, dtype=torch.float32, device="cuda"))

    def flush(self) -> None:
        """Writes twice the L2's size, evicting what the last call left there."""
        self.flush_buffer.fill(0.0) if self.torch is None else self.flush_buffer.fill_(0.0)

    def synchronize(self) -> None:
        if self.torch is not None:
            self.torch.cuda.synchronize()

    def one_call(self, fn: Callable[[], Any]) -> float:
        if self.torch is None:  # the emulator runs kernels synchronously
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        start, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def time_per_call(fn: Callable[[], Any], clock: DeviceClock, samples: int, warmup_s: float) -> float:
    """Median seconds of one call over `samples` repeats, each after an L2
    flush, following the warm-up (see the module's docstring)."""
    warmup_start = time.perf_counter()
    calls = 0
    while calls < WARMUP_CALLS or time.perf_counter() - warmup_start < warmup_s:
        fn()
        calls += 1
    clock.synchronize()
    seconds = []
    for _ in range(samples):
        clock.flush()
        seconds.append(clock.one_call(fn))
    return statistics.median(seconds)


def copy_bandwidth(working_set: int, clock: DeviceClock, samples: int, warmup_s: float) -> tuple[float, str]:
    """(GB/s, method) of a device copy of working_set / 2 bytes into another
    working_set / 2, counted as read + write bytes, timed as the cases."""
    n = max(1, working_set // 8)
    if clock.torch is None:
        src, dst = np.full(n, 1.5, np.float32), np.empty(n, np.float32)
        fn, method = (lambda: np.copyto(dst, src)), "host copy (emulated device)"
    else:
        torch = clock.torch
        src = torch.full((n,), 1.5, dtype=torch.float32, device="cuda")
        dst = torch.empty_like(src)
        fn, method = (lambda: dst.copy_(src)), "torch cuda copy_"
    seconds = time_per_call(fn, clock, samples, warmup_s)
    return 2 * n * 4 / seconds / GB, method


def to_device(inputs: dict) -> dict:
    """The case's NumPy inputs as minidnn.cuda.Arrays (PyTorch takes them
    zero-copy through torch.as_tensor: __cuda_array_interface__)."""
    return {name: minidnn.cuda.to_device(value) for name, value in inputs.items()}


def to_host(out: Any) -> Any:
    """An output (an Array, a tensor, or a tuple of them) as NumPy."""
    if isinstance(out, tuple):
        return tuple(to_host(o) for o in out)
    if isinstance(out, minidnn.cuda.Array):
        return out.numpy()
    if hasattr(out, "detach"):  # a torch tensor, on the GPU
        return out.detach().cpu().numpy()
    return out
