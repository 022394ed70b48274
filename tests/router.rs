//! The tier predictor through the CLI: `classify --threshold` on a
//! two-model predictor route, `eval-routing` skipping without data, and the
//! training-set leakage and reproducibility checks (when
//! `../shared/routing-data` is present).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn data_dir() -> Option<PathBuf> {
    let d = repo().join("../shared/routing-data");
    if switchyard::routing::routedata::present(&d) {
        Some(d)
    } else {
        eprintln!("skipped: ../shared/routing-data is absent");
        None
    }
}

const CONFIG: &str = r#"
[providers.sim]
type = "simulated"
models = ["*"]
[models.cheap]
provider = "sim"
tier = "economy"
price = { input = 0.5, output = 1.5 }
[models.dear]
provider = "sim"
tier = "frontier"
price = { input = 10.0, output = 30.0 }
[routing]
tiers = ["economy", "frontier"]
[routes.auto]
models = ["dear", "cheap"]
"#;

const PROMPTS: [&str; 16] = [
    "hi! how are you?",
    "Write a haiku about autumn leaves.",
    "What is the capital of Australia?",
    "Translate 'good morning' into French.",
    "Prove that there are infinitely many primes.",
    "Write a Python function that merges two sorted lists in O(n).",
    "A train leaves at 3pm going 60 mph; another at 4pm going 80 mph. When does the second catch up?",
    "Summarize the plot of Hamlet in three sentences.",
    "Explain the difference between TCP and UDP to a beginner.",
    "Solve for x: 3x^2 - 12x + 9 = 0, showing every step.",
    "Give me ten names for a coffee shop.",
    "Which of these is a mammal?\nA. shark\nB. dolphin\nC. trout\nD. eel\nAnswer:",
    "Implement a lock-free multi-producer queue in Rust and explain the memory orderings.",
    "Tell me a joke about cats.",
    "Compose an engaging travel blog post about a recent trip to Hawaii.",
    "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies? Explain.",
];

fn classify(config: &Path, input: &Path, threshold: f32) -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .args(["classify", "--config"])
        .arg(config)
        .args(["--route", "auto", "--threshold", &threshold.to_string()])
        .arg(input)
        .output()
        .expect("run switchyard classify");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

#[test]
fn threshold_sweep_moves_the_dear_share_from_0_to_100_percent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).expect("write config");
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = PROMPTS
        .iter()
        .map(|p| serde_json::json!({"messages": [{"role": "user", "content": p}]}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).expect("write input");
    let mut last = -1.0f64;
    let mut shares = Vec::new();
    for i in 0..=20 {
        let t = i as f32 / 20.0;
        let rows = classify(&cfg, &input, t);
        assert_eq!(rows.len(), PROMPTS.len());
        for r in &rows {
            for k in ["task", "tier", "model", "reason"] {
                assert!(r.get(k).is_some_and(|v| !v.is_null()), "{k} missing in {r}");
            }
            assert!(
                r["reason"].as_str().is_some_and(|s| s.contains("predictor:p=")),
                "{r}"
            );
        }
        let dear = rows.iter().filter(|r| r["model"] == "dear").count();
        for r in &rows {
            let tier = if r["model"] == "dear" {
                "frontier"
            } else {
                "economy"
            };
            assert_eq!(r["tier"], tier, "{r}");
        }
        let share = dear as f64 / rows.len() as f64;
        assert!(share >= last, "share fell from {last} to {share} at T={t}");
        last = share;
        shares.push(share);
    }
    assert_eq!(shares[0], 0.0, "T=0 always picks the cheapest");
    assert_eq!(shares[20], 1.0, "T=1 always picks the dearest");
    assert!(
        shares.iter().any(|s| *s > 0.0 && *s < 1.0),
        "some threshold splits the traffic: {shares:?}"
    );
}

