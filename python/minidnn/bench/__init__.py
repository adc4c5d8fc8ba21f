"""minidnn's benchmark: `python -m minidnn.bench`.

Two groups of cases, each checked against the float64 reference in
minidnn.reference first:

- throughput: large shapes, timed against the machine's ceilings (copy
  bandwidth at the case's own working set, SGEMM throughput) and against
  PyTorch and ONNX Runtime where they are installed;
- overhead: every public op on a tiny input, microseconds per call against
  the same PyTorch eager call.

Adding an op family: write `bench/<family>.py` with two functions,
`cases(device: str, quick: bool) -> list[harness.Case]` (throughput) and
`overhead_cases(device: str) -> list[harness.OverheadCase]` (each public op
of the family on a tiny input), and add its entry to FAMILIES below; nothing
else changes.
"""

# Op family name (as given to --ops) -> the module that provides its cases().
FAMILIES: dict[str, str] = {
    "softmax": "minidnn.bench.softmax",
    "linear": "minidnn.bench.linear",
    "conv": "minidnn.bench.conv",
    "recurrent": "minidnn.bench.recurrent",
    "pooling": "minidnn.bench.pooling",
}

__all__ = ["FAMILIES"]
