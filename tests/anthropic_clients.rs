//! Anthropic clients and the first hour, end to end over real sockets on
//! 127.0.0.1: Claude Code's request shape on `/v1/messages?beta=true`, what
//! Anthropic / OpenAI upstreams receive of it, Anthropic-shaped model lists,
//! `HEAD /`, a local upstream's own models (vLLM / Ollama), the simulated
//! provider's structured outputs and `max_tokens`, `check-config` and
//! `classify` without keys, and the access line of every refused request.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use common::*;
use serde_json::{json, Value};

/// The request Claude Code 2.1 sends (trimmed to one tool): `role: "system"`
/// entries inside `messages`, system text blocks with `cache_control`,
/// adaptive thinking, `output_config`, `context_management`.
fn claude_code_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 32000,
        "stream": stream,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Answer briefly."}
        ],
        "messages": [
            {"role": "system", "content": "The working directory is /tmp/project."},
            {"role": "user", "content": [
                {"type": "text", "text": "Reply with the word pong.", "cache_control": {"type": "ephemeral"}}
            ]}
        ],
        "tools": [{"name": "Bash", "description": "Run a shell command",
                   "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                                    "required": ["command"]},
                   "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": "user_abc_account__session_1"}
    })
}

fn sim_config(extra: &str) -> String {
    format!(
        r#"
[providers.sim]
type = "simulated"
latency_ms = 0
tokens_per_second = 100000
models = ["*"]

[models."claude-opus-4.8"]
provider = "sim"
tier = "frontier"

[models."claude-haiku-4.5"]
provider = "sim"
tier = "economy"
{extra}
"#
    )
}

/// An upstream that records request bodies and answers with `answer(path, body)`.
#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Recorder {
    fn bodies(&self, path: &str) -> Vec<Value> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

async fn start_upstream(router: Router<Recorder>) -> (std::net::SocketAddr, Recorder) {
    let rec = Recorder {
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let app = router.with_state(rec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, rec)
}

fn record(rec: &Recorder, path: &str, body: &Bytes) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    rec.seen.lock().expect("lock").push((path.to_string(), v.clone()));
    v
}

async fn anthropic_messages(State(rec): State<Recorder>, body: Bytes) -> Response {
    let req = record(&rec, "/v1/messages", &body);
    axum::Json(json!({
        "id": "msg_fake1", "type": "message", "role": "assistant", "model": req["model"],
        "content": [
            {"type": "thinking", "thinking": "Say pong.", "signature": "sig-abc"},
            {"type": "text", "text": "pong"}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 20, "output_tokens": 5, "cache_read_input_tokens": 10}
    }))
    .into_response()
}

async fn openai_chat(State(rec): State<Recorder>, body: Bytes) -> Response {
    let req = record(&rec, "/v1/chat/completions", &body);
    axum::Json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": req["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    }))
    .into_response()
}

async fn local_models(State(rec): State<Recorder>) -> Response {
    rec.seen
        .lock()
        .expect("lock")
        .push(("/v1/models".into(), Value::Null));
    axum::Json(json!({"object": "list", "data": [
        {"id": "qwen3-8b", "object": "model", "owned_by": "vllm"},
        {"id": "llama-3.1-8b-instruct", "object": "model", "owned_by": "vllm"}
    ]}))
    .into_response()
}