/// The shipped weights are the task-map prior: every request the seed task
/// map sends to the frontier tier (code, reasoning) gets a lower `p_cheap`
/// than every other request, and the threshold sweep passes through them first.
#[test]
fn shipped_predictor_orders_strong_tasks_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).expect("write config");
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = PROMPTS
        .iter()
        .map(|p| serde_json::json!({"messages": [{"role": "user", "content": p}]}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).expect("write input");
    let rows = classify(&cfg, &input, 0.5);
    let (mut strong, mut other) = (Vec::new(), Vec::new());
    for r in &rows {
        let p = r["p_cheap"].as_f64().unwrap_or_else(|| panic!("p_cheap in {r}"));
        match r["task"].as_str() {
            Some("code_generation" | "complex_reasoning") => strong.push(p),
            _ => other.push(p),
        }
    }
    assert!(strong.len() >= 3 && other.len() >= 3, "{rows:?}");
    let max_strong = strong.iter().copied().fold(f64::MIN, f64::max);
    let min_other = other.iter().copied().fold(f64::MAX, f64::min);
    assert!(
        max_strong < min_other,
        "strong-task p {strong:?} vs others {other:?}"
    );
}

#[test]
fn per_task_entries_still_constrain_the_candidates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    let text = format!("{CONFIG}[routes.auto.tasks.code_generation]\nmodels = [\"dear\"]\n");
    std::fs::write(&cfg, text).expect("write config");
    let input = dir.path().join("in.jsonl");
    let line = serde_json::json!({"messages": [{"role": "user", "content": "```rust\nfn main() { let x: Vec<u8> = vec![]; println!(\"{:?}\", x); }\n```\nFix the bug in this Rust code."}]});
    std::fs::write(&input, line.to_string()).expect("write input");
    let rows = classify(&cfg, &input, 0.0);
    assert_eq!(rows[0]["task"], "code_generation", "{}", rows[0]);
    assert_eq!(rows[0]["model"], "dear", "{}", rows[0]);
    assert!(rows[0]["reason"].as_str().is_some_and(|r| r.contains("task_map")));
}

#[test]
fn bad_thresholds_are_config_errors() {
    for (extra, path) in [
        ("threshold = 1.5\n", "routes.auto.threshold"),
        ("strong_share = -0.1\n", "routes.auto.strong_share"),
        (
            "threshold = 0.5\nstrong_share = 0.5\n",
            "routes.auto.strong_share",
        ),
    ] {
        let text = CONFIG.replace(
            "models = [\"dear\", \"cheap\"]\n",
            &format!("models = [\"dear\", \"cheap\"]\n{extra}"),
        );
        let raw = switchyard::config::parse_toml(&text).expect("parses");
        let errs =
            switchyard::config::validate(raw, switchyard::config::ConfigSource::Environment, &|_| None)
                .expect_err("invalid");
        assert!(errs.0.iter().any(|e| e.path == path), "{extra}: {:?}", errs.0);
    }
}

