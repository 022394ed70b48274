//! Anthropic prompt caching done for the client: golden request bodies before
//! and after the breakpoints are added, and a replayed agent trace against a
//! fake Anthropic upstream that caches like Anthropic does (a prefix up to a
//! `cache_control` block is written once and read at the cached rate later),
//! billed in the ledger with and without the breakpoints, in the same run.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};

/// What the fake upstream saw and cached.
#[derive(Clone, Default)]
struct Upstream {
    bodies: Arc<Mutex<Vec<Value>>>,
    cached: Arc<Mutex<HashSet<String>>>,
}

/// The blocks of a request in Anthropic's prefix order (tools, system,
/// messages), each without its `cache_control`, and whether it was marked.
fn blocks(body: &Value) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut push = |role: &str, b: &Value| {
        let mut b = b.clone();
        let marked = b
            .as_object_mut()
            .and_then(|o| o.remove("cache_control"))
            .is_some();
        out.push((format!("{role}:{b}"), marked));
    };
    for t in body["tools"].as_array().into_iter().flatten() {
        push("tool", t);
    }
    for s in body["system"].as_array().into_iter().flatten() {
        push("system", s);
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        let role = m["role"].as_str().unwrap_or("");
        for b in m["content"].as_array().into_iter().flatten() {
            push(role, b);
        }
    }
    out
}

/// Anthropic's accounting, modelled: tokens are bytes / 4 of the blocks; the
/// longest marked prefix cached before is read, the last marked prefix not yet
/// cached is written, the rest is fresh input.
async fn messages(State(up): State<Upstream>, Json(body): Json<Value>) -> Json<Value> {
    up.bodies.lock().expect("lock").push(body.clone());
    let bl = blocks(&body);
    let mut prefix = String::new();
    let mut tokens_at = Vec::new();
    let mut total = 0u64;
    for (b, marked) in &bl {
        prefix.push_str(b);
        total += b.len() as u64 / 4;
        if *marked {
            tokens_at.push((prefix.clone(), total));
        }
    }
    let mut cached = up.cached.lock().expect("lock");
    let read = tokens_at
        .iter()
        .filter(|(p, _)| cached.contains(p))
        .map(|(_, t)| *t)
        .max()
        .unwrap_or(0);
    let written = tokens_at
        .last()
        .filter(|(p, _)| !cached.contains(p))
        .map_or(0, |(_, t)| t - read);
    for (p, _) in &tokens_at {
        cached.insert(p.clone());
    }
    Json(json!({
        "id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "text", "text": "Done."}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": total - read - written, "output_tokens": 5,
                  "cache_read_input_tokens": read, "cache_creation_input_tokens": written}
    }))
}

async fn start_upstream() -> (std::net::SocketAddr, Upstream) {
    let up = Upstream::default();
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .with_state(up.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, up)
}

fn config(addr: std::net::SocketAddr, prompt_cache: &str) -> String {
    format!(
        r#"
[providers.claude]
type = "anthropic"
base_url = "http://{addr}"
api_key = "sk-ant-test"
prompt_cache = "{prompt_cache}"

[models.sonnet]
provider = "claude"
model = "claude-sonnet-4-5"
price = {{ input = 3.0, output = 15.0, cached_input = 0.3, cache_write = 3.75 }}
"#
    )
}

/// A long, stable system prompt and tools: an agent's typical prefix.
fn system_prompt() -> String {
    (0..120)
        .map(|i| format!("Rule {i}: answer precisely, cite the file and line you changed, never guess. "))
        .collect()
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "read_file", "description": "Reads a file of the repository and returns its text.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}])
}

