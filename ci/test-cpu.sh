#!/usr/bin/env bash
# Install with the test extra and run the whole suite without the GPU tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test]'
python -m pytest -q -m "not gpu"
