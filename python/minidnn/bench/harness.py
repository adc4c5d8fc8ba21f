"""The benchmark harness: machine ceilings, timing, correctness checks, peers
(PyTorch, ONNX Runtime), the printed tables and the JSON report.

Op families only describe cases (see Case and OverheadCase); everything else
lives here. Two groups of cases: "throughput" (large shapes, against the
machine's ceilings and the peers) and "overhead" (tiny shapes, microseconds
per call against PyTorch eager).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

import minidnn
from minidnn import _C

from . import FAMILIES, cuda_timing

Inputs = Dict[str, np.ndarray]
"""A case's named inputs; for ONNX Runtime the names are the model's inputs."""

Output = Union[np.ndarray, Tuple[np.ndarray, ...]]
"""What one call returns: an array, or a tuple of them (e.g. loss and gradient)."""

TorchPrepare = Callable[[Inputs], Callable[[], Any]]
"""Given the inputs, sets up PyTorch tensors and returns the call to time; the
call returns a tensor or a tuple of tensors comparable with minidnn's output."""

GB = 1e9
GFLOP = 1e9
REL_TOL_PEER = 1e-4  # peers disagreeing with minidnn by more than this are reported
PAUSE_S = 0.05  # between timing blocks of different libraries: their idle threads spin


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    bytes is the minimum memory traffic of one call (what a perfect kernel must
    read and write); flops, when given, makes the case compute-bound, so it is
    measured against the SGEMM ceiling instead of the copy bandwidth.
    working_set is the number of distinct bytes one call touches, when fewer
    than `bytes` (an operand read twice counts once): it decides how much of
    the traffic the caches can hold, so it picks the copy ceiling.
    check, when given, makes the inputs of the reference check in place of
    `make`: the same case at a size the float64 reference computes in a
    second or so (a convolution at batch 8 is checked at batch 2); the timed
    inputs are then compared with the peers' outputs only.
    onnx builds a model whose graph inputs are some or all of the inputs'
    names (the others can be initializers, as a convolution's weights are in
    a deployed model); the feed is those graph inputs.
    numpy, when given, prepares the same computation in NumPy on its BLAS
    (linear's forward: the SGEMM's target is stated against NumPy's
    matmul), timed on as many BLAS threads as the case has; it is reported
    beside the peers, not among them: speedup_vs_best is against the DNN
    libraries.
    """

    name: str
    make: Callable[[np.random.Generator], Inputs]
    run: Callable[[Inputs], Output]
    reference: Callable[[Inputs], Output]
    bytes: int
    flops: Optional[int] = None
    working_set: Optional[int] = None
    torch: Optional[TorchPrepare] = None
    onnx: Optional[Callable[[Inputs], Any]] = None  # Inputs -> onnx.ModelProto
    numpy: Optional[Callable[[Inputs], Callable[[], Any]]] = None
    tol: float = 1e-5
    check: Optional[Callable[[np.random.Generator], Inputs]] = None


@dataclass(frozen=True)
class OverheadCase:
    """A public op on a tiny input, timed per call against the same PyTorch
    eager call: what a call costs beyond its arithmetic (argument checks,
    dispatch, output allocation, waking threads).

    run and torch both prepare the call to time from the inputs, so that each
    library's timed call is one closure over ready arguments.
    """

    op: str
    shape: Tuple[int, ...]
    make: Callable[[np.random.Generator], Inputs]
    run: Callable[[Inputs], Callable[[], Output]]
    reference: Callable[[Inputs], Output]
    torch: TorchPrepare
    tol: float = 1e-5

    @property
    def name(self) -> str:
        return f"{self.op} {'x'.join(map(str, self.shape))}"


@dataclass(frozen=True)
class Timing:
    """How hard to measure: full runs and --quick smoke tests differ only here."""

    samples: int  # timed samples per case and library (the fastest is reported)
    min_sample_s: float  # each sample loops over k calls to last at least this long
    warmup_s: float  # warm-up calls before sampling, for at least this long
    rounds: int  # a CPU case's libraries take turns this many times, samples / rounds each turn
    overhead_rounds: int  # overhead group: timed rounds per op and library (the fastest is reported)
    overhead_calls: int  # overhead group: back-to-back calls per round


FULL = Timing(samples=21, min_sample_s=0.02, warmup_s=0.2, rounds=3, overhead_rounds=5, overhead_calls=2000)
QUICK = Timing(samples=3, min_sample_s=0.02, warmup_s=0.0, rounds=1, overhead_rounds=2, overhead_calls=200)

# Working sets (bytes, half read and half written) of the copy-bandwidth
# curve in the machine block: from L2-sized (1 MB per core on the EPYC of our
# earlier runs) past its 32 MB L3, then a memory-sized one: 1 GiB, 32x the
# EPYC's L3 and twice the 480 MiB L3 our development VM reports.
COPY_CURVE_BYTES = tuple(mib * 2**20 for mib in (1, 4, 16, 64, 256, 1024))


@dataclass(frozen=True)
class CopyBandwidth:
    """The best copy bandwidth measured with `working_set` bytes in all,
    half read and half written, counted as read + write bytes."""

    working_set: int
    GBps: float
    method: str  # the fastest of the copies tried (see copy_bandwidth)

    def to_json(self) -> dict:
        return {"bytes": self.working_set, "GBps": self.GBps, "method": self.method}


@dataclass(frozen=True)
class Ceilings:
    copy_curve: Tuple[CopyBandwidth, ...]  # ascending working sets; the last is memory-sized
    sgemm_GFLOPs: float

    @property
    def copy_memory(self) -> CopyBandwidth:
        return self.copy_curve[-1]


@dataclass
class Result:
    family: str
    case: str
    passed: bool
    device: str
    time_ms: float
    gflops: Optional[float]
    gbps: float
    working_set_bytes: int
    ceiling_GBps: Optional[float]  # the copy ceiling at the case's working set; None if compute-bound
    pct_ceiling: float
    torch_time_ms: Optional[float]
    speedup_vs_torch: Optional[float]
    ort_time_ms: Optional[float]
    speedup_vs_best: Optional[float]
    numpy_time_ms: Optional[float]
    speedup_vs_numpy: Optional[float]
    # Scratch the kernels asked for beyond inputs and outputs (runtime/scratch.h),
    # over every thread; None on the GPU.
    extra_memory_bytes: Optional[int] = None

    @property
    def extra_memory_mib(self) -> Optional[float]:
        return None if self.extra_memory_bytes is None else self.extra_memory_bytes / 2**20

    def to_json(self) -> dict:
        return {
            "family": self.family,
            "case": self.case,
            "pass": self.passed,
            "device": self.device,
            "time_ms": self.time_ms,
            "gflops": self.gflops,
            "gbps": self.gbps,
            "working_set_bytes": self.working_set_bytes,
            "ceiling_GBps": self.ceiling_GBps,
            "pct_ceiling": self.pct_ceiling,
            "torch_time_ms": self.torch_time_ms,
            "speedup_vs_torch": self.speedup_vs_torch,
            "ort_time_ms": self.ort_time_ms,
            "speedup_vs_best": self.speedup_vs_best,
            "numpy_time_ms": self.numpy_time_ms,
            "speedup_vs_numpy": self.speedup_vs_numpy,
            "extra_memory_bytes": self.extra_memory_bytes,
        }


@dataclass
class OverheadResult:
    family: str
    op: str
    shape: Tuple[int, ...]
    passed: bool
    us: float  # microseconds per call
    torch_us: Optional[float]
    speedup_vs_torch: Optional[float]

    @property
    def name(self) -> str:
        return f"{self.op} {'x'.join(map(str, self.shape))}"

    def to_json(self) -> dict:
        return {
            "family": self.family,
            "op": self.op,
            "shape": list(self.shape),
            "pass": self.passed,
            "us": self.us,
            "torch_us": self.torch_us,
            "speedup_vs_torch": self.speedup_vs_torch,
        }


def overhead_case(op: str, shape: Tuple[int, ...], make: Callable[[np.random.Generator], Inputs],
                   args: Callable[[Inputs], tuple],
                   torch_call: Callable[[Any, dict], tuple[Callable[..., Any], tuple]]) -> OverheadCase:
    """minidnn.<op>(*args(inputs)) against the call torch_call(torch, tensors)
    returns as (function, arguments), tensors being the inputs as torch
    tensors sharing their memory."""

    def run(inputs: Inputs) -> Callable[[], Any]:
        fn, fn_args = getattr(minidnn, op), args(inputs)
        return lambda: fn(*fn_args)

    def torch_prepare(inputs: Inputs) -> Callable[[], Any]:
        import torch

        fn, fn_args = torch_call(torch, {k: torch.from_numpy(v) for k, v in inputs.items()})
        return lambda: fn(*fn_args)

    return OverheadCase(
        op=op,
        shape=shape,
        make=make,
        run=run,
        reference=lambda inputs: getattr(minidnn.reference, op)(*args(inputs)),
        torch=torch_prepare,
    )


# ---------------------------------------------------------------- measuring


class BlockTimer:
    """One library's call timed in blocks of samples, the fastest sample
    kept. Each sample loops over k calls, k chosen from the warm-up (on
    creation) so that a sample lasts >= min_sample_s. The fastest sample, not
    the median: on shared 2-core machines other tenants slow whole samples by
    up to 2x at random, which moves medians between runs far more than any
    change to the code; every library is timed the same way, so ratios stay
    fair. `context` is entered around the warm-up and each block (NumPy's
    BLAS thread count)."""

    def __init__(self, fn: Callable[[], Any], timing: Timing,
                 context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self.fn = fn
        self.context = context
        fastest = math.inf
        with context():
            warmup_start = time.perf_counter()
            calls = 0
            while calls < 2 or time.perf_counter() - warmup_start < timing.warmup_s:
                start = time.perf_counter()
                fn()
                fastest = min(fastest, time.perf_counter() - start)
                calls += 1
        self.k = max(1, math.ceil(timing.min_sample_s / fastest))
        self.seconds = math.inf

    def block(self, samples: int) -> None:
        with self.context():
            for _ in range(samples):
                start = time.perf_counter()
                for _ in range(self.k):
                    self.fn()
                self.seconds = min(self.seconds, (time.perf_counter() - start) / self.k)


class DeviceTimer:
    """A call timed on the device (bench/cuda_timing.py: events, L2 flushed,
    median of the samples), in a single block."""

    def __init__(self, fn: Callable[[], Any], clock: Any, timing: Timing,
                 context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self.fn, self.clock, self.timing, self.context = fn, clock, timing, context
        self.seconds = math.inf

    def block(self, samples: int) -> None:
        with self.context():
            self.seconds = cuda_timing.time_per_call(self.fn, self.clock, samples, self.timing.warmup_s)


def time_per_call(fn: Callable[[], Any], timing: Timing) -> float:
    """Seconds per call of the fastest of timing.samples samples, in one block."""
    timer = BlockTimer(fn, timing)
    timer.block(timing.samples)
    return timer.seconds


def time_per_call_in_rounds(fn: Callable[[], Any], rounds: int, calls: int) -> float:
    """Seconds per call of the fastest of `rounds` rounds of `calls`
    back-to-back calls, after one untimed round: for calls of microseconds,
    where a fixed count keeps every op's and library's rounds alike."""
    for _ in range(calls):
        fn()
    fastest = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest / calls


def copy_methods(threads: int, torch: Optional[ModuleType]) -> str:
    """The copies copy_bandwidth tries, in words, for the printed header."""
    methods = f"NumPy copyto (1 thread), copyto on {threads} Python threads, " \
              f"_C.copy_probe ({threads} OpenMP threads)"
    return methods + (f", torch copy_ ({threads} threads)" if torch is not None else "")


def copy_bandwidth(working_set: int, threads: int, timing: Timing,
                   torch: Optional[ModuleType]) -> CopyBandwidth:
    """The fastest copy of working_set / 2 bytes into another working_set / 2,
    each method timed like the cases (fastest sample, warm caches: a working
    set that fits stays cached from one call to the next, as a case's does).

    NumPy's copy is one large memcpy, which glibc performs with non-temporal
    stores past a size threshold (about half the speed of cached stores on
    our machines); minidnn's probe copies in 256 KB memcpy blocks on its own
    threads, so it keeps cached stores; the NumPy copy on Python threads and
    PyTorch's copy_ (its own vector loop, on `threads` threads, where torch
    imports) are further opinions, none relying on one memcpy strategy. The
    ceiling is the fastest of them at this size."""
    n = working_set // 8  # float32 elements per array: half the bytes read, half written
    src = np.full(n, 1.5, dtype=np.float32)
    dst = np.empty_like(src)
    bounds = [n * i // threads for i in range(threads + 1)]
    parts = [(dst[lo:hi], src[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        methods = {
            "numpy": lambda: np.copyto(dst, src),
            # np.copyto releases the GIL, so the pool's threads copy in parallel.
            "numpy threads": lambda: list(pool.map(lambda part: np.copyto(*part), parts)),
            "copy_probe": lambda: _C.copy_probe(src, dst),
        }
        if torch is not None:
            src_tensor, dst_tensor = torch.from_numpy(src), torch.from_numpy(dst)
            methods["torch copy_"] = lambda: dst_tensor.copy_(src_tensor)
        seconds = {name: time_per_call(fn, timing) for name, fn in methods.items()}
    fastest = min(seconds, key=seconds.get)
    return CopyBandwidth(working_set=2 * src.nbytes, GBps=2 * src.nbytes / seconds[fastest] / GB,
                         method=fastest)


def blas_threads(threads: int) -> contextlib.AbstractContextManager:
    """A context in which NumPy's BLAS runs on `threads` threads
    (threadpoolctl, of the bench extra); without threadpoolctl, on its
    default, every core."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def measure_ceilings(threads: int, timing: Timing, torch: Optional[ModuleType]) -> Ceilings:
    """The copy bandwidth over COPY_CURVE_BYTES and NumPy's SGEMM throughput."""
    curve = tuple(copy_bandwidth(size, threads, timing, torch) for size in COPY_CURVE_BYTES)
    size = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty_like(a)
    with blas_threads(threads):
        sgemm = 2 * size**3 / time_per_call(lambda: np.matmul(a, b, out=c), timing)
    return Ceilings(copy_curve=curve, sgemm_GFLOPs=sgemm / GFLOP)


