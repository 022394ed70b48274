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
    let cfg = config_for(fake.addr, &format!("{PRICED}\n[budgets]\ndaily = {limit}\n"));
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
price = { input = 100.0, output = 100.0 }

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
async fn streams_without_usage_and_hangups_are_estimated_with_tiktoken() {
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
    let (status, _, completion, estimated, _) = rows[2];
    assert_eq!((status, estimated), (499, true));
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
    // ONE_CALL spent; a call reserving more than the remaining half is refused.
    assert_eq!(r.status(), 429, "{:?}", r.text().await);
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
