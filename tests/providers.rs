//! Native provider types end to end over real sockets (Anthropic and Gemini
//! are covered with the official clients in tests/python).

mod common;

use common::*;
use serde_json::{json, Value};

/// Azure OpenAI and DeepSeek end to end: Azure's deployment URL, api-version
/// and api-key header; DeepSeek's cache-hit usage fields normalised.
#[tokio::test]
async fn azure_and_deepseek_end_to_end() {
    use axum::extract::{Path, Query};
    use std::collections::HashMap;
    let app = axum::Router::new()
        .route(
            "/openai/deployments/{dep}/chat/completions",
            axum::routing::post(
                |Path(dep): Path<String>, Query(q): Query<HashMap<String, String>>, headers: axum::http::HeaderMap| async move {
                    assert_eq!(q.get("api-version").map(String::as_str), Some("2024-10-21"));
                    assert_eq!(headers.get("api-key").and_then(|v| v.to_str().ok()), Some(UPSTREAM_KEY));
                    assert!(headers.get("authorization").is_none(), "Azure keys never go in Authorization");
                    axum::Json(json!({"id": "x", "object": "chat.completion", "model": dep,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("from {dep}")}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}))
                },
            ),
        )
        .route(
            "/v1/chat/completions",
            axum::routing::post(|| async {
                axum::Json(json!({"id": "d", "object": "chat.completion", "model": "deepseek-v4-pro",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok", "reasoning_content": "thought"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
                              "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36}}))
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    let cfg = format!(
        r#"
[providers.az]
type = "azure"
base_url = "http://{addr}"
api_key = "{UPSTREAM_KEY}"
[providers.ds]
type = "deepseek"
base_url = "http://{addr}/v1"
api_key = "{UPSTREAM_KEY}"
[models.gpt-az]
provider = "az"
model = "my-gpt-deployment"
price = {{ input = 1.0, output = 1.0 }}
[models.ds]
provider = "ds"
model = "deepseek-v4-pro"
"#
    );
    let mut gw = start_gateway(&cfg).await;
    let ask = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "hi"}]});
    let v: Value = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&ask("gpt-az"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], "from my-gpt-deployment");
    let v: Value = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&ask("ds"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"], "thought",
        "passed on unchanged"
    );
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].status, 200, "{:?}", rows[0].error);
    assert_eq!(
        (rows[1].prompt_tokens, rows[1].cached_tokens),
        (Some(100), Some(64))
    );
    // 36 fresh * 0.14 + 64 cached * 0.014 + 5 * 0.28, per 1M (shipped default prices).
    let want = (36.0 * 0.14 + 64.0 * 0.014 + 5.0 * 0.28) / 1e6;
    assert!((rows[1].cost_usd.expect("cost") - want).abs() < 1e-12);
}
