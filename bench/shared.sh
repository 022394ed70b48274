#!/usr/bin/env bash
# What shared state costs: the same keyed gateway (a key with RPM, TPM and a
# concurrency cap, plus a daily budget) with its limits in memory and its ledger
# in SQLite ("memory"), with its limits in Redis and its ledger in PostgreSQL
# ("shared": [state] redis_url, [ledger] url; "redis_sqlite": Redis, the ledger
# in SQLite, to tell the two apart), and three such instances behind a
# round-robin client ("shared x3", one Redis, one PostgreSQL schema, one key), in
# the same run, against the bench upstream. Every gateway is pinned to core 0
# (upstream + load generator on core 1; Redis and PostgreSQL float).
#
# Reports per variant: p50 / p99 latency at concurrency 1 and req/s at
# concurrency CONC, the shared variants' ratios to the in-memory one, and the
# Redis calls each request made on its path (switchyard_state_calls_total).
# Env: REDIS_URL (default redis://127.0.0.1:6379), DATABASE_URL (default
#      postgres://postgres@127.0.0.1:5432/test), SECONDS_PER_RUN (default 10),
#      CONC_THROUGHPUT (default 32), ROUNDS (default 3), ADMIT_BATCH (`[state]
#      admit_batch` of the shared variants, default 64; 1: one call per admission).
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS=${REDIS_URL:-redis://127.0.0.1:6379}
PG=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
SECS=${SECONDS_PER_RUN:-10}
CONC=${CONC_THROUGHPUT:-32}
ROUNDS=${ROUNDS:-3}
OUT=bench/out/shared
mkdir -p "$OUT"
cargo build --release --quiet --bin switchyard --example bench_upstream --example loadgen
. bench/lib.sh
redis-cli -u "$REDIS" ping >/dev/null || { echo "Redis at $REDIS does not answer" >&2; exit 1; }
psql -q "$PG" -c 'SELECT 1' >/dev/null || { echo "PostgreSQL at $PG does not answer" >&2; exit 1; }

upstream "$OUT/upstream.addr"
UP=$(head -1 "$OUT/upstream.addr")
PREFIX="sy_bench_$$"
SCHEMA="sy_bench_$$"
psql -q "$PG" -c "CREATE SCHEMA $SCHEMA" >/dev/null
drop_schema() { psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true; }
trap 'cleanup; drop_schema; redis-cli -u "$REDIS" --scan --pattern "{$PREFIX}:*" | xargs -r redis-cli -u "$REDIS" del >/dev/null' EXIT
case "$PG" in *\?*) PG_S="$PG&options=-csearch_path%3D$SCHEMA" ;; *) PG_S="$PG?options=-csearch_path%3D$SCHEMA" ;; esac

config() { # name port ledger-extra state-section
  gateway_config "$1" "$2" "$UP" "$3
[budgets]
daily = 1000000.0
$4"
}
SHARED_STATE="[state]
redis_url = \"$REDIS\"
key_prefix = \"$PREFIX\"
timeout_ms = 1000
admit_batch = ${ADMIT_BATCH:-64}"

