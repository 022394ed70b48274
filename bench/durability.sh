#!/usr/bin/env bash
# Ledger durability cost: the same gateway, load and upstream with
# `[ledger] durability = "batch"` (default) and `"sync"` (group commit with
# fsync; each response waits until its row is on disk). Prints a Markdown
# table (and saves it to bench/out/durability.md).
#
# Layout as bench/run.sh: gateway on core 0, upstream + load generator on core 1.
# Env: SECONDS_PER_RUN (default 10), CONC_THROUGHPUT (default 64).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECONDS_PER_RUN:-10}
CONC=${CONC_THROUGHPUT:-64}
OUT=bench/out
mkdir -p "$OUT"
cargo build --release --quiet --bin switchyard --example bench_upstream --example loadgen
BIN=target/release
EX=target/release/examples
GW_CORE=0
AUX_CORE=1
if [ "$(nproc)" -lt 2 ]; then AUX_CORE=0; fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

taskset -c "$AUX_CORE" "$EX/bench_upstream" 127.0.0.1:0 > "$OUT/upstream.addr" &
pids+=($!)
for _ in $(seq 50); do [ -s "$OUT/upstream.addr" ] && break; sleep 0.1; done
UP=$(head -1 "$OUT/upstream.addr")
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

run_mode() { # durability -> "c1_json|conc_json|rows"
  local mode=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -f "$OUT"/durability-"$mode".sqlite*
  cat > "$OUT/durability-$mode.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[log]
access = false
[ledger]
path = "$OUT/durability-$mode.sqlite"
durability = "$mode"
[providers.up]
type = "openai"
base_url = "http://$UP/v1"
api_key = "sk-bench-upstream"
models = ["*"]
[models.bench]
provider = "up"
model = "bench-model"
price = { input = 1.0, output = 2.0 }
TOML
  RUST_LOG=warn taskset -c "$GW_CORE" "$BIN/switchyard" serve --config "$OUT/durability-$mode.toml" > "$OUT/durability-$mode.log" 2>&1 &
  local gw=$!
  pids+=($gw)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  local url="http://127.0.0.1:$port/v1/chat/completions"
  local c1 ct
  c1=$(taskset -c "$AUX_CORE" "$EX/loadgen" --url "$url" --concurrency 1 --seconds "$SECS" --warmup 1)
  ct=$(taskset -c "$AUX_CORE" "$EX/loadgen" --url "$url" --concurrency "$CONC" --seconds "$SECS" --warmup 1)
  kill -TERM "$gw"; wait "$gw" 2>/dev/null || true
  local rows
  rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from ledger').fetchone()[0])" "$OUT/durability-$mode.sqlite")
  echo "$c1|$ct|$rows"
}

# ORDER=sync-first runs sync before batch (to check the order does not decide the figures).
if [ "${ORDER:-}" = "sync-first" ]; then
  echo "running: sync durability..." >&2
  IFS='|' read -r S1 ST SROWS <<< "$(run_mode sync)"
  echo "running: batch durability..." >&2
  IFS='|' read -r B1 BT BROWS <<< "$(run_mode batch)"
else
  echo "running: batch durability..." >&2
  IFS='|' read -r B1 BT BROWS <<< "$(run_mode batch)"
  echo "running: sync durability..." >&2
  IFS='|' read -r S1 ST SROWS <<< "$(run_mode sync)"
fi

REPORT=$(cat <<MD
### Ledger durability, run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(df -T "$OUT" | awk 'NR==2 {print $2}') at bench/out)
gateway pinned to core $GW_CORE; upstream + load generator on core $AUX_CORE; ${SECS}s per run after 1s warm-up; order: ${ORDER:-batch-first}.

| measure | durability = "batch" | durability = "sync" |
|---|---|---|
| latency p50 / p99, concurrency 1 | $(field "$B1" p50_us) / $(field "$B1" p99_us) us | $(field "$S1" p50_us) / $(field "$S1" p99_us) us |
| throughput, concurrency $CONC | $(field "$BT" rps) req/s | $(field "$ST" rps) req/s |
| p50 / p99 at concurrency $CONC | $(field "$BT" p50_us) / $(field "$BT" p99_us) us | $(field "$ST" p50_us) / $(field "$ST" p99_us) us |
| errors at concurrency $CONC | $(field "$BT" errors) | $(field "$ST" errors) |
| ledger rows after SIGTERM | $BROWS | $SROWS |
MD
)
echo "$REPORT" | tee "$OUT/durability.md"
