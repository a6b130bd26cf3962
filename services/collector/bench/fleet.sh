#!/usr/bin/env bash
# The collector under a fleet's load, PostgreSQL and SQLite side by side in one run:
#
#   services/collector/bench/fleet.sh [VEHICLES] [BATCHES] [ITEMS] [DUP_RATE] [CONCURRENCIES]
#   services/collector/bench/fleet.sh 400 5 20 0.25 "1 4 16"      # the defaults
#   GROWTH=8 services/collector/bench/fleet.sh                     # rounds of the growth phase
#
# For each backend and each concurrency: a fresh database, `cabin-collector load` (real HTTP,
# protobuf + gzip, a share of batches sent twice at the same moment), a SIGKILL of the collector
# once 40 % of the batches are in and a restart on the same database and port; the load
# generator retries through the outage. Prints items/s, p50/p99 request latency and whether the
# totals the collector holds are exact. PostgreSQL is a private server started here (initdb in
# a temp dir, Unix socket only; as root it runs as the postgres user).
# Then the growth phase: GROWTH rounds of the same fleet (new ids) into one database per backend
# at 16 senders, printing each round's items/s beside the rows already stored: inserts that
# stay flat as the tables grow.
set -euo pipefail
cd "$(dirname "$0")/../../.."
vehicles=${1:-400} batches=${2:-5} items=${3:-20} dup=${4:-0.25} concurrencies=${5:-"1 4 16"}

cargo build --release -q -p cabin-collector
bin=target/release/cabin-collector
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/cabin-fleet-bench.XXXXXX)
as_pg=()
if [[ $(id -u) == 0 ]]; then chown postgres:postgres "$work"; as_pg=(runuser -u postgres --); fi
collector_pid=
cleanup() {
    [[ -n $collector_pid ]] && kill -9 "$collector_pid" 2>/dev/null || true
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"${as_pg[@]}" "$pgbin/initdb" -A trust -U postgres -E UTF8 --locale=C -D "$work/pg" >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
    -o "-p 5432 -k $work -c listen_addresses='' -c max_connections=100" start >/dev/null
pg_url="postgresql://postgres@${work//\//%2F}:5432"

start_collector() { # DB LISTEN -> sets collector_pid, base
    "$bin" --db "$1" --listen "$2" > "$work/collector.out" 2>/dev/null &
    collector_pid=$!
    for _ in $(seq 200); do
        if grep -q "listening on" "$work/collector.out" 2>/dev/null; then
            base=$(sed -n 's/^listening on //p' "$work/collector.out" | head -1)
            return
        fi
        sleep 0.05
    done
    echo "the collector did not start" >&2; exit 1
}

stored_batches() {
    curl -sf "$base/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["batches"])' 2>/dev/null || echo 0
}

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "fleet: $vehicles vehicles x $batches batches x $items items, dup-rate $dup, SIGKILL at 40 %"
printf '%-10s %4s %10s %9s %9s %8s %8s %s\n' backend conc items/s p50_ms p99_ms retries dups exact
n=0
for c in $concurrencies; do
    for backend in postgresql sqlite; do
        n=$((n + 1))
        if [[ $backend == postgresql ]]; then
            "${as_pg[@]}" "$pgbin/psql" -q -h "$work" -U postgres -c "CREATE DATABASE run$n" >/dev/null
            db="$pg_url/run$n"
        else
            db="$work/run$n.db"
        fi
        start_collector "$db" 127.0.0.1:0
        listen=${base#http://}
        "$bin" load --url "$base" --vehicles "$vehicles" --batches "$batches" --items "$items" \
            --dup-rate "$dup" --concurrency "$c" --seed "$n" > "$work/report.json" 2> "$work/load.err" &
        load_pid=$!
        total=$((vehicles * batches))
        while (( $(stored_batches) * 10 < total * 4 )); do
            kill -0 "$load_pid" 2>/dev/null || break
            sleep 0.02
        done
        kill -9 "$collector_pid"; wait "$collector_pid" 2>/dev/null || true
        sleep 0.3
        start_collector "$db" "$listen"
        status=0
        wait "$load_pid" || status=$?
        python3 - "$work/report.json" "$backend" "$c" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<10} {sys.argv[3]:>4} {r['items_per_s']:>10.0f} {r['latency_p50_ms']:>9.2f} "
      f"{r['latency_p99_ms']:>9.2f} {r['retries']:>8} {r['duplicates']:>8} {r['exact']}")
PY
        (( status == 0 )) || { echo "load failed:"; cat "$work/load.err"; exit 1; }
        kill "$collector_pid"; wait "$collector_pid" 2>/dev/null || true
        collector_pid=
    done
done

rounds=${GROWTH:-6}
echo
echo "growth: $rounds rounds of $((vehicles * batches * items)) items into one database, 16 senders"
printf '%-10s %5s %12s %10s %9s\n' backend round stored_items items/s p99_ms
for backend in postgresql sqlite; do
    if [[ $backend == postgresql ]]; then
        "${as_pg[@]}" "$pgbin/psql" -q -h "$work" -U postgres -c "CREATE DATABASE growth" >/dev/null
        db="$pg_url/growth"
    else
        db="$work/growth.db"
    fi
    start_collector "$db" 127.0.0.1:0
    for r in $(seq "$rounds"); do
        "$bin" load --url "$base" --vehicles "$vehicles" --batches "$batches" --items "$items" \
            --dup-rate "$dup" --concurrency 16 --seed "$((1000 + r))" > "$work/report.json"
        stored=$(curl -sf "$base/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"])')
        python3 - "$work/report.json" "$backend" "$r" "$stored" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<10} {sys.argv[3]:>5} {sys.argv[4]:>12} {r['items_per_s']:>10.0f} {r['latency_p99_ms']:>9.2f}")
PY
    done
    kill "$collector_pid"; wait "$collector_pid" 2>/dev/null || true
    collector_pid=
done
