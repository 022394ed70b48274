#!/usr/bin/env bash
# Failover benchmark: one of two deployments fails every request (HTTP 503).
# Once its circuit breaker is open, throughput and added latency through
# Switchyard should stay within 10% of the all-healthy figures, with zero
# client-visible errors. Both are measured in the same run, same gateway:
#   model "healthy"  -> one healthy deployment
#   model "degraded" -> a broken deployment and the healthy one, weight 1:1
# Env: SECONDS_PER_RUN (default 10), CONC_THROUGHPUT (default 64), ROUNDS (default 3).
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

taskset -c "$AUX_CORE" "$EX/bench_upstream" 127.0.0.1:0 > "$OUT/good.addr" &
pids+=($!)
taskset -c "$AUX_CORE" "$EX/bench_upstream" 127.0.0.1:0 --status 503 > "$OUT/broken.addr" &
pids+=($!)
for _ in $(seq 50); do [ -s "$OUT/good.addr" ] && [ -s "$OUT/broken.addr" ] && break; sleep 0.1; done
GOOD=$(head -1 "$OUT/good.addr")
BROKEN=$(head -1 "$OUT/broken.addr")
GW_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$OUT/failover.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
admin_key = "bench-admin"
[ledger]
path = "$OUT/failover-ledger.sqlite"
[providers.good]
type = "openai"
base_url = "http://$GOOD/v1"
[providers.broken]
type = "openai"
base_url = "http://$BROKEN/v1"
[models.healthy]
provider = "good"
model = "bench-model"
price = { input = 1.0, output = 2.0 }
[models.degraded]
deployments = [{ provider = "broken", model = "bench-model" }, { provider = "good", model = "bench-model" }]
price = { input = 1.0, output = 2.0 }
TOML
rm -f "$OUT"/failover-ledger.sqlite*
RUST_LOG=warn taskset -c "$GW_CORE" "$BIN/switchyard" serve --config "$OUT/failover.toml" > "$OUT/failover-gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW_PORT/ready" >/dev/null && break; sleep 0.1; done
VIA="http://127.0.0.1:$GW_PORT/v1/chat/completions"
DIRECT="http://$GOOD/v1/chat/completions"
load() { taskset -c "$AUX_CORE" "$EX/loadgen" --url "$1" --concurrency "$2" --seconds "$SECS" --warmup 1 --model "$3"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

echo "opening the broken deployment's breaker..." >&2
for _ in $(seq 20); do curl -s -o /dev/null "$VIA" -H 'content-type: application/json' \
  -d '{"model":"degraded","messages":[{"role":"user","content":"hi"}]}'; done
STATE=$(curl -s -H 'authorization: Bearer bench-admin' "http://127.0.0.1:$GW_PORT/admin/health" \
  | python3 -c "import json,sys; print({d['provider']: d['state'] for d in json.load(sys.stdin)['data']}['broken'])")

# The machine is noisy: alternate healthy and degraded runs and compare medians.
ROUNDS=${ROUNDS:-3}
echo "running: $ROUNDS alternating rounds at concurrency 1 and $CONC..." >&2
D1=$(load "$DIRECT" 1 bench)
H1S=(); F1S=(); HTS=(); FTS=(); HERR=0; FERR=0
for r in $(seq "$ROUNDS"); do
  H=$(load "$VIA" 1 healthy); F=$(load "$VIA" 1 degraded)
  H1S+=("$(field "$H" p50_us)"); F1S+=("$(field "$F" p50_us)")
  HERR=$((HERR + $(field "$H" errors))); FERR=$((FERR + $(field "$F" errors)))
  H=$(load "$VIA" "$CONC" healthy); F=$(load "$VIA" "$CONC" degraded)
  HTS+=("$(field "$H" rps)"); FTS+=("$(field "$F" rps)")
  HERR=$((HERR + $(field "$H" errors))); FERR=$((FERR + $(field "$F" errors)))
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
py() { python3 -c "$1"; }
H_P50=$(median "${H1S[@]}"); F_P50=$(median "${F1S[@]}")
H_RPS=$(median "${HTS[@]}"); F_RPS=$(median "${FTS[@]}")
D_P50=$(field "$D1" p50_us)
RATIO=$(py "print(f'{$F_RPS/$H_RPS:.3f}')")
LAT_RATIO=$(py "print(f'{($F_P50-$D_P50)/max(1,$H_P50-$D_P50):.3f}')")
REPORT=$(cat <<MD
### Failover run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores; broken deployment breaker: **$STATE**
Medians of $ROUNDS alternating rounds of ${SECS}s (healthy, degraded, healthy, ...).

| measure | all healthy | one of two deployments failing | ratio |
|---|---|---|---|
| added latency p50 vs direct ($D_P50 us), concurrency 1 | $((H_P50 - D_P50)) us | $((F_P50 - D_P50)) us | $LAT_RATIO |
| throughput, concurrency $CONC | $H_RPS req/s | $F_RPS req/s | **$RATIO** |
| client errors, all runs | $HERR | **$FERR** | |

rounds: healthy rps ${HTS[*]}; degraded rps ${FTS[*]}; healthy p50 ${H1S[*]} us; degraded p50 ${F1S[*]} us
MD
)
echo "$REPORT" | tee "$OUT/failover.md"
