//! End-to-end tests: client -> gateway -> fake upstream, all over real
//! sockets on 127.0.0.1.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
}

/// Reads an SSE response into its data payloads.
async fn sse_payloads(resp: reqwest::Response) -> Vec<String> {
    let mut body = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        body.extend_from_slice(&chunk.expect("chunk"));
    }
    let text = String::from_utf8(body).expect("utf8");
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ").map(str::to_string))
        .collect()
}

fn content_of(payloads: &[String]) -> String {
    payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn non_streaming_chat_is_forwarded_and_accounted() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let mut body = chat("default");
    body["seed"] = json!(42);
    body["logprobs"] = json!(true);
    body["reasoning_effort"] = json!("low");
    body["response_format"] = json!({"type": "json_object"});
    body["some_future_field"] = json!({"nested": [1, 2]});
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-client-key")
        .header("x-request-id", "my-req-1")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["x-request-id"], "my-req-1");
    assert_eq!(h["x-switchyard-model"], "fast");
    assert_eq!(h["x-switchyard-provider"], "fake");
    assert!(h["server-timing"]
        .to_str()
        .expect("str")
        .starts_with("gateway;dur="));
    assert!(h["x-switchyard-overhead-ms"]
        .to_str()
        .expect("str")
        .parse::<f64>()
        .is_ok());
    // 600 fresh * 2 + 400 cached * 0.5 + 200 * 10, per 1M.
    let want_cost = (600.0 * 2.0 + 400.0 * 0.5 + 200.0 * 10.0) / 1e6;
    let cost: f64 = h["x-switchyard-cost-usd"]
        .to_str()
        .expect("str")
        .parse()
        .expect("f64");
    assert!((cost - want_cost).abs() < 1e-9, "cost {cost}");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], ANSWER);

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let up = &reqs[0];
    assert_eq!(up.body["model"], "ok", "model rewritten to the upstream id");
    for k in [
        "seed",
        "logprobs",
        "reasoning_effort",
        "response_format",
        "some_future_field",
    ] {
        assert_eq!(up.body[k], body[k], "{k} passed through");
    }
    assert_eq!(up.headers["authorization"], format!("Bearer {UPSTREAM_KEY}"));

    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.request_id, "my-req-1");
    assert_eq!(
        (r.requested_model.as_str(), r.served_model.as_str()),
        ("default", "fast")
    );
    assert_eq!(
        (r.provider.as_str(), r.upstream_model.as_str(), r.status),
        ("fake", "ok", 200)
    );
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.cached_tokens),
        (Some(1000), Some(200), Some(400))
    );
    assert_eq!(r.reasoning_tokens, Some(50));
    assert!((r.cost_usd.expect("cost") - want_cost).abs() < 1e-12);
    assert!(!r.stream && r.latency_ms > 0.0);
}

#[tokio::test]
async fn unpriced_model_records_unknown_cost() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("unpriced"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-switchyard-cost-usd").is_none());
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows[0].cost_usd, None, "unknown, never silently zero");
    assert_eq!(rows[0].prompt_tokens, Some(1000));
}

#[tokio::test]
async fn streaming_relays_events_and_drops_unrequested_usage() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let mut body = chat("fast");
    body["stream"] = json!(true);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let payloads = sse_payloads(resp).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(content_of(&payloads), ANSWER);
    // Same events as upstream produced, minus the usage chunk.
    let expected = stream_events("ok", false);
    assert_eq!(&payloads[..payloads.len() - 1], &expected[..]);
    assert!(
        payloads.iter().all(|p| !p.contains("\"usage\"")),
        "no usage chunk for this client"
    );
    // The gateway asked upstream for usage anyway.
    assert_eq!(fake.requests()[0].body["stream_options"]["include_usage"], true);

    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].stream);
    assert_eq!(rows[0].status, 200);
    assert_eq!(
        rows[0].completion_tokens,
        Some(200),
        "usage recorded from the dropped chunk"
    );
    assert!(rows[0].ttft_ms.is_some());
    assert!(rows[0].cost_usd.is_some());
}

