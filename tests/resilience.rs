//! Fault injection: a failing deployment and a healthy fallback, both fake
//! upstreams on 127.0.0.1. For each fault: what the client sees, how many
//! upstream attempts were made, and the breaker state afterwards.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// `primary` is served by the `bad` fake as upstream id `bad_model`, falling
/// back to `backup` on the `good` fake.
fn config(bad: &str, good: std::net::SocketAddr, bad_model: &str, extra: &str) -> String {
    format!(
        r#"
[resilience]
max_attempts = 4
retries_per_target = 1
backoff_base_ms = 5
backoff_max_ms = 20
retry_after_cap_ms = 5000
breaker_consecutive_failures = 3
breaker_cooldown_ms = 60000
breaker_max_cooldown_ms = 120000

[server]
admin_key = "admin-secret"

[providers.bad]
type = "openai"
base_url = "http://{bad}/v1"
api_key = "{UPSTREAM_KEY}"
first_byte_timeout_ms = 300
idle_timeout_ms = 300

[providers.good]
type = "openai"
base_url = "http://{good}/v1"
api_key = "{UPSTREAM_KEY}"

[models.primary]
provider = "bad"
model = "{bad_model}"
fallbacks = ["backup"]

[models.backup]
provider = "good"
model = "ok"
{extra}
"#
    )
}

struct Outcome {
    status: u16,
    attempts: String,
    provider: String,
    body: String,
}

