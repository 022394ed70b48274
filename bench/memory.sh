#!/usr/bin/env bash
# Memory under big request bodies (docs/reliability.md, "Memory"): resident
# memory idle, the peak one request of each kind adds, the peak of 8 at once,
# and resident memory after repeated bursts (does it come back?).
# Prints a Markdown report and saves it to bench/out/memory/latest.md.
#
# Env: SWITCHYARD_BIN (measure another build, e.g. an older binary; default:
# build and use target/release/switchyard), PASSES (default 3), CONC (default 8).
set -euo pipefail
cd "$(dirname "$0")/.."
PASSES=${PASSES:-3}
CONC=${CONC:-8}
OUT=bench/out/memory
mkdir -p "$OUT"
if [ -z "${SWITCHYARD_BIN:-}" ]; then
  cargo build --release --quiet --bin switchyard --example bench_upstream
  BIN=target/release/switchyard
else
  BIN=$SWITCHYARD_BIN
  [ -x target/release/examples/bench_upstream ] || cargo build --release --quiet --example bench_upstream
fi
UPSTREAM=target/release/examples/bench_upstream

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Request bodies: each a valid chat request to model "bench".
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
msgs = [{"role": "user", "content": "hi"}]
def write(name, body):
    with open(f"{out}/{name}.json", "w") as f:
        json.dump(body, f, separators=(",", ":"))
# 4 MB of small numbers in a pass-through field: ~2M JSON values (refused above the value cap).
write("small", {"model": "bench", "messages": msgs})
write("array4m", {"model": "bench", "messages": msgs, "metadata_blob": [1] * 2_000_000})
# Just under the cap of 250,000 values.
write("array240k", {"model": "bench", "messages": msgs, "metadata_blob": [1] * 240_000})
# Many content parts (60,000 parts, 180,000 values, ~2.5 MB).
write("parts", {"model": "bench", "messages": [{"role": "user", "content": [{"type": "text", "text": "word "} for _ in range(60_000)]}]})
# One 4 MB string.
write("text4m", {"model": "bench", "messages": [{"role": "user", "content": "lorem ipsum " * 350_000}]})
# Near the 10 MiB body limit.
write("text9m", {"model": "bench", "messages": [{"role": "user", "content": "lorem ipsum " * 800_000}]})
PY
KINDS="array4m array240k parts text4m text9m"

taskset -c 1 "$UPSTREAM" 127.0.0.1:0 > "$OUT/upstream.addr" &
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
GW=
URL="http://127.0.0.1:$GW_PORT"
# (Re)starts the gateway: a fresh process per measurement, so memory an
# earlier request left in the allocator does not hide what the next costs.
start_gw() {
  if [ -n "$GW" ]; then kill "$GW" 2>/dev/null || true; wait "$GW" 2>/dev/null || true; fi
  GW=
  rm -f "$OUT"/ledger.sqlite*
  RUST_LOG=warn "$BIN" serve --config "$OUT/bench.toml" > "$OUT/gateway.log" 2>&1 &
  GW=$!
  for _ in $(seq 100); do curl -sf "$URL/ready" >/dev/null && break; sleep 0.1; done
  send small >/dev/null  # warm-up: pools, the ledger, the tokenizer
}

rss() { awk '/VmRSS/ {print $2}' "/proc/$GW/status"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$GW/status"; }
reset_hwm() { echo 5 > "/proc/$GW/clear_refs"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
send() { curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' --data-binary "@$OUT/$1.json" "$URL/v1/chat/completions"; }
# Resident memory once it stops falling (allocators return memory lazily), up to 10 s.
settled_rss() {
  local prev=0 cur
  for _ in $(seq 20); do
    sleep 0.5
    cur=$(rss)
    if [ "$prev" -ne 0 ] && [ "$cur" -ge "$prev" ]; then break; fi
    prev=$cur
  done
  rss
}

{
  trap '[ -n "$GW" ] && kill "$GW" 2>/dev/null' EXIT
  start_gw
  IDLE=$(settled_rss)
  echo "## Memory: ${LABEL:-$BIN}, $(date -u +%F)"
  echo
  echo "Idle RSS after one small request: $(mb "$IDLE") MB. Each row of the first table is a fresh gateway process."
  echo
  echo "| body | size | status | peak RSS added by one request (MB) |"
  echo "|---|---:|---:|---:|"
  for k in $KINDS; do
    start_gw
    base=$(settled_rss)
    reset_hwm
    code=$(send "$k")
    peak=$(hwm)
    size=$(stat -c %s "$OUT/$k.json")
    echo "| $k | $(mb $((size / 1024))) MB | $code | $(mb $((peak - base))) |"
  done
  start_gw
  base=$(settled_rss)
  reset_hwm
  codes=$(for _ in $(seq "$CONC"); do send array4m & done; wait)
  echo
  echo "$CONC x array4m at once: statuses $(echo "$codes" | fold -w3 | sort | uniq -c | awk '{printf "%s x %s ", $1, $2}'), peak RSS $(mb "$(hwm)") MB (from $(mb "$base"))."
  start_gw
  base=$(settled_rss)
  reset_hwm
  codes=$(for _ in $(seq "$CONC"); do send text9m & done; wait)
  echo "$CONC x text9m at once: statuses $(echo "$codes" | fold -w3 | sort | uniq -c | awk '{printf "%s x %s ", $1, $2}'), peak RSS $(mb "$(hwm)") MB (from $(mb "$base"))."
  echo
  start_gw
  IDLE=$(settled_rss)
  echo "Bursts on a fresh gateway, idle $(mb "$IDLE") MB:"
  echo
  echo "| pass ($CONC concurrent requests of every body) | RSS after (MB) | above idle (MB) |"
  echo "|---|---:|---:|"
  for p in $(seq "$PASSES"); do
    reqs=()
    for k in $KINDS; do
      for _ in $(seq "$CONC"); do send "$k" >/dev/null & reqs+=($!); done
    done
    wait "${reqs[@]}"
    after=$(settled_rss)
    echo "| $p | $(mb "$after") | $(mb $((after - IDLE))) |"
  done
  kill "$GW" 2>/dev/null || true
  wait "$GW" 2>/dev/null || true
} | tee "$OUT/latest.md"
