"""The benchmark harness runs end to end and writes the documented JSON."""

from __future__ import annotations

import json

from minidnn.bench import FAMILIES
from minidnn.bench.__main__ import main
from minidnn.bench.softmax import cases

RESULT_KEYS = {
    "family", "case", "pass", "device", "time_ms", "gflops", "gbps", "pct_ceiling",
    "torch_time_ms", "speedup_vs_torch", "ort_time_ms", "speedup_vs_best",
}


def test_quick_run_writes_the_documented_json(tmp_path):
    path = tmp_path / "bench.json"
    assert main(["--quick", "--cases", "cross_entropy fwd+bwd 4096", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert set(report) >= {"machine", "commit", "date", "results"}
    assert set(report["machine"]) >= {"cpu", "gpu", "threads", "ceilings"}
    ceilings = report["machine"]["ceilings"]
    assert ceilings["copy_GBps"] > 0 and ceilings["sgemm_GFLOPs"] > 0
    (result,) = report["results"]
    assert set(result) == RESULT_KEYS
    assert result["family"] == "softmax" and result["device"] == "cpu"
    assert result["pass"] is True
    assert result["time_ms"] > 0 and result["pct_ceiling"] > 0


def test_every_family_case_has_a_unique_name():
    assert "softmax" in FAMILIES  # each family checks its own cases (e.g. test_linear.py)
    names = [case.name for case in cases("cpu", quick=True)]
    assert len(names) == len(set(names)) and len(names) >= 19


def test_unmatched_filter_fails_and_cuda_without_gpu_is_a_clean_exit(capsys):
    assert main(["--quick", "--cases", "no such case"]) == 1
    import minidnn

    if not minidnn.cuda.is_available():
        assert main(["--device", "cuda"]) == 0
        assert "not available" in capsys.readouterr().out
