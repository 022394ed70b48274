//! Token estimates: what a request may cost before it is sent (budget
//! reservations), and what it did cost when the provider never said (a
//! stream that ended without usage, a client that hung up).
//!
//! Reservations use a cheap byte count on the request path. After the fact,
//! when usage is missing, the prompt and the output seen so far are counted
//! with tiktoken-rs (`o200k_base`), and the ledger row is marked estimated.
//! The tokenizer is built on the first estimate, in the background; estimates
//! made before it is ready count 4 bytes per token.

use std::sync::Arc;

use serde_json::Value;

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
    /// `max_completion_tokens` or `max_tokens`, if the request set one.
    pub max_output: Option<u64>,
}

impl PromptInfo {
    /// Collects the prompt's text without interpreting it further.
    pub fn from_chat(req: &ChatRequest) -> PromptInfo {
        let mut p = PromptInfo {
            messages: req.messages.len(),
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
        p.max_output = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| req.extra.get(*k).and_then(Value::as_u64));
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

    /// The most this request can use, for a budget reservation: the prompt by
    /// the byte rule and the output at its `max_tokens`, else `default_output`.
    pub fn worst_case_usage(&self, default_output: u32) -> Usage {
        Usage {
            prompt_tokens: self.approx_prompt_tokens(),
            completion_tokens: self.max_output.unwrap_or(u64::from(default_output)),
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
    for key in [
        &b"\"content\":\""[..],
        b"\"reasoning_content\":\"",
        b"\"arguments\":\"",
    ] {
        let mut rest = data;
        while let Some(at) = memchr::memmem::find(rest, key) {
            rest = &rest[at + key.len()..];
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
