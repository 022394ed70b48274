//! Test harness: a scripted fake OpenAI upstream on 127.0.0.1:0 and the
//! gateway on another port, both over real sockets.
//!
//! The fake's behaviour is chosen by the requested upstream model name:
//! `ok` (default), `fail-<status>`, `slow-<ms>` (delay before headers),
//! `drop-mid` (stream dies half-way), `trickle` (30 ms between stream pieces), `bad-json`, `no-done`
//! (stream ends cleanly without `[DONE]`), `error-event` (an error event mid-stream),
//! `ratelimit-<secs>` (429 with that Retry-After), `drop-first` (stream dies
//! before any byte), `hang-mid` (stream stalls forever half-way), and the
//! 200-but-failed upstreams of [`misbehaving_ok`].
#![allow(dead_code)]

pub mod services;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

pub const UPSTREAM_KEY: &str = "sk-upstream-test-secret-7f3a9c";
pub const ANSWER: &str = "Hello from the fake upstream, split into several deltas.";

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body's bytes as they arrived.
    pub raw: Bytes,
}

#[derive(Clone, Default)]
pub struct FakeState {
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub hits: Arc<AtomicUsize>,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub state: FakeState,
}

impl Fake {
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("lock").clone()
    }
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

pub async fn start_fake() -> Fake {
    let state = FakeState::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(fake_chat))
        .route("/v1/embeddings", post(fake_embeddings))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fake { addr, state }
}

fn record(st: &FakeState, path: &str, headers: &HeaderMap, body: &Bytes) -> Value {
    st.hits.fetch_add(1, Ordering::SeqCst);
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    st.requests.lock().expect("lock").push(Recorded {
        path: path.into(),
        headers: headers.clone(),
        body: v.clone(),
        raw: body.clone(),
    });
    v
}

fn usage() -> Value {
    json!({"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
           "prompt_tokens_details": {"cached_tokens": 400},
           "completion_tokens_details": {"reasoning_tokens": 50}})
}

fn error_body(status: u16) -> Value {
    json!({"error": {"message": format!("fake upstream failure {status}"),
                     "type": "invalid_request_error", "param": "temperature", "code": "fake_code"}})
}

