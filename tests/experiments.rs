//! Experiments end to end over sockets against the fake upstream: sticky
//! split traffic, shadow copies that never touch the client's answer,
//! feedback, the per-arm report against the ledger, the ramp on a manual
//! clock, and starting / changing / stopping experiments by reload.
//! (Share tolerance over 10,000 assignments: `experiments::assign` unit tests.)

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use switchyard::accounting::budget::Clock;

const ADMIN: &str = "admin-key-for-experiments-5d1e";

fn with_admin(cfg: String) -> String {
    with_admin_key(&cfg, ADMIN)
}

/// `cand` answers like `fast` (upstream `ok`), more cheaply; `candslow` and
/// `candfail` misbehave; `auto` routes simple_chat to `fast`.
const MODELS: &str = r#"
[models.cand]
provider = "fake"
model = "ok"
price = { input = 0.5, output = 2.5 }

[models.candfail]
provider = "fake"
model = "fail-500"
price = { input = 0.5, output = 2.5 }

[models.candslow]
provider = "fake"
model = "slow-5000"
price = { input = 0.5, output = 2.5 }

[routes.auto]
default_task = "simple_chat"
[routes.auto.tasks.simple_chat]
models = ["fast"]
[routes.auto.tasks.code_generation]
models = ["unpriced"]
"#;

fn config(fake: std::net::SocketAddr, experiments: &str) -> String {
    with_admin(config_for(fake, &format!("{MODELS}\n{experiments}")))
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
    elapsed: Duration,
}

impl Reply {
    fn h(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn send(gw: &Gw, path: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
    let mut rb = client().post(gw.url(path)).json(&body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let t = Instant::now();
    let resp = rb.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body");
    Reply {
        status,
        headers,
        body,
        elapsed: t.elapsed(),
    }
}

fn chat(model: &str, user: Option<&str>) -> Value {
    let mut v = json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]});
    if let Some(u) = user {
        v["user"] = json!(u);
    }
    v
}

