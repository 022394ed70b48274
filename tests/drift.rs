//! `switchyard report --drift`: tokens per request this week vs last week,
//! per model and task, against a ledger written here with known rows.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::accounting::ledger::{open_sqlite, LedgerEntry, RoutingRecord};
use switchyard::api::usage::Usage;

const DAY_MS: i64 = 86_400_000;
/// 2026-11-27T00:00:00Z: the window end (`--until 2026-11-27`).
const END: i64 = 1_795_737_600_000;

fn entry(i: usize, ts_ms: i64, model: &str, task: Option<&str>, usage: Option<(u64, u64)>) -> LedgerEntry {
    LedgerEntry {
        request_id: format!("r{i}"),
        ts_ms,
        key_name: None,
        endpoint: "chat",
        requested_model: "auto".into(),
        served_model: Arc::from(model),
        provider: Arc::from("p"),
        upstream_model: Arc::from(model),
        status: if usage.is_some() { 200 } else { 502 },
        stream: false,
        latency_ms: 1.0,
        ttft_ms: None,
        usage: usage.map(|(p, c)| Usage {
            prompt_tokens: p,
            completion_tokens: c,
            ..Default::default()
        }),
        cost_usd: None,
        usage_estimated: false,
        error: usage.is_none().then(|| "upstream failed".to_string()),
        attempt: 1,
        experiment: None,
        cache_saved_usd: None,
        routing: task.map(|t| {
            Box::new(RoutingRecord {
                route: "auto".into(),
                task: t.into(),
                confidence: 0.9,
                complexity: 0.1,
                tier: "economy".into(),
                reason: "classifier".into(),
            })
        }),
    }
}

/// Last week is [END - 14d, END - 7d), this week [END - 7d, END).
async fn write_ledger(path: &std::path::Path) {
    let (h, w) = open_sqlite(path, 64, Duration::from_millis(10))
        .await
        .expect("open ledger");
    let last = END - 10 * DAY_MS;
    let this = END - 3 * DAY_MS;
    let mut rows = Vec::new();
    // gpt-5.4 / translation: output per request 50 -> 80 (+60%): flagged.
    for k in 0..4 {
        rows.push((
            last + k,
            "gpt-5.4",
            Some("translation"),
            Some((100, 40 + 5 * k as u64 * 2)),
        ));
        rows.push((
            this + k,
            "gpt-5.4",
            Some("translation"),
            Some((100, 70 + 5 * k as u64 * 2)),
        ));
    }
    // gpt-5.5 / code_generation: 1000/500 -> 1100/520 (+10%, +4%): not flagged.
    for k in 0..2 {
        rows.push((last + k, "gpt-5.5", Some("code_generation"), Some((1000, 500))));
        rows.push((this + k, "gpt-5.5", Some("code_generation"), Some((1100, 520))));
    }
    // gpt-5.4-mini / simple_chat: input 200 -> 100 (-50%): flagged.
    for k in 0..3 {
        rows.push((last + k, "gpt-5.4-mini", Some("simple_chat"), Some((200, 30))));
        rows.push((this + k, "gpt-5.4-mini", Some("simple_chat"), Some((100, 30))));
    }
    // Only this week, no routing: no change to compare.
    rows.push((this, "deepseek-v4-pro", None, Some((10, 10))));
    // Ignored: failed attempts (no usage), rows before the window and at or after its end.
    rows.push((this, "gpt-5.4", Some("translation"), None));
    rows.push((
        END - 15 * DAY_MS,
        "gpt-5.4",
        Some("translation"),
        Some((9_999, 9_999)),
    ));
    rows.push((END, "gpt-5.4", Some("translation"), Some((9_999, 9_999))));
    for (i, (ts, model, task, usage)) in rows.into_iter().enumerate() {
        h.record(entry(i, ts, model, task, usage));
    }
    drop(h);
    w.finish().await;
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("report")
        .args(args)
        .output()
        .expect("run switchyard")
}

