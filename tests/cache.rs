//! The exact response cache over real sockets: miss then hit (one upstream
//! call), bypass headers, temperature, TTL expiry, ledger rows of hits.

mod common;

use common::*;

const CACHE_ON: &str = "[cache]\nexact = true\nttl_secs = 1\n";

async fn post(gw: &Gw, body: &serde_json::Value, extra: &[(&str, &str)]) -> (String, serde_json::Value) {
    let mut rq = client().post(gw.url("/v1/chat/completions")).json(body);
    for (k, v) in extra {
        rq = rq.header(*k, *v);
    }
    let r = rq.send().await.expect("send");
    assert_eq!(r.status(), 200);
    let h = r
        .headers()
        .get("x-switchyard-cache")
        .expect("x-switchyard-cache on every response")
        .to_str()
        .unwrap()
        .to_string();
    (h, r.json().await.expect("json"))
}

fn req(text: &str) -> serde_json::Value {
    serde_json::json!({"model": "fast", "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn miss_then_hit_then_bypass_and_ledger_saving() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, CACHE_ON)).await;
    let (h1, b1) = post(&gw, &req("hello"), &[]).await;
    assert_eq!(h1, "miss");
    let (h2, b2) = post(&gw, &req("hello"), &[]).await;
    assert_eq!(h2, "hit");
    assert_eq!(b1, b2, "a hit replays the original answer");
    assert_eq!(fake.hits(), 1, "the hit made no upstream call");
    let (h3, _) = post(&gw, &req("other"), &[]).await;
    assert_eq!(h3, "miss");
    let (h4, _) = post(&gw, &req("hello"), &[("cache-control", "no-cache")]).await;
    assert_eq!(h4, "bypass");
    let (h5, _) = post(&gw, &req("hello"), &[("x-switchyard-cache", "bypass")]).await;
    assert_eq!(h5, "bypass");
    let mut hot = req("hello");
    hot["temperature"] = serde_json::json!(0.8);
    let (h6, _) = post(&gw, &hot, &[]).await;
    assert_eq!(h6, "bypass", "temperature > 0 is not cached by default");
    assert_eq!(fake.hits(), 5);

    gw.stop().await;
    use sqlx::{Connection, Row as _};
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&gw.ledger)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    let rows = sqlx::query("SELECT status, cost_usd, cache_hit, saved_usd FROM ledger ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    let first_cost: f64 = rows[0].get(1);
    assert!(first_cost > 0.0);
    let hits: Vec<_> = rows.iter().filter(|r| r.get::<i64, _>(2) == 1).collect();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].get::<i64, _>(0), 200);
    assert_eq!(hits[0].get::<f64, _>(1), 0.0);
    assert_eq!(
        hits[0].get::<f64, _>(3),
        first_cost,
        "saved = the original call's cost"
    );

    let report = switchyard::accounting::report::report(
        &gw.ledger,
        switchyard::accounting::report::GroupBy::parse("model").unwrap(),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(report.iter().map(|r| r.cache_hits).sum::<i64>(), 1);
    assert_eq!(report.iter().map(|r| r.saved_usd).sum::<f64>(), first_cost);
}

#[tokio::test]
async fn entries_expire_after_ttl() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, CACHE_ON)).await;
    assert_eq!(post(&gw, &req("ttl"), &[]).await.0, "miss");
    assert_eq!(post(&gw, &req("ttl"), &[]).await.0, "hit");
    // ttl_secs = 1: poll until the entry is stale (at most 10 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (h, _) = post(&gw, &req("ttl"), &[]).await;
        if h == "miss" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "entry never expired");
    }
    gw.stop().await;
}

