//! `POST /v1/responses` and `POST /v1/completions` end to end over sockets:
//! forwarded as is to an upstream that speaks the Responses API, translated
//! for chat and Anthropic upstreams, stored responses (`previous_response_id`,
//! across a restart, per key, storage off), and the shared pipeline (keys,
//! budgets, ledger).

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key-for-responses-tests-4b1";

/// What a fake upstream received: (path, body).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

fn native_body(model: &str) -> Value {
    json!({
        "id": "resp_upstream_1", "object": "response", "created_at": 1, "status": "completed",
        "model": model, "error": null, "incomplete_details": null,
        "output": [{"type": "message", "id": "msg_up", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "native answer", "annotations": []}]}],
        "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40},
                  "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 120},
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": []
    })
}

fn native_stream(model: &str) -> String {
    let mut done = native_body(model);
    done["usage"]["input_tokens"] = json!(30);
    let events = [
        (
            "response.created",
            json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_upstream_1", "object": "response", "status": "in_progress", "output": []}}),
        ),
        (
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "sequence_number": 1,
            "item_id": "msg_up", "output_index": 0, "content_index": 0, "delta": "native answer"}),
        ),
        (
            "response.completed",
            json!({"type": "response.completed", "sequence_number": 2, "response": done}),
        ),
    ];
    events
        .iter()
        .map(|(k, v)| format!("event: {k}\ndata: {v}\n\n"))
        .collect()
}

async fn fake_responses(State(seen): State<Seen>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock()
        .expect("lock")
        .push(("/v1/responses".into(), v.clone()));
    let model = v["model"].as_str().unwrap_or_default().to_string();
    if model == "down" {
        let mut r =
            axum::Json(json!({"error": {"message": "overloaded", "type": "server_error"}})).into_response();
        *r.status_mut() = axum::http::StatusCode::SERVICE_UNAVAILABLE;
        return r;
    }
    if v["stream"] == json!(true) {
        let mut events = native_stream(&model);
        if model == "cut" {
            // Ends cleanly before `response.completed`.
            let at = events.find("event: response.completed").expect("terminal event");
            events.truncate(at);
        }
        let mut r = Response::new(Body::from(events));
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().expect("hv"));
        return r;
    }
    axum::Json(native_body(&model)).into_response()
}

async fn fake_messages(State(seen): State<Seen>, _h: HeaderMap, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock()
        .expect("lock")
        .push(("/v1/messages".into(), v.clone()));
    axum::Json(json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": v["model"],
        "content": [{"type": "text", "text": "hello from claude"}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 4}
    }))
    .into_response()
}

/// A fake serving OpenAI's `/v1/responses` and Anthropic's `/v1/messages`.
async fn start_native() -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/responses", post(fake_responses))
        .route("/v1/messages", post(fake_messages))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

fn config(fake: std::net::SocketAddr, native: std::net::SocketAddr, extra: &str) -> String {
    config_for(
        fake,
        &format!(
            r#"
[providers.oai]
type = "openai"
base_url = "http://{native}/v1"
api_key = "sk-native-secret"
responses_api = true

[providers.claude]
type = "anthropic"
base_url = "http://{native}"
api_key = "sk-ant-secret"

[models.native]
provider = "oai"
model = "gpt-up"
price = {{ input = 1.0, output = 4.0, cached_input = 0.1 }}

[models.native-cut]
provider = "oai"
model = "cut"

[models.native-down]
provider = "oai"
model = "down"
fallbacks = ["fast"]

[models.sonnet]
provider = "claude"
model = "claude-up"
price = {{ input = 3.0, output = 15.0 }}
{extra}
"#
        ),
    )
}

async fn send(gw: &Gw, path: &str, body: Value, key: Option<&str>) -> reqwest::Response {
    let mut r = client().post(gw.url(path)).json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.expect("send")
}

fn seen_last(seen: &Seen) -> (String, Value) {
    seen.lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request reached the fake")
}

