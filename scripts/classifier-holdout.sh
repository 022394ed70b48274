#!/usr/bin/env bash
# Reproducible held-out evaluation of the task classifier with Switchyard's
# own commands: split the labelled data, train on the training split with
# `switchyard train-classifier`, evaluate on the held-out split with
# `switchyard eval-classifier`. The shipped weights (assets/classifier.bin)
# are trained on everything; this measures how well the recipe generalises.
#
# Hold-out rules (nothing held out is seen in training):
#   - natural-instructions: whole task files task1619, task618, task1447, task360, task219
#   - gsm8k, mbpp: ids whose SHA-1 is 0 mod 5 (20%)
#   - awesome-chatgpt-prompts: all held out
#   - team prompts (data/classifier/*.jsonl): the "split": "holdout" rows,
#     which hold out whole instruction templates and pasted passages
#
# With --loso: leave-one-source-out instead. For each of natural_instructions and
# awesome_chatgpt_prompts, train on every other shared source plus all team prompts
# (both splits) and evaluate on the whole left-out source (macro-F1 over the classes
# present in it).
# Usage: bash scripts/classifier-holdout.sh [--loso] [DATASETS_DIR]   (default ../shared/datasets)
set -euo pipefail
cd "$(dirname "$0")/.."
LOSO=0
if [ "${1:-}" = "--loso" ]; then
  LOSO=1
  shift
fi
DATA=${1:-../shared/datasets}
OUT=${OUT:-$(mktemp -d)}
SY=${CARGO_TARGET_DIR:-target}/release/switchyard
if [ "$LOSO" = 1 ]; then
  cargo build --release --quiet --bin switchyard
  for src in natural_instructions awesome_chatgpt_prompts; do
    rm -rf "$OUT/loso-$src" && mkdir -p "$OUT/loso-$src/train"
    for f in "$DATA"/*.jsonl; do
      [ "$(basename "$f" .jsonl)" = "$src" ] || cp "$f" "$OUT/loso-$src/train/"
    done
    cp data/classifier/*.jsonl "$OUT/loso-$src/train/"
    $SY train-classifier --data "$OUT/loso-$src/train" --out "$OUT/loso-$src/model.bin" >/dev/null
    echo "== left out: $src =="
    $SY eval-classifier "$DATA/$src.jsonl" --classifier "$OUT/loso-$src/model.bin" >"$OUT/loso-$src/eval.txt"
    head -1 "$OUT/loso-$src/eval.txt"
  done
  exit 0
fi
mkdir -p "$OUT/train" "$OUT/holdout"
python3 - "$DATA" "$OUT" <<'PY'
import hashlib, json, os, sys
data, out = sys.argv[1], sys.argv[2]
held_ni = ("task1619", "task618", "task1447", "task360", "task219")
train, hold = [], {"team": [], "shared": []}
def keep(row):
    return {"messages": row["messages"], "task": row["task"]}
for name in sorted(os.listdir(data)):
    if not name.endswith(".jsonl"):
        continue
    for line in open(os.path.join(data, name), encoding="utf-8"):
        row = json.loads(line)
        src = row.get("source", name)
        if src.startswith("natural_instructions"):
            held = row.get("source_label", "").split("_")[0] in held_ni
        elif src.startswith("awesome"):
            held = True
        else:
            held = int(hashlib.sha1(row["id"].encode()).hexdigest(), 16) % 5 == 0
        (hold["shared"] if held else train).append(keep(row))
for name in sorted(os.listdir("data/classifier")):
    if not name.endswith(".jsonl"):
        continue
    for line in open(os.path.join("data/classifier", name), encoding="utf-8"):
        row = json.loads(line)
        (hold["team"] if row.get("split") == "holdout" else train).append(keep(row))
def dump(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
dump(f"{out}/train/train.jsonl", train)
dump(f"{out}/holdout/team.jsonl", hold["team"])
dump(f"{out}/holdout/shared.jsonl", hold["shared"])
dump(f"{out}/all-holdout.jsonl", hold["team"] + hold["shared"])
print(f"train {len(train)}  held-out team {len(hold['team'])}  held-out shared {len(hold['shared'])}", file=sys.stderr)
PY
cargo build --release --quiet --bin switchyard
$SY train-classifier --data "$OUT/train" --out "$OUT/holdout-model.bin"
for set in team shared; do
  echo "== held-out: $set =="
  $SY eval-classifier "$OUT/holdout/$set.jsonl" --classifier "$OUT/holdout-model.bin"
done
echo "== held-out: all =="
$SY eval-classifier "$OUT/all-holdout.jsonl" --classifier "$OUT/holdout-model.bin" >"$OUT/all-holdout.txt"
head -1 "$OUT/all-holdout.txt"
