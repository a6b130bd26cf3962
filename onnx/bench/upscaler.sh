#!/usr/bin/env bash
# Display-stage benchmark: a model's upscaler/ on tract (cabin's engine,
# examples/display_stage.rs) and on onnxruntime, same file, input size and threads, in one
# run; prints both and the ratio.
#
#   onnx/bench/upscaler.sh UPSCALER_OR_MODEL_DIR [THREADS] [RUNS] [INPUT_WxH]
#
# Needs the Python venv of onnx/requirements-fixtures.txt at onnx/.venv. Not part of the tests.
# PROFILE=dev times the dev build (dependencies optimised, the crate at opt-level 2) instead
# of a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=$(realpath "$1")
threads=${2:-1}
runs=${3:-5}
size=${4:-320x128}
py=onnx/.venv/bin/python
profile=${PROFILE:-release}
[ "$profile" = release ] && flag=--release || flag=
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cargo run -q $flag -p cabin-diffusion --example display_stage -- --model "$model" \
    --threads "$threads" --runs "$runs" --size "$size" > "$out/tract.json"
"$py" onnx/bench/ort_upscaler.py --model "$model" --threads "$threads" --runs "$runs" \
    --size "$size" > "$out/ort.json"

"$py" - "$out" <<'PY'
import json, sys
d = sys.argv[1]
t, o = (json.load(open(f"{d}/{n}.json")) for n in ("tract", "ort"))
print(f"display stage x{t['scale']}: {t['input']} -> {t['output']}, {t['threads']} thread(s), "
      f"{t['runs']} runs; {o['engine']}")
print(f"{'':18}{'tract':>10}{'onnxruntime':>13}{'ratio':>8}")
for key, label in [("median_ms", "median ms"), ("min_ms", "fastest ms"),
                   ("cpu_ms", "CPU ms (median)"),
                   ("first_run_ms", "first run ms"), ("peak_rss_mib", "peak RSS MiB")]:
    a, b = t[key], o[key]
    print(f"{label:18}{a:10.1f}{b:13.1f}{a / b:8.2f}")
PY
