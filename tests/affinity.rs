//! Cache-aware routing: requests of one session (or sharing a long prefix) go to
//! the same deployment while it is healthy, so the provider's prompt cache hits;
//! they move together when it fails and come back when it recovers.

mod common;

use common::services::*;
use common::*;
use serde_json::json;

struct Three {
    fakes: Vec<Fake>,
    relays: Vec<Relay>,
}

async fn three() -> Three {
    let mut fakes = Vec::new();
    let mut relays = Vec::new();
    for _ in 0..3 {
        let f = start_fake().await;
        relays.push(Relay::start(f.addr).await);
        fakes.push(f);
    }
    Three { fakes, relays }
}

fn config(t: &Three) -> String {
    let mut s = String::from(
        "[resilience]\nmax_attempts = 3\nbreaker_consecutive_failures = 1\nbreaker_cooldown_ms = 50\nbreaker_max_cooldown_ms = 200\n",
    );
    for (i, r) in t.relays.iter().enumerate() {
        s.push_str(&format!(
            "\n[providers.p{i}]\ntype = \"openai\"\nbase_url = \"http://{}/v1\"\napi_key = \"{UPSTREAM_KEY}\"\nconnect_timeout_ms = 1000\ntimeout_ms = 5000\n",
            r.addr
        ));
    }
    s.push_str(
        "\n[models.m]\ndeployments = [{ provider = \"p0\", model = \"ok\" }, { provider = \"p1\", model = \"ok\" }, { provider = \"p2\", model = \"ok\" }]\n",
    );
    s
}

async fn send(gw: &Gw, session: Option<&str>, first: &str) -> u16 {
    let mut r = client().post(gw.url("/v1/chat/completions")).json(&json!({
        "model": "m",
        "messages": [{"role": "system", "content": first}, {"role": "user", "content": "hi"}]
    }));
    if let Some(s) = session {
        r = r.header("x-switchyard-session", s);
    }
    let r = r.send().await.expect("send");
    let status = r.status().as_u16();
    r.bytes().await.expect("body");
    status
}

fn hits(t: &Three) -> Vec<usize> {
    t.fakes.iter().map(Fake::hits).collect()
}

fn delta(before: &[usize], after: &[usize]) -> Vec<usize> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stays_on_one_deployment_moves_on_failure_and_comes_back() {
    let t = three().await;
    let mut gw = start_gateway(&config(&t)).await;
    for _ in 0..100 {
        assert_eq!(send(&gw, Some("conv-7"), "Be brief.").await, 200);
    }
    let h = hits(&t);
    let home = h
        .iter()
        .position(|n| *n == 100)
        .unwrap_or_else(|| panic!("spread: {h:?}"));
    assert_eq!(h.iter().sum::<usize>(), 100);

    // The home deployment goes away: the session moves, all of it to one other.
    t.relays[home].cut();
    let before = hits(&t);
    for _ in 0..20 {
        assert_eq!(send(&gw, Some("conv-7"), "Be brief.").await, 200);
    }
    let d = delta(&before, &hits(&t));
    assert_eq!(d[home], 0);
    assert!(
        d.contains(&20),
        "one other deployment took the whole session: {d:?}"
    );

    // It comes back: once its breaker closes again, so does the session.
    t.relays[home].restore();
    until("the session returns home", || async {
        let b = hits(&t)[home];
        send(&gw, Some("conv-7"), "Be brief.").await == 200 && hits(&t)[home] > b
    })
    .await;
    let before = hits(&t);
    for _ in 0..20 {
        assert_eq!(send(&gw, Some("conv-7"), "Be brief.").await, 200);
    }
    assert_eq!(delta(&before, &hits(&t))[home], 20);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_shared_prefix_keeps_its_deployment_and_other_traffic_spreads() {
    let t = three().await;
    let mut gw = start_gateway(&config(&t)).await;
    let long = "You are the support agent of a large shop. ".repeat(200);
    for _ in 0..30 {
        assert_eq!(send(&gw, None, &long).await, 200);
    }
    let h = hits(&t);
    assert!(h.contains(&30), "one deployment for one prefix: {h:?}");
    let before = h;
    for i in 0..60 {
        assert_eq!(send(&gw, None, &format!("Short prompt {i}.")).await, 200);
    }
    let d = delta(&before, &hits(&t));
    assert!(
        d.iter().filter(|n| **n > 0).count() >= 2,
        "without a session or a long prefix, requests are balanced: {d:?}"
    );
    gw.stop().await;
}

/// OpenAI upstreams with `prompt_cache_key = true` get a `prompt_cache_key` from
/// the session when the client sent none (the same for every request of the
/// session, another for another session); a client's own key is forwarded as sent.
#[tokio::test]
async fn openai_upstreams_get_a_prompt_cache_key_per_session() {
    let fake = start_fake().await;
    let cfg = config_for(fake.addr, "").replace(
        "connect_timeout_ms = 1000\n",
        "connect_timeout_ms = 1000\nprompt_cache_key = true\n",
    );
    let mut gw = start_gateway(&cfg).await;
    let send = |session: &'static str, body: serde_json::Value| {
        let url = gw.url("/v1/chat/completions");
        async move {
            let r = client()
                .post(url)
                .header("x-switchyard-session", session)
                .json(&body)
                .send()
                .await
                .expect("send");
            assert_eq!(r.status().as_u16(), 200);
            r.bytes().await.expect("body");
        }
    };
    let plain = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]});
    send("conv-1", plain.clone()).await;
    send("conv-1", plain.clone()).await;
    send("conv-2", plain.clone()).await;
    let mut own = plain.clone();
    own["prompt_cache_key"] = json!("client-chosen");
    send("conv-1", own).await;
    let keys: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.body["prompt_cache_key"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(keys.len(), 4);
    assert!(keys[0].starts_with("sy-"), "{keys:?}");
    assert_eq!(keys[0], keys[1], "one session, one key");
    assert_ne!(keys[0], keys[2], "another session, another key");
    assert_eq!(keys[3], "client-chosen");
    gw.stop().await;
}
