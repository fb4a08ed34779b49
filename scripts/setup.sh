#!/usr/bin/env bash
# Create .venv when missing and install ttmpd with the pinned, tested stack (with the ray
# extra, so the Ray tests run too).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,ray,hf]'
