//! Offline task classifier for chat requests.
//!
//! Owns the public API of `routing::classifier`: the request view
//! ([`ClassifyInput`], [`OwnedInput`]), the result ([`Classification`]) and
//! the [`Classifier`] itself (weights, binary format, inference). A request
//! is first checked against precise deterministic rules (`signals`); if none
//! fires, a hashed n-gram softmax model with quantised `i16` weights scores
//! the task classes. Below a confidence threshold the classifier abstains and
//! the caller applies its default. Training and evaluation live in `train`.
//!
//! Everything is offline: the shipped weights are embedded with
//! `include_bytes!` and parsed once.

mod complexity;
mod features;
mod signals;
mod train;

use std::path::Path;
use std::sync::{Arc, OnceLock};

pub use train::{
    evaluate, read_labeled_jsonl, train, ClassMetrics, EvalReport, LabeledExample, TrainOptions,
};

use features::{featurize, FeatureSink, FEATURE_VERSION, KINDS, KIND_META, KIND_ZONE};
use signals::{RuleTask, TextStats};

/// Built-in task names, in index order.
pub const DEFAULT_TASKS: [&str; 7] = [
    "simple_chat",
    "code_generation",
    "summarization",
    "complex_reasoning",
    "extraction",
    "translation",
    "creative_writing",
];

/// Largest number of task classes a model may have.
pub const MAX_TASKS: usize = 64;

/// Default abstention threshold on the top-class probability.
pub const DEFAULT_THRESHOLD: f32 = 0.4;

/// Confidence reported when a deterministic rule decided the task.
pub const RULE_CONFIDENCE: f32 = 0.95;

const MAGIC: [u8; 8] = *b"SWYDCLF\0";
const FORMAT_VERSION: u32 = 1;
const MIN_BUCKETS_LOG2: u32 = 8;
const MAX_BUCKETS_LOG2: u32 = 24;

static EMBEDDED_BYTES: &[u8] = include_bytes!("../../../assets/classifier.bin");

/// Borrowed view of the parts of a chat request that the classifier reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassifyInput<'a> {
    /// Concatenated system prompt text ("" if none).
    pub system: &'a str,
    /// Text of the last user turn (text parts joined with "\n").
    pub last_user: &'a str,
    /// The request carries tools / functions.
    pub has_tools: bool,
    /// `response_format` is `json_schema` or `json_object`.
    pub json_schema: bool,
    /// Number of messages.
    pub turns: usize,
    /// The user turn before the last one, when the last one is a short
    /// follow-up ("and in German?", "another one"): shorter than
    /// [`CONTEXT_IF_SHORTER`] bytes. Empty otherwise.
    pub context: &'a str,
}

/// A last user turn shorter than this many bytes is read together with the
/// user turn before it (a short follow-up takes its task from the
/// conversation). Every builder of a [`ClassifyInput`] (training, serving,
/// audit) applies it the same way.
pub const CONTEXT_IF_SHORTER: usize = 200;

impl<'a> ClassifyInput<'a> {
    /// A single-turn request with only a user message.
    pub fn user(text: &'a str) -> Self {
        ClassifyInput {
            system: "",
            last_user: text,
            has_tools: false,
            json_schema: false,
            turns: 1,
            context: "",
        }
    }
}

/// Owned counterpart of [`ClassifyInput`], built from JSON messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedInput {
    /// Concatenated system (and developer) prompt text.
    pub system: String,
    /// Text of the last user turn.
    pub last_user: String,
    /// The request carries tools / functions.
    pub has_tools: bool,
    /// `response_format` is `json_schema` or `json_object`.
    pub json_schema: bool,
    /// Number of messages.
    pub turns: usize,
    /// See [`ClassifyInput::context`].
    pub context: String,
}

impl OwnedInput {
    /// Borrowed view for [`Classifier::classify`].
    pub fn as_input(&self) -> ClassifyInput<'_> {
        ClassifyInput {
            system: &self.system,
            last_user: &self.last_user,
            has_tools: self.has_tools,
            json_schema: self.json_schema,
            turns: self.turns,
            context: &self.context,
        }
    }
}

