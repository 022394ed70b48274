//! Several instances, one truth: gateways sharing the real Redis in `REDIS_URL`
//! (and, where keys must be shared, the real PostgreSQL in `DATABASE_URL`),
//! each test under its own key prefix and schema. Without the servers every
//! test prints why and returns.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::services::*;
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key-for-shared-state-tests-5d1e";

/// Cost of one fake answer on `fast` (1000 prompt tokens, 400 of them cached; 200 output).
const ONE_CALL: f64 = 600.0 * 2e-6 + 400.0 * 0.5e-6 + 200.0 * 10e-6;

fn shared_config(fake: &Fake, redis: &RedisPrefix, pg: Option<&str>, extra: &str) -> String {
    let ledger = pg.map_or(String::new(), |u| {
        format!("[ledger]\nurl = \"{u}\"\nflush_interval_ms = 10\n")
    });
    // A generous call timeout: on a loaded machine a slow answer must not be
    // mistaken for an outage (the fault tests cut the connection instead).
    with_admin_key(
        &config_for(
            fake.addr,
            &format!(
                "{extra}\n[state]\nredis_url = \"{}\"\nkey_prefix = \"{}\"\ntimeout_ms = 5000\n{ledger}",
                redis.url, redis.prefix
            ),
        )
        .replace("[server]\n", "[server]\nkey_refresh_secs = 3600\n"),
        ADMIN,
    )
}

async fn start_n(n: usize, cfg: &str, clock: &Arc<AtomicI64>) -> Vec<Gw> {
    let mut out = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().expect("tmp");
        let ledger = dir.path().join("ledger.sqlite");
        out.push(
            start_gateway_with_clock(
                cfg,
                dir,
                ledger,
                switchyard::accounting::budget::Clock::manual(clock.clone()),
            )
            .await,
        );
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn create_key(gw: &Gw, spec: Value) -> String {
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&spec)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.expect("json");
    v["key"].as_str().expect("secret").to_string()
}

async fn chat(base: &str, key: Option<&str>, max_tokens: u64) -> (u16, Value) {
    let mut r = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "fast", "max_tokens": max_tokens,
                      "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.expect("send");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// `n` concurrent chat requests spread round-robin over `bases`; their answers.
async fn round_robin(bases: &[String], n: usize, key: Option<&str>, max_tokens: u64) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            let key = key.map(str::to_string);
            tokio::spawn(async move { chat(&base, key.as_deref(), max_tokens).await })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

/// Waits until every instance has applied its queued Redis writes (spend,
/// releases), so what the next request sees does not depend on timing.
async fn settled(gws: &[Gw]) {
    for g in gws {
        let st = g.state();
        let sh = st.shared.as_ref().expect("shared state configured");
        until("queued Redis writes applied", || async {
            sh.pending_writes() == 0
        })
        .await;
    }
}

async fn pg_spend(schema: &Schema) -> (i64, f64) {
    sqlx::query_as(&format!(
        "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0)::float8 FROM {}.ledger",
        schema.name
    ))
    .fetch_one(&schema.admin)
    .await
    .expect("ledger totals")
}

/// A key with rpm = 60, hit by 600 concurrent requests spread round-robin over
/// three instances, gets exactly 60 admitted (the clock is frozen, so the
/// bucket cannot refill while the test runs, however slow the machine is).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_admit_exactly_the_keys_rpm() {
    let Some(redis) = RedisPrefix::new() else { return };
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let cfg = shared_config(&fake, &redis, Some(&schema.url), "");
    let mut gws = start_n(3, &cfg, &clock).await;
    let key = create_key(&gws[0], json!({"name": "team", "rpm": 60})).await;
    for g in &gws[1..] {
        let st = g.state();
        until("the key reaches every instance", || async {
            st.keys.lookup(&key).is_some()
        })
        .await;
    }
    let bases: Vec<String> = gws.iter().map(|g| g.base.clone()).collect();
    let (mut ok, mut limited) = (0, 0);
    for (status, body) in round_robin(&bases, 600, Some(&key), 10).await {
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
                limited += 1;
            }
            s => panic!("unexpected {s}: {body}"),
        }
    }
    assert_eq!(ok, 60, "admitted across three instances");
    assert_eq!(limited, 540);
    // A minute later the bucket is full again, on every instance.
    clock.fetch_add(60_000, Ordering::SeqCst);
    assert_eq!(chat(&bases[2], Some(&key), 10).await.0, 200);
    for g in &mut gws {
        g.stop().await;
    }
    let (rows, _) = pg_spend(&schema).await;
    assert_eq!(rows, 61, "one PostgreSQL ledger row per admitted request");
    redis.clean().await;
    schema.drop().await;
}