#[tokio::test]
async fn claude_code_turn_on_simulated_models_with_beta_query() {
    let mut gw = start_gateway(&sim_config("")).await;
    let c = client();
    for model in ["claude-opus-4-8", "auto"] {
        let r = c
            .post(gw.url("/v1/messages?beta=true"))
            .header("anthropic-version", "2023-06-01")
            .header(
                "anthropic-beta",
                "claude-code-20250219,interleaved-thinking-2025-05-14",
            )
            .header("x-api-key", "anything")
            .json(&claude_code_body(model, false))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{model}");
        let served = r
            .headers()
            .get("x-switchyard-model")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .expect("x-switchyard-model");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["type"], "message");
        // The answer names the model that served, not `auto`.
        assert_eq!(v["model"], served.as_str(), "{model}");
        assert_ne!(v["model"], "auto");
        assert!(v["content"].as_array().is_some_and(|c| !c.is_empty()), "{v}");

        let r = c
            .post(gw.url("/v1/messages?beta=true"))
            .header("anthropic-version", "2023-06-01")
            .json(&claude_code_body(model, true))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("body");
        assert!(
            text.contains("event: message_start") && text.contains("event: message_stop"),
            "{text}"
        );
        let start = text
            .lines()
            .find(|l| l.starts_with("data: {\"type\":\"message_start\""))
            .expect("message_start");
        let v: Value = serde_json::from_str(&start[6..]).expect("json");
        assert_ne!(v["message"]["model"], "auto", "{model}");
    }
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.status == 200 && r.endpoint == "messages"));
}

