//! Training, data loading and evaluation for the task classifier.
//!
//! Owns the labelled-example type and its JSONL reader, the SGD trainer for
//! the multinomial logistic-regression model (float weights during training,
//! quantised to `i16` with one global scale at the end) and the evaluation
//! report (accuracy, macro-F1, per-class precision/recall, confusion matrix).

use std::path::Path;

use serde::Serialize;

use super::features::featurize;
use super::signals::TextStats;
use super::{
    input_from_request, kind_values, stride_for, Classifier, OwnedInput, DEFAULT_TASKS, DEFAULT_THRESHOLD,
    MAX_TASKS,
};

/// One labelled request.
#[derive(Debug, Clone)]
pub struct LabeledExample {
    /// The request.
    pub input: OwnedInput,
    /// Its task label.
    pub task: String,
}

/// Training hyper-parameters.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Passes over the data.
    pub epochs: usize,
    /// Log2 of the number of hash buckets (8..=24).
    pub buckets_log2: u32,
    /// Initial SGD learning rate (decays linearly to a tenth).
    pub learning_rate: f32,
    /// L2 penalty, applied as weight decay on the rows an example touches.
    pub l2: f32,
    /// Seed of the shuffling RNG (training is deterministic given the seed).
    pub seed: u64,
    /// Weight examples so every class has the same total weight.
    pub class_balance: bool,
    /// For examples with a system prompt, also train on a copy whose system
    /// prompt is merged into the user turn (instructions move between the
    /// two in real traffic), at half weight.
    pub merge_system_copies: bool,
    /// Abstention threshold stored in the trained model.
    pub threshold: f32,
    /// Independent SGD runs (seeds `seed`, `seed + 1`, ...) whose weights
    /// are averaged: one run's out-of-domain accuracy swings with the order
    /// it happened to see the data in, the average does not (and costs
    /// nothing at inference: it is still one linear model).
    pub runs: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 12,
            buckets_log2: 15,
            learning_rate: 0.3,
            l2: 1e-3,
            seed: 0x5eed_cafe,
            class_balance: true,
            merge_system_copies: true,
            threshold: DEFAULT_THRESHOLD,
            runs: 5,
        }
    }
}

/// Small deterministic xorshift RNG for shuffling.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Prepared {
    /// (bucket, input value) of every feature occurrence.
    feats: Vec<(u32, f32)>,
    label: usize,
    weight: f32,
}

fn prepare(input: &OwnedInput, log2: u32, label: usize, weight: f32) -> Prepared {
    let mut raw: Vec<(u32, usize)> = Vec::new();
    let counts = featurize(
        &input.as_input(),
        log2,
        &mut |b: u32, k: usize| raw.push((b, k)),
        &mut TextStats::default(),
    );
    let x = kind_values(&counts);
    Prepared {
        feats: raw.into_iter().map(|(b, k)| (b, x[k])).collect(),
        label,
        weight,
    }
}

/// Task list for a training set: the default seven if every label is one of
/// them, otherwise the distinct labels in order of first appearance.
fn task_list(examples: &[LabeledExample]) -> Vec<String> {
    if examples.iter().all(|e| DEFAULT_TASKS.contains(&e.task.as_str())) {
        return DEFAULT_TASKS.iter().map(|s| s.to_string()).collect();
    }
    let mut tasks: Vec<String> = Vec::new();
    for e in examples {
        if !tasks.contains(&e.task) {
            tasks.push(e.task.clone());
        }
    }
    tasks.truncate(MAX_TASKS);
    tasks
}

/// Trains a classifier on `examples` (deterministic for given options).
///
/// Labels beyond the first [`MAX_TASKS`] distinct ones are ignored. An empty
/// training set yields a model that always abstains unless a rule fires.
pub fn train(examples: &[LabeledExample], opts: &TrainOptions) -> Classifier {
    let log2 = opts.buckets_log2.clamp(8, 24);
    let tasks = task_list(examples);
    let n = tasks.len().max(1);
    let stride = stride_for(n);

    let mut data: Vec<Prepared> = Vec::with_capacity(examples.len() * 2);
    for e in examples {
        let Some(label) = tasks.iter().position(|t| *t == e.task) else {
            continue;
        };
        data.push(prepare(&e.input, log2, label, 1.0));
        if opts.merge_system_copies && !e.input.system.is_empty() {
            let merged = OwnedInput {
                system: String::new(),
                last_user: format!("{}\n\n{}", e.input.system, e.input.last_user),
                ..e.input.clone()
            };
            data.push(prepare(&merged, log2, label, 0.5));
        }
    }
    if opts.class_balance && !data.is_empty() {
        let mut totals = vec![0.0f32; n];
        for d in &data {
            totals[d.label] += d.weight;
        }
        let present = totals.iter().filter(|&&t| t > 0.0).count().max(1) as f32;
        let all: f32 = totals.iter().sum();
        for d in &mut data {
            d.weight *= all / (present * totals[d.label]);
        }
    }

    let rows = 1usize << log2;
    let runs = opts.runs.max(1);
    let mut w = vec![0.0f32; rows * stride];
    let mut bias = vec![0.0f32; n];
    for r in 0..runs {
        let (wr, br) = sgd(
            &data,
            opts,
            opts.seed.wrapping_add(r as u64),
            rows * stride,
            stride,
            n,
        );
        for (a, b) in w.iter_mut().zip(&wr) {
            *a += b / runs as f32;
        }
        for (a, b) in bias.iter_mut().zip(&br) {
            *a += b / runs as f32;
        }
    }

    let max_abs = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if max_abs > 0.0 { max_abs / 32767.0 } else { 1.0 };
    let q: Vec<i16> = w
        .iter()
        .map(|v| (v / scale).round().clamp(-32767.0, 32767.0) as i16)
        .collect();
    let tasks_out = if tasks.is_empty() {
        DEFAULT_TASKS.iter().map(|s| s.to_string()).collect()
    } else {
        tasks
    };
    let mut bias_out = bias;
    bias_out.resize(tasks_out.len(), 0.0);
    Classifier::from_parts(tasks_out, log2, scale, bias_out, q, opts.threshold)
        .unwrap_or_else(|_| Classifier::rules_only())
}

