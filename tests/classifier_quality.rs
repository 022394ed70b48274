//! The shipped classifier against the independent test sets in
//! `data/classifier-eval/` (written separately from the training data and
//! never trained on): a regression guard for the quality target, and a
//! check that no test prompt leaked into the training files.

use std::collections::HashSet;
use std::path::Path;

use switchyard::routing::classifier::{evaluate, read_labeled_jsonl, Classifier};

fn texts(path: &Path) -> HashSet<String> {
    read_labeled_jsonl(path)
        .expect("read")
        .into_iter()
        .map(|e| e.input.last_user.trim().to_lowercase())
        .filter(|t| t.len() > 40)
        .collect()
}

#[test]
fn shipped_weights_meet_the_quality_target_on_the_independent_test_sets() {
    let clf = Classifier::embedded();
    for (file, floor) in [
        ("data/classifier-eval/independent_test.jsonl", 0.90),
        ("data/classifier-eval/system_instruction_test.jsonl", 0.88),
        ("data/classifier-eval/benchmark_style_test.jsonl", 0.93),
        // Prompts written by others (Vicuna, WizardLM, HumanEval, unseen
        // natural-instructions tasks), both halves: 0.918 at the feature-version-12
        // weights (0.882 before them, when this floor was 0.86).
        ("data/classifier-eval/public_heldout.jsonl", 0.90),
    ] {
        let ex = read_labeled_jsonl(Path::new(file)).expect("read");
        assert!(ex.len() >= 140, "{file}: {}", ex.len());
        let r = evaluate(clf, &ex);
        assert_eq!(r.unknown_labels, 0, "{file}");
        assert!(
            r.macro_f1 >= floor,
            "{file}: macro-F1 {:.4} < {floor}\n{}",
            r.macro_f1,
            r.to_table()
        );
    }
}

#[test]
fn no_test_prompt_is_in_the_training_data() {
    let train = texts(Path::new("data/classifier"));
    for file in [
        "data/classifier-eval/independent_test.jsonl",
        "data/classifier-eval/system_instruction_test.jsonl",
        "data/classifier-eval/benchmark_style_test.jsonl",
        "data/classifier-eval/public_heldout.jsonl",
    ] {
        let leaked: Vec<String> = texts(Path::new(file)).intersection(&train).cloned().collect();
        assert!(leaked.is_empty(), "{file}: {leaked:?}");
    }
}
