#!/bin/sh
# RAUC bundle hook of a models bundle: after RAUC has written the new models into the
# inactive models slot, check every model folder in it against its manifest, and only then
# switch the head unit to that slot. A damaged or tampered model fails the install and the
# unit stays on the models it has.
#
#   RAUC calls: cabin-models-hook.sh slot-post-install   (bundle manifest: hooks=post-install)
#
# From RAUC: RAUC_SLOT_CLASS, RAUC_SLOT_NAME, RAUC_SLOT_DEVICE; RAUC_SLOT_MOUNT_POINT where RAUC
# has mounted the slot (else the hook mounts the squashfs itself, read-only).
# CABIN_MODELS_STATE (default /data/cabin) holds `models-slot`, the link to the active slot's
# device that usr-share-cabin-models.mount mounts; CABIN_MANIFEST is the verifier.
set -eu

state=${CABIN_MODELS_STATE:-/data/cabin}
verifier=${CABIN_MANIFEST:-/usr/bin/cabin-manifest}

[ "${1:-}" = slot-post-install ] || exit 0
[ "${RAUC_SLOT_CLASS:-}" = models ] || exit 0
: "${RAUC_SLOT_DEVICE:?RAUC sets the slot device}"

mounted=""
cleanup() {
    if [ -n "$mounted" ]; then
        umount "$mounted" && rmdir "$mounted"
    fi
}
trap cleanup EXIT
slot=${RAUC_SLOT_MOUNT_POINT:-}
if [ -z "$slot" ]; then
    slot=$(mktemp -d "${RAUC_MOUNT_PREFIX:-/tmp}/cabin-models.XXXXXX")
    mount -t squashfs -o ro,nodev,nosuid,noexec "$RAUC_SLOT_DEVICE" "$slot"
    mounted=$slot
fi

if ! "$verifier" verify "$slot" >&2; then
    echo "cabin-models-hook: the models written to ${RAUC_SLOT_NAME:-the slot} failed verification; the unit keeps its current models" >&2
    exit 1
fi

# Switch with one rename, so a power cut leaves either the old link or the new one.
mkdir -p "$state"
ln -sfn "$RAUC_SLOT_DEVICE" "$state/models-slot.new"
mv -f "$state/models-slot.new" "$state/models-slot"   # the link names a device, never a folder
sync
echo "cabin-models-hook: ${RAUC_SLOT_NAME:-the slot} verified; it holds the models from now on" >&2

if [ -d /run/systemd/system ]; then
    systemctl restart usr-share-cabin-models.mount
    # The services check the manifests again as they load the new models.
    systemctl try-restart cabin-wallpaperd.service cabin-companiond.service
fi
