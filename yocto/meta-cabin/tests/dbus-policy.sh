#!/usr/bin/env bash
# The system-bus policy files of meta-cabin, enforced by a real dbus-daemon: only a service's
# user owns its name; the hmi group and the voice user may call it (the voice user only
# Submit on Feedback1); every other uid gets org.freedesktop.DBus.Error.AccessDenied.
#
#   yocto/meta-cabin/tests/dbus-policy.sh [FEEDBACKD_BINARY [COMPANIOND_BINARY [VOICED_BINARY]]]
#   (as root: it adds test users)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
policy="$here/../recipes-cabin/cabin/files/dbus"
feedbackd=${1:-$root/target/debug/cabin-feedbackd}
companiond=${2:-$(dirname "$feedbackd")/cabin-companiond}
voiced=${3:-$(dirname "$feedbackd")/cabin-voiced}
[[ $(id -u) == 0 ]] || { echo "dbus-policy: needs root (test users, setpriv)"; exit 1; }
[[ -x $feedbackd ]] || { echo "dbus-policy: build cabin-feedbackd first ($feedbackd)"; exit 1; }
[[ -x $companiond ]] || { echo "dbus-policy: build cabin-companiond first ($companiond)"; exit 1; }
[[ -x $voiced ]] || { echo "dbus-policy: build cabin-voiced first ($voiced)"; exit 1; }

getent group hmi >/dev/null || groupadd --system hmi
for u in cabin-wallpaper cabin-feedback cabin-companion cabin-voice cabin-test-cockpit cabin-test-stranger; do
    id "$u" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$u"
done
usermod -a -G hmi cabin-test-cockpit

