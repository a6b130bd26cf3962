#!/usr/bin/env bash
# One command from nothing to the bundled wallpaper model in onnx/wallpaper-tiny:
# train and export (train.py), move the sample sheets to docs/, write the manifest with the
# engine's own tool, and measure prompt adherence with the render-trained classifier.
#
#   onnx/train/make_model.sh [MINUTES] [THREADS]      # e.g. 95 2; CUDA is used when present
#
# Needs the venv of onnx/requirements-fixtures.txt at onnx/.venv. Do not run cargo builds
# beside it on a 2-core machine (torch slows ~50x next to rustc).
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-95}
threads=${2:-2}
py=onnx/.venv/bin/python
out=onnx/wallpaper-tiny

"$py" onnx/train/train.py --minutes "$minutes" --threads "$threads" --out "$out"
mkdir -p docs
for sheet in samples samples_zh; do
    if [[ -f $out/$sheet.png ]]; then mv "$out/$sheet.png" "docs/wallpaper-$sheet.png"; fi
done
cargo build --release -q -p cabin-wallpaper --bin cabin-wallpaper
made_by=$("$py" - "$out/train_info.json" <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))
print("trained in-house by {} (data seed {}, seed {}, {} rendered scenes, {:.0f} min on {}, {} thread(s)); no external weights or data".format(
    i["command"], i["data_seed"], i["seed"], i["images"], i["train_seconds"] / 60, i["device"], i["threads"]))
PY
)
target/release/cabin-wallpaper manifest "$out" --name cabin-wallpaper-tiny --version 0.1.0 \
    --licence "MIT OR Apache-2.0" --made-by "$made_by"
"$py" onnx/train/evaluate.py --model "$out" --out docs/wallpaper-eval.json