/// A daily budget that fits about 20 answers, 500 concurrent requests over
/// three instances: the ledger total never passes the limit, every refusal is
/// 429 `budget_exceeded`, and released reservations give their room back
/// across instances (sequential requests keep getting in until less than one
/// worst case is left).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_never_overspend_a_shared_daily_budget() {
    let Some(redis) = RedisPrefix::new() else { return };
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let limit = 20.0 * ONE_CALL;
    // Estimate mode: each request reserves its worst case (1000 output tokens
    // at $10/M plus the prompt), above the fake's real cost (ONE_CALL).
    let extra = format!("[budgets]\nmode = \"estimate\"\ndaily = {limit}\n");
    let cfg = shared_config(&fake, &redis, Some(&schema.url), &extra);
    let mut gws = start_n(3, &cfg, &clock).await;
    let bases: Vec<String> = gws.iter().map(|g| g.base.clone()).collect();
    let (mut ok, mut refused) = (0, 0);
    for (status, body) in round_robin(&bases, 500, None, 1000).await {
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                refused += 1;
            }
            s => panic!("unexpected {s}: {body}"),
        }
    }
    let worst = 1000.0 * 10e-6;
    assert!(
        ok >= (limit / (worst + 0.001)) as usize,
        "what fits at once gets in: {ok}"
    );
    assert!(refused > 0 && ok + refused == 500);
    let mut drained = 0;
    loop {
        settled(&gws).await;
        let (status, body) = chat(&bases[drained % 3], None, 1000).await;
        match status {
            200 => drained += 1,
            429 => {
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                break;
            }
            s => panic!("unexpected {s}: {body}"),
        }
        assert!(drained < 100, "the budget never closed");
    }
    for g in &mut gws {
        g.stop().await;
    }
    let (rows, spent) = pg_spend(&schema).await;
    assert_eq!(rows as usize, ok + drained, "one ledger row per admitted request");
    assert!(spent <= limit + 1e-9, "spent {spent} > limit {limit}");
    assert!(
        limit - spent < worst + 0.001,
        "room left unused: spent {spent} of {limit} after {ok} + {drained} requests"
    );
    redis.clean().await;
    schema.drop().await;
}

/// A key revoked through one instance is refused by the others at once:
/// `key_refresh_secs` is an hour here, so only the Redis announcement can
/// explain it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_revoked_on_one_instance_is_refused_by_the_others() {
    let Some(redis) = RedisPrefix::new() else { return };
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let cfg = shared_config(&fake, &redis, Some(&schema.url), "");
    let mut gws = start_n(3, &cfg, &clock).await;
    let key = create_key(&gws[0], json!({"name": "leaving", "rpm": 1000})).await;
    for g in &gws {
        let st = g.state();
        until("the key reaches every instance", || async {
            st.keys.lookup(&key).is_some()
        })
        .await;
        assert_eq!(chat(&g.base, Some(&key), 10).await.0, 200);
    }
    let r = client()
        .delete(gws[0].url("/admin/keys/leaving"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success());
    let revoked = Instant::now();
    for g in &gws[1..] {
        let st = g.state();
        until("the revocation reaches every instance", || async {
            st.keys.lookup(&key).is_none()
        })
        .await;
        let (status, body) = chat(&g.base, Some(&key), 10).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    println!(
        "revocation seen by both other instances {} ms after the DELETE answered",
        revoked.elapsed().as_millis()
    );
    for g in &mut gws {
        g.stop().await;
    }
    redis.clean().await;
    schema.drop().await;
}

/// `fail_closed`: while Redis is unreachable, requests that need a shared limit
/// get 503 `state_unavailable` in their endpoint's format, requests that need
/// none are served, the metric says so, and all is shared again once Redis is
/// back (reconnecting on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_limited_requests_until_redis_is_back() {
    let Some(redis) = RedisPrefix::new() else { return };
    let relay = Relay::start(redis_addr(&redis.url)).await;
    let via = RedisPrefix {
        url: format!("redis://{}", relay.addr),
        prefix: redis.prefix.clone(),
    };
    let fake = start_fake().await;
    let cfg = shared_config(&fake, &via, None, "").replace(
        "timeout_ms = 5000\n",
        "timeout_ms = 5000\non_failure = \"fail_closed\"\n",
    );
    let mut gw = start_gateway(&cfg).await;
    let limited = create_key(
        &gw,
        json!({"name": "limited", "rpm": 1000, "max_concurrency": 10}),
    )
    .await;
    let free = create_key(&gw, json!({"name": "free"})).await;
    let up = "switchyard_state_backend_up{backend=\"redis\"}";
    assert_eq!(metric(&gw, up).await, 1);
    assert_eq!(chat(&gw.base, Some(&limited), 10).await.0, 200);
    assert!(
        !redis.keys().await.is_empty(),
        "the key's bucket lives in Redis under the prefix"
    );

    relay.cut();
    until("Redis seen as down", || async {
        chat(&gw.base, Some(&limited), 10).await.0 == 503
    })
    .await;
    let (status, body) = chat(&gw.base, Some(&limited), 10).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "state_unavailable", "{body}");
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &limited)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "fast", "max_tokens": 10,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["type"], "error", "Anthropic's error shape: {body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or("").contains("Redis"),
        "{body}"
    );
    assert_eq!(
        chat(&gw.base, Some(&free), 10).await.0,
        200,
        "no shared limit needed"
    );
    assert_eq!(metric(&gw, up).await, 0);

    relay.restore();
    until("Redis seen as back", || async { metric(&gw, up).await == 1 }).await;
    assert_eq!(chat(&gw.base, Some(&limited), 10).await.0, 200);
    assert!(metric(&gw, "switchyard_state_backend_changes_total").await >= 2);
    gw.stop().await;
    redis.clean().await;
}