def _as_tuple(out: Any) -> Tuple[np.ndarray, ...]:
    """An output (array, tensor, ORT output list, or a tuple of them) as a tuple of arrays."""
    items = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(np.asarray(x.detach().numpy() if hasattr(x, "detach") else x) for x in items)


def relative_error(out: Any, ref: Any) -> float:
    """max over the outputs of ||out - ref|| / ||ref|| (the absolute norm where ref is 0)."""
    outs, refs = _as_tuple(out), _as_tuple(ref)
    if len(outs) != len(refs):
        raise ValueError(f"{len(outs)} outputs to compare with {len(refs)}")
    worst = 0.0
    for o, r in zip(outs, refs):
        if o.shape != r.shape:
            return math.inf
        r = r.astype(np.float64, copy=False).ravel()
        diff = float(np.linalg.norm(o.astype(np.float64).ravel() - r))
        norm = float(np.linalg.norm(r))
        error = diff / norm if norm > 0 else diff
        if not math.isfinite(error):  # NaN would slip through max()
            return math.inf
        worst = max(worst, error)
    return worst


# ---------------------------------------------------------------- peers


def _optional_import(*names: str) -> Optional[ModuleType]:
    """The first module if all of them import, else None."""
    try:
        modules = [importlib.import_module(name) for name in names]
    except ImportError:
        return None
    return modules[0]


