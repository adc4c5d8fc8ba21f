#!/usr/bin/env bash
# The CUDA backend on a machine with an NVIDIA GPU (it cannot run on the
# project's CI, which has none; README "CUDA"). From the repository root:
#
#   bench/gpu_validate.sh            # everything below, results under bench/results/
#
# 1. builds minidnn with the CUDA backend (MINIDNN_CUDA=ON: no nvcc is a
#    failure) into its own venv (.venv-gpu) and build directory (build/gpu),
#    with PyTorch (the benchmark's peer, events and copy ceiling): from PyPI,
#    or, where python3 already holds a CUDA PyTorch and the build tools (a
#    GPU image, often with no package index), those, without a download;
# 2. runs the CUDA tests on the GPU: tests/test_cuda_device.py (every kernel
#    case of the emulated tests on the device, plus large shapes, twice for
#    bit-identical results), tests/test_cuda_interop.py (the GPU half:
#    PyTorch tensors in, our arrays out through DLPack, streams), and the
#    emulated tests as well; a skipped GPU test fails this script;
# 3. runs the GPU tests again under compute-sanitizer: memcheck (every
#    device access in bounds, no misaligned or freed memory) and racecheck
#    (shared-memory hazards), on minidnn's kernels only (PyTorch's are not
#    ours to check);
# 4. bench/scripts/cuda_resources.py on the built module (no spills, >= 50%
#    theoretical occupancy);
# 5. the CUDA benchmarks (python -m minidnn.bench --device cuda: CUDA events,
#    warm-up, L2 flushed before each repeat, median, against PyTorch CUDA
#    and the device's measured copy bandwidth), JSON in the suite's format
#    with "device": "cuda", to bench/results/cuda-<gpu>-<date>.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_validate: no NVIDIA GPU here (nvidia-smi -L fails)" >&2
  exit 1
fi
nvidia-smi -L

venv=.venv-gpu
py="$venv/bin/python"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
if python3 -c "import torch, pytest, hypothesis, pybind11, scikit_build_core; assert torch.cuda.is_available()" 2>/dev/null; then
  # A GPU image that already holds a CUDA PyTorch and the build tools, often
  # with no package index to reach: build against what is there.
  # python3 may itself be a venv, whose packages --system-site-packages would
  # not see: a .pth file puts its site-packages behind the new venv's own.
  if [[ ! -x $py ]]; then
    python3 -m venv "$venv"
    python3 -c "import site; print('\n'.join(site.getsitepackages()))" \
      > "$("$py" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/gpu_image_packages.pth"
  fi
  MINIDNN_CUDA=ON "$venv/bin/pip" install -q --no-deps --no-build-isolation -Cbuild-dir=build/gpu .
else
  [[ -x $py ]] || python3 -m venv "$venv"
  # PyPI's Linux torch wheels carry CUDA; the peer must see the GPU too.
  "$venv/bin/pip" install torch nvidia-cuda-cuobjdump
  MINIDNN_CUDA=ON "$venv/bin/pip" install -Cbuild-dir=build/gpu ".[test]"
fi
"$py" - <<'PY'
import minidnn, torch
from minidnn import cuda
assert cuda.is_built() and cuda.device_count() > 0 and cuda._device() == "cuda", cuda.status()
assert torch.cuda.is_available(), "PyTorch sees no GPU"
print("minidnn on", cuda.get_device_name(0), "| torch", torch.__version__, "CUDA", torch.version.cuda)
PY

gpu_tests=(tests/test_cuda_device.py tests/test_cuda_interop.py)
# -rs lists skips; any skip of a GPU test means it did not run where it should.
"$py" -m pytest -q -rs "${gpu_tests[@]}" tests/test_cuda_emulated.py | tee /tmp/gpu_validate_pytest.txt
if grep -q "^SKIPPED.*test_cuda_\(device\|interop\)" /tmp/gpu_validate_pytest.txt; then
  echo "gpu_validate: GPU tests were skipped on a GPU machine" >&2
  exit 1
fi

sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [[ ! -x $sanitizer ]]; then
  echo "gpu_validate: compute-sanitizer not found (install the CUDA toolkit)" >&2
  exit 1
fi
# kns=minidnn: only kernels whose name contains "minidnn" (ours are in namespace minidnn::cuda::gpu).
"$sanitizer" --tool memcheck --error-exitcode 1 --kernel-name kns=minidnn \
  "$py" -m pytest -q -x "${gpu_tests[@]}"
"$sanitizer" --tool racecheck --racecheck-report all --error-exitcode 1 --kernel-name kns=minidnn \
  "$py" -m pytest -q -x tests/test_cuda_device.py -k "softmax or nll_loss or (cross_entropy and unweighted and mean)"

"$py" bench/scripts/cuda_resources.py --output bench/cuda_resources.txt

gpu=$("$py" -c "from minidnn import cuda; print(cuda.get_device_name(0).lower().replace(' ', '-'))")
out="bench/results/cuda-${gpu}-$(date -u +%Y-%m-%d).json"
"$py" -m minidnn.bench --device cuda --ops softmax --groups throughput --json "$out"
echo "gpu_validate: all passed; results in $out and bench/cuda_resources.txt"
