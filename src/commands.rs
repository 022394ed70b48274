//! Offline CLI commands over the classifier and routing policy:
//! `classify`, `eval-classifier`, `train-classifier`, `train-router`,
//! `eval-routing`, `calibrate`.

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
    classify_at(cfg, route, None, input, out)
}

/// [`classify`] with the route's predictor threshold overridden
/// (`--threshold`); adds `p_cheap` and `threshold` on predictor routes.
pub fn classify_at(
    cfg: &Config,
    route: &str,
    threshold: Option<f32>,
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
                let d = routing.decide_at(r, &owned.as_input(), None, threshold);
                let mut v = json!({
                    "task": routing.task_name(d.task),
                    "confidence": round3(d.confidence),
                    "complexity": round3(d.complexity),
                    "tier": d.tier,
                    "model": d.chain.first(),
                    "reason": d.reason_text(false),
                });
                if let (Some((p, t)), Some(o)) = (d.predicted, v.as_object_mut()) {
                    o.insert("p_cheap".into(), json!(round3(p)));
                    o.insert("threshold".into(), json!(round3(t)));
                }
                v
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

/// Soft APGR of `p` and of `prior` within each prompt group of `data`
/// (groups of fewer than 20 prompts left out), one line each.
fn group_report(
    p: &crate::routing::predictor::Predictor,
    prior: &crate::routing::predictor::Predictor,
    data: &[crate::routing::train_router::Prepared],
) -> String {
    use crate::routing::predictor::{group_of, GROUP_NAMES};
    use crate::routing::train_router as tr;
    let mut out = String::new();
    for (g, name) in GROUP_NAMES.iter().enumerate() {
        let part: Vec<tr::Prepared> = data.iter().filter(|d| group_of(&d.dense) == g).cloned().collect();
        if part.len() < 20 {
            continue;
        }
        out.push_str(&format!(
            "    group {name}: {} prompts, APGR (soft labels) {:.3} (prior {:.3})\n",
            part.len(),
            tr::holdout_apgr(p, &part),
            tr::holdout_apgr(prior, &part)
        ));
    }
    out
}

/// `switchyard train-router`: trains the tier predictor on the TRAIN parts of
/// the routing data and writes the weights (`out`) and the sorted hash list of
/// the training prompts (`hashes`). Training prompts that are also test
/// prompts are dropped first.
pub fn train_router(
    data: &Path,
    out: &Path,
    hashes: Option<&Path>,
    opts: &crate::routing::train_router::RouterTrainOptions,
    holdout: Option<&str>,
    progress: bool,
) -> Result<String, String> {
    use crate::routing::routedata::TrainExample;
    use crate::routing::{routedata, train_router as tr};
    if !routedata::present(data) {
        return Err(format!(
            "{}: routing data not found (expected its README.md and routellm/)",
            data.display()
        ));
    }
    let started = std::time::Instant::now();
    let mut examples = routedata::load_train(data)?;
    let test: std::collections::HashSet<u64> = routedata::test_prompt_texts(data)?
        .iter()
        .map(|t| routedata::prompt_hash(t))
        .collect();
    let before = examples.len();
    examples.retain(|e| !test.contains(&routedata::prompt_hash(&e.input.last_user)));
    let dropped = before - examples.len();
    let clf = Classifier::embedded();
    if holdout == Some("prior") {
        // No learning: how well do the priors rank each training source? The
        // classifier's complexity alone (higher = harder) and the task-map
        // prior (the shipped model). A check of what transfers, on training data only.
        let mut out = String::new();
        let mut sources: Vec<&str> = examples.iter().map(|e| e.source).collect();
        sources.sort_unstable();
        sources.dedup();
        let prior = crate::routing::predictor::Predictor::task_prior(opts.buckets_log2);
        for src in sources {
            let part: Vec<TrainExample> = examples.iter().filter(|e| e.source == src).cloned().collect();
            let prepared = tr::prepare(clf, &part, opts.buckets_log2, |_, _| {});
            let labels: Vec<f64> = prepared.iter().map(|d| d.label as f64).collect();
            let cx: Vec<f32> = prepared
                .iter()
                .map(|d| 1.0 - d.dense[crate::routing::predictor::COMPLEXITY])
                .collect();
            let tp: Vec<f32> = prepared.iter().map(|d| tr::predict_prepared(&prior, d)).collect();
            for (name, scores) in [("complexity (1 - complexity)", &cx), ("task-map prior", &tp)] {
                let mut scored: Vec<(f32, bool)> =
                    scores.iter().zip(&labels).map(|(s, l)| (*s, *l >= 0.5)).collect();
                let auc = tr::auc(&mut scored);
                let ap = tr::soft_apgr(scores, &labels);
                out.push_str(&format!(
                    "prior {name} on {src}: AUC {auc:.3}, APGR (soft labels) {ap:.3} ({} prompts)\n",
                    part.len()
                ));
            }
        }
        return Ok(out);
    }
    if let Some(spec) = holdout.and_then(|h| {
        h.strip_prefix("cv:")
            .or_else(|| h.strip_prefix("cvall:"))
            .map(|s| (h, s))
    }) {
        // 5-fold cross-validation within one source (cv:) or with the other
        // sources always in the training part (cvall:).
        let (h, src) = spec;
        let with_rest = h.starts_with("cvall:");
        let mut lines = String::new();
        let (mut sum_apgr, mut sum_auc) = (0.0, 0.0);
        let own: Vec<&TrainExample> = examples.iter().filter(|e| e.source == src).collect();
        if own.is_empty() {
            return Err(format!("--holdout {h}: no such source"));
        }
        for fold in 0..5 {
            let test: Vec<TrainExample> = own
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 5 == fold)
                .map(|(_, e)| (*e).clone())
                .collect();
            let mut train: Vec<TrainExample> = own
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 5 != fold)
                .map(|(_, e)| (*e).clone())
                .collect();
            if with_rest {
                train.extend(examples.iter().filter(|e| e.source != src).cloned());
            }
            let a = tr::prepare(clf, &train, opts.buckets_log2, |_, _| {});
            let b = tr::prepare(clf, &test, opts.buckets_log2, |_, _| {});
            let p = tr::train(&a, opts, |_, _| {});
            let (_, auc) = tr::fit_report(&p, &b);
            let ap = tr::holdout_apgr(&p, &b);
            sum_apgr += ap;
            sum_auc += auc;
            lines.push_str(&format!("  fold {fold}: AUC {auc:.3}, APGR {ap:.3}\n"));
        }
        return Ok(format!(
            "{h}: mean AUC {:.3}, mean APGR (soft labels) {:.3}\n{lines}",
            sum_auc / 5.0,
            sum_apgr / 5.0
        ));
    }
    if let Some(src) = holdout.and_then(|h| h.strip_prefix("parts:")) {
        // Leave one part of a source out at a time (AlpacaEval's subsets,
        // MMLU's subjects, RouterBench's sets): train on everything else.
        let mut parts: Vec<String> = examples
            .iter()
            .filter(|e| e.source == src)
            .map(|e| e.part.clone())
            .collect();
        parts.sort();
        parts.dedup();
        if parts.is_empty() {
            return Err(format!("--holdout parts:{src}: no such source"));
        }
        let prior = crate::routing::predictor::Predictor::task_prior(opts.buckets_log2);
        let mut lines = String::new();
        let (mut sum, mut sum_prior, mut below) = (0.0, 0.0, 0usize);
        for part in &parts {
            let (held, rest): (Vec<TrainExample>, Vec<TrainExample>) = examples
                .iter()
                .cloned()
                .partition(|e| e.source == src && &e.part == part);
            let a = tr::prepare(clf, &rest, opts.buckets_log2, |_, _| {});
            let b = tr::prepare(clf, &held, opts.buckets_log2, |_, _| {});
            let p = tr::train(&a, opts, |_, _| {});
            let (ap, ap0) = (tr::holdout_apgr(&p, &b), tr::holdout_apgr(&prior, &b));
            let ((_, auc), (_, auc0)) = (tr::fit_report(&p, &b), tr::fit_report(&prior, &b));
            sum += ap;
            sum_prior += ap0;
            below += usize::from(ap < ap0);
            lines.push_str(&format!(
                "  {part}: {} prompts: APGR (soft labels) {ap:.3}, AUC {auc:.3} (prior {ap0:.3}, AUC {auc0:.3})\n{}",
                held.len(),
                group_report(&p, &prior, &b)
            ));
        }
        let k = parts.len() as f64;
        return Ok(format!(
            "holdout parts:{src}: {} parts, mean APGR (soft labels) {:.3} (prior {:.3}); {below} below the prior\n{lines}",
            parts.len(),
            sum / k,
            sum_prior / k
        ));
    }
    if let Some(h) = holdout {
        // Validation on the training data only: train without one source, score it.
        let (held, rest): (Vec<TrainExample>, Vec<TrainExample>) =
            examples.into_iter().partition(|e| e.source == h);
        if held.is_empty() {
            return Err(format!(
                "--holdout {h}: no such source (alpaca_eval, mmlu, routerbench)"
            ));
        }
        let a = tr::prepare(clf, &rest, opts.buckets_log2, |_, _| {});
        let b = tr::prepare(clf, &held, opts.buckets_log2, |_, _| {});
        let p = tr::train(&a, opts, |_, _| {});
        let (loss, auc) = tr::fit_report(&p, &b);
        let prior = crate::routing::predictor::Predictor::task_prior(opts.buckets_log2);
        return Ok(format!(
            "holdout {h}: {} prompts, trained on {}: log loss {loss:.4}, AUC {auc:.3}, APGR (soft labels) {:.3} (prior {:.3})\n{}",
            held.len(),
            rest.len(),
            tr::holdout_apgr(&p, &b),
            tr::holdout_apgr(&prior, &b),
            group_report(&p, &prior, &b)
        ));
    }
    let mut bar = tr::Bar::new("featurise", progress);
    let prepared = tr::prepare(clf, &examples, opts.buckets_log2, |d, t| bar.show(d, t));
    let mut bar = tr::Bar::new("train    ", progress);
    let mut p = tr::train(&prepared, opts, |d, t| bar.show(d, t));
    let mut per_source: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for e in &examples {
        *per_source.entry(e.source).or_default() += 1;
    }
    p.provenance = format!(
        "switchyard train-router; model {:?}; target {:?}; calibrated {}; features v{}; {} prompts ({}); epochs {}, buckets 2^{}, lr {}, l2 {}/{}, seed {:#x}",
        opts.model,
        opts.target,
        opts.calibrate,
        crate::routing::predictor::FEATURE_VERSION,
        examples.len(),
        per_source
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        opts.epochs,
        opts.buckets_log2,
        opts.learning_rate,
        opts.l2_dense,
        opts.l2_hashed,
        opts.seed
    );
    let bytes = p.to_bytes();
    std::fs::write(out, &bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    if let Some(h) = hashes {
        std::fs::write(h, tr::hash_list(&examples))
            .map_err(|e| format!("cannot write {}: {e}", h.display()))?;
    }
    let mut report = format!(
        "trained on {} prompts ({}; {dropped} dropped as test prompts) in {:.1}s; wrote {} ({} bytes)\n",
        examples.len(),
        per_source
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64(),
        out.display(),
        bytes.len()
    );
    for src in per_source.keys() {
        let part: Vec<tr::Prepared> = prepared
            .iter()
            .filter(|d| d.source == *src)
            .map(|d| tr::Prepared {
                weight: 1.0,
                ..d.clone()
            })
            .collect();
        let (loss, auc) = tr::fit_report(&p, &part);
        report.push_str(&format!(
            "  training fit {src}: log loss {loss:.4}, AUC {auc:.3}\n"
        ));
    }
    let mut w: Vec<(f32, &str)> = p
        .dense
        .iter()
        .zip(crate::routing::predictor::DENSE_NAMES)
        .map(|(w, n)| (*w, n))
        .collect();
    w.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()));
    report.push_str("  dense weights (positive: the cheap tier more likely as good):");
    for (v, n) in w {
        report.push_str(&format!(" {n} {v:+.2}"));
    }
    report.push('\n');
    Ok(report)
}

/// `switchyard eval-routing`: every test set replayed on `route`.
pub fn eval_routing(
    cfg: &Config,
    route: &str,
    data: &Path,
    sets: &[String],
    progress: bool,
) -> Result<Vec<crate::routing::replay::SetReport>, String> {
    use crate::routing::{replay, routedata, train_router::Bar};
    let r = cfg
        .routing
        .routes
        .get(route)
        .ok_or_else(|| format!("route {route:?} does not exist in the config"))?;
    let mut out = Vec::new();
    for set in routedata::load_tests(data)? {
        if !sets.is_empty() && !sets.contains(&set.name) {
            continue;
        }
        let mut bar = Bar::new("replay", progress);
        out.push(replay::replay_set(cfg, r, &set, |d, t| bar.show(d, t))?);
    }
    Ok(out)
}