#[tokio::test]
async fn streaming_keeps_usage_when_client_asks() {
    let fake = start_fake().await;
    let gw = start_gateway(&config_for(fake.addr, "")).await;
    let mut body = chat("fast");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let payloads = sse_payloads(resp).await;
    let expected = stream_events("ok", true);
    let n = payloads.len();
    // Every event as upstream sent it; the usage chunk gains `usage.cost`.
    assert_eq!(&payloads[..n - 2], &expected[..expected.len() - 1]);
    let usage_chunk: Value = serde_json::from_str(&payloads[n - 2]).expect("json");
    let mut want: Value = serde_json::from_str(&expected[expected.len() - 1]).expect("json");
    let cost = (600.0 * 2.0 + 400.0 * 0.5 + 200.0 * 10.0) / 1e6;
    want["usage"]["cost"] = json!(cost);
    assert_eq!(usage_chunk, want);
    assert_eq!(usage_chunk["choices"], json!([]));
}

/// The upstream gets the client's bytes as sent, but for the model id (and,
/// on a stream, `include_usage` switched on): no re-encoding of numbers,
/// escapes, whitespace or unknown fields.
#[tokio::test]
async fn the_clients_body_bytes_are_forwarded_with_only_the_model_patched() {
    let fake = start_fake().await;
    let gw = start_gateway(&config_for(fake.addr, "")).await;
    let body = r#"{"model" : "fast", "messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00 1e2"}],
 "temperature":1.0e0, "seed": 12345678901234567890123, "x_future": {"a":[1,2,{"b":null}]}}"#;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let want = body.replacen(r#""fast""#, r#""ok""#, 1);
    assert_eq!(std::str::from_utf8(&fake.requests()[0].raw), Ok(want.as_str()));

    let body = r#"{"model":"fast","stream":true,"stream_options":{"include_usage":false,"x":1},
 "messages":[{"role":"user","content":"Say \"hello\""}],"seed":1e2}"#;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let payloads = sse_payloads(resp).await;
    assert!(
        payloads.iter().all(|p| !p.contains("\"usage\"")),
        "the client did not ask for usage"
    );
    let want = body.replacen(r#""fast""#, r#""ok""#, 1).replacen(
        r#""include_usage":false"#,
        r#""include_usage":true"#,
        1,
    );
    assert_eq!(std::str::from_utf8(&fake.requests()[1].raw), Ok(want.as_str()));
}

#[tokio::test]
async fn stream_dropped_mid_way_ends_with_error_event() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let mut body = chat("drop-mid");
    body["stream"] = json!(true);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200, "headers were already sent");
    let payloads = sse_payloads(resp).await;
    let last: Value = serde_json::from_str(payloads.last().expect("some")).expect("error json");
    assert_eq!(last["error"]["type"], "upstream_error");
    assert!(last["error"]["message"].as_str().expect("msg").contains("'fake'"));
    assert!(
        !payloads.iter().any(|p| p == "[DONE]"),
        "never a silent clean end"
    );
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows[0].status, 502);
    assert!(rows[0].error.is_some());
}

#[tokio::test]
async fn upstream_error_event_mid_stream_is_forwarded() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let mut body = chat("error-event");
    body["stream"] = json!(true);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let payloads = sse_payloads(resp).await;
    let last: Value = serde_json::from_str(payloads.last().expect("some")).expect("json");
    assert_eq!(last["error"]["message"], "model overloaded");
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows[0].status, 502);
}

#[tokio::test]
async fn stream_without_done_is_closed_properly() {
    let fake = start_fake().await;
    let gw = start_gateway(&config_for(fake.addr, "")).await;
    let mut body = chat("no-done");
    body["stream"] = json!(true);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let payloads = sse_payloads(resp).await;
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(content_of(&payloads), ANSWER);
}

#[tokio::test]
async fn upstream_errors_map_to_openai_errors() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let c = client();
    // (model, expected status, expected code)
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("fail-400", 400, Some("fake_code")),
        ("fail-404", 404, Some("fake_code")),
        ("fail-429", 429, Some("fake_code")),
        ("fail-401", 502, Some("upstream_auth_failed")),
        ("fail-500", 502, Some("upstream_error")),
        ("fail-503", 502, Some("upstream_error")),
        ("bad-json", 502, Some("upstream_bad_response")),
    ];
    for (model, status, code) in cases {
        let resp = c
            .post(gw.url("/v1/chat/completions"))
            .json(&chat(model))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), *status, "{model}");
        let retry_after = resp.headers().get("retry-after").cloned();
        let v: Value = resp.json().await.expect("error json");
        assert_eq!(v["error"]["code"].as_str(), *code, "{model}: {v}");
        let msg = v["error"]["message"].as_str().expect("message");
        assert!(!msg.contains(UPSTREAM_KEY));
        if *status == 400 {
            assert_eq!(
                msg, "fake upstream failure 400",
                "upstream 4xx message passed through"
            );
            assert_eq!(v["error"]["param"], "temperature");
        }
        if *status == 502 {
            assert!(msg.contains("'fake'"), "names the provider: {msg}");
        }
        if *model == "fail-429" {
            assert_eq!(retry_after.expect("retry-after"), "7");
        }
    }
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), cases.len(), "every upstream call is in the ledger");
    let statuses: Vec<i64> = rows.iter().map(|r| r.status).collect();
    assert_eq!(statuses, cases.iter().map(|c| c.1 as i64).collect::<Vec<_>>());
}

