//! Running Switchyard for a team: virtual keys, rate limits, /metrics and
//! config reload, end to end over sockets.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key-for-tests-91c2";

fn with_admin(cfg: String) -> String {
    with_admin_key(&cfg, ADMIN)
}

async fn create_key(gw: &Gw, spec: Value) -> (Value, String) {
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&spec)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    let key = v["key"].as_str().expect("secret shown once").to_string();
    (v, key)
}

async fn chat_with(gw: &Gw, key: Option<&str>, model: &str) -> reqwest::Response {
    let mut r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.expect("send")
}

/// Sends `n` chat requests for `model` at once with `key`; their statuses.
async fn concurrent_statuses(gw: &Gw, key: &str, model: &str, n: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (url, k) = (gw.url("/v1/chat/completions"), key.to_string());
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(k)
                .json(&body)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn key_lifecycle_through_the_admin_api() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&with_admin(config_for(fake.addr, ""))).await;
    // No keys yet, on loopback: open.
    assert_eq!(chat_with(&gw, None, "fast").await.status(), 200);
    let (created, key) = create_key(
        &gw,
        json!({"name": "team-a", "models": ["fast", "auto"], "tags": {"team": "search"}}),
    )
    .await;
    assert!(key.starts_with("sk-sy-") && key.len() == 46);
    assert_eq!(created["name"], "team-a");
    assert_eq!(created["tags"]["team"], "search");
    // A key exists now: every API request needs one.
    let r = chat_with(&gw, None, "fast").await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(body["error"].get("param").is_some() && body["error"].get("type").is_some());
    let r = chat_with(&gw, Some("sk-sy-not-a-real-key"), "fast").await;
    assert_eq!(r.status(), 401);
    let r = chat_with(&gw, Some("garbage"), "fast").await;
    assert_eq!(r.status(), 401);
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Basic abc")
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401, "a malformed Authorization header");
    // The key works, and its name lands in the ledger.
    assert_eq!(chat_with(&gw, Some(&key), "fast").await.status(), 200);
    // A model outside its allow-list: 403.
    let r = chat_with(&gw, Some(&key), "unpriced").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "model_not_allowed");
    // Anthropic clients send x-api-key and get Anthropic-shaped errors.
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", "sk-sy-wrong")
        .json(&json!({"model": "fast", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["type"], "error");
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .json(&json!({"model": "fast", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    // Listing never shows the secret.
    let list = client()
        .get(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(list.contains("team-a") && !list.contains(&key) && !list.contains(&key[10..]));
    // Admin endpoints need the admin key, not a client key.
    let r = client()
        .get(gw.url("/admin/keys"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    // Revoke: refused at once.
    let r = client()
        .delete(gw.url("/admin/keys/team-a"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(chat_with(&gw, Some(&key), "fast").await.status(), 401);
    let r = client()
        .delete(gw.url("/admin/keys/team-a"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    let ledger = gw.ledger.clone();
    gw.stop().await;
    let keys = key_names(&ledger).await;
    assert_eq!(
        keys,
        vec![None, Some("team-a".to_string()), Some("team-a".to_string())]
    );
    // Tags show up in reports.
    use switchyard::accounting::report::{report, GroupBy};
    let by_tag = report(&ledger, GroupBy::parse("tag:team").expect("by"), None, None)
        .await
        .expect("report");
    let groups: Vec<(String, i64)> = by_tag.iter().map(|r| (r.group.clone(), r.requests)).collect();
    assert_eq!(groups, vec![("search".to_string(), 2), ("(none)".to_string(), 1)]);
}

async fn key_names(path: &std::path::Path) -> Vec<Option<String>> {
    use sqlx::{Connection, Row as _};
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.expect("open");
    sqlx::query("SELECT key_name FROM ledger ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn rpm_limit_refuses_the_extra_request_with_openai_headers() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&with_admin(config_for(fake.addr, ""))).await;
    let (_, key) = create_key(&gw, json!({"name": "rpm3", "rpm": 3})).await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let r = chat_with(&gw, Some(&key), "fast").await;
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    let r = last.expect("response");
    let h = r.headers().clone();
    assert_eq!(h["x-ratelimit-limit-requests"], "3");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    // One request comes back every 20 s.
    let retry: u64 = h["retry-after"].to_str().expect("ascii").parse().expect("secs");
    assert!((19..=20).contains(&retry), "{retry}");
    assert!(h["x-ratelimit-reset-requests"]
        .to_str()
        .expect("ascii")
        .ends_with('s'));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_hold_under_concurrency() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&with_admin(config_for(fake.addr, ""))).await;
    let (_, rpm_key) = create_key(&gw, json!({"name": "rpm10", "rpm": 10})).await;
    let (_, conc_key) = create_key(&gw, json!({"name": "conc2", "max_concurrency": 2})).await;
    // 50 concurrent requests against rpm=10: exactly 10 pass.
    let mut count: HashMap<u16, usize> = HashMap::new();
    for s in concurrent_statuses(&gw, &rpm_key, "fast", 50).await {
        *count.entry(s).or_default() += 1;
    }
    assert_eq!(count.get(&200), Some(&10), "{count:?}");
    assert_eq!(count.get(&429), Some(&40), "{count:?}");
    // 6 concurrent slow requests against max_concurrency=2: 2 run, 4 are refused.
    let mut statuses = concurrent_statuses(&gw, &conc_key, "slow-300", 6).await;
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 429, 429, 429, 429]);
    // The slots are free again afterwards.
    assert_eq!(chat_with(&gw, Some(&conc_key), "fast").await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn tpm_limit_counts_tokens_and_corrects_after_the_call() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&with_admin(config_for(fake.addr, ""))).await;
    // The fake answers with 1,200 tokens per call; the estimate before the call is tiny.
    let (_, key) = create_key(&gw, json!({"name": "tpm", "tpm": 2000})).await;
    let r = chat_with(&gw, Some(&key), "fast").await;
    assert_eq!(r.status(), 200);
    // Corrected to 1,200 used: 800 left.
    let r = chat_with(&gw, Some(&key), "fast").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "2000");
    // Now in debt (2,400 used of 2,000): refused until the bucket refills.
    let r = chat_with(&gw, Some(&key), "fast").await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "tokens");
    gw.stop().await;
}

#[tokio::test]
async fn a_deployment_at_its_rpm_is_skipped_for_the_next_in_chain() {
    let fake = start_fake().await;
    let backup = start_fake().await;
    let extra = format!(
        r#"
[providers.backup]
type = "openai"
base_url = "http://{}/v1"
api_key = "sk-backup-secret-55"

[models.limited]
deployments = [
  {{ provider = "fake", model = "ok" }},
  {{ provider = "backup", model = "ok" }},
]
balance = "weighted"
"#,
        backup.addr
    );
    // Weighted balance would pick either; make the order fixed: fake first by weight.
    let extra = extra.replace(
        "{ provider = \"fake\", model = \"ok\" }",
        "{ provider = \"fake\", model = \"ok\", weight = 1000000 }",
    );
    let cfg = config_for(fake.addr, &extra)
        .replace("max_attempts = 1", "max_attempts = 2")
        .replace("[providers.fake]\n", "[providers.fake]\nrpm = 1\n");
    let mut gw = start_gateway(&cfg).await;
    let mut providers = Vec::new();
    for _ in 0..3 {
        let r = chat_with(&gw, None, "limited").await;
        assert_eq!(r.status(), 200);
        providers.push(
            r.headers()["x-switchyard-provider"]
                .to_str()
                .expect("ascii")
                .to_string(),
        );
    }
    assert_eq!(providers[0], "fake");
    assert_eq!(&providers[1..], ["backup", "backup"], "fake is at 1 rpm");
    assert_eq!(fake.hits(), 1);
    // A model served only by the limited deployment: 429 from the gateway, no upstream call.
    let r = chat_with(&gw, None, "fast").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(fake.hits(), 1);
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("switchyard_deployment_rate_limited_total{provider=\"fake\"} 3"),
        "{metrics}"
    );
    gw.stop().await;
}

/// Parses Prometheus text: (name with labels) -> value; fails on malformed lines.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let name = p.next().expect("name");
            let kind = p.next().expect("kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "TYPE twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "{line}");
        let (series, value) = line.rsplit_once(' ').expect("value");
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().expect("name");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample before its TYPE: {line}");
        out.insert(series.to_string(), v);
    }
    out
}

#[tokio::test]
async fn metrics_parse_and_match_the_traffic() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&with_admin(config_for(fake.addr, ""))).await;
    for _ in 0..3 {
        assert_eq!(chat_with(&gw, None, "fast").await.status(), 200);
    }
    assert_eq!(chat_with(&gw, None, "fail-500").await.status(), 502);
    let (_, key) = create_key(&gw, json!({"name": "m", "rpm": 1})).await;
    assert_eq!(chat_with(&gw, Some(&key), "fast").await.status(), 200);
    assert_eq!(chat_with(&gw, Some(&key), "fast").await.status(), 429);
    assert_eq!(chat_with(&gw, Some("sk-sy-bogus"), "fast").await.status(), 401);
    let r = client().get(gw.url("/metrics")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    let m = parse_prometheus(&r.text().await.expect("text"));
    let ok = "route=\"\",task=\"\",model=\"fast\",provider=\"fake\",status=\"200\"";
    assert_eq!(m[&format!("switchyard_requests_total{{{ok}}}")], 4.0);
    assert_eq!(
        m["switchyard_requests_total{route=\"\",task=\"\",model=\"fail-500\",provider=\"fake\",status=\"502\"}"],
        1.0
    );
    assert_eq!(m[&format!("switchyard_input_tokens_total{{{ok}}}")], 4000.0);
    assert_eq!(m[&format!("switchyard_output_tokens_total{{{ok}}}")], 800.0);
    let cost = m[&format!("switchyard_cost_usd_total{{{ok}}}")];
    assert!((cost - 4.0 * (600.0 * 2e-6 + 400.0 * 0.5e-6 + 200.0 * 10e-6)).abs() < 1e-9);
    assert_eq!(
        m[&format!("gen_ai_client_operation_duration_seconds_count{{{ok}}}")],
        4.0
    );
    assert_eq!(m["switchyard_gateway_overhead_seconds_count"], 4.0);
    assert_eq!(
        m["switchyard_rejected_requests_total{reason=\"rate_limit_requests\"}"],
        1.0
    );
    assert_eq!(m["switchyard_rejected_requests_total{reason=\"auth\"}"], 1.0);
    assert_eq!(
        m["switchyard_breaker_state{provider=\"fake\",state=\"closed\"}"],
        1.0
    );
    assert!(m.contains_key("switchyard_ledger_queue_depth"));
    gw.stop().await;
}

#[tokio::test]
async fn reload_swaps_config_atomically_and_keeps_unchanged_state() {
    let fake = start_fake().await;
    let cfg = with_admin(config_for(fake.addr, ""));
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let mut gw = start_gateway_with(&cfg, dir, ledger).await;
    let cfg_path = gw.ledger.parent().expect("dir").join("switchyard.toml");
    let reload = || async {
        client()
            .post(gw.url("/admin/reload"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("send")
    };
    assert_eq!(chat_with(&gw, None, "newmodel").await.status(), 404);
    // Add a model and change a price: no restart.
    let changed = cfg.replace(
        "[aliases]",
        "[models.newmodel]\nprovider = \"fake\"\nmodel = \"ok\"\nprice = { input = 1.0, output = 1.0 }\n\n[aliases]",
    );
    std::fs::write(&cfg_path, &changed).expect("write");
    let r = reload().await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["generation"], 2);
    assert!(v["changes"].to_string().contains("model newmodel added"), "{v}");
    assert_eq!(chat_with(&gw, None, "newmodel").await.status(), 200);
    // An invalid config is rejected with the reason; the running one stays.
    std::fs::write(
        &cfg_path,
        changed.replace(
            "provider = \"fake\"\nmodel = \"ok\"\nprice = { input = 1.0",
            "provider = \"nope\"\nmodel = \"ok\"\nprice = { input = 1.0",
        ),
    )
    .expect("write");
    let r = reload().await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "invalid_config");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("models.newmodel.provider"),
        "{v}"
    );
    assert_eq!(chat_with(&gw, None, "newmodel").await.status(), 200);
    let m = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(m.contains("switchyard_config_generation 2"));
    gw.stop().await;
}

#[tokio::test]
async fn in_flight_requests_finish_on_their_config_and_breakers_survive_reload() {
    let fake = start_fake().await;
    let cfg = with_admin(config_for(
        fake.addr,
        "[models.slowone]\nprovider = \"fake\"\nmodel = \"slow-400\"\n",
    ))
    .replace(
        "breaker_consecutive_failures = 1000",
        "breaker_consecutive_failures = 2",
    )
    .replace(
        "max_attempts = 1",
        "max_attempts = 1\nbreaker_cooldown_ms = 60000",
    );
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let mut gw = start_gateway_with(&cfg, dir, ledger).await;
    let cfg_path = gw.ledger.parent().expect("dir").join("switchyard.toml");
    let slow = {
        let url = gw.url("/v1/chat/completions");
        tokio::spawn(async move {
            client()
                .post(url)
                .json(&json!({"model": "slowone", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("send")
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The reload removes `slowone` while it is being served.
    std::fs::write(
        &cfg_path,
        cfg.replace(
            "[models.slowone]\nprovider = \"fake\"\nmodel = \"slow-400\"\n",
            "",
        ),
    )
    .expect("write");
    let r = client()
        .post(gw.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let r = slow.await.expect("task");
    assert_eq!(
        r.status(),
        200,
        "the request started on the old config and finished on it"
    );
    assert_eq!(r.headers()["x-switchyard-model"], "slowone");
    assert_eq!(chat_with(&gw, None, "slowone").await.status(), 404);
    // Trip the breaker of the unchanged provider, reload, and it is still open.
    for _ in 0..2 {
        assert_eq!(chat_with(&gw, None, "fail-500").await.status(), 502);
    }
    assert_eq!(chat_with(&gw, None, "fast").await.status(), 503);
    std::fs::write(
        &cfg_path,
        cfg.replace("[aliases]", "[aliases]\nanother = \"fast\""),
    )
    .expect("write");
    let r = client()
        .post(gw.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(
        chat_with(&gw, None, "another").await.status(),
        503,
        "breaker state kept"
    );
    gw.stop().await;
}

#[tokio::test]
async fn refuses_to_serve_a_public_address_without_keys() {
    let fake = start_fake().await;
    let raw = switchyard::config::parse_toml(&config_for(fake.addr, "")).expect("parse");
    let cfg = switchyard::config::validate(raw, switchyard::config::ConfigSource::Environment, &|_| None)
        .expect("valid");
    let dir = tempfile::tempdir().expect("tmp");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let err = switchyard::start(cfg.clone(), &dir.path().join("l.sqlite"), listener)
        .await
        .err()
        .expect("refused");
    assert!(err.contains("--allow-unauthenticated"), "{err}");
    let mut open = cfg;
    open.server.allow_unauthenticated = true;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let s = switchyard::start(open, &dir.path().join("l.sqlite"), listener)
        .await
        .expect("starts when told to");
    s.shutdown().await;
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-padding", "a".repeat(100 * 1024))
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => assert!(
            e.is_request() || e.is_connect() || e.to_string().contains("closed"),
            "{e}"
        ),
    }
    assert_eq!(fake.hits(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn keys_cli_and_sighup_reload_against_the_real_binary() {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let ledger_s = ledger.to_str().expect("utf8");
    let cfg_path = dir.path().join("switchyard.toml");
    let port = free_port();
    let cfg = config_for(fake.addr, "").replace(
        "[server]\n",
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\nkey_refresh_secs = 1\n"),
    );
    std::fs::write(&cfg_path, &cfg).expect("write");
    let (ok, out, err) = run_switchyard(&[
        "keys",
        "create",
        "--name",
        "cli-team",
        "--rpm",
        "100",
        "--models",
        "fast,auto",
        "--tag",
        "team=ml",
        "--json",
        "--ledger",
        ledger_s,
    ]);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).expect("json");
    let key = created["key"].as_str().expect("key").to_string();
    assert_eq!(created["tags"]["team"], "ml");
    let (ok, out, _) = run_switchyard(&["keys", "list", "--ledger", ledger_s]);
    assert!(ok && out.contains("cli-team") && out.contains("rpm=100") && !out.contains(&key));
    let (ok, _, err) = run_switchyard(&["keys", "create", "--name", "bad name", "--ledger", ledger_s]);
    assert!(!ok && err.contains("name must be"), "{err}");

    let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "serve",
            "--config",
            cfg_path.to_str().expect("utf8"),
            "--ledger",
            ledger_s,
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let base = format!("http://127.0.0.1:{port}");
    // A generous deadline: a loaded 2-core machine may take seconds to start the binary.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while client().get(format!("{base}/health")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chat = |model: &'static str, key: Option<String>| {
        let url = format!("{base}/v1/chat/completions");
        async move {
            let mut r = client()
                .post(url)
                .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            r.send().await.expect("send").status().as_u16()
        }
    };
    assert_eq!(chat("fast", Some(key.clone())).await, 200);
    assert_eq!(chat("fast", None).await, 401);
    // SIGHUP: a new alias appears without a restart.
    std::fs::write(&cfg_path, cfg.replace("[aliases]", "[aliases]\nfresh = \"fast\"")).expect("write");
    assert_eq!(
        chat("fresh", Some(key.clone())).await,
        403,
        "not in the key's allow-list, but known"
    );
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    // The key revoked from another process is refused within key_refresh_secs.
    let (ok, _, err) = run_switchyard(&["keys", "revoke", "cli-team", "--ledger", ledger_s]);
    assert!(ok, "{err}");
    // (key_refresh_secs = 1; the deadline is generous for a loaded machine.)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while chat("fast", Some(key.clone())).await != 401 {
        assert!(std::time::Instant::now() < deadline, "revoked key still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    let out = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("configuration reloaded (SIGHUP)"), "{log}");
    assert!(
        log.contains("alias fresh") || log.contains("generation=2"),
        "{log}"
    );
    assert!(
        !log.contains(&key) && !log.contains(UPSTREAM_KEY),
        "secrets in the log"
    );
    assert!(log.contains("switchyard::access"), "access log lines: {log}");
}
