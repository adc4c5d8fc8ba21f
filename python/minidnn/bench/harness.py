"""The benchmark harness: machine ceilings, timing, correctness checks, peers
(PyTorch, ONNX Runtime), the printed table and the JSON report.

Op families only describe cases (see Case); everything else lives here.
"""

from __future__ import annotations

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

from . import FAMILIES

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
    """

    name: str
    make: Callable[[np.random.Generator], Inputs]
    run: Callable[[Inputs], Output]
    reference: Callable[[Inputs], Output]
    bytes: int
    flops: Optional[int] = None
    torch: Optional[TorchPrepare] = None
    onnx: Optional[Callable[[Inputs], Any]] = None  # Inputs -> onnx.ModelProto
    tol: float = 1e-5


@dataclass(frozen=True)
class Timing:
    """How hard to measure: full runs and --quick smoke tests differ only here."""

    samples: int  # timed samples per case and library (the fastest is reported)
    min_sample_s: float  # each sample loops over k calls to last at least this long
    warmup_s: float  # warm-up calls before sampling, for at least this long
    ceiling_repeats: int  # repeats of each ceiling measurement (the best is kept)


FULL = Timing(samples=21, min_sample_s=0.02, warmup_s=0.2, ceiling_repeats=5)
QUICK = Timing(samples=3, min_sample_s=0.02, warmup_s=0.0, ceiling_repeats=2)


@dataclass(frozen=True)
class Ceilings:
    copy_GBps: float
    sgemm_GFLOPs: float


@dataclass
class Result:
    family: str
    case: str
    passed: bool
    device: str
    time_ms: float
    gflops: Optional[float]
    gbps: float
    pct_ceiling: float
    torch_time_ms: Optional[float]
    speedup_vs_torch: Optional[float]
    ort_time_ms: Optional[float]
    speedup_vs_best: Optional[float]

    def to_json(self) -> dict:
        return {
            "family": self.family,
            "case": self.case,
            "pass": self.passed,
            "device": self.device,
            "time_ms": self.time_ms,
            "gflops": self.gflops,
            "gbps": self.gbps,
            "pct_ceiling": self.pct_ceiling,
            "torch_time_ms": self.torch_time_ms,
            "speedup_vs_torch": self.speedup_vs_torch,
            "ort_time_ms": self.ort_time_ms,
            "speedup_vs_best": self.speedup_vs_best,
        }


# ---------------------------------------------------------------- measuring


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls, after one warm-up call."""
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_ceilings(threads: int, repeats: int) -> Ceilings:
    """The copy bandwidth (read + write bytes) and NumPy's SGEMM throughput."""
    # 64 MiB, the largest operand of the suite: with 256 MiB arrays the
    # probe measured 30-40 GB/s while the suite's 64 MiB relu moved 45-55,
    # so the smaller size gives the higher, stricter ceiling.
    n = 64 * 2**20 // 4
    src = np.full(n, 1.5, dtype=np.float32)
    dst = np.empty_like(src)
    copy_bytes = 2 * src.nbytes
    single = copy_bytes / best_time(lambda: np.copyto(dst, src), repeats)
    bounds = [n * i // threads for i in range(threads + 1)]
    parts = [(dst[lo:hi], src[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        def copy_parallel() -> None:
            list(pool.map(lambda part: np.copyto(*part), parts))  # np.copyto releases the GIL

        parallel = copy_bytes / best_time(copy_parallel, repeats)
    # NumPy's copy is one large memcpy, which glibc performs with
    # non-temporal stores; minidnn's probe copies in cache-sized blocks on
    # its own threads. The ceiling is the fastest of the three.
    probe = copy_bytes / best_time(lambda: _C.copy_probe(src, dst), repeats)
    del src, dst, parts

    size = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty_like(a)
    sgemm = 2 * size**3 / best_time(lambda: np.matmul(a, b, out=c), repeats)
    return Ceilings(copy_GBps=max(single, parallel, probe) / GB, sgemm_GFLOPs=sgemm / GFLOP)


def time_per_call(fn: Callable[[], Any], timing: Timing) -> float:
    """Seconds per call of the fastest of timing.samples samples of k calls
    each, with k chosen from the warm-up so that a sample lasts >=
    min_sample_s. The fastest sample, not the median: on shared 2-core
    machines other tenants slow whole samples by up to 2x at random, which
    moves medians between runs far more than any change to the code; every
    library is timed the same way, so ratios stay fair."""
    fastest = math.inf
    warmup_start = time.perf_counter()
    calls = 0
    while calls < 2 or time.perf_counter() - warmup_start < timing.warmup_s:
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
        calls += 1
    k = max(1, math.ceil(timing.min_sample_s / fastest))
    samples = []
    for _ in range(timing.samples):
        start = time.perf_counter()
        for _ in range(k):
            fn()
        samples.append((time.perf_counter() - start) / k)
    return min(samples)


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
    """(family, case) for every case of the given families on `device`."""
    return [
        (family, case)
        for family in families
        for case in importlib.import_module(FAMILIES[family]).cases(device, quick)
    ]


def _warn(message: str) -> None:
    print(f"  warning: {message}", flush=True)


def _time_peer(label: str, setup: Callable[[], Callable[[], Any]], expected: Output,
               timing: Timing) -> Optional[float]:
    """Seconds per call of a peer (None if it fails), after checking that its
    output agrees with minidnn's."""
    time.sleep(PAUSE_S)
    try:
        call = setup()
        error = relative_error(call(), expected)
        if error > REL_TOL_PEER:
            _warn(f"{label} output differs from minidnn's by {error:.2e} (relative)")
        return time_per_call(call, timing)
    except Exception as exc:  # a peer that cannot run this case is reported and skipped
        _warn(f"{label} failed: {type(exc).__name__}: {exc}")
        return None


def run_case(family: str, case: Case, device: str, ceilings: Ceilings, peers: Peers,
             threads: int, timing: Timing, seed: int) -> tuple[Result, float]:
    """Checks one case against the reference, then times minidnn, PyTorch and
    ONNX Runtime in that order, one block each. Returns the result and the
    relative error of minidnn's output."""
    inputs = case.make(np.random.default_rng(seed))
    expected = case.run(inputs)
    error = relative_error(expected, case.reference(inputs))
    seconds = time_per_call(lambda: case.run(inputs), timing)

    torch_s = None
    if peers.torch is not None and case.torch is not None:
        with peers.torch.no_grad():
            torch_s = _time_peer("torch", lambda: case.torch(inputs), expected, timing)
    ort_s = None
    if peers.ort is not None and case.onnx is not None:
        def ort_call() -> Callable[[], Any]:
            session = peers.ort_session(case.onnx(inputs), threads)
            return lambda: session.run(None, inputs)

        ort_s = _time_peer("onnxruntime", ort_call, expected, timing)

    gbps = case.bytes / seconds / GB
    gflops = case.flops / seconds / GFLOP if case.flops else None
    if gflops is not None:
        pct = gflops / ceilings.sgemm_GFLOPs * 100
    else:
        pct = gbps / ceilings.copy_GBps * 100
    peer_times = [t for t in (torch_s, ort_s) if t is not None]
    result = Result(
        family=family,
        case=case.name,
        passed=error <= case.tol,
        device=device,
        time_ms=seconds * 1e3,
        gflops=gflops,
        gbps=gbps,
        pct_ceiling=pct,
        torch_time_ms=torch_s * 1e3 if torch_s is not None else None,
        speedup_vs_torch=torch_s / seconds if torch_s is not None else None,
        ort_time_ms=ort_s * 1e3 if ort_s is not None else None,
        speedup_vs_best=min(peer_times) / seconds if peer_times else None,
    )
    return result, error


# ---------------------------------------------------------------- table


_COLUMNS = (  # header, width, Result attribute, format
    ("ms", 9, "time_ms", "{:.3f}"),
    ("GB/s", 7, "gbps", "{:.1f}"),
    ("% of ceiling", 12, "pct_ceiling", "{:.1f}"),
    ("torch ms", 9, "torch_time_ms", "{:.3f}"),
    ("x vs torch", 10, "speedup_vs_torch", "{:.2f}"),
    ("ort ms", 9, "ort_time_ms", "{:.3f}"),
    ("x vs best", 9, "speedup_vs_best", "{:.2f}"),
)


def table_header(name_width: int) -> str:
    cells = [f"{'case':<{name_width}}"] + [f"{h:>{w}}" for h, w, _, _ in _COLUMNS]
    line = "  ".join(cells)
    return f"{line}\n{'-' * len(line)}"


def table_row(result: Result, name_width: int) -> str:
    cells = [f"{result.case:<{name_width}}"]
    for _, width, attr, fmt in _COLUMNS:
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
    """HEAD of the checkout minidnn is imported from, else of the working
    directory, else $MINIDNN_COMMIT, else "unknown"."""
    for where in (Path(minidnn.__file__).resolve().parent, Path.cwd()):
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return os.environ.get("MINIDNN_COMMIT", "unknown")


def report(ceilings: Ceilings, threads: int, results: Sequence[Result]) -> dict:
    """The JSON document written by --json."""
    return {
        "machine": {
            "cpu": cpu_name(),
            "gpu": gpu_name(),
            "threads": threads,
            "ceilings": {"copy_GBps": ceilings.copy_GBps, "sgemm_GFLOPs": ceilings.sgemm_GFLOPs},
        },
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "minidnn": minidnn.config(),
        "results": [r.to_json() for r in results],
    }


def run(cases: Sequence[tuple[str, Case]], device: str, threads: int, timing: Timing,
        json_path: Optional[str]) -> int:
    """Measures the ceilings, runs every case (printing a row as each one
    finishes), writes the JSON report if asked. Returns the exit status: 0,
    or 1 if a case failed its reference check."""
    minidnn.set_num_threads(threads)
    peers = Peers.load(threads)
    print(f"minidnn {minidnn.__version__} ({minidnn.config()['isa']}), {cpu_name()}, "
          f"{threads} thread(s), device {device}")
    print(f"peers: torch {'yes' if peers.torch else 'no'}, onnxruntime {'yes' if peers.ort else 'no'}")
    print("measuring ceilings...", flush=True)
    ceilings = measure_ceilings(threads, timing.ceiling_repeats)
    print(f"ceilings: copy {ceilings.copy_GBps:.1f} GB/s (read + write), "
          f"sgemm {ceilings.sgemm_GFLOPs:.1f} GFLOP/s (NumPy BLAS, 2048^3)\n")

    width = max(len("case"), *(len(case.name) for _, case in cases))
    print(table_header(width), flush=True)
    results = []
    for i, (family, case) in enumerate(cases):
        print(f"[{i + 1}/{len(cases)}] {case.name}...", file=sys.stderr, flush=True)
        result, error = run_case(family, case, device, ceilings, peers, threads, timing, seed=i)
        row = table_row(result, width)
        if not result.passed:
            row += f"  FAIL (relative error {error:.2e} > {case.tol:.0e})"
        print(row, flush=True)
        results.append(result)

    failed = [r.case for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)}/{len(results)} cases pass the reference check"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report(ceilings, threads, results), indent=2) + "\n")
        print(f"wrote {json_path}")
    return 1 if failed else 0
