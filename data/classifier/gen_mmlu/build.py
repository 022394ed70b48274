#!/usr/bin/env python3
"""Labelled multiple-choice questions for the task classifier, derived from RouteLLM's MMLU
files in the shared routing data (train-and-tune part; written by others). The data itself is
never copied into the repository: this script writes a JSONL next to the other training files
at training time (see docs/classifier.md, Training).

Labels follow the labelling guide's rule for multiple-choice questions: questions that test
recalled knowledge (biology, law, history, psychology, ...) -> simple_chat; maths, statistics
and formal logic -> complex_reasoning. Subjects that mix the two (physics, chemistry,
economics, accounting), that hold code (computer science) or that are reading passages (the
history subjects) are left out. Per subject the PER_SUBJECT questions with the smallest
sha1(prompt) are taken (deterministic); RouteLLM's contaminated prompts are skipped, and
so is any prompt longer than MAX_CHARS.

Usage: python3 build.py ROUTING_DATA_DIR OUT.jsonl   (ROUTING_DATA_DIR = ../shared/routing-data)
"""
import csv, hashlib, json, os, sys

PER_SUBJECT = {"simple_chat": 8, "complex_reasoning": 15}
MAX_CHARS = 1500
SUBJECTS = {
    "complex_reasoning": [
        "abstract_algebra", "college_mathematics", "elementary_mathematics",
        "high_school_mathematics", "high_school_statistics", "formal_logic",
    ],
    "simple_chat": [
        "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
        "college_medicine", "computer_security", "conceptual_physics", "global_facts",
        "high_school_biology", "high_school_geography", "high_school_government_and_politics",
        "high_school_psychology", "human_aging", "human_sexuality", "international_law",
        "jurisprudence", "logical_fallacies", "management", "marketing", "medical_genetics",
        "miscellaneous", "moral_disputes", "nutrition", "philosophy", "prehistory",
        "professional_law", "professional_psychology", "public_relations", "security_studies",
        "sociology", "us_foreign_policy", "virology", "world_religions",
    ],
}


def main():
    root, out = sys.argv[1], sys.argv[2]
    mmlu = os.path.join(root, "routellm", "mmlu")
    csv.field_size_limit(1 << 30)
    skip = set()
    with open(os.path.join(mmlu, "contaminated_prompts.jsonl"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for k in ("eval_prompt", "train_prompt"):
                if row.get(k):
                    skip.add(row[k].strip())
    rows = []
    for task, subjects in SUBJECTS.items():
        for subject in subjects:
            path = os.path.join(mmlu, "responses", f"mmlu_{subject}.csv")
            with open(path, encoding="utf-8", newline="") as f:
                prompts = [r["prompt"] for r in csv.DictReader(f)]
            prompts = [p for p in prompts if p.strip() not in skip and len(p) <= MAX_CHARS]
            prompts.sort(key=lambda p: hashlib.sha1(p.encode("utf-8")).hexdigest())
            for i, p in enumerate(prompts[: PER_SUBJECT[task]]):
                rows.append({
                    "id": f"mmlu-{subject}-{i}",
                    "source": "routellm-mmlu",
                    "task": task,
                    "messages": [{"role": "user", "content": p}],
                    "source_label": f"routellm/mmlu/responses/mmlu_{subject}.csv",
                })
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} prompts -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