#[tokio::test]
async fn anthropic_upstream_receives_claude_code_fields_untouched() {
    let (addr, rec) = start_upstream(Router::new().route("/v1/messages", post(anthropic_messages))).await;
    let cfg = format!(
        r#"
[providers.anthropic]
type = "anthropic"
base_url = "http://{addr}"
api_key = "{UPSTREAM_KEY}"
models = ["claude-*"]
"#
    );
    let mut gw = start_gateway(&cfg).await;
    let body = claude_code_body("claude-opus-4-8", false);
    let r = client()
        .post(gw.url("/v1/messages?beta=true"))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    // The signed thinking block comes back intact (Claude Code sends it on the next turn).
    assert_eq!(
        v["content"][0],
        json!({"type": "thinking", "thinking": "Say pong.", "signature": "sig-abc"})
    );
    assert_eq!(v["content"][1]["text"], "pong");
    assert_eq!(v["model"], "claude-opus-4-8");

    let sent = rec.bodies("/v1/messages");
    assert_eq!(sent.len(), 1);
    let s = &sent[0];
    for k in ["thinking", "output_config", "context_management"] {
        assert_eq!(s[k], body[k], "{k} passes through untouched");
    }
    let system: Vec<&str> = s["system"]
        .as_array()
        .expect("system blocks")
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect();
    assert_eq!(
        system,
        [
            "You are Claude Code, Anthropic's official CLI for Claude.",
            "Answer briefly.",
            "The working directory is /tmp/project."
        ]
    );
    assert_eq!(s["system"][0]["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(s["tools"][0]["cache_control"], json!({"type": "ephemeral"}));
    assert_eq!(s["messages"][0]["role"], "user");
    assert_eq!(
        s["messages"][0]["content"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
    assert_eq!(
        s["messages"].as_array().map(Vec::len),
        Some(1),
        "no system entry left in messages"
    );
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].cost_usd.is_some(),
        "claude-opus-4-8 is priced (dashed form)"
    );
}

#[tokio::test]
async fn openai_upstream_gets_reasoning_effort_and_no_anthropic_fields() {
    let (addr, rec) = start_upstream(Router::new().route("/v1/chat/completions", post(openai_chat))).await;
    let cfg = format!(
        r#"
[providers.openai]
type = "openai"
base_url = "http://{addr}/v1"
api_key = "{UPSTREAM_KEY}"
models = ["gpt-*"]
"#
    );
    let mut gw = start_gateway(&cfg).await;
    let c = client();
    for (model, effort) in [("gpt-5.4", Some("high")), ("gpt-4o-mini", None)] {
        let r = c
            .post(gw.url("/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .json(&claude_code_body(model, false))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{model}");
        let sent = rec.bodies("/v1/chat/completions");
        let s = sent.last().expect("sent");
        assert_eq!(s["model"], model);
        assert_eq!(s["reasoning_effort"].as_str(), effort, "{model}");
        for k in ["thinking", "output_config", "context_management", "top_k"] {
            assert!(
                s.get(k).is_none(),
                "{model}: {k} must not reach an OpenAI upstream"
            );
        }
        assert!(s["tools"][0].get("cache_control").is_none());
        assert_eq!(s["messages"][0]["role"], "system");
        assert!(s["messages"][0]["content"]
            .to_string()
            .contains("The working directory is /tmp/project."));
    }
    // A budgeted thinking request maps by budget.
    let mut body = claude_code_body("gpt-5.4", false);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    body.as_object_mut().expect("obj").remove("output_config");
    let r = c
        .post(gw.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(
        rec.bodies("/v1/chat/completions").last().expect("sent")["reasoning_effort"],
        "low"
    );
    gw.stop().await;
}

#[tokio::test]
async fn models_in_anthropic_shape_for_anthropic_clients_and_head_root() {
    let mut gw = start_gateway(&sim_config("")).await;
    let c = client();
    let v: Value = c
        .get(gw.url("/v1/models"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["object"], "list");
    for h in ["anthropic-version", "x-api-key"] {
        let v: Value = c
            .get(gw.url("/v1/models?limit=1"))
            .header(h, "2023-06-01")
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(v["data"][0]["type"], "model", "{h}: {v}");
        assert!(v["data"][0]["created_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')));
        assert_eq!(v["has_more"], true);
        assert_eq!(v["first_id"], v["last_id"]);
        let next: Value = c
            .get(gw.url(&format!(
                "/v1/models?after_id={}",
                v["last_id"].as_str().expect("id")
            )))
            .header(h, "x")
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert!(next["data"].as_array().is_some_and(|d| !d.is_empty()));
        assert_ne!(next["data"][0]["id"], v["data"][0]["id"]);
    }
    let one: Value = c
        .get(gw.url("/v1/models/claude-opus-4.8"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(one["type"], "model");
    assert_eq!(one["id"], "claude-opus-4.8");
    let r = c.head(gw.url("/")).send().await.expect("head");
    assert_eq!(r.status(), 200);
    let r = c.get(gw.url("/")).send().await.expect("get");
    assert_eq!(r.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn local_upstream_lists_its_models_and_auto_uses_them() {
    let (addr, rec) = start_upstream(
        Router::new()
            .route("/v1/models", get(local_models))
            .route("/v1/chat/completions", post(openai_chat)),
    )
    .await;
    // What `OPENAI_API_KEY=none OPENAI_BASE_URL=http://.../v1 switchyard serve` builds.
    let lookup = |k: &str| match k {
        "OPENAI_API_KEY" => Some("none".to_string()),
        "OPENAI_BASE_URL" => Some(format!("http://{addr}/v1")),
        _ => None,
    };
    let cfg = switchyard::config::from_env(&lookup).expect("env config");
    assert!(cfg.models.is_empty());
    let dir = tempfile::tempdir().expect("tmp");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = switchyard::start(cfg, &dir.path().join("l.sqlite"), listener)
        .await
        .expect("start");
    let base = format!("http://{}", server.addr);
    let c = client();
    // Discovery runs at start: wait for it (event-driven, generous deadline).
    let deadline = Instant::now() + Duration::from_secs(60);
    let ids = loop {
        let v: Value = c
            .get(format!("{base}/v1/models"))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let ids: Vec<String> = v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect();
        if !ids.is_empty() || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ids, ["qwen3-8b", "llama-3.1-8b-instruct"]);
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("x-switchyard-model")
            .and_then(|v| v.to_str().ok()),
        Some("qwen3-8b")
    );
    let sent = rec.bodies("/v1/chat/completions");
    assert_eq!(
        sent.last().expect("sent")["model"],
        "qwen3-8b",
        "`auto` is not forwarded literally"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn simulated_provider_structured_outputs_max_tokens_and_tools() {
    let mut gw = start_gateway(&sim_config("")).await;
    let c = client();
    let post = |body: Value| {
        let c = c.clone();
        let url = gw.url("/v1/chat/completions");
        async move {
            let r = c.post(url).json(&body).send().await.expect("send");
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.expect("json")
        }
    };
    let v = post(
        json!({"model": "claude-haiku-4.5", "messages": [{"role": "user", "content": "Give me a city"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "strict": true, "schema": {
            "type": "object", "additionalProperties": false, "required": ["name", "population", "tags"],
            "properties": {"name": {"type": "string"}, "population": {"type": "integer", "minimum": 1000},
                           "tags": {"type": "array", "items": {"enum": ["big", "small"]}}}}}}}),
    )
    .await;
    let content: Value = serde_json::from_str(v["choices"][0]["message"]["content"].as_str().expect("text"))
        .expect("content is JSON");
    assert!(content["name"].is_string());
    assert!(content["population"].as_i64().is_some_and(|p| p >= 1000));
    assert_eq!(content["tags"][0], "big");

    let v = post(
        json!({"model": "claude-haiku-4.5", "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "JSON please"}]}),
    )
    .await;
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().expect("text")).expect("JSON");
    assert!(content.is_object());

    for cap in [1u64, 4, 9] {
        let v = post(json!({"model": "claude-haiku-4.5", "max_tokens": cap,
            "messages": [{"role": "user", "content": "Write a long essay about trains"}]}))
        .await;
        assert!(
            v["usage"]["completion_tokens"].as_u64().is_some_and(|n| n <= cap),
            "{cap}: {v}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "length");
    }

    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "lookup_stock_price", "parameters": {"type": "object",
            "properties": {"ticker": {"type": "string"}, "days": {"type": "integer"}}, "required": ["ticker"]}}}
    ]);
    let v = post(json!({"model": "claude-haiku-4.5", "tools": tools,
        "messages": [{"role": "user", "content": "What is the stock price of ACME?"}]}))
    .await;
    let call = &v["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "lookup_stock_price");
    let args: Value = serde_json::from_str(call["arguments"].as_str().expect("args")).expect("JSON args");
    assert!(args["ticker"].is_string() && args["days"].is_i64());
    gw.stop().await;
}

#[test]
fn check_config_reports_all_unknown_keys_without_cascades() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "localhost:4000"
colour = "blue"

[log]
level = "loud"

[providers.sim]
type = "simulated"
model = ["*"]

[models.a]
provider = "nope"

[models.b]
provider = "sim"
tier = "economy"
fallbacks = ["a"]

[aliases]
x = "a"
"#,
    )
    .expect("write");
    let (ok, out, _) = run_switchyard(&["check-config", path.to_str().expect("path")]);
    assert!(!ok);
    assert!(out.contains("server") && out.contains("colour"), "{out}");
    assert!(out.contains("providers.sim") && out.contains("`model`"), "{out}");
    assert!(out.contains("log.level") && out.contains("\"loud\""), "{out}");
    assert!(
        out.contains("models.a.provider: unknown provider \"nope\""),
        "{out}"
    );
    assert!(
        !out.contains("server.listen"),
        "localhost:4000 is accepted: {out}"
    );
    assert!(
        !out.contains("aliases.x") && !out.contains("fallbacks"),
        "no cascade from models.a: {out}"
    );

    // A provider with its own error does not make its models "unknown provider".
    std::fs::write(
        &path,
        "[providers.p]\nbase_url = \"http://127.0.0.1:1/v1\"\n[models.m]\nprovider = \"p\"\n[aliases]\nd = \"m\"\n",
    )
    .expect("write");
    let (ok, out, _) = run_switchyard(&["check-config", path.to_str().expect("path")]);
    assert!(!ok);
    assert!(out.contains("providers.p.type"), "{out}");
    assert!(
        !out.contains("unknown provider") && !out.contains("aliases.d"),
        "{out}"
    );
    assert!(out.contains("1 error(s)"), "{out}");

    // No models: valid, with a warning.
    std::fs::write(&path, "[providers.s]\ntype = \"simulated\"\nmodels = [\"*\"]\n").expect("write");
    let (ok, out, _) = run_switchyard(&["check-config", path.to_str().expect("path")]);
    assert!(ok, "{out}");
    assert!(out.contains("warning: no [models.*]"), "{out}");
}

#[test]
fn demo_config_is_valid_and_classify_needs_no_provider_keys() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let (ok, out, _) = run_switchyard(&["check-config", demo]);
    assert!(ok, "{out}");
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[providers.openai]\ntype = \"openai\"\napi_key = \"${SWITCHYARD_TEST_UNSET_KEY_7Q}\"\nmodels = [\"gpt-*\"]\n\
         [models.\"gpt-5.4-mini\"]\nprovider = \"openai\"\ntier = \"economy\"\n\
         [models.\"gpt-5.5\"]\nprovider = \"openai\"\ntier = \"frontier\"\n",
    )
    .expect("write");
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Write a Rust function that reverses a string\"}]}\n",
    )
    .expect("write");
    let (ok, out, err) = run_switchyard(&[
        "classify",
        input.to_str().expect("path"),
        "--config",
        cfg.to_str().expect("path"),
    ]);
    assert!(ok, "{out}\n{err}");
    let v: Value = serde_json::from_str(out.lines().next().expect("line")).expect("json");
    assert_eq!(v["task"], "code_generation");
    assert!(v["model"].is_string(), "{v}");
}

/// Every refused request (401, 404 unknown URL, 405, 4xx on /v1/messages)
/// writes one access line: the binary's log is read after the requests.
#[tokio::test]
async fn every_refused_request_logs_one_access_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, sim_config("")).expect("write");
    let ledger = dir.path().join("l.sqlite");
    // One key exists, so requests without it are refused.
    let (ok, out, err) = run_switchyard(&[
        "keys",
        "create",
        "--name",
        "t",
        "--ledger",
        ledger.to_str().expect("path"),
    ]);
    assert!(ok, "{err}");
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .map(|k| k.trim().to_string())
        .expect("the key is printed once");
    let port = free_port();
    let log = dir.path().join("log.txt");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "serve",
            "--config",
            cfg.to_str().expect("path"),
            "--ledger",
            ledger.to_str().expect("path"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(child);
    let base = format!("http://127.0.0.1:{port}");
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = [
        (
            c.post(format!("{base}/v1/chat/completions"))
                .header("x-request-id", "refused-401"),
            401,
        ),
        (
            c.get(format!("{base}/no/such/url"))
                .header("x-request-id", "refused-404"),
            404,
        ),
        (
            c.delete(format!("{base}/health"))
                .header("x-request-id", "refused-405"),
            405,
        ),
        (
            c.post(format!("{base}/v1/messages"))
                .header("x-request-id", "refused-msg"),
            401,
        ),
        // A valid key, but no `max_tokens`: Anthropic's 400.
        (
            c.post(format!("{base}/v1/messages"))
                .header("x-request-id", "refused-msg-400")
                .header("x-api-key", &key),
            400,
        ),
    ];
    for (req, want) in refused {
        let r = req.json(&json!({})).send().await.expect("send");
        assert_eq!(r.status().as_u16(), want);
    }
    // The log writer is asynchronous: wait for the lines.
    let ids = [
        "refused-401",
        "refused-404",
        "refused-405",
        "refused-msg",
        "refused-msg-400",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if ids.iter().all(|id| text.contains(id)) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for id in ids {
        let n = text
            .lines()
            .filter(|l| l.contains(&format!("request_id={id} ")) && l.contains("request refused"))
            .count();
        assert_eq!(n, 1, "{id}: one access line\n{text}");
    }
    let _ = child.0.kill();
}
