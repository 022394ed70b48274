# Shared plumbing of the same-run benchmarks (sourced, not run): cores, the
# process list killed on exit, the bench upstream, the gateway config with one
# priced model, gateway start-up, free ports and JSON fields.
#
# Needs OUT (the output directory) set before sourcing; sets BIN, EX, GW_CORE,
# AUX_CORE and the EXIT trap.
BIN=${BIN_DIR:-target/release}  # BIN_DIR: measure another build's switchyard (the examples stay this tree's)
EX=target/release/examples
GW_CORE=0
AUX_CORE=1
if [ "$(nproc)" -lt 2 ]; then AUX_CORE=0; fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# upstream FILE: starts a bench upstream on the auxiliary core, prints its address.
# (Call it directly, not in $(...): the cleanup trap must see the pid.)
upstream() {
  # (A previous run's address file must not be read before this upstream truncates it.)
  rm -f "$1"
  taskset -c "$AUX_CORE" "$EX/bench_upstream" 127.0.0.1:0 > "$1" &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$1" ] && break; sleep 0.1; done
}

# gateway_config NAME PORT UPSTREAM EXTRA: $OUT/NAME.toml, access log off, the
# model "bench" on UPSTREAM, EXTRA (TOML) added.
gateway_config() {
  cat > "$OUT/$1.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
[log]
access = false
[ledger]
path = "$OUT/$1.sqlite"
$4
[providers.up]
type = "openai"
base_url = "http://$3/v1"
api_key = "sk-bench-upstream"
models = ["*"]
[models.bench]
provider = "up"
model = "bench-model"
price = { input = 1.0, output = 2.0 }
TOML
}

# start NAME PORT: the gateway of $OUT/NAME.toml on the gateway core, waited for.
start() {
  RUST_LOG=warn taskset -c "$GW_CORE" "$BIN/switchyard" serve --config "$OUT/$1.toml" > "$OUT/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/ready" >/dev/null && break; sleep 0.1; done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
