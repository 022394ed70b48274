//! Training of the tier predictor (`switchyard train-router`). The default
//! model is the task-map prior ([`Predictor::task_prior`]: nothing is fitted
//! but the quantiles of its scores on the training prompts), which beat the
//! learnt models in leave-one-source-out validation (docs/routing.md).
//! `RouterModel::Logistic` is the learnt alternative: logistic
//! regression with soft labels, AdaGrad SGD in a seeded order, each data
//! source weighted equally and given its own intercept while training (so
//! the weights learn what makes a prompt hard *within* a source, not which
//! source it looks like: MMLU's multiple choice questions are easy for the
//! economy tier, AlpacaEval's open chat is hard, and a model that learnt
//! that would send MT-Bench's maths to the cheap tier and its writing to the
//! dear one). Serving uses the mean of the source intercepts. Single-threaded f32 arithmetic in a fixed order,
//! so a re-run reproduces the weights bit for bit.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};

use super::classifier::Classifier;
use super::predictor::{classifier_view, featurize, group_of, sigmoid, Predictor, DENSE};
use super::routedata::{prompt_hash, TrainExample};

/// Which predictor `train-router` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterModel {
    /// The task-map prior (no fitted weights; quantiles from the training prompts).
    Prior,
    /// Logistic regression on the dense (and hashed word) features.
    Logistic,
    /// The task-map prior's logit plus a logistic model's, trained on its
    /// own (not fitted against the prior).
    PriorPlus,
    /// The task-map prior's groups, each prompt group ordered by its own
    /// model ([`train_grouped`]): the strong group by a logistic model on
    /// the strong-task prompts of MMLU and RouterBench (unless
    /// [`RouterTrainOptions::learn_strong`] is off), the multiple-choice and
    /// open groups (with [`RouterTrainOptions::choice_target`] /
    /// [`RouterTrainOptions::open_target`]) by one on MMLU's and
    /// RouterBench's choice prompts / AlpacaEval's open prompts, any other
    /// group by the prior's complexity. Not shipped: none of its variants
    /// beat the prior in validation (docs/routing.md, third session).
    Grouped,
}

/// Sources whose strong-task prompts train the strong group's model.
pub const STRONG_GROUP_SOURCES: [&str; 2] = ["mmlu", "routerbench"];
/// Sources whose multiple-choice prompts train the choice group's model.
pub const CHOICE_GROUP_SOURCES: [&str; 2] = ["mmlu", "routerbench"];
/// Sources whose open prompts train the open group's model.
pub const OPEN_GROUP_SOURCES: [&str; 1] = ["alpaca_eval"];
/// Bound of a learnt group model's logit (`squash * tanh`): under the
/// prior's gap of 4 between the strong group and the others, so the task
/// map still decides first.
pub const GROUP_SQUASH: f32 = 1.9;

/// What the learnt model is trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The routing label: P(a cheaper tier's answer is as good as the dearest's).
    Label,
    /// How easy the prompt is for every model of its source ([`TrainExample::ease`]).
    Ease,
    /// The cheap tier's own outcome ([`TrainExample::weak`]).
    Weak,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        match s {
            "label" => Ok(Target::Label),
            "ease" => Ok(Target::Ease),
            "weak" => Ok(Target::Weak),
            _ => Err(format!("unknown training target {s:?} (label, ease, weak)")),
        }
    }
}

