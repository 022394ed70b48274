//! Cost arithmetic for each provider's usage shape, cached tokens included:
//! the provider's own response body -> normalised usage -> USD.

use switchyard::accounting::pricing::Price;
use switchyard::api::usage::usage_from_openai_json;

const PRICE: Price = Price {
    input: 3.0,
    output: 15.0,
    cached_input: Some(0.3),
    cache_write: Some(3.75),
    per_request: 0.0,
};

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn openai_cached_and_reasoning_tokens() {
    let body = br#"{"usage":{"prompt_tokens":10000,"completion_tokens":2000,"total_tokens":12000,
        "prompt_tokens_details":{"cached_tokens":4000},"completion_tokens_details":{"reasoning_tokens":1500}}}"#;
    let u = usage_from_openai_json(body).expect("usage");
    assert_eq!(
        (
            u.prompt_tokens,
            u.cached_tokens,
            u.completion_tokens,
            u.reasoning_tokens
        ),
        (10000, 4000, 2000, 1500)
    );
    // Reasoning tokens are output tokens (already inside completion_tokens).
    close(
        PRICE.cost(&u),
        (6000.0 * 3.0 + 4000.0 * 0.3 + 2000.0 * 15.0) / 1e6,
    );
}

#[test]
fn deepseek_cache_hit_tokens() {
    let body = br#"{"usage":{"prompt_tokens":1000,"completion_tokens":10,"total_tokens":1010,
        "prompt_cache_hit_tokens":768,"prompt_cache_miss_tokens":232}}"#;
    let u = usage_from_openai_json(body).expect("usage");
    assert_eq!((u.prompt_tokens, u.cached_tokens), (1000, 768));
    close(PRICE.cost(&u), (232.0 * 3.0 + 768.0 * 0.3 + 10.0 * 15.0) / 1e6);
}

#[test]
fn anthropic_cache_read_and_write_tokens() {
    // Anthropic's input_tokens excludes cache reads and writes.
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-opus-4.7",
        "content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,
        "usage":{"input_tokens":500,"output_tokens":300,"cache_read_input_tokens":2000,"cache_creation_input_tokens":1000}}"#;
    let (_, u) = switchyard::providers::anthropic::parse_response(body, "claude").expect("parse");
    assert_eq!(
        (u.prompt_tokens, u.cached_tokens, u.cache_write_tokens),
        (3500, 2000, 1000)
    );
    close(
        PRICE.cost(&u),
        (500.0 * 3.0 + 2000.0 * 0.3 + 1000.0 * 3.75 + 300.0 * 15.0) / 1e6,
    );
}

#[test]
fn gemini_cached_content_and_thoughts() {
    // Gemini's candidatesTokenCount excludes thinking tokens (thoughtsTokenCount).
    let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP","index":0}],
        "usageMetadata":{"promptTokenCount":8000,"cachedContentTokenCount":6000,"candidatesTokenCount":100,
        "thoughtsTokenCount":900,"totalTokenCount":9000},"modelVersion":"gemini-2.5-pro","responseId":"r1"}"#;
    let (_, u) = switchyard::providers::gemini::parse_response(body, "gemini").expect("parse");
    assert_eq!(
        (
            u.prompt_tokens,
            u.cached_tokens,
            u.completion_tokens,
            u.reasoning_tokens
        ),
        (8000, 6000, 1000, 900)
    );
    close(
        PRICE.cost(&u),
        (2000.0 * 3.0 + 6000.0 * 0.3 + 1000.0 * 15.0) / 1e6,
    );
}

#[test]
fn per_request_fee_and_missing_cache_prices() {
    let p = Price {
        input: 1.0,
        output: 2.0,
        cached_input: None,
        cache_write: None,
        per_request: 0.002,
    };
    let u = usage_from_openai_json(
        br#"{"usage":{"prompt_tokens":1000,"completion_tokens":1000,"prompt_tokens_details":{"cached_tokens":500}}}"#,
    )
    .expect("usage");
    // Without a cached price, cached tokens cost the input price.
    close(p.cost(&u), (1000.0 * 1.0 + 1000.0 * 2.0) / 1e6 + 0.002);
}
