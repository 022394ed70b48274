//! Per-prompt tier predictor: how likely is a cheaper tier's answer to be as
//! good as the strongest candidate's?
//!
//! A logistic model over a few dozen dense features (the task classifier's
//! task, probabilities and complexity, length, code, math, constraint and
//! structure signals, turn count) plus hashed word unigrams and bigrams of
//! the last user turn. It learns *tiers*, not model names: a label is "an
//! economy-tier answer was at least as good as the frontier-tier one" (see
//! `train_router.rs` and docs/routing.md). The shipped weights are the
//! task-map prior ([`Predictor::task_prior`]): the seed task map orders the
//! tasks, the classifier's complexity orders the prompts within a task;
//! it beat every learnt model in validation on the training sources.
//! Weights are written by `switchyard train-router` and embedded with
//! `include_bytes!`. The text is only scanned when a weight reads it (the
//! prior reads none of the text features); no heap allocation.

use std::sync::OnceLock;

use super::classifier::{Classification, Classifier, ClassifyInput, DEFAULT_TASKS};

/// Dense feature count (see [`DENSE_NAMES`]).
pub const DENSE: usize = 33;
/// Bytes of the last user turn read for word features (head, then tail).
pub const HEAD_BYTES: usize = 2048;
pub const TAIL_BYTES: usize = 512;
/// Bumped whenever the features change (stored in the weights file).
pub const FEATURE_VERSION: u32 = 2;

const MAGIC: [u8; 8] = *b"SWYDRTR\0";
/// 2: adds the optional per-group models ([`Group`]); files of format 1 still load.
const FORMAT_VERSION: u32 = 2;
/// Quantile points of the training-set score distribution kept in the file.
pub const QUANTILES: usize = 101;

static EMBEDDED_BYTES: &[u8] = include_bytes!("../../assets/router.bin");

/// What each dense feature is (documentation and `--explain` output).
pub const DENSE_NAMES: [&str; DENSE] = [
    "p_simple_chat",
    "p_code_generation",
    "p_summarization",
    "p_complex_reasoning",
    "p_extraction",
    "p_translation",
    "p_creative_writing",
    "complexity",
    "classifier_confidence",
    "log_user_len",
    "log_system_len",
    "turns",
    "has_tools",
    "json_schema",
    "digit_density",
    "operator_density",
    "code_symbol_density",
    "log_lines",
    "questions",
    "log_words",
    "mean_word_len",
    "math_words",
    "code_words",
    "constraint_words",
    "open_ended_words",
    "reasoning_words",
    "choice_lines",
    "follow_up",
    "non_ascii_density",
    "upper_density",
    "list_lines",
    "numbers",
    "strong_task",
];

/// Index of the `complexity` feature.
pub const COMPLEXITY: usize = 7;
/// Index of the `strong_task` feature: 1 when the request's task is one the
/// seed task map sends to the frontier tier ([`STRONG_TASKS`]).
pub const STRONG_TASK: usize = 32;
/// Index of the `choice_lines` feature (multiple-choice lines, `A.` / `(A)`).
pub const CHOICE_LINES: usize = 26;
/// Prompt groups a grouped predictor orders with a model each ([`group_of`]).
pub const GROUPS: usize = 3;
/// [`group_of`]'s names: a strong task; a multiple-choice question (not a
/// strong task); every other (open) prompt.
pub const GROUP_NAMES: [&str; GROUPS] = ["strong", "choice", "open"];

/// The group of a request from its dense features: 0 = a strong task
/// ([`STRONG_TASKS`]), 1 = multiple-choice lines, 2 = open.
#[inline]
pub fn group_of(dense: &[f32; DENSE]) -> usize {
    if dense[STRONG_TASK] > 0.5 {
        0
    } else if dense[CHOICE_LINES] > 0.0 {
        1
    } else {
        2
    }
}

/// The model of one prompt group: `offset + f(bias + w . (x - mean))`, with
/// `f(z) = squash * tanh(z)` when `squash > 0` (bounded, so the offsets keep
/// the groups in order) and `f(z) = z` otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub offset: f32,
    pub bias: f32,
    pub squash: f32,
    pub w: [f32; DENSE],
    pub mean: [f32; DENSE],
}

impl Group {
    /// The task-map prior's part for a group: `offset - 2 * complexity`.
    pub fn prior(offset: f32) -> Group {
        let mut w = [0.0; DENSE];
        w[COMPLEXITY] = -2.0;
        Group {
            offset,
            bias: 0.0,
            squash: 0.0,
            w,
            mean: [0.0; DENSE],
        }
    }