/// Text of a message `content`: a string, or an array of parts whose text
/// parts (`{"type":"text","text":...}` or plain strings) are joined by "\n".
fn content_text(content: &serde_json::Value, out: &mut String) {
    match content {
        serde_json::Value::String(s) => out.push_str(s),
        serde_json::Value::Array(parts) => {
            let mut first = true;
            for p in parts {
                let text = match p {
                    serde_json::Value::String(s) => Some(s.as_str()),
                    serde_json::Value::Object(o) => o.get("text").and_then(|t| t.as_str()),
                    _ => None,
                };
                if let Some(t) = text {
                    if !first {
                        out.push('\n');
                    }
                    out.push_str(t);
                    first = false;
                }
            }
        }
        _ => {}
    }
}

/// Builds an [`OwnedInput`] from an OpenAI-style `messages` array.
///
/// System and developer messages are concatenated (joined by "\n"); the last
/// `user` message is the classified text. `has_tools` is set when the
/// conversation already contains tool traffic (`tool`/`function` messages or
/// assistant `tool_calls`); use [`input_from_request`] to also read the
/// request's `tools` and `response_format`. Anything that is not an array
/// yields an empty input.
pub fn input_from_messages(messages: &serde_json::Value) -> OwnedInput {
    let mut out = OwnedInput::default();
    let Some(list) = messages.as_array() else {
        return out;
    };
    out.turns = list.len();
    let mut last_user: Option<&serde_json::Value> = None;
    let mut previous: Option<&serde_json::Value> = None;
    for m in list {
        let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("");
        match role {
            "system" | "developer" => {
                if let Some(c) = m.get("content") {
                    if !out.system.is_empty() {
                        out.system.push('\n');
                    }
                    content_text(c, &mut out.system);
                }
            }
            "user" => previous = std::mem::replace(&mut last_user, m.get("content")),
            "tool" | "function" => out.has_tools = true,
            _ => {}
        }
        if m.get("tool_calls").is_some_and(|t| !t.is_null()) {
            out.has_tools = true;
        }
    }
    if let Some(c) = last_user {
        content_text(c, &mut out.last_user);
    }
    if let Some(c) = previous.filter(|_| out.last_user.len() < CONTEXT_IF_SHORTER) {
        content_text(c, &mut out.context);
    }
    out
}

/// Builds an [`OwnedInput`] from a whole chat-completions request body:
/// `messages` plus `tools` / `functions` and `response_format`.
pub fn input_from_request(request: &serde_json::Value) -> OwnedInput {
    let mut out = input_from_messages(request.get("messages").unwrap_or(&serde_json::Value::Null));
    let non_empty = |k: &str| {
        request
            .get(k)
            .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    };
    if non_empty("tools") || non_empty("functions") {
        out.has_tools = true;
    }
    let rf = request
        .get("response_format")
        .and_then(|r| r.get("type"))
        .and_then(|t| t.as_str());
    if matches!(rf, Some("json_schema") | Some("json_object")) {
        out.json_schema = true;
    }
    out
}

/// Result of [`Classifier::classify`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Classification {
    /// Index into [`Classifier::tasks`].
    pub task: usize,
    /// Probability of `task` (model) or [`RULE_CONFIDENCE`] (rule), in `[0, 1]`.
    pub confidence: f32,
    /// Request complexity in `[0, 1]`.
    pub complexity: f32,
    /// Confidence is below the threshold: the caller should use its default.
    pub abstained: bool,
    /// Deterministic rule that decided, if any (e.g. `"code_fence"`).
    pub signal: Option<&'static str>,
}

/// Hashed n-gram softmax classifier with quantised weights.
#[derive(Debug, Clone)]
pub struct Classifier {
    tasks: Vec<String>,
    buckets_log2: u32,
    /// Weights per bucket (task count rounded up to a multiple of 8).
    stride: usize,
    /// Dequantisation factor for `weights`.
    scale: f32,
    bias: Vec<f32>,
    /// Bucket-major rows of eight `i16` weights (one 16-byte row per bucket
    /// for up to eight tasks): bucket `b` owns rows
    /// `b * stride / 8 .. (b + 1) * stride / 8`. Shared by clones (a route
    /// takes a copy of the embedded model to set its own threshold): 512 KB
    /// for the shipped model, once per process, not once per route.
    weights: Arc<[[i16; 8]]>,
    threshold: f32,
    /// Task index for each [`RuleTask`], if the task exists in this model.
    rule_map: [Option<usize>; RuleTask::ALL.len()],
}

