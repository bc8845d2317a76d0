#!/usr/bin/env bash
# Issue 23's GPU run as ONE call of about 9 minutes on a lent GPU machine, from the repo root, with the
# ignored .whl/ carried (the device tool: run command="bash ci/gpu-session.sh", carry [".whl"], timeout_s 600).
#
#   1. setup     install what the machine lacks from .whl/ (array-api-compat, array-api-strict; mpich's
#                mpiexec where the machine has no MPI), print the environment and the CUDA probe's answer
#   2. pytest    pytest -m gpu in strict mode (XPNET_REQUIRE_GPU=1: a GPU test that would skip fails)
#   3. charlm    examples/char_lm.py --device cuda on the first 500,000 characters: perplexity and a sample
#   4. nccl      benchmarks/distributed.py --device cuda: allreduce_grads through NCCL on one rank
#   5. compare   benchmarks/compare.py --device cuda: xpnet on CuPy against PyTorch eager and captured
#   6. profile   benchmarks/profile_step.py --device cuda: where a step's time goes
#
# Where the CUDA probe (setup's last line) finds no usable GPU, or the fake CuPy of tests/fake_cupy, no later step
# runs: their rows say "not run", the script exits 1 within seconds, and nothing it prints is a figure of a GPU.
# Each step has its own time limit (cut to what is left of XPNET_SESSION_S, default 540 s) and its full
# log in $OUT (at most 8 files come back: 7 logs and the summary). Exits non-zero when a step fails or no
# GPU test passed; the summary table is printed last. The checks that pass or fail (pytest, charlm, nccl) run
# before the measurements (compare, profile): the limits add up to more than 540 s with setup, and the step
# that the session's end cuts short is then the profile, the one least needed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/xpnet-gpu}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: > "$summary"
start=$(date +%s)
deadline=$((start + ${XPNET_SESSION_S:-540}))
failed=0
site=/tmp/xpnet-site
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}" XPNET_REQUIRE_GPU=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX (the cross-backend cases) must leave the GPU to CuPy
unset XPNET_DEVICE

# row NAME RC T0 NOTE: one row of the summary table.
row() {
  printf '| %-8s | %4s | %5s | %s |\n' "$1" "$2" "$(($(date +%s) - $3))" "$4" >> "$summary"
  [ "$2" = 0 ] || failed=1
}

# step NAME LIMIT_S COMMAND...: run under a time limit, full log in $OUT/NAME.log, one row in the summary.
step() {
  local name=$1 limit=$2 t0 rc note
  shift 2
  t0=$(date +%s)
  if [ -n "$unusable" ]; then
    row "$name" - "$t0" "not run: $unusable"
    return
  fi
  if [ $((deadline - t0)) -lt 10 ]; then
    row "$name" - "$t0" "not run: the session's time is spent"
    return
  fi
  [ "$limit" -gt $((deadline - t0)) ] && limit=$((deadline - t0))
  echo "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  note=$(grep -vE '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-110)
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then note="timed out after ${limit}s; last line: $note"; fi
  row "$name" "$rc" "$t0" "$note"
}