def onnx_model(op_type: str, inputs: Inputs, opset: int = 13, **attributes: Any) -> Any:
    """A one-node ONNX model `op_type(*inputs) -> y` whose graph inputs are the
    named arrays of `inputs` (so `inputs` is also the feed dict)."""
    import onnx
    from onnx import helper

    def value_info(name: str, array: Optional[np.ndarray]) -> Any:
        if array is None:  # the output: type known, shape left to inference
            return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        elem_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        return helper.make_tensor_value_info(name, elem_type, array.shape)

    node = helper.make_node(op_type, list(inputs), ["y"], **attributes)
    graph = helper.make_graph(
        [node], op_type, [value_info(k, v) for k, v in inputs.items()], [value_info("y", None)]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@dataclass(frozen=True)
class Peers:
    """The peer libraries that imported (None where one did not)."""

    torch: Optional[ModuleType]
    ort: Optional[ModuleType]

    @classmethod
    def load(cls, threads: int) -> "Peers":
        torch = _optional_import("torch")
        if torch is not None:
            torch.set_num_threads(threads)
        return cls(torch=torch, ort=_optional_import("onnxruntime", "onnx"))

    def ort_session(self, model: Any, threads: int) -> Any:
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return self.ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )


# ---------------------------------------------------------------- running


def load_cases(families: Sequence[str], device: str, quick: bool) -> list[tuple[str, Case]]:
    """(family, case) for every throughput case of the given families on `device`."""
    return [
        (family, case)
        for family in families
        for case in importlib.import_module(FAMILIES[family]).cases(device, quick)
    ]


