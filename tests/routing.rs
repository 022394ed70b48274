//! `model: "auto"` end to end: classification, routes, overrides, pinning,
//! escalation and abstention, against the fake upstream over real sockets;
//! plus validation of route configs and the shipped example config.

mod common;

use common::*;
use serde_json::{json, Value};

/// Models named after their upstream ids so the fake's records show the choice.
fn routed_config(fake: std::net::SocketAddr, routing_extra: &str) -> String {
    format!(
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

[models.mid]
provider = "fake"
model = "up-mid"
tier = "quality"
price = {{ input = 1.0, output = 4.0 }}

[models.big]
provider = "fake"
model = "up-big"
tier = "frontier"
price = {{ input = 5.0, output = 30.0 }}

[routing]
session_idle_secs = 600
{routing_extra}

[routes.auto]
default_task = "simple_chat"
[routes.auto.tasks.simple_chat]
models = ["cheap", "mid"]
escalate_above = 0.5
[routes.auto.tasks.code_generation]
models = ["big", "mid"]
[routes.auto.tasks.translation]
models = ["mid"]
[routes.auto.tasks.summarization]
models = ["cheap"]
[routes.auto.tasks.extraction]
models = ["mid"]

[routes.auto-economy]
[routes.auto-economy.tasks.simple_chat]
models = ["cheap"]
"#
    )
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
}