fn row<'a>(rows: &'a [Value], model: &str, task: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["model"] == model && r["task"] == task)
        .unwrap_or_else(|| panic!("no row {model}/{task} in {rows:#?}"))
}

#[tokio::test]
async fn drift_flags_changes_over_the_threshold() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("ledger.sqlite");
    write_ledger(&path).await;
    let ledger = path.to_str().expect("utf-8 path");

    let out = run(&["--ledger", ledger, "--drift", "--until", "2026-11-27", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["end_ms"], json!(END));
    assert_eq!(v["this_week_start_ms"], json!(END - 7 * DAY_MS));
    assert_eq!(v["last_week_start_ms"], json!(END - 14 * DAY_MS));
    assert_eq!(v["threshold_pct"], json!(30.0));
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4, "{rows:#?}");

    let t = row(rows, "gpt-5.4", "translation");
    assert_eq!(t["last_week"]["requests"], json!(4));
    assert_eq!(
        t["this_week"]["requests"],
        json!(4),
        "the failed attempt does not count"
    );
    assert_eq!(t["last_week"]["input_per_request"], json!(100.0));
    assert_eq!(t["last_week"]["output_per_request"], json!(55.0));
    assert_eq!(t["this_week"]["output_per_request"], json!(85.0));
    let chg = t["output_change_pct"].as_f64().expect("change");
    assert!((chg - (85.0 - 55.0) / 55.0 * 100.0).abs() < 1e-9, "{chg}");
    assert_eq!(t["input_change_pct"], json!(0.0));
    assert_eq!(t["flagged"], json!(true));

    let c = row(rows, "gpt-5.5", "code_generation");
    assert!((c["input_change_pct"].as_f64().expect("in") - 10.0).abs() < 1e-9);
    assert!((c["output_change_pct"].as_f64().expect("out") - 4.0).abs() < 1e-9);
    assert_eq!(c["flagged"], json!(false));

    let s = row(rows, "gpt-5.4-mini", "simple_chat");
    assert!((s["input_change_pct"].as_f64().expect("in") + 50.0).abs() < 1e-9);
    assert_eq!(s["flagged"], json!(true));

    let d = row(rows, "deepseek-v4-pro", "(none)");
    assert_eq!(d["last_week"]["requests"], json!(0));
    assert!(d["input_change_pct"].is_null());
    assert_eq!(d["flagged"], json!(false));

    // Flagged rows first.
    let flags: Vec<bool> = rows.iter().map(|r| r["flagged"] == json!(true)).collect();
    assert_eq!(flags, [true, true, false, false]);

    // A higher threshold flags nothing; the table says so.
    let out = run(&[
        "--ledger",
        ledger,
        "--drift",
        "--until",
        "2026-11-27",
        "--drift-threshold",
        "70%",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 of 4 model/task pair(s) flagged"), "{text}");
    assert!(!text.contains("DRIFT"), "{text}");

    let out = run(&["--ledger", ledger, "--drift", "--until", "2026-11-27"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 of 4 model/task pair(s) flagged"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("gpt-5.4 ") && l.contains("translation"))
        .expect("translation line");
    assert!(line.contains("+54.5%") && line.ends_with("DRIFT"), "{line}");

    // Windows that do not fit the data are just empty.
    let out = run(&["--ledger", ledger, "--drift", "--until", "2020-01-01", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["rows"], json!([]));
}

#[test]
fn drift_argument_errors() {
    for (args, want) in [
        (vec!["--drift", "--since", "2026-11-01"], "cannot be used with"),
        (vec!["--drift-threshold", "30"], "--drift"),
        (
            vec!["--drift", "--drift-threshold", "lots", "--ledger", "/nope.sqlite"],
            "positive percentage",
        ),
        (vec!["--drift", "--ledger", "/does/not/exist.sqlite"], "no ledger"),
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
