#!/bin/bash
# CPU and context switches per replicated put, per member, at one client.
# Usage (from the repository root, after `cargo build --release -p pgwarden -p pgwarden-bench`):
#   crates/bench/scripts/cpu_per_put.sh [PGWARDEN_BINARY]
# Starts `pgwarden-bench --only pgwarden` with 1-client puts, samples each member's CPU time
# (/proc/PID/stat), context switches (/proc/PID/task/*/status) and log entries appended (its
# /metrics) over 5 s, and prints per member: CPU µs per put, context switches per put, entries.
set -euo pipefail
binary=${1:-target/release/pgwarden}
log=$(mktemp)
PGWARDEN_BIN=$binary timeout 60 target/release/pgwarden-bench --only pgwarden --rounds 1 \
    --seconds 12 --put-clients 1 --get-clients 1 >"$log" 2>&1 &
bench=$!
trap 'kill $bench 2>/dev/null || true; rm -f "$log"' EXIT
sleep 6
members=$(pgrep -f "etcd --name=m")
ticks=$(getconf CLK_TCK)
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s}'; }
cpu() { awk '{print $14 + $15}' /proc/"$1"/stat; }
appended() {
    curl -s "$1/metrics" | awk '/^pgwarden_store_log_entries_appended_total/ {print $2}'
}
declare -A url cpu0 cs0 app0
for pid in $members; do
    url[$pid]=$(tr '\0' '\n' </proc/"$pid"/cmdline | grep listen-client | cut -d= -f2)
    cpu0[$pid]=$(cpu "$pid"); cs0[$pid]=$(switches "$pid"); app0[$pid]=$(appended "${url[$pid]}")
done
sleep 5
for pid in $members; do
    python3 -c "n = max(1, $(appended "${url[$pid]}") - ${app0[$pid]}); \
print(f'member pid $pid: {($(cpu "$pid") - ${cpu0[$pid]}) * 1e6 / $ticks / n:.0f} us CPU per put, \
{($(switches "$pid") - ${cs0[$pid]}) / n:.1f} context switches per put, {n:.0f} entries')"
done
