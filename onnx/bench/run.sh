#!/usr/bin/env bash
# Wallpaper pipeline benchmark: tract (cabin's engine) against onnxruntime on the same ONNX
# files, same threads, steps, DDIM scheduler and guidance, in one run; prints both and the
# ratios, plus the UNet's achieved GFLOP/s against this machine's sgemm peak.
#
#   onnx/bench/run.sh [MODEL_DIR] [STEPS] [GUIDANCE] [THREADS]
#
# Needs the Python venv of onnx/requirements-fixtures.txt at onnx/.venv. Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
# cargo runs the bench from the package folder, so the model path must be absolute.
model=$(realpath "${1:-onnx/wallpaper-tiny}")
steps=${2:-20}
guidance=${3:-7.5}
threads=${4:-1}
py=onnx/.venv/bin/python
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cargo bench -q -p cabin-wallpaper --bench pipeline -- --model "$model" --steps "$steps" \
    --guidance "$guidance" --scheduler ddim --threads "$threads" > "$out/tract.json"
"$py" onnx/bench/ort_pipeline.py --model "$model" --steps "$steps" --guidance "$guidance" \
    --threads "$threads" > "$out/ort.json"
# OpenBLAS's core-type override slows current numpy; unset it for the peak alone.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS="$threads" \
    "$py" onnx/bench/sgemm_peak.py > "$out/peak.json"

"$py" - "$out" <<'PY'
import json, sys
d = sys.argv[1]
t, o, p = (json.load(open(f"{d}/{n}.json")) for n in ("tract", "ort", "peak"))
print(f"model {t['model']} native {t['native']} -> {t['display']}, {t['steps']} DDIM steps, "
      f"guidance {t['guidance']}, {t['threads']} thread(s)")
print(f"machine: {t.get('machine', 'unknown')}")
print(f"{'':18}{'tract':>10}{'onnxruntime':>13}{'ratio':>8}")
for key, label in [("end_to_end_ms", "end to end ms"), ("text_encoder_ms", "text encoder ms"),
                   ("unet_step_ms", "UNet step ms"), ("decoder_ms", "decoder ms"),
                   ("display_stage_ms", "display stage ms"),
                   ("resize_encode_ms", "resize+PNG ms"), ("load_ms", "load ms"),
                   ("first_run_ms", "first run ms"), ("peak_rss_mib", "peak RSS MiB")]:
    a, b = t.get(key), o.get(key)
    if a is None or b is None:
        continue
    print(f"{label:18}{a:10.1f}{b:13.1f}{a / b:8.2f}")
gf = o["unet_gflop_per_step"]
peak = p["sgemm_gflops"]
for name, r in (("tract", t), ("onnxruntime", o)):
    achieved = gf / (r["unet_step_ms"] / 1000)
    print(f"UNet {name}: {gf:.3f} GFLOP/step -> {achieved:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of sgemm peak {peak:.0f} GFLOP/s")
PY