/// `fail_open` with Redis unreachable from the start: each instance enforces
/// the budget alone, on its own counters. The documented worst case is N x the
/// limit for N instances; two instances stay within 2 x, and each within 1 x.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_overspends_at_most_the_limit_per_instance() {
    let fake = start_fake().await;
    let dead = RedisPrefix {
        url: format!("redis://127.0.0.1:{}", free_port()),
        prefix: format!("sy_test_{:016x}", rand_u64()),
    };
    let limit = 5.0 * ONE_CALL;
    let extra = format!("[budgets]\nmode = \"estimate\"\ndaily = {limit}\n");
    let cfg = shared_config(&fake, &dead, None, &extra);
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let mut gws = start_n(2, &cfg, &clock).await;
    let up = "switchyard_state_backend_up{backend=\"redis\"}";
    let mut served = [0usize; 2];
    for (i, g) in gws.iter().enumerate() {
        assert_eq!(metric(g, up).await, 0, "Redis is not there");
        loop {
            let (status, body) = chat(&g.base, None, 1000).await;
            match status {
                200 => served[i] += 1,
                429 => {
                    assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                    break;
                }
                s => panic!("unexpected {s}: {body}"),
            }
            assert!(served[i] < 50, "the local budget never closed");
        }
    }
    let mut spent = [0.0f64; 2];
    for (i, g) in gws.iter_mut().enumerate() {
        spent[i] = g.stop_and_rows().await.iter().filter_map(|r| r.cost_usd).sum();
        assert!(
            spent[i] <= limit + 1e-12,
            "instance {i} alone spent {} > {limit}",
            spent[i]
        );
    }
    let total = spent[0] + spent[1];
    assert!(total <= 2.0 * limit + 1e-12, "{total}");
    assert!(
        total > limit,
        "two instances on their own counters do pass one limit ({total} of {limit}): the stated bound is real"
    );
    assert_eq!(served[0], served[1]);
}