setup() {
  local wheels mpich data
  wheels=$(ls .whl/*.whl 2>/dev/null | grep -v '/mpich-')
  if [ -n "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" $wheels \
      || { echo "could not install the wheels in .whl/"; return 1; }
  fi
  # MPI: the machine's where mpi4py imports and mpiexec exists; else the mpich wheel's, for both.
  if ! { command -v mpiexec && python3 -c "from mpi4py import MPI"; } >/dev/null 2>&1; then
    mpich=$(ls .whl/mpich-*.whl 2>/dev/null | head -n 1)
    if [ -n "$mpich" ]; then
      python3 -m zipfile -e "$mpich" /tmp/xpnet-mpich || return 1
      data=$(echo /tmp/xpnet-mpich/mpich-*.data/data)
      chmod +x "$data"/bin/*
      export PATH="$data/bin:$PATH" MPI4PY_LIBMPI="$data/lib/libmpi.so.12"
      echo "MPI from the mpich wheel: mpiexec and MPI4PY_LIBMPI=$MPI4PY_LIBMPI"
    fi
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  echo "cores: $(nproc)"
  # Versions from the installed distributions' metadata, not by importing (torch and jax take 6 s of CPU to
  # import, for a line each); a module with no metadata of its own (the fake CuPy) is imported. Whether cupy
  # imports is the probe's line; whether the others do, their steps' logs.
  python3 - <<'EOF'
import importlib, importlib.metadata as md, importlib.util, sys
print("python", sys.version.split()[0], sys.executable)
dists = md.packages_distributions()
for name in ("numpy", "cupy", "torch", "jax", "mpi4py", "array_api_compat", "array_api_strict", "pytest",
             "hypothesis", "tqdm", "numba", "threadpoolctl", "matplotlib"):
    try:
        spec = importlib.util.find_spec(name)
        if spec is None:
            print(f"{name}: not installed")
            continue
        own = [d for d in dists.get(name, ()) if f"-packages/{name}/" in (spec.origin or "")]
        print(f"{name} {md.version(own[0]) if own else importlib.import_module(name).__version__}")
    except Exception as exc:
        print(f"{name}: {type(exc).__name__}: {exc}")
EOF
  python3 -c "from cupy.cuda import nccl; print('nccl', nccl.get_version() if nccl.available else 'not available')"
  python3 -c "from mpi4py import MPI; print('MPI', MPI.Get_library_version().splitlines()[0])"
  echo "mpiexec: $(command -v mpiexec || echo none)"
  python3 ci/cuda_probe.py  # its last line, 'xpnet <path> CUDA usable' or '... CUDA NOT usable: <why>'
}

t0=$(date +%s)
echo "== setup: wheels, MPI, environment, CUDA probe"
setup > "$OUT/setup.log" 2>&1  # in this shell: it exports PATH and MPI4PY_LIBMPI for the mpich wheel
rc=$?
probe=$(grep -E '^xpnet ' "$OUT/setup.log" | sed 's/^xpnet [^ ]* //')
row setup "$rc" "$t0" "${probe:-$(tail -n 1 "$OUT/setup.log" | cut -c1-110)}"
# Without a usable GPU (or on the fake CuPy) every later step would fail the same way, or measure no GPU: none runs.
unusable=
case "$probe" in
  "CUDA usable") ;;
  *) unusable="no usable GPU (the CUDA probe, setup's row)" ;;
esac
# One test that hangs (a graph launch, NCCL) must not take the whole step: pytest-timeout, where the machine has
# it, ends it after 90 s as a failure; --durations lists the slowest, for the next session's time budget.
# A fresh machine compiles every kernel the suite touches (NVRTC; CuPy's CUB reductions are slow to build):
# pytest-xdist, where the machine has it, runs 8 workers (whole test files each, in their own order), so
# the compiles share the machine's 16 cores; the GPU has room for all of them.
per_test=()
python3 -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 90)
python3 -c "import xdist" 2>/dev/null && per_test+=(-n 8 --dist loadfile)
step pytest 230 python3 -m pytest -m gpu -rfEs -p no:cacheprovider --durations 15 "${per_test[@]}"
passed=$(grep -oE '[0-9]+ passed' "$OUT/pytest.log" | tail -n 1 | cut -d' ' -f1)
if [ -z "$passed" ] || [ "$passed" -eq 0 ]; then
  row passed 1 "$(date +%s)" "no GPU test passed"
fi
# char_lm falls back to the CPU with a warning where CUDA is unusable: here that is a failure. Its log ends
# with the epoch's line (perplexities and time), which the summary shows.
step charlm 50 bash -c "set -o pipefail; python3 examples/char_lm.py --device cuda --epochs 1 --limit 500000 2>&1 \
| tee /tmp/xpnet-charlm.out && grep '^trained on cuda' /tmp/xpnet-charlm.out && grep '^epoch 1/' /tmp/xpnet-charlm.out \
|| { echo 'char_lm did not train on CUDA'; exit 1; }"
step nccl 60 python3 benchmarks/distributed.py --device cuda --steps 20 --require-nccl
# 16 rows (4 workloads x batch 100 and 1000 x SGD and Adam), each timing 4 steps (eager and captured, xpnet and
# PyTorch) 3 x 30 times after 2 captures, then the LSTM language model: about 100 s by estimate (never run on a
# GPU); the checks before it usually end well within their limits, which leaves it the time
step compare 200 python3 benchmarks/compare.py --device cuda --repeats 3
step profile 60 bash -c "python3 benchmarks/profile_step.py --device cuda --workload mlp-small --batch 100 && \
python3 benchmarks/profile_step.py --device cuda --workload mlp-large --batch 100 --optimizer adam"

echo
echo "== the environment ($OUT/setup.log)"
grep -v '^WARNING: Running pip as' "$OUT/setup.log"
echo
echo "== failed GPU tests ($OUT/pytest.log has each one's output)"
grep -sE '^(FAILED|ERROR) ' "$OUT/pytest.log" | head -n 40
{
  echo
  echo "CUDA probe: ${probe:-(setup printed none)}; GPU tests passed: ${passed:-0}; $(($(date +%s) - start)) s in all"
  echo "| step     |   rc |     s | last line of its log in \$OUT |"
  echo "|----------|-----:|------:|---|"
  cat "$summary"
} | tee "$OUT/summary.tmp"
mv "$OUT/summary.tmp" "$summary"
exit "$failed"
