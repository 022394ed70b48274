#!/usr/bin/env bash
# Side by side with other gateways (issue 15), in one run: the bare bench
# upstream, Switchyard (zero-config pass-through) and each peer in PEERS,
# each in front of the same bench upstream and driven by the same load
# generator. The target under test is pinned to one core (GW_CORE); the
# upstream and the load generator share the other.
#
# Per target: added p50 at c=1 (its p50 minus the bare upstream's), req/s at
# c=50, CPU per request at c=50 (utime + stime of the target's processes over
# the measured window / requests) and VmRSS after the run. Then the issue's
# same-run ratios against the bare upstream: req/s >= 0.35x, added p50 <=
# 3x the upstream's p50 + 100 us, CPU per request <= 5x.
#
# Peers are installed from their registries into PEER_DIR (default
# /tmp/peers, outside the repo; nothing of theirs is committed):
#   portkey  `npm install @portkey-ai/gateway@$PORTKEY_VERSION` (Node)
#   litellm  `pip install "litellm[proxy]==$LITELLM_VERSION"` in a venv (Python, 1 worker)
# PEERS (default "portkey") picks them; an install that fails skips that peer
# with a message. BASE_BIN adds another Switchyard build (e.g. main's binary)
# as row `switchyard-base`, measured in the same run. SECONDS_PER_RUN (default 5) and WARMUP (default 1) per load run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/peers
mkdir -p "$OUT"
PEER_DIR=${PEER_DIR:-/tmp/peers}
PEERS=${PEERS:-portkey}
PORTKEY_VERSION=${PORTKEY_VERSION:-1.15.2}
LITELLM_VERSION=${LITELLM_VERSION:-1.74.0}
SECS=${SECONDS_PER_RUN:-5}
WARM=${WARMUP:-1}
# shellcheck source=bench/lib.sh
source bench/lib.sh
cargo build --release --quiet --bin switchyard --example bench_upstream --example loadgen

upstream "$OUT/upstream.addr"
UP=$(head -1 "$OUT/upstream.addr")

# The bare upstream as a target of its own: a second one, on the gateway core.
taskset -c "$GW_CORE" "$EX/bench_upstream" 127.0.0.1:0 > "$OUT/direct.addr" &
DIRECT_PID=$!
pids+=($DIRECT_PID)
for _ in $(seq 50); do [ -s "$OUT/direct.addr" ] && break; sleep 0.1; done

