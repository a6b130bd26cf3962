#!/usr/bin/env bash
# Every systemd service of meta-cabin must score an exposure of at most 2.0 in
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
# Mount units run no code of ours (nothing to sandbox): they must pass systemd's own checks
# (Where= matching the unit's name, known settings).
for unit in "$here"/../recipes-cabin/cabin/files/*.mount; do
    if out=$(systemd-analyze verify --man=no "$unit" 2>&1); then
        echo "ok   $(basename "$unit") (systemd-analyze verify)"
    else
        echo "FAIL $(basename "$unit"): $out"
        status=1
    fi
done
exit $status
