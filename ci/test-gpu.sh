#!/usr/bin/env bash
# Run the gpu-marked tests and the GPU benchmarks where CUDA is usable; otherwise say so and exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import sys, xpnet; sys.exit(0 if xpnet.cuda_available() else 1)" 2>/dev/null; then
  reason=$(python -c "from xpnet import backend; print(backend.cuda_unavailable_reason())" 2>/dev/null || echo "xpnet does not import")
  echo "no GPU: GPU tests skipped ($reason)"
  exit 0
fi
python -m pytest -q -m gpu
python benchmarks/mlp_step.py --device cuda
if [ -f benchmarks/compare.py ]; then python benchmarks/compare.py --device cuda; fi
# Where a batch-100 step spends its time on the GPU (launch-bound or not), for the README.
python benchmarks/profile_step.py --device cuda --workload mlp-small --batch 100
python benchmarks/profile_step.py --device cuda --workload mlp-large --batch 100 --optimizer adam
