//! The dashboard (`/ui`) over real sockets: login, the session cookie, CSRF,
//! a wrong key, logout, sessions ending when the admin key changes, and the
//! JSON endpoints the pages read, checked against known traffic through the
//! fake upstream (on a fixed clock, so "today" and the pace are exact).

mod common;

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "adm-ui-test-key-5d1e8a";
/// 2026-12-04T15:00:00Z: 62.5% of the UTC day gone.
const NOW_MS: i64 = 1_796_396_400_000;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn dashboard_config(fake: std::net::SocketAddr) -> String {
    let extra = r#"
[models.big]
provider = "fake"
model = "ok"
tier = "frontier"
price = { input = 10.0, output = 40.0 }

[models.broken]
provider = "fake"
model = "fail-502"
price = { input = 2.0, output = 10.0 }

[routes.auto]
default_task = "simple_chat"
[routes.auto.tasks.simple_chat]
models = ["fast"]
[routes.auto.tasks.code_generation]
models = ["big"]

[budgets]
daily = 5.0
monthly = 100.0
"#;
    with_admin_key(&config_for(fake, extra), ADMIN)
        .replace("[providers.fake]\n", "[providers.fake]\nrpm = 1000\n")
}

async fn start(fake: std::net::SocketAddr) -> Gw {
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let clock = switchyard::accounting::budget::Clock::manual(Arc::new(AtomicI64::new(NOW_MS)));
    start_gateway_with_clock(&dashboard_config(fake), dir, ledger, clock).await
}