def load_overhead_cases(families: Sequence[str], device: str) -> list[tuple[str, OverheadCase]]:
    """(family, case) for every call-overhead case of the given families on `device`."""
    return [
        (family, case)
        for family in families
        for case in importlib.import_module(FAMILIES[family]).overhead_cases(device)
    ]


def _warn(message: str) -> None:
    print(f"  warning: {message}", flush=True)


def _peer_timer(label: str, setup: Callable[[], Callable[[], Any]], expected: Output,
                make_timer: Callable[..., Any], host: Callable[[Any], Any] = lambda out: out,
                context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> Any:
    """make_timer(call, context) of a peer's call (None if the peer fails),
    after checking that its output (brought to NumPy by `host`) agrees with
    minidnn's."""
    time.sleep(PAUSE_S)
    try:
        with context():
            call = setup()
            error = relative_error(host(call()), expected)
        if error > REL_TOL_PEER:
            _warn(f"{label} output differs from minidnn's by {error:.2e} (relative)")
        return make_timer(call, context)
    except Exception as exc:  # a peer that cannot run this case is reported and skipped
        _warn(f"{label} failed: {type(exc).__name__}: {exc}")
        return None


def _time_peer(label: str, setup: Callable[[], Callable[[], Any]], expected: Output,
               seconds_per_call: Callable[[Callable[[], Any]], float]) -> Optional[float]:
    """Seconds per call of a peer in one block (None if it fails its setup),
    after the check of _peer_timer."""
    call = _peer_timer(label, setup, expected, lambda call, context: call)
    return None if call is None else seconds_per_call(call)


def run_case(family: str, case: Case, device: str, sgemm_GFLOPs: float, peers: Peers,
             threads: int, timing: Timing, seed: int) -> tuple[Result, float]:
    """Checks one case against the reference (and each peer against
    minidnn), then times minidnn, PyTorch, ONNX Runtime and NumPy in turns:
    timing.rounds rounds of one block per library (on the CPU), the fastest
    sample of each library kept. Returns the result and the relative error of
    minidnn's output.

    The ceiling is the copy of the case's own working set (half read, half
    written): the working set decides how much of the traffic stays in
    cache between calls, for the copy as for the case. It is measured right
    before minidnn's first block and right after its last and the faster
    kept, so that the copy sees the load the case saw from the machine's
    other tenants
    (bench/NOTES.md, "Ceilings"). Cases that read more than they write (softmax
    backward reads two arrays per one written) are compared with the copy's
    even split; at memory-sized working sets that favours the case slightly,
    since a copy also reads each written cache line before overwriting it."""
    working_set = case.working_set or case.bytes

    copies: list[CopyBandwidth] = []  # around minidnn's blocks; none for compute-bound cases
    on_device = device == "cuda"  # bench/cuda_timing.py: events, L2 flushed, median
    clock = cuda_timing.DeviceClock.create(peers.torch) if on_device else None

    def measure_copy() -> None:
        if case.flops is not None:
            return
        if on_device:
            GBps, method = cuda_timing.copy_bandwidth(working_set, clock, timing.samples, timing.warmup_s)
            copies.append(CopyBandwidth(working_set=working_set, GBps=GBps, method=method))
        else:
            copies.append(copy_bandwidth(working_set, threads, timing, peers.torch))

    def make_timer(fn: Callable[[], Any], context: Callable[[], contextlib.AbstractContextManager]
                   = contextlib.nullcontext) -> Union[BlockTimer, DeviceTimer]:
        return DeviceTimer(fn, clock, timing, context) if on_device else BlockTimer(fn, timing, context)

    def host(out: Any) -> Any:
        return cuda_timing.to_host(out) if on_device else out

    inputs = case.make(np.random.default_rng(seed))
    # On a device the timed calls (minidnn's and PyTorch's) take device
    # arrays; the reference and the checks take NumPy.
    run_inputs = cuda_timing.to_device(inputs) if on_device else inputs
    expected = host(case.run(run_inputs))
    if case.check is None:
        error = relative_error(expected, case.reference(inputs))
    else:
        checked = case.check(np.random.default_rng(seed))
        run_checked = cuda_timing.to_device(checked) if on_device else checked
        error = relative_error(host(case.run(run_checked)), case.reference(checked))
    if device == "cpu":
        _C.reset_scratch_peak()
    timers = {"minidnn": make_timer(lambda: case.run(run_inputs))}
    torch_on_device = not on_device or not cuda_timing.emulated()  # no PyTorch on the emulated device
    if peers.torch is not None and case.torch is not None and torch_on_device:
        timers["torch"] = _peer_timer("torch", lambda: case.torch(run_inputs), expected, make_timer, host,
                                      peers.torch.no_grad)
    if peers.ort is not None and case.onnx is not None and not on_device:
        def ort_call() -> Callable[[], Any]:
            model = case.onnx(inputs)
            feed = {i.name: inputs[i.name] for i in model.graph.input}
            session = peers.ort_session(model, threads)
            return lambda: session.run(None, feed)

        timers["onnxruntime"] = _peer_timer("onnxruntime", ort_call, expected, make_timer)
    if case.numpy is not None and not on_device:
        timers["numpy"] = _peer_timer("numpy", lambda: case.numpy(inputs), expected, make_timer,
                                      context=lambda: blas_threads(threads))
    # The libraries take turns, a block each per round, so that a stall of
    # the host (seconds, at random) slows one round of every library rather
    # than all of one library's samples. The device times each once.
    rounds = 1 if on_device else timing.rounds
    for r in range(rounds):
        for label, timer in timers.items():
            if timer is None:
                continue
            time.sleep(PAUSE_S)
            if label == "minidnn" and r == 0:
                measure_copy()
            try:
                timer.block(math.ceil(timing.samples / rounds))
            except Exception as exc:  # a peer that stops working is reported and skipped
                if label == "minidnn":
                    raise
                _warn(f"{label} failed: {type(exc).__name__}: {exc}")
                timers[label] = None
            if label == "minidnn" and r == rounds - 1:
                measure_copy()
    extra_memory = _C.scratch_peak_bytes() if device == "cpu" else None
    ceiling = max(copies, key=lambda copy: copy.GBps, default=None)
    seconds = timers["minidnn"].seconds
    torch_s, ort_s, numpy_s = (timers[label].seconds if timers.get(label) is not None else None
                               for label in ("torch", "onnxruntime", "numpy"))

    gbps = case.bytes / seconds / GB
    gflops = case.flops / seconds / GFLOP if case.flops is not None else None
    pct = gflops / sgemm_GFLOPs * 100 if ceiling is None else gbps / ceiling.GBps * 100
    peer_times = [t for t in (torch_s, ort_s) if t is not None]
    result = Result(
        family=family,
        case=case.name,
        passed=error <= case.tol,
        device="emulated" if on_device and cuda_timing.emulated() else device,
        time_ms=seconds * 1e3,
        gflops=gflops,
        gbps=gbps,
        working_set_bytes=working_set,
        ceiling_GBps=ceiling.GBps if ceiling is not None else None,
        pct_ceiling=pct,
        torch_time_ms=torch_s * 1e3 if torch_s is not None else None,
        speedup_vs_torch=torch_s / seconds if torch_s is not None else None,
        ort_time_ms=ort_s * 1e3 if ort_s is not None else None,
        speedup_vs_best=min(peer_times) / seconds if peer_times else None,
        numpy_time_ms=numpy_s * 1e3 if numpy_s is not None else None,
        speedup_vs_numpy=numpy_s / seconds if numpy_s is not None else None,
        extra_memory_bytes=extra_memory,
    )
    return result, error


def run_overhead_case(family: str, case: OverheadCase, peers: Peers, timing: Timing,
                      seed: int) -> tuple[OverheadResult, float]:
    """Checks one tiny case against the reference, then times minidnn and
    PyTorch, one block each. Returns the result and the relative error of
    minidnn's output."""
    inputs = case.make(np.random.default_rng(seed))
    call = case.run(inputs)
    expected = call()
    error = relative_error(expected, case.reference(inputs))

    def seconds_per_call(fn: Callable[[], Any]) -> float:
        return time_per_call_in_rounds(fn, timing.overhead_rounds, timing.overhead_calls)

    seconds = seconds_per_call(call)
    torch_s = None
    if peers.torch is not None:
        with peers.torch.no_grad():
            torch_s = _time_peer("torch", lambda: case.torch(inputs), expected, seconds_per_call)
    result = OverheadResult(
        family=family,
        op=case.op,
        shape=case.shape,
        passed=error <= case.tol,
        us=seconds * 1e6,
        torch_us=torch_s * 1e6 if torch_s is not None else None,
        speedup_vs_torch=torch_s / seconds if torch_s is not None else None,
    )
    return result, error


# ---------------------------------------------------------------- tables


Column = Tuple[str, int, str, str]  # header, width, result attribute, format

THROUGHPUT_COLUMNS: Tuple[Column, ...] = (
    ("ms", 9, "time_ms", "{:.3f}"),
    ("GFLOP/s", 7, "gflops", "{:.1f}"),
    ("GB/s", 7, "gbps", "{:.1f}"),
    ("ceiling GB/s", 12, "ceiling_GBps", "{:.1f}"),
    ("% of ceiling", 12, "pct_ceiling", "{:.1f}"),
    ("torch ms", 9, "torch_time_ms", "{:.3f}"),
    ("x vs torch", 10, "speedup_vs_torch", "{:.2f}"),
    ("ort ms", 9, "ort_time_ms", "{:.3f}"),
    ("x vs best", 9, "speedup_vs_best", "{:.2f}"),
    ("numpy ms", 9, "numpy_time_ms", "{:.3f}"),
    ("x vs numpy", 10, "speedup_vs_numpy", "{:.2f}"),
    ("extra MiB", 9, "extra_memory_mib", "{:.1f}"),
)

OVERHEAD_COLUMNS: Tuple[Column, ...] = (
    ("us", 8, "us", "{:.2f}"),
    ("torch us", 8, "torch_us", "{:.2f}"),
    ("x vs torch", 10, "speedup_vs_torch", "{:.2f}"),
)


def table_header(name_width: int, columns: Sequence[Column]) -> str:
    cells = [f"{'case':<{name_width}}"] + [f"{h:>{w}}" for h, w, _, _ in columns]
    line = "  ".join(cells)
    return f"{line}\n{'-' * len(line)}"


def table_row(name: str, result: Any, name_width: int, columns: Sequence[Column]) -> str:
    cells = [f"{name:<{name_width}}"]
    for _, width, attr, fmt in columns:
        value = getattr(result, attr)
        cells.append(f"{'-' if value is None else fmt.format(value):>{width}}")
    return "  ".join(cells)


# ---------------------------------------------------------------- report


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_name() -> Optional[str]:
    return minidnn.cuda.get_device_name(0) if minidnn.cuda.is_available() else None


def git_commit() -> str:
    """$MINIDNN_COMMIT when set (a copy of the tree whose .git does not match
    it, as on a lent GPU machine), else HEAD of the checkout minidnn is
    imported from, else of the working directory, else "unknown"."""
    if os.environ.get("MINIDNN_COMMIT"):
        return os.environ["MINIDNN_COMMIT"]
    for where in (Path(minidnn.__file__).resolve().parent, Path.cwd()):
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return "unknown"


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:g} MiB"


