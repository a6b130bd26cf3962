#!/usr/bin/env bash
# One command from nothing to the bundled wallpaper model in onnx/wallpaper-tiny, on 2 CPU cores.
#
#   onnx/train/make_model.sh [HOURS]        # this sitting's budget, default 2.5; run it again to go on
#   FRESH=1 onnx/train/make_model.sh        # start every stage over
#   VERSION=0.4.0 onnx/train/make_model.sh  # the manifest's version at the end
#   THREADS=1 taskset -c 0 onnx/train/make_model.sh  # leave the other core to other work
#
# The stages run in order; each one resumes from its checkpoint in onnx/train/checkpoints/ (fp16
# weights, committed until the model ships) or, on the same machine, from its full state in
# ~/.cache/cabin-train, and stops cleanly when the sitting's time is up. Run the same command again
# in the next sitting: finished stages say "nothing to do" and the next one goes on.
#   1. train_autoencoder.py  the x8 autoencoder (8 latent channels) on rendered crops
#   2. train_denoiser.py     text encoder + UNet on its latents
#   3. train_upscaler.py     the x6 display stage on (reconstruction, 768x1920 drawing) pairs
#   4. export_model.py       the diffusers ONNX folder + upscaler/, checked with onnxruntime; samples
#   5. cabin-wallpaper contact-sheet (in the folder and docs/), evaluate.py at 1920x720
#      (docs/wallpaper-eval.json and the model card's figures), then the manifest
# A GPU, when present, is used by the same scripts and only makes it sooner.
#
# Needs the venv of onnx/requirements-fixtures.txt at onnx/.venv (made here if missing). Never run
# a cargo build beside it on a 2-core machine (torch slows ~50x next to rustc): step 5 builds only
# after training is over.
set -euo pipefail
cd "$(dirname "$0")/../.."
hours=${1:-2.5}
threads=${THREADS:-2}
py=onnx/.venv/bin/python
out=onnx/wallpaper-tiny
fresh=()
[[ -n ${FRESH:-} ]] && fresh=(--fresh)

if [[ ! -x $py ]]; then
    python3 -m venv onnx/.venv
    onnx/.venv/bin/pip install -q -r onnx/requirements-fixtures.txt
fi

deadline=$(( $(date +%s) + $(awk -v h="$hours" 'BEGIN { printf "%d", h * 3600 }') ))
minutes_left() { echo $(( (deadline - $(date +%s)) / 60 )); }

for stage in autoencoder denoiser upscaler; do
    left=$(minutes_left)
    if (( left < 5 )); then
        echo "make_model: the sitting's time is up before $stage; run the same command again to go on"
        exit 0
    fi
    set +e
    "$py" "onnx/train/train_$stage.py" --sitting-minutes "$left" --threads "$threads" "${fresh[@]}"
    rc=$?
    set -e
    if (( rc == 75 )); then
        echo "make_model: $stage is not finished (checkpoint saved); run the same command again to go on"
        exit 0
    elif (( rc != 0 )); then
        exit "$rc"
    fi
done

"$py" onnx/train/export_model.py --out "$out"
rm -f "$out/manifest.json"   # the old one no longer matches; written anew below
cargo build --release -q -p cabin-wallpaper --bin cabin-wallpaper
# What a person sees: every family, and four families through the day, from the engine itself
# at 1920x720 (the family sheet ships in the model folder for the cockpit's model panel).
target/release/cabin-wallpaper contact-sheet --model "$out" --allow-unverified --threads 2 \
    --out "$out/contact-sheet.png"
cp "$out/contact-sheet.png" docs/wallpaper-contact-sheet.png
target/release/cabin-wallpaper contact-sheet --model "$out" --allow-unverified --threads 2 --phases \
    --out docs/wallpaper-contact-sheet-phases.png
made_by=$("$py" - "$out/train_info.json" <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))
hours = sum(i[k]["seconds"] for k in ("autoencoder", "denoiser", "upscaler") if i.get(k)) / 3600
print("trained in-house from scratch by onnx/train/make_model.sh on rendered scenes "
      f"({hours:.1f} h of training on CPUs, see MODEL_CARD.md); no external weights or data")
PY
)
# The evaluation fills the model card's figures, so the manifest comes after it.
"$py" onnx/train/evaluate.py --model "$out" --out docs/wallpaper-eval.json \
    --engine target/release/cabin-wallpaper --card "$out/MODEL_CARD.md"
target/release/cabin-wallpaper manifest "$out" --name cabin-wallpaper-tiny --version "${VERSION:-0.4.0}" \
    --licence "MIT OR Apache-2.0" --made-by "$made_by"
