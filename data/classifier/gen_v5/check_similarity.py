#!/usr/bin/env python3
"""Near-duplicate check of the training prompts against the public held-out set: prints every
training user turn whose character similarity (difflib ratio) to a held-out item is >= 0.6.
Usage (in data/classifier/): python3 gen_v5/check_similarity.py team_prompts_5.jsonl"""
import difflib, json, sys
held = [json.loads(l) for l in open("../classifier-eval/public_heldout.jsonl", encoding="utf-8")]
held = [(r["id"], r["messages"][-1]["content"].lower()) for r in held]
bad = 0
for path in sys.argv[1:]:
    for l in open(path, encoding="utf-8"):
        r = json.loads(l)
        t = r["messages"][-1]["content"].lower()
        for hid, h in held:
            sm = difflib.SequenceMatcher(None, t, h, autojunk=False)
            if sm.real_quick_ratio() >= 0.6 and sm.quick_ratio() >= 0.6 and sm.ratio() >= 0.6:
                print(f"{sm.ratio():.2f} {r['id']} ~ {hid}: {t[:70]!r} ~ {h[:70]!r}")
                bad += 1
print(bad, "near-duplicates")
