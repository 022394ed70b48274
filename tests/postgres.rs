//! The PostgreSQL ledger (`[ledger] url`), against the real server in
//! `DATABASE_URL` (e.g. postgres://postgres@127.0.0.1:5432/test). Each test
//! works in its own schema (`sy_<random>`, dropped at the end), so parallel
//! runs cannot collide. Without `DATABASE_URL` every test prints why and
//! returns.

mod common;

use common::services::*;
use common::*;
use serde_json::{json, Value};
use sqlx::Row as _;

const ADMIN: &str = "admin-key-for-postgres-tests-91c2";

/// Cost of one fake answer on `fast` (1000 prompt tokens, 400 of them cached; 200 output).
const ONE_CALL: f64 = 600.0 * 2e-6 + 400.0 * 0.5e-6 + 200.0 * 10e-6;

fn pg_config(fake: &Fake, url: &str, extra_ledger: &str, extra: &str) -> String {
    config_for(
        fake.addr,
        &format!("{extra}\n[ledger]\nurl = \"{url}\"\nflush_interval_ms = 10\n{extra_ledger}\n"),
    )
}

async fn send(base: &str, id: &str, stream: bool) -> u16 {
    let r = client()
        .post(format!("{base}/v1/chat/completions"))
        .header("x-request-id", id)
        .json(&json!({"model": "fast", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    r.bytes().await.expect("body");
    status
}

/// The same requests through a SQLite gateway and a PostgreSQL one: the
/// PostgreSQL rows carry the same fields, and nothing lands in the local file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_in_postgres_with_the_sqlite_fields() {
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let mut lite = start_gateway(&config_for(fake.addr, "")).await;
    let pg_cfg = with_admin_key(&pg_config(&fake, &schema.url, "", ""), ADMIN);
    let mut pg = start_gateway(&pg_cfg).await;
    for (i, stream) in [false, true, false].into_iter().enumerate() {
        assert_eq!(send(&lite.base, &format!("same-{i}"), stream).await, 200);
        assert_eq!(send(&pg.base, &format!("same-{i}"), stream).await, 200);
    }
    let r = client()
        .post(pg.url("/v1/chat/completions"))
        .header("x-request-id", "same-err")
        .json(&json!({"model": "fail-500", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert!(r.status().is_server_error(), "{}", r.status());
    pg.flush_ledger().await;
    // /admin/spend reads the PostgreSQL ledger.
    let spend: Value = client()
        .get(pg.url("/admin/spend?by=model"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(spend["total"]["requests"], 4, "{spend}");
    let fast = spend["data"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["group"] == "fast"))
        .unwrap_or_else(|| panic!("fast in {spend}"));
    assert_eq!(fast["requests"], 3);
    assert!(
        (fast["cost_usd"].as_f64().unwrap_or(0.0) - 3.0 * ONE_CALL).abs() < 1e-9,
        "{spend}"
    );
    let r = client()
        .get(pg.url("/admin/spend?by=tag:team"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400, "tags on PostgreSQL: a clear 400");
    // Feedback finds the request in the PostgreSQL ledger.
    let r = client()
        .post(pg.url("/v1/feedback"))
        .json(&json!({"request_id": "same-1", "score": 1.0}))
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "feedback: {}", r.status());
    let r = client()
        .post(pg.url("/v1/feedback"))
        .json(&json!({"request_id": "never-served", "score": 1.0}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 404);
    let lite_rows = lite.stop_and_rows().await;
    pg.stop().await;
    // `switchyard report` on the same database, by URL and through the config.
    let (ok, out, err) = run_switchyard(&["report", "--ledger-url", &schema.url, "--by", "model", "--json"]);
    assert!(ok, "{err}");
    let rep: Value = serde_json::from_str(&out).expect("report json");
    let fast = rep
        .as_array()
        .and_then(|a| a.iter().find(|r| r["group"] == "fast"))
        .unwrap_or_else(|| panic!("fast in {out}"));
    assert_eq!(fast["requests"], 3);
    assert_eq!(fast["prompt_tokens"], 3000);
    let cfg_path = pg.config_path();
    std::fs::write(&cfg_path, &pg_cfg).expect("config");
    let cfg_arg = cfg_path.to_string_lossy().into_owned();
    let (ok, out, err) = run_switchyard(&["report", "--config", &cfg_arg, "--by", "day", "--json"]);
    assert!(ok, "{err}");
    let rep: Value = serde_json::from_str(&out).expect("report json");
    let days = rep.as_array().expect("rows");
    assert_eq!(days.len(), 1, "{out}");
    assert_eq!(days[0]["requests"], 4, "{out}");
    assert_eq!(
        days[0]["group"].as_str().map(str::len),
        Some(10),
        "YYYY-MM-DD: {out}"
    );
    let (ok, _, err) = run_switchyard(&["report", "--ledger-url", &schema.url, "--drift"]);
    assert!(!ok && err.contains("SQLite"), "{err}");
    assert!(ledger_rows(&pg.ledger).await.is_empty(), "rows in the local file");
    let rows = sqlx::query(&format!(
        "SELECT request_id, endpoint, requested_model, served_model, provider, upstream_model, status, stream, \
         latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd, error, \
         usage_estimated, attempt, shadow FROM {}.ledger ORDER BY id",
        schema.name
    ))
    .fetch_all(&schema.admin)
    .await
    .expect("query");
    assert_eq!(rows.len(), 4);
    for (l, p) in lite_rows.iter().zip(&rows) {
        assert_eq!(l.request_id, p.get::<String, _>(0));
        assert_eq!(l.endpoint, p.get::<String, _>(1));
        assert_eq!(l.requested_model, p.get::<String, _>(2));
        assert_eq!(l.served_model, p.get::<String, _>(3));
        assert_eq!(l.provider, p.get::<String, _>(4));
        assert_eq!(l.upstream_model, p.get::<String, _>(5));
        assert_eq!(l.status, p.get::<i32, _>(6) as i64);
        assert_eq!(l.stream, p.get::<i32, _>(7) == 1);
        assert!(p.get::<f64, _>(8) > 0.0);
        assert_eq!(l.ttft_ms.is_some(), p.get::<Option<f64>, _>(9).is_some());
        assert_eq!(l.prompt_tokens, p.get::<Option<i64>, _>(10));
        assert_eq!(l.completion_tokens, p.get::<Option<i64>, _>(11));
        assert_eq!(l.cached_tokens, p.get::<Option<i64>, _>(12));
        assert_eq!(l.reasoning_tokens, p.get::<Option<i64>, _>(13));
        assert_eq!(l.cost_usd, p.get::<Option<f64>, _>(14));
        assert_eq!(l.error, p.get::<Option<String>, _>(15));
        assert_eq!(p.get::<i32, _>(16), 0);
        assert_eq!(p.get::<i32, _>(17), 1);
        assert_eq!(p.get::<i32, _>(18), 0);
    }
    let err = &rows[3];
    assert_eq!(err.get::<String, _>(0), "same-err");
    assert!(err.get::<i32, _>(6) >= 500);
    assert!(err.get::<Option<String>, _>(15).is_some());
    schema.drop().await;
}

/// The ledger table made unwritable (renamed away) while requests are
/// served: every row is kept in the spool; once the table is back they are
/// written once, in order; and the same spool replayed again at a start
/// adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_rows_spool_and_replay_once_in_order() {
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    // max_pending_rows = 0: every row behind a failing write goes to the spool file.
    let cfg = pg_config(&fake, &schema.url, "max_pending_rows = 0\n", "");
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let spool = switchyard::accounting::ledger::spool_path(&ledger);
    let mut gw = start_gateway_with(&cfg, tempfile::tempdir().expect("tmp"), ledger.clone()).await;
    schema.exec("ALTER TABLE {s}.ledger RENAME TO ledger_away").await;
    let n = 40;
    let ids: Vec<String> = (0..n).map(|i| format!("down-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            send(&gw.base, id, i % 2 == 1).await,
            200,
            "served while PostgreSQL refuses writes"
        );
    }
    until("every row kept", || async {
        metric(&gw, "switchyard_ledger_rows_pending").await == n as u64
    })
    .await;
    assert!(metric(&gw, "switchyard_ledger_write_retries_total").await >= 1);
    assert_eq!(metric(&gw, "switchyard_ledger_rows_failed_total").await, 0);
    assert!(spool.exists(), "spool file at {}", spool.display());
    let spooled = std::fs::read(&spool).expect("read spool");
    assert_eq!(
        spooled.iter().filter(|b| **b == b'\n').count(),
        n,
        "every row in the spool"
    );
    schema.exec("ALTER TABLE {s}.ledger_away RENAME TO ledger").await;
    until("the backlog written", || async {
        metric(&gw, "switchyard_ledger_rows_pending").await == 0
    })
    .await;
    gw.stop().await;
    assert_eq!(schema.request_ids().await, ids, "every row once, in order");
    assert!(!spool.exists(), "spool removed once replayed");
    // The same spool again (as if a crash left it after the rows were
    // written): a start replays it and duplicates nothing.
    std::fs::write(&spool, &spooled).expect("write spool");
    let mut gw = start_gateway_with(&cfg, tempfile::tempdir().expect("tmp"), ledger.clone()).await;
    gw.stop().await;
    assert!(!spool.exists(), "spool replayed at start");
    assert_eq!(
        schema.request_ids().await,
        ids,
        "a replayed spool duplicates nothing"
    );
    schema.drop().await;
}

/// A URL on a closed port: the gateway refuses to start with a clear
/// error (no secret in it), rather than serve without its ledger.
#[tokio::test]
async fn an_unreachable_postgres_fails_the_start_clearly() {
    let fake = start_fake().await;
    let port = free_port();
    let cfg = pg_config(
        &fake,
        &format!("postgres://sy_user:hunter2secret@127.0.0.1:{port}/test?connect_timeout=2"),
        "",
        "",
    );
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, &cfg).expect("write");
    let cfg = switchyard::config::load_file(&path).expect("valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let err = match switchyard::start(cfg, &dir.path().join("l.sqlite"), listener).await {
        Ok(_) => panic!("started without its ledger"),
        Err(e) => e,
    };
    assert!(err.contains("PostgreSQL ledger"), "{err}");
    assert!(!err.contains("hunter2secret"), "secret in error: {err}");
}

/// Spend recorded in PostgreSQL closes the budget after a restart with a
/// fresh local directory: restore reads the PostgreSQL ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_restore_reads_the_postgres_ledger() {
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    // One `fast` call costs 600*2e-6 + 400*0.5e-6 + 200*10e-6 = 0.0034.
    let cfg = pg_config(&fake, &schema.url, "", "\n[budgets]\ndaily = 0.01\n");
    let mut gw = start_gateway(&cfg).await;
    let mut admitted = 0;
    loop {
        match send(&gw.base, &format!("spend-{admitted}"), false).await {
            200 => admitted += 1,
            429 => break,
            s => panic!("unexpected status {s}"),
        }
        assert!(admitted < 50, "the budget never closed");
    }
    assert!(admitted >= 2, "{admitted}");
    gw.stop().await;
    let spent: f64 = sqlx::query_scalar(&format!("SELECT SUM(cost_usd) FROM {}.ledger", schema.name))
        .fetch_one(&schema.admin)
        .await
        .expect("sum");
    // The default mode admits while the spend is under the limit: at most one call beyond it.
    assert!(spent > 0.01 - 1e-12 && spent <= 0.01 + 0.0034 + 1e-12, "{spent}");
    // New instance, new local directory (no SQLite rows at all): still refused.
    let mut gw = start_gateway(&cfg).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status().as_u16(),
        429,
        "the spend in PostgreSQL was not restored"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
    gw.stop().await;
    schema.drop().await;
}

async fn chat_with_key(gw: &Gw, key: &str) -> u16 {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    r.bytes().await.expect("body");
    status
}

/// Two instances on one PostgreSQL database share the virtual keys: a key
/// created through A's admin API (or the `keys` CLI) authenticates on B,
/// and one revoked through A stops working on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_on_one_instance_work_on_another() {
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let cfg = with_admin_key(
        &pg_config(&fake, &schema.url, "", "").replace("[server]\n", "[server]\nkey_refresh_secs = 1\n"),
        ADMIN,
    );
    let mut a = start_gateway(&cfg).await;
    let mut b = start_gateway(&cfg).await;
    let r = client()
        .post(a.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "shared", "rpm": 1000}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.expect("json");
    let key = v["key"].as_str().expect("secret").to_string();
    assert_eq!(chat_with_key(&a, &key).await, 200);
    // B has no key of its own: it refuses strangers only once it has
    // read A's key from PostgreSQL (until then it serves loopback openly).
    until("B reads the keys from PostgreSQL", || async {
        chat_with_key(&b, "sk-sy-not-a-real-key-000000000000").await == 401
    })
    .await;
    assert_eq!(chat_with_key(&b, &key).await, 200, "A's key on B");
    // The CLI, through the same config, writes the same table.
    let cfg_path = a.config_path();
    let cfg_arg = cfg_path.to_string_lossy().into_owned();
    let (ok, out, err) = run_switchyard(&[
        "keys", "--config", &cfg_arg, "create", "--name", "cli-made", "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let cli_key = v["key"].as_str().expect("secret").to_string();
    until("B knows the CLI's key", || async {
        chat_with_key(&b, &cli_key).await == 200
    })
    .await;
    let (ok, out, err) = run_switchyard(&["keys", "--config", &cfg_arg, "list"]);
    assert!(
        ok && out.contains("shared") && out.contains("cli-made"),
        "{out}{err}"
    );
    let r = client()
        .delete(a.url("/admin/keys/shared"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "{}", r.status());
    until("B refuses the key revoked on A", || async {
        chat_with_key(&b, &key).await == 401
    })
    .await;
    a.stop().await;
    b.stop().await;
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}.api_keys", schema.name))
        .fetch_one(&schema.admin)
        .await
        .expect("count");
    assert_eq!(n, 2);
    schema.drop().await;
}

/// Shutdown while PostgreSQL still refuses writes: the kept rows go to the
/// spool, and the next start writes them, once, before it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_kept_at_shutdown_are_written_by_the_next_start() {
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let cfg = pg_config(&fake, &schema.url, "", "");
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let spool = switchyard::accounting::ledger::spool_path(&ledger);
    let mut gw = start_gateway_with(&cfg, tempfile::tempdir().expect("tmp"), ledger.clone()).await;
    schema.exec("ALTER TABLE {s}.ledger RENAME TO ledger_away").await;
    let ids: Vec<String> = (0..8).map(|i| format!("exit-{i}")).collect();
    for id in &ids {
        assert_eq!(send(&gw.base, id, false).await, 200);
    }
    gw.stop().await;
    assert!(spool.exists(), "rows kept in the spool at shutdown");
    // The start recreates the table (IF NOT EXISTS) and replays into it; put
    // the real one back first so the rows land where they belong.
    schema.exec("ALTER TABLE {s}.ledger_away RENAME TO ledger").await;
    let mut gw = start_gateway_with(&cfg, tempfile::tempdir().expect("tmp"), ledger.clone()).await;
    assert!(!spool.exists(), "spool written at start");
    gw.stop().await;
    assert_eq!(schema.request_ids().await, ids, "every kept row once, in order");
    schema.drop().await;
}

/// `experiment report` (CLI through the config, and the library) reads the
/// experiment's requests from PostgreSQL and their feedback from the local file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiment_report_reads_the_postgres_ledger() {
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let experiment = r#"
[models.cand]
provider = "fake"
model = "ok"
price = { input = 0.5, output = 2.5 }

[experiments.rep]
model = "fast"
candidates = [{ model = "cand", share = 0.5 }]
"#;
    let cfg = pg_config(&fake, &schema.url, "", experiment);
    let mut gw = start_gateway(&cfg).await;
    let mut arms: std::collections::HashMap<String, usize> = Default::default();
    for u in 0..30 {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-request-id", format!("exp-{u}"))
            .json(&json!({"model": "fast", "user": format!("u{u}"),
                          "messages": [{"role": "user", "content": "hello there"}]}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200);
        let arm = r
            .headers()
            .get("x-switchyard-experiment")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        *arms.entry(arm).or_default() += 1;
    }
    assert_eq!(arms.len(), 2, "both arms used: {arms:?}");
    gw.flush_ledger().await;
    let r = client()
        .post(gw.url("/v1/feedback"))
        .json(&json!({"request_id": "exp-0", "score": 0.25}))
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success());
    gw.stop().await;
    let cfg_path = gw.config_path();
    std::fs::write(&cfg_path, &cfg).expect("config");
    let cfg_arg = cfg_path.to_string_lossy().into_owned();
    let data_dir = gw.ledger.parent().expect("dir").to_string_lossy().into_owned();
    let (ok, out, err) = run_switchyard(&[
        "experiment",
        "report",
        "rep",
        "--config",
        &cfg_arg,
        "--data-dir",
        &data_dir,
        "--json",
    ]);
    assert!(ok, "{err}");
    let rep: Value = serde_json::from_str(&out).expect("json");
    let listed = rep["arms"].as_array().expect("arms");
    let total: u64 = listed.iter().map(|a| a["requests"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, 30, "{out}");
    for a in listed {
        let header = format!("rep/{}", a["arm"].as_str().unwrap_or(""));
        assert_eq!(
            a["requests"].as_u64(),
            arms.get(&header).map(|n| *n as u64),
            "{out}"
        );
    }
    let with_feedback: u64 = listed
        .iter()
        .map(|a| {
            a["feedback_count"]
                .as_u64()
                .or_else(|| a["feedback"]["n"].as_u64())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(with_feedback, 1, "the local feedback joined: {out}");
    schema.drop().await;
}

/// The dashboard's endpoints (`/admin/ui/overview`, `/admin/savings`,
/// `/admin/traffic`, `/admin/requests`, `/admin/requests/{id}`,
/// `/admin/ui/health`) give the same figures on a PostgreSQL ledger as on
/// SQLite for the same traffic at the same (fixed) time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_endpoints_read_postgres_like_sqlite() {
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let extra = r#"
[models.big]
provider = "fake"
model = "ok"
tier = "frontier"
price = { input = 10.0, output = 40.0 }

[routes.auto]
default_task = "simple_chat"
[routes.auto.tasks.simple_chat]
models = ["fast"]
[routes.auto.tasks.code_generation]
models = ["big"]

[budgets]
daily = 5.0
"#;
    // One answer on `big` (no cached price): 1000 x $10 + 200 x $40 per 1M tokens.
    const BIG_CALL: f64 = 0.018;
    // 2026-12-04T15:00:00Z on both gateways.
    let now = 1_796_396_400_000;
    let clock = || {
        switchyard::accounting::budget::Clock::manual(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            now,
        )))
    };
    let start = |cfg: String| async move {
        let dir = tempfile::tempdir().expect("tmp");
        let ledger = dir.path().join("ledger.sqlite");
        start_gateway_with_clock(&cfg, dir, ledger, clock()).await
    };
    let mut lite = start(with_admin_key(&config_for(fake.addr, extra), ADMIN)).await;
    let mut pg = start(with_admin_key(&pg_config(&fake, &schema.url, "", extra), ADMIN)).await;
    for gw in [&lite, &pg] {
        for (i, (model, task)) in [
            ("auto", "simple_chat"),
            ("auto", "simple_chat"),
            ("auto", "code_generation"),
            ("fast", ""),
            ("fail-500", ""),
        ]
        .into_iter()
        .enumerate()
        {
            let mut req = client()
                .post(gw.url("/v1/chat/completions"))
                .header("x-request-id", format!("dash-{i}"))
                .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
            if !task.is_empty() {
                req = req.header("x-switchyard-task", task);
            }
            let r = req.send().await.expect("send");
            r.bytes().await.expect("body");
        }
        gw.flush_ledger().await;
    }
    let get = |gw: &Gw, path: &str| {
        let url = gw.url(path);
        async move {
            let r = client().get(url).bearer_auth(ADMIN).send().await.expect("send");
            assert_eq!(r.status().as_u16(), 200);
            r.json::<Value>().await.expect("json")
        }
    };
    let (a, b) = (
        get(&lite, "/admin/ui/overview").await,
        get(&pg, "/admin/ui/overview").await,
    );
    for k in ["today", "month", "today_projected_usd", "hourly", "day_elapsed"] {
        assert_eq!(a[k], b[k], "overview {k}");
    }
    assert_eq!(b["today"]["requests"], 5);
    assert!(
        (b["today"]["cost_usd"].as_f64().unwrap_or(0.0) - (3.0 * ONE_CALL + BIG_CALL)).abs() < 1e-9,
        "{b}"
    );
    let (a, b) = (
        get(&lite, "/admin/savings").await,
        get(&pg, "/admin/savings").await,
    );
    for k in ["total", "by_day", "by_task", "by_route", "strongest"] {
        assert_eq!(a[k], b[k], "savings {k}");
    }
    assert_eq!(b["strongest"]["auto"], "big");
    assert!(b["total"]["saved_usd"].as_f64().unwrap_or(0.0) > 0.0, "{b}");
    let counts = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["series"]
            .as_array()
            .expect("series")
            .iter()
            .map(|s| {
                (
                    s["group"].clone(),
                    s["total"]["requests"].clone(),
                    s["total"]["errors"].clone(),
                )
            })
            .collect()
    };
    let (a, b) = (
        get(&lite, "/admin/traffic?by=task").await,
        get(&pg, "/admin/traffic?by=task").await,
    );
    assert_eq!(counts(&a), counts(&b));
    assert_eq!(a["tiers"], b["tiers"]);
    let ids = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["data"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    r["request_id"].clone(),
                    r["status"].clone(),
                    r["served_model"].clone(),
                )
            })
            .collect()
    };
    for q in [
        "/admin/requests",
        "/admin/requests?status=error",
        "/admin/requests?model=fast&task=simple_chat",
    ] {
        let (a, b) = (get(&lite, q).await, get(&pg, q).await);
        assert_eq!(ids(&a), ids(&b), "{q}");
        assert!(!ids(&b).is_empty(), "{q}");
    }
    let (a, b) = (
        get(&lite, "/admin/requests/dash-2").await,
        get(&pg, "/admin/requests/dash-2").await,
    );
    for k in [
        "route",
        "task",
        "tier",
        "route_reason",
        "served_model",
        "prompt_tokens",
        "cost_usd",
    ] {
        assert_eq!(a["attempts"][0][k], b["attempts"][0][k], "request {k}");
    }
    assert_eq!(b["attempts"][0]["served_model"], "big");
    let h = get(&pg, "/admin/ui/health").await;
    assert_eq!(h["data"][0]["failures_last_hour"], 1, "{h}");
    lite.stop().await;
    pg.stop().await;
    schema.drop().await;
}
