"""Every CUDA kernel's registers, shared memory and local memory per
architecture, read from the built module with cuobjdump, and a check of
each: no local memory (spills or a stack frame), and at least 50%
theoretical occupancy at the block size the kernel launches with.

    python bench/scripts/cuda_resources.py [--module PATH] [--cuobjdump PATH] [--output FILE]

The module defaults to the installed minidnn._C; cuobjdump to the one of the
`nvidia-cuda-cuobjdump` package (pip install nvidia-cuda-cuobjdump), else
the one on PATH. Exit status 1 when a check fails, 2 when the module holds
no code for an architecture of ARCHITECTURES. CI runs it whenever nvcc is
present (.ci/run); its output is committed as bench/cuda_resources.txt.

Block size: the kernel's __launch_bounds__ (EIATTR_MAX_THREADS in the
cubin), which every kernel declares with the constant its launches use; a
kernel without one fails the check, since its block size is unknown here.
Dynamic shared memory is not in the binary, so it is not counted: every
launch passes 0 today; a kernel that takes some must teach this check its
size.

Theoretical occupancy (as the CUDA Occupancy Calculator), per SM, for a
block of T threads, W = ceil(T / 32) warps, R registers a thread, S bytes of
shared memory a block:
    registers a warp     = ceil(R * 32 / 256) * 256          (allocation unit 256)
    blocks by registers  = floor(floor(65536 / registers a warp) / W)
    blocks by shared     = floor(shared_per_sm / (ceil((S + 1024) / 128) * 128))
                           (1 KiB a block reserved by the system from sm_80 on;
                           sm_90's SHARED already holds it when S > 0)
    blocks by warps      = floor(64 / W)                     (2048 threads an SM)
    blocks               = min(the three, 32)                (32 blocks an SM)
    occupancy            = blocks * W / 64
with shared_per_sm 164 KiB on sm_80 and 228 KiB on sm_90.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

ARCHITECTURES = ("sm_80", "sm_90")
MIN_OCCUPANCY = 0.5


@dataclass(frozen=True)
class Limits:
    registers: int = 65536  # a multiprocessor's register file, 32-bit registers
    register_unit: int = 256  # registers are allocated a warp at a time, in units of 256
    warps: int = 64
    blocks: int = 32
    shared: int = 0  # bytes a multiprocessor can give to blocks
    shared_unit: int = 128
    shared_reserved: int = 1024  # a block's system share
    # sm_90 cubins count the system share in a kernel's SHARED when it has
    # shared memory of its own (128 bytes of partials show as 1152).
    reported_with_reserve: bool = False


LIMITS = {
    "sm_80": Limits(shared=164 * 1024),
    "sm_90": Limits(shared=228 * 1024, reported_with_reserve=True),
}


@dataclass
class Kernel:
    name: str
    registers: int
    shared: int
    local: int
    stack: int
    block: int | None = None


def occupancy(k: Kernel, limits: Limits) -> tuple[float, int, str]:
    """(theoretical occupancy, blocks an SM, what limits it) of k at k.block threads."""
    warps = math.ceil(k.block / 32)
    per_warp = math.ceil(k.registers * 32 / limits.register_unit) * limits.register_unit
    own = k.shared - limits.shared_reserved if limits.reported_with_reserve and k.shared >= limits.shared_reserved else k.shared
    shared = math.ceil((own + limits.shared_reserved) / limits.shared_unit) * limits.shared_unit
    # On a tie the first bound named is the limiter reported.
    bounds = {
        "warps": limits.warps // warps,
        "blocks": limits.blocks,
        "registers": (limits.registers // per_warp) // warps if per_warp else limits.blocks,
        "shared memory": limits.shared // shared,
    }
    limiter = min(bounds, key=bounds.get)
    blocks = bounds[limiter]
    return blocks * warps / limits.warps, blocks, limiter


def find_cuobjdump() -> str:
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    for root in spec.submodule_search_locations if spec else []:
        found = sorted(glob.glob(os.path.join(root, "*", "bin", "cuobjdump")))
        if found:
            return found[-1]
    on_path = shutil.which("cuobjdump")
    if on_path:
        return on_path
    sys.exit("cuda_resources: no cuobjdump (pip install nvidia-cuda-cuobjdump, or give --cuobjdump)")


def default_module() -> str:
    from minidnn import _C

    return _C.__file__


def cuobjdump(tool: str, *args: str) -> str:
    done = subprocess.run([tool, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"cuda_resources: {tool} {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


RESOURCE = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


def resource_usage(tool: str, module: str, arch: str) -> dict[str, Kernel]:
    """The kernels of the cubins for `arch` and their resources (cuobjdump -res-usage)."""
    kernels: dict[str, Kernel] = {}
    name = None
    for line in cuobjdump(tool, "-res-usage", "-arch", arch, module).splitlines():
        line = line.strip()
        if line.startswith("Function "):
            name = line[len("Function ") :].rstrip(":")
        elif name and (m := RESOURCE.search(line)):
            reg, stack, shared, local = map(int, m.groups())
            kernels[name] = Kernel(name, reg, shared, local, stack)
            name = None
    return kernels


def launch_bounds(tool: str, module: str, arch: str) -> dict[str, int]:
    """Each kernel's __launch_bounds__ block size (EIATTR_MAX_THREADS of its .nv.info section)."""
    bounds: dict[str, int] = {}
    name = None
    expect_value = False
    for line in cuobjdump(tool, "-elf", "-arch", arch, module).splitlines():
        if line.startswith(".nv.info."):
            name = line[len(".nv.info.") :].strip()
        elif name and "EIATTR_MAX_THREADS" in line:
            expect_value = True
        elif expect_value and line.strip().startswith("Value:"):
            x, y, z = (int(v, 16) for v in line.split()[1:4])
            bounds[name] = x * y * z
            expect_value = False
    return bounds


