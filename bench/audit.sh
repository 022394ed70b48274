#!/usr/bin/env bash
# `switchyard audit` throughput: generates a request log of LINES lines
# (default 1,000,000) and times the release binary on it.
#
#   bash bench/audit.sh            # 1M lines
#   LINES=200000 bash bench/audit.sh
#
# The log mixes code questions with fences, translations, summaries of long
# text, extraction with response_format, reasoning, chit-chat and wrapped /
# Anthropic-usage lines, with timestamps over 7 days and 0.1% bad lines.
# Prints wall time, lines/s and peak memory; the audit's table goes to
# bench/out/audit-table.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${LINES:-1000000}
OUT=bench/out
mkdir -p "$OUT"
LOG="$OUT/audit-${LINES}.jsonl"
BIN=${CARGO_TARGET_DIR:-target}/release/switchyard

nice -n 10 cargo build --release --quiet --bin switchyard

if [ ! -s "$LOG" ]; then
  python3 - "$LINES" "$LOG" <<'PY'
import json, random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(42)
t0 = 1793491200  # 2026-11-01T00:00:00Z
span = 7 * 86400
words = ("the quarterly report shows revenue growth in every region while costs stayed flat "
         "and the team expects the trend to continue next year despite supply issues").split()
def prose(k):
    return " ".join(rng.choice(words) for _ in range(k))
def usage(p, c, cached=0):
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": 0}}
models = ["gpt-5.5", "gpt-5.5", "gpt-5.4", "claude-opus-4.7", "gpt-5.4-mini"]
with open(path, "w") as f:
    for i in range(n):
        ts = t0 + span * i // max(n - 1, 1)
        if i % 1000 == 999:
            f.write('{"model": "gpt-5.5", "messages": [\n')
            continue
        k = i % 10
        m = rng.choice(models)
        if k in (0, 1):
            msg = ("Why does this fail?\n```python\nimport os\nxs = [1, 2, %d]\nfor x in xs:\n"
                   "    print(os.path.join('a', str(x)))\nprint(xs[%d])\n```\nPlease fix it." % (i, i % 7))
            line = {"model": m, "messages": [{"role": "system", "content": "You are a senior engineer."},
                                              {"role": "user", "content": msg}],
                    "usage": usage(1500 + i % 500, 600 + i % 300, 1024 if i % 3 == 0 else 0), "created": ts}
        elif k == 2:
            line = {"model": m, "messages": [{"role": "user", "content": "Translate to German: " + prose(25)}],
                    "usage": usage(120 + i % 50, 110 + i % 40), "created": ts}
        elif k == 3:
            line = {"model": m, "messages": [{"role": "user", "content": "Summarize this article:\n\n" + prose(180)}],
                    "usage": usage(900 + i % 100, 150 + i % 60), "created": ts}
        elif k == 4:
            line = {"model": m, "messages": [{"role": "user", "content": "Extract the names and dates: " + prose(60)}],
                    "response_format": {"type": "json_object"},
                    "usage": usage(400 + i % 80, 90), "created": ts}
        elif k == 5:
            line = {"model": m, "messages": [{"role": "user", "content":
                     "Prove that the sum of the first n odd numbers is n^2, step by step."}],
                    "usage": usage(60, 900 + i % 400), "created": ts}
        elif k == 6:
            line = {"request": {"model": "auto", "messages": [{"role": "user", "content": "Write a short poem about " + prose(6)}]},
                    "response": {"model": "claude-sonnet-4.6", "created": ts,
                                 "usage": {"input_tokens": 40, "output_tokens": 220,
                                           "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}}
        elif k == 7:
            line = {"model": m, "task": "extraction", "messages": [{"role": "user", "content": prose(30)}],
                    "usage": usage(300, 80), "timestamp": "2026-11-%02dT%02d:%02d:%02dZ" % (
                        1 + (ts - t0) // 86400, (ts % 86400) // 3600, (ts % 3600) // 60, ts % 60)}
        else:
            line = {"model": m, "messages": [{"role": "user", "content": rng.choice(
                        ["hi!", "hello, how are you?", "thanks a lot", "good morning", "what's up?"])}],
                    "usage": usage(20 + i % 10, 25 + i % 15), "created": ts}
        f.write(json.dumps(line) + "\n")
PY
fi

bytes=$(stat -c %s "$LOG")
echo "log: $LOG ($LINES lines, $((bytes / 1048576)) MiB), $(nproc) cores"
start=$(date +%s.%N)
/usr/bin/time -f "%e s wall, %U s user, %S s sys, %M KiB max RSS" \
  "$BIN" audit "$LOG" --no-progress > "$OUT/audit-table.txt" 2> "$OUT/audit-time.txt" || {
  cat "$OUT/audit-time.txt"; exit 1; }
end=$(date +%s.%N)
cat "$OUT/audit-time.txt"
python3 -c "import sys; w=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f'wall {w:.2f} s, {n/w:,.0f} lines/s')" "$start" "$end" "$LINES"
head -3 "$OUT/audit-table.txt"
