#!/usr/bin/env bash
# `make bench`: install the peers (pytorch-grad-cam, torchcam) beside the project's environment, then run
# the Score-CAM, insertion/deletion and ROAD benchmarks. Usage: bash benchmarks/run.sh [--quick]
# [--rounds N] [--models resnet18,resnet50]. Results: benchmarks/results/{scorecam,metrics,road,methods}.md (and .json).
#
# The Python used is $PYTHON, else the project's .venv (made by `make setup`), else the active virtualenv,
# else python3; it must have camwidget (editable), torch and torchvision installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then PY=$VIRTUAL_ENV/bin/python
else PY=python3
fi

# The peers go into a --target folder inside the git-ignored benchmarks/.venv-bench, not into the project's
# environment, and without their dependencies: torch & co. come from the project's environment (no second
# multi-GB torch). Reinstalled whenever requirements.txt changes.
BENCH=benchmarks/.venv-bench
PEERS=$BENCH/peers
STAMP=$BENCH/requirements.sha256
want=$(sha256sum benchmarks/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ] || [ ! -d "$PEERS" ]; then
  echo "installing the peers into $PEERS ..."
  rm -rf "$PEERS"
  mkdir -p "$PEERS"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --target "$PEERS" \
    -r benchmarks/requirements.txt
  echo "$want" > "$STAMP"
fi
export CAMWIDGET_BENCH_PEERS="$PWD/$PEERS"
"$PY" - <<'PY'
import os, sys
sys.path.insert(0, os.environ["CAMWIDGET_BENCH_PEERS"])
import camwidget.metrics, pytorch_grad_cam, torchcam.metrics, torchvision  # noqa: F401
from pytorch_grad_cam import ScoreCAM  # noqa: F401
from pytorch_grad_cam.metrics.road import ROADCombined  # noqa: F401
from pytorch_grad_cam import FullGrad, ShapleyCAM, FinerCAM, KPCA_CAM, FEM, RefineCAM  # noqa: F401
from torchcam.methods import SSCAM, ISCAM, SmoothGradCAMpp, LeGrad  # noqa: F401
from torchcam.methods import ScoreCAM as _  # noqa: F401
print("peers import fine:", pytorch_grad_cam.__file__, torchcam.__file__)
PY

"$PY" benchmarks/bench_scorecam.py "$@"
"$PY" benchmarks/bench_metrics.py "$@"
# Score-CAM's peak memory on one 2048x2048 image (its own options: --quick = 1 round).
mem=()
for arg in "$@"; do if [ "$arg" = --quick ]; then mem=(--quick); fi; done
"$PY" benchmarks/bench_memory.py "${mem[@]}"
"$PY" benchmarks/bench_road.py "$@"
"$PY" benchmarks/bench_methods.py "$@"
# The dataset-audit benchmark has its own owner and options (no --quick: one round instead).
if [ -f benchmarks/bench_audit.py ]; then
  quick=()
  for arg in "$@"; do if [ "$arg" = --quick ]; then quick=(--rounds 1); fi; done
  "$PY" benchmarks/bench_audit.py "${quick[@]}"
fi