/// A session pinned on one instance keeps its model on the others: the pin
/// lives in Redis, not in the instance that routed the first turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pinned_on_one_instance_keeps_its_model_on_the_others() {
    let Some(redis) = RedisPrefix::new() else { return };
    let fake = start_fake().await;
    let cfg = format!(
        r#"
[providers.fake]
type = "openai"
base_url = "http://{fake}/v1"
api_key = "{UPSTREAM_KEY}"

[models.cheap]
provider = "fake"
model = "up-cheap"
tier = "economy"
price = {{ input = 0.1, output = 0.2 }}

[models.big]
provider = "fake"
model = "up-big"
tier = "frontier"
price = {{ input = 5.0, output = 30.0 }}

[routing]
session_idle_secs = 600

[routes.auto]
default_task = "simple_chat"
[routes.auto.tasks.simple_chat]
models = ["cheap"]
[routes.auto.tasks.code_generation]
models = ["big"]

[state]
redis_url = "{url}"
key_prefix = "{prefix}"
timeout_ms = 5000
"#,
        fake = fake.addr,
        url = redis.url,
        prefix = redis.prefix
    );
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let mut gws = start_n(2, &cfg, &clock).await;
    let send = |base: String, text: &'static str, session: &'static str| async move {
        let r = client()
            .post(format!("{base}/v1/chat/completions"))
            .header("x-switchyard-session", session)
            .json(&json!({"model": "auto", "messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200);
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (h("x-switchyard-model"), h("x-switchyard-route-reason"))
    };
    let code = "Write a Rust function that parses a CSV line into fields, handling quoted commas.";
    let chat = "thanks! that's great";
    let (m1, _) = send(gws[0].base.clone(), code, "conv-1").await;
    assert_eq!(m1, "big");
    let (m2, reason) = send(gws[1].base.clone(), chat, "conv-1").await;
    assert_eq!(m2, "big", "the other instance keeps the session's model");
    assert!(reason.ends_with("session_pinned"), "{reason}");
    let (m3, _) = send(gws[1].base.clone(), chat, "conv-2").await;
    assert_eq!(m3, "cheap", "another session is routed on its own merits");
    for g in &mut gws {
        g.stop().await;
    }
    redis.clean().await;
}

/// A key's `max_concurrency` holds across instances: with answers that never
/// come, exactly that many requests reach the upstream and the rest get 429 at
/// once; when the clients give up, the slots come back (on every instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_a_keys_concurrency_cap() {
    let Some(redis) = RedisPrefix::new() else { return };
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    // The upstream holds every answer for 60 s (longer than the test).
    let cfg = shared_config(&fake, &redis, Some(&schema.url), "")
        .replace("timeout_ms = 3000", "timeout_ms = 120000")
        .replace(
            "[aliases]",
            "[models.hold]\nprovider = \"fake\"\nmodel = \"slow-60000\"\n\n[aliases]",
        );
    let mut gws = start_n(3, &cfg, &clock).await;
    let key = create_key(&gws[0], json!({"name": "capped", "max_concurrency": 4})).await;
    for g in &gws[1..] {
        let st = g.state();
        until("the key reaches every instance", || async {
            st.keys.lookup(&key).is_some()
        })
        .await;
    }
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for i in 0..30 {
        let base = gws[i % 3].base.clone();
        let key = key.clone();
        let t = tokio::spawn(async move {
            let r = client()
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&json!({"model": "hold", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        });
        held.push(t);
    }
    // The refused ones answer at once; the admitted ones hang at the upstream.
    until("26 refusals", || async {
        held.iter().filter(|t| t.is_finished()).count() >= 26
    })
    .await;
    let mut pending = Vec::new();
    for t in held {
        if t.is_finished() {
            refused.push(t.await.expect("task"));
        } else {
            pending.push(t);
        }
    }
    assert_eq!(pending.len(), 4, "exactly max_concurrency requests in flight");
    for (status, body) in &refused {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    }
    until("the four admitted requests reach the upstream", || async {
        fake.hits() == 4
    })
    .await;
    // The clients give up: the gateways see the disconnects and free the slots.
    for t in &pending {
        t.abort();
    }
    settled(&gws).await;
    let key2 = key.clone();
    let base = gws[2].base.clone();
    until("slots given back", || {
        let (key, base) = (key2.clone(), base.clone());
        async move {
            let r = client()
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("send");
            r.status().as_u16() == 200
        }
    })
    .await;
    for g in &mut gws {
        g.stop().await;
    }
    redis.clean().await;
    schema.drop().await;
}

/// A provider account's `rpm` holds across instances: 90 concurrent requests
/// over three instances (clock frozen), one deployment with rpm = 30: exactly
/// 30 reach the upstream, the rest get 429 without it being called.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_a_providers_account_rpm() {
    let Some(redis) = RedisPrefix::new() else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let cfg = shared_config(&fake, &redis, None, "").replace(
        "connect_timeout_ms = 1000\n",
        "connect_timeout_ms = 1000\nrpm = 30\n",
    );
    let mut gws = start_n(3, &cfg, &clock).await;
    let bases: Vec<String> = gws.iter().map(|g| g.base.clone()).collect();
    let mut ok = 0;
    for (status, body) in round_robin(&bases, 90, None, 10).await {
        match status {
            200 => ok += 1,
            429 => assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}"),
            s => panic!("unexpected {s}: {body}"),
        }
    }
    assert_eq!(ok, 30);
    assert_eq!(fake.hits(), 30, "the upstream saw only what its account allows");
    for g in &mut gws {
        g.stop().await;
    }
    redis.clean().await;
}

/// Redis lost its data (restarted without persistence): the next instance to
/// start seeds today's spend from the PostgreSQL ledger, so the exhausted
/// budget stays exhausted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_instance_seeds_redis_from_the_ledger() {
    let Some(redis) = RedisPrefix::new() else { return };
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let limit = 2.5 * ONE_CALL;
    let extra = format!("[budgets]\nmode = \"estimate\"\ndaily = {limit}\n");
    let cfg = shared_config(&fake, &redis, Some(&schema.url), &extra);
    let mut a = start_n(1, &cfg, &clock).await;
    let mut served = 0;
    while chat(&a[0].base, None, 10).await.0 == 200 {
        served += 1;
        settled(&a).await;
        assert!(served < 20, "the budget never closed");
    }
    assert!(served >= 2, "{served}");
    a[0].stop().await;
    redis.clean().await;
    let mut b = start_n(1, &cfg, &clock).await;
    let (status, body) = chat(&b[0].base, None, 10).await;
    assert_eq!(status, 429, "the ledger's spend reached Redis: {body}");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    b[0].stop().await;
    redis.clean().await;
    schema.drop().await;
}

/// A key's TPM bucket is shared: tokens used through one instance show in the
/// other's `x-ratelimit-remaining-tokens`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_used_on_one_instance_count_on_the_other() {
    let Some(redis) = RedisPrefix::new() else { return };
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let cfg = shared_config(&fake, &redis, Some(&schema.url), "");
    let mut gws = start_n(2, &cfg, &clock).await;
    let key = create_key(&gws[0], json!({"name": "tokens", "tpm": 100000})).await;
    {
        // (No AppState handle may outlive the test's gateways: their shutdown drains the ledger.)
        let st = gws[1].state();
        until("the key reaches the other instance", || async {
            st.keys.lookup(&key).is_some()
        })
        .await;
    }
    assert_eq!(chat(&gws[0].base, Some(&key), 10).await.0, 200);
    settled(&gws).await;
    let r = client()
        .post(gws[1].url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "fast", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let remaining: u64 = r
        .headers()
        .get("x-ratelimit-remaining-tokens")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("x-ratelimit-remaining-tokens");
    r.bytes().await.expect("body");
    // The fake's answer used 1,200 tokens on the first instance.
    assert!(remaining <= 100_000 - 1_200, "remaining {remaining}");
    for g in &mut gws {
        g.stop().await;
    }
    redis.clean().await;
    schema.drop().await;
}

/// Sum of a metric over instances.
async fn metric_sum(gws: &[Gw], name: &str) -> u64 {
    let mut n = 0;
    for g in gws {
        n += metric(g, name).await;
    }
    n
}

