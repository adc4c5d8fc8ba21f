"""Prints a Markdown table of a `python -m minidnn.bench --json` result file,
for the README: python bench/scripts/table.py bench/results/<file>.json"""

from __future__ import annotations

import json
import sys


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(path: str) -> None:
    with open(path) as f:
        run = json.load(f)
    machine = run["machine"]
    ceilings = machine["ceilings"]
    print(
        f"{machine['cpu']}, {machine['threads']} threads, commit {run['commit'][:7]}, {run['date'][:10]}; "
        f"measured ceilings: copy {ceilings['copy_GBps']:.1f} GB/s, SGEMM {ceilings['sgemm_GFLOPs']:.0f} GFLOP/s.\n"
    )
    print("| case | ms | GB/s | % of copy | PyTorch ms | x vs PyTorch | ORT ms | x vs best peer |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in run["results"]:
        print(
            f"| {r['case']} | {r['time_ms']:.3f} | {fmt(r['gbps'], '.1f')} | {fmt(r['pct_ceiling'], '.0f')} | "
            f"{fmt(r['torch_time_ms'], '.3f')} | {fmt(r['speedup_vs_torch'], '.2f')} | {fmt(r['ort_time_ms'], '.3f')} | "
            f"{fmt(r['speedup_vs_best'], '.2f')} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
