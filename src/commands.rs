//! Offline CLI commands over the classifier and routing policy:
//! `classify`, `eval-classifier`, `train-classifier`.

use std::io::{BufRead, Write};
use std::path::Path;

use serde_json::json;

use crate::api::chat::ChatRequest;
use crate::config::Config;
use crate::routing::classifier::{evaluate, read_labeled_jsonl, train, Classifier, TrainOptions};
use crate::routing::input_from_chat;

/// `switchyard classify`: one JSON line per input request line:
/// `{"task","confidence","complexity","tier","model","reason"}`, with tier
/// and model as `route` in `cfg` would route it (null when the route does
/// not exist). Lines that are not chat requests get `{"line", "error"}`.
pub fn classify(
    cfg: &Config,
    route: &str,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> std::io::Result<(u64, u64)> {
    let routing = &cfg.routing;
    let route = routing.routes.get(route);
    let (mut ok, mut bad) = (0u64, 0u64);
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let req = match parse_request_line(&line) {
            Ok(r) => r,
            Err(e) => {
                bad += 1;
                writeln!(out, "{}", json!({"line": i + 1, "error": e.message}))?;
                continue;
            }
        };
        let owned = input_from_chat(&req);
        let c = routing.classifier.classify(&owned.as_input());
        let v = match route {
            Some(r) => {
                let d = routing.decide(r, &owned.as_input(), None);
                json!({
                    "task": routing.task_name(d.task),
                    "confidence": round3(d.confidence),
                    "complexity": round3(d.complexity),
                    "tier": d.tier,
                    "model": d.chain.first(),
                    "reason": d.reason_text(false),
                })
            }
            None => json!({
                "task": routing.task_name(c.task),
                "confidence": round3(c.confidence),
                "complexity": round3(c.complexity),
                "tier": null,
                "model": null,
                "reason": if c.abstained { "abstained" } else { "classifier" },
            }),
        };
        ok += 1;
        writeln!(out, "{v}")?;
    }
    Ok((ok, bad))
}

/// A chat request line; `model` may be omitted (classification does not need it).
fn parse_request_line(line: &str) -> Result<ChatRequest, crate::api::ApiError> {
    let mut v: serde_json::Value = crate::api::chat::parse_json(line.as_bytes())?;
    if let Some(obj) = v.as_object_mut() {
        obj.entry("model").or_insert_with(|| json!("auto"));
    }
    let bytes = serde_json::to_vec(&v).map_err(|e| crate::api::ApiError::internal(e.to_string()))?;
    ChatRequest::parse(&bytes)
}

fn round3(x: f32) -> f64 {
    (x as f64 * 1000.0).round() / 1000.0
}

/// `switchyard eval-classifier`: accuracy, macro-F1, per-class P/R, confusion.
pub fn eval_classifier(clf: &Classifier, file: &Path, as_json: bool) -> Result<String, String> {
    let examples = read_labeled_jsonl(file)?;
    if examples.is_empty() {
        return Err(format!("{}: no labelled examples", file.display()));
    }
    let report = evaluate(clf, &examples);
    if as_json {
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())
    } else {
        Ok(report.to_table())
    }
}

/// `switchyard train-classifier`: trains on every labelled JSONL file under
/// `data` and writes the weights to `out`.
pub fn train_classifier(
    data: &Path,
    out: &Path,
    epochs: Option<usize>,
    buckets_log2: Option<u32>,
    runs: Option<usize>,
) -> Result<String, String> {
    let examples = read_labeled_jsonl(data)?;
    if examples.is_empty() {
        return Err(format!("{}: no labelled examples", data.display()));
    }
    let mut opts = TrainOptions::default();
    if let Some(e) = epochs {
        opts.epochs = e;
    }
    if let Some(b) = buckets_log2 {
        opts.buckets_log2 = b;
    }
    if let Some(r) = runs {
        if r == 0 {
            return Err("--runs must be at least 1".into());
        }
        opts.runs = r;
    }
    let started = std::time::Instant::now();
    let clf = train(&examples, &opts);
    let bytes = clf.to_bytes();
    std::fs::write(out, &bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let train_report = evaluate(&clf, &examples);
    Ok(format!(
        "trained on {} examples, tasks [{}], in {:.1}s; wrote {} ({} bytes); training-set macro-F1 {:.3} \
         (measure generalisation on held-out data with eval-classifier)",
        examples.len(),
        clf.tasks().join(", "),
        started.elapsed().as_secs_f64(),
        out.display(),
        bytes.len(),
        train_report.macro_f1
    ))
}
