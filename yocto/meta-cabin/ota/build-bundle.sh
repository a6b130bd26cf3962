#!/usr/bin/env bash
# Builds a signed RAUC bundle of cabin for an A/B head unit.
#
#   yocto/meta-cabin/ota/build-bundle.sh [--models-only] [--bin-dir DIR] [--model DIR]... OUT.raucb
#
# Full bundle: an `appfs` image (squashfs: /usr/bin/cabin-*, the systemd units, the D-Bus
# policy and activation files) and a `models` image (mounted at /usr/share/cabin/models).
# The models image holds onnx/wallpaper-tiny and every --model folder (e.g. the companion's
# language model from build_lm.py), each with its manifest.json; cabin-models-hook.sh, run by
# RAUC after writing it, verifies them all before the unit switches to the new slot.
# --models-only: just the `models` image, so a new model ships without touching the code.
# Binaries come from --bin-dir (default target/release; CI passes target/debug). Signed with
# the development keys in dev-ca/ unless RAUC_CERT / RAUC_KEY point elsewhere.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
files="$here/../recipes-cabin/cabin/files"
bin_dir="$root/target/release"
models_only=0
extra_models=()
while [[ $# -gt 1 ]]; do
    case $1 in
        --models-only) models_only=1; shift ;;
        --bin-dir) bin_dir=$2; shift 2 ;;
        --model) extra_models+=("$2"); shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
out=${1:?usage: build-bundle.sh [--models-only] [--bin-dir DIR] [--model DIR]... OUT.raucb}
cert=${RAUC_CERT:-$here/dev-ca/signing.cert.pem}
key=${RAUC_KEY:-$here/dev-ca/signing.key.pem}
version=$(grep -m1 '^version' "$root/Cargo.toml" | cut -d'"' -f2)+$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo local)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle"
mkdir -p "$work/models"
cp -R "$root/onnx/wallpaper-tiny" "$work/models/"
for model in "${extra_models[@]}"; do
    [[ -f $model/manifest.json ]] || { echo "build-bundle: $model has no manifest.json" >&2; exit 1; }
    cp -R "$model" "$work/models/"
done
mksquashfs "$work/models" "$work/bundle/cabin-models.squashfs" -all-root -no-progress -quiet
install -m 0755 "$here/cabin-models-hook.sh" "$work/bundle/"
image="[image.models]
filename=cabin-models.squashfs
hooks=post-install"
if ((models_only == 0)); then
    app="$work/appfs"
    install -d "$app/usr/bin" "$app/usr/lib/systemd/system" "$app/usr/share/dbus-1/system.d" \
        "$app/usr/share/dbus-1/system-services"
    for b in cabin-wallpaperd cabin-wallpaper cabin-feedbackd cabin-feedback cabin-companiond cabin-voiced cabinctl cabin-manifest cabin-lm; do
        [[ -x $bin_dir/$b ]] || { echo "build-bundle: $bin_dir/$b missing (cargo build first)" >&2; exit 1; }
        install -m 0755 "$bin_dir/$b" "$app/usr/bin/"
    done
    install -m 0644 "$files"/*.service "$files"/*.mount "$app/usr/lib/systemd/system/"
    install -m 0644 "$files"/dbus/*.conf "$app/usr/share/dbus-1/system.d/"
    install -m 0644 "$files"/dbus/*.service "$app/usr/share/dbus-1/system-services/"
    mksquashfs "$app" "$work/bundle/cabin-appfs.squashfs" -all-root -no-progress -quiet
    image="$image

[image.appfs]
filename=cabin-appfs.squashfs"
fi
cat >"$work/bundle/manifest.raucm" <<MANIFEST
[update]
compatible=cabin-headunit
version=$version
description=cabin $( ((models_only)) && echo "models" || echo "services, units, D-Bus policy and models")

[bundle]
format=plain

[hooks]
filename=cabin-models-hook.sh

$image
MANIFEST
rm -f "$out"
rauc bundle --cert="$cert" --key="$key" "$work/bundle" "$out"
echo "build-bundle: $out ($(du -h "$out" | cut -f1)), version $version"
