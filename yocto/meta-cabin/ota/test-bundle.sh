#!/usr/bin/env bash
# The OTA bundle end to end with Debian's rauc: build a full and a models-only bundle, verify
# both against the development CA, and show that a tampered bundle and one signed by an
# unknown key are rejected.
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
"$here/build-bundle.sh" --models-only "$work/cabin-models.raucb"
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

if ((fails)); then echo "test-bundle: $fails check(s) failed"; exit 1; fi
echo "test-bundle: all checks passed"