#[tokio::test]
async fn native_upstream_gets_the_request_as_sent_and_the_ledger_its_usage() {
    let fake = start_fake().await;
    let (native, seen) = start_native().await;
    let mut gw = start_gateway(&config(fake.addr, native, "")).await;
    let body = json!({
        "model": "native", "input": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "web_search"}, {"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "include": ["reasoning.encrypted_content"], "store": false, "reasoning": {"effort": "high"},
        "prompt_cache_key": "pk", "future_field": {"kept": true}, "max_output_tokens": 77
    });
    let r = send(&gw, "/v1/responses", body.clone(), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-provider"], "oai");
    let cost: f64 = r.headers()["x-switchyard-cost-usd"]
        .to_str()
        .expect("str")
        .parse()
        .expect("num");
    let got: Value = r.json().await.expect("json");
    assert_eq!(
        got,
        native_body("gpt-up"),
        "the upstream body comes back as it is"
    );
    let (path, up) = seen_last(&seen);
    assert_eq!(path, "/v1/responses");
    let mut want = body;
    want["model"] = json!("gpt-up");
    assert_eq!(up, want, "forwarded as sent, with the upstream model id");
    assert_eq!(fake.hits(), 0);
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!((row.endpoint.as_str(), row.status), ("responses", 200));
    assert_eq!(row.prompt_tokens, Some(100));
    assert_eq!(row.cached_tokens, Some(40));
    assert_eq!(row.completion_tokens, Some(20));
    assert_eq!(row.reasoning_tokens, Some(5));
    // 60 uncached at $1/M + 40 cached at $0.1/M + 20 out at $4/M.
    let want_cost = (60.0 * 1.0 + 40.0 * 0.1 + 20.0 * 4.0) / 1e6;
    assert!((row.cost_usd.expect("cost") - want_cost).abs() < 1e-12, "{row:?}");
    assert!((cost - want_cost).abs() < 1e-12);
}

#[tokio::test]
async fn native_stream_is_forwarded_event_by_event_and_accounted() {
    let fake = start_fake().await;
    let (native, _seen) = start_native().await;
    let mut gw = start_gateway(&config(fake.addr, native, "")).await;
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "native", "input": "hi", "stream": true}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.expect("body");
    assert_eq!(text, native_stream("gpt-up"));
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].stream);
    assert_eq!(rows[0].status, 200);
    assert_eq!(rows[0].prompt_tokens, Some(30), "usage from response.completed");
}

#[tokio::test]
async fn hosted_tools_are_refused_unless_an_upstream_speaks_the_api() {
    let fake = start_fake().await;
    let (native, seen) = start_native().await;
    let mut gw = start_gateway(&config(fake.addr, native, "")).await;
    let body = json!({"model": "fast", "input": "search", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]});
    let r = send(&gw, "/v1/responses", body, None).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], "hosted_tool_unsupported");
    assert_eq!(e["error"]["param"], "tools");
    assert!(e["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("file_search"));
    assert_eq!(fake.hits(), 0);
    assert!(seen.lock().expect("lock").is_empty());
    assert!(gw.stop_and_rows().await.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn anthropic_upstream_serves_a_translated_request() {
    let fake = start_fake().await;
    let (native, seen) = start_native().await;
    let mut gw = start_gateway(&config(fake.addr, native, "")).await;
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "sonnet", "instructions": "Be brief.", "input": "hi", "max_output_tokens": 99}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.expect("json");
    assert_eq!(got["object"], "response");
    assert_eq!(got["model"], "sonnet");
    assert_eq!(got["output"][0]["content"][0]["text"], "hello from claude");
    assert_eq!(got["usage"]["input_tokens"], 12);
    assert_eq!(got["usage"]["output_tokens"], 4);
    let (path, up) = seen_last(&seen);
    assert_eq!(path, "/v1/messages");
    assert_eq!(up["model"], "claude-up");
    assert_eq!(up["max_tokens"], 99);
    assert_eq!(up["messages"][0]["role"], "user");
    assert_eq!(
        up["messages"][0]["content"].to_string().matches("\"hi\"").count(),
        1,
        "{up}"
    );
    let system = up["system"].to_string();
    assert!(system.contains("Be brief."), "{system}");
    let rows = gw.stop_and_rows().await;
    assert_eq!(
        (rows[0].endpoint.as_str(), rows[0].provider.as_str()),
        ("responses", "claude")
    );
}

#[tokio::test]
async fn stored_conversation_continues_on_another_provider_and_after_a_restart() {
    let fake = start_fake().await;
    let (native, seen) = start_native().await;
    let cfg = config(fake.addr, native, "");
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let mut gw = start_gateway_with(&cfg, tempfile::tempdir().expect("tmp"), ledger.clone()).await;
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "fast", "input": "first turn"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.expect("json");
    let id = first["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("resp_"));
    gw.stop().await;

    // A new process on the same ledger database.
    let mut gw = start_gateway_with(&cfg, tempfile::tempdir().expect("tmp"), ledger).await;
    let got = client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .expect("send");
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<Value>().await.expect("json"), first);
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "native", "input": "second turn", "previous_response_id": id}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let (_, up) = seen_last(&seen);
    assert!(up.get("previous_response_id").is_none(), "expanded here: {up}");
    let input = up["input"].as_array().expect("input");
    assert_eq!(input.len(), 3, "{up}");
    assert_eq!(input[0]["content"], "first turn");
    let mut answered = first["output"][0].clone();
    answered.as_object_mut().expect("item").remove("id");
    assert_eq!(
        input[1], answered,
        "the stored answer, without this gateway's item id"
    );
    assert_eq!(input[2]["content"], "second turn");

    // An id the gateway does not know goes to the upstream that may know it.
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "native", "input": "x", "previous_response_id": "resp_openai_side"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(seen_last(&seen).1["previous_response_id"], "resp_openai_side");
    // ... and is a clear 400 where no upstream can know it.
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "fast", "input": "x", "previous_response_id": "resp_openai_side"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], "previous_response_not_found");
    gw.stop().await;
}

