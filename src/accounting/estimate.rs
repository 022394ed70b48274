//! Token estimates: what a request may cost before it is sent (budget
//! reservations), and what it did cost when the provider never said (a
//! stream that ended without usage, a client that hung up).
//!
//! Reservations use a cheap byte count on the request path. After the fact,
//! when usage is missing, the prompt and the output seen so far are counted
//! with tiktoken-rs (`o200k_base`), and the ledger row is marked estimated.
//! The tokenizer is built on the first such estimate, in the background;
//! estimates made before it is ready count 4 bytes per token. A client that
//! hung up (499) is estimated by bytes alone ([`estimate_usage_by_bytes`]):
//! hang-ups are ordinary traffic, and the tokenizer costs ~50 MB resident.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::api::chat::ChatRequest;
use crate::api::usage::Usage;

/// Prompt text kept for an after-the-fact estimate, at most this many bytes
/// (head and tail); the rest is counted at [`BYTES_PER_TOKEN`].
const KEEP_BYTES: usize = 64 * 1024;
/// Output text captured from a stream for an estimate, at most.
pub const OUTPUT_CAP: usize = 256 * 1024;
/// Conservative bytes per token for reservations (English averages about 4).
pub const BYTES_PER_TOKEN: usize = 3;
/// Tokens an image part is reserved at.
const IMAGE_TOKENS: usize = 1_000;
/// Per-message overhead tokens (role, separators), as OpenAI counts them.
const TOKENS_PER_MESSAGE: usize = 4;

/// Token estimates are capped here (about 10^12): far above any real
/// request, far below where `u64` sums wrap or `f64` loses whole tokens, so
/// `max_tokens: 18446744073709551615` weighs as much as any other impossible
/// request instead of wrapping around to a small one.
pub const MAX_TOKEN_ESTIMATE: u64 = 1 << 40;

/// Where an inbound format keeps the cap on the answer's length: the fields
/// read (first present wins) and the one written when the gateway sets a cap
/// on a request that had none. Budget admission is written against this, so
/// a new inbound format only names its field.
#[derive(Debug, Clone, Copy)]
pub struct OutputField {
    pub read: &'static [&'static str],
    pub write: &'static str,
}

impl OutputField {
    /// `/v1/chat/completions`: `max_completion_tokens` wins over `max_tokens`;
    /// a cap set by the gateway goes into `max_tokens`, which every
    /// OpenAI-compatible server and the gateway's translators read (OpenAI's
    /// reasoning models refuse it: `providers::reasoning::for_openai` renames
    /// it to `max_completion_tokens` for them).
    pub const CHAT: OutputField = OutputField {
        read: &["max_completion_tokens", "max_tokens"],
        write: "max_tokens",
    };
    /// `/v1/messages` (translated to the chat form, where it is `max_tokens`).
    pub const MESSAGES: OutputField = OutputField {
        read: &["max_tokens"],
        write: "max_tokens",
    };
    /// `/v1/responses`.
    pub const RESPONSES: OutputField = OutputField {
        read: &["max_output_tokens"],
        write: "max_output_tokens",
    };

    /// The request's cap, if it set one (`null` counts as unset).
    pub fn get(&self, extra: &Map<String, Value>) -> Option<u64> {
        self.read
            .iter()
            .find_map(|k| extra.get(*k).filter(|v| !v.is_null()).and_then(Value::as_u64))
    }

    /// The field name a value came from (for error messages).
    pub fn name_in(&self, extra: &Map<String, Value>) -> &'static str {
        self.read
            .iter()
            .copied()
            .find(|k| extra.get(*k).is_some_and(|v| !v.is_null()))
            .unwrap_or(self.write)
    }

    /// Caps the request at `n`: every read field present is set to `n`; if
    /// none is, `write` is added.
    pub fn set(&self, extra: &mut Map<String, Value>, n: u64) {
        let mut any = false;
        for k in self.read {
            if let Some(v) = extra.get_mut(*k).filter(|v| !v.is_null()) {
                *v = Value::from(n);
                any = true;
            }
        }
        if !any {
            extra.insert(self.write.to_string(), Value::from(n));
        }
    }
}

/// What an estimate needs to know of a request's prompt.
#[derive(Debug, Default)]
pub struct PromptInfo {
    /// Text of the messages (and tool definitions), head and tail if long.
    pub text: String,
    /// Bytes of text beyond what `text` keeps.
    pub dropped_bytes: usize,
    /// Image parts seen.
    pub images: usize,
    pub messages: usize,
    /// `max_completion_tokens` or `max_tokens` (the inbound format's field), if the request set one.
    pub max_output: Option<u64>,
    /// Answers asked for (`n`, at least 1): each may use `max_output` tokens.
    pub choices: u64,
}