async fn call(gw: &Gw, stream: bool) -> Outcome {
    let body = json!({"model": "primary", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let h = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (attempts, provider) = (h("x-switchyard-attempts"), h("x-switchyard-provider"));
    let mut s = resp.bytes_stream();
    let mut body = Vec::new();
    while let Some(c) = s.next().await {
        match c {
            Ok(c) => body.extend_from_slice(&c),
            Err(_) => break,
        }
    }
    Outcome {
        status,
        attempts,
        provider,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn breaker_state(gw: &Gw, provider: &str) -> Value {
    let v: Value = client()
        .get(gw.url("/admin/health"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    v["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["provider"] == provider)
        .cloned()
        .expect("provider")
}

struct Case {
    name: &'static str,
    bad_model: &'static str,
    stream: bool,
    /// Upstream attempts at the failing deployment.
    bad_hits: usize,
    /// Did the healthy fallback serve?
    fell_back: bool,
}

#[tokio::test]
async fn fault_injection_suite() {
    let cases = [
        Case {
            name: "500",
            bad_model: "fail-500",
            stream: false,
            bad_hits: 2,
            fell_back: true,
        },
        Case {
            name: "503",
            bad_model: "fail-503",
            stream: false,
            bad_hits: 2,
            fell_back: true,
        },
        Case {
            name: "529 (overloaded)",
            bad_model: "fail-529",
            stream: false,
            bad_hits: 2,
            fell_back: true,
        },
        Case {
            name: "429, Retry-After 0",
            bad_model: "ratelimit-0",
            stream: false,
            bad_hits: 2,
            fell_back: true,
        },
        Case {
            name: "429, Retry-After over the cap",
            bad_model: "ratelimit-30",
            stream: false,
            bad_hits: 1,
            fell_back: true,
        },
        Case {
            name: "hang before headers",
            bad_model: "slow-5000",
            stream: false,
            bad_hits: 2,
            fell_back: true,
        },
        Case {
            name: "malformed JSON",
            bad_model: "bad-json",
            stream: false,
            bad_hits: 2,
            fell_back: true,
        },
        Case {
            name: "401 (gateway key refused)",
            bad_model: "fail-401",
            stream: false,
            bad_hits: 1,
            fell_back: true,
        },
        Case {
            name: "stream dies before first chunk",
            bad_model: "drop-first",
            stream: true,
            bad_hits: 2,
            fell_back: true,
        },
        Case {
            name: "stream 503",
            bad_model: "fail-503",
            stream: true,
            bad_hits: 2,
            fell_back: true,
        },
        // docs/reliability.md, "Fallback and streams".
        Case {
            name: "200 with an error body",
            bad_model: "error-200",
            stream: false,
            bad_hits: 2,
            fell_back: true,
        },
        // docs/reliability.md, "Fallback and streams".
        Case {
            name: "200 with a truncated JSON body",
            bad_model: "truncated",
            stream: false,
            bad_hits: 2,
            fell_back: true,
        },
        // docs/reliability.md, "Fallback and streams".
        Case {
            name: "200 with invalid UTF-8",
            bad_model: "bad-utf8",
            stream: false,
            bad_hits: 2,
            fell_back: true,
        },
        // docs/reliability.md, "Fallback and streams".
        Case {
            name: "stream: 200 with a JSON error body",
            bad_model: "error-200",
            stream: true,
            bad_hits: 2,
            fell_back: true,
        },
        // docs/reliability.md, "Fallback and streams".
        Case {
            name: "stream: first event is an error object",
            bad_model: "stream-error-first",
            stream: true,
            bad_hits: 2,
            fell_back: true,
        },
        // docs/reliability.md, "Fallback and streams".
        Case {
            name: "stream: keep-alive comment, then reset",
            bad_model: "comment-then-reset",
            stream: true,
            bad_hits: 2,
            fell_back: true,
        },
    ];
    for c in cases {
        let bad = start_fake().await;
        let good = start_fake().await;
        let mut gw = start_gateway(&config(&bad.addr.to_string(), good.addr, c.bad_model, "")).await;
        let out = call(&gw, c.stream).await;
        assert_eq!(
            out.status, 200,
            "{}: client sees a normal answer: {}",
            c.name, out.body
        );
        assert_eq!(
            bad.hits(),
            c.bad_hits,
            "{}: attempts at the failing deployment",
            c.name
        );
        assert_eq!(good.hits(), usize::from(c.fell_back), "{}: fallback", c.name);
        assert_eq!(
            out.attempts,
            (c.bad_hits + 1).to_string(),
            "{}: x-switchyard-attempts",
            c.name
        );
        assert_eq!(out.provider, "good", "{}", c.name);
        if c.stream {
            assert!(out.body.ends_with("data: [DONE]\n\n"), "{}: clean stream", c.name);
            assert!(!out.body.contains("\"error\""), "{}: no error event", c.name);
        } else {
            let v: Value = serde_json::from_str(&out.body).expect("json");
            assert_eq!(v["choices"][0]["message"]["content"], ANSWER, "{}", c.name);
        }
        let st = breaker_state(&gw, "bad").await;
        // Below the threshold of 3 consecutive failures: still closed.
        assert_eq!(st["state"], "closed", "{}: {st}", c.name);
        assert_eq!(st["consecutive_failures"], c.bad_hits, "{}: {st}", c.name);
        let rows = gw.stop_and_rows().await;
        assert_eq!(
            rows.len(),
            c.bad_hits + 1,
            "{}: one ledger row per attempt",
            c.name
        );
        assert_eq!(rows.last().map(|r| r.status), Some(200), "{}", c.name);
    }
}

#[tokio::test]
async fn connection_refused_falls_back() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let good = start_fake().await;
    let gw = start_gateway(&config(&dead.to_string(), good.addr, "ok", "")).await;
    let out = call(&gw, false).await;
    assert_eq!(
        (out.status, out.attempts.as_str(), out.provider.as_str()),
        (200, "3", "good")
    );
    assert_eq!(breaker_state(&gw, "bad").await["consecutive_failures"], 2);
}

#[tokio::test]
async fn client_errors_are_returned_and_never_trip_the_breaker() {
    let bad = start_fake().await;
    let good = start_fake().await;
    let gw = start_gateway(&config(&bad.addr.to_string(), good.addr, "fail-400", "")).await;
    for _ in 0..5 {
        let out = call(&gw, false).await;
        assert_eq!(out.status, 400);
        assert_eq!(out.attempts, "1");
        let v: Value = serde_json::from_str(&out.body).expect("json");
        assert_eq!(v["error"]["message"], "fake upstream failure 400");
    }
    assert_eq!(
        (bad.hits(), good.hits()),
        (5, 0),
        "no retry, no fallback for the client's mistake"
    );
    let st = breaker_state(&gw, "bad").await;
    assert_eq!(
        (st["state"].as_str(), st["consecutive_failures"].as_u64()),
        (Some("closed"), Some(0))
    );
}

#[tokio::test]
async fn open_breaker_is_skipped_without_paying_a_timeout() {
    let bad = start_fake().await;
    let good = start_fake().await;
    let gw = start_gateway(&config(&bad.addr.to_string(), good.addr, "slow-5000", "")).await;
    // Two requests: 4 timeouts at the bad deployment -> 3 consecutive failures open it.
    for _ in 0..2 {
        assert_eq!(call(&gw, false).await.status, 200);
    }
    let st = breaker_state(&gw, "bad").await;
    assert_eq!(st["state"], "open", "{st}");
    let before = bad.hits();
    let t = Instant::now();
    let out = call(&gw, false).await;
    assert_eq!(
        (out.status, out.attempts.as_str(), out.provider.as_str()),
        (200, "1", "good")
    );
    assert_eq!(bad.hits(), before, "open breaker: not tried");
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "no timeout paid: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let bad = start_fake().await;
    let good = start_fake().await;
    let gw = start_gateway(&config(&bad.addr.to_string(), good.addr, "ratelimit-1", "")).await;
    let t = Instant::now();
    let out = call(&gw, false).await;
    assert_eq!((out.status, out.attempts.as_str()), (200, "3"));
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "waited Retry-After: {:?}",
        t.elapsed()
    );
    assert_eq!(bad.hits(), 2);
}

#[tokio::test]
async fn after_first_chunk_failures_end_the_stream_with_an_error_event() {
    for model in ["drop-mid", "hang-mid"] {
        let bad = start_fake().await;
        let good = start_fake().await;
        let mut gw = start_gateway(&config(&bad.addr.to_string(), good.addr, model, "")).await;
        let t = Instant::now();
        let out = call(&gw, true).await;
        assert_eq!(out.status, 200, "{model}: committed");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{model}: never a hang ({:?})",
            t.elapsed()
        );
        let last = out
            .body
            .trim_end()
            .rsplit("\n\n")
            .next()
            .unwrap_or("")
            .to_string();
        assert!(
            last.starts_with("data: {\"error\""),
            "{model}: ends with an error event: {last}"
        );
        assert!(!out.body.contains("[DONE]"), "{model}: never a silent clean end");
        assert_eq!(
            (bad.hits(), good.hits()),
            (1, 0),
            "{model}: no fallback after commit"
        );
        assert_eq!(
            breaker_state(&gw, "bad").await["consecutive_failures"],
            1,
            "{model}: counted as a failure"
        );
        let rows = gw.stop_and_rows().await;
        assert_eq!(rows.len(), 1);
        assert!(rows[0].status >= 500, "{model}: {}", rows[0].status);
    }
}

#[tokio::test]
async fn everything_down_gives_one_clear_error() {
    let bad = start_fake().await;
    let good = start_fake().await;
    let cfg = config(&bad.addr.to_string(), good.addr, "fail-503", "").replace(
        "[models.backup]\nprovider = \"good\"\nmodel = \"ok\"",
        "[models.backup]\nprovider = \"good\"\nmodel = \"fail-500\"",
    );
    let gw = start_gateway(&cfg).await;
    let out = call(&gw, false).await;
    assert_eq!((out.status, out.attempts.as_str()), (502, "4"));
    let v: Value = serde_json::from_str(&out.body).expect("json");
    assert_eq!(v["error"]["type"], "upstream_error");
    // Both breakers open after the next request; then the gateway fails fast with 503.
    call(&gw, false).await;
    let t = Instant::now();
    let out = call(&gw, false).await;
    assert_eq!((out.status, out.attempts.as_str()), (503, "0"));
    let v: Value = serde_json::from_str(&out.body).expect("json");
    assert_eq!(v["error"]["code"], "no_healthy_upstream");
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "fails fast, no 300 ms timeout paid: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn admin_health_needs_the_admin_key() {
    let bad = start_fake().await;
    let good = start_fake().await;
    let gw = start_gateway(&config(&bad.addr.to_string(), good.addr, "ok", "")).await;
    let r = client().get(gw.url("/admin/health")).send().await.expect("send");
    assert_eq!(r.status(), 401);
    let r = client()
        .get(gw.url("/admin/health"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    call(&gw, false).await;
    let st = breaker_state(&gw, "bad").await;
    assert_eq!(st["state"], "closed");
    assert!(st["ewma_latency_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{st}");
    for k in ["error_rate", "calls_in_window", "in_flight", "cooldown_ms"] {
        assert!(st.get(k).is_some(), "{k} in {st}");
    }
}

#[tokio::test]
async fn weighted_and_latency_balancing_spread_over_deployments() {
    let a = start_fake().await;
    let b = start_fake().await;
    let cfg = format!(
        r#"
[providers.a]
type = "openai"
base_url = "http://{}/v1"
[providers.b]
type = "openai"
base_url = "http://{}/v1"
[models.w]
deployments = [{{ provider = "a", model = "ok", weight = 3 }}, {{ provider = "b", model = "ok", weight = 1 }}]
[models.l]
balance = "latency"
deployments = [{{ provider = "a", model = "ok" }}, {{ provider = "b", model = "slow-30" }}]
"#,
        a.addr, b.addr
    );
    let gw = start_gateway(&cfg).await;
    let c = client();
    for _ in 0..200 {
        let body = json!({"model": "w", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            c.post(gw.url("/v1/chat/completions"))
                .json(&body)
                .send()
                .await
                .expect("send")
                .status(),
            200
        );
    }
    let (ha, hb) = (a.hits(), b.hits());
    assert_eq!(ha + hb, 200);
    assert!(
        (120..=175).contains(&ha),
        "weight 3:1 -> about 150 of 200 on a, got {ha}"
    );
    // Latency-aware: once both are measured, the slow deployment gets little traffic.
    let (a0, b0) = (a.hits(), b.hits());
    for _ in 0..60 {
        let body = json!({"model": "l", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            c.post(gw.url("/v1/chat/completions"))
                .json(&body)
                .send()
                .await
                .expect("send")
                .status(),
            200
        );
    }
    let (da, db) = (a.hits() - a0, b.hits() - b0);
    assert!(da > 45 && db < 15, "latency-aware: fast {da}, slow {db}");
}

#[tokio::test]
async fn active_probes_feed_the_breaker() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let good = start_fake().await;
    let cfg = config(&dead.to_string(), good.addr, "ok", "")
        .replace(
            "breaker_consecutive_failures = 3",
            "breaker_consecutive_failures = 2",
        )
        .replace(
            "idle_timeout_ms = 300\n",
            "idle_timeout_ms = 300\nprobe_interval_secs = 1\n",
        );
    let gw = start_gateway(&cfg).await;
    // No traffic at all: the probes alone (at 0 s and 1 s) open the dead deployment's breaker.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = breaker_state(&gw, "bad").await;
        if st["state"] == "open" {
            break;
        }
        assert!(Instant::now() < deadline, "probes never opened the breaker: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(breaker_state(&gw, "good").await["state"], "closed");
    // Traffic now goes straight to the fallback.
    let out = call(&gw, false).await;
    assert_eq!((out.status, out.attempts.as_str()), (200, "1"));
}

/// A fake Anthropic upstream that is always overloaded (HTTP 529, Anthropic's error body).
async fn overloaded_anthropic() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/v1/messages",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                assert_eq!(
                    headers.get("x-api-key").and_then(|v| v.to_str().ok()),
                    Some(UPSTREAM_KEY)
                );
                assert!(headers.contains_key("anthropic-version"));
                (
                    axum::http::StatusCode::from_u16(529).expect("529"),
                    [("content-type", "application/json")],
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (addr, hits)
}

#[tokio::test]
async fn cross_provider_fallback_anthropic_529_to_openai() {
    let (claude, hits) = overloaded_anthropic().await;
    let good = start_fake().await;
    let cfg = format!(
        r#"
[resilience]
backoff_base_ms = 1
backoff_max_ms = 5
[providers.claude]
type = "anthropic"
base_url = "http://{claude}"
api_key = "{UPSTREAM_KEY}"
[providers.openai]
type = "openai"
base_url = "http://{}/v1"
api_key = "{UPSTREAM_KEY}"
[models.smart]
provider = "claude"
model = "claude-opus-4.7"
fallbacks = ["backup"]
[models.backup]
provider = "openai"
model = "ok"
"#,
        good.addr
    );
    let gw = start_gateway(&cfg).await;
    for stream in [false, true] {
        let body =
            json!({"model": "smart", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-switchyard-provider"], "openai");
        assert_eq!(
            resp.headers()["x-switchyard-attempts"],
            "3",
            "529 retried once, then the fallback"
        );
        let text = resp.text().await.expect("body");
        if stream {
            assert!(
                text.ends_with("data: [DONE]\n\n") && !text.contains("\"error\""),
                "{text}"
            );
        } else {
            let v: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(v["object"], "chat.completion");
            assert_eq!(v["choices"][0]["message"]["content"], ANSWER);
        }
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 4);
}