async fn admin_get(gw: &Gw, path: &str) -> Value {
    let r = client()
        .get(gw.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

async fn reload(gw: &Gw) -> Value {
    let r = client()
        .post(gw.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{v}");
    v
}

/// Experiment columns of every ledger row, in order.
#[derive(Debug, Clone)]
struct XRow {
    request_id: String,
    endpoint: String,
    served_model: String,
    status: i64,
    cost_usd: Option<f64>,
    key_name: Option<String>,
    experiment: Option<String>,
    arm: Option<String>,
    shadow: bool,
    parent: Option<String>,
    output: Option<String>,
    error: Option<String>,
}

async fn xrows(path: &std::path::Path) -> Vec<XRow> {
    use sqlx::{Connection, Row as _};
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.expect("open");
    sqlx::query(
        "SELECT request_id, endpoint, served_model, status, cost_usd, key_name, experiment, arm, shadow, \
         parent_request_id, output, error FROM ledger ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("query")
    .iter()
    .map(|r| XRow {
        request_id: r.get(0),
        endpoint: r.get(1),
        served_model: r.get(2),
        status: r.get(3),
        cost_usd: r.get(4),
        key_name: r.get(5),
        experiment: r.get(6),
        arm: r.get(7),
        shadow: r.get(8),
        parent: r.get(9),
        output: r.get(10),
        error: r.get(11),
    })
    .collect()
}

/// Polls the ledger until `pred` holds (shadow rows arrive in the background).
async fn wait_rows(gw: &Gw, pred: impl Fn(&[XRow]) -> bool) -> Vec<XRow> {
    for _ in 0..300 {
        gw.flush_ledger().await;
        let rows = xrows(&gw.ledger).await;
        if pred(&rows) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("ledger rows never matched: {:#?}", xrows(&gw.ledger).await);
}

#[tokio::test]
async fn split_assignment_is_sticky_per_user_and_recorded() {
    let fake = start_fake().await;
    let cfg = config(
        fake.addr,
        r#"
[experiments.swap]
route = "auto"
task = "simple_chat"
candidates = [{ model = "cand", share = 0.5 }]
"#,
    );
    let mut gw = start_gateway(&cfg).await;
    let task = [("x-switchyard-task", "simple_chat")];
    let mut arm_of: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for u in 0..20 {
            let user = format!("user-{u}");
            let r = send(&gw, "/v1/chat/completions", chat("auto", Some(&user)), &task).await;
            assert_eq!(r.status, 200);
            let arm = r.h("x-switchyard-experiment").to_string();
            let model = r.h("x-switchyard-model");
            match arm.as_str() {
                "swap/control" => assert_eq!(model, "fast"),
                "swap/cand" => assert_eq!(model, "cand"),
                other => panic!("unexpected arm header {other:?}"),
            }
            assert!(
                r.h("x-switchyard-route-reason")
                    .ends_with(&format!(";experiment:{}", arm)),
                "{}",
                r.h("x-switchyard-route-reason")
            );
            if round == 0 {
                arm_of.insert(user, arm);
            } else {
                assert_eq!(arm_of[&user], arm, "{user} changed arms");
            }
        }
    }
    let arms: std::collections::HashSet<&String> = arm_of.values().collect();
    assert_eq!(arms.len(), 2, "20 users at 50% land in both arms: {arm_of:?}");
    // The session header wins over `user`: one session, one arm.
    let mut seen = std::collections::HashSet::new();
    for u in 0..10 {
        let user = format!("other-{u}");
        let h = [
            ("x-switchyard-task", "simple_chat"),
            ("x-switchyard-session", "s-42"),
        ];
        let r = send(&gw, "/v1/chat/completions", chat("auto", Some(&user)), &h).await;
        seen.insert(r.h("x-switchyard-experiment").to_string());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    // Other tasks are not in the experiment.
    let r = send(
        &gw,
        "/v1/chat/completions",
        chat("auto", Some("user-1")),
        &[("x-switchyard-task", "code_generation")],
    )
    .await;
    assert_eq!((r.status, r.h("x-switchyard-experiment")), (200, ""));
    // The Anthropic endpoint is routed the same way.
    let r = send(
        &gw,
        "/v1/messages",
        json!({"model": "auto", "max_tokens": 10, "metadata": {"user_id": "x"},
               "messages": [{"role": "user", "content": "hi"}]}),
        &[
            ("x-switchyard-task", "simple_chat"),
            ("x-switchyard-session", "s-42"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(seen.contains(r.h("x-switchyard-experiment")), "{:?}", r.headers);
    let ledger = gw.ledger.clone();
    gw.stop().await;
    let rows = xrows(&ledger).await;
    assert_eq!(rows.len(), 60 + 10 + 1 + 1);
    for r in rows.iter().filter(|r| r.experiment.is_some()) {
        assert_eq!(r.experiment.as_deref(), Some("swap"));
        assert!(!r.shadow);
        let want = if r.arm.as_deref() == Some("control") {
            "fast"
        } else {
            "cand"
        };
        assert_eq!(r.served_model, want, "{r:?}");
    }
    assert_eq!(rows.iter().filter(|r| r.experiment.is_none()).count(), 1);
}

#[tokio::test]
async fn shadow_calls_never_change_the_clients_response_even_when_the_candidate_fails_or_hangs() {
    let fake = start_fake().await;
    let base_cfg = config(fake.addr, "");
    let mut baseline = start_gateway(&base_cfg).await;
    let cfg = config(
        fake.addr,
        r#"
[experiments.shadowed]
model = "fast"
mode = "shadow"
candidates = [{ model = "candfail" }, { model = "candslow" }, { model = "cand" }]
shadow_timeout_ms = 1000
max_concurrency = 16
record_output_chars = 12
daily_budget = 5.0
"#,
    );
    let mut gw = start_gateway(&cfg).await;
    let req = chat("fast", Some("alice"));
    let want = send(&baseline, "/v1/chat/completions", req.clone(), &[]).await;
    assert_eq!(want.status, 200);
    for i in 0..3 {
        let id = format!("live-{i}");
        let got = send(&gw, "/v1/chat/completions", req.clone(), &[("x-request-id", &id)]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, want.body, "byte-identical answer");
        assert_eq!(got.h("x-switchyard-model"), "fast");
        assert_eq!(got.h("x-switchyard-experiment"), "", "shadow mode adds no header");
        assert_eq!(got.h("content-type"), want.h("content-type"));
        assert!(
            got.elapsed < Duration::from_millis(800),
            "the hanging candidate (5 s) or its timeout (1 s) must not delay the client: {:?}",
            got.elapsed
        );
    }
    // A streamed request is shadowed too, as a non-streaming copy.
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let got = send(&gw, "/v1/chat/completions", sreq.clone(), &[]).await;
    let want_stream = send(&baseline, "/v1/chat/completions", sreq, &[]).await;
    assert_eq!((got.status, &got.body), (200, &want_stream.body));
    // Every live request has three shadow rows: a 502, a timeout and an answer.
    let rows = wait_rows(&gw, |rows| rows.iter().filter(|r| r.shadow).count() == 12).await;
    let live: Vec<&XRow> = rows.iter().filter(|r| !r.shadow).collect();
    assert_eq!(live.len(), 4);
    for r in &live {
        assert_eq!((r.status, r.endpoint.as_str()), (200, "chat.completions"));
        assert_eq!(
            (r.experiment.as_deref(), r.arm.as_deref()),
            (Some("shadowed"), Some("control"))
        );
    }
    for i in 0..3 {
        let parent = format!("live-{i}");
        let of = |m: &str| {
            rows.iter()
                .find(|r| r.shadow && r.request_id == format!("{parent}:shadow:{m}"))
                .unwrap_or_else(|| panic!("no shadow row for {m} of {parent}"))
        };
        let (fail, slow, ok) = (of("candfail"), of("candslow"), of("cand"));
        assert_eq!(fail.status, 502);
        assert_eq!(slow.status, 504);
        assert!(slow
            .error
            .as_deref()
            .unwrap_or("")
            .contains("timed out after 1000 ms"));
        assert_eq!(ok.status, 200);
        assert_eq!(ok.output.as_deref(), Some(&ANSWER[..12]));
        assert!(ok.cost_usd.unwrap_or(0.0) > 0.0);
        for r in [fail, slow, ok] {
            assert_eq!(r.endpoint, "shadow.chat.completions");
            assert_eq!(r.parent.as_deref(), Some(parent.as_str()));
            assert_eq!(r.arm.as_deref(), Some(r.served_model.as_str()));
            assert_eq!(r.key_name, None, "shadow spend is not the client key's");
        }
    }
    // Shadow copies are plain (non-streaming) requests.
    assert!(fake
        .requests()
        .iter()
        .filter(|r| r.body["model"] == "fail-500")
        .all(|r| r.body.get("stream").is_none()));
    // Shadow spend shows under its own budget scope.
    let spend = admin_get(&gw, "/admin/spend").await;
    let scope = spend["budgets"]
        .as_array()
        .and_then(|b| b.iter().find(|s| s["scope"] == "shadow:shadowed"))
        .expect("shadow budget scope");
    let shadow_cost: f64 = rows.iter().filter(|r| r.shadow).filter_map(|r| r.cost_usd).sum();
    assert!((scope["daily_spent_usd"].as_f64().unwrap_or(0.0) - shadow_cost).abs() < 1e-9);
    let list = admin_get(&gw, "/admin/experiments").await;
    let x = &list["data"][0];
    assert_eq!(
        (x["name"].as_str(), x["mode"].as_str()),
        (Some("shadowed"), Some("shadow"))
    );
    assert_eq!(x["counters"]["shadow_started"], 12);
    baseline.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn shadow_calls_are_sampled_and_bounded() {
    let fake = start_fake().await;
    let cfg = config(
        fake.addr,
        r#"
[experiments.bounded]
model = "fast"
mode = "shadow"
candidates = [{ model = "candslow" }]
max_concurrency = 1
shadow_timeout_ms = 2000

[experiments.unsampled]
model = "unpriced"
mode = "shadow"
candidates = [{ model = "cand" }]
sample_rate = 0.0
"#,
    );
    let mut gw = start_gateway(&cfg).await;
    for _ in 0..5 {
        assert_eq!(
            send(&gw, "/v1/chat/completions", chat("fast", None), &[])
                .await
                .status,
            200
        );
        assert_eq!(
            send(&gw, "/v1/chat/completions", chat("unpriced", None), &[])
                .await
                .status,
            200
        );
    }
    let list = admin_get(&gw, "/admin/experiments").await;
    let by_name = |n: &str| {
        list["data"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["name"] == n))
            .cloned()
            .expect("listed")
    };
    let b = by_name("bounded");
    assert_eq!(b["counters"]["shadow_started"], 1, "{b}");
    assert_eq!(b["counters"]["shadow_skipped_busy"], 4, "{b}");
    assert_eq!(b["shadow_in_flight"], 1);
    let u = by_name("unsampled");
    assert_eq!(
        (
            u["counters"]["shadow_started"].as_u64(),
            u["counters"]["shadow_not_sampled"].as_u64()
        ),
        (Some(0), Some(5))
    );
    // The one shadow is still hanging; stopping the server cancels it (499) without waiting it out.
    let t = Instant::now();
    gw.stop().await;
    assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", t.elapsed());
    let rows = xrows(&gw.ledger).await;
    let shadows: Vec<&XRow> = rows.iter().filter(|r| r.shadow).collect();
    assert_eq!(shadows.len(), 1);
    assert_eq!(shadows[0].status, 499);
}

#[tokio::test]
async fn feedback_is_validated_and_tied_to_a_served_request() {
    let fake = start_fake().await;
    let cfg = config(
        fake.addr,
        r#"
[experiments.fb]
model = "fast"
candidates = [{ model = "cand", share = 1.0 }]
"#,
    );
    let mut gw = start_gateway(&cfg).await;
    let fb = |body: Value, key: Option<String>| {
        let url = gw.url("/v1/feedback");
        async move {
            let mut rb = client().post(url).json(&body);
            if let Some(k) = key {
                rb = rb.bearer_auth(k);
            }
            let r = rb.send().await.expect("send");
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.expect("json"))
        }
    };
    let r = send(
        &gw,
        "/v1/chat/completions",
        chat("fast", None),
        &[("x-request-id", "req-fb-1")],
    )
    .await;
    assert_eq!(r.h("x-switchyard-experiment"), "fb/cand");
    // Sent at once: the ledger row may still be queued; the endpoint waits for it.
    let (s, v) = fb(
        json!({"request_id": "req-fb-1", "score": 0.8, "comment": "good"}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["object"].as_str(), v["score"].as_f64()),
        (Some("feedback"), Some(0.8))
    );
    assert_eq!(
        (v["experiment"].as_str(), v["arm"].as_str()),
        (Some("fb"), Some("cand"))
    );
    let (s, v) = fb(json!({"request_id": "req-fb-1", "thumbs": "down"}), None).await;
    assert_eq!((s, v["score"].as_f64()), (200, Some(0.0)));
    for (body, param) in [
        (json!({"request_id": "req-fb-1"}), "score"),
        (json!({"request_id": "req-fb-1", "score": 1.5}), "score"),
        (json!({"request_id": "req-fb-1", "score": -0.1}), "score"),
        (json!({"request_id": "req-fb-1", "score": "high"}), "score"),
        (json!({"request_id": "req-fb-1", "thumbs": "sideways"}), "thumbs"),
        (
            json!({"request_id": "req-fb-1", "score": 1, "thumbs": "up"}),
            "thumbs",
        ),
        (
            json!({"request_id": "req-fb-1", "score": 1, "comment": "x".repeat(2001)}),
            "comment",
        ),
        (json!({"request_id": "", "score": 1}), "request_id"),
        (json!({"score": 1}), "request_id"),
        (json!({"request_id": "req-fb-1", "score": 1, "stars": 5}), ""),
    ] {
        let (s, v) = fb(body.clone(), None).await;
        assert_eq!(s, 400, "{body} -> {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        if !param.is_empty() {
            assert_eq!(v["error"]["param"], param, "{body} -> {v}");
        }
    }
    let r = client()
        .post(gw.url("/v1/feedback"))
        .body("not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let (s, v) = fb(json!({"request_id": "req-never-served", "thumbs": "up"}), None).await;
    assert_eq!(s, 404);
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["param"].as_str()),
        (Some("request_not_found"), Some("request_id"))
    );
    // With keys, a client scores only its own requests.
    let mut keys = Vec::new();
    for name in ["team-a", "team-b"] {
        let r = client()
            .post(gw.url("/admin/keys"))
            .bearer_auth(ADMIN)
            .json(&json!({"name": name}))
            .send()
            .await
            .expect("send");
        let v: Value = r.json().await.expect("json");
        keys.push(v["key"].as_str().expect("key").to_string());
    }
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&keys[0])
        .header("x-request-id", "req-team-a")
        .json(&chat("fast", None))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let (s, _) = fb(json!({"request_id": "req-team-a", "score": 1}), None).await;
    assert_eq!(s, 401, "keys exist: feedback needs one too");
    let (s, _) = fb(
        json!({"request_id": "req-team-a", "score": 1}),
        Some(keys[1].clone()),
    )
    .await;
    assert_eq!(s, 404, "another key's request");
    let (s, _) = fb(
        json!({"request_id": "req-team-a", "score": 1}),
        Some(keys[0].clone()),
    )
    .await;
    assert_eq!(s, 200);
    gw.stop().await;
    use sqlx::{Connection, Row as _};
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&gw.ledger)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.expect("open");
    let stored: Vec<(String, f64, Option<String>, Option<String>)> =
        sqlx::query("SELECT request_id, score, key_name, comment FROM feedback ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .expect("query")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
    assert_eq!(
        stored,
        vec![
            ("req-fb-1".into(), 0.8, None, Some("good".into())),
            ("req-fb-1".into(), 0.0, None, None),
            ("req-team-a".into(), 1.0, Some("team-a".into()), None),
        ]
    );
}

#[tokio::test]
async fn report_figures_equal_the_ledger() {
    let fake = start_fake().await;
    let cfg = config(
        fake.addr,
        r#"
[experiments.rep]
model = "fast"
candidates = [{ model = "cand", share = 0.3 }, { model = "candfail", share = 0.1 }]
"#,
    );
    let mut gw = start_gateway(&cfg).await;
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut scores: HashMap<String, Vec<f64>> = HashMap::new();
    for u in 0..80 {
        let id = format!("rep-{u}");
        let r = send(
            &gw,
            "/v1/chat/completions",
            chat("fast", Some(&format!("u{u}"))),
            &[("x-request-id", &id)],
        )
        .await;
        ids.push((id, r.h("x-switchyard-experiment").to_string()));
    }
    // Feedback on some requests: the latest score of a request counts.
    for (i, (id, arm)) in ids.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        let score = if arm.ends_with("/control") { 0.9 } else { 0.7 } - (i % 2) as f64 * 0.2;
        scores.entry(arm.clone()).or_default().push(score);
        for s in [0.0, score] {
            let r = client()
                .post(gw.url("/v1/feedback"))
                .json(&json!({"request_id": id, "score": s}))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
        }
    }
    let admin = admin_get(&gw, "/admin/experiments/rep").await;
    gw.stop().await;
    let rows = xrows(&gw.ledger).await;
    let report = switchyard::experiments::report::report(&gw.ledger, "rep", None, None)
        .await
        .expect("report");
    assert_eq!(report.arms.len(), 3);
    let mut total = 0;
    for arm in &report.arms {
        let mine: Vec<&XRow> = rows
            .iter()
            .filter(|r| r.arm.as_deref() == Some(&arm.arm))
            .collect();
        let requests: std::collections::HashSet<&str> = mine.iter().map(|r| r.request_id.as_str()).collect();
        let cost: f64 = mine.iter().filter_map(|r| r.cost_usd).sum();
        let errors = requests
            .iter()
            .filter(|id| mine.iter().any(|r| r.request_id == **id && r.status >= 400))
            .count();
        assert_eq!(arm.requests as usize, requests.len(), "{}", arm.arm);
        assert!(
            (arm.cost_usd - cost).abs() < 1e-12,
            "{}: {} vs {cost}",
            arm.arm,
            arm.cost_usd
        );
        assert_eq!(arm.errors as usize, errors);
        let header = format!("rep/{}", arm.arm);
        assert_eq!(
            arm.requests as usize,
            ids.iter().filter(|(_, h)| *h == header).count(),
            "the header and the ledger agree on {}",
            arm.arm
        );
        total += arm.requests;
    }
    assert_eq!(total, 80);
    let control = &report.arms[0];
    let cand = report.arms.iter().find(|a| a.arm == "cand").expect("cand arm");
    let failing = report
        .arms
        .iter()
        .find(|a| a.arm == "candfail")
        .expect("candfail arm");
    assert_eq!(control.arm, "control");
    assert_eq!(failing.error_rate, Some(1.0));
    assert_eq!(failing.latency_p50_ms, None, "no answered request");
    assert_eq!(
        (cand.prompt_tokens_per_request, cand.completion_tokens_per_request),
        (Some(1000.0), Some(200.0))
    );
    for a in [control, cand] {
        let mine = &scores[&format!("rep/{}", a.arm)];
        let mean = mine.iter().sum::<f64>() / mine.len() as f64;
        assert_eq!(a.feedback_count as usize, mine.len());
        assert!(
            (a.feedback_mean.unwrap_or(-1.0) - mean).abs() < 1e-12,
            "{}",
            a.arm
        );
    }
    let verdict = &report
        .comparisons
        .iter()
        .find(|c| c.candidate == "cand")
        .expect("verdict")
        .verdict;
    // fast: 600 x 2 + 400 x 0.5 + 200 x 10 = 3400 nano-USD per call; cand: 1000 x 0.5 + 200 x 2.5 = 1000.
    assert!(
        verdict.starts_with("cand: candidate 71% cheaper; quality -0.") && verdict.contains("significant"),
        "{verdict}"
    );
    // The admin API serves the same report.
    assert_eq!(admin["report"]["arms"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        admin["report"]["arms"][0]["requests"].as_u64(),
        Some(control.requests)
    );
    assert_eq!(admin["experiment"]["candidates"][0]["share"].as_f64(), Some(0.3));
    // And the CLI.
    let ledger = gw.ledger.to_string_lossy().into_owned();
    let (ok, out, err) = run_switchyard(&["experiment", "report", "rep", "--ledger", &ledger]);
    assert!(ok, "{err}");
    assert!(out.starts_with("experiment rep\narm "), "{out}");
    assert!(out.contains(&format!("verdict {verdict}")), "{out}");
    let (ok, out, _) = run_switchyard(&["experiment", "report", "rep", "--ledger", &ledger, "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["arms"][0]["requests"].as_u64(), Some(control.requests));
    let (ok, _, err) = run_switchyard(&["experiment", "report", "nope", "--ledger", &ledger]);
    assert!(!ok && err.contains("no requests of experiment"), "{err}");
}

/// 2026-11-27T12:00:00Z.
const T0: i64 = 1_795_780_800_000;

#[tokio::test]
async fn ramp_advances_and_rolls_back_on_a_manual_clock() {
    let fake = start_fake().await;
    let ramped = |cand_upstream: &str| {
        config(
            fake.addr,
            &format!(
                r#"
[models.ramped]
provider = "fake"
model = "{cand_upstream}"
price = {{ input = 0.5, output = 2.5 }}

[experiments.ramp]
model = "fast"
candidates = [{{ model = "ramped" }}]
ramp = {{ steps = [0.2, 0.6, 1.0], every_secs = 60, min_requests = 5, max_error_rate = 0.2 }}
"#
            ),
        )
    };
    let now = Arc::new(AtomicI64::new(T0));
    let keep = tempfile::tempdir().expect("tmp");
    let ledger = keep.path().join("ledger.sqlite");
    let clock = Clock::manual(now.clone());
    let dir = tempfile::tempdir().expect("tmp");
    let mut gw = start_gateway_with_clock(&ramped("ok"), dir, ledger.clone(), clock.clone()).await;
    let ramp_state = |gw: &Gw| {
        let gw_url = gw.url("/admin/experiments");
        async move {
            let v: Value = client()
                .get(gw_url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            v["data"][0].clone()
        }
    };
    let traffic = |gw: &Gw, n: usize, tag: &'static str| {
        let url = gw.url("/v1/chat/completions");
        async move {
            let mut cand = 0;
            for u in 0..n {
                let r = client()
                    .post(&url)
                    .json(&chat("fast", Some(&format!("{tag}-{u}"))))
                    .send()
                    .await
                    .expect("send");
                let h = r.headers()["x-switchyard-experiment"]
                    .to_str()
                    .unwrap_or("")
                    .to_string();
                cand += usize::from(h == "ramp/ramped");
            }
            cand
        }
    };
    let s = ramp_state(&gw).await;
    assert_eq!(s["candidates"][0]["share"].as_f64(), Some(0.2));
    assert_eq!(s["ramp"]["history"][0]["action"], "start");
    // Step 1 at 20%.
    let c = traffic(&gw, 100, "a").await;
    assert!((10..=30).contains(&c), "{c} of 100 at 20%");
    gw.flush_ledger().await;
    switchyard::experiments::ramp::tick(&gw.state()).await;
    let s = ramp_state(&gw).await;
    assert_eq!(s["ramp"]["step"], 0, "a minute has not passed: {s}");
    assert_eq!(s["ramp"]["last_decision"]["decision"], "hold");
    // A minute later the healthy step advances to 60%.
    now.fetch_add(61_000, Ordering::Relaxed);
    switchyard::experiments::ramp::tick(&gw.state()).await;
    let s = ramp_state(&gw).await;
    assert_eq!(
        (s["ramp"]["step"].as_u64(), s["candidates"][0]["share"].as_f64()),
        (Some(1), Some(0.6)),
        "{s}"
    );
    assert_eq!(s["ramp"]["history"][1]["action"], "advance");
    let c = traffic(&gw, 100, "b").await;
    assert!((45..=75).contains(&c), "{c} of 100 at 60%");
    // The candidate breaks (same model name, new upstream): a reload keeps the ramp's place ...
    std::fs::write(gw.config_path(), ramped("fail-500")).expect("write");
    reload(&gw).await;
    let s = ramp_state(&gw).await;
    assert_eq!(
        s["candidates"][0]["share"].as_f64(),
        Some(0.6),
        "ramp state survives reloads"
    );
    // ... and its errors roll the ramp back at the next evaluation, without waiting for the step's minute.
    let failed = traffic(&gw, 60, "c").await;
    assert!(failed > 10);
    gw.flush_ledger().await;
    switchyard::experiments::ramp::tick(&gw.state()).await;
    let s = ramp_state(&gw).await;
    assert_eq!(
        (
            s["ramp"]["paused"].as_bool(),
            s["candidates"][0]["share"].as_f64()
        ),
        (Some(true), Some(0.0)),
        "{s}"
    );
    let last = &s["ramp"]["history"][2];
    assert_eq!(last["action"], "rollback");
    assert!(
        last["reason"]
            .as_str()
            .unwrap_or("")
            .contains("exceeds max_error_rate 20.0%"),
        "{last}"
    );
    assert_eq!(
        traffic(&gw, 30, "d").await,
        0,
        "rolled back: all traffic on the control"
    );
    // The ramp log is in the ledger file: a restart stays rolled back.
    gw.stop().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut gw = start_gateway_with_clock(&ramped("ok"), dir, ledger.clone(), clock).await;
    let s = ramp_state(&gw).await;
    assert_eq!(
        (
            s["ramp"]["paused"].as_bool(),
            s["candidates"][0]["share"].as_f64()
        ),
        (Some(true), Some(0.0)),
        "{s}"
    );
    // An operator resets it: back to the first step.
    let r = client()
        .post(gw.url("/admin/experiments/ramp/reset"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let s = ramp_state(&gw).await;
    assert_eq!(
        (
            s["ramp"]["paused"].as_bool(),
            s["candidates"][0]["share"].as_f64()
        ),
        (Some(false), Some(0.2))
    );
    gw.stop().await;
    let actions: Vec<String> = switchyard::experiments::store::ramp_log(&ledger)
        .await
        .expect("log")
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(actions, ["start", "advance", "rollback", "reset"]);
}

#[tokio::test]
async fn reload_starts_changes_and_stops_an_experiment() {
    let fake = start_fake().await;
    let without = config(
        fake.addr,
        "[models.candslowish]\nprovider = \"fake\"\nmodel = \"slow-400\"\n",
    );
    let with = |share: f64| {
        format!(
            "{without}\n[experiments.live]\nmodel = \"fast\"\ncandidates = [{{ model = \"candslowish\", share = {share} }}]\n"
        )
    };
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let mut gw = start_gateway_with(&without, dir, ledger).await;
    let arm = |gw: &Gw| {
        let url = gw.url("/v1/chat/completions");
        async move {
            let r = client()
                .post(url)
                .json(&chat("fast", Some("bob")))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
            r.headers()
                .get("x-switchyard-experiment")
                .map(|v| v.to_str().unwrap_or("").to_string())
        }
    };
    assert_eq!(arm(&gw).await, None);
    std::fs::write(gw.config_path(), with(1.0)).expect("write");
    let v = reload(&gw).await;
    assert!(
        v["changes"].to_string().contains("experiment live started"),
        "{v}"
    );
    // A request in flight keeps the configuration it started with.
    let in_flight = tokio::spawn(arm(&gw));
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(gw.config_path(), with(0.0)).expect("write");
    let v = reload(&gw).await;
    assert!(
        v["changes"].to_string().contains("experiment live changed"),
        "{v}"
    );
    assert_eq!(
        in_flight.await.expect("task").as_deref(),
        Some("live/candslowish")
    );
    assert_eq!(arm(&gw).await.as_deref(), Some("live/control"));
    std::fs::write(
        gw.config_path(),
        with(1.0).replace("[experiments.live]\n", "[experiments.live]\nenabled = false\n"),
    )
    .expect("write");
    let v = reload(&gw).await;
    assert!(
        v["changes"].to_string().contains("experiment live stopped"),
        "{v}"
    );
    assert_eq!(arm(&gw).await, None);
    // An invalid experiment is refused and the running config kept.
    std::fs::write(gw.config_path(), with(1.5)).expect("write");
    let r = client()
        .post(gw.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("experiments.live.candidates[0].share"),
        "{v}"
    );
    assert_eq!(arm(&gw).await, None);
    let list = admin_get(&gw, "/admin/experiments").await;
    assert_eq!(
        (
            list["data"][0]["enabled"].as_bool(),
            list["data"][0]["live"].as_bool()
        ),
        (Some(false), Some(false))
    );
    let r = client()
        .get(gw.url("/admin/experiments/ghost"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    gw.stop().await;
}