/// With every limit a key can have (RPM, TPM, a concurrency cap, its own daily
/// budget) and a global daily budget, a request costs exactly one Redis call on
/// its path (admission takes all of them in one script), on chat, streamed chat
/// and /v1/messages alike, and on a refusal too; the shared RPM the deferred take
/// saw shows in `x-ratelimit-remaining-requests` across instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_costs_one_redis_round_trip_with_every_limit() {
    let Some(redis) = RedisPrefix::new() else { return };
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let cfg = shared_config(&fake, &redis, Some(&schema.url), "[budgets]\ndaily = 100.0\n");
    let mut gws = start_n(3, &cfg, &clock).await;
    let key = create_key(
        &gws[0],
        json!({"name": "all-limits", "rpm": 31, "tpm": 10000000, "max_concurrency": 8, "daily_budget": 50.0}),
    )
    .await;
    for g in &gws[1..] {
        let st = g.state();
        until("the key reaches every instance", || async {
            st.keys.lookup(&key).is_some()
        })
        .await;
    }
    const ON_PATH: &str = "switchyard_state_calls_total{path=\"request\"}";
    let before = metric_sum(&gws, ON_PATH).await;
    let body = |i: usize| match i % 3 {
        0 => (
            "/v1/chat/completions",
            json!({"model": "fast", "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}]}),
        ),
        1 => (
            "/v1/chat/completions",
            json!({"model": "fast", "max_tokens": 10, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        ),
        _ => (
            "/v1/messages",
            json!({"model": "fast", "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}]}),
        ),
    };
    for i in 0..31 {
        let (path, b) = body(i);
        let r = client()
            .post(gws[i % 3].url(path))
            .bearer_auth(&key)
            .json(&b)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200, "request {i} on {path}");
        let remaining = r
            .headers()
            .get("x-ratelimit-remaining-requests")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert!(r.headers().contains_key("x-ratelimit-remaining-tokens"));
        r.bytes().await.expect("body");
        assert_eq!(
            remaining.as_deref(),
            Some((30 - i).to_string().as_str()),
            "the shared RPM bucket after request {i}"
        );
    }
    // The 32nd is refused by RPM: still one call, and nothing else taken.
    let (status, refused) = chat(&gws[1].base, Some(&key), 10).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["error"]["code"], "rate_limit_exceeded");
    let after = metric_sum(&gws, ON_PATH).await;
    assert_eq!(after - before, 32, "Redis calls on the path of 32 requests");
    for g in &mut gws {
        g.stop().await;
    }
    let (rows, _) = pg_spend(&schema).await;
    assert_eq!(rows, 31, "one ledger row per admitted request");
    redis.clean().await;
    schema.drop().await;
}

/// A breaker that opens on one instance opens on the others (a pub/sub hint,
/// `[state] share_breakers`, on by default): after instance A saw its primary
/// deployment fail and tripped, instance B, which never called it, serves
/// from the fallback at once without one call to the failing deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_tripped_on_one_instance_opens_on_the_others() {
    let Some(redis) = RedisPrefix::new() else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let cfg = format!(
        r#"
[server]
admin_key = "{ADMIN}"
[resilience]
max_attempts = 2
retries_per_target = 0
breaker_consecutive_failures = 2
breaker_cooldown_ms = 600000
breaker_max_cooldown_ms = 600000
[providers.bad]
type = "openai"
base_url = "http://{addr}/v1"
api_key = "{UPSTREAM_KEY}"
[providers.good]
type = "openai"
base_url = "http://{addr}/v1"
api_key = "{UPSTREAM_KEY}"
[models.primary]
provider = "bad"
model = "fail-500"
fallbacks = ["backup"]
[models.backup]
provider = "good"
model = "ok"
[state]
redis_url = "{url}"
key_prefix = "{prefix}"
timeout_ms = 5000
"#,
        addr = fake.addr,
        url = redis.url,
        prefix = redis.prefix
    );
    let mut gws = start_n(2, &cfg, &clock).await;
    // (A hint published before an instance subscribed is lost: that instance
    // would learn of the failure on its own.)
    until("both instances subscribed", || async {
        redis.subscribers().await == 2
    })
    .await;
    let bad_calls = || {
        fake.requests()
            .iter()
            .filter(|r| r.body["model"] == "fail-500")
            .count()
    };
    let send = |gw: &Gw| {
        let url = gw.url("/v1/chat/completions");
        async move {
            let r = client()
                .post(url)
                .json(&json!({"model": "primary", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("send");
            let served = r
                .headers()
                .get("x-switchyard-provider")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (r.status().as_u16(), served)
        }
    };
    let state_of = |gw: &Gw| {
        let url = gw.url("/admin/health");
        async move {
            let v: Value = client()
                .get(url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            v["data"]
                .as_array()
                .and_then(|d| d.iter().find(|p| p["provider"] == "bad"))
                .map(|p| p["state"].as_str().unwrap_or_default().to_string())
                .unwrap_or_default()
        }
    };
    // A trips: two failed calls to `bad`, both answered by the fallback.
    for _ in 0..2 {
        assert_eq!(send(&gws[0]).await, (200, Some("good".to_string())));
    }
    assert_eq!(state_of(&gws[0]).await, "open");
    assert_eq!(bad_calls(), 2);
    // B hears of it without calling `bad` itself.
    until("the trip reaches the other instance", || async {
        state_of(&gws[1]).await == "open"
    })
    .await;
    for _ in 0..5 {
        assert_eq!(send(&gws[1]).await, (200, Some("good".to_string())));
    }
    assert_eq!(bad_calls(), 2, "B never called the deployment A saw failing");
    for g in &mut gws {
        g.stop().await;
    }
    redis.clean().await;
}

/// An experiment's ramp moves as one across instances (Redis, compare-and-set
/// per version of the ramp): a step earned on instance A's traffic is taken
/// by B without traffic of its own; a roll-back on B's failing candidate
/// pauses A; a reset on A restarts B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_advances_rolls_back_and_resets_on_every_instance() {
    let Some(redis) = RedisPrefix::new() else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let ramped = |upstream: &str| {
        shared_config(
            &fake,
            &redis,
            None,
            &format!(
                r#"
[models.ramped]
provider = "fake"
model = "{upstream}"
price = {{ input = 0.5, output = 2.5 }}

[experiments.ramp]
model = "fast"
candidates = [{{ model = "ramped" }}]
ramp = {{ steps = [0.2, 0.6, 1.0], every_secs = 60, min_requests = 5, max_error_rate = 0.2 }}
"#
            ),
        )
    };
    let mut gws = start_n(2, &ramped("ok"), &clock).await;
    let admin = |gw: &Gw, method: reqwest::Method, path: &str| {
        let req = client().request(method, gw.url(path)).bearer_auth(ADMIN);
        async move {
            let r = req.send().await.expect("send");
            assert_eq!(r.status().as_u16(), 200);
            r.json::<Value>().await.expect("json")
        }
    };
    let ramp_of = |gw: &Gw| {
        let f = admin(gw, reqwest::Method::GET, "/admin/experiments");
        async move {
            let v = f.await;
            let s = &v["data"][0];
            (
                s["ramp"]["step"].as_u64(),
                s["ramp"]["paused"].as_bool(),
                s["candidates"][0]["share"].as_f64(),
                s["ramp"]["history"]
                    .as_array()
                    .and_then(|h| h.last())
                    .map(|r| r["action"].as_str().unwrap_or_default().to_string()),
            )
        }
    };
    let traffic = |gw: &Gw, n: usize, tag: &'static str| {
        let url = gw.url("/v1/chat/completions");
        async move {
            for u in 0..n {
                client()
                    .post(&url)
                    .json(&json!({"model": "fast", "user": format!("{tag}-{u}"),
                                  "messages": [{"role": "user", "content": "hello there"}]}))
                    .send()
                    .await
                    .expect("send")
                    .bytes()
                    .await
                    .expect("body");
            }
        }
    };
    let tick = |gw: &Gw| {
        let st = gw.state();
        async move { switchyard::experiments::ramp::tick(&st).await }
    };
    tick(&gws[0]).await;
    tick(&gws[1]).await;
    assert_eq!(ramp_of(&gws[1]).await.2, Some(0.2));
    // A's healthy step, a minute on: A advances, B follows without traffic of its own.
    traffic(&gws[0], 100, "a").await;
    gws[0].flush_ledger().await;
    clock.fetch_add(61_000, Ordering::SeqCst);
    tick(&gws[0]).await;
    assert_eq!(ramp_of(&gws[0]).await.0, Some(1));
    tick(&gws[1]).await;
    assert_eq!(
        ramp_of(&gws[1]).await,
        (Some(1), Some(false), Some(0.6), Some("follow".to_string())),
        "B took A's step"
    );
    // B's candidate breaks: B rolls back, A pauses too.
    std::fs::write(gws[1].config_path(), ramped("fail-500")).expect("write");
    admin(&gws[1], reqwest::Method::POST, "/admin/reload").await;
    traffic(&gws[1], 60, "b").await;
    gws[1].flush_ledger().await;
    tick(&gws[1]).await;
    assert_eq!(ramp_of(&gws[1]).await.1, Some(true), "B rolled back");
    tick(&gws[0]).await;
    let a = ramp_of(&gws[0]).await;
    assert_eq!(
        (a.1, a.2),
        (Some(true), Some(0.0)),
        "A paused by B's roll-back: {a:?}"
    );
    // B's candidate is fixed; a reset on A (a second later) restarts the ramp on B.
    std::fs::write(gws[1].config_path(), ramped("ok")).expect("write");
    admin(&gws[1], reqwest::Method::POST, "/admin/reload").await;
    clock.fetch_add(1_000, Ordering::SeqCst);
    admin(&gws[0], reqwest::Method::POST, "/admin/experiments/ramp/reset").await;
    tick(&gws[1]).await;
    let b = ramp_of(&gws[1]).await;
    assert_eq!(
        (b.0, b.1, b.2),
        (Some(0), Some(false), Some(0.2)),
        "B restarted: {b:?}"
    );
    for g in &mut gws {
        g.stop().await;
    }
    redis.clean().await;
}

/// Routes without budget admission (embeddings) take the key's RPM and slot in
/// the middleware, through the same one-call script: they share the RPM bucket
/// with chat across instances, and a refusal carries the RPM headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_share_the_keys_rpm_with_chat_in_one_call_each() {
    let Some(redis) = RedisPrefix::new() else { return };
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let cfg = shared_config(&fake, &redis, Some(&schema.url), "");
    let mut gws = start_n(2, &cfg, &clock).await;
    let key = create_key(&gws[0], json!({"name": "embed", "rpm": 3, "max_concurrency": 2})).await;
    {
        let st = gws[1].state();
        until("the key reaches the other instance", || async {
            st.keys.lookup(&key).is_some()
        })
        .await;
    }
    const ON_PATH: &str = "switchyard_state_calls_total{path=\"request\"}";
    let before = metric_sum(&gws, ON_PATH).await;
    let embed = |gw: &Gw| {
        let req = client()
            .post(gw.url("/v1/embeddings"))
            .bearer_auth(&key)
            .json(&json!({"model": "embed", "input": "hello"}));
        async move {
            let r = req.send().await.expect("send");
            let status = r.status().as_u16();
            let remaining = r
                .headers()
                .get("x-ratelimit-remaining-requests")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            r.bytes().await.expect("body");
            (status, remaining)
        }
    };
    assert_eq!(embed(&gws[0]).await, (200, Some("2".into())));
    assert_eq!(chat(&gws[1].base, Some(&key), 10).await.0, 200);
    assert_eq!(embed(&gws[1]).await, (200, Some("0".into())));
    assert_eq!(
        embed(&gws[0]).await,
        (429, Some("0".into())),
        "the fourth in a minute"
    );
    assert_eq!(
        metric_sum(&gws, ON_PATH).await - before,
        4,
        "one Redis call per request"
    );
    for g in &mut gws {
        g.stop().await;
    }
    redis.clean().await;
    schema.drop().await;
}

/// What a burst leaves behind in Redis once its follow-up writes are applied
/// (the write queue folds a batch's slot releases, charges and releases into
/// one write per hash, and each hash is read and written once per batch): no
/// concurrency slot and no reservation is left held, the shared spend is the
/// ledger's to the cent's billionth, and, with the clock frozen, the key's TPM
/// bucket is down by exactly the tokens the ledger says were used.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_leaves_no_slot_or_reservation_and_spend_and_tokens_match_the_ledger() {
    let Some(redis) = RedisPrefix::new() else { return };
    let Some(schema) = Schema::new().await else { return };
    let fake = start_fake().await;
    let clock = Arc::new(AtomicI64::new(now_ms()));
    let extra = "[budgets]\nmode = \"estimate\"\ndaily = 1000.0\n";
    let cfg = shared_config(&fake, &redis, Some(&schema.url), extra);
    let mut gws = start_n(2, &cfg, &clock).await;
    let tpm = 100_000_000u64;
    let key = create_key(
        &gws[0],
        json!({"name": "burst", "rpm": 100000, "tpm": tpm, "max_concurrency": 1000, "daily_budget": 500.0}),
    )
    .await;
    {
        let st = gws[1].state();
        until("the key reaches the other instance", || async {
            st.keys.lookup(&key).is_some()
        })
        .await;
    }
    let bases: Vec<String> = gws.iter().map(|g| g.base.clone()).collect();
    let results = round_robin(&bases, 300, Some(&key), 1000).await;
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    settled(&gws).await;
    for g in &mut gws {
        g.stop().await;
    }
    let mut c = redis.conn().await;
    let (mut key_hashes, mut budget_hashes) = (0, 0);
    for k in redis.keys().await {
        let h: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        if k.contains(":rl:") {
            key_hashes += 1;
            assert!(
                !h.keys().any(|f| f.starts_with("c:")),
                "a concurrency slot is still held in {k}: {h:?}"
            );
            let level: f64 = h.get("tl").and_then(|v| v.parse().ok()).expect("TPM level");
            let (rows, tokens): (i64, i64) = sqlx::query_as(&format!(
                "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0)::bigint FROM {}.ledger",
                schema.name
            ))
            .fetch_one(&schema.admin)
            .await
            .expect("ledger tokens");
            assert_eq!(rows, 300);
            assert!(
                (tpm as f64 - level - tokens as f64).abs() < 1e-6,
                "TPM bucket at {level}, the ledger used {tokens} of {tpm}"
            );
        }
        if k.contains(":bud:") {
            budget_hashes += 1;
            assert!(
                !h.keys().any(|f| f.starts_with("r:")),
                "a reservation is still held in {k}: {h:?}"
            );
            let spent: f64 = h.get("s").and_then(|v| v.parse().ok()).expect("spend");
            let (_, ledger) = pg_spend(&schema).await;
            assert!(
                (spent - ledger).abs() < 1e-9,
                "{k}: Redis spend {spent}, ledger {ledger}"
            );
        }
    }
    assert_eq!(key_hashes, 1, "one hash for the key");
    assert_eq!(budget_hashes, 2, "the key's and the global daily budget");
    redis.clean().await;
    schema.drop().await;
}

/// Admissions queued while a call is in flight share the next script call, and
/// each stays all or nothing and exact: 50 admissions queued at one instant (joined
/// on a current-thread runtime, so all are queued before the batcher runs) against
/// RPM 30, 40 slots and a budget that fits 40 go out in ONE call; exactly 30 are
/// admitted, 20 refused by RPM, and Redis holds exactly the 30 takes. Then 10
/// admissions whose requesters hang up while they wait (queued, then dropped) are
/// given back: slots, RPM and reservation as before.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_admissions_share_one_call_and_stay_exact() {
    use std::future::Future;
    use switchyard::accounting::budget::{Limits, Scope};
    use switchyard::state::shared::{AdmitRefusal, Ask, BudgetAsk, KeyAsk, Shared};

    let Some(redis) = RedisPrefix::new() else { return };
    let settings = switchyard::config::state::StateSettings {
        redis_url: Some(switchyard::config::Secret::new(redis.url.clone())),
        key_prefix: redis.prefix.clone(),
        timeout: std::time::Duration::from_secs(10),
        ..Default::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let sh = Shared::connect(&settings, stop.clone())
        .await
        .expect("connect")
        .expect("a Redis URL is configured");
    let scopes = vec![(
        Scope::Global,
        Limits {
            daily: Some(5.0),
            monthly: None,
        },
    )];
    let keys = sh.budget_keys(&scopes, 7, 0);
    let now = 1_000_000_000;
    let ask = |id: &'static str, rpm: u64, slots: u32| KeyAsk {
        key_id: id,
        now_ms: now,
        rpm: Some(rpm),
        slot: Some(slots),
        tpm: None,
    };
    let budget = || BudgetAsk {
        scopes: &scopes,
        keys: &keys,
        ask: Ask::Fixed(0.125),
    };
    let (calls0, _) = sh.calls();
    let admissions0 = sh.admissions();
    let asks: Vec<KeyAsk> = (0..50).map(|_| ask("k1", 30, 40)).collect();
    let results =
        futures_util::future::join_all(asks.iter().map(|a| sh.admit(Some(a), Some(budget())))).await;
    assert_eq!(sh.calls().0 - calls0, 1, "50 queued admissions in one call");
    assert_eq!(sh.admissions() - admissions0, 50);
    let admitted = results
        .iter()
        .filter(|r| matches!(r, Some(Ok(a)) if a.slot && a.budget == Some((0, 0.125))))
        .count();
    let by_rpm = results
        .iter()
        .filter(|r| matches!(r, Some(Err(AdmitRefusal::Rpm(_)))))
        .count();
    assert_eq!((admitted, by_rpm), (30, 20), "{results:?}");
    // In queue order: the first 30 took one request each, the rest were refused.
    for (i, r) in results.iter().enumerate() {
        match r {
            Some(Ok(a)) => assert_eq!(a.rpm.map(|s| s.remaining), Some(29 - i as u64)),
            _ => assert!(i >= 30, "admission {i}: {r:?}"),
        }
    }
    let mut c = redis.conn().await;
    let bucket = format!("{{{}}}:rl:k1", redis.prefix);
    let field = |f: String| redis::cmd("HGET").arg(&bucket).arg(f).to_owned();
    let slots: Option<u64> = field(format!("c:{}", sh.instance()))
        .query_async(&mut c)
        .await
        .expect("HGET");
    assert_eq!(slots, Some(30));
    let reserved = |c: &mut redis::aio::MultiplexedConnection| {
        let cmd = redis::cmd("HGET")
            .arg(&keys[0].0)
            .arg(format!("r:{}", sh.instance()))
            .to_owned();
        let mut c = c.clone();
        async move { cmd.query_async::<Option<f64>>(&mut c).await.expect("HGET") }
    };
    assert_eq!(reserved(&mut c).await, Some(3.75));

    // Ten more on a fresh key, queued and then dropped before their answer.
    let asks: Vec<KeyAsk> = (0..10).map(|_| ask("k2", 10, 10)).collect();
    let mut pending: Vec<_> = asks
        .iter()
        .map(|a| Box::pin(sh.admit(Some(a), Some(budget()))))
        .collect();
    std::future::poll_fn(|cx| {
        for f in pending.iter_mut() {
            assert!(f.as_mut().poll(cx).is_pending());
        }
        std::task::Poll::Ready(())
    })
    .await;
    drop(pending);
    // The batcher is sequential: once a later admission is answered, the dropped
    // ones' batch was answered too and its give-backs are queued; then flush them.
    let later = ask("k3", 10, 10);
    assert!(matches!(sh.admit(Some(&later), None).await, Some(Ok(_))));
    assert!(sh.flush(std::time::Duration::from_secs(10)).await);
    let bucket2 = format!("{{{}}}:rl:k2", redis.prefix);
    let (rl, slot2): (Option<f64>, Option<u64>) = redis::cmd("HMGET")
        .arg(&bucket2)
        .arg("rl")
        .arg(format!("c:{}", sh.instance()))
        .query_async(&mut c)
        .await
        .expect("HMGET");
    assert_eq!(rl, Some(10.0), "the dropped admissions' RPM given back");
    assert_eq!(slot2, None, "their slots given back");
    assert_eq!(
        reserved(&mut c).await,
        Some(3.75),
        "their reservations given back"
    );
    stop.cancel();
    redis.clean().await;
}