/// The SSE events of the standard streamed answer.
pub fn stream_events(model: &str, include_usage: bool) -> Vec<String> {
    let mut ev = Vec::new();
    let chunk = |delta: Value, finish: Value| {
        json!({"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1,"model":model,
               "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
    };
    ev.push(chunk(json!({"role":"assistant","content":""}), Value::Null).to_string());
    for piece in ANSWER.split_inclusive(' ') {
        ev.push(chunk(json!({ "content": piece }), Value::Null).to_string());
    }
    ev.push(chunk(json!({}), json!("stop")).to_string());
    if include_usage {
        ev.push(
            json!({"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1,"model":model,
                   "choices":[],"usage":usage()})
            .to_string(),
        );
    }
    ev
}

/// Splits bytes at odd sizes so events straddle chunk boundaries.
fn odd_chunks(all: Vec<u8>) -> Vec<Bytes> {
    let sizes = [1usize, 7, 13, 3, 29, 64, 5, 101];
    let mut out = Vec::new();
    let mut i = 0;
    let mut k = 0;
    while i < all.len() {
        let n = sizes[k % sizes.len()].min(all.len() - i);
        out.push(Bytes::copy_from_slice(&all[i..i + n]));
        i += n;
        k += 1;
    }
    out
}

async fn fake_chat(State(st): State<FakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let req = record(&st, "/v1/chat/completions", &headers, &body);
    let model = req["model"].as_str().unwrap_or("ok").to_string();
    let stream = req["stream"].as_bool().unwrap_or(false);
    // `no-usage`: a provider that never reports usage (streamed or not).
    let include_usage =
        req["stream_options"]["include_usage"].as_bool().unwrap_or(false) && model != "no-usage";

    if let Some(ms) = model.strip_prefix("slow-").and_then(|m| m.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = model.strip_prefix("fail-").and_then(|m| m.parse::<u16>().ok()) {
        let mut r = (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(error_body(code)),
        )
            .into_response();
        if code == 429 {
            r.headers_mut().insert("retry-after", "7".parse().expect("hv"));
        }
        return r;
    }
    if let Some(secs) = model.strip_prefix("ratelimit-") {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(error_body(429))).into_response();
        r.headers_mut().insert("retry-after", secs.parse().expect("hv"));
        return r;
    }
    if model == "bad-json" {
        return (StatusCode::OK, "this is not json").into_response();
    }
    if let Some(r) = misbehaving_ok(&model) {
        return r;
    }
    if !stream {
        return axum::Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": if model == "no-usage" { Value::Null } else { usage() },
        }))
        .into_response();
    }
    let mut text = String::new();
    for e in stream_events(&model, include_usage) {
        text.push_str("data: ");
        text.push_str(&e);
        text.push_str("\n\n");
    }
    match model.as_str() {
        "no-done" => {}
        "error-event" => {
            let cut = text.find("\n\n").map_or(0, |i| i + 2);
            text.truncate(cut);
            text.push_str(
                "data: {\"error\":{\"message\":\"model overloaded\",\"type\":\"server_error\"}}\n\n",
            );
        }
        _ => text.push_str("data: [DONE]\n\n"),
    }
    let chunks = odd_chunks(text.into_bytes());
    let drop_mid = model == "drop-mid";
    let drop_first = model == "drop-first";
    let hang_mid = model == "hang-mid";
    let gap = Duration::from_micros(if model == "trickle" { 30_000 } else { 300 });
    let total = chunks.len();
    let s = futures_util::stream::unfold(0usize, move |i| {
        let chunks = chunks.clone();
        async move {
            if i >= total {
                return None;
            }
            if (drop_mid && i == total / 2) || (drop_first && i == 0) {
                return Some((Err(std::io::Error::other("connection dropped")), i + 1));
            }
            if hang_mid && i == total / 2 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(gap).await;
            Some((Ok::<Bytes, std::io::Error>(chunks[i].clone()), i + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(s))
        .expect("response")
}

/// Upstreams that answer HTTP 200 but fail (docs/reliability.md, "Fallback and streams"):
/// `error-200` (an error object as a 200 JSON body, also to stream requests),
/// `truncated` / `bad-utf8` (a 200 body that is not valid JSON),
/// `stream-error-first` (an event stream whose first event is an error object),
/// `comment-then-reset` (`: keep-alive`, then the connection breaks).
fn misbehaving_ok(model: &str) -> Option<Response> {
    let json_200 = |body: Vec<u8>| {
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("response")
    };
    let sse_200 = |chunks: Vec<Result<Bytes, std::io::Error>>| {
        let s = futures_util::stream::iter(chunks);
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(s))
            .expect("response")
    };
    Some(match model {
        "error-200" => json_200(
            br#"{"error":{"message":"upstream overloaded (error in a 200)","type":"server_error"}}"#.to_vec(),
        ),
        "truncated" => {
            json_200(br#"{"id":"chatcmpl-fake","object":"chat.completion","choices":[{"ind"#.to_vec())
        }
        "bad-utf8" => {
            json_200(b"{\"id\":\"chatcmpl-\xff\xfe\",\"object\":\"chat.completion\",\"choices\":[]}".to_vec())
        }
        "stream-error-first" => sse_200(vec![Ok(Bytes::from_static(
            b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
        ))]),
        "comment-then-reset" => sse_200(vec![
            Ok(Bytes::from_static(b": keep-alive\n\n")),
            Err(std::io::Error::other("connection reset")),
        ]),
        _ => return None,
    })
}

async fn fake_embeddings(State(st): State<FakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let req = record(&st, "/v1/embeddings", &headers, &body);
    let n = match &req["input"] {
        Value::Array(a) => a.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"object":"embedding","index":i,"embedding":[0.25, -0.5, i as f64]}))
        .collect();
    axum::Json(json!({"object":"list","data":data,"model":req["model"],
                      "usage":{"prompt_tokens": 8 * n, "total_tokens": 8 * n}}))
    .into_response()
}

/// A running gateway plus its ledger path.
pub struct Gw {
    pub server: Option<switchyard::Server>,
    pub base: String,
    pub ledger: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gw {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Graceful shutdown (drains the ledger), then the ledger rows.
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// Stops the gateway (flushing the ledger) and returns every row.
    pub async fn stop_and_rows(&mut self) -> Vec<Row> {
        self.stop().await;
        ledger_rows(&self.ledger).await
    }
}

/// Standard config for tests against the fake upstream `fake_addr`.
pub fn config_for(fake_addr: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
max_body_bytes = 65536
shutdown_grace_secs = 10

# One attempt per request and a breaker that never trips: these tests look at
# single upstream calls (tests/resilience.rs covers retries and breakers).
[resilience]
max_attempts = 1
breaker_consecutive_failures = 1000
breaker_min_calls = 1000

[providers.fake]
type = "openai"
base_url = "http://{fake_addr}/v1"
api_key = "{UPSTREAM_KEY}"
timeout_ms = 3000
connect_timeout_ms = 1000
models = ["ok", "fail-*", "slow-*", "drop-mid", "bad-json", "no-done", "error-event", "trickle", "no-usage"]

[models.fast]
provider = "fake"
model = "ok"
price = {{ input = 2.0, output = 10.0, cached_input = 0.5 }}

[models.unpriced]
provider = "fake"
model = "ok"

[models.embed]
provider = "fake"
model = "text-embedding-3-small"

[aliases]
default = "fast"
{extra}
"#
    )
}

pub async fn start_gateway(config_toml: &str) -> Gw {
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    start_gateway_with(config_toml, dir, ledger).await
}

/// A gateway whose config is read from a file in `dir` (so reloads re-read
/// it) and whose ledger is `ledger` (so a restart finds the same ledger).
pub async fn start_gateway_with(config_toml: &str, dir: tempfile::TempDir, ledger: PathBuf) -> Gw {
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config_toml).expect("write config");
    let cfg = switchyard::config::load_file(&path).expect("config valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gw");
    let server = switchyard::start(cfg, &ledger, listener).await.expect("start");
    let base = format!("http://{}", server.addr);
    Gw {
        server: Some(server),
        base,
        ledger,
        _dir: dir,
    }
}

