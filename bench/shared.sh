#!/usr/bin/env bash
# What shared state costs: the same keyed gateway (a key with RPM, TPM and a
# concurrency cap, plus a daily budget) with its limits in memory and with them
# in Redis ([state] redis_url), in the same run, against the bench upstream.
# Each gateway pinned to core 0 (upstream + load generator on core 1).
#
# Reports per variant: p50 / p99 latency at concurrency 1 and req/s at
# concurrency CONC, and the Redis variant's ratios to the in-memory one.
# Env: REDIS_URL (default redis://127.0.0.1:6379), SECONDS_PER_RUN (default 10),
#      CONC_THROUGHPUT (default 32), ROUNDS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
SECS=${SECONDS_PER_RUN:-10}
CONC=${CONC_THROUGHPUT:-32}
ROUNDS=${ROUNDS:-3}
OUT=bench/out/shared
mkdir -p "$OUT"
cargo build --release --quiet --bin switchyard --example bench_upstream --example loadgen
. bench/lib.sh
redis-cli -u "$REDIS" ping >/dev/null || { echo "Redis at $REDIS does not answer" >&2; exit 1; }

upstream "$OUT/upstream.addr"
UP=$(head -1 "$OUT/upstream.addr")
PREFIX="sy_bench_$$"

config() { # name port state-section
  gateway_config "$1" "$2" "$UP" "[budgets]
daily = 1000000.0
$3"
}

rm -f "$OUT"/*.sqlite* "$OUT"/*.log
P_MEM=$(free_port); config memory "$P_MEM" ""
P_RED=$(free_port); config redis "$P_RED" "[state]
redis_url = \"$REDIS\"
key_prefix = \"$PREFIX\"
timeout_ms = 1000"
key() { "$BIN/switchyard" keys create --name bench --rpm 1000000000 --tpm 1000000000000 --max-concurrency 100000 \
  --ledger "$OUT/$1.sqlite" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'; }
K_MEM=$(key memory); K_RED=$(key redis)

load() { # port key concurrency
  taskset -c "$AUX_CORE" "$EX/loadgen" --url "http://127.0.0.1:$1/v1/chat/completions" --concurrency "$3" \
    --seconds "$SECS" --warmup 1 --key "$2" --model bench
}
start memory "$P_MEM"
start redis "$P_RED"
curl -s "http://127.0.0.1:$P_RED/metrics" | grep -q 'switchyard_state_backend_up{backend="redis"} 1' \
  || { echo "the Redis gateway is not on Redis" >&2; exit 1; }

res=()
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS..." >&2
  for v in "memory $P_MEM $K_MEM" "redis $P_RED $K_RED"; do
    set -- $v
    L=$(load "$2" "$3" 1); T=$(load "$2" "$3" "$CONC")
    [ "$(field "$L" errors)" = 0 ] && [ "$(field "$T" errors)" = 0 ] || { echo "errors: $L $T" >&2; exit 1; }
    res+=("$1 $(field "$L" p50_us) $(field "$L" p99_us) $(field "$T" rps)")
  done
done
KEYS=$(redis-cli -u "$REDIS" --scan --pattern "{$PREFIX}:*" | wc -l)
redis-cli -u "$REDIS" --scan --pattern "{$PREFIX}:*" | xargs -r redis-cli -u "$REDIS" del >/dev/null

python3 - "$CONC" "$SECS" "$KEYS" "${res[@]}" <<'PY' | tee "$OUT/latest.md"
import statistics, sys
conc, secs, keys, *rows = sys.argv[1:]
d = {}
for r in rows:
    name, p50, p99, rps = r.split()
    d.setdefault(name, []).append((float(p50), float(p99), float(rps)))
med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in d.items()}
print(f"| limits and budget in | p50 at c=1 (us) | p99 at c=1 (us) | req/s at c={conc} |")
print("|---|---|---|---|")
for k in ("memory", "redis"):
    p50, p99, rps = med[k]
    print(f"| {k} | {p50:,.0f} | {p99:,.0f} | {rps:,.0f} |")
m, r = med["memory"], med["redis"]
print(f"\nRedis vs memory, medians of {len(d['memory'])} rounds x {secs}s: p50 +{r[0]-m[0]:,.0f} us "
      f"({r[0]/m[0]:.2f}x), req/s {r[2]/m[2]:.2f}x; Redis keys used: {keys}")
PY