/// One SGD run over `data` (shuffled by `seed`): the float weights
/// (`size` = rows x `stride`) and the biases of `n` classes.
fn sgd(
    data: &[Prepared],
    opts: &TrainOptions,
    seed: u64,
    size: usize,
    stride: usize,
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut w = vec![0.0f32; size];
    let mut bias = vec![0.0f32; n];
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = Rng(seed | 1);
    let total_steps = (opts.epochs * data.len()).max(1) as f32;
    let mut step = 0usize;
    let mut z = vec![0.0f32; n];
    let mut g = vec![0.0f32; n];
    for _ in 0..opts.epochs {
        for i in (1..order.len()).rev() {
            let j = rng.below(i + 1);
            order.swap(i, j);
        }
        for &idx in &order {
            let d = &data[idx];
            let lr = opts.learning_rate * (1.0 - 0.9 * step as f32 / total_steps);
            step += 1;
            z.copy_from_slice(&bias);
            for &(f, x) in &d.feats {
                let row = &w[f as usize * stride..f as usize * stride + n];
                for (zk, wk) in z.iter_mut().zip(row) {
                    *zk += wk * x;
                }
            }
            let max = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for zk in z.iter_mut() {
                *zk = (*zk - max).exp();
                sum += *zk;
            }
            for (k, gk) in g.iter_mut().enumerate() {
                let y = if k == d.label { 1.0 } else { 0.0 };
                *gk = (z[k] / sum - y) * d.weight * lr;
            }
            let decay = 1.0 - lr * opts.l2;
            for &(f, x) in &d.feats {
                let row = &mut w[f as usize * stride..f as usize * stride + n];
                for (wk, gk) in row.iter_mut().zip(&g) {
                    *wk = *wk * decay - gk * x;
                }
            }
            for (b, gk) in bias.iter_mut().zip(&g) {
                *b -= gk;
            }
        }
    }
    (w, bias)
}

#[derive(serde::Deserialize)]
struct JsonLine {
    task: String,
    #[serde(flatten)]
    rest: serde_json::Value,
}