/// [`start_gateway_with`] on a given clock (budgets, ledger timestamps and experiment ramps read it).
pub async fn start_gateway_with_clock(
    config_toml: &str,
    dir: tempfile::TempDir,
    ledger: PathBuf,
    clock: switchyard::accounting::budget::Clock,
) -> Gw {
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config_toml).expect("write config");
    let cfg = switchyard::config::load_file(&path).expect("config valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind gw");
    let server = switchyard::server::start_with_clock(cfg, &ledger, listener, clock)
        .await
        .expect("start");
    let base = format!("http://{}", server.addr);
    Gw {
        server: Some(server),
        base,
        ledger,
        _dir: dir,
    }
}

impl Gw {
    /// The config file the gateway reads on reload.
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("switchyard.toml")
    }

    /// The running state (for direct calls into the library).
    pub fn state(&self) -> std::sync::Arc<switchyard::AppState> {
        self.server
            .as_ref()
            .and_then(|s| s.state().upgrade())
            .expect("running gateway")
    }

    /// Waits until every queued ledger row is written.
    pub async fn flush_ledger(&self) {
        let st = self.state();
        // Up to 60 s: a loaded machine may be slow, never this slow.
        for _ in 0..6000 {
            if st.ledger.depth() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("ledger did not flush");
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

/// One ledger row, as tests look at it.
#[derive(Debug, Clone)]
pub struct Row {
    pub request_id: String,
    pub endpoint: String,
    pub requested_model: String,
    pub served_model: String,
    pub provider: String,
    pub upstream_model: String,
    pub status: i64,
    pub stream: bool,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub error: Option<String>,
}

/// Every ledger row, in insertion order.
pub async fn ledger_rows(path: &std::path::Path) -> Vec<Row> {
    use sqlx::{Connection, Row as _};
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .expect("open ledger");
    let rows = sqlx::query(
        "SELECT request_id, endpoint, requested_model, served_model, provider, upstream_model, status, stream, \
         latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd, error \
         FROM ledger ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("query ledger");
    rows.iter()
        .map(|r| Row {
            request_id: r.get(0),
            endpoint: r.get(1),
            requested_model: r.get(2),
            served_model: r.get(3),
            provider: r.get(4),
            upstream_model: r.get(5),
            status: r.get(6),
            stream: r.get(7),
            latency_ms: r.get(8),
            ttft_ms: r.get(9),
            prompt_tokens: r.get(10),
            completion_tokens: r.get(11),
            cached_tokens: r.get(12),
            reasoning_tokens: r.get(13),
            cost_usd: r.get(14),
            error: r.get(15),
        })
        .collect()
}

/// `cfg` (from [`config_for`]) with `admin_key` set to `key`.
pub fn with_admin_key(cfg: &str, key: &str) -> String {
    cfg.replace("[server]\n", &format!("[server]\nadmin_key = \"{key}\"\n"))
}

/// A port free on 127.0.0.1 just now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Runs the `switchyard` binary: (success, stdout, stderr).
pub fn run_switchyard(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