# cpu_ticks PID: utime + stime of PID and its threads, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# tree_ticks PID: cpu_ticks of PID and its child processes (LiteLLM's workers).
tree_ticks() {
  local t=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] && t=$((t + $(cpu_ticks "$p")))
  done
  echo "$t"
}
tree_rss_kb() {
  local t=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/status" ] && t=$((t + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

# measure NAME PID URL [loadgen args...]: prints "NAME p50_us rps cpu_us_per_req rss_kb".
measure() {
  local name=$1 pid=$2 url=$3
  shift 3
  local c1 c50 t0 t1 ok rps p50
  c1=$(taskset -c "$AUX_CORE" "$EX/loadgen" --url "$url" --concurrency 1 --seconds "$SECS" --warmup "$WARM" "$@")
  taskset -c "$AUX_CORE" "$EX/loadgen" --url "$url" --concurrency 50 --seconds "$SECS" --warmup "$WARM" "$@" \
    > "$OUT/$name.c50.json" &
  local lg=$!
  sleep "$WARM"
  t0=$(tree_ticks "$pid")
  wait "$lg"
  t1=$(tree_ticks "$pid")
  c50=$(cat "$OUT/$name.c50.json")
  echo "$c1" > "$OUT/$name.c1.json"
  ok=$(field "$c50" ok)
  rps=$(field "$c50" rps)
  p50=$(field "$c1" p50_us)
  local errs
  errs=$(field "$c50" errors)
  [ "$errs" = 0 ] || echo "$name: $errs errors at c=50 (see $OUT/$name.c50.json)" >&2
  python3 -c "import sys; t=(int(sys.argv[2])-int(sys.argv[1]))/int(sys.argv[3]); ok=int(sys.argv[4]); print(sys.argv[5], sys.argv[6], sys.argv[7], round(t*1e6/ok, 1) if ok else 'nan', sys.argv[8])" \
    "$t0" "$t1" "$HZ" "$ok" "$name" "$p50" "$rps" "$(tree_rss_kb "$pid")"
}

rows=()
rows+=("$(measure direct "$DIRECT_PID" "http://$(head -1 "$OUT/direct.addr")/v1/chat/completions")")
kill "$DIRECT_PID" 2>/dev/null || true

# Switchyard, zero-config pass-through (no keys, access log off).
SW_PORT=$(free_port)
gateway_config switchyard "$SW_PORT" "$UP" ""
rm -f "$OUT"/switchyard.sqlite*
start switchyard "$SW_PORT"
SW_PID=${pids[-1]}
rows+=("$(measure switchyard "$SW_PID" "http://127.0.0.1:$SW_PORT/v1/chat/completions")")
kill "$SW_PID" 2>/dev/null || true

# Another Switchyard build in the same run (BASE_BIN, e.g. main's binary), same config.
if [ -n "${BASE_BIN:-}" ]; then
  BASE_PORT=$(free_port)
  gateway_config switchyard-base "$BASE_PORT" "$UP" ""
  rm -f "$OUT"/switchyard-base.sqlite*
  RUST_LOG=warn taskset -c "$GW_CORE" "$BASE_BIN" serve --config "$OUT/switchyard-base.toml" > "$OUT/switchyard-base.log" 2>&1 &
  pids+=($!)
  BASE_PID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$BASE_PORT/ready" >/dev/null && break; sleep 0.1; done
  rows+=("$(measure switchyard-base "$BASE_PID" "http://127.0.0.1:$BASE_PORT/v1/chat/completions")")
  kill "$BASE_PID" 2>/dev/null || true
fi

wait_http() { # URL: up to 60 s
  for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done
  return 1
}

for peer in $PEERS; do
  case $peer in
    portkey)
      dir=$PEER_DIR/portkey
      if [ ! -x "$dir/node_modules/.bin/portkey" ] && [ ! -f "$dir/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
        mkdir -p "$dir"
        (cd "$dir" && npm install --no-audit --no-fund "@portkey-ai/gateway@$PORTKEY_VERSION" > install.log 2>&1) ||
          { echo "portkey: npm install failed (see $dir/install.log); skipped" >&2; continue; }
      fi
      port=$(free_port)
      NODE_ENV=production taskset -c "$GW_CORE" node "$dir/node_modules/@portkey-ai/gateway/build/start-server.js" \
        --port="$port" --headless > "$OUT/portkey.log" 2>&1 &
      pid=$!
      pids+=($pid)
      wait_http "http://127.0.0.1:$port/" || { echo "portkey did not start (see $OUT/portkey.log)" >&2; continue; }
      rows+=("$(measure "portkey-$PORTKEY_VERSION" "$pid" "http://127.0.0.1:$port/v1/chat/completions" \
        --model bench-model --key sk-bench-upstream \
        --header "x-portkey-provider: openai" --header "x-portkey-custom-host: http://$UP/v1")")
      kill "$pid" 2>/dev/null || true
      ;;
    litellm)
      dir=$PEER_DIR/litellm
      if [ ! -x "$dir/bin/litellm" ]; then
        python3 -m venv "$dir" && "$dir/bin/pip" install --quiet "litellm[proxy]==$LITELLM_VERSION" > "$PEER_DIR/litellm-install.log" 2>&1 ||
          { echo "litellm: pip install failed (see $PEER_DIR/litellm-install.log); skipped" >&2; continue; }
      fi
      port=$(free_port)
      cat > "$OUT/litellm.yaml" <<YAML
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench-model
      api_base: http://$UP/v1
      api_key: sk-bench-upstream
YAML
      taskset -c "$GW_CORE" "$dir/bin/litellm" --config "$OUT/litellm.yaml" --port "$port" --num_workers 1 \
        > "$OUT/litellm.log" 2>&1 &
      pid=$!
      pids+=($pid)
      wait_http "http://127.0.0.1:$port/health/liveliness" || { echo "litellm did not start (see $OUT/litellm.log)" >&2; continue; }
      rows+=("$(measure "litellm-$LITELLM_VERSION" "$pid" "http://127.0.0.1:$port/v1/chat/completions")")
      kill "$pid" 2>/dev/null || true
      ;;
    *) echo "unknown peer $peer (portkey, litellm)" >&2 ;;
  esac
done

python3 - "$SECS" "${rows[@]}" <<'PY' | tee "$OUT/latest.md"
import sys
secs = sys.argv[1]
rows = [r.split() for r in sys.argv[2:]]
direct = rows[0]
d_p50, d_rps, d_cpu = float(direct[1]), float(direct[2]), float(direct[3])
print(f"| target | p50 at c=1 (us) | added p50 (us) | req/s at c=50, one core | CPU per request (us) | RSS after the run (MB) | req/s ratio (>= 0.35) | added p50 bound: 3x p50 + 100 us = {3 * d_p50 + 100:.0f} | CPU ratio (<= 5) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, p50, rps, cpu, rss in rows:
    p50, rps, cpu, rss = float(p50), float(rps), float(cpu), float(rss) / 1024
    if name == "direct":
        print(f"| bench upstream alone | {p50:.0f} | 0 | {rps:,.0f} | {cpu:.1f} | {rss:.1f} | 1.00 | - | 1.0 |")
        continue
    added = p50 - d_p50
    ok = lambda b: "met" if b else "not met"
    print(f"| {name} | {p50:.0f} | {added:+.0f} | {rps:,.0f} | {cpu:.1f} | {rss:.1f} | {rps / d_rps:.2f} ({ok(rps / d_rps >= 0.35)}) | {added:.0f} ({ok(added <= 3 * d_p50 + 100)}) | {cpu / d_cpu:.1f} ({ok(cpu / d_cpu <= 5)}) |")
PY