work=$(mktemp -d)
chmod 755 "$work"
daemon_pid=""
service_pid=""
companion_pid=""
voice_pid=""
cleanup() {
    [[ -n $voice_pid ]] && kill "$voice_pid" 2>/dev/null || true
    [[ -n $service_pid ]] && kill "$service_pid" 2>/dev/null || true
    [[ -n $companion_pid ]] && kill "$companion_pid" 2>/dev/null || true
    [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A system bus: Debian's default policy (deny method calls and owning unless allowed), our files.
cat >"$work/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$work/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>$policy</includedir>
</busconfig>
CONF
dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile --print-address=3 3>"$work/address" 2>"$work/dbus.log" &
daemon_pid=$!
for _ in $(seq 100); do [[ -s $work/address ]] && break; sleep 0.05; done
address="unix:path=$work/bus"

as() { local user=$1; shift; setpriv --reuid "$user" --regid "$user" --init-groups -- "$@"; }
fails=0
expect() {  # expect allow|deny WHAT -- command...
    local want=$1 what=$2; shift 3
    local out
    if out=$("$@" 2>&1); then got=allow; else got=deny; fi
    if [[ $got == deny ]] && ! grep -qiE "access ?denied|rejected|not allowed" <<<"$out"; then
        got="error ($out)"
    fi
    if [[ $got == "$want" ]]; then echo "ok   $what: $want"; else echo "FAIL $what: wanted $want, got $got"; fails=$((fails + 1)); fi
}

# Owning the name: a stranger cannot, the service's user can.
mkdir -p "$work/state-stranger" "$work/state"
chown cabin-test-stranger "$work/state-stranger"
chown cabin-feedback "$work/state"
expect deny "stranger owns org.cabin.Feedback1" -- \
    as cabin-test-stranger timeout 10 "$feedbackd" --bus "$address" --state-dir "$work/state-stranger"
setpriv --reuid cabin-feedback --regid cabin-feedback --init-groups -- \
    "$feedbackd" --bus "$address" --state-dir "$work/state" >"$work/feedbackd.log" 2>&1 &
service_pid=$!
for _ in $(seq 200); do
    busctl --address="$address" status org.cabin.Feedback1 >/dev/null 2>&1 && break
    sleep 0.05
done

call=(busctl --address="$address" call org.cabin.Feedback1 /org/cabin/Feedback1 org.cabin.Feedback1)
expect allow "hmi group: Submit"  -- as cabin-test-cockpit "${call[@]}" Submit 'ssa{sv}' hmi "the screen lags" 0
expect allow "hmi group: Summary" -- as cabin-test-cockpit "${call[@]}" Summary 'xxa{sv}' 0 0 0
expect allow "voice user: Submit" -- as cabin-voice "${call[@]}" Submit 'ssa{sv}' voice "导航老是卡" 0
expect deny  "voice user: Summary" -- as cabin-voice "${call[@]}" Summary 'xxa{sv}' 0 0 0
expect deny  "stranger: Submit"   -- as cabin-test-stranger "${call[@]}" Submit 'ssa{sv}' app "x" 0
expect deny  "stranger: read Pending" -- as cabin-test-stranger \
    busctl --address="$address" get-property org.cabin.Feedback1 /org/cabin/Feedback1 org.cabin.Feedback1 Pending
expect deny  "feedback user owns org.cabin.Wallpaper1" -- as cabin-feedback \
    busctl --address="$address" call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus RequestName su org.cabin.Wallpaper1 4
expect allow "wallpaper user owns org.cabin.Wallpaper1" -- as cabin-wallpaper \
    busctl --address="$address" call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus RequestName su org.cabin.Wallpaper1 4

# The companion: hmi everything, the voice user only sessions, nobody else anything.
mkdir -p "$work/companion" "$work/companion-stranger"
chown cabin-companion "$work/companion"
chown cabin-test-stranger "$work/companion-stranger"
expect deny "stranger owns org.cabin.Companion1" -- \
    as cabin-test-stranger timeout 10 "$companiond" --bus "$address" --state-dir "$work/companion-stranger"
setpriv --reuid cabin-companion --regid cabin-companion --init-groups -- \
    "$companiond" --bus "$address" --state-dir "$work/companion" >"$work/companiond.log" 2>&1 &
companion_pid=$!
for _ in $(seq 200); do
    busctl --address="$address" status org.cabin.Companion1 >/dev/null 2>&1 && break
    sleep 0.05
done
companion=(busctl --address="$address" call org.cabin.Companion1 /org/cabin/Companion1 org.cabin.Companion1)
expect allow "hmi group: StartSession"  -- as cabin-test-cockpit "${companion[@]}" StartSession 'sa{sv}' "" 0
expect allow "voice user: StartSession" -- as cabin-voice "${companion[@]}" StartSession 'sa{sv}' "" 0
expect allow "voice user: Say" -- as cabin-voice busctl --address="$address" call org.cabin.Companion1 \
    /org/cabin/Companion1/sessions/2 org.cabin.Companion1.Session Say 'sa{sv}' "讲个笑话" 0
expect deny  "voice user: Forget" -- as cabin-voice "${companion[@]}" Forget s warm-companion
expect allow "hmi group: Forget"  -- as cabin-test-cockpit "${companion[@]}" Forget s warm-companion
expect deny  "stranger: StartSession" -- as cabin-test-stranger "${companion[@]}" StartSession 'sa{sv}' "" 0
expect deny  "stranger: Say" -- as cabin-test-stranger busctl --address="$address" call org.cabin.Companion1 \
    /org/cabin/Companion1/sessions/1 org.cabin.Companion1.Session Say 'sa{sv}' "hi" 0

# The voice hook: the hmi group (the voice assistant, the cockpit) may call Handle.
expect deny "stranger owns org.cabin.Voice1" -- as cabin-test-stranger timeout 10 "$voiced" --bus "$address"
setpriv --reuid cabin-voice --regid cabin-voice --init-groups -- "$voiced" --bus "$address" >"$work/voiced.log" 2>&1 &
voice_pid=$!
for _ in $(seq 200); do
    busctl --address="$address" status org.cabin.Voice1 >/dev/null 2>&1 && break
    sleep 0.05
done
voice=(busctl --address="$address" call org.cabin.Voice1 /org/cabin/Voice1 org.cabin.Voice1 Handle 'ssa{sv}')
# handled=true: the hook's own calls to the companion (as cabin-voice) were allowed too.
expect allow "hmi group: Handle, routed to the companion" -- as cabin-test-cockpit \
    bash -c '"$@" | grep -q "^bss true"' handle "${voice[@]}" "讲个笑话" "" 0
expect deny  "stranger: Handle" -- as cabin-test-stranger "${voice[@]}" "讲个笑话" "" 0

if ((fails)); then echo "dbus-policy: $fails check(s) failed"; exit 1; fi
echo "dbus-policy: all checks passed"