impl PromptInfo {
    /// Collects the prompt's text without interpreting it further.
    pub fn from_chat(req: &ChatRequest) -> PromptInfo {
        Self::from_chat_with(req, OutputField::CHAT)
    }

    /// [`from_chat`](Self::from_chat) with the inbound format's output field.
    pub fn from_chat_with(req: &ChatRequest, field: OutputField) -> PromptInfo {
        let mut p = PromptInfo {
            messages: req.messages.len(),
            choices: 1,
            ..Default::default()
        };
        for m in &req.messages {
            if let Some(c) = &m.content {
                p.walk(c);
            }
            for (k, v) in &m.extra {
                if k == "tool_calls" || k == "function_call" || k == "name" {
                    p.walk(v);
                }
            }
        }
        for k in ["tools", "functions", "response_format"] {
            if let Some(v) = req.extra.get(k) {
                p.walk(v);
            }
        }
        p.max_output = field.get(&req.extra);
        p.choices = req.extra.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
        p
    }

    fn walk(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.push(s),
            Value::Array(a) => a.iter().for_each(|x| self.walk(x)),
            Value::Object(o) => {
                if matches!(
                    o.get("type").and_then(Value::as_str),
                    Some("image_url" | "input_image" | "image")
                ) {
                    self.images += 1;
                    return;
                }
                for (k, x) in o {
                    if k != "type" {
                        self.walk(x);
                    }
                }
            }
            _ => {}
        }
    }

    fn push(&mut self, s: &str) {
        let room = KEEP_BYTES.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            self.text.push('\n');
        } else {
            let mut cut = room;
            while cut > 0 && !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.push_str(&s[..cut]);
            self.dropped_bytes += s.len() - cut;
        }
    }

    /// Prompt tokens by the cheap byte rule (an over-estimate for reservations).
    pub fn approx_prompt_tokens(&self) -> u64 {
        ((self.text.len() + self.dropped_bytes).div_ceil(BYTES_PER_TOKEN)
            + self.images * IMAGE_TOKENS
            + self.messages * TOKENS_PER_MESSAGE) as u64
    }

    /// Output tokens of all `choices` at `per_choice` each, saturating.
    pub fn output_tokens(&self, per_choice: u64) -> u64 {
        per_choice.saturating_mul(self.choices).min(MAX_TOKEN_ESTIMATE)
    }

    /// Tokens taken from TPM buckets up front: the prompt by the byte rule
    /// plus `max_output` for every choice, saturating at [`MAX_TOKEN_ESTIMATE`].
    pub fn token_estimate(&self) -> u64 {
        self.approx_prompt_tokens()
            .saturating_add(self.output_tokens(self.max_output.unwrap_or(0)))
            .min(MAX_TOKEN_ESTIMATE)
    }

    /// The most this request can use, for a budget reservation: the prompt by
    /// the byte rule and the output at its `max_tokens`, else `default_output`.
    pub fn worst_case_usage(&self, default_output: u32) -> Usage {
        Usage {
            prompt_tokens: self.approx_prompt_tokens(),
            completion_tokens: self.output_tokens(self.max_output.unwrap_or(u64::from(default_output))),
            ..Default::default()
        }
    }

    /// Prompt tokens counted with tiktoken (the dropped part at ~4 bytes per token).
    pub fn counted_prompt_tokens(&self) -> u64 {
        (count_tokens_nonblocking(&self.text) as usize
            + self.dropped_bytes / 4
            + self.images * IMAGE_TOKENS
            + self.messages * TOKENS_PER_MESSAGE) as u64
    }
}

/// Tokens of `text` in `o200k_base` (the GPT-4o / GPT-5 encoding; other
/// vendors' tokenizers differ by some percent, which is why rows are marked estimated).
pub fn count_tokens(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match tokenizer() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => text.len().div_ceil(4) as u64,
    }
}

static BPE: std::sync::OnceLock<Option<tiktoken_rs::CoreBPE>> = std::sync::OnceLock::new();
static LOADING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The tokenizer, built on first use (it takes ~100 ms and ~50 MB, so a
/// gateway that never needs an estimate never pays for it).
fn tokenizer() -> Option<&'static tiktoken_rs::CoreBPE> {
    BPE.get_or_init(|| match tiktoken_rs::o200k_base() {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!("tokenizer unavailable, estimating 4 bytes per token: {e}");
            None
        }
    })
    .as_ref()
}

