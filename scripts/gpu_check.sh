#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script for a machine that has one (CI has none).
#
#   bash scripts/gpu_check.sh [OUT_DIR]      # default: $OUT, else gpu-check/
#
# Uses the machine's own python3 with a CUDA build of torch (PYTHON=... to choose another)
# and needs no internet: a missing torch-pruning is installed from wheels in .whl/ if there
# (pip download --no-deps torch-pruning==<constraints.txt's version> -d .whl). Runs, with
# logs in OUT_DIR:
#   1. the device tests, which skip without a GPU (-rs lists any skip with its reason);
#   2. `ttmpd run --backend torch-cuda` on the shipped ResNet-20: profile on the GPU, search,
#      adaptive BN, distillation and evaluation on cuda:0, budget checked by measurement.
# Exit status: 0 when both pass.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check}}"
mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1

if ! "$py" -c "import torch_pruning" 2>/dev/null; then
    if compgen -G ".whl/torch_pruning-*.whl" >/dev/null; then
        "$py" -m pip install -q --no-index --no-deps --target /tmp/ttmpd-site .whl/*.whl || exit 2
        export PYTHONPATH="/tmp/ttmpd-site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "torch-pruning is missing and .whl/ holds no wheel of it (see this script's header)"
        exit 2
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$py" - <<'EOF' | tee "$out/env.txt"
import sys

import torch

print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
if not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch: nothing to check here")
print("gpu", torch.cuda.get_device_name(0), "count", torch.cuda.device_count())
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 2

status=0
"$py" -m pytest -q -rs -p no:cacheprovider tests/test_device.py tests/profiler/test_backends.py \
    tests/profiler/test_ort_device.py tests/pipeline/test_run.py 2>&1 | tee "$out/tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

run="$out/run"
rm -rf "$run" "$out/stream.npz"
{
    "$py" -m ttmpd data make-stream --corruption motion_blur --severity 5 --seed 0 \
        --out "$out/stream.npz" &&
    "$py" -m ttmpd run --model ttmpd/models/resnet20_mnist.pt --data "$out/stream.npz" --backend torch-cuda \
        --device 0 --budget 0.5 --epochs 2 --no-progress --out "$run"
} 2>&1 | tee "$out/run.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
[ -f "$run/report.md" ] && cp "$run/report.md" "$out/report.md"
exit "$status"
