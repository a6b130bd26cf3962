#!/usr/bin/env bash
# Every systemd unit of meta-cabin must score an exposure of at most 2.0 in
# `systemd-analyze security --offline=true` (systemd takes the threshold ×10).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
status=0
for unit in "$here"/../recipes-cabin/cabin/files/*.service; do
    line=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1 | grep "Overall exposure") || {
        echo "FAIL $(basename "$unit"): $(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1 | tail -1)"
        status=1
        continue
    }
    if systemd-analyze security --offline=true --threshold=20 "$unit" >/dev/null 2>&1; then
        echo "ok   ${line#*for }"
    else
        echo "FAIL ${line#*for } (over 2.0)"
        status=1
    fi
done
exit $status
