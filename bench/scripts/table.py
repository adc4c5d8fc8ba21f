"""Prints the Markdown tables of a `python -m minidnn.bench --json` result file,
for the README: python bench/scripts/table.py bench/results/<file>.json

Tables per group that ran: throughput (memory-bound cases against the copy
ceiling at their own working set, compute-bound ones against the SGEMM
ceiling with the extra memory they asked for; both against the peers) and
call overhead (microseconds per call on tiny inputs, against PyTorch); the
cases also timed on NumPy (linear's forward) in a table of their own."""

from __future__ import annotations

import json
import sys


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def size(nbytes: int) -> str:
    mib = nbytes / 2**20
    return f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib:g} MiB"


def mib(nbytes) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f}"


def throughput_table(run: dict) -> None:
    """Memory-bound cases against the copy ceiling at their working set,
    compute-bound ones (those with a FLOP count) against the SGEMM ceiling."""
    ceilings = run["machine"]["ceilings"]
    curve = ", ".join(f"{size(p['bytes'])} {p['GBps']:.1f}" for p in ceilings["copy_curve"])
    rounds = run.get("timing", {}).get("rounds", 1)  # runs before the rounds carry no timing block
    turns = (f" Each case's libraries took turns, {rounds} blocks each, the fastest sample kept."
             if rounds > 1 else "")
    print(
        f"Measured ceilings: SGEMM {ceilings['sgemm_GFLOPs']:.0f} GFLOP/s; copy GB/s by working set "
        f"(half read, half written): {curve}. Each memory-bound case's ceiling is the copy of its own "
        "working set, the faster of two measurements, right before and right after minidnn's "
        f"{'blocks (before the first, after the last)' if rounds > 1 else 'block'}.{turns}\n"
    )
    memory = [r for r in run["results"] if r["gflops"] is None]
    compute = [r for r in run["results"] if r["gflops"] is not None]
    if memory:
        print("| case | ms | GB/s | ceiling GB/s | % of ceiling | PyTorch ms | x vs PyTorch | ORT ms | x vs best peer |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in memory:
            print(
                f"| {r['case']} | {r['time_ms']:.3f} | {fmt(r['gbps'], '.1f')} | {fmt(r['ceiling_GBps'], '.1f')} | "
                f"{fmt(r['pct_ceiling'], '.0f')} | {fmt(r['torch_time_ms'], '.3f')} | "
                f"{fmt(r['speedup_vs_torch'], '.2f')} | {fmt(r['ort_time_ms'], '.3f')} | "
                f"{fmt(r['speedup_vs_best'], '.2f')} |"
            )
    if memory and compute:
        print()
    if compute:
        print("| case | ms | GFLOP/s | % of SGEMM | extra MiB | PyTorch ms | x vs PyTorch | ORT ms | x vs best peer |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in compute:
            print(
                f"| {r['case']} | {r['time_ms']:.3f} | {r['gflops']:.1f} | {fmt(r['pct_ceiling'], '.0f')} | "
                f"{mib(r.get('extra_memory_bytes'))} | {fmt(r['torch_time_ms'], '.3f')} | "
                f"{fmt(r['speedup_vs_torch'], '.2f')} | {fmt(r['ort_time_ms'], '.3f')} | "
                f"{fmt(r['speedup_vs_best'], '.2f')} |"
            )


def numpy_table(run: dict) -> None:
    """The cases also timed on NumPy's BLAS, the SGEMM's own yardstick."""
    print("| case | ms | NumPy ms | x vs NumPy |")
    print("|---|---:|---:|---:|")
    for r in run["results"]:
        if r.get("numpy_time_ms") is not None:
            print(f"| {r['case']} | {r['time_ms']:.3f} | {r['numpy_time_ms']:.3f} | {r['speedup_vs_numpy']:.2f} |")


def overhead_table(run: dict) -> None:
    print("| op | shape | us per call | PyTorch us | x vs PyTorch |")
    print("|---|---|---:|---:|---:|")
    for r in run["overhead"]:
        print(
            f"| {r['op']} | {'x'.join(map(str, r['shape']))} | {r['us']:.2f} | "
            f"{fmt(r['torch_us'], '.2f')} | {fmt(r['speedup_vs_torch'], '.2f')} |"
        )


def main(path: str) -> None:
    with open(path) as f:
        run = json.load(f)
    machine = run["machine"]
    print(f"{machine['cpu']}, {machine['threads']} threads, commit {run['commit'][:7]}, {run['date'][:10]}.\n")
    if run["results"]:
        throughput_table(run)
    if any(r.get("numpy_time_ms") is not None for r in run["results"]):
        print()
        numpy_table(run)
    if run["results"] and run["overhead"]:
        print()
    if run["overhead"]:
        overhead_table(run)


if __name__ == "__main__":
    main(sys.argv[1])