/// Input value of the instruction-zone features relative to text features
/// (divided by the square root of the zone feature count). 4 until feature
/// version 12; 5 won on the public held-out dev half and the
/// system-instruction test in every data order tried (docs/classifier.md).
const ZONE_WEIGHT: f32 = 5.0;

/// Input value of one feature occurrence of each kind, given the per-kind
/// counts: `1/sqrt(count)` for text features, `ZONE_WEIGHT/sqrt(count)` for
/// instruction-zone features, 1 for meta features.
pub(crate) fn kind_values(counts: &[u32; KINDS]) -> [f32; KINDS] {
    let mut x = [0.0; KINDS];
    for (k, v) in x.iter_mut().enumerate() {
        *v = match k {
            KIND_META => 1.0,
            // Instruction-zone words weigh five times as much: they carry the task.
            KIND_ZONE => ZONE_WEIGHT / (counts[k].max(1) as f32).sqrt(),
            _ => 1.0 / (counts[k].max(1) as f32).sqrt(),
        };
    }
    x
}

/// Inference sink for models of up to eight tasks: adds the bucket's
/// 16-byte weight row into the accumulator of its feature kind.
struct RowSums<'w> {
    rows: &'w [[i16; 8]],
    acc: [[i32; 8]; KINDS],
}

impl FeatureSink for RowSums<'_> {
    #[inline]
    fn features(&mut self, buckets: &[u32], kind: usize) {
        let Some(acc) = self.acc.get_mut(kind) else {
            return;
        };
        // Local copy: the eight sums stay in registers over the batch.
        let mut a = *acc;
        for &b in buckets {
            // A valid model never produces a bucket out of range.
            if let Some(row) = self.rows.get(b as usize) {
                for (x, &w) in a.iter_mut().zip(row) {
                    *x += i32::from(w);
                }
            }
        }
        *acc = a;
    }
}

/// Inference sink for models with more than eight tasks (`lanes` rows of
/// eight weights per bucket).
struct WideRowSums<'w> {
    rows: &'w [[i16; 8]],
    lanes: usize,
    acc: [[i32; MAX_TASKS]; KINDS],
}

impl FeatureSink for WideRowSums<'_> {
    fn features(&mut self, buckets: &[u32], kind: usize) {
        let Some(acc) = self.acc.get_mut(kind) else {
            return;
        };
        for &b in buckets {
            let start = b as usize * self.lanes;
            if let Some(rows) = self.rows.get(start..start + self.lanes) {
                for (a, &w) in acc.iter_mut().zip(rows.iter().flatten()) {
                    *a += i32::from(w);
                }
            }
        }
    }
}

/// Stride (row length) for `n` tasks: a multiple of 8 so that rows of
/// seven or eight `i16` weights fill exactly 16 bytes.
fn stride_for(n: usize) -> usize {
    n.div_ceil(8) * 8
}

struct Reader<'b> {
    bytes: &'b [u8],
    pos: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("classifier file truncated at byte {}", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_bits(self.u32()?))
    }
}