    #[allow(clippy::needless_range_loop)]
    #[inline]
    fn logit(&self, dense: &[f32; DENSE]) -> f32 {
        let mut z = self.bias;
        for i in 0..DENSE {
            z += self.w[i] * (dense[i] - self.mean[i]);
        }
        if self.squash > 0.0 {
            self.offset + self.squash * z.tanh()
        } else {
            self.offset + z
        }
    }
}

/// Tasks the seed task map (docs/routing.md) routes to the frontier tier.
pub const STRONG_TASKS: [&str; 2] = ["code_generation", "complex_reasoning"];
/// Dense features computed from the text scan (skipped when none of them,
/// and no hashed word, has a weight).
const SCANNED: [usize; 17] = [14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31];

/// What the predictor reads from the task classifier (one classifier pass,
/// see [`classifier_view`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// Task probabilities in [`DEFAULT_TASKS`] order.
    pub probs: [f32; 7],
    pub confidence: f32,
    pub complexity: f32,
    /// The request's task (rules applied, or forced by the caller) is in [`STRONG_TASKS`].
    pub strong_task: bool,
}

/// Receives the features of one request.
pub trait Sink {
    /// One hashed word feature (a bucket index); every occurrence counts.
    fn hashed(&mut self, bucket: u32);
}

/// Collects bucket indices (training).
impl Sink for Vec<u32> {
    fn hashed(&mut self, bucket: u32) {
        self.push(bucket);
    }
}

/// Sums weights (inference).
struct Summer<'a> {
    w: &'a [f32],
    sum: f32,
    n: u32,
}

impl Sink for Summer<'_> {
    #[inline]
    fn hashed(&mut self, bucket: u32) {
        self.sum += self.w.get(bucket as usize).copied().unwrap_or(0.0);
        self.n += 1;
    }
}

#[inline]
fn fnv(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
}

#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[inline]
fn to_bucket(key: u64, log2: u32) -> u32 {
    (mix(key) >> (64 - log2)) as u32
}

fn keyword_class(w: &[u8]) -> u8 {
    match w {
        b"calculate" | b"compute" | b"solve" | b"equation" | b"probability" | b"integral" | b"derivative"
        | b"sum" | b"total" | b"percent" | b"percentage" | b"average" | b"multiply" | b"divide" | b"math"
        | b"geometry" | b"algebra" | b"area" | b"ratio" | b"prove" | b"theorem" | b"many" | b"much"
        | b"cost" | b"costs" | b"price" => 1,
        b"code" | b"function" | b"python" | b"program" | b"implement" | b"script" | b"bug" | b"sql"
        | b"regex" | b"class" | b"javascript" | b"java" | b"algorithm" | b"api" | b"compile" | b"error"
        | b"c" | b"rust" | b"html" | b"css" | b"query" => 2,
        b"must" | b"exactly" | b"least" | b"only" | b"without" | b"each" | b"every" | b"format"
        | b"words" | b"sentences" | b"limit" | b"ensure" | b"json" | b"table" | b"list" | b"include"
        | b"should" => 3,
        b"write" | b"story" | b"poem" | b"essay" | b"blog" | b"imagine" | b"describe" | b"opinion"
        | b"tell" | b"ideas" | b"suggest" | b"recommend" | b"song" | b"joke" | b"email" | b"letter"
        | b"pretend" | b"role" | b"character" => 4,
        b"why" | b"explain" | b"reason" | b"reasoning" | b"step" | b"logic" | b"riddle" | b"puzzle"
        | b"deduce" | b"infer" | b"therefore" | b"if" | b"assume" | b"compare" => 5,
        _ => 0,
    }
}

/// Byte and word statistics of one text, for the dense features.
#[derive(Default)]
struct Scan {
    words: u32,
    word_bytes: u32,
    digits: u32,
    operators: u32,
    code_syms: u32,
    lines: u32,
    questions: u32,
    non_ascii: u32,
    upper: u32,
    choice_lines: u32,
    list_lines: u32,
    numbers: u32,
    kw: [u32; 6],
    scanned: u32,
}