#[test]
fn eval_routing_skips_cleanly_without_data() {
    let out = Command::new(BIN)
        .current_dir(repo())
        .args(["eval-routing", "--data", "/nonexistent/routing-data"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("skipped"), "{s}");
}

fn committed_hashes() -> BTreeSet<u64> {
    let text =
        std::fs::read_to_string(repo().join("data/router/train_prompts.fnv64")).expect("hash list committed");
    switchyard::routing::train_router::parse_hash_list(&text)
}

#[test]
fn no_test_prompt_was_trained_on() {
    let hashes = committed_hashes();
    assert!(hashes.len() > 10_000, "the hash list covers the training prompts");
    let Some(dir) = data_dir() else { return };
    let tests = switchyard::routing::routedata::test_prompt_texts(&dir).expect("test sets load");
    assert!(tests.len() > 1000);
    let leaked: Vec<&String> = tests
        .iter()
        .filter(|t| hashes.contains(&switchyard::routing::routedata::prompt_hash(t)))
        .collect();
    assert!(
        leaked.is_empty(),
        "{} test prompts are in the training set, e.g. {:?}",
        leaked.len(),
        leaked.first()
    );
    // And the list really is of the training prompts.
    let train = switchyard::routing::routedata::load_train(&dir).expect("train sets load");
    let known = train
        .iter()
        .filter(|e| hashes.contains(&switchyard::routing::routedata::prompt_hash(&e.input.last_user)))
        .count();
    assert!(
        known as f64 >= 0.99 * train.len() as f64,
        "{known} of {}",
        train.len()
    );
}

#[test]
fn eval_routing_reports_every_set() {
    let Some(dir) = data_dir() else { return };
    let out = Command::new(BIN)
        .current_dir(repo())
        .args([
            "eval-routing",
            "--json",
            "--no-progress",
            "--sets",
            "mt_bench",
            "--data",
        ])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let sets = v.as_array().expect("array");
    assert_eq!(sets.len(), 1);
    for s in sets {
        let apgr = s["router"]["apgr"].as_f64().expect("apgr");
        let oracle = s["oracle"]["apgr"].as_f64().expect("oracle");
        assert!((0.0..=1.0).contains(&apgr) && apgr <= oracle + 1e-9, "{s}");
        assert!(s["prompts"].as_u64().is_some_and(|n| n > 50));
        assert!(s["all_strong"]["cost_usd"].as_f64() > s["all_weak"]["cost_usd"].as_f64());
    }
    assert_eq!(
        sets[0]["prompts"], 72,
        "MT-Bench without RouteLLM's 8 contaminated questions"
    );
}

#[test]
fn zero_config_auto_routes_by_the_predictor() {
    // No `[routes.*]`: `auto` is a predictor route over the configured tiers
    // (one candidate per tier, cheapest first), at the default strong_share.
    let text = r#"
[providers.p]
type = "simulated"
[models.small]
provider = "p"
tier = "economy"
price = { input = 0.1, output = 0.4 }
[models.large]
provider = "p"
tier = "frontier"
price = { input = 5.0, output = 25.0 }
[models.medium]
provider = "p"
tier = "quality"
price = { input = 1.0, output = 4.0 }
[models.small2]
provider = "p"
tier = "economy"
price = { input = 0.2, output = 0.8 }
"#;
    let raw = switchyard::config::parse_toml(text).expect("parses");
    let cfg = switchyard::config::validate(raw, switchyard::config::ConfigSource::Environment, &|_| None)
        .expect("valid");
    let auto = &cfg.routing.routes["auto"];
    assert!(auto.built_in);
    let pr = auto
        .predicted
        .as_ref()
        .expect("the zero-config auto route is a predictor route");
    assert_eq!(pr.tiers, ["economy", "quality", "frontier"]);
    assert_eq!(pr.models, ["small", "medium", "large"]);
    // A tier's other models are its first fallbacks.
    assert_eq!(pr.chains[0], ["small", "small2", "medium", "large"]);
    assert_eq!(pr.chains[2], ["large", "medium", "small", "small2"]);
    let default = cfg.routing.predictor.threshold_for_share(0.5);
    assert_eq!(pr.threshold, default);
    assert_eq!(pr.strong_share, Some(0.5));
    let routing = &cfg.routing;
    let chat = switchyard::routing::classifier::ClassifyInput::user("hello there, how are you today?");
    let d = routing.decide(auto, &chat, None);
    assert_eq!(
        d.chain.first().map(String::as_str),
        Some("small"),
        "simple chat goes to economy"
    );
    let reason = d.reason_text(false);
    assert!(reason.contains(";predictor:p="), "{reason}");
    let code = switchyard::routing::classifier::ClassifyInput::user(
        "Write a Python function that parses an ISO 8601 date string and returns a datetime, with unit tests.",
    );
    let d = routing.decide(auto, &code, None);
    assert_eq!(
        d.chain.first().map(String::as_str),
        Some("large"),
        "code goes to the frontier tier"
    );
    assert_eq!(d.tier, "frontier");
    // The one knob: 0 always economy, 1 always frontier.
    for input in [&chat, &code] {
        assert_eq!(routing.decide_at(auto, input, None, Some(0.0)).tier, "economy");
        assert_eq!(routing.decide_at(auto, input, None, Some(1.0)).tier, "frontier");
    }
    // One configured chat model: the route serves it, with no predictor call.
    let text = r#"
[providers.p]
type = "simulated"
[models.only]
provider = "p"
price = { input = 1.0, output = 4.0 }
"#;
    let raw = switchyard::config::parse_toml(text).expect("parses");
    let cfg = switchyard::config::validate(raw, switchyard::config::ConfigSource::Environment, &|_| None)
        .expect("valid");
    let auto = &cfg.routing.routes["auto"];
    let d = cfg.routing.decide(auto, &code, None);
    assert_eq!(d.chain, ["only"]);
    assert!(d.predicted.is_none());
    assert!(!d.reason_text(false).contains("task_map"));
}
