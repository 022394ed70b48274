#!/usr/bin/env bash
# What a response-cache hit adds over a direct call to the upstream, in the
# same run: direct calls to the bench upstream, the bare gateway (every request
# proxied), and the gateway with [cache] exact = true (every request after the
# first a hit), in memory and (with REDIS_URL) in Redis. Concurrency 1,
# non-stream; gateways pinned to core 0, upstream and load generator on core 1;
# variants interleaved round by round.
#
# Reports per variant the median over rounds of p50 / p99 and the p50 added
# over the direct call.
# Env: SECONDS_PER_RUN (default 5), ROUNDS (default 5), REDIS_URL (optional),
# SWITCHYARD_BIN (measure another build's cache hit as "cache-other").
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECONDS_PER_RUN:-5}
ROUNDS=${ROUNDS:-5}
OUT=bench/out/cache_hit
mkdir -p "$OUT"
cargo build --release --quiet --bin switchyard --example bench_upstream --example loadgen
. bench/lib.sh

upstream "$OUT/upstream.addr"; UP=$(head -1 "$OUT/upstream.addr")
load() { # url
  taskset -c "$AUX_CORE" "$EX/loadgen" --url "$1" --concurrency 1 --seconds "$SECS" --warmup 1 --model bench
}
rm -f "$OUT"/*.sqlite* "$OUT"/*.log
# cache_temperature: the load generator's request has temperature 0.2 (without
# it every request would be a bypass, not a hit).
CACHE="[cache]
exact = true
ttl_secs = 3600
cache_temperature = true"
variants=("direct http://$UP/v1/chat/completions")
P=$(free_port); gateway_config bare "$P" "$UP" ""; start bare "$P"
variants+=("bare http://127.0.0.1:$P/v1/chat/completions")
P=$(free_port); gateway_config cache "$P" "$UP" "$CACHE"; start cache "$P"
variants+=("cache http://127.0.0.1:$P/v1/chat/completions")
if [ -n "${SWITCHYARD_BIN:-}" ]; then
  P=$(free_port); gateway_config cache-other "$P" "$UP" "$CACHE"
  RUST_LOG=warn taskset -c "$GW_CORE" "$SWITCHYARD_BIN" serve --config "$OUT/cache-other.toml" > "$OUT/cache-other.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$P/ready" >/dev/null && break; sleep 0.1; done
  variants+=("cache-other http://127.0.0.1:$P/v1/chat/completions")
fi
if [ -n "${REDIS_URL:-}" ]; then
  P=$(free_port); gateway_config cache-redis "$P" "$UP" "$CACHE
store = \"redis\"
[state]
redis_url = \"$REDIS_URL\"
key_prefix = \"bench_cache_$$\""; start cache-redis "$P"
  variants+=("cache-redis http://127.0.0.1:$P/v1/chat/completions")
fi
for v in "${variants[@]}"; do
  set -- $v
  h=$(curl -s -D - -o /dev/null "$2" -H 'content-type: application/json' \
    -d '{"model":"bench","messages":[{"role":"user","content":"warm"}]}' | tr -d '\r' | grep -i '^x-switchyard-cache' || true)
  echo "$1: first request ${h:-(no cache header)}" >&2
done

res=()
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS..." >&2
  for v in "${variants[@]}"; do
    set -- $v
    L=$(load "$2")
    [ "$(field "$L" errors)" = 0 ] || { echo "errors: $L" >&2; exit 1; }
    res+=("$1 $(field "$L" p50_us) $(field "$L" p99_us)")
  done
done
for v in "${variants[@]}"; do
  set -- $v
  case $1 in cache*) echo "$1 x-switchyard-cache now: $(curl -s -D - -o /dev/null "$2" -H 'content-type: application/json' \
    -d '{"model":"bench","messages":[{"role":"user","content":"warm"}]}' | tr -d '\r' | grep -i '^x-switchyard-cache' || true)" >&2;; esac
done
sleep 1 # the ledger writer's last batch
for v in "${variants[@]}"; do
  set -- $v
  case $1 in cache*) python3 - "$OUT/$1.sqlite" "$1" <<'PY' >&2 ;;
import sqlite3, sys
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
n, h = c.execute("SELECT COUNT(*), COALESCE(SUM(cache_hit), 0) FROM ledger").fetchone()
print(f"{sys.argv[2]}: {h:,} of {n:,} ledger rows are cache hits")
PY
  esac
done
python3 - "$SECS" "${res[@]}" <<'PY' | tee "$OUT/latest.md"
import statistics, sys
secs, *rows = sys.argv[1:]
d = {}
for r in rows:
    name, p50, p99 = r.split()
    d.setdefault(name, []).append((float(p50), float(p99)))
med = {k: [statistics.median(x[i] for x in v) for i in range(2)] for k, v in d.items()}
direct = med["direct"][0]
print("| variant | p50 at c=1 (us) | added p50 over direct (us) | p99 at c=1 (us) |")
print("|---|---|---|---|")
for k, (p50, p99) in med.items():
    print(f"| {k} | {p50:,.0f} | {p50 - direct:+,.0f} | {p99:,.0f} |")
print(f"\nmedians of {len(d['direct'])} rounds x {secs}s, non-stream, concurrency 1")
PY
