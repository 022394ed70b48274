//! Our Prometheus registry (`src/metrics.rs`) against `prometheus-client` doing
//! the same per-row work: one ledger row updates the request counter, the
//! latency and TTFT histograms, input, cached and output token counters and
//! the cost counter of its (route, task, model, provider, status) series, from
//! several threads at once. Prints ns per row for both.
//!
//! `prometheus-client`'s families look up a series by an owned label set, so
//! each row builds one (five `String`s); ours looks it up by borrowed labels
//! and allocates only when a series is new.
//!
//! Usage: metrics_bench [ROWS_PER_THREAD] [THREADS]

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use switchyard::accounting::ledger::{LedgerEntry, RoutingRecord};
use switchyard::api::usage::Usage;

const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

fn row(i: usize) -> LedgerEntry {
    let models = ["gpt-5.4-mini", "gpt-5.4", "claude-sonnet-4-5", "deepseek-chat"];
    let m = models[i % models.len()];
    let mut e = LedgerEntry::pending(
        String::new(),
        0,
        "chat.completions",
        "auto".into(),
        Arc::from(m),
        Arc::from("openai"),
        Arc::from(m),
        false,
    );
    e.status = if i % 50 == 0 { 502 } else { 200 };
    e.latency_ms = 120.0 + (i % 300) as f64;
    e.ttft_ms = Some(40.0);
    e.usage = Some(Usage {
        prompt_tokens: 1000,
        completion_tokens: 200,
        cached_tokens: 400,
        ..Default::default()
    });
    e.cost_usd = Some(0.0034);
    e.routing = Some(Box::new(RoutingRecord {
        route: "auto".into(),
        task: ["simple_chat", "code_generation", "summarization"][i % 3].into(),
        confidence: 0.9,
        complexity: 0.2,
        tier: "economy".into(),
        reason: "classifier".into(),
    }));
    e
}

type Labels = Vec<(String, String)>;

struct Client {
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    ttft: Family<Labels, Histogram>,
    input: Family<Labels, Counter>,
    cached: Family<Labels, Counter>,
    output: Family<Labels, Counter>,
    cost: Family<Labels, Counter<f64, AtomicU64>>,
}

fn hist() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Client {
    fn new(reg: &mut Registry) -> Client {
        let c = Client {
            requests: Family::default(),
            latency: Family::new_with_constructor(hist as fn() -> Histogram),
            ttft: Family::new_with_constructor(hist as fn() -> Histogram),
            input: Family::default(),
            cached: Family::default(),
            output: Family::default(),
            cost: Family::default(),
        };
        reg.register("switchyard_requests", "Upstream attempts", c.requests.clone());
        c
    }

    fn observe(&self, e: &LedgerEntry) {
        let r = e.routing.as_deref();
        let labels: Labels = vec![
            ("route".into(), r.map_or("", |r| r.route.as_str()).into()),
            ("task".into(), r.map_or("", |r| r.task.as_str()).into()),
            ("model".into(), e.served_model.to_string()),
            ("provider".into(), e.provider.to_string()),
            ("status".into(), e.status.to_string()),
        ];
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(e.latency_ms / 1e3);
        if let Some(t) = e.ttft_ms {
            self.ttft.get_or_create(&labels).observe(t / 1e3);
        }
        if let Some(u) = &e.usage {
            self.input.get_or_create(&labels).inc_by(u.prompt_tokens);
            self.cached.get_or_create(&labels).inc_by(u.cached_tokens);
            self.output.get_or_create(&labels).inc_by(u.completion_tokens);
        }
        if let Some(c) = e.cost_usd {
            self.cost.get_or_create(&labels).inc_by(c);
        }
    }
}

fn run(threads: usize, f: impl Fn(usize) + Sync) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let f = &f;
            s.spawn(move || f(k));
        }
    });
    t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let threads: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2);
    let rows: Vec<LedgerEntry> = (0..1024).map(row).collect();

    let ours = switchyard::metrics::Metrics::new();
    let mut reg = Registry::default();
    let theirs = Client::new(&mut reg);
    // Warm both (every series created).
    for e in &rows {
        ours.observe(e);
        theirs.observe(e);
    }
    let mut best = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let a = run(threads, |k| {
            for i in 0..n {
                ours.observe(&rows[(i + k * 7) % rows.len()]);
            }
        });
        let b = run(threads, |k| {
            for i in 0..n {
                theirs.observe(&rows[(i + k * 7) % rows.len()]);
            }
        });
        best = (best.0.min(a), best.1.min(b));
    }
    // Wall time per row on each thread (the threads run in parallel).
    let per = |s: f64| s * 1e9 / n as f64;
    println!(
        "{{\"rows_per_thread\":{n},\"threads\":{threads},\"ours_ns_per_row\":{:.0},\"prometheus_client_ns_per_row\":{:.0}}}",
        per(best.0),
        per(best.1)
    );
}