impl Classifier {
    /// Builds a classifier from its parts; validates sizes.
    pub(crate) fn from_parts(
        tasks: Vec<String>,
        buckets_log2: u32,
        scale: f32,
        bias: Vec<f32>,
        weights: Vec<i16>,
        threshold: f32,
    ) -> Result<Classifier, String> {
        if tasks.is_empty() || tasks.len() > MAX_TASKS {
            return Err(format!("task count {} not in 1..={MAX_TASKS}", tasks.len()));
        }
        if !(MIN_BUCKETS_LOG2..=MAX_BUCKETS_LOG2).contains(&buckets_log2) {
            return Err(format!("buckets_log2 {buckets_log2} out of range"));
        }
        let stride = stride_for(tasks.len());
        if bias.len() != tasks.len() || weights.len() != (1usize << buckets_log2) * stride {
            return Err("weight table size does not match header".to_string());
        }
        if !scale.is_finite() || bias.iter().any(|b| !b.is_finite()) {
            return Err("non-finite scale or bias".to_string());
        }
        let mut rule_map = [None; RuleTask::ALL.len()];
        for rt in RuleTask::ALL {
            rule_map[rt.index()] = tasks.iter().position(|t| t == rt.name());
        }
        let weights: Vec<[i16; 8]> = weights
            .chunks_exact(8)
            .map(|c| {
                let mut row = [0i16; 8];
                row.copy_from_slice(c);
                row
            })
            .collect();
        let weights = Arc::from(weights);
        Ok(Classifier {
            tasks,
            buckets_log2,
            stride,
            scale,
            bias,
            weights,
            threshold: threshold.clamp(0.0, 1.0),
            rule_map,
        })
    }

    /// A model with all-zero weights over the default tasks: only the rules
    /// decide, everything else abstains. Used if the embedded file is unusable.
    pub fn rules_only() -> Classifier {
        let tasks: Vec<String> = DEFAULT_TASKS.iter().map(|s| s.to_string()).collect();
        let log2 = MIN_BUCKETS_LOG2;
        let weights = vec![0; (1usize << log2) * stride_for(tasks.len())];
        let bias = vec![0.0; tasks.len()];
        // Sizes are consistent by construction; fall back to a bare struct
        // rather than panicking if that ever stops being true.
        Classifier::from_parts(tasks.clone(), log2, 1.0, bias, weights, DEFAULT_THRESHOLD).unwrap_or_else(
            |_| Classifier {
                tasks,
                buckets_log2: log2,
                stride: 8,
                scale: 1.0,
                bias: vec![0.0; DEFAULT_TASKS.len()],
                weights: Arc::from(vec![[0; 8]; 1usize << log2]),
                threshold: DEFAULT_THRESHOLD,
                rule_map: [None; RuleTask::ALL.len()],
            },
        )
    }

