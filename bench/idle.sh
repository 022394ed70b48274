#!/usr/bin/env bash
# Idle resident memory of a zero-config `switchyard serve` (no --config, no
# provider keys in the environment: the simulated provider and the
# zero-config `auto` route), issue 15's "idle <= 20 MB".
#
# Per run: a fresh gateway on a fresh data directory; VmRSS, RssAnon and
# RssFile from /proc/PID/status 1 s after /ready answers, then again 2 s after
# one small chat request (model "auto"). RUNS (default 3) runs.
#
# Env: SWITCHYARD_BIN (measure another build; default: build and use
# target/release/switchyard), RUNS. Other variables pass through to the
# gateway, e.g. SWITCHYARD_KEEP_STARTUP_PAGES=1 (keep the start's pages).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
OUT=bench/out/idle
mkdir -p "$OUT"
if [ -z "${SWITCHYARD_BIN:-}" ]; then
  cargo build --release --quiet --bin switchyard
  BIN=target/release/switchyard
else
  BIN=$SWITCHYARD_BIN
fi
GW=
trap '[ -n "$GW" ] && kill "$GW" 2>/dev/null || true' EXIT
mem() { awk '/^(VmRSS|RssAnon|RssFile):/ {v[n++] = sprintf("%.1f", $2 / 1024)} END {print v[0] " / " v[1] " / " v[2]}' "/proc/$1/status"; }
{
  echo "## Idle RSS: ${LABEL:-$BIN}, $(date -u +%F)"
  echo
  echo "| run | VmRSS / RssAnon / RssFile (MB), 1 s after /ready | the same, 2 s after one request |"
  echo "|---|---|---|"
  for r in $(seq "$RUNS"); do
    rm -rf "$OUT/data"
    mkdir -p "$OUT/data"
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u DEEPSEEK_API_KEY -u GEMINI_API_KEY RUST_LOG=warn \
      "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$OUT/data" > "$OUT/gateway.log" 2>&1 &
    GW=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null || { echo "gateway not ready, see $OUT/gateway.log" >&2; exit 1; }
    sleep 1
    before=$(mem "$GW")
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
      -d '{"model":"auto","messages":[{"role":"user","content":"hi"}]}' "http://127.0.0.1:$PORT/v1/chat/completions")
    [ "$code" = 200 ] || { echo "request failed: $code" >&2; exit 1; }
    sleep 2
    after=$(mem "$GW")
    echo "| $r | $before | $after |"
    kill "$GW"
    wait "$GW" 2>/dev/null || true
    GW=
  done
} | tee "$OUT/latest.md"
