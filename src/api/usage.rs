//! The gateway's one normalised usage shape.
//!
//! `prompt_tokens` counts ALL input tokens, cached and cache-write included
//! (OpenAI's convention; Anthropic's `input_tokens` excludes cached tokens and
//! is normalised to this by its adapter). `completion_tokens` counts all
//! output, reasoning included; `reasoning_tokens` is the part of it spent on
//! reasoning.

use serde::Deserialize;

/// Normalised token usage of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Input tokens read from the provider's prompt cache (part of `prompt_tokens`).
    pub cached_tokens: u64,
    /// Input tokens written to the provider's prompt cache (part of `prompt_tokens`).
    pub cache_write_tokens: u64,
    /// Output tokens spent on reasoning (part of `completion_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    /// The OpenAI `usage` object, with prompt/completion detail fields.
    pub fn to_openai_json(&self) -> serde_json::Value {
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens.saturating_add(self.completion_tokens),
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        })
    }
}

/// OpenAI-style `usage` object as sent by OpenAI-compatible servers.
#[derive(Debug, Default, Deserialize)]
pub struct OpenAiUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
    /// DeepSeek: input tokens served from its context cache.
    #[serde(default)]
    pub prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CompletionDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Self {
        let cached = u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .or(u.prompt_cache_hit_tokens)
            .unwrap_or(0);
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: cached,
            cache_write_tokens: 0,
            reasoning_tokens: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

/// Only the `usage` of a response or chunk; every other field is skipped
/// without being built.
#[derive(Debug, Deserialize)]
pub struct UsageOnly {
    #[serde(default)]
    pub usage: Option<OpenAiUsage>,
}

/// Extracts normalised usage from an OpenAI-format JSON body, if present.
pub fn usage_from_openai_json(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<UsageOnly>(body)
        .ok()?
        .usage
        .map(Usage::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_and_deepseek_shapes() {
        let u = usage_from_openai_json(
            br#"{"id":"x","usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,
            "prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":5}}}"#,
        )
        .expect("usage");
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 100,
                completion_tokens: 20,
                cached_tokens: 64,
                cache_write_tokens: 0,
                reasoning_tokens: 5
            }
        );
        let d = usage_from_openai_json(
            br#"{"usage":{"prompt_tokens":50,"completion_tokens":7,"prompt_cache_hit_tokens":32,"prompt_cache_miss_tokens":18}}"#,
        )
        .expect("usage");
        assert_eq!(d.cached_tokens, 32);
        assert_eq!(usage_from_openai_json(br#"{"usage":null}"#), None);
        assert_eq!(usage_from_openai_json(b"not json"), None);
    }
}