rm -f "$OUT"/*.sqlite* "$OUT"/*.log
P_MEM=$(free_port); config memory "$P_MEM" "" ""
P_RS=$(free_port); config redis_sqlite "$P_RS" "" "$SHARED_STATE"
P_SH=(); for i in 0 1 2; do
  P_SH+=("$(free_port)"); config "shared$i" "${P_SH[$i]}" "url = \"$PG_S\"" "$SHARED_STATE"
done
key() { "$BIN/switchyard" keys create --name bench --rpm 1000000000 --tpm 1000000000000 --max-concurrency 100000 \
  "$@" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'; }
K_MEM=$(key --ledger "$OUT/memory.sqlite"); K_RS=$(key --ledger "$OUT/redis_sqlite.sqlite")
K_SH=$(key --config "$OUT/shared0.toml")

urls() { local u=(); for p in "$@"; do u+=("http://127.0.0.1:$p/v1/chat/completions"); done; (IFS=,; echo "${u[*]}"); }
load() { # urls key concurrency
  taskset -c "$AUX_CORE" "$EX/loadgen" --url "$1" --concurrency "$3" \
    --seconds "$SECS" --warmup 1 --key "$2" --model bench
}
calls() { local n=0; for p in "$@"; do
  c=$(curl -s "http://127.0.0.1:$p/metrics" | awk '$1=="switchyard_state_calls_total{path=\"request\"}" {print $2}')
  n=$((n + ${c:-0})); done; echo "$n"; }
admissions() { local n=0; for p in "$@"; do
  c=$(curl -s "http://127.0.0.1:$p/metrics" | awk '$1=="switchyard_state_admissions_total" {print $2}')
  n=$((n + ${c:-0})); done; echo "$n"; }
oks() { python3 -c "import json,sys; print(sum(json.loads(a)['ok'] for a in sys.argv[1:]))" "$@"; }
start memory "$P_MEM"
start redis_sqlite "$P_RS"
for i in 0 1 2; do start "shared$i" "${P_SH[$i]}"; done
for p in "${P_SH[@]}"; do
  curl -s "http://127.0.0.1:$p/metrics" | grep -q 'switchyard_state_backend_up{backend="redis"} 1' \
    || { echo "a shared gateway is not on Redis" >&2; exit 1; }
done

res=()
redis_cpu() { redis-cli -u "$REDIS" info cpu | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {printf "%.3f", s}'; }
pg_cpu() { # CPU seconds of every postgres process so far (utime + stime)
  local t=0; for p in $(pgrep -x postgres); do
    t=$(awk -v t="$t" '{print t + $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo "$t"); done
  python3 -c "import os,sys; print(f'{float(sys.argv[1]) / os.sysconf(\"SC_CLK_TCK\"):.3f}')" "$t"; }
ALL_BEFORE=$(admissions "$P_RS" "${P_SH[@]}"); CALLS_BEFORE=$(calls "${P_SH[@]}"); ADM_BEFORE=$(admissions "${P_SH[@]}"); RCPU0=$(redis_cpu); PCPU0=$(pg_cpu)
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS..." >&2
  for v in "memory $(urls "$P_MEM") $K_MEM" "redis_sqlite $(urls "$P_RS") $K_RS" "shared $(urls "${P_SH[0]}") $K_SH" \
           "shared_x3 $(urls "${P_SH[@]}") $K_SH"; do
    set -- $v
    L=$(load "$2" "$3" 1); T=$(load "$2" "$3" "$CONC")
    [ "$(field "$L" errors)" = 0 ] && [ "$(field "$T" errors)" = 0 ] || { echo "errors: $L $T" >&2; exit 1; }
    res+=("$1 $(field "$L" p50_us) $(field "$L" p99_us) $(field "$T" rps)")
  done
done
CALLS=$(( $(calls "${P_SH[@]}") - CALLS_BEFORE )); ALL=$(( $(admissions "$P_RS" "${P_SH[@]}") - ALL_BEFORE ))
ADM=$(( $(admissions "${P_SH[@]}") - ADM_BEFORE ))
RCPU=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$RCPU0" "$(redis_cpu)")
PCPU=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$PCPU0" "$(pg_cpu)")
# Requests the shared instances answered (warm-up included), from their ledger rows.
ROWS=-1; for _ in $(seq 60); do
  n=$(psql -qtA "$PG" -c "SELECT COUNT(*) FROM $SCHEMA.ledger"); [ "$n" = "$ROWS" ] && break; ROWS=$n; sleep 1
done
KEYS=$(redis-cli -u "$REDIS" --scan --pattern "{$PREFIX}:*" | wc -l)

python3 - "$CONC" "$SECS" "$KEYS" "$CALLS" "$ROWS" "$RCPU" "$PCPU" "$ALL" "$ADM" "${res[@]}" <<'PY' | tee "$OUT/latest.md"
import statistics, sys
conc, secs, keys, calls, rows, rcpu, pcpu, allcalls, adm, *res = sys.argv[1:]
d = {}
for r in res:
    name, p50, p99, rps = r.split()
    d.setdefault(name, []).append((float(p50), float(p99), float(rps)))
med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in d.items()}
label = {"memory": "memory + SQLite", "redis_sqlite": "Redis + SQLite", "shared": "Redis + PostgreSQL",
         "shared_x3": "Redis + PostgreSQL, 3 instances"}
print(f"| limits and budget in | p50 at c=1 (us) | p99 at c=1 (us) | req/s at c={conc} |")
print("|---|---|---|---|")
for k in ("memory", "redis_sqlite", "shared", "shared_x3"):
    p50, p99, rps = med[k]
    print(f"| {label[k]} | {p50:,.0f} | {p99:,.0f} | {rps:,.0f} |")
m = med["memory"]
print(f"\nmedians of {len(d['memory'])} rounds x {secs}s, against memory + SQLite:")
for k in ("redis_sqlite", "shared", "shared_x3"):
    r = med[k]
    print(f"  {label[k]}: p50 {r[0]-m[0]:+,.0f} us ({r[0]/m[0]:.2f}x), req/s {r[2]/m[2]:.2f}x")
print(f"Redis calls on requests' paths: {calls} for {rows} ledger rows "
      f"({int(calls)/max(1,int(rows)):.2f} per request), carrying {adm} admissions "
      f"({int(adm)/max(1,int(calls)):.2f} per call); Redis keys used: {keys}")
print(f"Redis server CPU {float(rcpu):.1f} s for {allcalls} admitted requests ({float(rcpu) * 1e6 / max(1, int(allcalls)):.0f} us "
      f"per request, admission and its queued writes); PostgreSQL CPU {float(pcpu):.1f} s for {rows} ledger rows "
      f"({float(pcpu) * 1e6 / max(1, int(rows)):.0f} us per row)")
PY
