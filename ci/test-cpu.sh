#!/usr/bin/env bash
# Install with the test extra and run the whole suite without the GPU tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test]'
# PyTorch and JAX, CPU builds, for the cross-backend tests (PyPI's Linux torch is a multi-GB CUDA build).
python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
python -m pip install -q -e '.[backends]'
python -m pytest -q -n auto -m "not gpu"
