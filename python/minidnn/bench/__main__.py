"""Command line: python -m minidnn.bench [--ops softmax,...]
[--groups throughput,overhead] [--device cpu|cuda] [--threads N] [--json PATH]
[--quick] [--cases SUBSTRING]"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import minidnn

from . import FAMILIES, harness


GROUPS = ("throughput", "overhead")


def _names(value: str, choices: Sequence[str], what: str) -> list[str]:
    """The comma-separated names of `value`, each one of `choices`."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in choices]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or repr(value)}; choose from {', '.join(choices)}"
        )
    return names


def _families(value: str) -> list[str]:
    return _names(value, list(FAMILIES), "op family")


def _groups(value: str) -> list[str]:
    return _names(value, GROUPS, "group")


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {n}")
    return n


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m minidnn.bench",
        description="Times minidnn's kernels against the machine's ceilings and against "
        "PyTorch and ONNX Runtime (where installed), and the cost of a call on tiny inputs "
        "against PyTorch, after checking each case against the float64 reference.",
    )
    parser.add_argument("--ops", type=_families, default=list(FAMILIES),
                        help=f"comma-separated op families (default: all of {','.join(FAMILIES)})")
    parser.add_argument("--groups", type=_groups, default=list(GROUPS),
                        help="comma-separated case groups (default: both): throughput (large "
                        "shapes against the machine's ceilings and the peers), overhead "
                        "(tiny shapes, microseconds per call against PyTorch)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=_positive, default=minidnn.get_num_threads(),
                        help="threads for minidnn and the peers (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--quick", action="store_true",
                        help="few repeats: a smoke test, not a measurement")
    parser.add_argument("--cases", metavar="SUBSTRING",
                        help="only the cases whose name contains SUBSTRING")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not minidnn.cuda.is_available():
        status = minidnn.config().get("cuda_status")
        print("CUDA is not available" + (f" ({status})" if status else "") + ": no results written")
        return 0

    cases = (harness.load_cases(args.ops, args.device, args.quick)
             if "throughput" in args.groups else [])
    overhead = (harness.load_overhead_cases(args.ops, args.device)
                if "overhead" in args.groups else [])
    if args.device == "cuda" and not cases and not overhead:
        print("no CUDA cases in this build")
        return 0
    if args.cases is not None:
        cases = [(family, case) for family, case in cases if args.cases in case.name]
        overhead = [(family, case) for family, case in overhead if args.cases in case.name]
    if not cases and not overhead:
        what = f" matching --cases {args.cases!r}" if args.cases is not None else ""
        print(f"no {args.device} cases of {','.join(args.ops)} in {','.join(args.groups)}{what}",
              file=sys.stderr)
        return 1

    timing = harness.QUICK if args.quick else harness.FULL
    return harness.run(cases, overhead, args.device, args.threads, timing, args.json)


if __name__ == "__main__":
    sys.exit(main())
