#!/usr/bin/env bash
# What one shared-state admission costs, counted with callgrind (instructions do
# not depend on machine load): Redis's instructions per admission (the ADMIT
# script call plus the request's follow-up writes: slot release, spend, release,
# TPM correction) and the client's (examples/admit_bench: Shared::admit and the
# write queue), for admissions sent BATCH per script call (`[state]
# admit_batch`; under load the batcher sends what was queued while the previous
# call was in flight). A private redis-server on a free port runs under
# callgrind; the real Redis is not touched.
#
# Env: BATCHES (default "1 4 16 64"), ADMISSIONS (per batch size, default 1024),
#      WARMUP (rounds before counting, default 5).
# Needs valgrind and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/admit
mkdir -p "$OUT"
BATCHES=${BATCHES:-1 4 16 64}
ADMISSIONS=${ADMISSIONS:-1024}
WARMUP=${WARMUP:-5}
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found" >&2; exit 1; }
cargo build --release --quiet --example admit_bench
# shellcheck source=bench/lib.sh
source bench/lib.sh
PORT=$(free_port)
rm -f "$OUT"/redis.callgrind* "$OUT"/client.*
valgrind --tool=callgrind --callgrind-out-file="$OUT/redis.callgrind" \
  redis-server --port "$PORT" --save '' --appendonly no > "$OUT/redis.log" 2>&1 &
RV=$!
pids+=($RV)
for _ in $(seq 300); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
redis-cli -p "$PORT" ping >/dev/null || { echo "private redis-server did not start, see $OUT/redis.log" >&2; exit 1; }

echo "| admissions per call | Redis instructions per admission | client instructions per admission | calls |"
echo "|---|---|---|---|"
for B in $BATCHES; do
  rounds=$(( (ADMISSIONS + B - 1) / B ))
  fifo="$OUT/go.$B"
  rm -f "$fifo"; mkfifo "$fifo"
  valgrind --tool=callgrind --callgrind-out-file="$OUT/client.$B" \
    "$EX/admit_bench" "redis://127.0.0.1:$PORT" "sy_admit_$$_$B" "$B" "$rounds" "$WARMUP" \
    < "$fifo" > "$OUT/client.$B.out" 2> "$OUT/client.$B.log" &
  cv=$!
  exec 3> "$fifo" # keeps the fifo open until the go line
  for _ in $(seq 600); do grep -q measuring "$OUT/client.$B.out" 2>/dev/null && break; sleep 0.1; done
  grep -q measuring "$OUT/client.$B.out" || { echo "admit_bench did not start, see $OUT/client.$B.log" >&2; exit 1; }
  callgrind_control -z "$cv" >/dev/null 2>&1
  callgrind_control -z "$RV" >/dev/null 2>&1
  echo go >&3
  exec 3>&-
  wait "$cv" || { echo "admit_bench failed, see $OUT/client.$B.log" >&2; exit 1; }
  rm -f "$OUT"/redis.callgrind.[0-9]*
  callgrind_control -d "$RV" >/dev/null 2>&1
  read -r n calls < <(tail -1 "$OUT/client.$B.out")
  python3 - "$B" "$n" "$calls" "$OUT/redis.callgrind".[0-9]* "$OUT/client.$B" <<'PY'
import sys
b, n, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def total(path):
    with open(path) as f:
        return sum(int(l.split()[1]) for l in f if l.startswith("summary:"))
redis, client = total(sys.argv[4]), total(sys.argv[5])
print(f"| {b} | {redis // n:,} | {client // n:,} | {calls} for {n} |")
PY
  redis-cli -p "$PORT" flushall >/dev/null
done
