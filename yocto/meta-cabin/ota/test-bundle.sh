#!/usr/bin/env bash
# The OTA bundle end to end with Debian's rauc: build a full and a models-only bundle, verify
# both against the development CA, and show that a tampered bundle and one signed by an
# unknown key are rejected. Then the models-only update of the companion's language model
# (the 4-bit tiny fixture standing in for SmolLM2) as the head unit would take it: the
# bundle's post-install hook, run as RAUC runs it on the slot RAUC wrote, switches to a slot
# whose manifests verify and refuses one with a changed byte, keeping the models it had.
#
#   yocto/meta-cabin/ota/test-bundle.sh [BIN_DIR]     (default target/debug)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
bin_dir=${1:-$root/target/debug}
keyring="$here/dev-ca/ca.cert.pem"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
check() {  # check accept|reject WHAT BUNDLE
    local want=$1 what=$2 bundle=$3 got out
    if out=$(rauc info --keyring="$keyring" "$bundle" 2>&1); then got=accept; else got=reject; fi
    if [[ $got == "$want" ]]; then echo "ok   $what: $want"; else echo "FAIL $what: wanted $want, got $got"; echo "$out" | tail -3; fails=$((fails + 1)); fi
    if [[ $got == accept ]]; then grep -E "Compatible|Version" <<<"$out" | sed 's/^/       /'; fi
}

"$here/build-bundle.sh" --bin-dir "$bin_dir" "$work/cabin.raucb"
lm="$root/onnx/fixtures/tiny-lm-q4"
"$here/build-bundle.sh" --models-only --model "$lm" "$work/cabin-models.raucb"
check accept "full bundle" "$work/cabin.raucb"
check accept "models-only bundle" "$work/cabin-models.raucb"

# One byte changed in the payload.
cp "$work/cabin.raucb" "$work/tampered.raucb"
size=$(stat -c %s "$work/tampered.raucb")
offset=$((size / 2))
byte=$(dd if="$work/tampered.raucb" bs=1 skip=$offset count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
printf "$(printf '\\%03o' $(((byte + 1) % 256)))" | dd of="$work/tampered.raucb" bs=1 seek=$offset conv=notrunc 2>/dev/null
check reject "tampered bundle" "$work/tampered.raucb"

# Signed by a key the head unit does not trust.
mkdir -p "$work/rogue"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/rogue/key.pem" \
    -out "$work/rogue/cert.pem" -days 2 -subj "/CN=rogue" 2>/dev/null
RAUC_CERT="$work/rogue/cert.pem" RAUC_KEY="$work/rogue/key.pem" \
    "$here/build-bundle.sh" --models-only "$work/rogue.raucb" >/dev/null
check reject "bundle signed by an unknown key" "$work/rogue.raucb"

# The models-only update on the unit: what RAUC writes to the inactive slot is the bundle's
# models image; the hook gets the slot mounted (RAUC_SLOT_MOUNT_POINT) and must verify it
# before it moves the unit's models-slot link.
expect() {  # expect WHAT WANTED_STATUS GOT_STATUS
    if [[ $2 == "$3" ]]; then echo "ok   $1"; else echo "FAIL $1: wanted exit $2, got $3"; fails=$((fails + 1)); fi
}
rauc extract --keyring="$keyring" "$work/cabin-models.raucb" "$work/extracted" >/dev/null
hook="$work/extracted/cabin-models-hook.sh"
[[ -x $hook ]] || { echo "FAIL the models bundle carries no executable hook"; fails=$((fails + 1)); }
grep -q "hooks=post-install" "$work/extracted/manifest.raucm" || { echo "FAIL the models image does not ask for its post-install hook"; fails=$((fails + 1)); }
unsquashfs -no-progress -quiet -d "$work/slot1" "$work/extracted/cabin-models.squashfs" >/dev/null
cp -R "$work/slot1" "$work/slot0"
run_hook() {  # run_hook SLOT_NAME MOUNTED_AT -> the hook's exit status
    local status=0
    RAUC_SLOT_CLASS=models RAUC_SLOT_NAME=$1 RAUC_SLOT_DEVICE="/dev/disk/by-partlabel/$1" RAUC_SLOT_MOUNT_POINT=$2 \
        CABIN_MODELS_STATE="$work/data" CABIN_MANIFEST="$bin_dir/cabin-manifest" \
        "$hook" slot-post-install 2>"$work/hook.err" || status=$?
    echo $status
}
[[ -f $work/slot1/$(basename "$lm")/manifest.json ]] || { echo "FAIL the models image lacks the language model"; fails=$((fails + 1)); }
expect "hook: intact models slot verified" 0 "$(run_hook models.1 "$work/slot1")"
expect "hook: the unit now uses models.1" /dev/disk/by-partlabel/models.1 "$(readlink "$work/data/models-slot")"
# one byte of the language model's weights changed in the other slot
weights="$work/slot0/$(basename "$lm")/model.onnx"
printf '\x5a' | dd of="$weights" bs=1 seek=$(($(stat -c %s "$weights") / 2)) conv=notrunc 2>/dev/null
expect "hook: damaged model refused" 1 "$(run_hook models.0 "$work/slot0")"
grep -q "model.onnx: sha256" "$work/hook.err" || { echo "FAIL the hook's refusal does not name the file"; cat "$work/hook.err"; fails=$((fails + 1)); }
expect "hook: the unit keeps models.1" /dev/disk/by-partlabel/models.1 "$(readlink "$work/data/models-slot")"

if ((fails)); then echo "test-bundle: $fails check(s) failed"; exit 1; fi
echo "test-bundle: all checks passed"
