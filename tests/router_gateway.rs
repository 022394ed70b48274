//! A predictor route end to end over sockets: the decision and its reason in
//! the response headers, the live strong share in /metrics, and budget
//! pacing lowering the threshold smoothly; the zero-config `auto` route on the predictor.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::json;
use switchyard::accounting::budget::Clock;

fn route(threshold: f64, budget: &str) -> String {
    format!(
        r#"
[models.cheap]
provider = "fake"
model = "ok"
tier = "economy"
price = {{ input = 0.01, output = 0.01 }}

[models.big]
provider = "fake"
model = "ok"
tier = "frontier"
price = {{ input = 100.0, output = 100.0 }}

[routes.auto]
models = ["cheap", "big"]
threshold = {threshold}
{budget}
"#
    )
}

async fn ask(gw: &Gw, text: &str) -> reqwest::Response {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    r
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()[name].to_str().expect("ascii").to_string()
}

#[tokio::test]
async fn thresholds_zero_and_one_pick_the_ends_and_metrics_show_the_share() {
    let fake = start_fake().await;
    for (t, model, tier) in [(0.0, "cheap", "economy"), (1.0, "big", "frontier")] {
        let mut gw = start_gateway(&config_for(fake.addr, &route(t, ""))).await;
        for text in ["hi", "Prove that the square root of 2 is irrational."] {
            let r = ask(&gw, text).await;
            assert_eq!(header(&r, "x-switchyard-model"), model, "T={t} {text}");
            assert_eq!(header(&r, "x-switchyard-tier"), tier);
            let reason = header(&r, "x-switchyard-route-reason");
            assert!(reason.contains(";predictor:p="), "{reason}");
        }
        let m = client()
            .get(gw.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        let share = if t == 0.0 { "0" } else { "1" };
        assert!(
            m.contains(&format!(
                "switchyard_route_strong_share{{route=\"auto\"}} {share}\n"
            )),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "switchyard_routed_total{{route=\"auto\",tier=\"{tier}\"}} 2\n"
            )),
            "{m}"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn pacing_divides_the_threshold_when_spend_runs_ahead() {
    let fake = start_fake().await;
    // 01:00 UTC: 1/24 of the day gone; with pace_factor 1.5, 6.25% of the limit is on pace.
    // One call on `big` costs (1000 + 200 tokens) x $100/1M = $0.12, i.e. 40% of $0.30:
    // spend runs ~6x ahead and the threshold 0.999 falls to ~0.16.
    let now = Arc::new(AtomicI64::new(1_795_737_600_000 + 3_600_000));
    let clock = Clock::manual(now.clone());
    let cfg = config_for(fake.addr, &route(0.999, "[budgets]\ndaily = 0.3\n"));
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let mut gw = start_gateway_with_clock(&cfg, dir, ledger, clock).await;
    let text = "hi, how are you today?";
    let r = ask(&gw, text).await;
    assert_eq!(
        header(&r, "x-switchyard-model"),
        "big",
        "within pace: the route's own threshold"
    );
    assert!(!header(&r, "x-switchyard-route-reason").contains("paced"));
    // The charge lands when the ledger row is recorded; wait for it (event-driven, generous deadline).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = ask(&gw, text).await;
        let reason = header(&r, "x-switchyard-route-reason");
        if reason.contains("paced:threshold") {
            assert_eq!(header(&r, "x-switchyard-model"), "cheap", "{reason}");
            let t: f64 = reason
                .split("t=")
                .nth(1)
                .and_then(|s| s.split(';').next())
                .and_then(|s| s.parse().ok())
                .expect("threshold in the reason");
            assert!(t < 0.999 && t > 0.0, "{reason}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pacing never applied: {reason}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    now.fetch_add(0, Ordering::Relaxed);
    gw.stop().await;
}

#[tokio::test]
async fn zero_config_auto_is_routed_by_the_predictor_over_sockets() {
    // No `[routes.*]`: `auto` is a predictor route over the configured models
    // ranked by price (`fast` economy, `unpriced` frontier).
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let r = ask(&gw, "hi, how are you today?").await;
    assert_eq!(header(&r, "x-switchyard-model"), "fast");
    assert_eq!(header(&r, "x-switchyard-tier"), "economy");
    let reason = header(&r, "x-switchyard-route-reason");
    assert!(reason.starts_with("classifier;predictor:p="), "{reason}");
    assert!(reason.contains(">=t="), "{reason}");
    let r = ask(
        &gw,
        "Write a Python function that merges two sorted lists in O(n), with unit tests.",
    )
    .await;
    assert_eq!(header(&r, "x-switchyard-model"), "unpriced");
    assert_eq!(header(&r, "x-switchyard-tier"), "frontier");
    assert_eq!(header(&r, "x-switchyard-task"), "code_generation");
    let reason = header(&r, "x-switchyard-route-reason");
    assert!(
        reason.contains(";predictor:p=") && reason.contains("<t="),
        "{reason}"
    );
    let m = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for tier in ["economy", "frontier"] {
        assert!(
            m.contains(&format!(
                "switchyard_routed_total{{route=\"auto\",tier=\"{tier}\"}} 1\n"
            )),
            "{m}"
        );
    }
    assert!(
        m.contains("switchyard_route_strong_share{route=\"auto\"} 0.5\n"),
        "{m}"
    );
    gw.stop().await;
}
