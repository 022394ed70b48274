#!/usr/bin/env bash
# Switchyard proxy benchmark: direct calls vs calls through the gateway, in
# the same run, on loopback. Prints a Markdown report (and saves it to
# bench/out/latest.md). See bench/RESULTS.md for recorded figures.
#
# Layout on a 2-core machine: the gateway is pinned to core 0; the fake
# upstream and the load generator share core 1. "Direct" runs use the same
# upstream and load generator without the gateway.
#
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

GW_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$OUT/bench.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
[ledger]
path = "$OUT/ledger.sqlite"
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
rm -f "$OUT"/ledger.sqlite*
RUST_LOG=warn taskset -c "$GW_CORE" "$BIN/switchyard" serve --config "$OUT/bench.toml" > "$OUT/gateway.log" 2>&1 &
GW_PID=$!
pids+=($GW_PID)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW_PORT/ready" >/dev/null && break; sleep 0.1; done

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
RSS_IDLE=$(rss_kb $GW_PID)

load() { # url concurrency [--stream]
  taskset -c "$AUX_CORE" "$EX/loadgen" --url "$1" --concurrency "$2" --seconds "$SECS" --warmup 1 ${3:-}
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

DIRECT="http://$UP/v1/chat/completions"
VIA="http://127.0.0.1:$GW_PORT/v1/chat/completions"

echo "running: latency at concurrency 1 (direct, gateway)..." >&2
D1=$(load "$DIRECT" 1); G1=$(load "$VIA" 1)
echo "running: streaming time to first chunk (direct, gateway)..." >&2
DS=$(load "$DIRECT" 1 --stream); GS=$(load "$VIA" 1 --stream)
echo "running: throughput at concurrency $CONC (direct, gateway on one core)..." >&2
DT=$(load "$DIRECT" "$CONC"); GT=$(load "$VIA" "$CONC")
RSS_LOAD=$(hwm_kb $GW_PID)

sleep 0.5
ROWS=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from ledger').fetchone()[0])" "$OUT/ledger.sqlite" 2>/dev/null || echo "?")

py() { python3 -c "$1"; }
ADD_P50=$(( $(field "$G1" p50_us) - $(field "$D1" p50_us) ))
ADD_P99=$(( $(field "$G1" p99_us) - $(field "$D1" p99_us) ))
ADD_TTFB=$(( $(field "$GS" ttfb_p50_us) - $(field "$DS" ttfb_p50_us) ))
ADD_TTFB99=$(( $(field "$GS" ttfb_p99_us) - $(field "$DS" ttfb_p99_us) ))
ERR_PCT=$(py "ok=$(field "$GT" ok); e=$(field "$GT" errors); print(f'{100*e/max(1,ok+e):.3f}')")
RATIO=$(py "print(f'{$(field "$GT" rps)/$(field "$DT" rps):.2f}')")

REPORT=$(cat <<MD
### Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(awk '/model name/ {sub(/.*: /,""); print; exit}' /proc/cpuinfo)
gateway pinned to core $GW_CORE; upstream + load generator on core $AUX_CORE; ${SECS}s per run after 1s warm-up.

| measure | direct | through Switchyard | added |
|---|---|---|---|
| latency p50, concurrency 1 | $(field "$D1" p50_us) us | $(field "$G1" p50_us) us | **$ADD_P50 us** |
| latency p99, concurrency 1 | $(field "$D1" p99_us) us | $(field "$G1" p99_us) us | **$ADD_P99 us** |
| stream time to first chunk p50 | $(field "$DS" ttfb_p50_us) us | $(field "$GS" ttfb_p50_us) us | **$ADD_TTFB us** |
| stream time to first chunk p99 | $(field "$DS" ttfb_p99_us) us | $(field "$GS" ttfb_p99_us) us | $ADD_TTFB99 us |
| throughput, concurrency $CONC | $(field "$DT" rps) req/s | **$(field "$GT" rps) req/s** (errors $ERR_PCT%) | ratio $RATIO |
| gateway p50 / p99 at concurrency $CONC | $(field "$DT" p50_us) / $(field "$DT" p99_us) us | $(field "$GT" p50_us) / $(field "$GT" p99_us) us | |

Gateway resident memory: idle $((RSS_IDLE / 1024)) MiB, peak under load $((RSS_LOAD / 1024)) MiB. Ledger rows written: $ROWS.
MD
)
echo "$REPORT" | tee "$OUT/latest.md"
printf '%s\n' "$D1" "$G1" "$DS" "$GS" "$DT" "$GT" > "$OUT/raw.jsonl"