/// Scans `text` (words hashed into `sink` when `hash` is set).
fn scan_text(text: &[u8], log2: u32, ns: u64, hash: bool, st: &mut Scan, sink: &mut impl Sink) {
    let mut word = [0u8; 24];
    let mut wlen = 0usize;
    let mut wh: u64 = 0xcbf2_9ce4_8422_2325 ^ ns;
    let mut prev: u64 = 0;
    let mut line_start = true;
    let mut line_pos = 0usize;
    let mut line_head = [0u8; 4];
    let mut all_digits = true;
    let end_word = |st: &mut Scan,
                    word: &[u8; 24],
                    wlen: usize,
                    wh: u64,
                    all_digits: bool,
                    prev: &mut u64,
                    sink: &mut dyn FnMut(u32)| {
        st.words += 1;
        st.word_bytes += wlen as u32;
        if all_digits {
            st.numbers += 1;
        }
        if wlen <= word.len() {
            let k = keyword_class(&word[..wlen]);
            if k > 0 {
                st.kw[k as usize] += 1;
            }
        }
        if hash {
            let h = if all_digits { ns ^ 0x5151 } else { wh };
            sink(to_bucket(h, log2));
            if *prev != 0 {
                sink(to_bucket(prev.rotate_left(17) ^ h ^ 0x9e37_79b9, log2));
            }
            *prev = h;
        }
    };
    let mut push = |b: u32| sink.hashed(b);
    for &b in text {
        st.scanned += 1;
        let is_word = b.is_ascii_alphanumeric() || b == b'_' || b == b'\'' || b >= 0x80;
        if b >= 0x80 {
            st.non_ascii += 1;
        }
        if is_word {
            let lb = b.to_ascii_lowercase();
            if b.is_ascii_uppercase() {
                st.upper += 1;
            }
            if b.is_ascii_digit() {
                st.digits += 1;
            } else {
                all_digits = false;
            }
            if wlen < word.len() {
                word[wlen] = lb;
            }
            wlen += 1;
            wh = fnv(wh, lb);
        } else {
            if wlen > 0 {
                end_word(st, &word, wlen, wh, all_digits, &mut prev, &mut push);
                wlen = 0;
                wh = 0xcbf2_9ce4_8422_2325 ^ ns;
                all_digits = true;
            }
            match b {
                b'+' | b'-' | b'*' | b'/' | b'^' | b'=' | b'%' => st.operators += 1,
                b'?' => st.questions += 1,
                _ => {}
            }
            if matches!(b, b'{' | b'}' | b'(' | b')' | b';' | b'[' | b']' | b'<' | b'>') {
                st.code_syms += 1;
            }
        }
        if b == b'\n' {
            if !line_start {
                st.lines += 1;
            }
            line_start = true;
            line_pos = 0;
            // A sentence end resets the bigram chain too.
            prev = 0;
            continue;
        }
        if line_start && !b.is_ascii_whitespace() {
            line_start = false;
        }
        if !line_start && line_pos < 4 {
            line_head[line_pos] = b;
            line_pos += 1;
            if line_pos == 2 || line_pos == 3 {
                let h = &line_head[..line_pos];
                let choice = matches!(h, [b'A'..=b'E', b'.' | b')'] | [b'(', b'A'..=b'E', b')']);
                if choice && (line_pos == 2) == (h[0] != b'(') {
                    st.choice_lines += 1;
                }
                if line_pos == 2
                    && (matches!(h, [b'-' | b'*', b' ']) || (h[0].is_ascii_digit() && h[1] == b'.'))
                {
                    st.list_lines += 1;
                }
            }
        }
        if b == b'.' || b == b'!' || b == b'?' {
            prev = 0;
        }
    }
    if wlen > 0 {
        end_word(st, &word, wlen, wh, all_digits, &mut prev, &mut push);
    }
    if !line_start {
        st.lines += 1;
    }
}

/// Head and tail windows of a long text (each cut at a char boundary is not
/// needed: features read bytes).
fn windows(t: &[u8]) -> (&[u8], &[u8]) {
    if t.len() <= HEAD_BYTES + TAIL_BYTES {
        (t, &[])
    } else {
        (&t[..HEAD_BYTES], &t[t.len() - TAIL_BYTES..])
    }
}

#[inline]
fn ln1(x: f32) -> f32 {
    (1.0 + x).ln()
}