def report(ceilings: Optional[Ceilings], threads: int, timing: Timing, results: Sequence[Result],
           overhead: Sequence[OverheadResult]) -> dict:
    """The JSON document written by --json. The ceilings are null when no
    throughput case ran (the overhead group needs none)."""
    return {
        "machine": {
            "cpu": cpu_name(),
            "gpu": gpu_name(),
            "threads": threads,
            "ceilings": None if ceilings is None else {
                "copy_memory_GBps": ceilings.copy_memory.GBps,
                "copy_memory_bytes": ceilings.copy_memory.working_set,
                "copy_curve": [point.to_json() for point in ceilings.copy_curve],
                "sgemm_GFLOPs": ceilings.sgemm_GFLOPs,
            },
        },
        "timing": {"samples": timing.samples, "rounds": timing.rounds, "min_sample_s": timing.min_sample_s},
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "minidnn": minidnn.config(),
        "results": [r.to_json() for r in results],
        "overhead": [r.to_json() for r in overhead],
    }


def _run_throughput(cases: Sequence[tuple[str, Case]], device: str, threads: int, timing: Timing,
                    peers: Peers) -> tuple[Ceilings, list[Result]]:
    print(f"measuring ceilings: copy bandwidth counts read + write bytes, fastest of "
          f"{copy_methods(threads, peers.torch)}, each timed like the cases...", flush=True)
    ceilings = measure_ceilings(threads, timing, peers.torch)
    curve = ", ".join(f"{_mib(p.working_set)} {p.GBps:.1f}" for p in ceilings.copy_curve)
    print(f"copy GB/s by working set (half read, half written): {curve}\n"
          f"sgemm {ceilings.sgemm_GFLOPs:.1f} GFLOP/s (NumPy BLAS, 2048^3, {threads} thread(s))\n"
          f"each case: minidnn and its peers take turns, {timing.rounds} block(s) each of "
          f"{math.ceil(timing.samples / timing.rounds)} samples, the fastest sample kept; its ceiling: "
          f"the copy of its own working set, the faster of two measurements, right before "
          f"minidnn's first block and right after its last\n")

    width = max(len("case"), *(len(case.name) for _, case in cases))
    print(table_header(width, THROUGHPUT_COLUMNS), flush=True)
    results = []
    for i, (family, case) in enumerate(cases):
        print(f"[{i + 1}/{len(cases)}] {case.name}...", file=sys.stderr, flush=True)
        result, error = run_case(family, case, device, ceilings.sgemm_GFLOPs, peers, threads,
                                 timing, seed=i)
        row = table_row(result.case, result, width, THROUGHPUT_COLUMNS)
        if not result.passed:
            row += f"  FAIL (relative error {error:.2e} > {case.tol:.0e})"
        print(row, flush=True)
        results.append(result)
    return ceilings, results


