#!/usr/bin/env python3
"""Builds data/classifier-eval/public_heldout.jsonl from verbatim copies of public
prompt sets (read with the search tools' read_file and saved as RAW_DIR/*.jsonl and
RAW_DIR/ni/*.json; see docs/classifier.md "Public held-out set" for origins and
licences). Labels were assigned here, from the labelling guide and the rules in
LABEL_RULES, before the classifier was run on any item. The dev/test split is a
fixed rule: inside each (source, task) group, items are ordered by
sha1("public-heldout-v1:" + id) and alternate dev, test, dev, ...

Usage: python3 build.py RAW_DIR OUT.jsonl
"""
import hashlib
import json
import os
import sys

RAW, OUT = sys.argv[1], sys.argv[2]

FASTCHAT = "lm-sys/FastChat@589532dcfa83700f950b9aa3983416c543afabc0:fastchat/llm_judge/data/vicuna_bench/question.jsonl"
STEFFI = "steffichern/vicuna@d1a707000e4d019c842f6f7e597b48fc41f766c5:fastchat/eval/table/question.jsonl"
WIZARD = "nlpxucan/WizardLM@ce0d433589335d419aa8101abd71685ae7d187f3:WizardLM/data/WizardLM_testset.jsonl"
HUMANEVAL = "SYEDM-USA/human-eval@5c90c11b39ebd058e92c48d0ade6669ade2679e7:data/HumanEval.jsonl"
NI = "allenai/natural-instructions@{commit}:tasks/{task}.json"

SC, CG, SU, CR, EX, TR, CW = (
    "simple_chat", "code_generation", "summarization", "complex_reasoning",
    "extraction", "translation", "creative_writing")

# Vicuna bench categories -> task. roleplay: every one of the ten asks for invented
# in-character narration or a speech (knight's introduction, pirate's rallying speech,
# soliloquy, commentary, ...) -> creative_writing (rule 1).
VICUNA = {"generic": SC, "knowledge": SC, "common-sense": SC, "counterfactual": SC,
          "roleplay": CW, "fermi": CR, "coding": CG, "math": CR, "writing": CW}

# The five questions of the older FastChat eval table (a different list).
STEFFI_LABELS = {1: SC, 2: SC, 3: SU, 4: SC, 5: CR}

# WizardLM test set, per item (idx). Rule numbers refer to LABEL_RULES.
W = {}
for i in range(1, 20): W[i] = CR                     # Math (rule 4)
for i in range(20, 38): W[i] = CG                    # Code Generation
W.update({38: SC, 39: SC, 40: SC, 41: SC, 42: SC, 43: CW, 44: SC, 45: CW, 46: CW, 47: CW,
          48: CW, 49: CW, 50: CW, 51: CW, 52: SC, 53: CW, 54: SC, 55: CW})   # Writting (rules 2, 7)
W.update({56: SC, 57: CG, 58: CG, 59: CG, 60: SC, 61: CG, 62: SC, 63: CG, 65: CG, 66: SC,
          67: CW, 68: SC, 69: SC, 70: SC})           # Computer Science (rule 5; 67 asks for a poem)
W[71] = CR; W[72] = SC                               # 72 asks for an explanation of kinds of reasoning
for i in range(73, 84): W[i] = CR                    # Reasoning puzzles
W.update({84: CG, 85: CG, 87: CR, 89: CG, 90: CG, 92: CG, 93: CG, 95: CG})  # Complex Format
for i in (96, 97, 98, 99, 101, 102, 103, 104, 105): W[i] = CG                # Code Debug
W.update({106: SC, 107: SC, 108: SC, 109: SC, 111: CR, 112: CR, 113: CR, 114: SC})  # Common-Sense (rule 4)
for i in range(115, 123): W[i] = SC                  # Counterfactual
W.update({123: CW, 124: TR, 125: TR, 126: TR, 127: TR, 128: TR, 129: SC})   # Multilingual (rule 8)
W.update({130: SC, 131: SC, 132: CW, 133: SC, 134: SC})                     # Roleplay (rule 1)
for i in range(136, 203): W[i] = SC                  # Biology .. Economy (rules 3, 6, 9)
W[147] = CW                                          # a cover letter to write
W.update({203: CR, 204: SC, 205: CR, 206: SC, 207: CR})                     # Physics
W.update({208: SC, 209: SC, 210: SC, 211: SC, 213: SC, 214: CG, 215: CW, 216: SC,
          217: SC, 218: SC})

rows = []

def add(rid, source, task, messages, label):
    rows.append({"id": rid, "source": source, "task": task, "messages": messages,
                 "source_label": label})

for line in open(os.path.join(RAW, "vicuna.jsonl"), encoding="utf-8"):
    q = json.loads(line)
    add(f"vicuna-{q['question_id']}", "vicuna-bench", VICUNA[q["category"]],
        [{"role": "user", "content": q["turns"][0]}],
        f"{FASTCHAT}#question_id={q['question_id']} ({q['category']})")

for line in open(os.path.join(RAW, "vicuna_steffichern.jsonl"), encoding="utf-8"):
    q = json.loads(line)
    add(f"fastchat-eval-{q['question_id']}", "fastchat-eval-table", STEFFI_LABELS[q["question_id"]],
        [{"role": "user", "content": q["text"]}],
        f"{STEFFI}#question_id={q['question_id']} ({q['category']})")

for part in "abcd":
    for line in open(os.path.join(RAW, f"wizardlm_{part}.jsonl"), encoding="utf-8"):
        q = json.loads(line)
        add(f"wizardlm-{q['idx']}", "wizardlm-testset", W[q["idx"]],
            [{"role": "user", "content": q["Instruction"]}],
            f"{WIZARD}#idx={q['idx']} ({q['Skill']})")

for line in open(os.path.join(RAW, "humaneval.jsonl"), encoding="utf-8"):
    q = json.loads(line)
    add(q["task_id"].replace("/", "-").lower(), "humaneval", CG,
        [{"role": "user", "content": q["prompt"]}], f"{HUMANEVAL}#{q['task_id']}")

for name in sorted(os.listdir(os.path.join(RAW, "ni"))):
    t = json.load(open(os.path.join(RAW, "ni", name), encoding="utf-8"))
    num = t["task"].split("_")[0]
    for k, inst in enumerate(t["instances"]):
        iid, text = (inst if isinstance(inst, list) else (f"{num}-{k}", inst))
        add(f"ni-{iid}", "natural-instructions", t["label"],
            [{"role": "system", "content": t["definition"]}, {"role": "user", "content": text}],
            NI.format(commit=t["commit"], task=t["task"]) + f"#{iid}")

# Duplicate texts inside the set would count twice: refuse them.
seen = {}
for r in rows:
    key = r["messages"][-1]["content"].strip().lower()
    assert key not in seen, (r["id"], seen.get(key))
    seen[key] = r["id"]

groups = {}
for r in rows:
    groups.setdefault((r["source"], r["task"]), []).append(r)
for g in groups.values():
    g.sort(key=lambda r: hashlib.sha1(("public-heldout-v1:" + r["id"]).encode()).hexdigest())
    for k, r in enumerate(g):
        r["split"] = "dev" if k % 2 == 0 else "test"

with open(OUT, "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")

count = {}
for r in rows:
    count.setdefault(r["task"], [0, 0])[r["split"] == "test"] += 1
print(len(rows), "rows;", {k: tuple(v) for k, v in sorted(count.items())}, file=sys.stderr)