impl Reply {
    fn h(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn send(gw: &Gw, body: Value, headers: &[(&str, &str)]) -> Reply {
    let mut rb = client().post(gw.url("/v1/chat/completions")).json(&body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let _ = resp.bytes().await;
    Reply { status, headers }
}

fn ask(text: &str) -> Value {
    json!({"model": "auto", "messages": [{"role": "user", "content": text}]})
}

fn last_upstream_model(fake: &Fake) -> String {
    fake.requests()
        .last()
        .and_then(|r| r.body["model"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test]
async fn auto_routes_by_task_and_records_the_decision() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&routed_config(fake.addr, "")).await;

    let r = send(&gw, ask("hi! how are you today?"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.h("x-switchyard-task"), r.h("x-switchyard-tier")),
        ("simple_chat", "economy")
    );
    assert_eq!(
        (r.h("x-switchyard-model"), r.h("x-switchyard-route")),
        ("cheap", "auto")
    );
    assert_eq!(last_upstream_model(&fake), "up-cheap");

    // Deterministic signals.
    let cases: &[(&str, &str, &str, &str)] = &[
        ("Fix this:\n```python\ndef f(x):\n    return x +\n```", "code_generation", "big", "signal:code_fence"),
        (
            "Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    main()\nZeroDivisionError: division by zero",
            "code_generation",
            "big",
            "signal:stack_trace",
        ),
        ("Translate to French: where is the train station?", "translation", "mid", "signal:translate_language"),
    ];
    for (text, task, model, reason) in cases {
        let r = send(&gw, ask(text), &[]).await;
        assert_eq!(r.h("x-switchyard-task"), *task, "{text}");
        assert_eq!(r.h("x-switchyard-model"), *model, "{text}");
        assert_eq!(r.h("x-switchyard-route-reason"), *reason, "{text}");
    }
    // json_schema response format -> extraction.
    let mut body = ask("List the people mentioned: Alice met Bob in Paris.");
    body["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "people", "schema": {"type": "object"}}});
    let r = send(&gw, body, &[]).await;
    assert_eq!(
        (r.h("x-switchyard-task"), r.h("x-switchyard-model")),
        ("extraction", "mid")
    );

    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[1].served_model, "big");
    assert_eq!(rows[1].requested_model, "auto");
    let extra = routing_columns(&gw.ledger).await;
    assert_eq!(extra[0].0.as_deref(), Some("auto"));
    assert_eq!(extra[0].1.as_deref(), Some("simple_chat"));
    assert!(
        extra[0].2.is_some_and(|c| c > 0.0 && c <= 1.0),
        "confidence recorded"
    );
    assert!(
        extra[0].3.is_some_and(|c| (0.0..=1.0).contains(&c)),
        "complexity recorded"
    );
    assert_eq!(extra[1].4.as_deref(), Some("frontier"));
    assert_eq!(extra[1].5.as_deref(), Some("signal:code_fence"));
}

type RoutingCols = (
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<f64>,
    Option<String>,
    Option<String>,
);

async fn routing_columns(path: &std::path::Path) -> Vec<RoutingCols> {
    use sqlx::Connection;
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.expect("open");
    sqlx::query_as(
        "SELECT route, task, task_confidence, complexity, tier, route_reason FROM ledger ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("query")
}

#[tokio::test]
async fn overrides_and_explicit_models() {
    let fake = start_fake().await;
    let gw = start_gateway(&routed_config(fake.addr, "")).await;

    // x-switchyard-task forces the task.
    let r = send(&gw, ask("hi there"), &[("x-switchyard-task", "code_generation")]).await;
    assert_eq!(
        (r.h("x-switchyard-task"), r.h("x-switchyard-model")),
        ("code_generation", "big")
    );
    assert_eq!(r.h("x-switchyard-route-reason"), "override:task_header");

    // An unknown task is a client error naming the header.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-switchyard-task", "poetry_slam")
        .json(&ask("hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["param"], "x-switchyard-task");

    // x-switchyard-route picks another route.
    let r = send(&gw, ask("hello"), &[("x-switchyard-route", "auto-economy")]).await;
    assert_eq!(
        (r.h("x-switchyard-route"), r.h("x-switchyard-model")),
        ("auto-economy", "cheap")
    );
    // A route is also addressable as a model name.
    let mut body = ask("hello");
    body["model"] = json!("auto-economy");
    let r = send(&gw, body, &[]).await;
    assert_eq!(r.h("x-switchyard-route"), "auto-economy");
    // An unknown route header: 404 route_not_found.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-switchyard-route", "nope")
        .json(&ask("hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "route_not_found");

    // An explicit model bypasses classification entirely.
    let body = json!({"model": "big", "messages": [{"role": "user", "content": "hi"}]});
    let r = send(&gw, body, &[("x-switchyard-task", "summarization")]).await;
    assert_eq!(r.h("x-switchyard-model"), "big");
    assert!(
        r.headers.get("x-switchyard-task").is_none(),
        "no classification for explicit models"
    );

    // Routes are listed as models.
    let v: Value = client()
        .get(gw.url("/v1/models"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("arr")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"auto") && ids.contains(&"auto-economy"), "{ids:?}");
}

#[tokio::test]
async fn complexity_escalates_simple_chat() {
    let fake = start_fake().await;
    let gw = start_gateway(&routed_config(fake.addr, "")).await;
    let long = "I need a careful plan. First, compare three options for moving house across the country, \
        considering cost, time and risk. Second, list the constraints: the budget must stay under $5,000, \
        we must move within 6 weeks, we cannot drive more than 8 hours per day, and the cat must travel with us. \
        Third, for each option, estimate the total cost step by step and explain the trade-offs. \
        Finally, recommend one option and justify it in detail, and also list what could go wrong and how to mitigate each risk. "
        .repeat(3);
    let r = send(
        &gw,
        json!({"model":"auto","messages":[{"role":"user","content": long}]}),
        &[("x-switchyard-task", "simple_chat")],
    )
    .await;
    assert_eq!(r.h("x-switchyard-task"), "simple_chat");
    assert_eq!(
        (r.h("x-switchyard-tier"), r.h("x-switchyard-model")),
        ("quality", "mid"),
        "escalated one tier up"
    );
    assert!(r.h("x-switchyard-route-reason").contains("escalated:complexity"));
    let r = send(&gw, ask("hey"), &[("x-switchyard-task", "simple_chat")]).await;
    assert_eq!(
        (r.h("x-switchyard-tier"), r.h("x-switchyard-model")),
        ("economy", "cheap")
    );
}

#[tokio::test]
async fn abstains_below_confidence_threshold() {
    let fake = start_fake().await;
    // Neither the model nor a rule (0.95) reaches 1.0 here -> the classifier abstains.
    let cfg = routed_config(fake.addr, "").replace(
        "session_idle_secs = 600",
        "session_idle_secs = 600\nmin_confidence = 1.0",
    );
    let gw = start_gateway(&cfg).await;
    let r = send(&gw, ask("Write a Python function that reverses a string"), &[]).await;
    assert_eq!(r.h("x-switchyard-task"), "simple_chat", "default task applies");
    assert_eq!(r.h("x-switchyard-route-reason"), "abstained:default_task");
    assert_eq!(r.h("x-switchyard-model"), "cheap");
}

#[tokio::test]
async fn session_pinning_keeps_the_model() {
    let fake = start_fake().await;
    let gw = start_gateway(&routed_config(fake.addr, "")).await;
    let code = "Write a Rust function that parses a CSV line into fields, handling quoted commas.";
    let chat = "thanks! that's great";
    let s = [("x-switchyard-session", "conv-1")];
    let r1 = send(&gw, ask(code), &s).await;
    assert_eq!(r1.h("x-switchyard-model"), "big");
    let r2 = send(&gw, ask(chat), &s).await;
    assert_eq!(r2.h("x-switchyard-model"), "big", "same session keeps its model");
    assert_eq!(
        r2.h("x-switchyard-task"),
        "simple_chat",
        "the task is still classified"
    );
    assert!(r2.h("x-switchyard-route-reason").ends_with("session_pinned"));
    // Another session, or none: routed on its own merits.
    let r3 = send(&gw, ask(chat), &[("x-switchyard-session", "conv-2")]).await;
    assert_eq!(r3.h("x-switchyard-model"), "cheap");
    let r4 = send(&gw, ask(chat), &[]).await;
    assert_eq!(r4.h("x-switchyard-model"), "cheap");
    // The OpenAI `user` field is a session key too.
    let mut b = ask(code);
    b["user"] = json!("user-42");
    assert_eq!(send(&gw, b, &[]).await.h("x-switchyard-model"), "big");
    let mut b = ask(chat);
    b["user"] = json!("user-42");
    assert_eq!(send(&gw, b, &[]).await.h("x-switchyard-model"), "big");
}

fn check(text: &str) -> Result<switchyard::config::Config, Vec<String>> {
    let raw = switchyard::config::parse_toml(text)
        .map_err(|e| e.0.iter().map(|e| e.path.clone()).collect::<Vec<_>>())?;
    let env = |k: &str| k.ends_with("_API_KEY").then(|| "sk-test".to_string());
    switchyard::config::validate(raw, switchyard::config::ConfigSource::Environment, &env)
        .map_err(|e| e.0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect())
}

#[test]
fn route_config_validation_names_key_paths() {
    let base = r#"
[providers.p]
type = "simulated"
[models.a]
provider = "p"
tier = "economy"
price = { input = 1.0, output = 1.0 }
quality = { simple_chat = 0.9 }
[models.b]
provider = "p"
tier = "frontier"
price = { input = 5.0, output = 5.0 }
quality = { simple_chat = 0.95 }
[models.emb]
provider = "p"
model = "text-embedding-3-small"
"#;
    let cases: &[(&str, &str)] = &[
        ("[routes.r]\n[routes.r.tasks.simple_chat]\nmodels = [\"ghost\"]\n", "routes.r.tasks.simple_chat.models[0]"),
        ("[routes.r]\n[routes.r.tasks.simple_chat]\nmodels = [\"emb\"]\n", "routes.r.tasks.simple_chat.models[0]"),
        ("[routes.r]\n[routes.r.tasks.dancing]\nmodels = [\"a\"]\n[routes.r.tasks.simple_chat]\nmodels = [\"a\"]\n", "routes.r.tasks.dancing"),
        ("[routes.r]\n[routes.r.tasks.simple_chat]\ntier = \"gold\"\n", "routes.r.tasks.simple_chat.tier"),
        ("[routes.r]\n[routes.r.tasks.simple_chat]\nmodels = [\"a\"]\nquality_threshold = 1.5\n", "routes.r.tasks.simple_chat.quality_threshold"),
        ("[routes.r]\ndefault_task = \"nap\"\n", "routes.r.default_task"),
        ("[routes.r]\n[routes.r.tasks.code_generation]\nmodels = [\"a\"]\n", "routes.r.default_task"),
        ("[routes.r]\n[routes.r.tasks.simple_chat]\nselect = \"cheapest_above_threshold\"\nquality_threshold = 0.99\n", "routes.r.tasks.simple_chat"),
        ("[routes.r]\n[routes.r.tasks.simple_chat]\nselect = \"cheapest_above_threshold\"\n", "routes.r.tasks.simple_chat.quality_threshold"),
        ("[routes.r]\n[routes.r.tasks.simple_chat]\nmodels = [\"b\"]\nescalate_above = 0.5\n", "routes.r.tasks.simple_chat.escalate_above"),
        ("[routes.r]\n[routes.r.tasks.simple_chat]\nmodels = [\"a\"]\nselect = \"random\"\n", "routes.r.tasks.simple_chat.select"),
        ("[routes.a]\n[routes.a.tasks.simple_chat]\nmodels = [\"a\"]\n", "routes.a"),
        ("[routing]\ntiers = []\n", "routing.tiers"),
        ("[routing]\nmin_confidence = 2.0\n", "routing.min_confidence"),
        ("[models.c]\nprovider = \"p\"\ntier = \"platinum\"\n", "models.c.tier"),
        ("[models.c]\nprovider = \"p\"\nquality = { sleeping = 0.5 }\n", "models.c.quality.sleeping"),
    ];
    for (extra, want) in cases {
        let errs = check(&format!("{base}{extra}")).expect_err(extra);
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{want}:")) || e == want),
            "{extra}\nwant {want}, got {errs:?}"
        );
    }
    // And a valid one: cheapest_above_threshold orders qualifying models by cost.
    let cfg = check(&format!(
        "{base}[routes.r]\n[routes.r.tasks.simple_chat]\nselect = \"cheapest_above_threshold\"\nquality_threshold = 0.85\n"
    ))
    .expect("valid");
    let r = &cfg.routing.routes["r"];
    assert_eq!(r.tasks[0].chain, ["a", "b"]);
    // A threshold filters an explicit chain by known scores.
    let cfg = check(&format!(
        "{base}[routes.r]\n[routes.r.tasks.simple_chat]\nmodels = [\"a\", \"b\"]\nquality_threshold = 0.92\n"
    ))
    .expect("valid");
    assert_eq!(cfg.routing.routes["r"].tasks[0].chain, ["b"]);
}

#[test]
fn default_auto_route_is_built_from_configured_models() {
    let cfg = check(
        r#"
[providers.p]
type = "simulated"
[models.small]
provider = "p"
price = { input = 0.1, output = 0.4 }
[models.medium]
provider = "p"
price = { input = 1.0, output = 4.0 }
[models.large]
provider = "p"
price = { input = 5.0, output = 25.0 }
[models.emb]
provider = "p"
model = "text-embedding-3-small"
"#,
    )
    .expect("valid");
    let auto = &cfg.routing.routes["auto"];
    assert!(auto.built_in);
    let tasks = cfg.routing.classifier.tasks();
    let chain = |t: &str| {
        auto.tasks[tasks.iter().position(|x| x == t).expect("task")]
            .chain
            .clone()
    };
    // The task map's chains label each task; the tier predictor picks among
    // the tiers (small, medium, large ranked by price into economy, quality, frontier).
    assert_eq!(chain("simple_chat"), ["small", "medium", "large"]);
    assert_eq!(chain("code_generation"), ["large", "medium", "small"]);
    assert_eq!(chain("translation"), ["medium", "large", "small"]);
    let pr = auto.predicted.as_ref().expect("a predictor route");
    assert_eq!(pr.models, ["small", "medium", "large"]);
    assert_eq!(pr.tiers, ["economy", "quality", "frontier"]);
    assert_eq!(pr.chains[1], ["medium", "large", "small"]);
    assert!(
        !chain("summarization").contains(&"emb".to_string()),
        "embedding models never serve chat"
    );
}

#[test]
fn shipped_example_config_matches_the_task_table() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/switchyard.example.toml"
    ))
    .expect("example config");
    let cfg = check(&text).expect("example config is valid");
    let tasks = cfg.routing.classifier.tasks();
    let auto = &cfg.routing.routes["auto"];
    let primary = |t: &str| {
        let tr = &auto.tasks[tasks.iter().position(|x| x == t).expect("task")];
        (tr.chain[0].as_str(), tr.chain.get(1).map(String::as_str))
    };
    assert_eq!(primary("simple_chat"), ("deepseek-v4-pro", Some("gpt-5.4-mini")));
    assert_eq!(primary("code_generation"), ("claude-opus-4.7", Some("gpt-5.5")));
    assert_eq!(
        primary("summarization"),
        ("gpt-5.4-mini", Some("deepseek-v4-pro"))
    );
    assert_eq!(primary("complex_reasoning"), ("gpt-5.5", Some("claude-opus-4.7")));
    for (m, i, o) in [
        ("gpt-5.5", 5.0, 30.0),
        ("gpt-5.4-mini", 0.4, 1.6),
        ("claude-opus-4.7", 15.0, 75.0),
        ("deepseek-v4-pro", 0.14, 0.28),
    ] {
        let p = cfg.models[m].price.expect("priced");
        assert_eq!((p.input, p.output), (i, o), "{m}");
    }
    assert!(cfg.routing.routes.contains_key("auto-economy"));
}

#[test]
fn custom_tasks_train_and_route() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut lines = String::new();
    let samples = [
        (
            "legal_review",
            "Review this NDA clause for liability risks and indemnification gaps",
        ),
        (
            "legal_review",
            "Does this contract's termination clause favour the supplier? Flag risky terms",
        ),
        (
            "legal_review",
            "Check the lease agreement for unusual penalty clauses",
        ),
        ("simple_chat", "hey, how are you doing today?"),
        ("simple_chat", "what's a fun fact about octopuses?"),
        ("simple_chat", "good morning! any tips for a rainy weekend?"),
    ];
    for _ in 0..5 {
        for (task, text) in samples {
            lines.push_str(
                &json!({"messages": [{"role": "user", "content": text}], "task": task}).to_string(),
            );
            lines.push('\n');
        }
    }
    std::fs::write(dir.path().join("mine.jsonl"), lines).expect("write");
    let out = dir.path().join("weights.bin");
    let summary =
        switchyard::commands::train_classifier(dir.path(), &out, Some(20), Some(12), None).expect("train");
    assert!(summary.contains("legal_review"), "{summary}");
    let cfg = format!(
        r#"
[providers.p]
type = "simulated"
[models.lawyer]
provider = "p"
[models.chatty]
provider = "p"
[routing]
classifier = "{}"
[routes.auto]
[routes.auto.tasks.simple_chat]
models = ["chatty"]
[routes.auto.tasks.legal_review]
models = ["lawyer"]
"#,
        out.display()
    );
    let cfg = check(&cfg).expect("custom task routes validate");
    let routing = &cfg.routing;
    let route = &routing.routes["auto"];
    let owned = switchyard::routing::classifier::OwnedInput {
        last_user: "Please review the indemnification clause in this contract for risks".into(),
        turns: 1,
        ..Default::default()
    };
    let d = routing.decide(route, &owned.as_input(), None);
    assert_eq!(routing.task_name(d.task), "legal_review");
    assert_eq!(d.chain, ["lawyer"]);
}

#[tokio::test]
async fn report_totals_equal_ledger_sums() {
    use switchyard::accounting::report::{report, GroupBy};
    let fake = start_fake().await;
    let mut gw = start_gateway(&routed_config(fake.addr, "")).await;
    let prompts = [
        "hello!",
        "Write a Python function that sorts a list of tuples by the second item",
        "Translate to Spanish: good night",
        "Write a Go function that reverses a string",
    ];
    for p in prompts {
        assert_eq!(send(&gw, ask(p), &[]).await.status, 200);
    }
    // An explicit model too (no route, no task).
    let body = json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(send(&gw, body, &[]).await.status, 200);
    let rows = gw.stop_and_rows().await;
    let ledger_cost: f64 = rows.iter().filter_map(|r| r.cost_usd).sum();
    let ledger_prompt: i64 = rows.iter().filter_map(|r| r.prompt_tokens).sum();
    for by in [
        GroupBy::Task,
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Route,
        GroupBy::Day,
        GroupBy::Key,
    ] {
        let rep = report(&gw.ledger, by.clone(), None, None).await.expect("report");
        let cost: f64 = rep.iter().map(|r| r.cost_usd).sum();
        let reqs: i64 = rep.iter().map(|r| r.requests).sum();
        let prompt: i64 = rep.iter().map(|r| r.prompt_tokens).sum();
        assert!(
            (cost - ledger_cost).abs() < 1e-12,
            "{by:?}: {cost} vs {ledger_cost}"
        );
        assert_eq!((reqs, prompt), (rows.len() as i64, ledger_prompt), "{by:?}");
    }
    let by_task = report(&gw.ledger, GroupBy::Task, None, None)
        .await
        .expect("report");
    let code = by_task
        .iter()
        .find(|r| r.group == "code_generation")
        .expect("code row");
    assert_eq!(code.requests, 2);
    assert!(
        by_task.iter().any(|r| r.group == "(none)" && r.requests == 1),
        "explicit model has no task"
    );
    let by_model = report(&gw.ledger, GroupBy::Model, None, None)
        .await
        .expect("report");
    let big = by_model.iter().find(|r| r.group == "big").expect("big");
    // 2 requests x (1000 prompt * 5 + 200 output * 30) per 1M.
    assert!((big.cost_usd - 2.0 * (1000.0 * 5.0 + 200.0 * 30.0) / 1e6).abs() < 1e-12);
    // A window that excludes everything.
    assert!(report(&gw.ledger, GroupBy::Model, Some(i64::MAX - 1), None)
        .await
        .expect("report")
        .is_empty());
}