/// Computes the dense features into `dense` and feeds hashed word features to
/// `sink`. `view` is the classifier's outcome. With `scan` false the text is
/// not read: the scanned features stay 0 and no word reaches `sink` (for
/// weights that read neither).
pub fn featurize(
    input: &ClassifyInput<'_>,
    view: &View,
    log2: u32,
    scan: bool,
    dense: &mut [f32; DENSE],
    sink: &mut impl Sink,
) {
    let user = input.last_user.as_bytes();
    dense[..7].copy_from_slice(&view.probs);
    dense[COMPLEXITY] = view.complexity;
    dense[8] = view.confidence;
    dense[9] = ln1(user.len() as f32) / 8.0;
    dense[10] = ln1(input.system.len() as f32) / 8.0;
    dense[11] = (input.turns.min(12) as f32) / 12.0;
    dense[12] = f32::from(u8::from(input.has_tools));
    dense[13] = f32::from(u8::from(input.json_schema));
    dense[27] = f32::from(u8::from(!input.context.is_empty()));
    dense[STRONG_TASK] = f32::from(u8::from(view.strong_task));
    if !scan {
        for i in SCANNED {
            dense[i] = 0.0;
        }
        return;
    }
    let (a, b) = windows(user);
    let mut st = Scan::default();
    scan_text(a, log2, 0x11, true, &mut st, sink);
    if !b.is_empty() {
        scan_text(b, log2, 0x11, true, &mut st, sink);
    }
    if !input.context.is_empty() {
        let (c, _) = windows(input.context.as_bytes());
        let mut cs = Scan::default();
        scan_text(&c[..c.len().min(512)], log2, 0x22, true, &mut cs, sink);
    }
    let n = st.scanned.max(1) as f32;
    let words = st.words.max(1) as f32;
    dense[14] = (st.digits as f32 / n * 8.0).min(1.0);
    dense[15] = (st.operators as f32 / n * 20.0).min(1.0);
    dense[16] = (st.code_syms as f32 / n * 20.0).min(1.0);
    dense[17] = ln1(st.lines as f32) / 5.0;
    dense[18] = (st.questions.min(6) as f32) / 6.0;
    dense[19] = ln1(st.words as f32) / 8.0;
    dense[20] = (st.word_bytes as f32 / words / 10.0).min(1.5);
    for (k, slot) in (1..=5).zip(21..=25) {
        dense[slot] = ln1(st.kw[k] as f32) / 3.0;
    }
    dense[26] = (st.choice_lines.min(5) as f32) / 5.0;
    dense[28] = (st.non_ascii as f32 / n * 2.0).min(1.0);
    dense[29] = (st.upper as f32 / n * 10.0).min(1.0);
    dense[30] = ln1(st.list_lines as f32) / 3.0;
    dense[31] = ln1(st.numbers as f32) / 4.0;
}

/// The classifier's view of a request from one classifier pass: task
/// probabilities in [`DEFAULT_TASKS`] order (zeros for tasks the classifier
/// does not have), the top task's confidence, complexity, and whether the
/// classified task is one of [`STRONG_TASKS`].
pub fn classifier_view(clf: &Classifier, input: &ClassifyInput<'_>) -> View {
    let (c, p) = clf.classify_with_probabilities(input);
    view_from(clf, &c, &p, None)
}

/// [`View`] from a classification and its probabilities; `task` overrides
/// the classified task (e.g. forced by a request header).
pub fn view_from(clf: &Classifier, c: &Classification, probs: &[f32], task: Option<usize>) -> View {
    let task = task.unwrap_or(c.task);
    View {
        probs: task_probs_from(clf, probs),
        confidence: c.confidence,
        complexity: c.complexity,
        strong_task: clf
            .tasks()
            .get(task)
            .is_some_and(|t| STRONG_TASKS.contains(&t.as_str())),
    }
}

/// The classifier's task probabilities in [`DEFAULT_TASKS`] order.
pub fn task_probs(clf: &Classifier, input: &ClassifyInput<'_>) -> [f32; 7] {
    task_probs_from(clf, &clf.probabilities(input))
}

/// Reorders the classifier's probabilities (its task order) into
/// [`DEFAULT_TASKS`] order.
pub fn task_probs_from(clf: &Classifier, p: &[f32]) -> [f32; 7] {
    let tasks = clf.tasks();
    let mut out = [0.0; 7];
    for (i, name) in DEFAULT_TASKS.iter().enumerate() {
        // The shipped classifier has exactly these tasks in this order.
        let k = if tasks.get(i).is_some_and(|t| t == name) {
            Some(i)
        } else {
            clf.task_index(name)
        };
        if let Some(k) = k {
            out[i] = p.get(k).copied().unwrap_or(0.0);
        }
    }
    out
}