#[tokio::test]
async fn connection_refused_and_timeout() {
    // A port with nothing listening: bind, read the port, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let fake = start_fake().await;
    let extra = format!(
        r#"
[providers.dead]
type = "openai"
base_url = "http://{dead}/v1"
models = ["dead-*"]

[providers.slowpoke]
type = "openai"
base_url = "http://{}/v1"
timeout_ms = 200
models = ["slow-*"]
"#,
        fake.addr
    );
    // `slow-*` also matches the `fake` provider first, so use a dedicated config.
    let cfg = config_for(fake.addr, &extra).replace("\"slow-*\", ", "");
    let mut gw = start_gateway(&cfg).await;
    let c = client();
    let resp = c
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("dead-model"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "upstream_unreachable");
    assert!(v["error"]["message"].as_str().expect("m").contains("'dead'"));

    let resp = c
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("slow-2000"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 504);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "upstream_timeout");
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.iter().map(|r| r.status).collect::<Vec<_>>(), vec![502, 504]);
}

#[tokio::test]
async fn bad_input_gets_4xx_never_5xx() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let c = client();
    let big = format!(
        r#"{{"model":"fast","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(70_000)
    );
    // (path, body, status, param)
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("/v1/chat/completions", "not json".into(), 400, None),
        ("/v1/chat/completions", "".into(), 400, None),
        ("/v1/chat/completions", "[]".into(), 400, None),
        (
            "/v1/chat/completions",
            r#"{"model":"fast","messages":[{"role":"user","content":"x"}]"#.into(),
            400,
            None,
        ),
        (
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}]}"#.into(),
            400,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":7,"messages":[]}"#.into(),
            400,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"fast"}"#.into(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"fast","messages":[]}"#.into(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"fast","messages":{}}"#.into(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"fast","messages":[{"role":5}]}"#.into(),
            400,
            Some("messages[0].role"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"fast","messages":["hi"]}"#.into(),
            400,
            Some("messages[0]"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"fast","messages":[{"role":"user","content":{"a":1}}]}"#.into(),
            400,
            Some("messages[0].content"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"fast","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#.into(),
            400,
            Some("stream"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"fast","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#.into(),
            400,
            Some("temperature"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"no-such-model","messages":[{"role":"user","content":"x"}]}"#.into(),
            404,
            Some("model"),
        ),
        ("/v1/chat/completions", big, 413, None),
        (
            "/v1/embeddings",
            r#"{"model":"embed"}"#.into(),
            400,
            Some("input"),
        ),
        (
            "/v1/embeddings",
            r#"{"model":"embed","input":[]}"#.into(),
            400,
            Some("input"),
        ),
        (
            "/v1/embeddings",
            r#"{"model":"nope","input":"x"}"#.into(),
            404,
            Some("model"),
        ),
        ("/v1/nothing-here", "{}".into(), 404, None),
    ];
    for (path, body, status, param) in &cases {
        let resp = c
            .post(gw.url(path))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        let got = resp.status().as_u16();
        assert!(resp.headers().contains_key("x-request-id") || *path == "/v1/nothing-here");
        let v: Value = resp.json().await.expect("error body is JSON");
        assert_eq!(got, *status, "{path} {body:.80}: {v}");
        assert!(
            v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(v["error"]["type"].is_string(), "{v}");
        assert_eq!(v["error"]["param"].as_str(), *param, "{body:.80}: {v}");
    }
    // Wrong method.
    let resp = c.get(gw.url("/v1/chat/completions")).send().await.expect("send");
    assert_eq!(resp.status(), 405);
    let v: Value = resp.json().await.expect("json");
    assert!(v["error"]["message"].is_string());
    assert_eq!(fake.hits(), 0, "no bad request reached upstream");
    assert!(gw.stop_and_rows().await.is_empty());
}

