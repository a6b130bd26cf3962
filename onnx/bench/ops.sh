#!/usr/bin/env bash
# cabin's own tract ops one by one against tract's own, at the bundled model's shapes, on 1 and
# 2 threads, with the CPU they ran on and each matrix-shaped op's share of the same run's sgemm
# peak (numpy's BLAS at 1 and 2 threads).
#
#   onnx/bench/ops.sh [REPS] [ONLY: the cases whose name holds it]
#
# Needs the Python venv of onnx/requirements-fixtures.txt at onnx/.venv (for the peak only).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=onnx/.venv/bin/python
peak() {
    # OpenBLAS's core-type override slows current numpy; unset it for the peak alone.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS="$1" "$py" onnx/bench/sgemm_peak.py |
        "$py" -c 'import json, sys; print(json.load(sys.stdin)["sgemm_gflops"])'
}
cargo bench -q -p cabin-tract-ops --bench ops -- --peak1 "$(peak 1)" --peak2 "$(peak 2)" --reps "${1:-15}" ${2:+--only "$2"}