#[inline]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Predictor weights (trained, or the task-map prior).
#[derive(Debug)]
pub struct Predictor {
    pub buckets_log2: u32,
    pub bias: f32,
    pub dense: [f32; DENSE],
    /// Feature means subtracted before the dense weights apply.
    pub mean: [f32; DENSE],
    pub hashed: Vec<f32>,
    /// Quantiles of the predicted P over the training prompts (0%, 1%, ..., 100%),
    /// used to turn a target share of strong calls into a threshold.
    pub quantiles: [f32; QUANTILES],
    /// Free-text provenance (training sets, counts, command).
    pub provenance: String,
    /// Per-group models ([`group_of`]), added to the logit above when present.
    pub groups: Option<Box<[Group; GROUPS]>>,
    /// Whether any weight reads the text scan (computed on first use; set
    /// the weights before predicting).
    reads_text: OnceLock<bool>,
}

impl Clone for Predictor {
    /// A clone recomputes [`Predictor::reads_text`] (its weights may be changed).
    fn clone(&self) -> Predictor {
        Predictor {
            buckets_log2: self.buckets_log2,
            bias: self.bias,
            dense: self.dense,
            mean: self.mean,
            hashed: self.hashed.clone(),
            quantiles: self.quantiles,
            provenance: self.provenance.clone(),
            groups: self.groups.clone(),
            reads_text: OnceLock::new(),
        }
    }
}

impl PartialEq for Predictor {
    fn eq(&self, o: &Predictor) -> bool {
        self.buckets_log2 == o.buckets_log2
            && self.bias == o.bias
            && self.dense == o.dense
            && self.mean == o.mean
            && self.hashed == o.hashed
            && self.quantiles == o.quantiles
            && self.provenance == o.provenance
            && self.groups == o.groups
    }
}