/// Like [`count_tokens`], but never waits for the tokenizer to be built: the
/// first call starts building it on a background thread, and until it is
/// ready text counts at 4 bytes per token. For the request path.
pub fn count_tokens_nonblocking(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match BPE.get() {
        Some(Some(bpe)) => bpe.encode_ordinary(text).len() as u64,
        Some(None) => text.len().div_ceil(4) as u64,
        None => {
            if !LOADING.swap(true, std::sync::atomic::Ordering::AcqRel) {
                std::thread::spawn(|| {
                    let _ = tokenizer();
                });
            }
            text.len().div_ceil(4) as u64
        }
    }
}

/// Usage of a call the client left before it was complete (status 499), by
/// bytes alone: 4 bytes a token for the prompt text and the output seen (as
/// captured, JSON-escaped), images and per-message overhead as in
/// [`PromptInfo::counted_prompt_tokens`]. Hang-ups are ordinary traffic (every
/// load run has them), and counting them with tiktoken built the ~50 MB
/// tokenizer in every loaded gateway. The cost in accuracy: `o200k_base`
/// takes about 4.8 bytes a token on English prose and 2.7 on code (the test
/// below), so this reads about 19% high on prose and 30% low on code (and
/// high on non-Latin scripts, which take more bytes a character); the row is
/// marked estimated either way.
pub fn estimate_usage_by_bytes(prompt: &PromptInfo, output: &[u8]) -> Usage {
    Usage {
        prompt_tokens: ((prompt.text.len() + prompt.dropped_bytes).div_ceil(4)
            + prompt.images * IMAGE_TOKENS
            + prompt.messages * TOKENS_PER_MESSAGE) as u64,
        completion_tokens: output.len().div_ceil(4) as u64,
        ..Default::default()
    }
}

/// Usage of a call whose provider reported none: the prompt plus the output seen.
pub fn estimate_usage(prompt: &PromptInfo, output: &[u8]) -> Usage {
    let out = String::from_utf8_lossy(output);
    Usage {
        prompt_tokens: prompt.counted_prompt_tokens(),
        completion_tokens: count_tokens_nonblocking(&out),
        ..Default::default()
    }
}

/// Appends the text values of `"content"`, `"reasoning_content"` and
/// `"arguments"` fields of one chat chunk (JSON-escaped, which counts about
/// the same) to `out`, up to [`OUTPUT_CAP`].
pub fn capture_output(data: &[u8], out: &mut Vec<u8>) {
    // Built once: `memmem::find` builds its searcher on every call, which cost
    // more than the search on a stream's small chunks.
    static KEYS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 3]> = std::sync::LazyLock::new(|| {
        [
            memchr::memmem::Finder::new(b"\"content\":\""),
            memchr::memmem::Finder::new(b"\"reasoning_content\":\""),
            memchr::memmem::Finder::new(b"\"arguments\":\""),
        ]
    });
    for key in KEYS.iter() {
        let mut rest = data;
        while let Some(at) = key.find(rest) {
            rest = &rest[at + key.needle().len()..];
            let mut end = 0;
            while end < rest.len() {
                match rest[end] {
                    b'\\' => end += 2,
                    b'"' => break,
                    _ => end += 1,
                }
            }
            let end = end.min(rest.len());
            let room = OUTPUT_CAP.saturating_sub(out.len());
            out.extend_from_slice(&rest[..end.min(room)]);
            rest = &rest[end..];
        }
    }
}

