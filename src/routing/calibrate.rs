//! `switchyard calibrate`: per-model, per-task quality scores measured
//! instead of invented. From the TRAIN parts of the routing data (MMLU and
//! RouterBench correctness, each prompt's task from the classifier; models
//! placed in tiers by their cost per prompt) and from the ledger's feedback
//! (mean latest score per served model and task).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::classifier::Classifier;
use super::routedata::{self, Table, STRONG, WEAK_ROUTELLM};

/// One measured score.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub model: String,
    /// economy / quality / frontier, by cost per prompt in the data.
    pub tier: String,
    pub task: String,
    pub quality: f64,
    pub n: usize,
    pub source: String,
}

fn cell(s: &str) -> Option<f64> {
    match s.trim() {
        "True" | "true" => Some(1.0),
        "False" | "false" => Some(0.0),
        o => o.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// Scores from the training data.
pub fn from_data(dir: &Path, clf: &Classifier) -> Result<Vec<Score>, String> {
    // (model, tier, task) -> (sum, n)
    let mut acc: BTreeMap<(String, String, String), (f64, usize)> = BTreeMap::new();
    let task_of = |text: &str| {
        let c = clf.classify(&super::classifier::ClassifyInput::user(text));
        let t = if c.abstained {
            clf.task_index("simple_chat").unwrap_or(c.task)
        } else {
            c.task
        };
        clf.tasks().get(t).cloned().unwrap_or_default()
    };
    for e in routedata::load_mmlu_outcomes(dir)? {
        let task = task_of(&e.0);
        for (m, tier, q) in [(STRONG, "frontier", e.1), (WEAK_ROUTELLM, "economy", e.2)] {
            let a = acc
                .entry((m.to_string(), tier.to_string(), task.clone()))
                .or_default();
            a.0 += q;
            a.1 += 1;
        }
    }
    for name in ["arc_challenge", "mbpp", "winograde"] {
        let t = Table::read(&dir.join(format!("routerbench_subset_via_routerdc/{name}_train.csv")))?;
        let Some(p) = t.col("prompt") else { continue };
        let tiers = routedata::routerbench_tiers(&t);
        let Some(strong) = tiers.strong else { continue };
        let models: Vec<(usize, String, &str)> = t
            .header
            .iter()
            .filter_map(|h| h.strip_suffix("|total_cost"))
            .filter_map(|m| {
                let q = t.col(m)?;
                let tier = if q == strong {
                    "frontier"
                } else if tiers.cheap.contains(&q) {
                    "economy"
                } else {
                    "quality"
                };
                Some((q, m.to_string(), tier))
            })
            .collect();
        for r in &t.rows {
            let task = task_of(t.get(r, p));
            for (q, m, tier) in &models {
                if let Some(v) = cell(t.get(r, *q)) {
                    let a = acc
                        .entry((m.clone(), tier.to_string(), task.clone()))
                        .or_default();
                    a.0 += v;
                    a.1 += 1;
                }
            }
        }
    }
    Ok(acc
        .into_iter()
        .map(|((model, tier, task), (s, n))| Score {
            model,
            tier,
            task,
            quality: s / n.max(1) as f64,
            n,
            source: "routing-data train (MMLU, RouterBench)".into(),
        })
        .collect())
}

/// Per tier and task: the mean of the models' scores, weighted by prompts.
pub fn by_tier(scores: &[Score]) -> BTreeMap<String, BTreeMap<String, (f64, usize)>> {
    let mut acc: BTreeMap<String, BTreeMap<String, (f64, usize)>> = BTreeMap::new();
    for s in scores {
        let e = acc
            .entry(s.tier.clone())
            .or_default()
            .entry(s.task.clone())
            .or_default();
        e.0 += s.quality * s.n as f64;
        e.1 += s.n;
    }
    for tasks in acc.values_mut() {
        for v in tasks.values_mut() {
            v.0 /= v.1.max(1) as f64;
        }
    }
    acc
}

/// TOML `quality = { ... }` lines per tier (for `[models.*]` of that tier).
pub fn toml_by_tier(scores: &[Score], min_n: usize) -> String {
    let mut out = String::new();
    for (tier, tasks) in by_tier(scores) {
        let parts: Vec<String> = tasks
            .iter()
            .filter(|(_, (_, n))| *n >= min_n)
            .map(|(t, (q, _))| format!("{t} = {:.2}", q))
            .collect();
        out.push_str(&format!("# tier {tier}\nquality = {{ {} }}\n", parts.join(", ")));
    }
    out
}