impl Predictor {
    /// The built-in weights (`assets/router.bin`).
    pub fn embedded() -> &'static Predictor {
        static P: OnceLock<Predictor> = OnceLock::new();
        P.get_or_init(|| {
            Predictor::from_bytes(EMBEDDED_BYTES).unwrap_or_else(|e| {
                // Never silent: every predictor route would score every prompt 0.5.
                tracing::error!(
                    "the embedded tier-predictor weights do not parse ({e}); predictor routes use untrained weights (P = 0.5 for every prompt)"
                );
                Predictor::untrained(12)
            })
        })
    }

    /// All-zero weights: P = 0.5 for every prompt.
    pub fn untrained(buckets_log2: u32) -> Predictor {
        Predictor {
            buckets_log2,
            bias: 0.0,
            dense: [0.0; DENSE],
            mean: [0.0; DENSE],
            hashed: vec![0.0; 1 << buckets_log2],
            quantiles: std::array::from_fn(|_| 0.5),
            provenance: "untrained".into(),
            groups: None,
            reads_text: OnceLock::new(),
        }
    }

    /// The task-map prior, no learning: the seed task map orders the tasks
    /// (a [`STRONG_TASKS`] request is far less likely to be served as well by
    /// a cheaper tier), the classifier's complexity orders the prompts within
    /// a task. `logit = 2 - 4 * strong_task - 2 * complexity` (complexity is
    /// in [0, 1], so the task always dominates). Quantiles are all 0.5 until
    /// [`Predictor::set_quantiles`] measures them.
    pub fn task_prior(buckets_log2: u32) -> Predictor {
        let mut p = Predictor::untrained(buckets_log2);
        p.bias = 2.0;
        p.dense[STRONG_TASK] = -4.0;
        p.dense[COMPLEXITY] = -2.0;
        p.provenance = "task-map prior".into();
        p
    }

    /// Sets the quantiles from predicted scores (any order).
    pub fn set_quantiles(&mut self, mut scores: Vec<f32>) {
        scores.sort_by(f32::total_cmp);
        if !scores.is_empty() {
            for (q, slot) in self.quantiles.iter_mut().enumerate() {
                let idx = (q * (scores.len() - 1)) / (QUANTILES - 1);
                *slot = scores[idx];
            }
        }
    }

    /// Whether a weight reads the text scan (hashed words or scanned
    /// features; per-group models always do: the group reads `choice_lines`).
    pub fn reads_text(&self) -> bool {
        *self.reads_text.get_or_init(|| {
            self.groups.is_some()
                || self.hashed.iter().any(|w| *w != 0.0)
                || SCANNED.iter().any(|&i| self.dense[i] != 0.0)
        })
    }

    /// The task-map prior as per-group models (the same scores as
    /// [`Predictor::task_prior`]): the start of a grouped model.
    pub fn grouped_prior(buckets_log2: u32) -> Predictor {
        let mut p = Predictor::untrained(buckets_log2);
        p.groups = Some(Box::new([
            Group::prior(-2.0),
            Group::prior(2.0),
            Group::prior(2.0),
        ]));
        p.provenance = "task-map prior, per group".into();
        p
    }

    /// Logit of the dense part plus `hashed_sum / sqrt(n)`, plus the
    /// request's group model when there are per-group models.
    #[allow(clippy::needless_range_loop)]
    pub fn logit(&self, dense: &[f32; DENSE], hashed_sum: f32, n: u32) -> f32 {
        let mut z = self.bias;
        for i in 0..DENSE {
            z += self.dense[i] * (dense[i] - self.mean[i]);
        }
        if n > 0 {
            z += hashed_sum / (n as f32).sqrt();
        }
        if let Some(g) = &self.groups {
            z += g[group_of(dense)].logit(dense);
        }
        z
    }

    /// P(a cheaper tier's answer is as good as the strongest's) for a request
    /// whose classifier view is given.
    pub fn predict_with(&self, input: &ClassifyInput<'_>, view: &View) -> f32 {
        let mut dense = [0.0; DENSE];
        let mut s = Summer {
            w: &self.hashed,
            sum: 0.0,
            n: 0,
        };
        featurize(
            input,
            view,
            self.buckets_log2,
            self.reads_text(),
            &mut dense,
            &mut s,
        );
        sigmoid(self.logit(&dense, s.sum, s.n))
    }

    /// [`Predictor::predict_with`] with the classifier run here.
    pub fn predict(&self, clf: &Classifier, input: &ClassifyInput<'_>) -> f32 {
        self.predict_with(input, &classifier_view(clf, input))
    }

    /// The threshold under which about `share` of the training prompts
    /// would go to the strongest candidate (linear between quantiles).
    pub fn threshold_for_share(&self, share: f64) -> f32 {
        let s = share.clamp(0.0, 1.0);
        if s <= 0.0 {
            return 0.0;
        }
        if s >= 1.0 {
            return 1.0;
        }
        let x = s * (QUANTILES - 1) as f64;
        let i = (x.floor() as usize).min(QUANTILES - 2);
        let f = (x - i as f64) as f32;
        self.quantiles[i] + f * (self.quantiles[i + 1] - self.quantiles[i])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + 4 * (self.hashed.len() + 3 * DENSE + QUANTILES));
        b.extend_from_slice(&MAGIC);
        for v in [FORMAT_VERSION, FEATURE_VERSION, DENSE as u32, self.buckets_log2] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.bias.to_le_bytes());
        for v in self
            .dense
            .iter()
            .chain(&self.mean)
            .chain(&self.quantiles)
            .chain(&self.hashed)
        {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&(self.provenance.len() as u32).to_le_bytes());
        b.extend_from_slice(self.provenance.as_bytes());
        let groups: &[Group] = self.groups.as_deref().map_or(&[], |g| g.as_slice());
        b.extend_from_slice(&(groups.len() as u32).to_le_bytes());
        for g in groups {
            for v in [g.offset, g.bias, g.squash].iter().chain(&g.w).chain(&g.mean) {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        let sum = checksum(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Predictor, String> {
        if bytes.len() < 8 + 20 + 8 || bytes[..8] != MAGIC {
            return Err("not a router weights file".into());
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(tail);
        if checksum(body) != u64::from_le_bytes(sum) {
            return Err("router weights file is corrupt (checksum)".into());
        }
        let mut at = 8;
        let u32_at = |at: &mut usize| -> Result<u32, String> {
            let s = body.get(*at..*at + 4).ok_or("truncated router weights")?;
            *at += 4;
            let mut a = [0u8; 4];
            a.copy_from_slice(s);
            Ok(u32::from_le_bytes(a))
        };
        let (fmt, feat, dense_n, log2) = (
            u32_at(&mut at)?,
            u32_at(&mut at)?,
            u32_at(&mut at)?,
            u32_at(&mut at)?,
        );
        if !(1..=FORMAT_VERSION).contains(&fmt) || feat != FEATURE_VERSION || dense_n as usize != DENSE {
            return Err(format!(
                "router weights are format {fmt} / features {feat} / {dense_n} dense; this build reads \
                 {FORMAT_VERSION} / {FEATURE_VERSION} / {DENSE} (re-run switchyard train-router)"
            ));
        }
        if !(8..=20).contains(&log2) {
            return Err("router weights: bucket count out of range".into());
        }
        let f32_at = |at: &mut usize| -> Result<f32, String> { u32_at(at).map(f32::from_bits) };
        let bias = f32_at(&mut at)?;
        let mut dense = [0.0; DENSE];
        for v in dense.iter_mut() {
            *v = f32_at(&mut at)?;
        }
        let mut mean = [0.0; DENSE];
        for v in mean.iter_mut() {
            *v = f32_at(&mut at)?;
        }
        let mut quantiles = [0.0; QUANTILES];
        for v in quantiles.iter_mut() {
            *v = f32_at(&mut at)?;
        }
        let mut hashed = vec![0.0; 1 << log2];
        for v in hashed.iter_mut() {
            *v = f32_at(&mut at)?;
        }
        let plen = u32_at(&mut at)? as usize;
        let prov = body.get(at..at + plen).ok_or("truncated router weights")?;
        let provenance = String::from_utf8_lossy(prov).into_owned();
        at += plen;
        let mut groups = None;
        if fmt >= 2 {
            let n = u32_at(&mut at)? as usize;
            if n != 0 && n != GROUPS {
                return Err(format!(
                    "router weights: {n} groups (this build reads 0 or {GROUPS})"
                ));
            }
            if n == GROUPS {
                let read = |at: &mut usize| -> Result<Group, String> {
                    let (offset, bias, squash) = (f32_at(at)?, f32_at(at)?, f32_at(at)?);
                    let mut w = [0.0; DENSE];
                    for v in w.iter_mut() {
                        *v = f32_at(at)?;
                    }
                    let mut mean = [0.0; DENSE];
                    for v in mean.iter_mut() {
                        *v = f32_at(at)?;
                    }
                    Ok(Group {
                        offset,
                        bias,
                        squash,
                        w,
                        mean,
                    })
                };
                groups = Some(Box::new([read(&mut at)?, read(&mut at)?, read(&mut at)?]));
            }
        }
        if at != body.len() {
            return Err("router weights: trailing bytes".into());
        }
        Ok(Predictor {
            buckets_log2: log2,
            bias,
            dense,
            mean,
            hashed,
            quantiles,
            provenance,
            groups,
            reads_text: OnceLock::new(),
        })
    }
}

fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| fnv(h, x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_weights_load() {
        let p = Predictor::from_bytes(EMBEDDED_BYTES).expect("embedded router weights parse");
        assert_eq!(p.to_bytes(), EMBEDDED_BYTES);
    }

    #[test]
    fn bytes_round_trip_and_corruption() {
        let mut p = Predictor::untrained(10);
        p.bias = 0.25;
        p.dense[3] = -1.5;
        p.hashed[7] = 0.125;
        let b = p.to_bytes();
        assert_eq!(Predictor::from_bytes(&b).expect("parse"), p);
        let mut bad = b.clone();
        bad[40] ^= 1;
        assert!(Predictor::from_bytes(&bad).is_err());
        assert!(Predictor::from_bytes(&b[..b.len() / 2]).is_err());
        assert!(Predictor::from_bytes(b"junk").is_err());
    }

    #[test]
    fn features_are_bounded_and_words_hashed() {
        let clf = Classifier::embedded();
        let text = "Solve: A train travels 120 km in 2 hours. How many km/h?\nA. 50\nB. 60\nC. 70";
        let i = ClassifyInput::user(text);
        let v = classifier_view(clf, &i);
        let mut dense = [0.0; DENSE];
        let mut buckets: Vec<u32> = Vec::new();
        featurize(&i, &v, 12, true, &mut dense, &mut buckets);
        assert!(
            dense.iter().all(|v| v.is_finite() && *v >= 0.0 && *v <= 2.0),
            "{dense:?}"
        );
        assert!(dense[26] > 0.0, "choice lines");
        assert!(dense[21] > 0.0, "math words");
        assert!(buckets.len() > 20 && buckets.iter().all(|b| *b < 4096));
        assert_eq!(dense[STRONG_TASK], 1.0, "maths is a strong task: {v:?}");
        // Without the scan: the same classifier features, no text features, no words.
        let mut d2 = [0.0; DENSE];
        let mut b2: Vec<u32> = Vec::new();
        featurize(&i, &v, 12, false, &mut d2, &mut b2);
        assert!(b2.is_empty());
        for k in 0..DENSE {
            let expect = if SCANNED.contains(&k) { 0.0 } else { dense[k] };
            assert_eq!(d2[k], expect, "feature {k}");
        }
        // Empty input: no panic, no NaN.
        let e = ClassifyInput::user("");
        let pr = Predictor::embedded().predict(clf, &e);
        assert!(pr.is_finite());
    }
}

#[cfg(test)]
mod prior_tests {
    use super::*;

    #[test]
    fn task_prior_orders_tasks_first_then_complexity() {
        let p = Predictor::task_prior(12);
        assert!(!p.reads_text());
        let clf = Classifier::embedded();
        let chat = ClassifyInput::user("hi! what's a good name for a goldfish?");
        let code = ClassifyInput::user(
            "Write a Python function that merges overlapping intervals and explain its complexity.",
        );
        let (vc, vk) = (classifier_view(clf, &chat), classifier_view(clf, &code));
        assert!(!vc.strong_task && vk.strong_task, "{vc:?} {vk:?}");
        let (pc, pk) = (p.predict(clf, &chat), p.predict(clf, &code));
        assert!(pc > pk, "chat {pc} vs code {pk}");
        // Within a task, the more complex prompt is less likely to be cheap.
        let lo = View {
            complexity: 0.1,
            ..vc
        };
        let hi = View {
            complexity: 0.6,
            ..vc
        };
        assert!(p.predict_with(&chat, &lo) > p.predict_with(&chat, &hi));
        // Any non-strong task beats any strong task, whatever the complexity.
        let worst_easy = View {
            complexity: 1.0,
            ..vc
        };
        let best_hard = View {
            complexity: 0.0,
            ..vk
        };
        assert!(p.predict_with(&chat, &worst_easy) > p.predict_with(&code, &best_hard));
        // A task forced by the caller (x-switchyard-task) is the task the prior reads.
        let (c, probs) = clf.classify_with_probabilities(&chat);
        let forced = clf.task_index("code_generation");
        assert!(view_from(clf, &c, &probs, forced).strong_task);
        assert!(!view_from(clf, &c, &probs, None).strong_task);
        // A prior whose weights read no text gives the same P with or without the scan.
        let mut learnt = p.clone();
        learnt.dense[21] = 1e-30;
        assert!(learnt.reads_text());
        let a = p.predict_with(&code, &vk);
        let b = learnt.predict_with(&code, &vk);
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn grouped_prior_scores_as_the_task_prior_and_round_trips() {
        let clf = Classifier::embedded();
        let (p, g) = (Predictor::task_prior(12), Predictor::grouped_prior(12));
        assert!(g.reads_text(), "the group reads choice lines");
        for text in [
            "hi! what's a good name for a goldfish?",
            "Write a Python function that merges overlapping intervals.",
            "Which is a prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:",
            "",
        ] {
            let i = ClassifyInput::user(text);
            let (a, b) = (p.predict(clf, &i), g.predict(clf, &i));
            assert!((a - b).abs() < 1e-6, "{text:?}: {a} vs {b}");
        }
        // A learnt group: bounded, so a strong-task prompt stays below every other.
        let mut l = g.clone();
        if let Some(gs) = l.groups.as_mut() {
            gs[0].squash = 1.9;
            gs[0].w[COMPLEXITY] = 1e6;
        }
        let code = ClassifyInput::user("Write a Python function that merges overlapping intervals.");
        let chat = ClassifyInput::user("hi! what's a good name for a goldfish?");
        let view = View {
            complexity: 1.0,
            ..classifier_view(clf, &chat)
        };
        assert!(l.predict(clf, &code) < l.predict_with(&chat, &view));
        let b = l.to_bytes();
        assert_eq!(Predictor::from_bytes(&b).expect("parse"), l);
        let mut bad = b.clone();
        let n = bad.len();
        bad[n - 20] ^= 1;
        assert!(Predictor::from_bytes(&bad).is_err());
        // Format 1 (no groups) still loads: the same bytes without the group count.
        let plain = Predictor::task_prior(10);
        let mut v1 = plain.to_bytes();
        v1.truncate(v1.len() - 12);
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let sum = checksum(&v1);
        v1.extend_from_slice(&sum.to_le_bytes());
        assert_eq!(Predictor::from_bytes(&v1).expect("format 1"), plain);
    }

    #[test]
    fn groups_of_requests() {
        let mut d = [0.0; DENSE];
        assert_eq!(group_of(&d), 2);
        d[CHOICE_LINES] = 0.4;
        assert_eq!(group_of(&d), 1);
        d[STRONG_TASK] = 1.0;
        assert_eq!(group_of(&d), 0);
    }

    #[test]
    fn quantiles_from_scores() {
        let mut p = Predictor::task_prior(10);
        p.set_quantiles((0..=100).rev().map(|i| i as f32 / 100.0).collect());
        assert_eq!(p.quantiles[0], 0.0);
        assert_eq!(p.quantiles[100], 1.0);
        assert!((p.threshold_for_share(0.25) - 0.25).abs() < 1e-6);
    }
}