    /// The classifier shipped in the binary (`assets/classifier.bin`), parsed
    /// once. If the embedded file cannot be parsed, a rules-only classifier
    /// is returned (it abstains whenever no rule fires).
    pub fn embedded() -> &'static Classifier {
        static EMBEDDED: OnceLock<Classifier> = OnceLock::new();
        EMBEDDED.get_or_init(|| {
            Classifier::from_bytes(EMBEDDED_BYTES).unwrap_or_else(|_| Classifier::rules_only())
        })
    }

    /// Parses the versioned binary format written by [`Classifier::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Classifier, String> {
        if bytes.len() < MAGIC.len() + 8 || bytes[..MAGIC.len()] != MAGIC {
            return Err("not a classifier file (bad magic)".to_string());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut sum_bytes = [0u8; 8];
        sum_bytes.copy_from_slice(sum);
        if features::fnv1a(body) != u64::from_le_bytes(sum_bytes) {
            return Err("classifier file checksum mismatch".to_string());
        }
        let mut r = Reader {
            bytes: body,
            pos: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(format!("unsupported classifier format version {version}"));
        }
        let fv = r.u32()?;
        if fv != FEATURE_VERSION {
            return Err(format!(
                "classifier trained with feature version {fv}, this build uses {FEATURE_VERSION}"
            ));
        }
        let log2 = r.u32()?;
        if !(MIN_BUCKETS_LOG2..=MAX_BUCKETS_LOG2).contains(&log2) {
            return Err(format!("buckets_log2 {log2} out of range"));
        }
        let n = r.u32()? as usize;
        if n == 0 || n > MAX_TASKS {
            return Err(format!("task count {n} not in 1..={MAX_TASKS}"));
        }
        let threshold = r.f32()?;
        let scale = r.f32()?;
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u16()? as usize;
            let name = std::str::from_utf8(r.take(len)?).map_err(|_| "task name is not UTF-8".to_string())?;
            tasks.push(name.to_string());
        }
        let mut bias = Vec::with_capacity(n);
        for _ in 0..n {
            bias.push(r.f32()?);
        }
        let count = (1usize << log2) * stride_for(n);
        let raw = r.take(count * 2)?;
        let weights: Vec<i16> = raw
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        if r.pos != body.len() {
            return Err("trailing bytes in classifier file".to_string());
        }
        Classifier::from_parts(tasks, log2, scale, bias, weights, threshold)
    }

    /// Reads a classifier file written by [`Classifier::to_bytes`].
    pub fn load(path: &Path) -> Result<Classifier, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Classifier::from_bytes(&bytes)
    }

    /// Serialises to the versioned binary format: magic `SWYDCLF\0`, format
    /// and feature versions, header, task names, biases, `i16` weights (all
    /// little-endian) and a trailing FNV-1a checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.weights.len() * 16);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&FEATURE_VERSION.to_le_bytes());
        out.extend_from_slice(&self.buckets_log2.to_le_bytes());
        out.extend_from_slice(&(self.tasks.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.threshold.to_le_bytes());
        out.extend_from_slice(&self.scale.to_le_bytes());
        for t in &self.tasks {
            let name = &t.as_bytes()[..t.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
        }
        for b in &self.bias {
            out.extend_from_slice(&b.to_le_bytes());
        }
        for w in self.weights.iter().flatten() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let sum = features::fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Task names; [`Classification::task`] indexes this list.
    pub fn tasks(&self) -> &[String] {
        &self.tasks
    }

    /// Index of the task called `name`, if the model has it.
    pub fn task_index(&self, name: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t == name)
    }

    /// Sets the abstention threshold (clamped to `[0, 1]`).
    pub fn set_threshold(&mut self, t: f32) {
        self.threshold = t.clamp(0.0, 1.0);
    }

    /// Current abstention threshold.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Log2 of the number of hash buckets.
    pub fn buckets_log2(&self) -> u32 {
        self.buckets_log2
    }

    /// Model probabilities for every task (rules not applied), written into
    /// `out[..tasks().len()]`.
    /// Also fills `stats` (the same pass feeds the rules and complexity).
    fn model_probs(&self, input: &ClassifyInput<'_>, out: &mut [f32; MAX_TASKS], stats: &mut TextStats) {
        let n = self.tasks.len();
        let mut acc = [[0i32; MAX_TASKS]; KINDS];
        let counts = if self.stride == 8 {
            // Up to eight tasks: one 16-byte row per feature, summed into
            // per-kind accumulators that stay in registers.
            let mut sums = RowSums {
                rows: &self.weights,
                acc: [[0; 8]; KINDS],
            };
            let counts = featurize(input, self.buckets_log2, &mut sums, stats);
            for (dst, src) in acc.iter_mut().zip(&sums.acc) {
                dst[..8].copy_from_slice(src);
            }
            counts
        } else {
            let mut sums = WideRowSums {
                rows: &self.weights,
                lanes: self.stride / 8,
                acc: [[0; MAX_TASKS]; KINDS],
            };
            let counts = featurize(input, self.buckets_log2, &mut sums, stats);
            acc = sums.acc;
            counts
        };
        let x = kind_values(&counts);
        let mut max = f32::NEG_INFINITY;
        for k in 0..n {
            let dot: f32 = (0..KINDS).map(|j| acc[j][k] as f32 * x[j]).sum();
            let z = self.bias[k] + self.scale * dot;
            out[k] = z;
            max = max.max(z);
        }
        let mut sum = 0.0;
        for v in out.iter_mut().take(n) {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in out.iter_mut().take(n) {
            *v /= sum;
        }
    }

    /// Model probabilities for every task, without the deterministic rules.
    pub fn probabilities(&self, input: &ClassifyInput<'_>) -> Vec<f32> {
        let mut p = [0.0; MAX_TASKS];
        self.model_probs(input, &mut p, &mut TextStats::default());
        p[..self.tasks.len()].to_vec()
    }

    /// Classifies one request: the deterministic rules decide if one fires,
    /// else the model. One bounded pass over the text (only head and tail
    /// windows of long texts are read) feeds both; no heap allocation.
    pub fn classify(&self, input: &ClassifyInput<'_>) -> Classification {
        self.classify_with_probabilities(input).0
    }

    /// [`Classifier::classify`] and [`Classifier::probabilities`] from the
    /// same single pass: the classification and the model probabilities of
    /// every task (`[..tasks().len()]`; rules not applied), bit-identical to
    /// what the two calls return separately.
    pub fn classify_with_probabilities(
        &self,
        input: &ClassifyInput<'_>,
    ) -> (Classification, [f32; MAX_TASKS]) {
        let mut stats = TextStats::default();
        let mut p = [0.0; MAX_TASKS];
        self.model_probs(input, &mut p, &mut stats);
        (self.conclude(input, &stats, &p), p)
    }

    fn conclude(&self, input: &ClassifyInput<'_>, stats: &TextStats, p: &[f32; MAX_TASKS]) -> Classification {
        let complexity = complexity::score(input, stats);
        if let Some((rt, signal)) = signals::detect(input, stats) {
            if let Some(task) = self.rule_map[rt.index()] {
                return Classification {
                    task,
                    confidence: RULE_CONFIDENCE,
                    complexity,
                    abstained: RULE_CONFIDENCE < self.threshold,
                    signal: Some(signal),
                };
            }
        }
        let mut best = 0;
        for k in 1..self.tasks.len() {
            if p[k] > p[best] {
                best = k;
            }
        }
        let confidence = p[best].clamp(0.0, 1.0);
        Classification {
            task: best,
            confidence,
            complexity,
            abstained: confidence < self.threshold,
            signal: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Vec<LabeledExample> {
        let mk = |t: &str, task: &str| LabeledExample {
            input: OwnedInput {
                last_user: t.to_string(),
                turns: 1,
                ..OwnedInput::default()
            },
            task: task.to_string(),
        };
        vec![
            mk("write a poem about the moon", "creative_writing"),
            mk("write a short story about a dragon", "creative_writing"),
            mk("compose a haiku about rain", "creative_writing"),
            mk("hi, how are you today?", "simple_chat"),
            mk("what is the capital of spain?", "simple_chat"),
            mk("hello! who won the world cup?", "simple_chat"),
        ]
    }

    fn small_opts() -> TrainOptions {
        TrainOptions {
            buckets_log2: 12,
            epochs: 30,
            ..TrainOptions::default()
        }
    }

    #[test]
    fn trains_tiny_separable_set() {
        let clf = train(&tiny(), &small_opts());
        let ci = clf.task_index("creative_writing").unwrap();
        let sc = clf.task_index("simple_chat").unwrap();
        // The model alone (no rule fires on this one).
        let c = clf.classify(&ClassifyInput::user("a haiku about the sea"));
        assert_eq!(c.task, ci);
        assert!(c.signal.is_none());
        // The compose_request rule decides this one; the model agrees.
        let input = ClassifyInput::user("write a poem about the sea");
        let p = clf.probabilities(&input);
        assert!(p[ci] > p[sc], "{p:?}");
        let c = clf.classify(&input);
        assert_eq!((c.task, c.signal), (ci, Some("compose_request")));
        let c = clf.classify(&ClassifyInput::user("hello, what is the capital of italy?"));
        assert_eq!(c.task, sc);
        let report = evaluate(&clf, &tiny());
        assert!(report.accuracy > 0.99, "{}", report.to_table());
    }

    #[test]
    fn one_pass_matches_classify_and_probabilities() {
        let clf = Classifier::embedded();
        let texts = [
            "hi, how are you today?",
            "```rust\nfn main() { println!(\"hi\"); }\n```\nwhy does this not compile?",
            "Translate into French: the train leaves at nine.",
            "Summarize the following article in three bullet points: the council met on Monday ...",
            "Let f(x) = 3x^2 + 2x - 5. Find all x such that f(x) = 0.",
            "",
        ];
        for t in texts {
            let i = ClassifyInput {
                system: "You are a helpful assistant.",
                context: "earlier question",
                turns: 3,
                ..ClassifyInput::user(t)
            };
            let (c, p) = clf.classify_with_probabilities(&i);
            assert_eq!(c, clf.classify(&i), "{t:?}");
            let sep = clf.probabilities(&i);
            assert_eq!(sep.len(), clf.tasks().len());
            for (a, b) in sep.iter().zip(&p) {
                assert_eq!(a.to_bits(), b.to_bits(), "{t:?}");
            }
        }
    }

    #[test]
    fn round_trip_bytes() {
        let mut clf = train(&tiny(), &small_opts());
        clf.set_threshold(0.37);
        let bytes = clf.to_bytes();
        let back = Classifier::from_bytes(&bytes).unwrap();
        assert_eq!(back.tasks(), clf.tasks());
        assert_eq!(back.threshold(), 0.37);
        assert_eq!(back.to_bytes(), bytes);
        let i = ClassifyInput::user("compose a limerick about cats");
        assert_eq!(back.classify(&i), clf.classify(&i));
        // Corruption and truncation are rejected, never panic.
        let mut bad = bytes.clone();
        bad[40] ^= 1;
        assert!(Classifier::from_bytes(&bad).is_err());
        assert!(Classifier::from_bytes(&bytes[..bytes.len() / 2]).is_err());
        assert!(Classifier::from_bytes(b"nonsense").is_err());
        assert!(Classifier::from_bytes(&[]).is_err());
    }

    #[test]
    fn abstains_below_threshold() {
        let mut clf = Classifier::rules_only();
        let i = ClassifyInput::user("tell me something");
        let c = clf.classify(&i);
        // Zero weights: uniform probabilities, far below the threshold.
        assert!(c.abstained);
        assert!((c.confidence - 1.0 / 7.0).abs() < 1e-4);
        clf.set_threshold(0.1);
        assert!(!clf.classify(&i).abstained);
        // Rules still decide in a rules-only model.
        let c = clf.classify(&ClassifyInput::user("Translate into German: good night"));
        assert_eq!(clf.tasks()[c.task], "translation");
        assert_eq!(c.signal, Some("translate_language"));
        assert!(!c.abstained);
    }

    #[test]
    fn rules_only_emit_known_tasks() {
        let tasks = ["chat".to_string(), "other".to_string()];
        let ex: Vec<LabeledExample> = tasks
            .iter()
            .map(|t| LabeledExample {
                input: OwnedInput {
                    last_user: format!("{t} text"),
                    turns: 1,
                    ..OwnedInput::default()
                },
                task: t.clone(),
            })
            .collect();
        let clf = train(&ex, &small_opts());
        let c = clf.classify(&ClassifyInput::user("Translate into German: good night"));
        assert!(c.signal.is_none());
        assert!(c.task < 2);
    }

    #[test]
    fn messages_to_input() {
        let v = serde_json::json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "b"}]}
        ]);
        let o = input_from_messages(&v);
        assert_eq!(o.system, "Be brief.");
        assert_eq!(o.last_user, "a\nb");
        assert_eq!(o.turns, 4);
        assert!(!o.has_tools);
        // A short last turn is read with the user turn before it; a long one alone.
        assert_eq!(o.context, "first");
        let long = "x".repeat(CONTEXT_IF_SHORTER);
        let v2 = serde_json::json!([
            {"role": "user", "content": "first"},
            {"role": "user", "content": long}
        ]);
        assert_eq!(input_from_messages(&v2).context, "");
        let req = serde_json::json!({"messages": v, "tools": [{"type": "function"}], "response_format": {"type": "json_schema"}});
        let o = input_from_request(&req);
        assert!(o.has_tools && o.json_schema);
        assert_eq!(
            input_from_messages(&serde_json::json!("x")),
            OwnedInput::default()
        );
    }

    #[test]
    fn embedded_loads() {
        // The shipped weights must match this build's featurisation (a stale
        // file would silently fall back to the rules-only classifier).
        if let Err(e) = Classifier::from_bytes(EMBEDDED_BYTES) {
            panic!("assets/classifier.bin is unusable, retrain it: {e}");
        }
        let clf = Classifier::embedded();
        assert!(!clf.tasks().is_empty());
        let c = clf.classify(&ClassifyInput::user("hi"));
        assert!(c.task < clf.tasks().len());
        assert!((0.0..=1.0).contains(&c.confidence));
        assert!(c.complexity < 0.2);
    }
}
