#!/usr/bin/env bash
# Throughput with auth, rate limits, metrics and the access log on, against
# the bare proxy, in the same run: two gateways on the same upstream, one
# after the other, each pinned to core 0 (upstream + load generator on core 1).
#
#   bare:  no virtual keys (open on loopback), access log off, RUST_LOG=warn
#   keyed: a virtual key with RPM, TPM and concurrency limits high enough
#          never to refuse, metrics on (always), access log on at info to a file
#
# Env: SECONDS_PER_RUN (default 10), CONC_THROUGHPUT (default 64), ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECONDS_PER_RUN:-10}
CONC=${CONC_THROUGHPUT:-64}
ROUNDS=${ROUNDS:-3}
OUT=bench/out/keys
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

config() { # name port access
  cat > "$OUT/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
[log]
access = $3
[ledger]
path = "$OUT/$1.sqlite"
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
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

rm -f "$OUT"/*.sqlite* "$OUT"/*.log
P_BARE=$(free_port); config bare "$P_BARE" false
P_KEY=$(free_port); config keyed "$P_KEY" "${KEYED_ACCESS_LOG:-true}"
KEY=$("$BIN/switchyard" keys create --name bench --rpm 1000000000 --tpm 1000000000000 --max-concurrency 100000 \
  --ledger "$OUT/keyed.sqlite" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

start() { # name port level  (not in a subshell: the cleanup trap must see the pid)
  RUST_LOG=$3 taskset -c "$GW_CORE" "$BIN/switchyard" serve --config "$OUT/$1.toml" > "$OUT/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/ready" >/dev/null && break; sleep 0.1; done
}
load() { # port key
  taskset -c "$AUX_CORE" "$EX/loadgen" --url "http://127.0.0.1:$1/v1/chat/completions" --concurrency "$CONC" \
    --seconds "$SECS" --warmup 1 --key "$2"
}

start bare "$P_BARE" warn
start keyed "$P_KEY" info
# A wrong key must be refused, the right one accepted: the keyed gateway really checks.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_KEY/v1/chat/completions" \
  -H 'authorization: Bearer sk-sy-wrong' -H 'content-type: application/json' \
  -d '{"model":"bench","messages":[{"role":"user","content":"hi"}]}')
[ "$code" = 401 ] || { echo "expected 401 for a wrong key, got $code" >&2; exit 1; }

bare=(); keyed=()
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS: bare, keyed..." >&2
  B=$(load "$P_BARE" none); K=$(load "$P_KEY" "$KEY")
  bare+=("$(field "$B" rps)"); keyed+=("$(field "$K" rps)")
  [ "$(field "$K" errors)" = 0 ] || { echo "errors through the keyed gateway: $K" >&2; exit 1; }
done
METRIC=$(curl -s "http://127.0.0.1:$P_KEY/metrics" | grep -c '^switchyard_requests_total' || true)
ACCESS=$(grep -c 'switchyard::access' "$OUT/keyed.log" || true)

python3 - "$CONC" "$SECS" "${bare[*]}" "${keyed[*]}" "$METRIC" "$ACCESS" <<'PY' | tee "$OUT/latest.md"
import statistics, sys
conc, secs, bare, keyed, metric, access = sys.argv[1:]
bare = [float(x) for x in bare.split()]
keyed = [float(x) for x in keyed.split()]
mb, mk = statistics.median(bare), statistics.median(keyed)
print(f"| rounds | bare proxy req/s (median) | with key + RPM/TPM/concurrency limits + metrics + access log req/s (median) | ratio |")
print(f"|---|---|---|---|")
print(f"| {len(bare)} x {secs}s, concurrency {conc} | {mb:,.0f} ({', '.join(f'{x:,.0f}' for x in bare)}) | {mk:,.0f} ({', '.join(f'{x:,.0f}' for x in keyed)}) | **{mk/mb:.2f}** |")
print(f"\nmetric series on the keyed gateway: {metric}; access log lines written: {access}")
PY
