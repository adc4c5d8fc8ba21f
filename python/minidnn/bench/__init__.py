"""minidnn's benchmark: `python -m minidnn.bench`.

Measures the machine's ceilings (memory copy bandwidth, SGEMM throughput),
then times every case of the selected op families against those ceilings and
against PyTorch and ONNX Runtime where they are installed, after checking
each case against the float64 reference in minidnn.reference.

Adding an op family: write `bench/<family>.py` with a function
`cases(device: str, quick: bool) -> list[harness.Case]` and add its entry to
FAMILIES below; nothing else changes.
"""

# Op family name (as given to --ops) -> the module that provides its cases().
FAMILIES: dict[str, str] = {
    "softmax": "minidnn.bench.softmax",
    "linear": "minidnn.bench.linear",
}

__all__ = ["FAMILIES"]