#[tokio::test]
async fn storage_off_answers_previous_response_id_with_a_clear_400() {
    let fake = start_fake().await;
    let (native, _seen) = start_native().await;
    let cfg = config(fake.addr, native, "")
        .replace("[resilience]", "[ledger]\nresponses_ttl_secs = 0\n\n[resilience]");
    let mut gw = start_gateway(&cfg).await;
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "fast", "input": "hi"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "fast", "input": "again", "previous_response_id": id}),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], "response_storage_disabled");
    assert_eq!(e["error"]["param"], "previous_response_id");
    let r = client()
        .get(gw.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    gw.stop().await;
}

async fn create_key(gw: &Gw, spec: Value) -> String {
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&spec)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.expect("json")["key"]
        .as_str()
        .expect("key")
        .to_string()
}

#[tokio::test]
async fn keys_budgets_and_stored_responses_are_per_key() {
    let fake = start_fake().await;
    let (native, _seen) = start_native().await;
    let mut gw = start_gateway(&with_admin_key(&config(fake.addr, native, ""), ADMIN)).await;
    let a = create_key(&gw, json!({"name": "a", "models": ["fast"]})).await;
    let b = create_key(&gw, json!({"name": "b"})).await;
    let poor = create_key(&gw, json!({"name": "poor", "daily_budget": 0.000001})).await;

    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "fast", "input": "hi"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 401, "a key is needed once keys exist");
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "native", "input": "hi"}),
        Some(&a),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "model_not_allowed"
    );
    let r = send(
        &gw,
        "/v1/completions",
        json!({"model": "native", "prompt": "hi"}),
        Some(&a),
    )
    .await;
    assert_eq!(r.status(), 403);

    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "fast", "input": "hi"}),
        Some(&poor),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "budget_exceeded"
    );

    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "fast", "input": "mine"}),
        Some(&a),
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let get = |k: String| {
        let url = gw.url(&format!("/v1/responses/{id}"));
        async move {
            client()
                .get(url)
                .bearer_auth(k)
                .send()
                .await
                .expect("send")
                .status()
        }
    };
    assert_eq!(get(a.clone()).await, 200);
    assert_eq!(get(b.clone()).await, 404, "another key cannot read it");
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "fast", "input": "x", "previous_response_id": id}),
        Some(&b),
    )
    .await;
    assert_eq!(r.status(), 400, "nor continue it");
    let del = client()
        .delete(gw.url(&format!("/v1/responses/{id}")))
        .bearer_auth(&a)
        .send()
        .await
        .expect("send");
    assert_eq!(del.status(), 200);
    assert_eq!(get(a.clone()).await, 404);

    let rows = gw.stop_and_rows().await;
    let served: Vec<&str> = rows.iter().map(|r| r.endpoint.as_str()).collect();
    assert_eq!(served, ["responses"], "refused requests reach no provider");
}

#[tokio::test]
async fn translated_stream_carries_text_and_usage() {
    let fake = start_fake().await;
    let (native, _seen) = start_native().await;
    let mut gw = start_gateway(&config(fake.addr, native, "")).await;
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "fast", "input": "hi", "stream": true}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).expect("json"))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert_eq!(kinds.last(), Some(&"response.completed"));
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(deltas, ANSWER);
    let done = &events.last().expect("events")["response"];
    assert_eq!(done["usage"]["input_tokens"], 1000);
    assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], 400);
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows[0].prompt_tokens, Some(1000));
    assert!(rows[0].stream);
}