/// Reads labelled examples from a JSONL file (one
/// `{"task": ..., "messages": [...], ...}` object per line, optionally with
/// `tools` and `response_format`), or from every `*.jsonl` file of a
/// directory (in name order).
pub fn read_labeled_jsonl(path: &Path) -> Result<Vec<LabeledExample>, String> {
    let mut files = Vec::new();
    if path.is_dir() {
        let rd = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for entry in rd {
            let p = entry.map_err(|e| format!("{}: {e}", path.display()))?.path();
            if p.extension().is_some_and(|x| x == "jsonl") {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: JsonLine =
                serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", f.display(), i + 1))?;
            out.push(LabeledExample {
                input: input_from_request(&v.rest),
                task: v.task,
            });
        }
    }
    Ok(out)
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassMetrics {
    /// Task name.
    pub task: String,
    /// Of the examples predicted as this task, the fraction that were.
    pub precision: f64,
    /// Of the examples of this task, the fraction predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Number of examples of this task.
    pub support: u32,
}

/// Evaluation of a classifier on labelled examples. Predictions count even
/// when the classifier abstained; abstention is reported separately.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Task names (rows and columns of `confusion`).
    pub tasks: Vec<String>,
    /// Fraction of examples predicted correctly.
    pub accuracy: f64,
    /// Mean F1 over the classes that have support.
    pub macro_f1: f64,
    /// Per-class metrics, in task order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u32>>,
    /// Examples evaluated (labels unknown to the model are skipped).
    pub examples: u32,
    /// Examples whose label is not one of the model's tasks.
    pub unknown_labels: u32,
    /// Examples where the classifier abstained.
    pub abstained: u32,
    /// Accuracy on the examples where it did not abstain.
    pub accuracy_when_confident: f64,
    /// Examples decided by a deterministic rule.
    pub rule_decided: u32,
    /// Accuracy of the rule decisions.
    pub rule_accuracy: f64,
}

impl EvalReport {
    /// Human-readable table: summary, per-class metrics, confusion matrix.
    pub fn to_table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "examples {}  accuracy {:.4}  macro-F1 {:.4}  abstained {} (acc when confident {:.4})  rule-decided {} (acc {:.4})",
            self.examples,
            self.accuracy,
            self.macro_f1,
            self.abstained,
            self.accuracy_when_confident,
            self.rule_decided,
            self.rule_accuracy
        );
        let _ = writeln!(
            s,
            "{:<18} {:>9} {:>9} {:>9} {:>8}",
            "task", "precision", "recall", "f1", "support"
        );
        for c in &self.per_class {
            let _ = writeln!(
                s,
                "{:<18} {:>9.3} {:>9.3} {:>9.3} {:>8}",
                c.task, c.precision, c.recall, c.f1, c.support
            );
        }
        let short: Vec<String> = self.tasks.iter().map(|t| t.chars().take(6).collect()).collect();
        let _ = write!(s, "{:<18}", "true \\ pred");
        for t in &short {
            let _ = write!(s, " {t:>6}");
        }
        s.push('\n');
        for (t, row) in self.tasks.iter().zip(&self.confusion) {
            let _ = write!(s, "{t:<18}");
            for v in row {
                let _ = write!(s, " {v:>6}");
            }
            s.push('\n');
        }
        s
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

/// Classifies every example and scores the predictions.
pub fn evaluate(clf: &Classifier, examples: &[LabeledExample]) -> EvalReport {
    let tasks = clf.tasks().to_vec();
    let n = tasks.len();
    let mut confusion = vec![vec![0u32; n]; n];
    let (mut total, mut correct, mut unknown, mut abstained, mut conf_total, mut conf_correct) =
        (0u32, 0u32, 0u32, 0u32, 0u32, 0u32);
    let (mut rules, mut rules_ok) = (0u32, 0u32);
    for e in examples {
        let Some(truth) = clf.task_index(&e.task) else {
            unknown += 1;
            continue;
        };
        let c = clf.classify(&e.input.as_input());
        total += 1;
        confusion[truth][c.task] += 1;
        let ok = c.task == truth;
        correct += u32::from(ok);
        if c.abstained {
            abstained += 1;
        } else {
            conf_total += 1;
            conf_correct += u32::from(ok);
        }
        if c.signal.is_some() {
            rules += 1;
            rules_ok += u32::from(ok);
        }
    }
    let mut per_class = Vec::with_capacity(n);
    let mut f1_sum = 0.0;
    let mut with_support = 0;
    for k in 0..n {
        let tp = confusion[k][k];
        let support: u32 = confusion[k].iter().sum();
        let predicted: u32 = confusion.iter().map(|r| r[k]).sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        if support > 0 {
            f1_sum += f1;
            with_support += 1;
        }
        per_class.push(ClassMetrics {
            task: tasks[k].clone(),
            precision,
            recall,
            f1,
            support,
        });
    }
    EvalReport {
        tasks,
        accuracy: ratio(correct, total),
        macro_f1: if with_support > 0 {
            f1_sum / f64::from(with_support)
        } else {
            0.0
        },
        per_class,
        confusion,
        examples: total,
        unknown_labels: unknown,
        abstained,
        accuracy_when_confident: ratio(conf_correct, conf_total),
        rule_decided: rules,
        rule_accuracy: ratio(rules_ok, rules),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jsonl_file_and_dir() {
        let dir = std::env::temp_dir().join(format!("clf-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = r#"{"id":"a","task":"translation","messages":[{"role":"system","content":"S"},{"role":"user","content":"hola"}],"response_format":{"type":"json_object"}}"#;
        std::fs::write(dir.join("a.jsonl"), format!("{line}\n\n{line}\n")).unwrap();
        std::fs::write(dir.join("b.txt"), "ignored").unwrap();
        let ex = read_labeled_jsonl(&dir).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].task, "translation");
        assert_eq!(ex[0].input.system, "S");
        assert_eq!(ex[0].input.last_user, "hola");
        assert!(ex[0].input.json_schema);
        std::fs::write(dir.join("c.jsonl"), "{not json}\n").unwrap();
        let err = read_labeled_jsonl(&dir).unwrap_err();
        assert!(err.contains("c.jsonl:1"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn report_table_and_metrics() {
        let clf = Classifier::rules_only();
        let ex = vec![LabeledExample {
            input: OwnedInput {
                last_user: "Translate to Spanish: thank you".into(),
                turns: 1,
                ..OwnedInput::default()
            },
            task: "translation".into(),
        }];
        let r = evaluate(&clf, &ex);
        assert_eq!(r.examples, 1);
        assert_eq!(r.rule_decided, 1);
        assert!((r.macro_f1 - 1.0).abs() < 1e-9);
        assert!(r.to_table().contains("translation"));
    }
}
