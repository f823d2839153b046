#!/usr/bin/env bash
# Restart with 1 M messages in inboxes (docs/STORAGE.md): a node takes
# N messages over MIAP/TCP from the load generator, is killed with kill -9
# while a second run is in flight, and is timed until /healthz answers;
# then once more after an ordered stop. Needs `cargo build --release`.
# Usage: benches/restart-1m.sh [MESSAGES]   (default 1000000; ~2 min)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
BIN=target/release/switchboard
D=$(mktemp -d)
trap 'kill $NODE 2>/dev/null || true; rm -rf "$D"' EXIT
export SWITCHBOARD_DATA__DIR=$D SWITCHBOARD_HTTP__LISTEN=127.0.0.1:18080 \
  SWITCHBOARD_MIAP__LISTEN=127.0.0.1:17490 SWITCHBOARD_LOG__LEVEL=info
start_node() { "$BIN" serve >>"$D/node.log" 2>&1 & NODE=$!; }
wait_up() { for _ in $(seq 6000); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && return; sleep 0.01; done; echo "node did not start" >&2; exit 1; }
bench() { "$BIN" bench --target tcp --connect 127.0.0.1:17490 --url http://127.0.0.1:18080 \
  --admin-token "$(cat "$D/admin.token")" --inflight 1024 --timeout-s 900 --messages "$1" 2>&1 | tail -1; }
start_node; wait_up
bench "$N"
echo "node RSS after the run: $(grep VmRSS /proc/$NODE/status)"
bench 20000 >/dev/null & LOAD=$!
sleep 1
kill -9 "$NODE"; wait "$NODE" 2>/dev/null || true
kill "$LOAD" 2>/dev/null || true; wait "$LOAD" 2>/dev/null || true
echo "database: $(du -sh "$D/db" | cut -f1), journal: $(du -sh "$D/db/journal" | cut -f1)"
t0=$(date +%s%N); start_node; wait_up; t1=$(date +%s%N)
echo "restart after kill -9: $(( (t1 - t0) / 1000000 )) ms"
echo "node RSS after the restart: $(grep VmRSS /proc/$NODE/status)"
kill "$NODE"; wait "$NODE" || true
t0=$(date +%s%N); start_node; wait_up; t1=$(date +%s%N)
echo "restart after an ordered stop: $(( (t1 - t0) / 1000000 )) ms"
grep -a "replayed the journal" "$D/node.log" | sed 's/\x1b\[[0-9;]*m//g' || true
