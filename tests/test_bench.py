"""The benchmark harness runs end to end and writes the documented JSON."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math

import numpy as np
import pytest

import minidnn
from minidnn import reference
from minidnn.bench import FAMILIES
from minidnn.bench import conv as conv_bench
from minidnn.bench import recurrent as recurrent_bench
from minidnn.bench.__main__ import main
from minidnn.bench.harness import COPY_CURVE_BYTES, blas_threads
from minidnn.bench.softmax import cases

RESULT_KEYS = {
    "family", "case", "pass", "device", "time_ms", "gflops", "gbps", "working_set_bytes",
    "ceiling_GBps", "pct_ceiling", "torch_time_ms", "speedup_vs_torch", "ort_time_ms",
    "speedup_vs_best", "numpy_time_ms", "speedup_vs_numpy", "extra_memory_bytes",
}
OVERHEAD_KEYS = {"family", "op", "shape", "pass", "us", "torch_us", "speedup_vs_torch"}


def test_quick_run_writes_the_documented_json(tmp_path):
    path = tmp_path / "bench.json"
    assert main(["--quick", "--cases", "cross_entropy fwd+bwd 4096", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert set(report) >= {"machine", "timing", "commit", "date", "results", "overhead"}
    assert report["timing"]["rounds"] == 1 and report["timing"]["samples"] >= 1
    assert set(report["machine"]) >= {"cpu", "gpu", "threads", "ceilings"}
    ceilings = report["machine"]["ceilings"]
    assert ceilings["sgemm_GFLOPs"] > 0
    curve = ceilings["copy_curve"]
    assert [point["bytes"] for point in curve] == list(COPY_CURVE_BYTES)
    assert all(point["GBps"] > 0 for point in curve)
    assert {point["method"] for point in curve} <= {"numpy", "numpy threads", "copy_probe", "torch copy_"}
    # The memory-sized figure is the curve's last point.
    assert (curve[-1]["bytes"], curve[-1]["GBps"]) == (ceilings["copy_memory_bytes"],
                                                       ceilings["copy_memory_GBps"])
    (result,) = report["results"]
    assert set(result) == RESULT_KEYS
    assert result["family"] == "softmax" and result["device"] == "cpu"
    assert result["pass"] is True
    assert result["time_ms"] > 0 and result["ceiling_GBps"] > 0
    # The case's own working set picks its ceiling: logits and gradient, 8 bytes per logit.
    assert result["working_set_bytes"] == 8 * 4096 * 1000
    assert result["pct_ceiling"] == pytest.approx(100 * result["gbps"] / result["ceiling_GBps"])
    assert report["overhead"] == []  # no tiny case matches the filter


def test_libraries_take_turns_a_block_each_per_round():
    """minidnn's and a peer's timed calls alternate block by block, one block
    per round each, after the checks and warm-ups; each library's figure is
    its fastest sample over the rounds."""
    import contextlib
    import types

    from minidnn.bench.harness import Case, Peers, Timing, run_case

    log = []

    def calls(label):
        def call():
            log.append(label)
            return np.ones(3, dtype=np.float32)
        return call

    peer = types.SimpleNamespace(no_grad=contextlib.nullcontext)
    case = Case(name="turns", make=lambda rng: {"x": np.ones(3, dtype=np.float32)},
                run=lambda inputs: calls("minidnn")(), reference=lambda inputs: np.ones(3),
                bytes=24, flops=1, torch=lambda inputs: calls("torch"))
    timing = Timing(samples=6, min_sample_s=0.0, warmup_s=0.0, rounds=3, overhead_rounds=1, overhead_calls=1)
    result, error = run_case("softmax", case, "cpu", 1.0, Peers(torch=peer, ort=None), 1, timing, seed=0)
    assert error == 0 and result.time_ms > 0 and result.torch_time_ms > 0
    timed = log[log.index("torch") + 3:]  # after the peer's check and its two warm-up calls
    blocks = [label for i, label in enumerate(timed) if i == 0 or timed[i - 1] != label]
    assert blocks == ["minidnn", "torch"] * 3
    assert timed.count("minidnn") == timed.count("torch") == 6  # k = 1 call a sample, 2 samples a turn


def test_quick_overhead_group_covers_every_op_against_torch(tmp_path):
    path = tmp_path / "overhead.json"
    assert main(["--quick", "--groups", "overhead", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["machine"]["ceilings"] is None and report["results"] == []
    rows = report["overhead"]
    assert [row["op"] for row in rows] == [case.op for case in _all_overhead_cases()]
    for row in rows:
        assert set(row) == OVERHEAD_KEYS
        assert row["pass"] is True and row["us"] > 0
        # torch is installed with the test extras: every op has its PyTorch twin.
        assert row["torch_us"] > 0
        assert row["speedup_vs_torch"] == pytest.approx(row["torch_us"] / row["us"])


def _all_overhead_cases(device="cpu"):
    return [case for module in FAMILIES.values() for case in importlib.import_module(module).overhead_cases(device)]


def test_every_public_op_has_a_tiny_case():
    """Each family joins the call-overhead group with every op it exports."""
    public_ops = {
        name for name in minidnn.__all__
        if callable(getattr(minidnn, name)) and getattr(minidnn, name).__module__ != "minidnn._runtime"
    }
    tiny = _all_overhead_cases()
    assert {case.op for case in tiny} == public_ops
    assert all(math.prod(case.shape) <= 1000 for case in tiny)
    assert _all_overhead_cases("cuda") == []


def test_every_family_case_has_a_unique_name():
    assert "softmax" in FAMILIES  # each family checks its own cases (e.g. test_linear.py)
    names = [case.name for case in cases("cpu", quick=True)]
    assert len(names) == len(set(names)) and len(names) >= 19


def test_unmatched_filter_fails_and_cuda_without_gpu_is_a_clean_exit(capsys):
    assert main(["--quick", "--cases", "no such case"]) == 1
    assert main(["--quick", "--groups", "throughput", "--cases", "softmax 8x10"]) == 1  # a tiny case only
    with pytest.raises(SystemExit):
        main(["--groups", "latency"])

    if not minidnn.cuda.is_available():
        assert main(["--device", "cuda"]) == 0
        assert "not available" in capsys.readouterr().out


def test_conv_cases_cover_every_layer_at_both_batches():
    names = [case.name for case in conv_bench.cases("cpu", quick=True)]
    assert len(names) == len(set(names))
    for layer in conv_bench.LAYERS:
        assert {layer.at_batch(1).name("fwd"), layer.at_batch(8).name("fwd"),
                layer.at_batch(8).name("fwd+bwd")} <= set(names)
    assert conv_bench.VGG.name("fwd") in names
    assert conv_bench.cases("cuda", quick=True) == []


@pytest.mark.parametrize("layer", [*conv_bench.LAYERS, conv_bench.VGG], ids=lambda layer: layer.label)
def test_conv_layer_shapes_and_flops_match_the_reference(layer):
    """The case's own geometry (output size, weight layout), which its
    FLOPs and bytes count, is the reference's: checked at batch 0, where the
    reference costs nothing. The FLOPs are 2 per weight tap and output
    (input pixel for the transposed convolution) per image."""
    empty = layer.at_batch(0)
    x = np.zeros(empty.x_shape, np.float32)
    weight = np.zeros(empty.weight_shape, np.float32)
    y = getattr(reference, layer.op)(x, weight, None, **layer.kwargs)
    assert y.shape == empty.y_shape
    per_image = layer.at_batch(1)
    pixels = per_image.x_shape[2:] if layer.transposed else per_image.y_shape[2:]
    assert layer.at_batch(8).forward_flops == 8 * per_image.forward_flops == \
        8 * 2 * math.prod(per_image.weight_shape) * math.prod(pixels)


def test_quick_conv_run_checks_at_a_smaller_batch_and_times_the_peers(tmp_path):
    """A batch-8 depthwise layer, forward and forward+backward: checked
    against the reference at batch 2, both pass, both peers time the
    forward (ONNX Runtime where the bench extra installed it) and only
    PyTorch the training step."""
    path = tmp_path / "conv.json"
    assert main(["--quick", "--ops", "conv", "--groups", "throughput",
                 "--cases", "dw3x3/2 56 128 N=8", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    sgemm = report["machine"]["ceilings"]["sgemm_GFLOPs"]
    forward, training = report["results"]
    assert forward["case"] == "conv2d fwd mobilenet dw3x3/2 56 128 N=8"
    assert training["case"] == "conv2d fwd+bwd mobilenet dw3x3/2 56 128 N=8"
    for result in (forward, training):
        assert result["family"] == "conv" and result["pass"] is True
        assert result["gflops"] > 0 and result["torch_time_ms"] > 0
        assert result["pct_ceiling"] == pytest.approx(100 * result["gflops"] / sgemm)
    assert training["ort_time_ms"] is None
    if importlib.util.find_spec("onnxruntime") is not None:
        assert forward["ort_time_ms"] > 0
    else:
        assert forward["ort_time_ms"] is None


def test_quick_linear_run_times_numpy_beside_the_peers(tmp_path):
    """linear's forward is also timed on NumPy's BLAS (the SGEMM's
    yardstick), which stays out of the best-peer ratio; its training step
    has no NumPy twin and reports none."""
    path = tmp_path / "linear.json"
    assert main(["--quick", "--ops", "linear", "--groups", "throughput",
                 "--cases", "linear fwd 8x1024", "--json", str(path)]) == 0
    (result,) = json.loads(path.read_text())["results"]
    assert result["case"] == "linear fwd 8x1024x1024" and result["pass"] is True
    assert result["numpy_time_ms"] > 0
    assert result["speedup_vs_numpy"] == pytest.approx(result["numpy_time_ms"] / result["time_ms"])
    peers = [t for t in (result["torch_time_ms"], result["ort_time_ms"]) if t is not None]
    assert result["speedup_vs_best"] == pytest.approx(min(peers) / result["time_ms"])
    path = tmp_path / "training.json"
    assert main(["--quick", "--ops", "linear", "--groups", "throughput",
                 "--cases", "linear fwd+bwd 32x", "--json", str(path)]) == 0
    (result,) = json.loads(path.read_text())["results"]
    assert result["numpy_time_ms"] is None and result["speedup_vs_numpy"] is None


def test_numpy_blas_runs_on_the_benchmark_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with blas_threads(1):
        blas = [pool for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
        assert blas and all(pool["num_threads"] == 1 for pool in blas)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_onnx_recurrent_peer_computes_our_layers(kind, layers, bidirectional):
    """The ONNX Runtime peer of the recurrent forwards (weights converted to
    ONNX's gate order, layers chained, outputs reshaped to ours) gives
    minidnn's y, h_n (and c_n) on a small odd-sized stack, and a cell as a
    one-step sequence gives the cell's outputs."""
    ort = pytest.importorskip("onnxruntime")
    from minidnn.bench.harness import Peers, relative_error

    peers = Peers(torch=None, ort=ort)
    layer = recurrent_bench.Layer(kind, 5, 3, 7, 6, layers=layers, bidirectional=bidirectional)
    cases = [recurrent_bench._layer_forward(layer)]
    if layers == 1:
        cases.append(recurrent_bench._forward(kind, 3, 7, 5))
    for case in cases:
        inputs = case.make(np.random.default_rng(0))
        model = case.onnx(inputs)
        session = peers.ort_session(model, 1)
        out = session.run(None, {i.name: inputs[i.name] for i in model.graph.input})
        assert relative_error(out, case.run(inputs)) < 1e-5, case.name


def test_extra_memory_counts_the_scratch_a_call_asks_for():
    """The figure behind the benchmark's "extra MiB" (runtime/scratch.h):
    nothing right after a reset; a GEMM's packed panels after a call."""
    import minidnn
    from minidnn import _C

    _C.reset_scratch_peak()
    assert _C.scratch_peak_bytes() == 0
    a = np.ones((300, 400), dtype=np.float32)
    w = np.ones((500, 400), dtype=np.float32)
    minidnn.linear(a, w)
    first = _C.scratch_peak_bytes()
    assert first >= 400 * 4  # at least one packed panel row
    minidnn.linear(a[:20], w)  # a smaller call keeps the window's peak
    assert _C.scratch_peak_bytes() >= first
    _C.reset_scratch_peak()
    assert _C.scratch_peak_bytes() == 0
