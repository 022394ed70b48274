//! Dumps the tier predictor's dense features of every TRAINING prompt of the
//! routing data (test prompts dropped, as `train-router` does) as CSV on
//! stdout, for offline analysis of what transfers between sources.
//!
//! Usage: cargo run --release --example router_features [-- DATA_DIR] > features.csv

use switchyard::routing::classifier::Classifier;
use switchyard::routing::predictor::{featurize, view_from, DENSE, DENSE_NAMES};
use switchyard::routing::routedata;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(routedata::default_dir);
    if !routedata::present(&dir) {
        eprintln!("{}: routing data not found", dir.display());
        std::process::exit(2);
    }
    let mut examples = routedata::load_train(&dir).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let test: std::collections::HashSet<u64> = routedata::test_prompt_texts(&dir)
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        })
        .iter()
        .map(|t| routedata::prompt_hash(t))
        .collect();
    examples.retain(|e| !test.contains(&routedata::prompt_hash(&e.input.last_user)));
    let clf = Classifier::embedded();
    let mut head = String::from("source,label,task,signal,bytes");
    for n in DENSE_NAMES {
        head.push(',');
        head.push_str(n);
    }
    println!("{head}");
    for e in &examples {
        let input = e.input.as_input();
        let (c, p) = clf.classify_with_probabilities(&input);
        let view = view_from(clf, &c, &p, None);
        let mut dense = [0.0f32; DENSE];
        let mut sink: Vec<u32> = Vec::new();
        featurize(&input, &view, 12, true, &mut dense, &mut sink);
        let task = clf.tasks().get(c.task).map_or("?", String::as_str);
        let mut line = format!(
            "{},{},{},{},{}",
            e.source,
            e.label,
            task,
            u8::from(c.signal.is_some()),
            e.input.last_user.len()
        );
        for v in dense {
            line.push_str(&format!(",{v}"));
        }
        println!("{line}");
    }
}