def _run_overhead(cases: Sequence[tuple[str, OverheadCase]], timing: Timing,
                  peers: Peers) -> list[OverheadResult]:
    print(f"call overhead: microseconds per call on tiny inputs, fastest of "
          f"{timing.overhead_rounds} rounds of {timing.overhead_calls} calls, "
          f"each library in its own block\n", flush=True)
    width = max(len("case"), *(len(case.name) for _, case in cases))
    print(table_header(width, OVERHEAD_COLUMNS), flush=True)
    results = []
    for i, (family, case) in enumerate(cases):
        result, error = run_overhead_case(family, case, peers, timing, seed=i)
        row = table_row(result.name, result, width, OVERHEAD_COLUMNS)
        if not result.passed:
            row += f"  FAIL (relative error {error:.2e} > {case.tol:.0e})"
        print(row, flush=True)
        results.append(result)
    return results


def run(cases: Sequence[tuple[str, Case]], overhead_cases: Sequence[tuple[str, OverheadCase]],
        device: str, threads: int, timing: Timing, json_path: Optional[str]) -> int:
    """Runs the throughput group (ceilings first) and the call-overhead group,
    printing a row as each case finishes; writes the JSON report if asked.
    Returns the exit status: 0, or 1 if a case failed its reference check."""
    minidnn.set_num_threads(threads)
    peers = Peers.load(threads)
    print(f"minidnn {minidnn.__version__} ({minidnn.config()['isa']}), {cpu_name()}, "
          f"{threads} thread(s), device {device}")
    print(f"peers: torch {'yes' if peers.torch else 'no'}, onnxruntime {'yes' if peers.ort else 'no'}")

    ceilings, results, overhead = None, [], []
    if cases:
        ceilings, results = _run_throughput(cases, device, threads, timing, peers)
        print()
    if overhead_cases:
        overhead = _run_overhead(overhead_cases, timing, peers)
        print()

    names = [r.case for r in results] + [r.name for r in overhead]
    failed = [name for name, r in zip(names, [*results, *overhead]) if not r.passed]
    print(f"{len(names) - len(failed)}/{len(names)} cases pass the reference check"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if json_path is not None:
        document = report(ceilings, threads, timing, results, overhead)
        Path(json_path).write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 1 if failed else 0
