#!/usr/bin/env bash
# Run the gpu-marked tests and the GPU benchmarks where CUDA is usable; otherwise say so and exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import sys, xpnet; sys.exit(0 if xpnet.cuda_available() else 1)" 2>/dev/null; then
  reason=$(python -c "from xpnet import backend; print(backend.cuda_unavailable_reason())" 2>/dev/null || echo "xpnet does not import")
  echo "no GPU: GPU tests skipped ($reason)"
  exit 0
fi
# ci/gpu-session.sh runs the tests in a call of their own and sets XPNET_GPU_TESTS_DONE=1 here.
[ -n "${XPNET_GPU_TESTS_DONE:-}" ] || python -m pytest -q -m gpu
python benchmarks/mlp_step.py --device cuda
python benchmarks/compare.py --device cuda --repeats 5
# torch.compile(mode="reduce-overhead") compiles every row first: only the launch-bound small MLP.
python benchmarks/compare.py --device cuda --repeats 5 --only mlp-small --compile
# Where a batch-100 step spends its time on the GPU (launch-bound or not), for the README.
python benchmarks/profile_step.py --device cuda --workload mlp-small --batch 100
python benchmarks/profile_step.py --device cuda --workload mlp-large --batch 100 --optimizer adam