#[tokio::test]
async fn off_by_default() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    assert_eq!(post(&gw, &req("x"), &[]).await.0, "bypass");
    assert_eq!(post(&gw, &req("x"), &[]).await.0, "bypass");
    assert_eq!(fake.hits(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn one_key_never_gets_another_keys_cached_answer() {
    const ADMIN: &str = "admin-cache-test";
    let fake = start_fake().await;
    let cfg = with_admin_key(
        &config_for(fake.addr, "[cache]\nexact = true\nttl_secs = 600\n"),
        ADMIN,
    );
    let mut gw = start_gateway(&cfg).await;
    let mut keys = Vec::new();
    for name in ["team-a", "team-b"] {
        let r = client()
            .post(gw.url("/admin/keys"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"name": name}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.expect("json");
        keys.push(v["key"].as_str().expect("secret").to_string());
    }
    let ask = |key: String| {
        let url = gw.url("/v1/chat/completions");
        async move {
            let r = client()
                .post(url)
                .bearer_auth(key)
                .json(&req("the same question"))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
            r.headers()
                .get("x-switchyard-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        }
    };
    assert_eq!(ask(keys[0].clone()).await, "miss");
    assert_eq!(ask(keys[0].clone()).await, "hit");
    assert_eq!(fake.hits(), 1);
    assert_eq!(
        ask(keys[1].clone()).await,
        "miss",
        "key B must not see key A's answer"
    );
    assert_eq!(fake.hits(), 2, "key B's request went upstream");
    assert_eq!(ask(keys[1].clone()).await, "hit");
    assert_eq!(fake.hits(), 2);
    gw.stop().await;
}

/// The SSE body and cache header of a streamed chat completion.
async fn post_stream(gw: &Gw, body: &serde_json::Value) -> (String, Vec<u8>) {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let h = r
        .headers()
        .get("x-switchyard-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (h, r.bytes().await.expect("body").to_vec())
}

/// A completed stream is cached and replayed as a stream with the same events;
/// streamed and non-streamed requests never share an entry; a stream that
/// failed mid-way is not cached.
#[tokio::test]
async fn streams_are_replayed_with_the_same_events() {
    let fake = start_fake().await;
    let extra = "[cache]\nexact = true\nttl_secs = 300\n\n[models.broken]\nprovider = \"fake\"\nmodel = \"drop-mid\"\n";
    let mut gw = start_gateway(&config_for(fake.addr, extra)).await;
    let mut s = req("stream me");
    s["stream"] = serde_json::json!(true);
    s["stream_options"] = serde_json::json!({"include_usage": true});
    let (h1, b1) = post_stream(&gw, &s).await;
    assert_eq!(h1, "miss");
    let (h2, b2) = post_stream(&gw, &s).await;
    assert_eq!(h2, "hit");
    assert_eq!(fake.hits(), 1, "the replay made no upstream call");
    assert_eq!(b1, b2, "the replayed stream carries the original's events");
    let text = String::from_utf8_lossy(&b2).to_string();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(
        text.matches("data: ").count() > 3,
        "several events, not one blob: {text}"
    );
    // The same messages without `stream`: another entry.
    let (h3, _) = post(&gw, &req("stream me"), &[]).await;
    assert_eq!(h3, "miss");
    // A stream that breaks half-way is not kept.
    let mut broken = serde_json::json!({"model": "broken", "stream": true,
        "messages": [{"role": "user", "content": "x"}]});
    let (h4, _) = post_stream(&gw, &broken).await;
    assert_eq!(h4, "miss");
    broken["messages"][0]["content"] = serde_json::json!("x");
    let (h5, _) = post_stream(&gw, &broken).await;
    assert_eq!(h5, "miss", "a failed stream was not cached");
    let rows = gw.stop_and_rows().await;
    let hit = rows
        .iter()
        .find(|r| r.cost_usd == Some(0.0) && r.stream)
        .expect("the hit's row");
    assert_eq!(hit.status, 200);
    assert!(rows.iter().filter(|r| r.stream).count() >= 4);
}

/// `/v1/messages` answers are cached in Anthropic's format, apart from chat
/// completions of the same conversation.
#[tokio::test]
async fn anthropic_messages_are_cached_in_their_own_format() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, CACHE_ON)).await;
    let send = || async {
        let r = client()
            .post(gw.url("/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .json(&serde_json::json!({"model": "fast", "max_tokens": 50,
                "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let h = r
            .headers()
            .get("x-switchyard-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (h, r.json::<serde_json::Value>().await.expect("json"))
    };
    let (h1, b1) = send().await;
    assert_eq!(h1, "miss");
    assert_eq!(b1["type"], "message", "{b1}");
    let (h2, b2) = send().await;
    assert_eq!(h2, "hit");
    assert_eq!(b1, b2);
    assert_eq!(fake.hits(), 1);
    let mut chat = req("hello");
    chat["max_tokens"] = serde_json::json!(50);
    let (h3, b3) = post(&gw, &chat, &[]).await;
    assert_eq!(
        h3, "miss",
        "chat completions do not get the Anthropic-format answer"
    );
    assert_eq!(b3["object"], "chat.completion");
    let rows = gw.stop_and_rows().await;
    assert!(rows
        .iter()
        .any(|r| r.endpoint == "messages" && r.cost_usd == Some(0.0)));
}

/// `/admin/spend` shows what the response cache and the providers' prompt
/// caches saved: one proxied call (400 of its 1,000 prompt tokens read from the
/// provider's cache) and one hit.
#[tokio::test]
async fn admin_spend_shows_the_savings() {
    let fake = start_fake().await;
    let admin = "admin-key-for-cache-tests-1f9b";
    let mut gw = start_gateway(&with_admin_key(&config_for(fake.addr, CACHE_ON), admin)).await;
    let (h1, _) = post(&gw, &req("save me"), &[]).await;
    let (h2, _) = post(&gw, &req("save me"), &[]).await;
    assert_eq!((h1.as_str(), h2.as_str()), ("miss", "hit"));
    gw.flush_ledger().await;
    let one_call = 600.0 * 2e-6 + 400.0 * 0.5e-6 + 200.0 * 10e-6;
    let v: serde_json::Value = client()
        .get(gw.url("/admin/spend?by=model"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let t = &v["total"];
    assert_eq!(t["cache_hits"], 1, "{v}");
    let close = |a: &serde_json::Value, b: f64| (a.as_f64().unwrap_or(-1.0) - b).abs() < 1e-9;
    assert!(close(&t["response_cache_saved_usd"], one_call), "{v}");
    assert!(close(&t["cost_usd"], one_call), "{v}");
    // 400 cached tokens at $2.0 - $0.5 per million, the hit's copy not counted again.
    assert!(close(&t["cached_input_saved_usd"], 400.0 * 1.5e-6), "{v}");
    let row = &v["data"][0];
    assert_eq!(row["group"], "fast");
    assert_eq!(row["cached_tokens"], 400);
    gw.stop().await;
}

/// `/v1/messages` streams are cached as the client got them (Anthropic SSE)
/// and replayed with the same events; chat-completion streams of the same
/// conversation are another entry.
#[tokio::test]
async fn anthropic_message_streams_are_replayed_as_anthropic_sse() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "[cache]\nexact = true\nttl_secs = 300\n")).await;
    let send = || async {
        let r = client()
            .post(gw.url("/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .json(
                &serde_json::json!({"model": "fast", "max_tokens": 50, "stream": true,
                "messages": [{"role": "user", "content": "stream, Anthropic style"}]}),
            )
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let h = r
            .headers()
            .get("x-switchyard-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (
            h,
            String::from_utf8(r.bytes().await.expect("body").to_vec()).expect("utf-8"),
        )
    };
    let (h1, b1) = send().await;
    assert_eq!(h1, "miss");
    assert!(
        b1.contains("event: message_start") && b1.contains("event: message_stop"),
        "{b1}"
    );
    let (h2, b2) = send().await;
    assert_eq!(h2, "hit");
    assert_eq!(fake.hits(), 1, "the replay made no upstream call");
    assert_eq!(b1, b2, "the replay carries the original's events, byte for byte");
    let mut chat = req("stream, Anthropic style");
    chat["stream"] = serde_json::json!(true);
    chat["max_tokens"] = serde_json::json!(50);
    let (h3, b3) = post_stream(&gw, &chat).await;
    assert_eq!(h3, "miss", "chat streams are another entry");
    assert!(String::from_utf8_lossy(&b3).contains("chat.completion.chunk"));
    let rows = gw.stop_and_rows().await;
    assert!(rows
        .iter()
        .any(|r| r.endpoint == "messages" && r.stream && r.cost_usd == Some(0.0)));
}

/// An answer a fallback served is not stored under the first model's key
/// (nor at all): the next identical request goes upstream again.
#[tokio::test]
async fn fallback_answers_are_not_cached() {
    let fake = start_fake().await;
    let extra = "[cache]\nexact = true\nttl_secs = 300\n\n[models.flaky]\nprovider = \"fake\"\nmodel = \"fail-500\"\nfallbacks = [\"fast\"]\n";
    let cfg = config_for(fake.addr, extra).replace("max_attempts = 1", "max_attempts = 3");
    let mut gw = start_gateway(&cfg).await;
    let ask = || async {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&serde_json::json!({"model": "flaky",
                "messages": [{"role": "user", "content": "who answers?"}]}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (h("x-switchyard-cache"), h("x-switchyard-model"))
    };
    let (c1, m1) = ask().await;
    assert_eq!((c1.as_str(), m1.as_str()), ("miss", "fast"));
    let upstream_after_first = fake.hits();
    assert!(
        upstream_after_first >= 2,
        "the first model failed, the fallback answered"
    );
    let (c2, m2) = ask().await;
    assert_eq!(
        (c2.as_str(), m2.as_str()),
        ("miss", "fast"),
        "not served from the cache"
    );
    assert_eq!(fake.hits(), 2 * upstream_after_first);
    // What `fast` answers directly is cached as usual.
    let direct = serde_json::json!({"model": "fast",
        "messages": [{"role": "user", "content": "who answers?"}]});
    assert_eq!(post(&gw, &direct, &[]).await.0, "miss");
    assert_eq!(post(&gw, &direct, &[]).await.0, "hit");
    gw.stop().await;
}

/// Non-stream `/v1/responses` answers are cached (keyed by the body as sent);
/// streams and requests that build on stored state (`previous_response_id`)
/// are not.
#[tokio::test]
async fn responses_are_cached_when_self_contained() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "[cache]\nexact = true\nttl_secs = 300\n")).await;
    let send = |body: serde_json::Value| {
        let url = gw.url("/v1/responses");
        async move {
            let r = client().post(url).json(&body).send().await.expect("send");
            assert_eq!(r.status(), 200);
            let h = r
                .headers()
                .get("x-switchyard-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (h, r.bytes().await.expect("body"))
        }
    };
    let body = serde_json::json!({"model": "fast", "input": "hello, responses"});
    let (h1, b1) = send(body.clone()).await;
    assert_eq!(h1, "miss");
    let (h2, b2) = send(body.clone()).await;
    assert_eq!(h2, "hit");
    assert_eq!(b1, b2);
    assert_eq!(fake.hits(), 1);
    let v: serde_json::Value = serde_json::from_slice(&b1).expect("json");
    assert_eq!(v["object"], "response", "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let mut follow = body.clone();
    follow["previous_response_id"] = serde_json::json!(id);
    assert_eq!(send(follow.clone()).await.0, "bypass");
    assert_eq!(send(follow).await.0, "bypass");
    let mut stream = body.clone();
    stream["stream"] = serde_json::json!(true);
    assert_eq!(send(stream).await.0, "bypass");
    assert_eq!(fake.hits(), 4);
    let rows = gw.stop_and_rows().await;
    assert!(rows
        .iter()
        .any(|r| r.endpoint == "responses" && r.cost_usd == Some(0.0)));
}

/// A hit is looked up before budget admission: with the day's budget spent,
/// a cached answer is still served (it costs nothing), while a request that
/// needs an upstream call is refused.
#[tokio::test]
async fn hits_need_no_budget() {
    let fake = start_fake().await;
    let one_call = 600.0 * 2e-6 + 400.0 * 0.5e-6 + 200.0 * 10e-6;
    let extra = format!(
        "[cache]\nexact = true\nttl_secs = 300\n\n[budgets]\ndaily = {}\n",
        one_call * 0.5
    );
    let mut gw = start_gateway(&config_for(fake.addr, &extra)).await;
    let mut q = req("budget question");
    q["max_tokens"] = serde_json::json!(10);
    // Admitted on its small estimate; the fake's answer costs twice the budget.
    assert_eq!(post(&gw, &q, &[]).await.0, "miss");
    assert_eq!(
        post(&gw, &q, &[]).await.0,
        "hit",
        "served from the cache, budget spent"
    );
    let mut other = req("another question");
    other["max_tokens"] = serde_json::json!(10);
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&other)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_client_error(), "{}", r.status());
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(v["error"]["message"].as_str().is_some(), "{v}");
    assert_eq!(fake.hits(), 1);
    gw.stop().await;
}
