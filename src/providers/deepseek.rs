//! DeepSeek: OpenAI-compatible, served by the OpenAI backend unchanged.
//!
//! What differs from OpenAI, and why no translation is needed:
//! * Reasoning models (`deepseek-reasoner`) return the chain of thought as
//!   `message.reasoning_content` / `delta.reasoning_content`
//!   (<https://api-docs.deepseek.com/guides/reasoning_model>). The gateway
//!   forwards bodies byte for byte, so it reaches clients unchanged. Clients
//!   must not send it back in later turns (DeepSeek answers 400); that is
//!   the client's contract, not rewritten here.
//! * Context-cache usage is `usage.prompt_cache_hit_tokens` /
//!   `prompt_cache_miss_tokens` (hit + miss = `prompt_tokens`)
//!   (<https://api-docs.deepseek.com/guides/kv_cache>). The normalisation
//!   already lives in `api::usage` (`OpenAiUsage::prompt_cache_hit_tokens`
//!   -> `Usage::cached_tokens`); the tests below pin it.
//! * Reasoning tokens are reported as
//!   `completion_tokens_details.reasoning_tokens`, like OpenAI.

#[cfg(test)]
mod tests {
    use crate::api::usage::{usage_from_openai_json, Usage};

    const RESPONSE: &str = r#"{"id":"0193-ds","object":"chat.completion","created":1732700000,
        "model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant",
        "content":"42","reasoning_content":"6 times 7 is 42."},"logprobs":null,"finish_reason":"stop"}],
        "usage":{"prompt_tokens":120,"completion_tokens":85,"total_tokens":205,
        "prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":70},
        "prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":56},"system_fingerprint":"fp_ds"}"#;

    #[test]
    fn reasoner_response_normalises() {
        let u = usage_from_openai_json(RESPONSE.as_bytes()).expect("usage");
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 120,
                completion_tokens: 85,
                cached_tokens: 64,
                cache_write_tokens: 0,
                reasoning_tokens: 70,
            }
        );
        let v: serde_json::Value = serde_json::from_str(RESPONSE).expect("json");
        assert_eq!(
            v["choices"][0]["message"]["reasoning_content"],
            "6 times 7 is 42."
        );
    }

    #[test]
    fn cache_hit_field_alone_is_enough() {
        // deepseek-chat without prompt_tokens_details: the hit count is used.
        let u = usage_from_openai_json(
            br#"{"usage":{"prompt_tokens":1000,"completion_tokens":10,"prompt_cache_hit_tokens":768,"prompt_cache_miss_tokens":232}}"#,
        )
        .expect("usage");
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens, u.reasoning_tokens),
            (1000, 768, 0)
        );
    }

    #[test]
    fn final_stream_chunk_usage() {
        let u = usage_from_openai_json(
            br#"{"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":30,
            "completion_tokens":5,"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":30}}"#,
        )
        .expect("usage");
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (30, 5, 0)
        );
    }
}
