#!/usr/bin/env bash
# CI's GPU job: the gpu-marked tests in strict mode (XPNET_REQUIRE_GPU=1: a GPU test that would skip
# fails), then the GPU benchmarks. Where CUDA is not usable it fails and says why (what nvidia-smi sees,
# and the CUDA probe's reason): a GPU job that ran nothing must not pass. ci/gpu-session.sh runs the
# same on a lent GPU machine, with a time limit per step and the logs kept.
set -euo pipefail
cd "$(dirname "$0")/.."
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
# ci/cuda_probe.py: xpnet imports, CUDA is usable, and the cupy is no fake of tests/fake_cupy (a dry run's PYTHONPATH).
if ! probe=$(python3 ci/cuda_probe.py 2>&1); then
  if [[ "$probe" == *"CUDA NOT usable: "* ]]; then
    echo "ci/test-gpu.sh: CUDA is not usable here (nvidia-smi sees ${gpus:-0} GPU(s)): ${probe#*CUDA NOT usable: }"
  else
    echo "ci/test-gpu.sh: xpnet does not import (nvidia-smi sees ${gpus:-0} GPU(s)):"
    echo "$probe"
  fi
  exit 1
fi
unset XPNET_DEVICE  # XPNET_DEVICE=cpu would turn every "cuda" of the benchmarks into the CPU
# JAX (the cross-backend cases) would take 75% of the GPU's memory at its first array, CuPy's tests the rest.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
XPNET_REQUIRE_GPU=1 python3 -m pytest -q -m gpu -rfEs
python3 benchmarks/mlp_step.py --device cuda
python3 benchmarks/compare.py --device cuda --repeats 5
# torch.compile(mode="reduce-overhead") compiles every row first: only the launch-bound small MLP.
python3 benchmarks/compare.py --device cuda --repeats 5 --only mlp-small --compile
# Where a batch-100 step spends its time on the GPU (launch-bound or not), for docs/gpu.md and docs/benchmarks.md.
python3 benchmarks/profile_step.py --device cuda --workload mlp-small --batch 100
python3 benchmarks/profile_step.py --device cuda --workload mlp-large --batch 100 --optimizer adam
