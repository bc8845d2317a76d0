#!/usr/bin/env bash
# Every GPU check and benchmark of issue 14 in one or two calls on a lent GPU machine, full logs under $OUT.
#
#   bash ci/gpu-session.sh tests    # pytest -m gpu (layers, losses, fast paths, trainer, cross-backend,
#                                   # distributed/NCCL), then the whole suite as CI runs it (~5 min)
#   bash ci/gpu-session.sh bench    # ci/test-gpu.sh's benchmarks and profiles, the NCCL overhead (~8 min)
#   bash ci/gpu-session.sh all      # both, where one call may run long enough
#
# The machine has CuPy, PyTorch, mpi4py and NCCL but not the array-API packages: they travel as wheels in
# the ignored .whl/ (prepare them on the CPU machine, see the README's "GPU" section), carried with the call.
# Each step has its own time limit, so a hang costs that step only; the last thing printed is a table.
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
OUT=${OUT:-/tmp/xpnet-gpu}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: > "$summary"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "could not install the wheels in .whl/"; exit 1; }
  export PYTHONPATH="$PYTHONPATH:/tmp/site" PATH="/tmp/site/bin:$PATH"
fi

# step NAME LIMIT_S COMMAND...: run with a time limit, log to $OUT/NAME.log, one row in the summary.
step() {
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  printf '%-14s rc=%-3s %4ss  %s\n' "$name" "$rc" "$(( $(date +%s) - start ))" \
    "$(grep -E '(passed|failed|error)' "$OUT/$name.log" | tail -n 1 | cut -c1-90)" >> "$summary"
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import sys, numpy, cupy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__, \
'cupy', cupy.__version__, 'torch', torch.__version__)"
  python3 -c "import mpi4py; from mpi4py import MPI; print('mpi4py', mpi4py.__version__, MPI.Get_library_version().splitlines()[0])"
  python3 -c "from cupy.cuda import nccl; print('nccl', nccl.get_version())"
  python3 -c "import xpnet; print('xpnet', xpnet.__file__, 'cuda_available', xpnet.cuda_available())"
  command -v mpiexec
} > "$OUT/env.log" 2>&1

if [ "$what" = tests ] || [ "$what" = all ]; then
  step pytest-gpu 420 python3 -m pytest -q -m gpu -rfEs -p no:cacheprovider
  step pytest-all 300 python3 -m pytest -q -x -m "not gpu" -p no:cacheprovider
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  XPNET_GPU_TESTS_DONE=1 step test-gpu 480 bash ci/test-gpu.sh
  step nccl-1rank 120 python3 benchmarks/distributed.py --device cuda --steps 20
fi

cat "$OUT/env.log"
echo
cat "$summary"
