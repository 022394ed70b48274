//! The response cache in Redis (`[cache] store = "redis"`): two gateway
//! instances on the real Redis in `REDIS_URL` (each test under its own key
//! prefix) share their cached answers; keys stay apart across instances;
//! entries expire; the size bounds hold; a Redis outage turns lookups into
//! misses while requests are still served. Without `REDIS_URL` every test
//! prints why and returns.

mod common;

use common::services::*;
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key-for-redis-cache-tests-8c2a";

fn cfg(fake: &Fake, redis: &RedisPrefix, cache: &str) -> String {
    // A generous call timeout: on a loaded machine a slow answer must not be
    // mistaken for an outage (the outage test cuts the connection instead).
    with_admin_key(
        &config_for(
            fake.addr,
            &format!(
                "[cache]\nexact = true\nstore = \"redis\"\n{cache}\n[state]\nredis_url = \"{}\"\nkey_prefix = \"{}\"\ntimeout_ms = 5000\n",
                redis.url, redis.prefix
            ),
        ),
        ADMIN,
    )
}

async fn ask(gw: &Gw, key: Option<&str>, body: &Value) -> (String, Value) {
    let mut rq = client().post(gw.url("/v1/chat/completions")).json(body);
    if let Some(k) = key {
        rq = rq.bearer_auth(k);
    }
    let r = rq.send().await.expect("send");
    assert_eq!(r.status(), 200);
    let h = r
        .headers()
        .get("x-switchyard-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (h, r.json().await.expect("json"))
}

fn q(text: &str) -> Value {
    json!({"model": "fast", "messages": [{"role": "user", "content": text}]})
}

async fn entries(redis: &RedisPrefix) -> usize {
    redis
        .keys()
        .await
        .iter()
        .filter(|k| k.contains(":cache:e:"))
        .count()
}

/// Waits until `n` entries are stored (stores run in the background).
async fn stored(redis: &RedisPrefix, n: usize) {
    until(&format!("{n} cache entries in Redis"), || async {
        entries(redis).await >= n
    })
    .await;
}

async fn create_key(gw: &Gw, name: &str) -> String {
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": name}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    v["key"].as_str().expect("secret").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cached_through_one_instance_is_a_hit_on_another() {
    let Some(redis) = RedisPrefix::new() else { return };
    let fake = start_fake().await;
    let c = cfg(&fake, &redis, "ttl_secs = 600\n");
    let mut a = start_gateway(&c).await;
    let mut b = start_gateway(&c).await;
    let (h1, b1) = ask(&a, None, &q("shared question")).await;
    assert_eq!(h1, "miss");
    stored(&redis, 1).await;
    let (h2, b2) = ask(&b, None, &q("shared question")).await;
    assert_eq!(h2, "hit", "B serves what A cached");
    assert_eq!(b1, b2);
    assert_eq!(fake.hits(), 1, "one upstream call for both instances");
    // Streams too, chunk by chunk.
    let mut s = q("shared stream");
    s["stream"] = json!(true);
    let stream = |gw: &Gw| {
        let url = gw.url("/v1/chat/completions");
        let s = s.clone();
        async move {
            let r = client().post(url).json(&s).send().await.expect("send");
            assert_eq!(r.status(), 200);
            let h = r.headers()["x-switchyard-cache"]
                .to_str()
                .unwrap_or("")
                .to_string();
            (h, r.bytes().await.expect("body"))
        }
    };
    let (h3, s1) = stream(&a).await;
    assert_eq!(h3, "miss");
    stored(&redis, 2).await;
    let (h4, s2) = stream(&b).await;
    assert_eq!(h4, "hit");
    assert_eq!(s1, s2, "the same events");
    assert_eq!(fake.hits(), 2);
    let rows = b.stop_and_rows().await;
    let hits: Vec<_> = rows.iter().filter(|r| r.cost_usd == Some(0.0)).collect();
    assert_eq!(hits.len(), 2, "B's two hits, cost 0");
    a.stop().await;
    redis.clean().await;
}

/// Per-key namespaces hold across instances: team B on instance B never gets
/// team A's answer cached on instance A; team A's own key on B does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stay_apart_across_instances() {
    let Some(redis) = RedisPrefix::new() else { return };
    let fake = start_fake().await;
    let c = cfg(&fake, &redis, "ttl_secs = 600\n");
    let mut a = start_gateway(&c).await;
    let mut b = start_gateway(&c).await;
    // Each instance has its own key store here (SQLite): the same names on both.
    let team_a_on_a = create_key(&a, "team-a").await;
    let team_a_on_b = create_key(&b, "team-a").await;
    let team_b_on_b = create_key(&b, "team-b").await;
    assert_eq!(
        ask(&a, Some(&team_a_on_a), &q("the same question")).await.0,
        "miss"
    );
    stored(&redis, 1).await;
    assert_eq!(
        ask(&b, Some(&team_b_on_b), &q("the same question")).await.0,
        "miss",
        "team B must not see team A's answer"
    );
    assert_eq!(fake.hits(), 2);
    assert_eq!(
        ask(&b, Some(&team_a_on_b), &q("the same question")).await.0,
        "hit"
    );
    assert_eq!(fake.hits(), 2);
    a.stop().await;
    b.stop().await;
    redis.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_and_the_bounds_hold() {
    let Some(redis) = RedisPrefix::new() else { return };
    let fake = start_fake().await;
    let mut gw = start_gateway(&cfg(&fake, &redis, "ttl_secs = 1\n")).await;
    assert_eq!(ask(&gw, None, &q("short-lived")).await.0, "miss");
    stored(&redis, 1).await;
    assert_eq!(ask(&gw, None, &q("short-lived")).await.0, "hit");
    until("the entry expired", || async {
        ask(&gw, None, &q("short-lived")).await.0 == "miss"
    })
    .await;
    gw.stop().await;
    redis.clean().await;

    // At most 2 entries, and no entry over 600 bytes (a fake answer is about 400;
    // a long question makes the key alone larger than that).
    let mut gw = start_gateway(&cfg(
        &fake,
        &redis,
        "ttl_secs = 600\nmax_entries = 2\nmax_entry_bytes = 600\nmax_bytes = 100000\n",
    ))
    .await;
    for i in 0..4 {
        assert_eq!(ask(&gw, None, &q(&format!("question {i}"))).await.0, "miss");
        stored(&redis, (i + 1).min(2)).await;
    }
    let mut conn = redis.conn().await;
    let idx = format!("{{{}}}:cache:idx", redis.prefix);
    let until_count = |want: usize| {
        let idx = idx.clone();
        let redis = &redis;
        async move {
            until("the index settles", || {
                let idx = idx.clone();
                async move {
                    let mut c = redis.conn().await;
                    let n: usize = redis::cmd("ZCARD")
                        .arg(&idx)
                        .query_async(&mut c)
                        .await
                        .expect("ZCARD");
                    n == want
                }
            })
            .await
        }
    };
    until_count(2).await;
    assert_eq!(entries(&redis).await, 2, "the oldest entries were evicted");
    assert_eq!(
        ask(&gw, None, &q("question 3")).await.0,
        "hit",
        "the newest is kept"
    );
    assert_eq!(
        ask(&gw, None, &q("question 0")).await.0,
        "miss",
        "the oldest is gone"
    );
    let total: i64 = redis::cmd("GET")
        .arg(format!("{{{}}}:cache:bytes", redis.prefix))
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert!(total > 0 && total <= 2 * 600, "counted bytes {total}");
    let before = fake.hits();
    let long = q(&"a long question ".repeat(50));
    assert_eq!(ask(&gw, None, &long).await.0, "miss");
    assert_eq!(
        ask(&gw, None, &long).await.0,
        "miss",
        "larger than max_entry_bytes: not kept"
    );
    assert_eq!(fake.hits(), before + 2);
    gw.stop().await;
    redis.clean().await;
}

/// Redis cut: lookups are misses at once (the backend is down), requests are
/// still answered from upstream; once Redis is back the cache works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_a_miss_never_an_error() {
    let Some(redis) = RedisPrefix::new() else { return };
    let relay = Relay::start(redis_addr(&redis.url)).await;
    let via = RedisPrefix {
        url: format!("redis://{}", relay.addr),
        prefix: redis.prefix.clone(),
    };
    let fake = start_fake().await;
    let mut gw = start_gateway(&cfg(&fake, &via, "ttl_secs = 600\n")).await;
    assert_eq!(ask(&gw, None, &q("before the cut")).await.0, "miss");
    stored(&redis, 1).await;
    assert_eq!(ask(&gw, None, &q("before the cut")).await.0, "hit");
    relay.cut();
    let up = "switchyard_state_backend_up{backend=\"redis\"}";
    // Every request is served (200, from upstream) while Redis is away.
    until("Redis seen as down", || async {
        let (h, _) = ask(&gw, None, &q("before the cut")).await;
        assert_ne!(h, "bypass");
        h == "miss" && metric(&gw, up).await == 0
    })
    .await;
    let hits = fake.hits();
    for i in 0..3 {
        let (h, v) = ask(&gw, None, &q(&format!("during the cut {i}"))).await;
        assert_eq!(h, "miss");
        assert_eq!(v["object"], "chat.completion");
    }
    assert_eq!(fake.hits(), hits + 3);
    relay.restore();
    until("Redis back", || async { metric(&gw, up).await == 1 }).await;
    until("hits again", || async {
        ask(&gw, None, &q("before the cut")).await.0 == "hit"
    })
    .await;
    gw.stop().await;
    redis.clean().await;
}
