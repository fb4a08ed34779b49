#!/usr/bin/env bash
# The README's test command: set up (if needed), lint, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check ttmpd tests benchmarks
.venv/bin/ruff format --check ttmpd tests benchmarks
.venv/bin/python -m pytest -q "$@"
