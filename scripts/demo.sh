#!/usr/bin/env bash
# The README's main command: set up (if needed), then run the embedded demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ttmpd demo "$@"