/// Logs in; returns the cookie header value and the page's CSRF token.
async fn login(gw: &Gw) -> (String, String) {
    let r = no_redirects()
        .post(gw.url("/ui/login"))
        .form(&[("key", ADMIN)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    let token = set[0]
        .split(';')
        .next()
        .and_then(|c| c.strip_prefix("switchyard_session="))
        .expect("session cookie")
        .to_string();
    let cookie = format!("switchyard_session={token}");
    let page = client()
        .get(gw.url("/ui"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf meta")
        .to_string();
    (cookie, csrf)
}

#[tokio::test]
async fn login_sets_a_session_cookie_and_a_wrong_key_gets_the_login_page() {
    let fake = start_fake().await;
    let mut gw = start(fake.addr).await;
    let c = no_redirects();

    // No session: the login page, no data, no CSRF token.
    let r = c.get(gw.url("/ui")).send().await.expect("ui");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/html"));
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .contains("frame-ancestors 'none'"));
    let body = r.text().await.expect("body");
    assert!(body.contains("action=\"/ui/login\""), "{body}");
    assert!(!body.contains("csrf-token"));

    // A wrong key: the login page again with an error, no cookie.
    let r = c
        .post(gw.url("/ui/login"))
        .form(&[("key", "not-the-admin-key")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let body = r.text().await.expect("body");
    assert!(body.contains("Wrong admin key."), "{body}");
    assert!(!body.contains("csrf-token"));
    assert_eq!(gw.state().ui_sessions.len(), 0);

    // Data needs the key or a session.
    let r = c
        .get(gw.url("/admin/ui/overview"))
        .send()
        .await
        .expect("overview");
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "invalid_api_key");

    // Another site's form post cannot log a browser in.
    let r = c
        .post(gw.url("/ui/login"))
        .header("origin", "https://evil.example")
        .form(&[("key", ADMIN)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());

    // The right key: 303 to /ui with the session cookie on /ui and /admin.
    let r = c
        .post(gw.url("/ui/login"))
        .form(&[("key", ADMIN)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui");
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    assert_eq!(set.len(), 2, "{set:?}");
    let token = set[0]
        .split(';')
        .next()
        .and_then(|c| c.strip_prefix("switchyard_session="))
        .expect("cookie")
        .to_string();
    assert_eq!(token.len(), 64);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    for (s, path) in set.iter().zip(["/ui", "/admin"]) {
        assert!(!s.contains(ADMIN), "the admin key never goes in a cookie: {s}");
        assert!(s.starts_with(&format!("switchyard_session={token};")), "{s}");
        for attr in ["HttpOnly", "SameSite=Strict", &format!("Path={path};")] {
            assert!(s.contains(attr), "{attr} missing: {s}");
        }
    }
    assert_eq!(gw.state().ui_sessions.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn the_session_reads_admin_data_and_needs_the_csrf_token_to_change_it() {
    let fake = start_fake().await;
    let mut gw = start(fake.addr).await;
    let c = client();
    let (cookie, csrf) = login(&gw).await;
    assert_eq!(csrf.len(), 64);

    let r = c
        .get(gw.url("/admin/keys"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("keys");
    assert_eq!(r.status(), 200);

    // A made-up session is no session.
    let r = c
        .get(gw.url("/admin/keys"))
        .header("cookie", "switchyard_session=00ff")
        .send()
        .await
        .expect("keys");
    assert_eq!(r.status(), 401);

    // POST without / with a wrong / with the right CSRF header.
    let spec = json!({"name": "team-a", "daily_budget": 2.5});
    for bad in [None, Some("0".repeat(64))] {
        let mut req = c
            .post(gw.url("/admin/keys"))
            .header("cookie", &cookie)
            .json(&spec);
        if let Some(b) = &bad {
            req = req.header("x-csrf-token", b);
        }
        let r = req.send().await.expect("create");
        assert_eq!(r.status(), 403, "csrf {bad:?}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "csrf_failed");
    }
    let r = c
        .post(gw.url("/admin/keys"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&spec)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");
    let secret = created["key"].as_str().expect("secret shown once").to_string();
    let id = created["id"].as_str().expect("id").to_string();

    // The new key works on the API; the list never shows its secret.
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat");
    assert_eq!(r.status(), 200);
    let list = c
        .get(gw.url("/admin/keys"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("keys")
        .text()
        .await
        .expect("body");
    assert!(list.contains("team-a") && !list.contains(&secret));

    // DELETE needs the token too.
    let r = c
        .delete(gw.url(&format!("/admin/keys/{id}")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 403);
    let r = c
        .delete(gw.url(&format!("/admin/keys/{id}")))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat");
    assert_eq!(r.status(), 401, "revoked");

    // The admin key header works as before, without any CSRF token.
    let r = c
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "team-b"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    // A wrong admin key header is refused even with a valid session cookie.
    let r = c
        .get(gw.url("/admin/keys"))
        .header("cookie", &cookie)
        .bearer_auth("wrong")
        .send()
        .await
        .expect("keys");
    assert_eq!(r.status(), 401);

    // Logout needs the token, then ends the session and clears the cookies.
    let r = c
        .post(gw.url("/ui/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 403);
    let r = c
        .post(gw.url("/ui/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 200);
    let cleared: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(cleared.len(), 2);
    assert!(cleared.iter().all(|c| c.contains("Max-Age=0")), "{cleared:?}");
    let r = c
        .get(gw.url("/admin/keys"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("keys");
    assert_eq!(r.status(), 401);
    let page = c
        .get(gw.url("/ui"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("ui");
    assert!(page.text().await.expect("body").contains("action=\"/ui/login\""));
    gw.stop().await;
}

#[tokio::test]
async fn changing_the_admin_key_ends_every_session() {
    let fake = start_fake().await;
    let mut gw = start(fake.addr).await;
    let c = client();
    let (cookie, _) = login(&gw).await;
    let r = c
        .get(gw.url("/admin/keys"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("keys");
    assert_eq!(r.status(), 200);
    let cfg = std::fs::read_to_string(gw.config_path()).expect("read config");
    std::fs::write(gw.config_path(), cfg.replace(ADMIN, "adm-the-new-key-9c2f")).expect("write");
    let r = c
        .post(gw.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    let r = c
        .get(gw.url("/admin/keys"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("keys");
    assert_eq!(r.status(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn pages_and_assets_are_embedded() {
    let fake = start_fake().await;
    let mut gw = start(fake.addr).await;
    let c = client();
    let (cookie, csrf) = login(&gw).await;
    let page = c
        .get(gw.url("/ui/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert!(page.contains(&csrf));
    for tab in [
        "overview",
        "savings",
        "traffic",
        "health",
        "requests",
        "keys",
        "experiments",
    ] {
        assert!(page.contains(&format!("id=\"page-{tab}\"")), "{tab}");
    }
    for (asset, ct, needle) in [
        ("app.js", "text/javascript", "x-csrf-token"),
        ("app.css", "text/css", ".panel"),
        ("uPlot.iife.min.js", "text/javascript", "MIT License"),
        ("uPlot.min.css", "text/css", ".uplot"),
    ] {
        let r = c
            .get(gw.url(&format!("/ui/assets/{asset}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(r.status(), 200, "{asset}");
        assert!(r.headers()["content-type"].to_str().expect("ct").starts_with(ct));
        assert!(r.text().await.expect("body").contains(needle), "{asset}");
    }
    let r = c
        .get(gw.url("/ui/assets/../../Cargo.toml"))
        .send()
        .await
        .expect("asset");
    assert_eq!(r.status(), 404);
    let r = c
        .get(gw.url("/ui/assets/secret.txt"))
        .send()
        .await
        .expect("asset");
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.expect("json error");
    assert!(v["error"]["message"].is_string());
    gw.stop().await;
}

#[tokio::test]
async fn without_an_admin_key_the_dashboard_is_disabled() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let r = no_redirects().get(gw.url("/ui")).send().await.expect("ui");
    assert_eq!(r.status(), 404);
    assert!(r.text().await.expect("body").contains("server.admin_key"));
    let r = no_redirects()
        .post(gw.url("/ui/login"))
        .form(&[("key", "")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("set-cookie").is_none());
    gw.stop().await;
}

async fn chat(gw: &Gw, model: &str, task: Option<&str>) -> (u16, String) {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]}));
    if let Some(t) = task {
        req = req.header("x-switchyard-task", t);
    }
    let r = req.send().await.expect("chat");
    let id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (r.status().as_u16(), id)
}

async fn admin_get(gw: &Gw, cookie: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(gw.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("get");
    let s = r.status().as_u16();
    (s, r.json().await.expect("json"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Fast: 600 fresh x $2 + 400 cached x $0.5 + 200 out x $10 per 1M tokens.
const FAST_COST: f64 = 0.0034;
/// Big (no cached price: input price): 1000 x $10 + 200 x $40 per 1M.
const BIG_COST: f64 = 0.018;

#[tokio::test]
async fn dashboard_endpoints_report_known_traffic() {
    let fake = start_fake().await;
    let mut gw = start(fake.addr).await;
    let mut routed = Vec::new();
    for _ in 0..3 {
        let (s, id) = chat(&gw, "auto", Some("simple_chat")).await;
        assert_eq!(s, 200);
        routed.push(id);
    }
    assert_eq!(chat(&gw, "fast", None).await.0, 200);
    assert_eq!(chat(&gw, "broken", None).await.0, 502);
    gw.flush_ledger().await;
    let (cookie, _) = login(&gw).await;

    // Overview: today's spend from the ledger, the pace and the projection.
    let rows = ledger_rows(&gw.ledger).await;
    assert_eq!(rows.len(), 5);
    let ledger_cost: f64 = rows.iter().filter_map(|r| r.cost_usd).sum();
    assert!(close(ledger_cost, 4.0 * FAST_COST), "{ledger_cost}");
    let (s, o) = admin_get(&gw, &cookie, "/admin/ui/overview").await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["now_ms"], NOW_MS);
    assert_eq!(o["day_elapsed"], 0.625);
    assert_eq!(o["today"]["requests"], 5);
    assert_eq!(o["today"]["rows"], 5);
    assert_eq!(o["today"]["unknown_cost_rows"], 1);
    assert!(close(o["today"]["cost_usd"].as_f64().expect("cost"), ledger_cost));
    assert!(close(o["month"]["cost_usd"].as_f64().expect("cost"), ledger_cost));
    assert!(close(
        o["today_projected_usd"].as_f64().expect("proj"),
        ledger_cost / 0.625
    ));
    let global = o["budgets"]
        .as_array()
        .expect("budgets")
        .iter()
        .find(|b| b["scope"] == "global")
        .expect("global budget");
    assert_eq!(global["daily_limit_usd"], 5.0);
    assert_eq!(global["daily_pace_usd"], 3.125);
    assert!(close(
        global["daily_spent_usd"].as_f64().expect("spent"),
        ledger_cost
    ));
    let hourly = o["hourly"].as_array().expect("hourly");
    assert_eq!(hourly.len(), 16, "midnight plus 15 hours");
    assert!(close(hourly[15]["cost_usd"].as_f64().expect("cum"), ledger_cost));

    // Savings: routed rows priced on the route's strongest model (big).
    let (s, v) = admin_get(&gw, &cookie, "/admin/savings").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["strongest"]["auto"], "big");
    let t = &v["total"];
    assert_eq!(t["requests"], 5);
    assert_eq!(t["unpriced_rows"], 1, "the failed call has no usage");
    assert!(close(t["actual_usd"].as_f64().expect("a"), 4.0 * FAST_COST));
    assert!(close(
        t["counterfactual_usd"].as_f64().expect("c"),
        3.0 * BIG_COST + FAST_COST
    ));
    assert!(close(
        t["saved_usd"].as_f64().expect("s"),
        3.0 * (BIG_COST - FAST_COST)
    ));
    let task = v["by_task"]
        .as_array()
        .expect("by_task")
        .iter()
        .find(|x| x["group"] == "simple_chat")
        .expect("simple_chat");
    assert_eq!(task["requests"], 3);
    assert!(close(
        task["saved_usd"].as_f64().expect("s"),
        3.0 * (BIG_COST - FAST_COST)
    ));
    assert_eq!(v["by_day"][0]["group"], "2026-12-04");

    // Traffic by model: requests, errors, latency percentiles; tier shares.
    let (s, v) = admin_get(&gw, &cookie, "/admin/traffic?by=model&buckets=4").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"]["requests"], 5);
    assert_eq!(v["total"]["errors"], 1);
    let series = v["series"].as_array().expect("series");
    let fast = series.iter().find(|s| s["group"] == "fast").expect("fast");
    assert_eq!(fast["total"]["requests"], 4);
    assert_eq!(fast["total"]["errors"], 0);
    assert_eq!(fast["points"].as_array().expect("points").len(), 4);
    assert_eq!(fast["points"][3]["requests"], 4, "all in the last bucket");
    assert!(fast["total"]["p95_ms"].as_f64().expect("p95") >= fast["total"]["p50_ms"].as_f64().expect("p50"));
    let broken = series.iter().find(|s| s["group"] == "broken").expect("broken");
    assert_eq!(broken["total"]["errors"], 1);
    let tiers = v["tiers"].as_array().expect("tiers");
    assert_eq!(
        tiers
            .iter()
            .map(|t| t["requests"].as_i64().unwrap_or(0))
            .sum::<i64>(),
        3
    );
    assert_eq!(
        tiers
            .iter()
            .map(|t| t["share"].as_f64().unwrap_or(0.0))
            .sum::<f64>(),
        1.0
    );
    let (s, v) = admin_get(&gw, &cookie, "/admin/traffic?by=task").await;
    assert_eq!(s, 200);
    assert!(v["series"]
        .as_array()
        .expect("series")
        .iter()
        .any(|s| s["group"] == "simple_chat" && s["total"]["requests"] == 3));

    // Requests: filters and pages.
    let (_, v) = admin_get(&gw, &cookie, "/admin/requests").await;
    assert_eq!(v["data"].as_array().expect("rows").len(), 5);
    assert_eq!(v["data"][0]["served_model"], "broken", "newest first");
    let (_, v) = admin_get(&gw, &cookie, "/admin/requests?status=error").await;
    let errs = v["data"].as_array().expect("rows");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0]["status"], 502);
    let (_, v) = admin_get(&gw, &cookie, "/admin/requests?model=fast").await;
    assert_eq!(v["data"].as_array().expect("rows").len(), 4);
    let (_, v) = admin_get(&gw, &cookie, "/admin/requests?task=simple_chat&status=ok").await;
    assert_eq!(v["data"].as_array().expect("rows").len(), 3);
    let (_, v) = admin_get(&gw, &cookie, "/admin/requests?model=auto&key=nobody").await;
    assert_eq!(v["data"].as_array().expect("rows").len(), 0);
    let (_, p1) = admin_get(&gw, &cookie, "/admin/requests?limit=3").await;
    assert_eq!(p1["data"].as_array().expect("rows").len(), 3);
    let next = p1["next_before"].as_i64().expect("next page");
    let (_, p2) = admin_get(&gw, &cookie, &format!("/admin/requests?limit=3&before={next}")).await;
    assert_eq!(p2["data"].as_array().expect("rows").len(), 2);
    assert!(p2["next_before"].is_null());
    for bad in [
        "/admin/requests?status=weird",
        "/admin/requests?limit=0",
        "/admin/traffic?by=colour",
        "/admin/traffic?buckets=0",
        "/admin/savings?since=2026-12-05&until=2026-12-01",
        "/admin/savings?since=yesterday",
    ] {
        let (s, v) = admin_get(&gw, &cookie, bad).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(v["error"]["message"].is_string(), "{bad}");
    }

    // One request's full record.
    let (s, v) = admin_get(&gw, &cookie, &format!("/admin/requests/{}", routed[0])).await;
    assert_eq!(s, 200, "{v}");
    let a = &v["attempts"][0];
    assert_eq!(a["route"], "auto");
    assert_eq!(a["task"], "simple_chat");
    assert_eq!(a["served_model"], "fast");
    assert_eq!(a["prompt_tokens"], 1000);
    assert!(a["route_reason"].as_str().is_some_and(|r| !r.is_empty()), "{a}");
    assert!(close(v["cost_usd"].as_f64().expect("cost"), FAST_COST));
    let (s, v) = admin_get(&gw, &cookie, "/admin/requests/req_nope").await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "request_not_found");

    // Health: the breaker and the ledger's failures of the last hour.
    let (s, v) = admin_get(&gw, &cookie, "/admin/ui/health").await;
    assert_eq!(s, 200, "{v}");
    let fake_h = &v["data"][0];
    assert_eq!(fake_h["provider"], "fake");
    assert_eq!(fake_h["state"], "closed");
    assert_eq!(fake_h["failures_last_hour"], 1);
    assert_eq!(fake_h["recent_failures"][0]["status"], 502);
    assert_eq!(fake_h["rate_limits"]["rpm"]["limit"], 1000);
    assert!(fake_h["rate_limits"]["rpm"]["remaining"]
        .as_u64()
        .is_some_and(|r| r <= 1000));
    assert!(fake_h["rate_limits"]["tpm"].is_null());
    gw.stop().await;
}