def demangled(names: list[str]) -> dict[str, str]:
    cxxfilt = shutil.which("c++filt")
    if not cxxfilt:
        return {n: n for n in names}
    out = subprocess.run([cxxfilt], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    short = [re.sub(r"^minidnn::cuda::gpu::|\bminidnn::cuda::gpu::", "", o) for o in out]
    return dict(zip(names, short))


def report(module: str, tool: str) -> tuple[list[str], list[str]]:
    lines = [
        f"CUDA kernels of {os.path.basename(module)}: resources per architecture (cuobjdump -res-usage),",
        "block = __launch_bounds__ threads, occupancy = theoretical (bench/scripts/cuda_resources.py).",
        "",
    ]
    failures: list[str] = []
    for arch in ARCHITECTURES:
        kernels = resource_usage(tool, module, arch)
        if not kernels:
            print(f"cuda_resources: {module} holds no {arch} code (a build without CUDA?)", file=sys.stderr)
            sys.exit(2)
        for name, block in launch_bounds(tool, module, arch).items():
            if name in kernels:
                kernels[name].block = block
        names = demangled(sorted(kernels))
        lines.append(f"{arch}:")
        lines.append(f"  {'registers':>9} {'shared':>6} {'local':>5} {'stack':>5} {'block':>5} {'blocks/SM':>9} "
                     f"{'occupancy':>9}  limited by     kernel")
        for mangled in sorted(kernels, key=lambda n: names[n]):
            k = kernels[mangled]
            label = names[mangled]
            if k.block is None:
                failures.append(f"{arch} {label}: no __launch_bounds__, so its block size is unknown")
                occ_text, blocks_text, limiter = "?", "?", "?"
            else:
                occ, blocks, limiter = occupancy(k, LIMITS[arch])
                occ_text, blocks_text = f"{occ:.0%}", str(blocks)
                if occ < MIN_OCCUPANCY:
                    failures.append(f"{arch} {label}: occupancy {occ:.0%} < {MIN_OCCUPANCY:.0%} ({limiter})")
            if k.local or k.stack:
                failures.append(f"{arch} {label}: {k.local} bytes of local memory, {k.stack} of stack (spills)")
            lines.append(f"  {k.registers:>9} {k.shared:>6} {k.local:>5} {k.stack:>5} {k.block or '?':>5} "
                         f"{blocks_text:>9} {occ_text:>9}  {limiter:<14} {label}")
        lines.append("")
    lines.append("FAILED:" if failures else "OK: no local memory, every kernel at >= 50% theoretical occupancy.")
    lines.extend(f"  {f}" for f in failures)
    return lines, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", help="the built extension (default: the installed minidnn._C)")
    parser.add_argument("--cuobjdump", help="the cuobjdump binary (default: nvidia-cuda-cuobjdump's, else PATH)")
    parser.add_argument("--output", help="also write the report to this file")
    args = parser.parse_args()
    module = args.module or default_module()
    lines, failures = report(module, args.cuobjdump or find_cuobjdump())
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
