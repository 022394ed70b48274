//! What the exact response cache costs a request it cannot serve (a miss):
//! the canonical JSON of the parsed request, the namespaced key, and the LRU
//! lookup in a store holding `--entries` answers, for a ~1 KB chat request.
//! Prints p50 / p99 per miss over N iterations (and the hit path's lookup).
//!
//! Usage: cache_bench [N] [--entries E]

use std::time::Instant;

use bytes::Bytes;
use switchyard::api::chat::ChatRequest;
use switchyard::state::cache::{self, Answer, Cached, MemoryStore};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let entries: usize = args
        .iter()
        .position(|a| a == "--entries")
        .and_then(|i| args.get(i + 1))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let text = "Summarise the following support ticket in two sentences and name the product. ".repeat(12);
    let body = format!(
        r#"{{"model":"auto","temperature":0,"messages":[{{"role":"system","content":"You are a careful assistant."}},{{"role":"user","content":"{text}"}}]}}"#
    );
    let store = MemoryStore::new(entries, 1 << 30);
    let answer = Bytes::from(vec![b'x'; 1300]);
    for i in 0..entries {
        let k = cache::key(
            "chat.completions",
            "team",
            "fast",
            format!("other request {i}").as_bytes(),
        );
        store.put(
            k,
            Cached {
                body: Answer::Complete(answer.clone()),
                usage: None,
                cost_usd: None,
                expires_ms: i64::MAX,
            },
        );
    }
    let req = match ChatRequest::parse(body.as_bytes()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bad request body: {}", e.message);
            std::process::exit(1);
        }
    };
    let mut miss = Vec::with_capacity(n);
    let mut found = 0usize;
    for _ in 0..n {
        let t = Instant::now();
        let canonical = serde_json::to_vec(&req).unwrap_or_default();
        let k = cache::key("chat.completions", "team", "fast", &canonical);
        found += usize::from(store.get(&k, 0).is_some());
        miss.push(t.elapsed().as_secs_f64() * 1e6);
    }
    assert_eq!(found, 0, "every lookup is a miss");
    // The hit path: the same lookup for a stored key.
    let canonical = serde_json::to_vec(&req).unwrap_or_default();
    let k = cache::key("chat.completions", "team", "fast", &canonical);
    store.put(
        k.clone(),
        Cached {
            body: Answer::Complete(answer),
            usage: None,
            cost_usd: None,
            expires_ms: i64::MAX,
        },
    );
    let mut hit = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let canonical = serde_json::to_vec(&req).unwrap_or_default();
        let k = cache::key("chat.completions", "team", "fast", &canonical);
        found += usize::from(store.get(&k, 0).is_some());
        hit.push(t.elapsed().as_secs_f64() * 1e6);
    }
    assert_eq!(found, n);
    println!(
        "{{\"request_bytes\":{},\"entries\":{entries},\"iterations\":{n},\"miss_p50_us\":{:.2},\"miss_p99_us\":{:.2},\"hit_lookup_p50_us\":{:.2},\"hit_lookup_p99_us\":{:.2}}}",
        body.len(),
        percentile(&mut miss, 0.5),
        percentile(&mut miss, 0.99),
        percentile(&mut hit, 0.5),
        percentile(&mut hit, 0.99)
    );
}