impl std::str::FromStr for RouterModel {
    type Err = String;
    fn from_str(s: &str) -> Result<RouterModel, String> {
        match s {
            "prior" => Ok(RouterModel::Prior),
            "logistic" => Ok(RouterModel::Logistic),
            "prior+logistic" => Ok(RouterModel::PriorPlus),
            "grouped" => Ok(RouterModel::Grouped),
            _ => Err(format!(
                "unknown router model {s:?} (prior, logistic, prior+logistic, grouped)"
            )),
        }
    }
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct RouterTrainOptions {
    pub model: RouterModel,
    pub epochs: usize,
    pub buckets_log2: u32,
    pub learning_rate: f32,
    /// L2 penalty on the dense weights.
    pub l2_dense: f32,
    /// L2 penalty on the hashed word weights (stronger: they are many and sparse).
    pub l2_hashed: f32,
    pub seed: u64,
    /// Learn hashed word weights (else only the dense features).
    pub words: bool,
    /// What the learnt model predicts (validation always scores the routing label).
    pub target: Target,
    /// Platt-scale the prior's scores on the training labels ([`calibrate`]).
    /// Off by default: see docs/routing.md (the calibrated scores of the
    /// prior all lie near 0.5, which leaves no room for the middle candidates
    /// of a route with three or more).
    pub calibrate: bool,
    /// Grouped model: what the open group's model learns (`None`: the open
    /// group keeps the prior's complexity order).
    pub open_target: Option<Target>,
    /// Grouped model: what the multiple-choice group's model learns (`None`:
    /// the prior's order).
    pub choice_target: Option<Target>,
    /// Grouped model: learn the strong group's model (on `target`); `false`
    /// keeps the prior's order there.
    pub learn_strong: bool,
}

impl Default for RouterTrainOptions {
    fn default() -> Self {
        RouterTrainOptions {
            model: RouterModel::Prior,
            epochs: 12,
            buckets_log2: 12,
            learning_rate: 0.05,
            l2_dense: 1e-5,
            l2_hashed: 1e-4,
            seed: 0x005e_ed12,
            words: true,
            target: Target::Label,
            calibrate: false,
            open_target: None,
            choice_target: None,
            learn_strong: true,
        }
    }
}

/// One featurised example.
#[derive(Clone)]
pub struct Prepared {
    pub dense: [f32; DENSE],
    pub buckets: Vec<u32>,
    pub label: f32,
    /// [`TrainExample::ease`].
    pub ease: f32,
    /// [`TrainExample::weak`].
    pub weak: f32,
    pub weight: f32,
    pub source: &'static str,
}

impl Prepared {
    fn target(&self, t: Target) -> f32 {
        match t {
            Target::Label => self.label,
            Target::Ease => self.ease,
            Target::Weak => self.weak,
        }
    }
}

/// Featurises the examples (classifier included), weighting every source equally.
pub fn prepare(
    clf: &Classifier,
    examples: &[TrainExample],
    log2: u32,
    mut progress: impl FnMut(usize, usize),
) -> Vec<Prepared> {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for e in examples {
        *counts.entry(e.source).or_default() += 1;
    }
    let sources = counts.len().max(1) as f32;
    let total = examples.len() as f32;
    let mut out = Vec::with_capacity(examples.len());
    for (i, e) in examples.iter().enumerate() {
        let input = e.input.as_input();
        let view = classifier_view(clf, &input);
        let mut dense = [0.0; DENSE];
        let mut buckets = Vec::new();
        featurize(&input, &view, log2, true, &mut dense, &mut buckets);
        let n = counts.get(e.source).copied().unwrap_or(1) as f32;
        out.push(Prepared {
            dense,
            buckets,
            label: e.label.clamp(0.0, 1.0),
            ease: e.ease.clamp(0.0, 1.0),
            weak: e.weak.clamp(0.0, 1.0),
            weight: total / (sources * n),
            source: e.source,
        });
        if i % 256 == 0 {
            progress(i, examples.len());
        }
    }
    progress(examples.len(), examples.len());
    out
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Trains on prepared examples; `progress(epoch, epochs)`.
pub fn train(
    data: &[Prepared],
    opts: &RouterTrainOptions,
    mut progress: impl FnMut(usize, usize),
) -> Predictor {
    match opts.model {
        RouterModel::Prior => {
            let mut p = Predictor::task_prior(opts.buckets_log2);
            if opts.calibrate {
                calibrate(&mut p, data);
            }
            p.set_quantiles(data.iter().map(|d| predict_prepared(&p, d)).collect());
            progress(1, 1);
            p
        }
        RouterModel::Logistic => train_logistic(data, opts, progress),
        RouterModel::PriorPlus => {
            let mut p = train_logistic(data, opts, progress);
            // z = prior logit + learnt logit; the learnt weights apply to
            // (x - mean), the prior's to x: move their mean term into the bias.
            let prior = Predictor::task_prior(opts.buckets_log2);
            p.bias += prior.bias;
            for i in 0..DENSE {
                p.dense[i] += prior.dense[i];
                p.bias += prior.dense[i] * p.mean[i];
            }
            p.set_quantiles(data.iter().map(|d| predict_prepared(&p, d)).collect());
            p
        }
        RouterModel::Grouped => {
            let p = train_grouped(data, opts);
            progress(1, 1);
            p
        }
    }
}

/// The prepared examples of `sources` in group `group`, re-weighted so
/// every source carries the same total weight.
fn group_subset(data: &[Prepared], group: usize, sources: &[&str]) -> Vec<Prepared> {
    let mut v: Vec<Prepared> = data
        .iter()
        .filter(|d| group_of(&d.dense) == group && sources.contains(&d.source))
        .cloned()
        .collect();
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for d in &v {
        *counts.entry(d.source).or_default() += 1;
    }
    let (total, k) = (v.len() as f32, counts.len().max(1) as f32);
    for d in &mut v {
        let n = counts.get(d.source).copied().unwrap_or(1) as f32;
        d.weight = total / (k * n);
    }
    v
}

/// [`RouterModel::Grouped`]: the task-map prior's groups
/// ([`Predictor::grouped_prior`]), then the strong group re-ordered by a
/// logistic model (dense features, no words, `opts.target`) fitted on the
/// strong-task prompts of [`STRONG_GROUP_SOURCES`] (unless
/// `opts.learn_strong` is off); with `opts.choice_target`, the
/// multiple-choice group by one fitted on the choice prompts of
/// [`CHOICE_GROUP_SOURCES`]; with `opts.open_target`, the open group by one
/// fitted on the open prompts of [`OPEN_GROUP_SOURCES`]. A learnt group's logit is
/// `offset + GROUP_SQUASH * tanh(z)`, so the prior's group order stays. A
/// group with no training prompt keeps the prior's order.
pub fn train_grouped(data: &[Prepared], opts: &RouterTrainOptions) -> Predictor {
    let mut p = Predictor::grouped_prior(opts.buckets_log2);
    let sub_opts = |target: Target| RouterTrainOptions {
        model: RouterModel::Logistic,
        words: false,
        target,
        ..opts.clone()
    };
    let mut learn = |group: usize, sources: &[&str], target: Target| {
        let part = group_subset(data, group, sources);
        if part.is_empty() {
            return;
        }
        let m = train_logistic(&part, &sub_opts(target), |_, _| {});
        if let Some(g) = p.groups.as_mut() {
            let slot = &mut g[group];
            slot.bias = m.bias;
            slot.w = m.dense;
            slot.mean = m.mean;
            slot.squash = GROUP_SQUASH;
        }
    };
    if opts.learn_strong {
        learn(0, &STRONG_GROUP_SOURCES, opts.target);
    }
    if let Some(t) = opts.choice_target {
        learn(1, &CHOICE_GROUP_SOURCES, t);
    }
    if let Some(t) = opts.open_target {
        learn(2, &OPEN_GROUP_SOURCES, t);
    }
    p.set_quantiles(data.iter().map(|d| predict_prepared(&p, d)).collect());
    p
}

#[allow(clippy::needless_range_loop)]
fn train_logistic(
    data: &[Prepared],
    opts: &RouterTrainOptions,
    mut progress: impl FnMut(usize, usize),
) -> Predictor {
    let mut p = Predictor::untrained(opts.buckets_log2);
    // Weighted feature means, subtracted so the bias carries the base rate.
    let wsum: f64 = data.iter().map(|d| d.weight as f64).sum::<f64>().max(1e-9);
    let mut mean = [0.0f64; DENSE];
    let mut base = 0.0f64;
    for d in data {
        for i in 0..DENSE {
            mean[i] += d.dense[i] as f64 * d.weight as f64;
        }
        base += d.target(opts.target) as f64 * d.weight as f64;
    }
    for i in 0..DENSE {
        p.mean[i] = (mean[i] / wsum) as f32;
    }
    let _ = base;
    // One intercept per source, started at the source's base rate.
    let sources: Vec<&str> = data
        .iter()
        .map(|d| d.source)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let src_of: Vec<usize> = data
        .iter()
        .map(|d| sources.iter().position(|s| *s == d.source).unwrap_or(0))
        .collect();
    let mut src_bias: Vec<f32> = sources
        .iter()
        .map(|s| {
            let (mut y, mut w) = (0.0f64, 0.0f64);
            for d in data.iter().filter(|d| d.source == *s) {
                y += d.target(opts.target) as f64 * d.weight as f64;
                w += d.weight as f64;
            }
            let b = (y / w.max(1e-9)).clamp(1e-3, 1.0 - 1e-3);
            (b / (1.0 - b)).ln() as f32
        })
        .collect();
    let mut g2_src = vec![1e-6f32; sources.len()];
    p.bias = 0.0;
    let mut g2_dense = [1e-6f32; DENSE];
    let mut g2_hashed = vec![1e-6f32; p.hashed.len()];
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = Rng(opts.seed | 1);
    let lr = opts.learning_rate;
    for epoch in 0..opts.epochs {
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for &k in &order {
            let d = &data[k];
            let n = d.buckets.len() as u32;
            let hs: f32 = d.buckets.iter().map(|b| p.hashed[*b as usize]).sum();
            let si = src_of[k];
            let z = p.logit(&d.dense, hs, n) + src_bias[si];
            let g = (sigmoid(z) - d.target(opts.target)) * d.weight;
            g2_src[si] += g * g;
            src_bias[si] -= lr * g / g2_src[si].sqrt();
            for i in 0..DENSE {
                let gi = g * (d.dense[i] - p.mean[i]) + opts.l2_dense * p.dense[i];
                g2_dense[i] += gi * gi;
                p.dense[i] -= lr * gi / g2_dense[i].sqrt();
            }
            if n > 0 && opts.words {
                let x = 1.0 / (n as f32).sqrt();
                for b in &d.buckets {
                    let b = *b as usize;
                    let gi = g * x + opts.l2_hashed * p.hashed[b];
                    g2_hashed[b] += gi * gi;
                    p.hashed[b] -= lr * gi / g2_hashed[b].sqrt();
                }
            }
        }
        progress(epoch + 1, opts.epochs);
    }
    p.bias = if src_bias.is_empty() {
        0.0
    } else {
        src_bias.iter().sum::<f32>() / src_bias.len() as f32
    };
    // Quantiles of the predicted P over the training prompts.
    let scores: Vec<f32> = data.iter().map(|d| predict_prepared(&p, d)).collect();
    p.set_quantiles(scores);
    p
}

/// Platt scaling: refits `P = sigmoid(a * z + b_source)` on the model's
/// logit `z` against the routing labels (source-weighted log loss, one
/// intercept per source as in training, Newton's method with backtracking in
/// f64), and folds `a` and the mean intercept into the weights. The order of
/// the prompts does not change (nothing changes unless `a > 0`), so neither
/// does any APGR or share; `p` becomes an estimate of P(the cheaper tier is
/// as good) for a source of average base rate, instead of the prior's
/// invented scale.
pub fn calibrate(p: &mut Predictor, data: &[Prepared]) {
    if data.is_empty() {
        return;
    }
    let sources: Vec<&str> = data
        .iter()
        .map(|d| d.source)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let src: Vec<usize> = data
        .iter()
        .map(|d| sources.iter().position(|s| *s == d.source).unwrap_or(0))
        .collect();
    let z: Vec<f64> = data
        .iter()
        .map(|d| {
            let hs: f32 = d.buckets.iter().map(|b| p.hashed[*b as usize]).sum();
            p.logit(&d.dense, hs, d.buckets.len() as u32) as f64
        })
        .collect();
    // Parameters: [a, b_0, .., b_{S-1}].
    let k = sources.len() + 1;
    let loss = |x: &[f64]| -> f64 {
        data.iter()
            .enumerate()
            .map(|(i, d)| {
                let q = (1.0 / (1.0 + (-(x[0] * z[i] + x[1 + src[i]])).exp())).clamp(1e-12, 1.0 - 1e-12);
                let y = d.label as f64;
                -(d.weight as f64) * (y * q.ln() + (1.0 - y) * (1.0 - q).ln())
            })
            .sum()
    };
    let mut x = vec![0.0f64; k];
    x[0] = 1.0;
    let mut cur = loss(&x);
    for _ in 0..100 {
        let mut g = vec![0.0f64; k];
        let mut h = vec![vec![0.0f64; k]; k];
        for (i, d) in data.iter().enumerate() {
            let w = d.weight as f64;
            let j = 1 + src[i];
            let q = 1.0 / (1.0 + (-(x[0] * z[i] + x[j])).exp());
            let r = (q - d.label as f64) * w;
            let c = (q * (1.0 - q)).max(1e-12) * w;
            g[0] += r * z[i];
            g[j] += r;
            h[0][0] += c * z[i] * z[i];
            h[0][j] += c * z[i];
            h[j][0] += c * z[i];
            h[j][j] += c;
        }
        for (i, row) in h.iter_mut().enumerate() {
            // A small ridge keeps the step finite when z barely varies.
            row[i] += 1e-9;
        }
        let Some(step) = solve(h, g) else { break };
        // Backtracking: halve the Newton step until the loss does not rise.
        let mut t = 1.0;
        let mut moved = false;
        for _ in 0..40 {
            let nx: Vec<f64> = x.iter().zip(&step).map(|(x, s)| x - t * s).collect();
            let l = loss(&nx);
            if l <= cur {
                x = nx;
                cur = l;
                moved = true;
                break;
            }
            t *= 0.5;
        }
        if !moved || t * step.iter().map(|s| s.abs()).sum::<f64>() < 1e-10 {
            break;
        }
    }
    let a = x[0];
    let b = x[1..].iter().sum::<f64>() / (k - 1) as f64;
    if !(a.is_finite() && b.is_finite() && a > 0.0) {
        return;
    }
    let (a, b) = (a as f32, b as f32);
    p.bias = a * p.bias + b;
    for w in p.dense.iter_mut().chain(p.hashed.iter_mut()) {
        *w *= a;
    }
}

/// Solves `h x = g` by Gaussian elimination with partial pivoting.
fn solve(mut h: Vec<Vec<f64>>, mut g: Vec<f64>) -> Option<Vec<f64>> {
    let n = g.len();
    for c in 0..n {
        let piv = (c..n).max_by(|&i, &j| h[i][c].abs().total_cmp(&h[j][c].abs()))?;
        if h[piv][c].abs() < 1e-18 {
            return None;
        }
        h.swap(c, piv);
        g.swap(c, piv);
        for r in c + 1..n {
            let f = h[r][c] / h[c][c];
            let pivot_row = h[c].clone();
            for (x, p) in h[r].iter_mut().zip(&pivot_row).skip(c) {
                *x -= f * p;
            }
            g[r] -= f * g[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|j| h[r][j] * x[j]).sum();
        x[r] = (g[r] - s) / h[r][r];
    }
    Some(x)
}

/// The trained model's P for a prepared example.
pub fn predict_prepared(p: &Predictor, d: &Prepared) -> f32 {
    let hs: f32 = d.buckets.iter().map(|b| p.hashed[*b as usize]).sum();
    sigmoid(p.logit(&d.dense, hs, d.buckets.len() as u32))
}

/// Weighted log loss and AUC of `p` on `data` (AUC with labels >= 0.5 positive).
pub fn fit_report(p: &Predictor, data: &[Prepared]) -> (f64, f64) {
    let mut loss = 0.0f64;
    let mut w = 0.0f64;
    let mut scored: Vec<(f32, bool)> = Vec::with_capacity(data.len());
    for d in data {
        let s = predict_prepared(p, d).clamp(1e-6, 1.0 - 1e-6) as f64;
        let y = d.label as f64;
        loss -= d.weight as f64 * (y * s.ln() + (1.0 - y) * (1.0 - s).ln());
        w += d.weight as f64;
        scored.push((s as f32, d.label >= 0.5));
    }
    (loss / w.max(1e-9), auc(&mut scored))
}

/// Area under the ROC curve (ties count half).
pub fn auc(scored: &mut [(f32, bool)]) -> f64 {
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = scored.iter().filter(|s| s.1).count() as f64;
    let neg = scored.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return 0.5;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < scored.len() {
        let mut j = i;
        while j + 1 < scored.len() && scored[j + 1].0 == scored[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * scored[i..=j].iter().filter(|s| s.1).count() as f64;
        i = j + 1;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Sorted, de-duplicated hex hashes (one a line) of the training prompts:
/// committed beside the weights so a test can prove no test prompt was trained on.
pub fn hash_list(examples: &[TrainExample]) -> String {
    let set: BTreeSet<u64> = examples.iter().map(|e| prompt_hash(&e.input.last_user)).collect();
    let mut s = String::with_capacity(set.len() * 17);
    for h in set {
        s.push_str(&format!("{h:016x}\n"));
    }
    s
}

/// Parses a [`hash_list`].
pub fn parse_hash_list(text: &str) -> BTreeSet<u64> {
    text.lines()
        .filter_map(|l| u64::from_str_radix(l.trim(), 16).ok())
        .collect()
}

/// A one-line progress bar on stderr (only on a terminal).
pub struct Bar {
    label: &'static str,
    on: bool,
    last: Option<std::time::Instant>,
}

impl Bar {
    pub fn new(label: &'static str, enabled: bool) -> Bar {
        Bar {
            label,
            on: enabled && std::io::stderr().is_terminal(),
            last: None,
        }
    }

    pub fn show(&mut self, done: usize, total: usize) {
        if !self.on {
            return;
        }
        let now = std::time::Instant::now();
        if done < total
            && self
                .last
                .is_some_and(|l| now - l < std::time::Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        let frac = if total == 0 {
            1.0
        } else {
            (done as f64 / total as f64).min(1.0)
        };
        let fill = (frac * 30.0) as usize;
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[2K{} [{}{}] {done}/{total}",
            self.label,
            "#".repeat(fill),
            "-".repeat(30 - fill)
        );
        if done >= total {
            let _ = writeln!(e);
        }
        let _ = e.flush();
    }
}

/// APGR on prepared examples scored with soft labels: the strong tier's
/// quality is 1 and the cheap tier's is the label (its chance of being as good).
pub fn holdout_apgr(p: &Predictor, data: &[Prepared]) -> f64 {
    let scores: Vec<f32> = data.iter().map(|d| predict_prepared(p, d)).collect();
    let labels: Vec<f64> = data.iter().map(|d| d.label as f64).collect();
    soft_apgr(&scores, &labels)
}

/// APGR of `scores` (P of the cheap tier being as good; lowest go to the
/// strong tier first) against soft labels (strong quality 1, cheap quality the label).
pub fn soft_apgr(scores: &[f32], labels: &[f64]) -> f64 {
    let items: Vec<(f64, f64, f64, f64)> = labels.iter().map(|l| (1.0, *l, 1.0, 0.0)).collect();
    let hard: Vec<f64> = scores.iter().map(|s| 1.0 - *s as f64).collect();
    super::replay::apgr(&super::replay::ranking_curve(&items, &hard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::classifier::OwnedInput;
    use crate::routing::predictor::STRONG_TASK;

    fn ex(text: &str, label: f32, source: &'static str) -> TrainExample {
        TrainExample {
            input: OwnedInput {
                last_user: text.into(),
                turns: 1,
                ..OwnedInput::default()
            },
            label,
            ease: label,
            weak: label,
            source,
            part: String::new(),
        }
    }

    fn sample() -> Vec<TrainExample> {
        let mut v = Vec::new();
        for i in 0..40 {
            v.push(ex(&format!("hi there, tell me a fun fact number {i}"), 0.9, "a"));
            v.push(ex(
                &format!("Prove that the integral of x^{i} dx from 0 to 1 equals 1/({i}+1), step by step."),
                0.1,
                "a",
            ));
            // A second source with both kinds: its intercept cannot explain the labels.
            v.push(ex(&format!("hello, one fun fact please ({i})"), 0.8, "b"));
            v.push(ex(
                &format!("Prove step by step that x^{i} grows faster than log x."),
                0.2,
                "b",
            ));
        }
        v
    }

    #[test]
    fn training_is_deterministic_and_learns_the_split() {
        let clf = Classifier::embedded();
        let opts = RouterTrainOptions {
            model: RouterModel::Logistic,
            epochs: 4,
            buckets_log2: 10,
            ..RouterTrainOptions::default()
        };
        let data = prepare(clf, &sample(), opts.buckets_log2, |_, _| {});
        let a = train(&data, &opts, |_, _| {});
        let b = train(
            &prepare(clf, &sample(), opts.buckets_log2, |_, _| {}),
            &opts,
            |_, _| {},
        );
        assert_eq!(a.to_bytes(), b.to_bytes(), "bit-for-bit reproducible");
        let (_, auc) = fit_report(&a, &data);
        assert!(auc > 0.95, "auc {auc}");
        let easy = a.predict(clf, &ex("hello, tell me a fun fact", 0.0, "a").input.as_input());
        let hard = a.predict(
            clf,
            &ex(
                "Prove that the integral of x^7 dx equals 1/8, step by step.",
                0.0,
                "a",
            )
            .input
            .as_input(),
        );
        assert!(easy > hard, "{easy} vs {hard}");
        assert!(a.quantiles.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn prior_model_is_the_task_prior_with_measured_quantiles() {
        let clf = Classifier::embedded();
        let opts = RouterTrainOptions {
            buckets_log2: 10,
            ..RouterTrainOptions::default()
        };
        assert_eq!(opts.model, RouterModel::Prior);
        let data = prepare(clf, &sample(), opts.buckets_log2, |_, _| {});
        let a = train(&data, &opts, |_, _| {});
        let prior = Predictor::task_prior(10);
        assert_eq!(a.dense, prior.dense);
        // Platt-scaled (--calibrate): the same two weights in the same ratio.
        let c = train(
            &data,
            &RouterTrainOptions {
                calibrate: true,
                ..opts.clone()
            },
            |_, _| {},
        );
        let scale = c.dense[STRONG_TASK] / prior.dense[STRONG_TASK];
        assert!(scale > 0.0 && scale != 1.0, "{scale}");
        for (i, (w, w0)) in c.dense.iter().zip(&prior.dense).enumerate() {
            assert!((w - w0 * scale).abs() < 1e-5, "weight {i}: {w} vs {w0} x {scale}");
        }
        assert!(c.hashed.iter().all(|w| *w == 0.0));
        assert_eq!(a.to_bytes(), train(&data, &opts, |_, _| {}).to_bytes());
        assert!(a.quantiles.windows(2).all(|w| w[0] <= w[1]));
        assert!(a.quantiles[0] < a.quantiles[100], "{:?}", a.quantiles);
        // The sample's proofs are reasoning (a strong task), its chat is not.
        let (_, auc) = fit_report(&a, &data);
        assert!(auc > 0.9, "auc {auc}");
    }

    #[test]
    fn grouped_model_learns_inside_the_strong_group_only() {
        let clf = Classifier::embedded();
        // Strong-task prompts (proofs) whose label rises with the amount of
        // numbers (against the prior's complexity order), in both strong-group
        // sources; chat prompts in both too.
        let mut v = Vec::new();
        for i in 0..30 {
            for src in ["mmlu", "routerbench"] {
                v.push(ex(
                    &format!("Prove step by step that x^{i} grows faster than log x."),
                    0.1,
                    src,
                ));
                v.push(ex(
                    &format!(
                        "Prove step by step that {i} + 17 * 23 - 41 / 7 = {} holds, using 12, 35 and 77.",
                        i + 3
                    ),
                    0.9,
                    src,
                ));
                let animal = ["cats", "dogs", "owls", "bees", "frogs", "otters"][i % 6];
                v.push(ex(
                    &format!("hi there! tell me a fun fact about {animal}"),
                    0.8,
                    src,
                ));
            }
        }
        let opts = RouterTrainOptions {
            model: RouterModel::Grouped,
            buckets_log2: 10,
            ..RouterTrainOptions::default()
        };
        let data = prepare(clf, &v, opts.buckets_log2, |_, _| {});
        let groups: Vec<usize> = data.iter().map(|d| group_of(&d.dense)).collect();
        assert!(groups.contains(&0) && groups.contains(&2), "{groups:?}");
        let a = train(&data, &opts, |_, _| {});
        assert_eq!(
            a.to_bytes(),
            train(&data, &opts, |_, _| {}).to_bytes(),
            "deterministic"
        );
        let g = a.groups.as_ref().expect("groups");
        assert_eq!(g[0].squash, GROUP_SQUASH, "the strong group is learnt");
        assert_eq!(
            g[2],
            crate::routing::predictor::Group::prior(2.0),
            "the open group keeps the prior"
        );
        let strong: Vec<Prepared> = data.iter().filter(|d| group_of(&d.dense) == 0).cloned().collect();
        let (_, auc) = fit_report(&a, &strong);
        let (_, auc0) = fit_report(&Predictor::task_prior(10), &strong);
        assert!(auc > 0.95 && auc > auc0, "learnt AUC {auc}, prior {auc0}");
        // Every strong-task prompt still scores below every other prompt.
        let top_strong = strong
            .iter()
            .map(|d| predict_prepared(&a, d))
            .fold(0.0f32, f32::max);
        let low_other = data
            .iter()
            .filter(|d| group_of(&d.dense) != 0)
            .map(|d| predict_prepared(&a, d))
            .fold(1.0f32, f32::min);
        assert!(top_strong < low_other, "{top_strong} vs {low_other}");
        // The open target trains the open group (here: no AlpacaEval prompts, so it stays).
        let b = train(
            &data,
            &RouterTrainOptions {
                open_target: Some(Target::Label),
                ..opts.clone()
            },
            |_, _| {},
        );
        assert_eq!(b.groups.as_ref().map(|g| g[2].squash), Some(0.0));
        // Nothing learnt: exactly the prior's groups.
        let c = train(
            &data,
            &RouterTrainOptions {
                learn_strong: false,
                ..opts.clone()
            },
            |_, _| {},
        );
        assert_eq!(c.groups, Predictor::grouped_prior(10).groups);
    }

    #[test]
    fn platt_scaling_recovers_a_known_calibration() {
        // Soft labels exactly sigmoid(0.5 z - 1) of the model's logit z = x0:
        // the fit must find a = 0.5, b = -1 and keep the order.
        let mut p = Predictor::untrained(4);
        p.dense[0] = 1.0;
        let data: Vec<Prepared> = (0..61)
            .map(|i| {
                let x = (i as f32 - 30.0) / 10.0;
                let mut dense = [0.0; DENSE];
                dense[0] = x;
                Prepared {
                    dense,
                    buckets: Vec::new(),
                    label: sigmoid(0.5 * x - 1.0),
                    ease: 0.0,
                    weak: 0.0,
                    weight: 1.0,
                    source: "a",
                }
            })
            .collect();
        calibrate(&mut p, &data);
        assert!((p.dense[0] - 0.5).abs() < 1e-3, "a = {}", p.dense[0]);
        assert!((p.bias + 1.0).abs() < 1e-3, "b = {}", p.bias);
        // Labels that fall as the score rises: no calibration (it would flip the order).
        let mut q = Predictor::untrained(4);
        q.dense[0] = 1.0;
        let flipped: Vec<Prepared> = data
            .into_iter()
            .map(|mut d| {
                d.label = 1.0 - d.label;
                d
            })
            .collect();
        calibrate(&mut q, &flipped);
        assert_eq!((q.dense[0], q.bias), (1.0, 0.0));
    }

    #[test]
    fn auc_known_values() {
        assert_eq!(auc(&mut [(0.1, false), (0.9, true)]), 1.0);
        assert_eq!(auc(&mut [(0.9, false), (0.1, true)]), 0.0);
        assert_eq!(auc(&mut [(0.5, false), (0.5, true)]), 0.5);
    }

    #[test]
    fn hash_list_round_trip() {
        let l = hash_list(&sample());
        let set = parse_hash_list(&l);
        assert_eq!(set.len(), 160);
        assert!(set.contains(&prompt_hash("hi there, tell me a fun fact number 3")));
    }
}