#[tokio::test]
async fn embeddings_forwarded() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let resp = client()
        .post(gw.url("/v1/embeddings"))
        .json(&json!({"model": "embed", "input": ["a", "b"], "dimensions": 3}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-model"], "embed");
    assert!(
        resp.headers().contains_key("x-switchyard-cost-usd"),
        "shipped default price applies"
    );
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["data"][1]["embedding"], json!([0.25, -0.5, 1.0]));
    let up = &fake.requests()[0];
    assert_eq!(up.path, "/v1/embeddings");
    assert_eq!(up.body["model"], "text-embedding-3-small");
    assert_eq!(up.body["dimensions"], 3);
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows[0].endpoint, "embeddings");
    assert_eq!(rows[0].prompt_tokens, Some(16));
}

#[tokio::test]
async fn models_health_ready() {
    let fake = start_fake().await;
    let gw = start_gateway(&config_for(fake.addr, "")).await;
    let c = client();
    let v: Value = c
        .get(gw.url("/v1/models"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .expect("arr")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["fast", "unpriced", "embed", "default", "auto"]);
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["owned_by"], "fake");
    let one: Value = c
        .get(gw.url("/v1/models/default"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(one["id"], "default");
    let pass: Value = c
        .get(gw.url("/v1/models/fail-500"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(pass["owned_by"], "fake", "a pass-through name is servable");
    let resp = c.get(gw.url("/v1/models/ghost")).send().await.expect("send");
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(c.get(gw.url("/health")).send().await.expect("send").status(), 200);
    assert_eq!(c.get(gw.url("/ready")).send().await.expect("send").status(), 200);
}

#[tokio::test]
async fn concurrent_requests_give_exactly_n_rows() {
    let fake = start_fake().await;
    // 200 requests at once on a loaded 2-core machine can take longer than
    // the shared config's 3 s total timeout (a stream already answered 200
    // then ends as 504): this test counts rows, so give it a timeout far
    // beyond any scheduling delay.
    let cfg = config_for(fake.addr, "").replace("\ntimeout_ms = 3000", "\ntimeout_ms = 120000");
    assert!(
        cfg.contains("\ntimeout_ms = 120000"),
        "config_for changed: update this test"
    );
    let mut gw = start_gateway(&cfg).await;
    let c = client();
    let n = 200;
    let futs = (0..n).map(|i| {
        let c = c.clone();
        let url = gw.url("/v1/chat/completions");
        async move {
            let mut body = chat("fast");
            if i % 2 == 0 {
                body["stream"] = json!(true);
            }
            let resp = c
                .post(url)
                .header("x-request-id", format!("conc-{i}"))
                .json(&body)
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 200);
            resp.bytes().await.expect("body");
        }
    });
    futures_util::future::join_all(futs).await;
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), n);
    let mut ids: Vec<String> = rows.iter().map(|r| r.request_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "one row per request");
    assert!(rows
        .iter()
        .all(|r| r.status == 200 && r.completion_tokens == Some(200)));
}

#[tokio::test]
async fn graceful_shutdown_under_load_loses_nothing() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let c = client();
    let n = 60;
    let mut handles = Vec::new();
    for i in 0..n {
        let c = c.clone();
        let url = gw.url("/v1/chat/completions");
        handles.push(tokio::spawn(async move {
            // Slow upstream answers keep these requests in flight during shutdown.
            let body = json!({"model": format!("slow-{}", 500 + i * 10), "messages": [{"role":"user","content":"x"}]});
            match c.post(url).json(&body).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        }));
    }
    // Let every request reach upstream, then shut down while they are in flight.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while fake.hits() < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let reached = fake.hits();
    assert_eq!(reached, n, "all requests in flight before shutdown");
    let rows = gw.stop_and_rows().await;
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.expect("join"));
    }
    // Every request that reached upstream has its row, and finished normally.
    assert_eq!(rows.len(), fake.hits(), "one row per upstream call");
    assert!(rows.len() >= reached);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        ok,
        rows.iter().filter(|r| r.status == 200).count(),
        "in-flight requests completed"
    );
}

#[tokio::test]
async fn client_hangup_mid_stream_is_recorded() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let mut body = chat("trickle");
    body["stream"] = json!(true);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let mut s = resp.bytes_stream();
    let _first = s.next().await;
    drop(s);
    // Give the gateway a moment to notice the closed connection.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let rows = gw.stop_and_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, 499, "recorded as client-closed");
    assert!(rows[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("client closed")));
}
