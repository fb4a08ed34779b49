#!/usr/bin/env bash
# The README's test command: set up (if needed), lint, build the docs site (strict, so a
# broken link fails), run the test suite; then the training tests again with oneDNN and
# ATen limited to AVX2 (another host's kernels), with glibc's heap checks on, so a kernel
# bug on that ISA cannot hide behind this host's. On x86_64 the training tiers (base
# models, distillation, pipeline) run only there: the AVX2 kernels are the ones that broke,
# and this host's own kernels still train in the layout tests and the demo test (the layout
# tests run once, natively; their AVX2 cases set the emulation in their own children). Arguments
# go to one plain pytest run. Tests that do not time real backends run on up to 4 worker
# processes (pytest-xdist, a file per worker at a time: torch is pinned to one thread in
# each); tests/real, which times ONNX Runtime and torch-cpu, runs alone after them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .  # the Python blocks of the Markdown pages too
site=$(mktemp -d)  # not --quiet: it hides the warnings --strict counts
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$site"
if [ "$#" -eq 0 ] && [ "$(uname -m)" = "x86_64" ]; then
    # the training tiers run once, under emulated AVX2 below
    .venv/bin/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile \
        --ignore=tests/pipeline --ignore=tests/distill --ignore=tests/base --ignore=tests/real
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/real
    echo "== training tests under emulated AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) =="
    for tier in tests/distill tests/base tests/pipeline; do
        ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MALLOC_CHECK_=3 \
            .venv/bin/python -m pytest -q -p no:cacheprovider -n auto --maxprocesses 4 \
            --dist loadfile "$tier"
    done
else
    .venv/bin/python -m pytest -q "$@"
fi
