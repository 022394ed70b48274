#!/usr/bin/env bash
# What the response cache and OpenTelemetry export cost (or save), in the same
# run against the bench upstream: direct calls to the upstream, the bare
# gateway, the gateway with [cache] exact = true (every request after the first
# is a hit), and the gateway exporting OTLP traces to a collector (a second
# bench upstream answering 200). Gateways pinned to core 0, upstream, collector
# and load generator on core 1.
#
# Reports per variant p50 / p99 at concurrency 1 (and what it adds over the
# direct call) and req/s at concurrency CONC.
# Env: SECONDS_PER_RUN (default 10), CONC_THROUGHPUT (default 32), ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECONDS_PER_RUN:-10}
CONC=${CONC_THROUGHPUT:-32}
ROUNDS=${ROUNDS:-3}
OUT=bench/out/features
mkdir -p "$OUT"
cargo build --release --quiet --bin switchyard --example bench_upstream --example loadgen
. bench/lib.sh

upstream "$OUT/upstream.addr"; UP=$(head -1 "$OUT/upstream.addr")
upstream "$OUT/collector.addr"; COLLECTOR=$(head -1 "$OUT/collector.addr")

config() { # name port extra
  gateway_config "$1" "$2" "$UP" "$3"
}
load() { # url concurrency
  taskset -c "$AUX_CORE" "$EX/loadgen" --url "$1" --concurrency "$2" --seconds "$SECS" --warmup 1 --model bench
}

rm -f "$OUT"/*.sqlite* "$OUT"/*.log
P_BARE=$(free_port); config bare "$P_BARE" ""
# cache_temperature: the load generator's request has temperature 0.2 (without
# it every request is a bypass, not a hit).
P_CACHE=$(free_port); config cache "$P_CACHE" "[cache]
exact = true
ttl_secs = 3600
cache_temperature = true"
P_OTEL=$(free_port); config otel "$P_OTEL" "[telemetry]
otlp_endpoint = \"http://$COLLECTOR\""
start bare "$P_BARE"; start cache "$P_CACHE"; start otel "$P_OTEL"
h=$(curl -s -D - -o /dev/null "http://127.0.0.1:$P_CACHE/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"bench","messages":[{"role":"user","content":"hi"}]}' | tr -d '\r' | grep -i '^x-switchyard-cache' || true)
echo "cache gateway, first request: $h" >&2

res=()
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS..." >&2
  for v in "direct http://$UP/v1/chat/completions" "bare http://127.0.0.1:$P_BARE/v1/chat/completions" \
           "cache http://127.0.0.1:$P_CACHE/v1/chat/completions" "otel http://127.0.0.1:$P_OTEL/v1/chat/completions"; do
    set -- $v
    L=$(load "$2" 1); T=$(load "$2" "$CONC")
    [ "$(field "$L" errors)" = 0 ] && [ "$(field "$T" errors)" = 0 ] || { echo "errors: $L $T" >&2; exit 1; }
    res+=("$1 $(field "$L" p50_us) $(field "$L" p99_us) $(field "$T" rps)")
  done
done
HITS=$(curl -s "http://127.0.0.1:$P_CACHE/metrics" | grep -c . || true)
SPANS=$(grep -c . "$OUT/otel.log" || true)

python3 - "$CONC" "$SECS" "${res[@]}" <<'PY' | tee "$OUT/latest.md"
import statistics, sys
conc, secs, *rows = sys.argv[1:]
d = {}
for r in rows:
    name, p50, p99, rps = r.split()
    d.setdefault(name, []).append((float(p50), float(p99), float(rps)))
med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in d.items()}
direct = med["direct"]
print(f"| variant | p50 at c=1 (us) | added p50 over direct (us) | p99 at c=1 (us) | req/s at c={conc} | req/s / direct |")
print("|---|---|---|---|---|---|")
for k in ("direct", "bare", "cache", "otel"):
    p50, p99, rps = med[k]
    print(f"| {k} | {p50:,.0f} | {p50 - direct[0]:+,.0f} | {p99:,.0f} | {rps:,.0f} | {rps / direct[2]:.2f} |")
b, c, o = med["bare"], med["cache"], med["otel"]
print(f"\nmedians of {len(d['direct'])} rounds x {secs}s. cache hit vs bare: p50 {c[0]-b[0]:+,.0f} us, req/s {c[2]/b[2]:.2f}x; "
      f"OTLP export vs bare: p50 {o[0]-b[0]:+,.0f} us, req/s {o[2]/b[2]:.2f}x")
PY
