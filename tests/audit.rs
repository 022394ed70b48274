//! `switchyard audit` end to end: a generated log of known composition
//! through the real binary, checked against costs computed here from the
//! shipped price table (not with the crate's own cost code).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

/// USD per 1M tokens, read from assets/prices.toml by this test.
#[derive(Clone, Copy, Debug)]
struct P {
    input: f64,
    output: f64,
    cached: f64,
    cache_write: f64,
}

fn price_table(extra: Option<&str>) -> HashMap<String, P> {
    let mut out = HashMap::new();
    let mut texts =
        vec![
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/prices.toml"))
                .expect("prices.toml"),
        ];
    texts.extend(extra.map(str::to_string));
    for text in texts {
        let v: toml::Value = toml::from_str(&text).expect("toml");
        for (name, p) in v["prices"].as_table().expect("prices table") {
            let f = |k: &str| p.get(k).and_then(toml::Value::as_float);
            let input = f("input").expect("input");
            out.insert(
                name.clone(),
                P {
                    input,
                    output: f("output").expect("output"),
                    cached: f("cached_input").unwrap_or(input),
                    cache_write: f("cache_write").unwrap_or(input),
                },
            );
        }
    }
    out
}

/// One request's token counts, normalised (prompt includes cached and cache-write tokens).
#[derive(Clone, Copy, Debug)]
struct Tok {
    prompt: u64,
    cached: u64,
    cache_write: u64,
    output: u64,
}

fn cost(p: P, t: Tok) -> f64 {
    let fresh = t.prompt - t.cached - t.cache_write;
    (fresh as f64 * p.input
        + t.cached as f64 * p.cached
        + t.cache_write as f64 * p.cache_write
        + t.output as f64 * p.output)
        / 1e6
}

/// A generated log line with what the test expects of it.
struct Req {
    line: Value,
    /// Expected task.
    task: &'static str,
    /// Logged model (None: unpriced).
    model: &'static str,
    tok: Tok,
}

fn openai_usage(t: Tok) -> Value {
    json!({"prompt_tokens": t.prompt, "completion_tokens": t.output, "total_tokens": t.prompt + t.output,
           "prompt_tokens_details": {"cached_tokens": t.cached},
           "completion_tokens_details": {"reasoning_tokens": t.output / 4}})
}

const T0: i64 = 1_793_491_200; // 2026-11-01T00:00:00Z

