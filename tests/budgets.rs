//! Budgets, pacing, alerts, usage estimates and /admin/spend, end to end
//! over sockets against the fake OpenAI upstream.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Cost of one fake answer on `fast`/`slowpriced` (1000 prompt tokens, 400 of them cached; 200 output).
const ONE_CALL: f64 = 600.0 * 2e-6 + 400.0 * 0.5e-6 + 200.0 * 10e-6;

const PRICED: &str = r#"
[models.slowpriced]
provider = "fake"
model = "slow-40"
price = { input = 2.0, output = 10.0, cached_input = 0.5 }
"#;

async fn chat(gw: &Gw, model: &str, max_tokens: u64) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": model, "max_tokens": max_tokens,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_overspend_the_daily_budget() {
    let fake = start_fake().await;
    let limit = 0.1;
    // Estimate mode: the fake reports the same usage (1,000 prompt tokens)
    // whatever the request, so only reservations at the full max_tokens keep
    // it within the limit; strict mode's clamp is covered below with an
    // upstream whose usage follows the request.
    let cfg = config_for(
        fake.addr,
        &format!("{PRICED}\n[budgets]\nmode = \"estimate\"\ndaily = {limit}\n"),
    );
    let mut gw = start_gateway(&cfg).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let base = gw.base.clone();
        tasks.push(tokio::spawn(async move {
            let r = client()
                .post(format!("{base}/v1/chat/completions"))
                .json(&json!({"model": "slowpriced", "max_tokens": 1000,
                              "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("json");
            (status, body)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (status, body) = t.await.expect("task");
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                assert_eq!(body["error"]["type"], "budget_exceeded");
                assert!(body["error"]["message"].as_str().unwrap_or("").contains("daily"));
                refused += 1;
            }
            s => panic!("unexpected status {s}: {body}"),
        }
    }
    // Each request reserves its worst case (1000 output tokens at $10/M plus
    // the prompt, just over $0.01), so at least 9 always fit at once; how many
    // more get in depends on how fast the first ones settle to their real cost.
    assert!(ok >= 9, "the budget admits what fits: {ok}");
    assert!(refused > 0 && ok + refused == 200);
    // Settled reservations give their room back: sequential requests keep
    // being admitted until less than one worst case is left.
    let worst = 1000.0 * 10e-6;
    let mut drained = 0;
    loop {
        let r = chat(&gw, "slowpriced", 1000).await;
        match r.status().as_u16() {
            200 => drained += 1,
            429 => break,
            s => panic!("unexpected status {s}"),
        }
        assert!(drained < 100, "the budget never closed");
    }
    let rows = gw.stop_and_rows().await;
    let spent: f64 = rows.iter().filter_map(|r| r.cost_usd).sum();
    assert_eq!(rows.len(), ok + drained, "one ledger row per admitted request");
    assert!(spent <= limit + 1e-12, "spent {spent} > limit {limit}");
    assert!(
        limit - spent < worst + 0.001,
        "room left unused: spent {spent} of {limit} after {ok} + {drained} requests"
    );
    assert!((spent - (ok + drained) as f64 * ONE_CALL).abs() < 1e-9);
}

#[tokio::test]
async fn over_budget_routed_requests_downgrade_to_the_cheapest_tier() {
    let fake = start_fake().await;
    let extra = r#"
[models.cheap]
provider = "fake"
model = "ok"
tier = "economy"
price = { input = 0.01, output = 0.01 }

[models.big]
provider = "fake"
model = "ok"
tier = "frontier"
price = { input = 10000.0, output = 10000.0 }

[routes.auto]
default_task = "simple_chat"
[routes.auto.tasks.simple_chat]
models = ["big"]
tier = "frontier"

[budgets]
daily = 0.01
on_exceed = "downgrade"
"#;
    let mut gw = start_gateway(&config_for(fake.addr, extra)).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-switchyard-task", "simple_chat")
        .json(&json!({"model": "auto", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-model"], "cheap");
    assert_eq!(r.headers()["x-switchyard-tier"], "economy");
    let reason = r.headers()["x-switchyard-route-reason"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(reason.ends_with(";downgraded:budget"), "{reason}");
    // An explicit model is never silently swapped: it is refused.
    let r = chat(&gw, "big", 1000).await;
    assert_eq!(r.status(), 429);
    gw.stop().await;
}

/// A fixed-offset zone where it is now between 01:00 and 05:00, so the day is young.
fn early_morning_zone() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let utc_hour = ((now / 3600) % 24) as i64;
    for offset in -12i64..=14 {
        let local = (utc_hour + offset).rem_euclid(24);
        if (1..5).contains(&local) {
            // Etc/GMT-N is UTC+N (POSIX sign convention).
            return if offset >= 0 {
                format!("Etc/GMT-{offset}")
            } else {
                format!("Etc/GMT+{}", -offset)
            };
        }
    }
    "UTC".into()
}

#[tokio::test]
async fn pacing_moves_low_priority_tasks_down_a_tier_and_keeps_high_priority() {
    let fake = start_fake().await;
    let zone = early_morning_zone();
    let extra = format!(
        r#"
[models.cheap]
provider = "fake"
model = "ok"
tier = "economy"
price = {{ input = 2.0, output = 10.0, cached_input = 0.5 }}

[models.mid]
provider = "fake"
model = "ok"
tier = "quality"
price = {{ input = 2.0, output = 10.0, cached_input = 0.5 }}

[routes.auto]
default_task = "simple_chat"
[routes.auto.tasks.simple_chat]
models = ["mid"]
tier = "quality"
priority = "low"
[routes.auto.tasks.code_generation]
models = ["mid"]
tier = "quality"
priority = "high"

[budgets]
timezone = "{zone}"
daily = {limit}
"#,
        limit = ONE_CALL * 2.5
    );
    let mut gw = start_gateway(&config_for(fake.addr, &extra)).await;
    let send = |task: &'static str| {
        let url = gw.url("/v1/chat/completions");
        async move {
            client()
                .post(url)
                .header("x-switchyard-task", task)
                .json(&json!({"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("send")
        }
    };
    // Nothing spent: within pace, the task's own tier serves.
    let r = send("simple_chat").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-tier"], "quality");
    // 40% of the day's budget spent before 05:00 (at most 21% of the day gone): ahead of pace.
    let r = send("simple_chat").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-tier"], "economy", "zone {zone}");
    assert_eq!(r.headers()["x-switchyard-model"], "cheap");
    assert!(r.headers()["x-switchyard-route-reason"]
        .to_str()
        .expect("ascii")
        .contains("paced:budget"));
    let r = send("code_generation").await;
    assert_eq!(
        r.headers()["x-switchyard-tier"],
        "quality",
        "high priority keeps its model"
    );
    gw.stop().await;
}

#[tokio::test]
async fn streams_without_usage_are_estimated_with_tiktoken_and_hangups_by_bytes() {
    // The gateway builds its tokenizer on the first estimate, in the background,
    // counting 4 bytes per token until then; build it now (same process) so the
    // estimates below are exact tiktoken counts.
    assert_eq!(switchyard::accounting::estimate::count_tokens("hello world"), 2);
    let fake = start_fake().await;
    let extra = r#"
[models.nousage]
provider = "fake"
model = "no-usage"
price = { input = 2.0, output = 10.0 }

[models.trickle]
provider = "fake"
model = "trickle"
price = { input = 2.0, output = 10.0 }
"#;
    let mut gw = start_gateway(&config_for(fake.addr, extra)).await;
    let prompt = "Count the tokens of this sentence, please.";
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "nousage", "stream": true, "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    assert!(text.contains("[DONE]"));
    // Not streamed, no usage either: estimated at once, so the cost header is there.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "nousage", "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let header_cost: f64 = r.headers()["x-switchyard-cost-usd"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    // The client hangs up after the first chunks of a slow stream.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "trickle", "stream": true, "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .expect("send");
    let mut body = r.bytes_stream();
    let mut seen = 0;
    while let Some(chunk) = body.next().await {
        seen += chunk.expect("chunk").len();
        if seen > 400 {
            break;
        }
    }
    drop(body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ledger = gw.ledger.clone();
    gw.stop().await;
    let rows = estimated_rows(&ledger).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    let (status, prompt_tokens, completion_tokens, estimated, cost) = rows[0];
    assert_eq!((status, estimated), (200, true));
    let want_prompt = switchyard::accounting::estimate::count_tokens(&format!("{prompt}\n")) as i64 + 4;
    assert_eq!(prompt_tokens, want_prompt);
    let want_out = switchyard::accounting::estimate::count_tokens(ANSWER) as i64;
    assert_eq!(completion_tokens, want_out, "the whole streamed answer, counted");
    let want_cost = want_prompt as f64 * 2e-6 + want_out as f64 * 10e-6;
    assert!((cost - want_cost).abs() < 1e-12, "{cost} vs {want_cost}");
    assert_eq!(rows[1].0, 200);
    assert!(rows[1].3, "non-streamed answer without usage is estimated");
    assert_eq!(rows[1].1, want_prompt);
    assert_eq!(rows[1].2, want_out);
    assert!(
        (rows[1].4 - header_cost).abs() < 1e-9,
        "header {header_cost} vs ledger {}",
        rows[1].4
    );
    // A hang-up is estimated by bytes (4 a token), never with the tokenizer.
    let (status, prompt_tokens, completion, estimated, _) = rows[2];
    assert_eq!((status, estimated), (499, true));
    assert_eq!(prompt_tokens, (prompt.len() as i64 + 1 + 3) / 4 + 4);
    assert!(
        completion > 0 && completion < want_out,
        "partial output: {completion}"
    );
}

async fn estimated_rows(path: &std::path::Path) -> Vec<(i64, i64, i64, bool, f64)> {
    use sqlx::{Connection, Row as _};
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.expect("open");
    sqlx::query(
        "SELECT status, prompt_tokens, completion_tokens, usage_estimated, cost_usd FROM ledger ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("query")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

#[tokio::test]
async fn budget_state_survives_a_restart() {
    let fake = start_fake().await;
    let cfg = config_for(fake.addr, &format!("[budgets]\ndaily = {}\n", ONE_CALL * 1.5));
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let keep = tempfile::tempdir().expect("tmp");
    let mut gw = start_gateway_with(&cfg, keep, ledger.clone()).await;
    assert_eq!(chat(&gw, "fast", 10).await.status(), 200);
    gw.stop().await;
    // Same ledger, new process state: the day's spend is read back.
    let again = tempfile::tempdir().expect("tmp");
    let mut gw = start_gateway_with(&cfg, again, ledger).await;
    let r = chat(&gw, "fast", 1000).await;
    // ONE_CALL spent, half of one left: strict mode caps the answer at what
    // that half affords ($0.0017 less the prompt's 5 tokens at $2/M, at $10/M
    // out: 169 tokens). Without the restored spend it would afford 509.
    assert_eq!(r.status(), 200);
    let clamp: u64 = r.headers()["x-switchyard-max-tokens-clamped"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert!((168..=169).contains(&clamp), "{clamp}");
    let r = client().get(gw.url("/admin/spend")).send().await.expect("send");
    assert_eq!(r.status(), 404, "the admin API is off without an admin key");
    gw.stop().await;
}

#[tokio::test]
async fn alerts_reach_the_webhook_and_admin_spend_matches_the_ledger() {
    let fake = start_fake().await;
    let hook = start_fake().await; // records every POST it gets
    let cfg = config_for(
        fake.addr,
        &format!(
            "[budgets]\ndaily = {}\nalert_at = [0.5, 0.9]\nalert_webhook = \"http://{}/v1/chat/completions\"\n",
            ONE_CALL * 3.0,
            hook.addr
        ),
    )
    .replace("[server]\n", "[server]\nadmin_key = \"admin-secret-1\"\n");
    let mut gw = start_gateway(&cfg).await;
    for _ in 0..2 {
        assert_eq!(chat(&gw, "fast", 10).await.status(), 200);
    }
    // 2 of 3 calls' worth spent: the 50% alert fired, the 90% one did not.
    let mut alerts = Vec::new();
    for _ in 0..50 {
        alerts = hook.requests();
        if !alerts.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0].body;
    assert_eq!(a["type"], "budget_alert");
    assert_eq!(a["alert"]["scope"], "global");
    assert_eq!(a["alert"]["threshold"], 0.5);
    tokio::time::sleep(Duration::from_millis(200)).await; // let the ledger batch flush
    let spend: Value = client()
        .get(gw.url("/admin/spend?by=model"))
        .bearer_auth("admin-secret-1")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let rows = ledger_rows(&gw.ledger).await;
    let sum: f64 = rows.iter().filter_map(|r| r.cost_usd).sum();
    assert_eq!(spend["data"][0]["group"], "fast");
    assert_eq!(spend["data"][0]["requests"], 2);
    assert!((spend["total"]["cost_usd"].as_f64().expect("num") - sum).abs() < 1e-12);
    let b = &spend["budgets"][0];
    assert_eq!(b["scope"], "global");
    assert!((b["daily_spent_usd"].as_f64().expect("num") - 2.0 * ONE_CALL).abs() < 1e-9);
    let bad = client()
        .get(gw.url("/admin/spend?by=colour"))
        .bearer_auth("admin-secret-1")
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Strict budgets: answers longer than the reservation.

/// A fake OpenAI upstream whose model `long-N` answers N tokens, capped by
/// the request's `max_completion_tokens` / `max_tokens` as real providers
/// do, and reports usage as a provider would: prompt tokens at 4 bytes of
/// message text per token (the gateway reserves at 3), completion tokens as
/// produced. Records the cap each request carried.
struct LongFake {
    addr: std::net::SocketAddr,
    caps: std::sync::Arc<std::sync::Mutex<Vec<Option<u64>>>>,
}

async fn start_long_fake() -> LongFake {
    use axum::response::IntoResponse;
    let caps: std::sync::Arc<std::sync::Mutex<Vec<Option<u64>>>> = Default::default();
    let seen = caps.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: bytes::Bytes| {
            let seen = seen.clone();
            async move {
                let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let cap = req["max_completion_tokens"]
                    .as_u64()
                    .or_else(|| req["max_tokens"].as_u64());
                seen.lock().expect("lock").push(cap);
                let model = req["model"].as_str().unwrap_or("long-300").to_string();
                let want: u64 = model
                    .strip_prefix("long-")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(300);
                let n = want.min(cap.unwrap_or(u64::MAX));
                let text_bytes: usize = req["messages"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .map(|m| m["content"].as_str().map_or(0, str::len))
                            .sum()
                    })
                    .unwrap_or(0);
                let messages = req["messages"].as_array().map_or(0, Vec::len) as u64;
                let usage = json!({"prompt_tokens": text_bytes.div_ceil(4) as u64 + 4 * messages,
                                   "completion_tokens": n,
                                   "total_tokens": text_bytes.div_ceil(4) as u64 + 4 * messages + n});
                if !req["stream"].as_bool().unwrap_or(false) {
                    return axum::Json(json!({
                        "id": "chatcmpl-long", "object": "chat.completion", "created": 1, "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "tok ".repeat(n as usize)},
                                     "finish_reason": if n < want { "length" } else { "stop" }}],
                        "usage": usage,
                    }))
                    .into_response();
                }
                let mut sse = String::new();
                let chunk = |delta: Value, finish: Value| {
                    json!({"id":"chatcmpl-long","object":"chat.completion.chunk","created":1,"model":model,
                           "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
                };
                sse.push_str(&format!("data: {}\n\n", chunk(json!({"role":"assistant","content":""}), Value::Null)));
                let mut left = n;
                while left > 0 {
                    let k = left.min(50);
                    sse.push_str(&format!("data: {}\n\n", chunk(json!({"content": "tok ".repeat(k as usize)}), Value::Null)));
                    left -= k;
                }
                sse.push_str(&format!(
                    "data: {}\n\n",
                    chunk(json!({}), json!(if n < want { "length" } else { "stop" }))
                ));
                if req["stream_options"]["include_usage"].as_bool().unwrap_or(false) {
                    sse.push_str(&format!(
                        "data: {}\n\n",
                        json!({"id":"chatcmpl-long","object":"chat.completion.chunk","created":1,"model":model,
                               "choices":[],"usage":usage})
                    ));
                }
                sse.push_str("data: [DONE]\n\n");
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(axum::body::Body::from(sse))
                    .expect("response")
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    LongFake { addr, caps }
}

const ADMIN: &str = "admin-key-for-budget-tests-3b7e";

/// Config for the long fake: model `long` answers 300 tokens, 3x the
/// reserve of 100 output tokens; $2/M in, $10/M out.
fn long_config(fake: &Fake, long: &LongFake, budgets: &str) -> String {
    let cfg = config_for(
        fake.addr,
        &format!(
            r#"
[providers.longfake]
type = "openai"
base_url = "http://{}/v1"
api_key = "sk-long-fake-secret-0042"
models = ["long-*"]

[models.long]
provider = "longfake"
model = "long-300"
price = {{ input = 2.0, output = 10.0 }}

[budgets]
reserve_output_tokens = 100
{budgets}
"#,
            long.addr
        ),
    );
    with_admin_key(&cfg, ADMIN)
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
    let v: Value = r.json().await.expect("json");
    v["key"].as_str().expect("secret").to_string()
}

#[derive(Clone, Copy, Debug)]
enum Inbound {
    Chat,
    Messages,
    /// `/v1/responses`, translated to chat for this (non-OpenAI) upstream.
    Responses,
}

/// One request of the race: a prompt, no max_tokens on chat (Anthropic's
/// format requires one: 4096, far more than the budget affords).
async fn long_request(base: &str, key: &str, inbound: Inbound, stream: bool) -> (u16, Option<u64>, bool) {
    let prompt = "Write a long essay about railway switchyards.";
    let (path, body) = match inbound {
        Inbound::Chat => (
            "/v1/chat/completions",
            json!({"model": "long", "stream": stream, "messages": [{"role": "user", "content": prompt}]}),
        ),
        Inbound::Messages => (
            "/v1/messages",
            json!({"model": "long", "stream": stream, "max_tokens": 4096,
                   "messages": [{"role": "user", "content": prompt}]}),
        ),
        Inbound::Responses => (
            "/v1/responses",
            json!({"model": "long", "stream": stream, "input": prompt, "store": false}),
        ),
    };
    let r = client()
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let clamp = r
        .headers()
        .get("x-switchyard-max-tokens-clamped")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let text = r.text().await.expect("body");
    let complete = match (status, stream, inbound) {
        (200, true, Inbound::Chat) => text.contains("[DONE]"),
        (200, true, Inbound::Messages) => text.contains("message_stop"),
        (200, true, Inbound::Responses) => {
            text.contains("response.completed") || text.contains("response.incomplete")
        }
        (200, false, _) => serde_json::from_str::<Value>(&text).is_ok(),
        (429, _, Inbound::Chat | Inbound::Responses) => text.contains("budget_exceeded"),
        (429, _, Inbound::Messages) => text.contains("rate_limit_error") && text.contains("budget"),
        _ => false,
    };
    (status, clamp, complete)
}

/// Sum of the ledger's cost for one key.
async fn key_spend(ledger: &std::path::Path, key: &str) -> (f64, i64) {
    use sqlx::{Connection, Row as _};
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(ledger)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.expect("open");
    let r = sqlx::query("SELECT COALESCE(SUM(cost_usd), 0), COUNT(*) FROM ledger WHERE key_name = ?")
        .bind(key)
        .fetch_one(&mut conn)
        .await
        .expect("query");
    (r.get(0), r.get(1))
}

/// A key whose daily budget fits about 20 requests at their reservation;
/// 500 concurrent requests whose answers would run 3x the reserve. Strict
/// mode caps every answer, so the ledger stays within the limit, on all three
/// inbound formats, streamed and not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_budgets_hold_for_answers_longer_than_the_reserve() {
    let fake = start_fake().await;
    let long = start_long_fake().await;
    // Reservation at 100 output tokens: about 17 prompt tokens at $2/M plus $0.001.
    let limit = 0.0206;
    let mut gw = start_gateway(&long_config(&fake, &long, "")).await;
    for (i, (inbound, stream)) in [
        (Inbound::Chat, false),
        (Inbound::Chat, true),
        (Inbound::Messages, false),
        (Inbound::Messages, true),
        (Inbound::Responses, false),
        (Inbound::Responses, true),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("strict-{i}");
        let key = create_key(&gw, json!({"name": name, "daily_budget": limit})).await;
        let mut tasks = Vec::new();
        for _ in 0..500 {
            let (base, key) = (gw.base.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                long_request(&base, &key, inbound, stream).await
            }));
        }
        let (mut ok, mut refused) = (0, 0);
        for t in tasks {
            let (status, clamp, complete) = t.await.expect("task");
            assert!(
                complete,
                "{inbound:?} stream={stream}: status {status}, incomplete body"
            );
            match status {
                200 => {
                    ok += 1;
                    let c = clamp.expect("the cap is in x-switchyard-max-tokens-clamped");
                    let most = match inbound {
                        Inbound::Chat | Inbound::Responses => 100,
                        Inbound::Messages => 4096,
                    };
                    assert!((16..=most).contains(&c), "clamp {c}");
                }
                429 => refused += 1,
                s => panic!("unexpected status {s}"),
            }
        }
        assert_eq!(ok + refused, 500);
        gw.flush_ledger().await;
        let (spent, rows) = key_spend(&gw.ledger, &name).await;
        assert_eq!(rows, ok as i64, "one row per admitted request");
        assert!(
            spent <= limit + 1e-12,
            "{inbound:?} stream={stream}: spent {spent} > limit {limit} ({ok} admitted)"
        );
        // The answers were capped, not refused wholesale: at least the
        // requests that fit at their full reserve ran.
        if matches!(inbound, Inbound::Chat | Inbound::Responses) {
            assert!(ok >= 20, "{ok} admitted");
        } else {
            assert!(ok >= 1, "{ok} admitted");
        }
    }
    // Every upstream call carried a cap no larger than what was granted.
    let caps = long.caps.lock().expect("lock").clone();
    assert!(
        caps.iter().all(|c| c.is_some_and(|c| (16..=4096).contains(&c))),
        "{caps:?}"
    );
    gw.stop().await;
}

/// The same race in `estimate` mode overspends (the answers are 3x the
/// reservation and uncapped): the looser mode's documented worst case, and
/// proof that the strict test above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn estimate_mode_leaves_answers_uncapped_and_can_overshoot() {
    let fake = start_fake().await;
    let long = start_long_fake().await;
    let limit = 0.0206;
    let mut gw = start_gateway(&long_config(&fake, &long, "mode = \"estimate\"")).await;
    let key = create_key(&gw, json!({"name": "loose", "daily_budget": limit})).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (base, key) = (gw.base.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            long_request(&base, &key, Inbound::Chat, false).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, clamp, _) = t.await.expect("task");
        if status == 200 {
            ok += 1;
            assert_eq!(clamp, None, "estimate mode never caps");
        }
    }
    gw.flush_ledger().await;
    let (spent, _) = key_spend(&gw.ledger, "loose").await;
    // Each admitted answer costs ~3x its reservation; admission stops only
    // once spent + reserved passes the limit, so the last one overshoots.
    assert!(spent > limit, "spent {spent} of {limit} with {ok} admitted");
    // The bound: at most (limit / reservation) answers of 3x are admitted.
    let per_answer = 17.0 * 2e-6 + 300.0 * 10e-6;
    assert!(spent <= ok as f64 * per_answer + 1e-9);
    assert!(long.caps.lock().expect("lock").iter().all(Option::is_none));
    gw.stop().await;
}

/// A virtual key's own `daily_budget` (no `[budgets]` limit in the config)
/// survives a restart: its spend is rebuilt from the ledger.
#[tokio::test]
async fn a_keys_own_daily_budget_survives_a_restart() {
    let fake = start_fake().await;
    let long = start_long_fake().await;
    let cfg = long_config(&fake, &long, "");
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let mut gw = start_gateway_with(&cfg, tempfile::tempdir().expect("tmp"), ledger.clone()).await;
    let key = create_key(&gw, json!({"name": "own-budget", "daily_budget": 0.0035})).await;
    let mut admitted = 0;
    loop {
        let (status, _, complete) = long_request(&gw.base, &key, Inbound::Chat, false).await;
        assert!(complete);
        match status {
            200 => admitted += 1,
            429 => break,
            s => panic!("unexpected status {s}"),
        }
        assert!(admitted < 50, "the key's budget never closed");
    }
    assert!(admitted >= 3, "{admitted}");
    gw.stop().await;
    let (spent, rows) = key_spend(&ledger, "own-budget").await;
    assert_eq!(rows, admitted);
    assert!(spent <= 0.0035 + 1e-12, "{spent}");
    // Same data dir, fresh process state: still refused.
    let mut gw = start_gateway_with(&cfg, tempfile::tempdir().expect("tmp"), ledger.clone()).await;
    let (status, _, _) = long_request(&gw.base, &key, Inbound::Chat, false).await;
    assert_eq!(status, 429, "the key's spend was forgotten on restart");
    let spend: Value = client()
        .get(gw.url("/admin/spend"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let b = spend["budgets"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["scope"] == "key:own-budget"))
        .expect("key scope listed");
    assert!(
        (b["daily_spent_usd"].as_f64().expect("num") - spent).abs() < 1e-12,
        "{b}"
    );
    gw.stop().await;
    assert_eq!(
        key_spend(&ledger, "own-budget").await.1,
        admitted,
        "nothing more was sent"
    );
}

/// `max_tokens` edges against an exhausted TPM bucket: every value either
/// gets a clear 400 or is refused by the bucket; none slips through by
/// overflowing the token estimate.
#[tokio::test]
async fn max_tokens_edges_never_slip_past_an_exhausted_tpm_bucket() {
    let fake = start_fake().await;
    let cfg = with_admin_key(&config_for(fake.addr, ""), ADMIN);
    let mut gw = start_gateway(&cfg).await;
    // The fake answers with 1,200 tokens: one call leaves the 100-token
    // bucket 1,100 in debt, which takes 11 minutes to refill (no race).
    let key = create_key(&gw, json!({"name": "tpm-edges", "tpm": 100})).await;
    for _ in 0..1 {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
    }
    let hits = fake.hits();
    let send = |path: &'static str, body: String| {
        let (url, key) = (gw.url(path), key.clone());
        async move {
            let r = client()
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let v: Value = r.json().await.expect("a JSON error body");
            (status, v)
        }
    };
    for field in ["max_tokens", "max_completion_tokens"] {
        for (raw, want) in [
            ("0", 400),
            ("-1", 400),
            ("1.5", 400),
            ("1000.0", 400),
            ("1e3", 400),
            ("\"100\"", 400),
            ("18446744073709551616", 400), // 2^64: not an integer the API accepts
            ("100", 429),
            ("1000000000", 429),
            ("9007199254740992", 429),     // 2^53
            ("9223372036854775808", 429),  // 2^63
            ("18446744073709551615", 429), // 2^64 - 1
        ] {
            let body = format!(
                r#"{{"model":"fast","{field}":{raw},"messages":[{{"role":"user","content":"hi"}}]}}"#
            );
            let (status, v) = send("/v1/chat/completions", body).await;
            assert_eq!(status, want, "{field}={raw}: {v}");
            if want == 400 {
                assert_eq!(v["error"]["param"], field, "{field}={raw}: {v}");
                assert_eq!(v["error"]["type"], "invalid_request_error");
            } else {
                assert_eq!(v["error"]["type"], "tokens", "{field}={raw}: {v}");
            }
        }
    }
    // The Anthropic format: same edges, Anthropic's error shape.
    for (raw, want) in [
        ("0", 400),
        ("-1", 400),
        ("2.5", 400),
        ("9223372036854775808", 429),
        ("18446744073709551615", 429),
    ] {
        let body =
            format!(r#"{{"model":"fast","max_tokens":{raw},"messages":[{{"role":"user","content":"hi"}}]}}"#);
        let (status, v) = send("/v1/messages", body).await;
        assert_eq!(status, want, "max_tokens={raw}: {v}");
        assert_eq!(v["type"], "error", "{v}");
    }
    assert_eq!(fake.hits(), hits, "nothing reached the provider");
    gw.stop().await;
}
