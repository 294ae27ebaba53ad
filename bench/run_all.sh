#!/usr/bin/env bash
# `make bench`: every benchmark, one after another. Figures only; nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
run() { echo; echo "== $*"; "$@"; }
run $PY bench/bench_validate.py --rows "${BENCH_ROWS:-1000000}"
[ -f bench/bench_preview.py ] && run $PY bench/bench_preview.py
[ -f bench/bench_submission.py ] && run $PY bench/bench_submission.py
[ -f bench/bench_mesh.py ] && run $PY bench/bench_mesh.py
echo; echo "bench done"