/// The log: code generation (code fences), translation, simple chat,
/// labelled lines, Anthropic-style usage, the wrapped shape, an unpriced
/// model. Timestamps (when `timestamps`) span exactly `span_secs`.
fn composition(timestamps: bool, span_secs: i64) -> Vec<Req> {
    let mut reqs = Vec::new();
    let chats = [
        "hi there!",
        "Hello, how are you today?",
        "thanks, that was helpful",
        "good morning :)",
        "what's up?",
    ];
    for i in 0..30u64 {
        let tok = Tok {
            prompt: 1_200 + 10 * i,
            cached: if i % 3 == 0 { 512 } else { 0 },
            cache_write: 0,
            output: 400 + i,
        };
        let prompt = format!(
            "Why does this fail (case {i})?\n```python\nxs = [1, 2, {i}]\nprint(xs[{}])\n```",
            i + 5
        );
        reqs.push(Req {
            line: json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": prompt}],
                         "usage": openai_usage(tok)}),
            task: "code_generation",
            model: "gpt-5.5",
            tok,
        });
    }
    for i in 0..20u64 {
        let tok = Tok {
            prompt: 300 + i,
            cached: 0,
            cache_write: 0,
            output: 120 + 2 * i,
        };
        let prompt = format!("Translate to French: where is train station number {i}?");
        reqs.push(Req {
            line: json!({"model": "gpt-5.5", "messages": [
                            {"role": "system", "content": "You are a helpful assistant."},
                            {"role": "user", "content": prompt}],
                         "usage": openai_usage(tok)}),
            task: "translation",
            model: "gpt-5.5",
            tok,
        });
    }
    for i in 0..25u64 {
        let tok = Tok {
            prompt: 40 + i,
            cached: 0,
            cache_write: 0,
            output: 30 + i,
        };
        reqs.push(Req {
            line: json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": chats[i as usize % chats.len()]}],
                         "usage": openai_usage(tok)}),
            task: "simple_chat",
            model: "gpt-5.4",
            tok,
        });
    }
    // Labelled: the text would not say "translation"; the label does.
    for i in 0..6u64 {
        let tok = Tok {
            prompt: 500,
            cached: 100,
            cache_write: 0,
            output: 250 + i,
        };
        reqs.push(Req {
            line: json!({"model": "gpt-5.4", "task": "translation",
                         "messages": [{"role": "user", "content": format!("hello number {i}")}],
                         "usage": openai_usage(tok)}),
            task: "translation",
            model: "gpt-5.4",
            tok,
        });
    }
    // Anthropic usage in the wrapped shape, labelled code_generation.
    for i in 0..4u64 {
        let (input, read, write, output) = (100 + i, 2_000, 300, 700);
        let tok = Tok {
            prompt: input + read + write,
            cached: read,
            cache_write: write,
            output,
        };
        reqs.push(Req {
            line: json!({"task": "code_generation",
                         "request": {"model": "auto", "messages": [{"role": "user", "content": "refactor it"}]},
                         "response": {"model": "claude-sonnet-4.6", "usage": {
                             "input_tokens": input, "output_tokens": output,
                             "cache_read_input_tokens": read, "cache_creation_input_tokens": write}}}),
            task: "code_generation",
            model: "claude-sonnet-4.6",
            tok,
        });
    }
    // A model with no price anywhere.
    for i in 0..3u64 {
        let tok = Tok {
            prompt: 800,
            cached: 0,
            cache_write: 0,
            output: 100 + i,
        };
        reqs.push(Req {
            line: json!({"model": "acme-finetune-7b", "task": "simple_chat",
                         "messages": [{"role": "user", "content": "ok"}], "usage": openai_usage(tok)}),
            task: "simple_chat",
            model: "acme-finetune-7b",
            tok,
        });
    }
    if timestamps {
        let n = reqs.len() as i64;
        for (i, r) in reqs.iter_mut().enumerate() {
            let ts = T0 + span_secs * i as i64 / (n - 1);
            // Alternate the accepted shapes: `created` (Unix seconds) and RFC 3339 `timestamp`.
            if i % 2 == 0 {
                r.line["created"] = json!(ts);
            } else {
                r.line["timestamp"] = json!(rfc3339(ts));
            }
        }
    }
    reqs
}