/// Shared, immutable prompt info for the recorders of one request.
pub type SharedPrompt = Arc<PromptInfo>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_info_collects_text_images_and_max_tokens() {
        let req = ChatRequest::parse(
            br#"{"model":"m","max_tokens":50,"messages":[
                {"role":"system","content":"Be brief."},
                {"role":"user","content":[{"type":"text","text":"What is this?"},
                  {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}"#,
        )
        .expect("valid");
        let p = PromptInfo::from_chat(&req);
        assert!(p.text.contains("Be brief.") && p.text.contains("What is this?"));
        assert!(!p.text.contains("base64"));
        assert_eq!((p.images, p.messages, p.max_output), (1, 2, Some(50)));
        assert!(p.approx_prompt_tokens() >= p.counted_prompt_tokens());
    }

    #[test]
    fn output_field_reads_and_caps_the_formats_field() {
        let parse = |b: &str| ChatRequest::parse(b.as_bytes()).expect("valid");
        let mut r = parse(
            r#"{"model":"m","max_tokens":500,"max_completion_tokens":80,"messages":[{"role":"user","content":"x"}]}"#,
        );
        assert_eq!(OutputField::CHAT.get(&r.extra), Some(80));
        OutputField::CHAT.set(&mut r.extra, 40);
        assert_eq!(
            (
                r.extra["max_tokens"].as_u64(),
                r.extra["max_completion_tokens"].as_u64()
            ),
            (Some(40), Some(40))
        );
        let mut r = parse(r#"{"model":"m","max_tokens":null,"messages":[{"role":"user","content":"x"}]}"#);
        assert_eq!(OutputField::CHAT.get(&r.extra), None);
        OutputField::CHAT.set(&mut r.extra, 7);
        assert_eq!(r.extra["max_tokens"], 7);
        assert!(!r.extra.contains_key("max_completion_tokens"));
        let mut r = parse(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#);
        OutputField::RESPONSES.set(&mut r.extra, 9);
        assert_eq!(r.extra["max_output_tokens"], 9);
        assert_eq!(OutputField::RESPONSES.get(&r.extra), Some(9));
    }

    #[test]
    fn token_estimates_saturate() {
        for (max, n) in [(u64::MAX, 1), (1 << 63, 1), (1 << 53, 3), (u64::MAX, u64::MAX)] {
            let body = format!(
                r#"{{"model":"m","max_tokens":{max},"n":{n},"messages":[{{"role":"user","content":"x"}}]}}"#
            );
            let p = PromptInfo::from_chat(&ChatRequest::parse(body.as_bytes()).expect("valid"));
            assert_eq!(p.token_estimate(), MAX_TOKEN_ESTIMATE, "{max} x {n}");
            assert_eq!(p.worst_case_usage(10).completion_tokens, MAX_TOKEN_ESTIMATE);
        }
        let p = PromptInfo::from_chat(
            &ChatRequest::parse(
                br#"{"model":"m","max_tokens":100,"n":2,"messages":[{"role":"user","content":"hi"}]}"#,
            )
            .expect("valid"),
        );
        assert_eq!(p.token_estimate(), 5 + 200);
    }

    #[test]
    fn the_byte_rule_reads_19_percent_high_on_prose_and_30_low_on_code() {
        let prose = "The gateway forwards each request to the cheapest model that can answer it well, \
            records what every call cost in a local ledger, and falls back to another provider when one \
            fails. Budgets cap what a day or a month may spend, and a strict budget lowers the output \
            limit of a request so that its answer can never cost more than the room that is left.";
        let code = "fn main() {\n    let xs: Vec<u64> = (1..=10).map(|x| x * x).collect();\n    \
            println!(\"{:?} {}\", xs, xs.iter().sum::<u64>());\n}\n";
        for (text, lo, hi) in [(prose, 1.1, 1.3), (code, 0.6, 0.8)] {
            let p = PromptInfo {
                text: text.to_string(),
                ..Default::default()
            };
            let by_bytes = estimate_usage_by_bytes(&p, text.as_bytes());
            let exact = count_tokens(text) as f64;
            for n in [by_bytes.prompt_tokens, by_bytes.completion_tokens] {
                let ratio = n as f64 / exact;
                assert!((lo..hi).contains(&ratio), "{ratio} for {text:?}");
            }
        }
    }

    #[test]
    fn counts_with_tiktoken() {
        // "hello world" is two tokens in o200k_base.
        assert_eq!(count_tokens("hello world"), 2);
        assert_eq!(count_tokens(""), 0);
    }

    #[test]
    fn captures_streamed_content() {
        let mut out = Vec::new();
        capture_output(br#"{"choices":[{"delta":{"content":"Hel\"lo"}}]}"#, &mut out);
        capture_output(
            br#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}"#,
            &mut out,
        );
        assert_eq!(out, br#"Hel\"lo{\"a\":1}"#.to_vec());
    }

    #[test]
    fn long_prompts_keep_a_bounded_text() {
        let long = "word ".repeat(40_000);
        let body = serde_json::json!({"model":"m","messages":[{"role":"user","content": long}]});
        let req = ChatRequest::parse(body.to_string().as_bytes()).expect("valid");
        let p = PromptInfo::from_chat(&req);
        assert!(p.text.len() <= KEEP_BYTES + 1);
        assert_eq!(p.text.len() + p.dropped_bytes, 200_000);
    }
}
