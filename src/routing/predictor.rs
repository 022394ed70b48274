//! Per-prompt tier predictor: how likely is a cheaper tier's answer to be as
//! good as the strongest candidate's?
//!
//! A logistic model over a few dozen dense features (the task classifier's
//! probabilities and complexity, length, code, math, constraint and
//! structure signals, turn count) plus hashed word unigrams and bigrams of
//! the last user turn. It learns *tiers*, not model names: a label is "an
//! economy-tier answer was at least as good as the frontier-tier one" (see
//! `train_router.rs` and docs/routing.md). Weights are trained offline by
//! `switchyard train-router` and embedded with `include_bytes!`; one bounded
//! pass over the text, no heap allocation.

use std::sync::OnceLock;

use super::classifier::{Classifier, ClassifyInput, DEFAULT_TASKS};

/// Dense feature count (see [`DENSE_NAMES`]).
pub const DENSE: usize = 32;
/// Bytes of the last user turn read for word features (head, then tail).
pub const HEAD_BYTES: usize = 2048;
pub const TAIL_BYTES: usize = 512;
/// Bumped whenever the features change (stored in the weights file).
pub const FEATURE_VERSION: u32 = 1;

const MAGIC: [u8; 8] = *b"SWYDRTR\0";
const FORMAT_VERSION: u32 = 1;
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
];

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
/// `sink`. `probs` are the classifier's task probabilities (in
/// [`DEFAULT_TASKS`] order), `complexity` and `confidence` its outputs.
pub fn featurize(
    input: &ClassifyInput<'_>,
    probs: &[f32; 7],
    complexity: f32,
    confidence: f32,
    log2: u32,
    dense: &mut [f32; DENSE],
    sink: &mut impl Sink,
) {
    let user = input.last_user.as_bytes();
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
    dense[..7].copy_from_slice(probs);
    dense[7] = complexity;
    dense[8] = confidence;
    dense[9] = ln1(user.len() as f32) / 8.0;
    dense[10] = ln1(input.system.len() as f32) / 8.0;
    dense[11] = (input.turns.min(12) as f32) / 12.0;
    dense[12] = f32::from(u8::from(input.has_tools));
    dense[13] = f32::from(u8::from(input.json_schema));
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
    dense[27] = f32::from(u8::from(!input.context.is_empty()));
    dense[28] = (st.non_ascii as f32 / n * 2.0).min(1.0);
    dense[29] = (st.upper as f32 / n * 10.0).min(1.0);
    dense[30] = ln1(st.list_lines as f32) / 3.0;
    dense[31] = ln1(st.numbers as f32) / 4.0;
}

/// Task probabilities in [`DEFAULT_TASKS`] order (zeros for tasks the
/// classifier does not have), the top task's confidence and complexity,
/// from one classifier pass.
pub fn classifier_view(clf: &Classifier, input: &ClassifyInput<'_>) -> ([f32; 7], f32, f32) {
    let (c, p) = clf.classify_with_probabilities(input);
    (task_probs_from(clf, &p), c.confidence, c.complexity)
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

/// Trained predictor weights.
#[derive(Debug, Clone, PartialEq)]
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
}

impl Predictor {
    /// The built-in weights (`assets/router.bin`).
    pub fn embedded() -> &'static Predictor {
        static P: OnceLock<Predictor> = OnceLock::new();
        P.get_or_init(|| Predictor::from_bytes(EMBEDDED_BYTES).unwrap_or_else(|_| Predictor::untrained(12)))
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
        }
    }

    /// Logit of the dense part plus `hashed_sum / sqrt(n)`.
    #[allow(clippy::needless_range_loop)]
    pub fn logit(&self, dense: &[f32; DENSE], hashed_sum: f32, n: u32) -> f32 {
        let mut z = self.bias;
        for i in 0..DENSE {
            z += self.dense[i] * (dense[i] - self.mean[i]);
        }
        if n > 0 {
            z += hashed_sum / (n as f32).sqrt();
        }
        z
    }

    /// P(a cheaper tier's answer is as good as the strongest's) for a request
    /// whose classifier view is given.
    pub fn predict_with(
        &self,
        input: &ClassifyInput<'_>,
        probs: &[f32; 7],
        complexity: f32,
        confidence: f32,
    ) -> f32 {
        let mut dense = [0.0; DENSE];
        let mut s = Summer {
            w: &self.hashed,
            sum: 0.0,
            n: 0,
        };
        featurize(
            input,
            probs,
            complexity,
            confidence,
            self.buckets_log2,
            &mut dense,
            &mut s,
        );
        sigmoid(self.logit(&dense, s.sum, s.n))
    }

    /// [`Predictor::predict_with`] with the classifier run here.
    pub fn predict(&self, clf: &Classifier, input: &ClassifyInput<'_>) -> f32 {
        let (p, conf, cx) = classifier_view(clf, input);
        self.predict_with(input, &p, cx, conf)
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
        if fmt != FORMAT_VERSION || feat != FEATURE_VERSION || dense_n as usize != DENSE {
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
        if at + plen != body.len() {
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
        let (p, conf, cx) = classifier_view(clf, &i);
        let mut dense = [0.0; DENSE];
        let mut buckets: Vec<u32> = Vec::new();
        featurize(&i, &p, cx, conf, 12, &mut dense, &mut buckets);
        assert!(
            dense.iter().all(|v| v.is_finite() && *v >= 0.0 && *v <= 2.0),
            "{dense:?}"
        );
        assert!(dense[26] > 0.0, "choice lines");
        assert!(dense[21] > 0.0, "math words");
        assert!(buckets.len() > 20 && buckets.iter().all(|b| *b < 4096));
        // Empty input: no panic, no NaN.
        let e = ClassifyInput::user("");
        let pr = Predictor::embedded().predict(clf, &e);
        assert!(pr.is_finite());
    }
}