fn rfc3339(ts: i64) -> String {
    let (days, rem) = (ts / 86_400, ts % 86_400);
    // 2026-11-01 is day 20758 since 1970-01-01; the test spans stay within November 2026.
    let day_of_nov = days - 20_758 + 1;
    assert!((1..=30).contains(&day_of_nov));
    format!(
        "2026-11-{day_of_nov:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Bad lines are put at these (1-based) line numbers.
const BAD_AT: [u64; 3] = [3, 40, 77];

fn write_log(dir: &Path, name: &str, reqs: &[Req]) -> std::path::PathBuf {
    let bad = [
        "{\"model\": \"gpt-5.5\", \"messages\": [",
        "this is not json",
        "{\"model\": \"gpt-5.5\", \"messages\": [{\"role\": \"user\", \"content\": \"no usage\"}]}",
    ];
    let mut out = String::new();
    let mut next = reqs.iter();
    let mut line_no = 0u64;
    let mut bad_i = 0;
    loop {
        line_no += 1;
        if BAD_AT.contains(&line_no) {
            out.push_str(bad[bad_i]);
            bad_i += 1;
        } else if let Some(r) = next.next() {
            out.push_str(&r.line.to_string());
        } else {
            break;
        }
        out.push('\n');
    }
    out.push('\n'); // a blank line is not a bad line
    let path = dir.join(name);
    std::fs::write(&path, out).expect("write log");
    path
}

const CONFIG: &str = r#"
[providers.sim]
type = "simulated"
models = ["*"]

[models.big]
provider = "sim"
model = "gpt-5.5"
tier = "frontier"

[models.mid]
provider = "sim"
model = "gpt-5.4"
tier = "quality"

[models.small]
provider = "sim"
model = "gpt-5.4-mini"
tier = "economy"

[routing]
tiers = ["economy", "quality", "frontier"]

[routes.auto]
default_task = "simple_chat"
[routes.auto.tasks.simple_chat]
models = ["small"]
[routes.auto.tasks.code_generation]
models = ["big", "mid"]
[routes.auto.tasks.translation]
models = ["mid"]
"#;

/// Upstream id of the model the test config routes each task to.
fn routed(task: &str) -> &'static str {
    match task {
        "code_generation" => "gpt-5.5",
        "translation" => "gpt-5.4",
        _ => "gpt-5.4-mini",
    }
}

fn run(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("audit")
        .args(args)
        .arg("--json")
        .output()
        .expect("run switchyard");
    assert!(
        out.status.success(),
        "switchyard audit {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)))
}

fn close(got: &Value, want: f64, what: &str) {
    let g = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {got}"));
    assert!(
        (g - want).abs() <= 1e-9 * want.abs().max(1e-6),
        "{what}: got {g}, want {want}"
    );
}

#[derive(Default, Debug)]
struct Expect {
    requests: u64,
    labelled: u64,
    prompt: u64,
    cached: u64,
    output: u64,
    /// actual, frontier, sibling, routing
    cost: [f64; 4],
    unpriced: [u64; 4],
    frontier: [u64; 4],
    /// Over requests priced both as logged and under the strategy.
    both: [(f64, f64); 4],
}

/// Per task and in total, what the audit must report.
fn expect(reqs: &[Req], prices: &HashMap<String, P>) -> (HashMap<&'static str, Expect>, Expect) {
    let frontier_models = ["gpt-5.5"];
    let mut per: HashMap<&'static str, Expect> = HashMap::new();
    let mut total = Expect::default();
    for r in reqs {
        let models = [r.model, "gpt-5.5", "gpt-5.4", routed(r.task)];
        let costs: Vec<Option<f64>> = models
            .iter()
            .map(|m| prices.get(*m).map(|p| cost(*p, r.tok)))
            .collect();
        let labelled = r.line.get("task").is_some();
        for e in [per.entry(r.task).or_default(), &mut total] {
            e.requests += 1;
            e.labelled += u64::from(labelled);
            e.prompt += r.tok.prompt;
            e.cached += r.tok.cached;
            e.output += r.tok.output;
            for s in 0..4 {
                match costs[s] {
                    Some(c) => e.cost[s] += c,
                    None => e.unpriced[s] += 1,
                }
                if frontier_models.contains(&models[s]) {
                    e.frontier[s] += 1;
                }
                if let (Some(a), Some(c)) = (costs[0], costs[s]) {
                    e.both[s].0 += a;
                    e.both[s].1 += c;
                }
            }
        }
    }
    (per, total)
}

const KEYS: [&str; 4] = ["actual", "frontier", "sibling", "routing"];

fn check_figures(report: &Value, reqs: &[Req], prices: &HashMap<String, P>, factor: Option<f64>) {
    let (per, total) = expect(reqs, prices);
    assert_eq!(report["requests"], json!(total.requests));
    assert_eq!(report["labelled_requests"], json!(total.labelled));
    let tasks = report["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), per.len(), "tasks: {tasks:#?}");
    for t in tasks {
        let name = t["task"].as_str().expect("task name");
        let e = per.get(name).unwrap_or_else(|| panic!("unexpected task {name}"));
        assert_eq!(t["requests"], json!(e.requests), "{name} requests");
        assert_eq!(t["labelled_requests"], json!(e.labelled), "{name} labelled");
        assert_eq!(t["prompt_tokens"], json!(e.prompt), "{name} prompt tokens");
        assert_eq!(t["cached_tokens"], json!(e.cached), "{name} cached tokens");
        assert_eq!(t["completion_tokens"], json!(e.output), "{name} output tokens");
        for (s, k) in KEYS.iter().enumerate() {
            let f = &t["costs"][k];
            close(&f["cost_usd"], e.cost[s], &format!("{name} {k} cost"));
            assert_eq!(
                f["unpriced_requests"],
                json!(e.unpriced[s]),
                "{name} {k} unpriced"
            );
            assert_eq!(
                f["frontier_requests"],
                json!(e.frontier[s]),
                "{name} {k} frontier"
            );
            match factor {
                Some(x) => close(
                    &f["monthly_cost_usd"],
                    e.cost[s] * x,
                    &format!("{name} {k} monthly"),
                ),
                None => assert!(f["monthly_cost_usd"].is_null(), "{name} {k} monthly"),
            }
        }
        let routed_to = t["routed_to"].as_array().expect("routed_to");
        assert_eq!(routed_to.len(), 1, "{name}: {routed_to:?}");
        assert_eq!(routed_to[0]["requests"], json!(e.requests));
    }
    for (s, k) in KEYS.iter().enumerate() {
        let st = &report["strategies"][k];
        close(&st["cost_usd"], total.cost[s], &format!("total {k}"));
        assert_eq!(st["unpriced_requests"], json!(total.unpriced[s]), "{k} unpriced");
        close(
            &st["frontier_share"],
            total.frontier[s] as f64 / total.requests as f64,
            &format!("{k} frontier share"),
        );
        let (a, c) = total.both[s];
        close(&st["savings_usd"], a - c, &format!("{k} savings"));
        close(&st["savings_share"], (a - c) / a, &format!("{k} savings share"));
        match factor {
            Some(x) => {
                close(
                    &st["monthly_cost_usd"],
                    total.cost[s] * x,
                    &format!("{k} monthly"),
                );
                close(
                    &st["monthly_savings_usd"],
                    (a - c) * x,
                    &format!("{k} monthly savings"),
                );
            }
            None => assert!(st["monthly_cost_usd"].is_null()),
        }
    }
}

#[test]
fn audit_figures_match_the_price_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("audit.toml");
    std::fs::write(&cfg, CONFIG).expect("config");
    let reqs = composition(false, 0);
    let log = write_log(dir.path(), "log.jsonl", &reqs);
    let r = run(&[
        log.to_str().expect("utf-8 path"),
        "--config",
        cfg.to_str().expect("utf-8 path"),
        "--no-progress",
    ]);
    let prices = price_table(None);
    check_figures(&r, &reqs, &prices, None);
    assert_eq!(r["period"]["basis"], "log");
    assert_eq!(r["bad_lines"], json!(BAD_AT.len()));
    let nums: Vec<u64> = r["bad_line_samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|b| b["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(nums, BAD_AT);
    assert_eq!(r["lines"], json!(reqs.len() + BAD_AT.len() + 1));
    // The unpriced model is reported, not costed as $0.
    let finetune = r["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["model"] == "acme-finetune-7b")
        .expect("unpriced model listed");
    assert!(finetune["cost_usd"].is_null());
    assert_eq!(finetune["requests"], json!(3));
    assert!(r["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .any(|n| n.as_str().is_some_and(|s| s.contains("acme-finetune-7b"))));
    // The routing strategy uses the route's first model per task.
    let route_of = |task: &str| {
        r["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["task"] == task))
            .map(|t| t["routed_to"][0]["model"].clone())
    };
    assert_eq!(route_of("code_generation"), Some(json!("big")));
    assert_eq!(route_of("translation"), Some(json!("mid")));
    assert_eq!(route_of("simple_chat"), Some(json!("small")));
}

#[test]
fn prices_file_replays_the_traffic() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("audit.toml");
    std::fs::write(&cfg, CONFIG).expect("config");
    let reqs = composition(false, 0);
    let log = write_log(dir.path(), "log.jsonl", &reqs);
    // A price hike for gpt-5.4 and a price for the fine-tune.
    let hike = "as_of = \"2027-01-01\"\n\
                [prices.\"gpt-5.4\"]\ninput = 4.0\noutput = 24.0\ncached_input = 0.4\n\
                [prices.\"acme-finetune-7b\"]\ninput = 1.0\noutput = 2.0\n";
    let prices_path = dir.path().join("hike.toml");
    std::fs::write(&prices_path, hike).expect("prices");
    let base = run(&[
        log.to_str().expect("path"),
        "--config",
        cfg.to_str().expect("path"),
        "--no-progress",
    ]);
    let r = run(&[
        log.to_str().expect("path"),
        "--config",
        cfg.to_str().expect("path"),
        "--prices",
        prices_path.to_str().expect("path"),
        "--no-progress",
    ]);
    let hiked = price_table(Some(hike));
    check_figures(&r, &reqs, &hiked, None);
    assert_eq!(r["strategies"]["actual"]["unpriced_requests"], json!(0));
    assert_eq!(r["prices"]["overrides_as_of"], "2027-01-01");
    // The as-logged cost without the file is the first run's.
    close(
        &r["prices"]["actual_cost_without_overrides_usd"],
        base["strategies"]["actual"]["cost_usd"].as_f64().expect("cost"),
        "cost without overrides",
    );
    // gpt-5.4 costs 1.6x as much: the all-gpt-5.4 strategy goes up by that
    // much; the all-gpt-5.5 strategy does not move.
    let sib = |v: &Value| v["strategies"]["sibling"]["cost_usd"].as_f64().expect("cost");
    assert!(sib(&r) > sib(&base) * 1.5, "{} vs {}", sib(&r), sib(&base));
    close(
        &r["strategies"]["frontier"]["cost_usd"],
        base["strategies"]["frontier"]["cost_usd"].as_f64().expect("cost"),
        "frontier unchanged",
    );
}

#[test]
fn month_scaling_from_timestamps_and_days() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("audit.toml");
    std::fs::write(&cfg, CONFIG).expect("config");
    let prices = price_table(None);
    // Timestamps spanning exactly 2 days: a month is 15 times the log.
    let reqs = composition(true, 2 * 86_400);
    let log = write_log(dir.path(), "ts.jsonl", &reqs);
    let args = [
        log.to_str().expect("path"),
        "--config",
        cfg.to_str().expect("path"),
        "--no-progress",
    ];
    let r = run(&args);
    assert_eq!(r["period"]["basis"], "timestamps");
    close(&r["period"]["days"], 2.0, "days");
    close(&r["period"]["month_factor"], 15.0, "factor");
    assert_eq!(r["period"]["first"], "2026-11-01T00:00:00Z");
    assert_eq!(r["period"]["last"], "2026-11-03T00:00:00Z");
    check_figures(&r, &reqs, &prices, Some(15.0));
    // --days overrides the span.
    let mut with_days = args.to_vec();
    with_days.extend(["--days", "10"]);
    let d = run(&with_days);
    assert_eq!(d["period"]["basis"], "days");
    check_figures(&d, &reqs, &prices, Some(3.0));
    // No timestamps: --days alone.
    let plain = composition(false, 0);
    let plain_log = write_log(dir.path(), "plain.jsonl", &plain);
    let p = run(&[
        plain_log.to_str().expect("path"),
        "--config",
        cfg.to_str().expect("path"),
        "--days",
        "7.5",
        "--no-progress",
    ]);
    check_figures(&p, &plain, &prices, Some(4.0));
}

#[test]
fn works_out_of_the_box_and_prints_the_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let reqs = composition(true, 86_400);
    let log = write_log(dir.path(), "log.jsonl", &reqs);
    // Built-in example config: code goes to claude-opus-4.7, translation to gpt-5.4.
    let r = run(&[log.to_str().expect("path"), "--no-progress"]);
    assert!(r["config"]
        .as_str()
        .is_some_and(|c| c.contains("switchyard.example.toml")));
    let task = |name: &str| {
        r["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["task"] == name).cloned())
            .unwrap_or_else(|| panic!("no task {name}"))
    };
    assert_eq!(
        task("code_generation")["routed_to"][0]["model"],
        "claude-opus-4.7"
    );
    assert_eq!(task("translation")["routed_to"][0]["model"], "gpt-5.4");
    assert_eq!(task("code_generation")["requests"], json!(34));
    close(
        &r["strategies"]["frontier"]["frontier_share"],
        1.0,
        "all gpt-5.5 is frontier",
    );
    close(
        &r["strategies"]["sibling"]["frontier_share"],
        0.0,
        "all gpt-5.4 is not",
    );

    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["audit", log.to_str().expect("path")])
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "| strategy | monthly cost | share of requests on frontier models |",
        "| all gpt-5.5 |",
        "| all gpt-5.4 |",
        "| Switchyard routing (route auto) |",
        "| code_generation |",
        "3 bad lines skipped (lines 3, 40, 77)",
        "acme-finetune-7b",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains('\r'));
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = write_log(dir.path(), "log.jsonl", &composition(false, 0));
    let log = log.to_str().expect("path");
    for (args, want) in [
        (vec![log, "--route", "nope"], "route \"nope\" does not exist"),
        (vec![log, "--days", "0"], "--days"),
        (vec!["/does/not/exist.jsonl"], "cannot open"),
        (
            vec![log, "--prices", "/does/not/exist.toml"],
            "cannot read prices file",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("audit")
            .args(&args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // A log with no usable line fails, but still reports.
    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "nope\n{}\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["audit", junk.to_str().expect("path"), "--json"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(v["bad_lines"], json!(2));
}