#[tokio::test]
async fn legacy_completions_through_the_pipeline() {
    let fake = start_fake().await;
    let (native, _seen) = start_native().await;
    let mut gw = start_gateway(&config(fake.addr, native, "")).await;
    let r = send(
        &gw,
        "/v1/completions",
        json!({"model": "fast", "prompt": "Say hi", "echo": true}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-switchyard-cost-usd"));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], format!("Say hi{ANSWER}"));
    let up = &fake.requests()[0].body;
    assert_eq!(up["messages"], json!([{"role": "user", "content": "Say hi"}]));
    assert_eq!(up["max_tokens"], 16);
    let r = send(
        &gw,
        "/v1/completions",
        json!({"model": "fast", "prompt": [1, 2, 3]}),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.expect("json")["error"]["param"], "prompt");
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].endpoint, "completions");
    assert_eq!(rows[0].prompt_tokens, Some(1000));
}

#[tokio::test]
async fn bad_responses_requests_are_openai_errors() {
    let fake = start_fake().await;
    let (native, _seen) = start_native().await;
    let mut gw = start_gateway(&config(fake.addr, native, "")).await;
    for (body, param) in [
        (json!({"input": "hi"}), "model"),
        (json!({"model": "fast"}), "input"),
        (json!({"model": "fast", "input": 7}), "input"),
        (json!({"model": "fast", "input": "x", "stream": "yes"}), "stream"),
        (
            json!({"model": "fast", "input": [{"type": "function_call_output", "output": "x"}]}),
            "input[0].call_id",
        ),
    ] {
        let r = send(&gw, "/v1/responses", body.clone(), None).await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(e["error"]["param"], param, "{body}");
    }
    let r = client()
        .post(gw.url("/v1/responses"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let r = send(&gw, "/v1/responses", json!({"model": "nope", "input": "x"}), None).await;
    assert_eq!(r.status(), 404);
    assert!(gw.stop_and_rows().await.is_empty());
}

#[tokio::test]
async fn native_stream_cut_before_its_end_is_recorded_as_failed() {
    let fake = start_fake().await;
    let (native, _seen) = start_native().await;
    let mut gw = start_gateway(&config(fake.addr, native, "")).await;
    let r = send(
        &gw,
        "/v1/responses",
        json!({"model": "native-cut", "input": "hi", "stream": true}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    assert!(text.contains("response.output_text.delta"));
    assert!(!text.contains("event: response.completed"));
    assert!(
        text.ends_with("\n\n") && text.contains("event: error\n"),
        "the client learns it is cut: {text}"
    );
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, 502);
    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("before response.completed"),
        "{:?}",
        rows[0]
    );
}

#[tokio::test]
async fn a_chain_mixes_native_and_translated_deployments() {
    let fake = start_fake().await;
    let (native, seen) = start_native().await;
    let cfg = config(fake.addr, native, "").replace(
        "max_attempts = 1",
        "max_attempts = 3\nbackoff_base_ms = 1\nbackoff_max_ms = 2\nretries_per_target = 0",
    );
    let mut gw = start_gateway(&cfg).await;
    for stream in [false, true] {
        let r = send(
            &gw,
            "/v1/responses",
            json!({"model": "native-down", "input": "hi", "stream": stream}),
            None,
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-switchyard-provider"], "fake");
        assert_eq!(r.headers()["x-switchyard-attempts"], "2");
        let text = r.text().await.expect("body");
        if stream {
            assert!(text.contains("event: response.completed"), "{text}");
            assert!(text.contains(ANSWER) || text.contains("response.output_text.delta"));
        } else {
            let v: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(v["object"], "response", "translated back from chat: {v}");
            assert_eq!(v["output"][0]["content"][0]["text"], ANSWER);
        }
    }
    assert_eq!(
        seen.lock().expect("lock").len(),
        2,
        "the native deployment was tried first"
    );
    let rows = gw.stop_and_rows().await;
    let got: Vec<(&str, i64)> = rows.iter().map(|r| (r.provider.as_str(), r.status)).collect();
    assert_eq!(got, [("oai", 502), ("fake", 200), ("oai", 502), ("fake", 200)]);
}
