//! Routing decision latency on a predictor route: the whole
//! `Routing::decide` (one classifier pass for the task and its probabilities,
//! the tier predictor and the candidate pick), p50 / p99 per call for 1 KB and 8 KB prompts.
//!
//! Usage: cargo run --release --example router_bench [-- ITERATIONS]

use std::hint::black_box;
use std::time::Instant;

use switchyard::routing::classifier::ClassifyInput;

const CONFIG: &str = r#"
[providers.sim]
type = "simulated"
models = ["*"]
[models.weak]
provider = "sim"
tier = "economy"
price = { input = 0.6, output = 0.6 }
[models.strong]
provider = "sim"
tier = "frontier"
price = { input = 10.0, output = 30.0 }
[routing]
tiers = ["economy", "frontier"]
[routes.auto]
models = ["weak", "strong"]
threshold = 0.5
"#;

fn sized(seed: &str, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + seed.len());
    while s.len() < bytes {
        s.push_str(seed);
    }
    let mut cut = bytes;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let raw = switchyard::config::parse_toml(CONFIG).unwrap_or_else(|e| panic!("bench config: {e:?}"));
    let cfg = switchyard::config::validate(raw, switchyard::config::ConfigSource::Environment, &|_| None)
        .unwrap_or_else(|e| panic!("bench config: {e:?}"));
    let routing = &cfg.routing;
    let route = &routing.routes["auto"];
    let kinds = [
        ("prose", "Please summarize the following meeting notes for the team and list the decisions we made about the launch date, budget and hiring. "),
        ("code", "fn parse(line: &str) -> Vec<String> {\n    line.split(',').map(|s| s.trim().to_string()).collect()\n}\n// why does this fail on quoted commas?\n"),
        ("mixed", "Translate into Japanese: the train leaves at nine. 列車は九時に出発します。 Then check the grammar. "),
        ("math", "Let f(x) = 3x^2 + 2x - 5. Find all x such that f(x) = 0, then prove the sum of the roots is -2/3. "),
    ];
    println!(
        "{:<6} {:>6} {:>10} {:>10} {:>10}",
        "kind", "bytes", "p50_us", "p99_us", "max_us"
    );
    for size in [1024usize, 8192] {
        let mut all = Vec::with_capacity(iters * kinds.len());
        for (name, seed) in kinds {
            let text = sized(seed, size);
            let input = ClassifyInput {
                system: "You are a helpful assistant.",
                last_user: &text,
                has_tools: false,
                json_schema: false,
                turns: 2,
                context: "",
            };
            for _ in 0..1_000 {
                black_box(routing.decide(route, black_box(&input), None));
            }
            let mut lat = Vec::with_capacity(iters);
            for _ in 0..iters {
                let t = Instant::now();
                black_box(routing.decide(route, black_box(&input), None));
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat.sort_unstable();
            let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] as f64 / 1e3;
            println!(
                "{:<6} {:>6} {:>10.2} {:>10.2} {:>10.2}",
                name,
                size,
                q(0.5),
                q(0.99),
                q(1.0)
            );
            all.extend(lat);
        }
        all.sort_unstable();
        let q = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize] as f64 / 1e3;
        println!(
            "{:<6} {:>6} {:>10.2} {:>10.2} {:>10.2}",
            "ALL",
            size,
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
}