/// A ten-turn agent conversation, each turn resending the growing history;
/// the gateway is stopped (its ledger flushed) and its rows returned.
async fn replay(gw: &mut Gw) -> Vec<Row> {
    let mut history = vec![json!({"role": "system", "content": system_prompt()})];
    for turn in 0..10 {
        history.push(json!({"role": "user", "content": format!("Step {turn}: look at src/module_{turn}.rs and explain what the function there does, in detail.")}));
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&json!({"model": "sonnet", "max_tokens": 50, "messages": history, "tools": tools()}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.expect("json");
        history.push(json!({"role": "assistant", "content": v["choices"][0]["message"]["content"]}));
    }
    let mut gw_rows = gw.stop_and_rows().await;
    gw_rows.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    gw_rows
}

#[tokio::test]
async fn golden_bodies_get_breakpoints_where_the_rules_put_them() {
    let (addr, up) = start_upstream().await;
    let mut gw = start_gateway(&config(addr, "auto")).await;
    let long = system_prompt();
    // (request, expected marked block paths in the upstream body)
    let cases: Vec<(Value, Vec<&str>)> = vec![
        // Short: nothing to gain, nothing added.
        (
            json!({"model": "sonnet", "max_tokens": 10, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}),
            vec![],
        ),
        // Long system prompt, one user turn: the system end and the conversation end.
        (
            json!({"model": "sonnet", "max_tokens": 10, "messages": [{"role": "system", "content": long}, {"role": "user", "content": "hi"}]}),
            vec!["/system/0", "/messages/0/content/0"],
        ),
        // Several turns: the previous user turn too.
        (
            json!({"model": "sonnet", "max_tokens": 10, "messages": [
                {"role": "system", "content": long}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"}, {"role": "user", "content": "second"}]}),
            vec!["/system/0", "/messages/0/content/0", "/messages/2/content/0"],
        ),
        // The client's own breakpoint (Anthropic-style content part): untouched, nothing added.
        (
            json!({"model": "sonnet", "max_tokens": 10, "messages": [
                {"role": "system", "content": [{"type": "text", "text": long, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
                {"role": "user", "content": "hi"}]}),
            vec!["/system/0"],
        ),
    ];
    for (i, (req, want)) in cases.iter().enumerate() {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .json(req)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200, "case {i}");
        let body = up.bodies.lock().expect("lock").last().cloned().expect("a body");
        let text = body.to_string();
        assert_eq!(
            text.matches("cache_control").count(),
            want.len(),
            "case {i}: {text}"
        );
        assert!(want.len() <= 4);
        for path in want {
            assert!(
                body.pointer(path).and_then(|b| b.get("cache_control")).is_some(),
                "case {i}: no breakpoint at {path}: {text}"
            );
        }
        if i == 3 {
            assert_eq!(
                body["system"][0]["cache_control"]["ttl"], "1h",
                "the client's own is kept as sent"
            );
        }
    }
    gw.stop().await;
}

/// The same agent trace through two gateways on one fake Anthropic upstream,
/// with and without breakpoints: with them, turns after the first read the
/// prefix at the cached rate and the ledger bills less; without, nothing is
/// ever cached.
#[tokio::test]
async fn an_agent_trace_costs_less_with_breakpoints() {
    let (addr, _up) = start_upstream().await;
    let mut off = start_gateway(&config(addr, "off")).await;
    let rows_off = replay(&mut off).await;
    let (addr, _up) = start_upstream().await;
    let mut auto = start_gateway(&config(addr, "auto")).await;
    let rows_auto = replay(&mut auto).await;
    let cost = |rows: &[Row]| rows.iter().filter_map(|r| r.cost_usd).sum::<f64>();
    let cached = |rows: &[Row]| rows.iter().filter_map(|r| r.cached_tokens).sum::<i64>();
    assert_eq!(rows_off.len(), 10);
    assert_eq!(rows_auto.len(), 10);
    assert_eq!(cached(&rows_off), 0, "no breakpoints, no cache reads");
    assert!(
        rows_auto.iter().skip(1).all(|r| r.cached_tokens.unwrap_or(0) > 0),
        "every later turn reads the cached prefix"
    );
    let (c_off, c_auto) = (cost(&rows_off), cost(&rows_auto));
    println!(
        "agent trace, 10 turns: billed ${c_off:.5} without breakpoints, ${c_auto:.5} with ({:.0}% less)",
        (1.0 - c_auto / c_off) * 100.0
    );
    assert!(c_auto < 0.6 * c_off, "{c_auto} vs {c_off}");
}
