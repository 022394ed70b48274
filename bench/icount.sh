#!/usr/bin/env bash
# Instructions per request under valgrind's callgrind: a figure that does not
# depend on machine load (the same binary and inputs give the same count).
#
# For each case the gateway runs under callgrind; a keep-alive client sends
# WARMUP requests, the counters are zeroed with callgrind_control, N more
# requests are sent, the counters are dumped, and the dump's total
# instructions (every thread: tokio workers, the ledger writer, the logger)
# are divided by N.
#
# Cases: pass-through (one model, no keys, access log off) and full features
# (virtual key with limits, model "auto" on a two-tier route, a global daily
# budget, access log on at info to a file), each non-stream and stream; and
# cache-hit: pass-through with [cache] exact = true, every measured request a
# hit of the response cache; full-redis (not in the default list): full
# features with the limits and budget on the Redis in REDIS_URL ([state]),
# the gateway's side of shared state (Redis's own work is not counted here).
#
# CASES (default "passthrough passthrough-stream full full-stream cache-hit")
# selects cases.
#
# Env: N (default 400), WARMUP (default 100), CHUNKS (stream content chunks,
# default 20), REDIS_URL (default redis://127.0.0.1:6379), SWITCHYARD_BIN (measure another build, e.g. main's, against
# this tree's bench upstream; LABEL names its output directory).
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-400}
WARMUP=${WARMUP:-100}
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
CHUNKS=${CHUNKS:-20}
OUT=bench/out/icount${LABEL:+-$LABEL}
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
if [ -n "${SWITCHYARD_BIN:-}" ]; then
  cargo build --release --quiet --example bench_upstream
  SW=$SWITCHYARD_BIN
else
  cargo build --release --quiet --bin switchyard --example bench_upstream
  SW=target/release/switchyard
fi
EX=target/release/examples
GW_CORE=0
AUX_CORE=1
if [ "$(nproc)" -lt 2 ]; then AUX_CORE=0; fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

taskset -c "$AUX_CORE" "$EX/bench_upstream" 127.0.0.1:0 --chunks "$CHUNKS" > "$OUT/upstream.addr" &
pids+=($!)
for _ in $(seq 600); do [ -s "$OUT/upstream.addr" ] && break; sleep 0.1; done
UP=$(head -1 "$OUT/upstream.addr")
# (A count over failed requests would be meaningless: stop instead.)
[ -n "$UP" ] || { echo "the bench upstream did not start within 60 s" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

config() { # name port full(0/1)
  {
    echo "[server]"
    echo "listen = \"127.0.0.1:$2\""
    echo "[log]"
    if [ "$3" = 1 ] || [ "$3" = redis ]; then echo "access = true"; else echo "access = false"; fi
    echo "[ledger]"
    echo "path = \"$OUT/$1.sqlite\""
    cat <<TOML
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
    if [ "$3" = cache ]; then
      printf '[cache]\nexact = true\nttl_secs = 3600\n'
    fi
    if [ "$3" = 1 ] || [ "$3" = redis ]; then
      cat <<TOML
tier = "frontier"
[models.bench-small]
provider = "up"
model = "bench-model"
price = { input = 0.1, output = 0.2 }
tier = "economy"
[budgets]
daily = 1000000.0
TOML
    fi
    if [ "$3" = redis ]; then
      printf '[state]\nredis_url = "%s"\nkey_prefix = "sy_icount_%s"\ntimeout_ms = 5000\n' "$REDIS" "$$"
    fi
  } > "$OUT/$1.toml.tmp"
  mv "$OUT/$1.toml.tmp" "$OUT/$1.toml"
}

# client PORT COUNT STREAM(0/1) KEY MODEL: COUNT sequential requests on one keep-alive connection.
client() {
  python3 - "$@" <<'PY'
import http.client, json, sys
port, count, stream, key, model = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5]
body = {"model": model, "messages": [{"role": "user", "content": "Say hello to the benchmark, briefly."}]}
if stream:
    body["stream"] = True
data = json.dumps(body).encode()
headers = {"content-type": "application/json"}
if key != "none":
    headers["authorization"] = "Bearer " + key
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for _ in range(count):
    conn.request("POST", "/v1/chat/completions", body=data, headers=headers)
    r = conn.getresponse()
    payload = r.read()
    if r.status != 200:
        sys.exit(f"status {r.status}: {payload[:300]!r}")
PY
}

run_case() { # name full stream
  local name=$1 full=$2 stream=$3 port key model
  port=$(free_port)
  config "$name" "$port" "$full"
  rm -f "$OUT/$name".sqlite* "$OUT/$name".callgrind* "$OUT/$name.log"
  key=none
  model=bench
  if [ "$full" = 1 ] || [ "$full" = redis ]; then
    key=$("$SW" keys create --name bench --rpm 100000000 --tpm 1000000000 --max-concurrency 1000 \
      --ledger "$OUT/$name.sqlite" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
    model=auto
  fi
  RUST_LOG=info taskset -c "$GW_CORE" valgrind --tool=callgrind \
    --callgrind-out-file="$OUT/$name.callgrind" "$SW" serve --config "$OUT/$name.toml" \
    > "$OUT/$name.log" 2>&1 &
  local vg=$!
  pids+=($vg)
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null || { echo "$name: gateway not ready, see $OUT/$name.log" >&2; exit 1; }
  client "$port" "$WARMUP" "$stream" "$key" "$model" || { echo "$name: warm-up requests failed" >&2; exit 1; }
  sleep 1 # let the ledger writer flush the warm-up rows before counting
  callgrind_control -z "$vg" >/dev/null # count from here
  client "$port" "$N" "$stream" "$key" "$model" || { echo "$name: measured requests failed" >&2; exit 1; }
  sleep 1 # the measured requests' ledger rows are written inside the window
  callgrind_control -d "$vg" >/dev/null # writes $name.callgrind.1: exactly the window
  kill -INT "$vg" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
  local total
  total=$(awk '/^summary:/ {s += $2} END {print s+0}' "$OUT/$name.callgrind.1")
  echo "$name $total"
}

CASES=${CASES:-passthrough passthrough-stream full full-stream cache-hit}
results=()
for c in $CASES; do
  case $c in
    passthrough) results+=("$(run_case passthrough 0 0)") ;;
    passthrough-stream) results+=("$(run_case passthrough-stream 0 1)") ;;
    full) results+=("$(run_case full 1 0)") ;;
    full-stream) results+=("$(run_case full-stream 1 1)") ;;
    full-redis) results+=("$(run_case full-redis redis 0)") ;;
    cache-hit) results+=("$(run_case cache-hit cache 0)") ;;
    *) echo "unknown case $c" >&2; exit 1 ;;
  esac
done

python3 - "$N" "$CHUNKS" "${results[@]}" <<'PY' | tee "$OUT/latest.md"
import sys
n, chunks = int(sys.argv[1]), sys.argv[2]
print(f"| case | instructions per request (callgrind, {n} keep-alive requests after warm-up) |")
print("|---|---|")
for line in sys.argv[3:]:
    name, total = line.split()
    label = name + (f" ({chunks} chunks)" if "stream" in name else "")
    print(f"| {label} | {int(total) // n:,} |")
PY
