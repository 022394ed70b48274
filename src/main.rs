//! The `switchyard` binary: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard::accounting::ledger;
use switchyard::config::{self, Config, ConfigSource, ProviderKind};
use tracing_subscriber::EnvFilter;

/// mimalloc returns memory freed after a burst of big requests to the OS,
/// where glibc's malloc kept it per thread arena (docs/reliability.md, "Memory").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Freed pages go back to the OS at once (mimalloc's `purge_delay` = 0)
/// rather than after a delay that only an allocating thread acts on: idle
/// worker threads would keep a burst's memory. It costs throughput (about
/// 10-20% at concurrency 64 in `bench/run.sh`, see bench/RESULTS.md);
/// `MIMALLOC_PURGE_DELAY=1000` in the environment (which wins) trades the
/// memory back for it. Measured with `bash bench/memory.sh`.
///
/// No transparent huge pages: mimalloc asked for them on its arena
/// (`madvise(MADV_HUGEPAGE)`), and each 2 MiB page it touched was then
/// resident whole, 11 MB of an idle gateway's 38 MB. mimalloc is built
/// without that `madvise` (its `no_thp` feature), and where the system gives
/// huge pages to every mapping (THP `always`) the process opts out
/// (`prctl(PR_SET_THP_DISABLE)`) unless `MIMALLOC_ALLOW_THP` is set.
#[cfg(feature = "mimalloc")]
fn tune_allocator() {
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    /// `mi_option_purge_delay` in `mi_option_e` (mimalloc v3, as libmimalloc-sys 0.1 builds it).
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    /// `mi_option_allow_thp` in the same enum.
    const MI_OPTION_ALLOW_THP: std::ffi::c_int = 43;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide allocator option; any thread may call it at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: as above; prctl(PR_SET_THP_DISABLE) only changes this process's THP eligibility.
        unsafe {
            mi_option_set(MI_OPTION_ALLOW_THP, 0);
            libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, 0, 0, 0);
        }
    }
}

#[cfg(not(feature = "mimalloc"))]
fn tune_allocator() {}

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A fast, cost-aware, OpenAI-compatible LLM gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// TOML config file. Without one, providers come from the environment
        /// (OPENAI_API_KEY, DEEPSEEK_API_KEY, ...) or a simulated provider.
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address (overrides server.listen; default 127.0.0.1:4000).
        #[arg(long, env = "SWITCHYARD_LISTEN")]
        listen: Option<String>,
        /// SQLite ledger file (overrides ledger.path).
        #[arg(long, env = "SWITCHYARD_LEDGER")]
        ledger: Option<PathBuf>,
        /// Directory for the default ledger file.
        #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "switchyard-data")]
        data_dir: PathBuf,
        /// Serve without client keys on a non-loopback address (while no key exists).
        #[arg(long, env = "SWITCHYARD_ALLOW_UNAUTHENTICATED")]
        allow_unauthenticated: bool,
    },
    /// Manage virtual API keys (stored hashed in the ledger database).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        /// SQLite ledger file holding the keys (default: ledger.path of --config, else <data-dir>/ledger.sqlite).
        #[arg(long, global = true, env = "SWITCHYARD_LEDGER")]
        ledger: Option<PathBuf>,
        /// Config whose ledger.path to use (with `[ledger] url`: the keys in PostgreSQL).
        #[arg(long, short, global = true, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        #[arg(
            long,
            global = true,
            env = "SWITCHYARD_DATA_DIR",
            default_value = "switchyard-data"
        )]
        data_dir: PathBuf,
    },
    /// Validate a config file; names the key path of every error.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Classify chat requests (JSONL, one request per line) and show how a route would serve them.
    Classify {
        /// JSONL file of OpenAI chat requests, or "-" for standard input.
        #[arg(default_value = "-")]
        file: String,
        /// Config whose routes and models decide tier and model (default: environment defaults).
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        /// Route to apply.
        #[arg(long, default_value = "auto")]
        route: String,
        /// Predictor threshold in [0, 1] for a route with candidate `models`
        /// (0: always the cheapest, 1: always the dearest); default: the route's.
        #[arg(long)]
        threshold: Option<f32>,
    },
    /// Train the tier predictor on the TRAIN parts of the routing data (deterministic).
    TrainRouter {
        /// The routing data directory.
        #[arg(long, default_value = "../shared/routing-data")]
        data: PathBuf,
        /// Where to write the weights (assets/router.bin is the built-in copy).
        #[arg(long, default_value = "assets/router.bin")]
        out: PathBuf,
        /// Where to write the hash list of the training prompts.
        #[arg(long, default_value = "data/router/train_prompts.fnv64")]
        hashes: PathBuf,
        /// Passes over the data.
        #[arg(long)]
        epochs: Option<usize>,
        /// Validation on the training data: train without this source
        /// (alpaca_eval, mmlu, routerbench) and score it; cv:SOURCE / cvall:SOURCE: 5-fold
        /// cross-validation within it; parts:SOURCE: leave one part of it out at a time (AlpacaEval
        /// subset, MMLU subject, RouterBench set); prior: the complexity and task-map priors per
        /// source. Writes nothing.
        #[arg(long)]
        holdout: Option<String>,
        /// prior: the task-map prior (the shipped model, nothing fitted but the
        /// quantiles); logistic: the learnt logistic model; prior+logistic: the
        /// sum of both logits (the logistic trained on its own); grouped: the
        /// prior's task groups, each ordered by its own model (docs/routing.md).
        #[arg(long, default_value = "prior")]
        model: switchyard::routing::train_router::RouterModel,
        /// What the logistic model (grouped: the strong group's model) is
        /// trained on: label (the routing label), ease (the mean outcome of
        /// every model of the source) or weak (the cheap tier's own outcome).
        /// Validation always scores the routing label.
        #[arg(long, default_value = "label")]
        target: switchyard::routing::train_router::Target,
        /// Platt-scale the prior's scores on the training labels (one
        /// intercept per source; off by default, see docs/routing.md).
        #[arg(long)]
        calibrate: bool,
        /// Grouped model: train the open group's model too, on this target
        /// (label, ease, weak); without it the open group keeps the prior's order.
        #[arg(long)]
        open_target: Option<switchyard::routing::train_router::Target>,
        /// Grouped model: train the multiple-choice group's model too, on this
        /// target; without it that group keeps the prior's order.
        #[arg(long)]
        choice_target: Option<switchyard::routing::train_router::Target>,
        /// Grouped model: keep the prior's order in the strong-task group
        /// (no learnt model there).
        #[arg(long)]
        prior_strong: bool,
        /// Dense features only (no hashed word weights; logistic model).
        #[arg(long)]
        no_words: bool,
        /// No progress bar on stderr.
        #[arg(long)]
        no_progress: bool,
    },
    /// Replay the TEST parts of the routing data through a route, sweeping its threshold:
    /// APGR, CPT(50%), CPT(80%), savings at 99/98/95% of strong quality, cost in USD.
    EvalRouting {
        /// Config whose route, models and prices to use.
        #[arg(long, short, default_value = "config/routing-eval.toml")]
        config: PathBuf,
        /// Route to replay (needs candidate `models`).
        #[arg(long, default_value = "auto")]
        route: String,
        /// The routing data directory.
        #[arg(long, default_value = "../shared/routing-data")]
        data: PathBuf,
        /// Only these sets (mt_bench, gsm8k, arena_bench, routerbench_arc_challenge, ...).
        #[arg(long, value_delimiter = ',')]
        sets: Vec<String>,
        /// Print JSON (with every curve point) instead of a table.
        #[arg(long)]
        json: bool,
        /// Write the cost-quality curves as an SVG here.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// No progress bar on stderr.
        #[arg(long)]
        no_progress: bool,
    },
    /// Per-model, per-task quality scores measured from the routing data's TRAIN parts
    /// and from the ledger's feedback, with `quality = {...}` lines per tier.
    Calibrate {
        /// The routing data directory (skipped when absent).
        #[arg(long, default_value = "../shared/routing-data")]
        data: PathBuf,
        /// SQLite ledger whose feedback to read (optional).
        #[arg(long, env = "SWITCHYARD_LEDGER")]
        ledger: Option<PathBuf>,
        /// Scores from fewer prompts than this are left out of the TOML lines.
        #[arg(long, default_value_t = 30)]
        min_prompts: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Spend, requests and tokens from the ledger, grouped.
    Report {
        /// SQLite ledger file (default: <data-dir>/ledger.sqlite).
        #[arg(long, env = "SWITCHYARD_LEDGER")]
        ledger: Option<PathBuf>,
        /// PostgreSQL ledger (`postgres://...`) instead of the SQLite file.
        #[arg(long, env = "SWITCHYARD_LEDGER_URL", conflicts_with = "ledger")]
        ledger_url: Option<String>,
        /// Config whose `[ledger] url` to report on (when --ledger-url is not given).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "switchyard-data")]
        data_dir: PathBuf,
        /// Group by: task, model, provider, key, route, tier (route/tier, with each tier's share) or day.
        #[arg(long, default_value = "model")]
        by: String,
        /// From this time on (YYYY-MM-DD UTC, or Unix ms).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (YYYY-MM-DD UTC, or Unix ms).
        #[arg(long)]
        until: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Token drift instead of spend: per model and task, input and output tokens per
        /// request in the 7 days before --until (default: now) vs the 7 days before those.
        #[arg(long, conflicts_with_all = ["since", "by"])]
        drift: bool,
        /// Flag a drift when tokens per request change by at least this many percent.
        #[arg(long, requires = "drift", value_name = "PERCENT")]
        drift_threshold: Option<String>,
    },
    /// Model-swap experiments: per arm figures and verdicts from the ledger.
    Experiment {
        #[command(subcommand)]
        action: ExperimentAction,
    },
    /// Cost audit of a request log: where the money goes by task, and what the same
    /// traffic would cost on one frontier model, on its cheaper sibling and under routing.
    Audit {
        /// JSONL request log: one request per line with the `model` used and the `usage`
        /// returned (see docs/audit.md), or "-" for standard input.
        file: String,
        /// Config whose routes, models, tiers and prices to use (default: the built-in
        /// config/switchyard.example.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Prices file in the format of assets/prices.toml; its prices override all others.
        #[arg(long)]
        prices: Option<PathBuf>,
        /// Route whose policy is costed.
        #[arg(long, default_value = "auto")]
        route: String,
        /// Model of the "all on one frontier model" strategy.
        #[arg(long, default_value = switchyard::accounting::audit::DEFAULT_FRONTIER)]
        frontier: String,
        /// Model of the "all on the cheaper sibling" strategy.
        #[arg(long, default_value = switchyard::accounting::audit::DEFAULT_SIBLING)]
        sibling: String,
        /// Days the log covers, for monthly figures (overrides the timestamps' span).
        #[arg(long)]
        days: Option<f64>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// No progress bar on stderr.
        #[arg(long)]
        no_progress: bool,
    },
    /// Evaluate the classifier on labelled JSONL ({"messages": [...], "task": "..."}).
    EvalClassifier {
        /// Labelled JSONL file (or a directory of them).
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Weights to evaluate (default: the built-in model).
        #[arg(long)]
        classifier: Option<PathBuf>,
    },
    /// Train classifier weights from labelled JSONL files.
    TrainClassifier {
        /// Directory (or file) of labelled JSONL ({"messages": [...], "task": "..."}).
        #[arg(long)]
        data: PathBuf,
        /// Where to write the weights (use with routing.classifier in the config).
        #[arg(long)]
        out: PathBuf,
        /// Passes over the data.
        #[arg(long)]
        epochs: Option<usize>,
        /// Log2 of the number of hash buckets (8-24).
        #[arg(long)]
        buckets_log2: Option<u32>,
        /// Independent SGD runs whose weights are averaged (default 5; 1 is fastest).
        #[arg(long)]
        runs: Option<usize>,
    },
}

#[derive(Subcommand)]
enum ExperimentAction {
    /// Per arm: requests, cost per request, latency p50/p95, error rate, tokens per request,
    /// mean feedback with a 95% interval; then a verdict per candidate against the control.
    Report {
        /// The experiment's name (its [experiments.NAME] table).
        name: String,
        /// SQLite ledger file (default: ledger.path of --config, else <data-dir>/ledger.sqlite).
        #[arg(long, env = "SWITCHYARD_LEDGER")]
        ledger: Option<PathBuf>,
        /// Config for the ledger path and the experiment's settings.
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "switchyard-data")]
        data_dir: PathBuf,
        /// From this time on (YYYY-MM-DD UTC, or Unix ms).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (YYYY-MM-DD UTC, or Unix ms).
        #[arg(long)]
        until: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key. Prints the key once: it is stored only as a hash.
    Create {
        #[arg(long)]
        name: String,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute (estimated before a call, corrected after).
        #[arg(long)]
        tpm: Option<u64>,
        /// Requests in flight at once.
        #[arg(long)]
        max_concurrency: Option<u32>,
        /// USD per day.
        #[arg(long)]
        daily_budget: Option<f64>,
        /// Models and routes the key may use, comma-separated (a trailing * matches a prefix); default all.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// A tag `k=v` (repeatable); tags show in reports by key.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id or name; the server refuses it within server.key_refresh_secs.
    Revoke { id: String },
}

/// Log lines queued for the log thread at most; a logging thread waits when
/// the queue is full (`lossy(false)`: no line is dropped). tracing-appender's
/// default of 128,000 lines is a channel whose slots are all written when it
/// is built: 4 MB, half of an idle gateway's heap (bench/RESULTS.md,
/// 2026-12-07 evening). 8,192 lines (256 KB) are a third of a second of
/// access lines at 25,000 requests a second, the most bench/peers.sh has
/// measured; the log thread writes a line with one `write` to stderr.
const LOG_BUFFER_LINES: usize = 8_192;

/// Logs to standard error through a background writer thread, so a slow
/// terminal or pipe never blocks a request. Keep the guard alive: dropping
/// it flushes what is queued.
fn init_logging(json: bool, level: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .finish(std::io::stderr());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    switchyard::accounting::ledger::text_access_lines(!json && !ansi);
    if !json && !ansi {
        switchyard::accounting::ledger::direct_access_lines(writer.clone());
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    if json {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.init();
    }
    guard
}

/// Writes command output to stdout. A reader that went away (`| head`)
/// is not an error worth a panic: the rest of the output is dropped.
fn say(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let _log_guard = (!matches!(cli.command, Command::Serve { .. })).then(|| init_logging(false, "info"));
    match cli.command {
        Command::Keys {
            action,
            ledger: ledger_path,
            config,
            data_dir,
        } => keys(action, ledger_path, config, data_dir),
        Command::CheckConfig { file } => check_config(&file),
        Command::Experiment {
            action:
                ExperimentAction::Report {
                    name,
                    ledger: ledger_path,
                    config,
                    data_dir,
                    since,
                    until,
                    json,
                },
        } => experiment_report(&name, ledger_path, config, data_dir, since, until, json),
        Command::Classify {
            file,
            config,
            route,
            threshold,
        } => classify(&file, config.as_deref(), &route, threshold),
        Command::TrainRouter {
            data,
            out,
            hashes,
            epochs,
            holdout,
            model,
            target,
            calibrate,
            open_target,
            choice_target,
            prior_strong,
            no_words,
            no_progress,
        } => {
            let mut opts = switchyard::routing::train_router::RouterTrainOptions {
                model,
                target,
                calibrate,
                open_target,
                choice_target,
                learn_strong: !prior_strong,
                ..Default::default()
            };
            if let Some(e) = epochs {
                opts.epochs = e;
            }
            opts.words = !no_words;
            match switchyard::commands::train_router(
                &data,
                &out,
                Some(&hashes),
                &opts,
                holdout.as_deref(),
                !no_progress,
            ) {
                Ok(r) => {
                    say(&r);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Calibrate {
            data,
            ledger: ledger_path,
            min_prompts,
            json,
        } => calibrate(&data, ledger_path.as_deref(), min_prompts, json),
        Command::EvalRouting {
            config,
            route,
            data,
            sets,
            json,
            svg,
            no_progress,
        } => eval_routing(&config, &route, &data, &sets, json, svg.as_deref(), !no_progress),
        Command::Report {
            ledger: ledger_path,
            ledger_url,
            config,
            data_dir,
            by,
            since,
            until,
            json,
            drift,
            drift_threshold,
        } => {
            let mut url = ledger_url;
            let mut path = ledger_path;
            if url.is_none() && path.is_none() {
                if let Some(c) = config.as_deref() {
                    match load_config(Some(c)) {
                        Ok(cfg) => {
                            url = cfg.ledger.url.map(|u| u.expose().to_string());
                            path = cfg.ledger.path;
                        }
                        Err(e) => return fail(e),
                    }
                }
            }
            let path = path.unwrap_or_else(|| ledger::default_path(&data_dir));
            match (url, drift) {
                (Some(_), true) => fail("--drift reads a SQLite ledger only (not PostgreSQL yet)"),
                (Some(url), false) => report_pg(&url, &by, since, until, json),
                (None, true) => drift_report(path, until, drift_threshold, json),
                (None, false) => report(path, &by, since, until, json),
            }
        }
        Command::Audit {
            file,
            config,
            prices,
            route,
            frontier,
            sibling,
            days,
            json,
            no_progress,
        } => audit(
            &file,
            config.as_deref(),
            prices.as_deref(),
            switchyard::accounting::audit::AuditOptions {
                route,
                frontier,
                sibling,
                days,
            },
            json,
            !no_progress,
        ),
        Command::EvalClassifier {
            file,
            json,
            classifier,
        } => {
            let clf = match classifier {
                Some(p) => match switchyard::routing::classifier::Classifier::load(&p) {
                    Ok(c) => c,
                    Err(e) => return fail(e),
                },
                None => switchyard::routing::classifier::Classifier::embedded().clone(),
            };
            match switchyard::commands::eval_classifier(&clf, &file, json) {
                Ok(report) => {
                    say(&format!("{report}\n"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::TrainClassifier {
            data,
            out,
            epochs,
            buckets_log2,
            runs,
        } => match switchyard::commands::train_classifier(&data, &out, epochs, buckets_log2, runs) {
            Ok(summary) => {
                say(&format!("{summary}\n"));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Serve {
            config,
            listen,
            ledger,
            data_dir,
            allow_unauthenticated,
        } => {
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(config, listen, ledger, data_dir, allow_unauthenticated)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn keys(
    action: KeysAction,
    ledger_path: Option<PathBuf>,
    config: Option<PathBuf>,
    data_dir: PathBuf,
) -> ExitCode {
    use switchyard::auth::keys::{KeyDb, KeyRecord, KeySpec};
    // The config's `[ledger] url` puts the keys in PostgreSQL (shared by every instance).
    let mut url = None;
    let path = match ledger_path {
        Some(p) => p,
        None => match config.as_deref().map(|c| load_config(Some(c))) {
            Some(Err(e)) => return fail(e),
            Some(Ok(cfg)) => {
                url = cfg.ledger.url.map(|u| u.expose().to_string());
                cfg.ledger.path.unwrap_or_else(|| ledger::default_path(&data_dir))
            }
            None => ledger::default_path(&data_dir),
        },
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let db = match url {
        Some(url) => match rt.block_on(async { KeyDb::postgres(ledger::pg_pool(&url, 1).await?).await }) {
            Ok(db) => db,
            Err(e) => return fail(e),
        },
        None => KeyDb::new(&path),
    };
    let line = |k: &KeyRecord| {
        let limits = [
            k.spec.rpm.map(|v| format!("rpm={v}")),
            k.spec.tpm.map(|v| format!("tpm={v}")),
            k.spec.max_concurrency.map(|v| format!("concurrency={v}")),
            k.spec.daily_budget.map(|v| format!("daily_budget=${v}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let models = if k.spec.models.is_empty() {
            "all".to_string()
        } else {
            k.spec.models.join(",")
        };
        let tags = k
            .spec
            .tags
            .iter()
            .map(|(a, b)| format!("{a}={b}"))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "{:<16} {:<20} {:<24} {}{} models={} {}",
            k.id,
            k.spec.name,
            k.display,
            if k.revoked_ms.is_some() { "REVOKED " } else { "" },
            limits,
            models,
            tags
        )
        .trim_end()
        .to_string()
    };
    let out = |s: String| {
        say(&s);
    };
    match action {
        KeysAction::Create {
            name,
            rpm,
            tpm,
            max_concurrency,
            daily_budget,
            models,
            tags,
            json,
        } => {
            let mut tagmap = std::collections::BTreeMap::new();
            for t in tags {
                match t.split_once('=') {
                    Some((k, v)) if !k.is_empty() => {
                        tagmap.insert(k.to_string(), v.to_string());
                    }
                    _ => return fail(format!("--tag {t:?}: expected key=value")),
                }
            }
            let spec = KeySpec {
                name,
                rpm,
                tpm,
                max_concurrency,
                daily_budget,
                models,
                tags: tagmap,
            };
            match rt.block_on(db.create(spec)) {
                Ok((rec, secret)) => {
                    if json {
                        let mut v = serde_json::to_value(&rec).unwrap_or_default();
                        if let Some(o) = v.as_object_mut() {
                            o.insert("key".into(), secret.into());
                        }
                        out(format!("{v}\n"));
                    } else {
                        out(format!(
                            "{}\n\nkey: {secret}\nStore it now: it is kept only as a hash and cannot be shown again.\n",
                            line(&rec)
                        ));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        KeysAction::List { all, json } => match rt.block_on(db.list(all)) {
            Ok(list) => {
                if json {
                    out(serde_json::to_string_pretty(&list).unwrap_or_default() + "\n");
                } else if list.is_empty() {
                    out("no keys\n".into());
                } else {
                    out(list.iter().map(|k| line(k) + "\n").collect());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        KeysAction::Revoke { id } => match rt.block_on(db.revoke(&id)) {
            Ok(Some(rec)) => {
                out(format!("revoked {}\n", line(&rec)));
                ExitCode::SUCCESS
            }
            Ok(None) => fail(format!("no active key with id or name {id:?}")),
            Err(e) => fail(e),
        },
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config, String> {
    match path {
        Some(p) => config::load_file(p).map_err(|e| format!("invalid config {}:\n{e}", p.display())),
        None => {
            config::from_env(&|k| std::env::var(k).ok()).map_err(|e| format!("environment defaults:\n{e}"))
        }
    }
}

/// The report's grouping and time bounds, from the command line.
type ReportArgs = (switchyard::accounting::report::GroupBy, Option<i64>, Option<i64>);

fn report_args(by: &str, since: Option<String>, until: Option<String>) -> Result<ReportArgs, String> {
    use switchyard::accounting::report as r;
    let Some(group) = r::GroupBy::parse(by) else {
        return Err(format!(
            "--by {by:?}: use task, model, provider, key, route, tier, day or tag:NAME"
        ));
    };
    let parse = |v: Option<String>| v.map(|s| r::parse_time(&s)).transpose();
    Ok((group, parse(since)?, parse(until)?))
}

/// `switchyard report` on a PostgreSQL ledger.
fn report_pg(url: &str, by: &str, since: Option<String>, until: Option<String>, json: bool) -> ExitCode {
    use switchyard::accounting::report as r;
    let (group, since, until) = match report_args(by, since, until) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let rows = rt.block_on(async {
        let pool = ledger::pg_pool(url, 1).await?;
        let rows = r::report_pg(&pool, group.clone(), since, until).await;
        pool.close().await;
        rows
    });
    print_report(rows, group, json)
}

fn print_report(
    rows: Result<Vec<switchyard::accounting::report::ReportRow>, String>,
    group: switchyard::accounting::report::GroupBy,
    json: bool,
) -> ExitCode {
    use switchyard::accounting::report as r;
    match rows {
        Ok(rows) => {
            let text = if json {
                match serde_json::to_string_pretty(&rows) {
                    Ok(s) => s + "\n",
                    Err(e) => return fail(e),
                }
            } else {
                r::to_table(group, &rows)
            };
            // A closed pipe (`| head`) is not an error worth a panic.
            say(&text);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn report(path: PathBuf, by: &str, since: Option<String>, until: Option<String>, json: bool) -> ExitCode {
    use switchyard::accounting::report as r;
    let (group, since, until) = match report_args(by, since, until) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    if !path.exists() {
        return fail(format!("no ledger at {}", path.display()));
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    print_report(
        rt.block_on(r::report(&path, group.clone(), since, until)),
        group,
        json,
    )
}

fn drift_report(path: PathBuf, until: Option<String>, threshold: Option<String>, json: bool) -> ExitCode {
    use switchyard::accounting::report as r;
    let end = match until.map(|s| r::parse_time(&s)).transpose() {
        Ok(Some(ms)) => ms,
        Ok(None) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        Err(e) => return fail(e),
    };
    let threshold = match threshold.map(|t| r::parse_threshold(&t)).transpose() {
        Ok(t) => t.unwrap_or(r::DEFAULT_DRIFT_THRESHOLD_PCT),
        Err(e) => return fail(e),
    };
    if !path.exists() {
        return fail(format!("no ledger at {}", path.display()));
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    match rt.block_on(r::drift(&path, end, threshold)) {
        Ok(rep) => {
            let text = if json {
                match serde_json::to_string_pretty(&rep) {
                    Ok(s) => s + "\n",
                    Err(e) => return fail(e),
                }
            } else {
                r::drift_table(&rep)
            };
            say(&text);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn audit(
    file: &str,
    config: Option<&std::path::Path>,
    prices: Option<&std::path::Path>,
    opts: switchyard::accounting::audit::AuditOptions,
    json: bool,
    progress: bool,
) -> ExitCode {
    use switchyard::accounting::audit as a;
    let (cfg, config_label) = match a::load_config(config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let overrides = match prices.map(a::load_price_file).transpose() {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let auditor = match a::Auditor::new(&cfg, overrides.as_ref(), opts) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let (mut input, size): (Box<dyn std::io::Read>, Option<u64>) = if file == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        match std::fs::File::open(file) {
            Ok(f) => {
                let size = f.metadata().ok().map(|m| m.len());
                (Box::new(f), size)
            }
            Err(e) => return fail(format!("cannot open {file}: {e}")),
        }
    };
    let mut bar = a::Progress::new(size, progress);
    let tally = auditor.run(&mut input, 0, &mut |done| bar.update(done));
    bar.finish();
    let tally = match tally {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let meta = a::ReportMeta {
        file: if file == "-" {
            "standard input".into()
        } else {
            file.to_string()
        },
        config: config_label,
    };
    let report = auditor.summarize(tally, meta);
    let text = if json {
        match a::render_json(&report) {
            Ok(s) => s,
            Err(e) => return fail(e),
        }
    } else {
        a::render_table(&report)
    };
    say(&text);
    if report.requests == 0 {
        eprintln!("error: no line of {file} could be audited");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn experiment_report(
    name: &str,
    ledger_path: Option<PathBuf>,
    config: Option<PathBuf>,
    data_dir: PathBuf,
    since: Option<String>,
    until: Option<String>,
    json: bool,
) -> ExitCode {
    use switchyard::experiments::report;
    let cfg = match config.as_deref().map(|c| load_config(Some(c))).transpose() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let explicit_ledger = ledger_path.is_some();
    let path = ledger_path
        .or_else(|| cfg.as_ref().and_then(|c| c.ledger.path.clone()))
        .unwrap_or_else(|| ledger::default_path(&data_dir));
    let settings = cfg.as_ref().and_then(|c| c.experiments.get(name));
    if cfg.is_some() && settings.is_none() {
        eprintln!("warning: the config has no [experiments.{name}]; reporting from the ledger alone");
    }
    let mut bounds = [None, None];
    for (i, v) in [since, until].into_iter().enumerate() {
        if let Some(v) = v {
            match switchyard::accounting::report::parse_time(&v) {
                Ok(t) => bounds[i] = Some(t),
                Err(e) => return fail(e),
            }
        }
    }
    // With `[ledger] url` in --config (and no --ledger), the requests are in PostgreSQL.
    let url = cfg
        .as_ref()
        .filter(|_| !explicit_ledger)
        .and_then(|c| c.ledger.url.as_ref())
        .map(|u| u.expose().to_string());
    if url.is_none() && !path.exists() {
        return fail(format!("no ledger at {}", path.display()));
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let r = rt.block_on(async {
        match &url {
            Some(url) => {
                let pool = ledger::pg_pool(url, 1).await?;
                let r = report::report_from(Some(&pool), &path, name, bounds[0], bounds[1]).await;
                pool.close().await;
                r
            }
            None => report::report(&path, name, bounds[0], bounds[1]).await,
        }
    });
    let r = match r {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let text = if json {
        match serde_json::to_string_pretty(&r) {
            Ok(s) => s + "\n",
            Err(e) => return fail(e),
        }
    } else {
        let header = settings.map(|e| {
            format!(
                "{}, {}, control {}{}",
                e.mode.as_str(),
                e.scope,
                e.control,
                if e.enabled { "" } else { ", disabled" }
            )
        });
        report::to_text(&r, header.as_deref())
    };
    say(&text);
    if r.arms.is_empty() {
        eprintln!("error: the ledger has no requests of experiment {name:?}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn calibrate(
    data: &std::path::Path,
    ledger_path: Option<&std::path::Path>,
    min_n: usize,
    json: bool,
) -> ExitCode {
    use switchyard::routing::calibrate as cal;
    let clf = switchyard::routing::classifier::Classifier::embedded();
    let scores = if switchyard::routing::routedata::present(data) {
        match cal::from_data(data, clf) {
            Ok(s) => s,
            Err(e) => return fail(e),
        }
    } else {
        eprintln!(
            "calibrate: routing data not found at {}; data scores skipped",
            data.display()
        );
        Vec::new()
    };
    let mut feedback = Vec::new();
    if let Some(p) = ledger_path {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return fail(e),
        };
        match rt.block_on(switchyard::accounting::report::feedback_by_model_task(p)) {
            Ok(f) => feedback = f,
            Err(e) => return fail(e),
        }
    }
    if json {
        let fb: Vec<serde_json::Value> = feedback
            .iter()
            .map(|(m, t, q, n)| serde_json::json!({"model": m, "task": t, "mean_feedback": q, "n": n}))
            .collect();
        let v = serde_json::json!({"data": scores, "by_tier": cal::by_tier(&scores), "feedback": fb});
        match serde_json::to_string_pretty(&v) {
            Ok(s) => say(&format!("{s}\n")),
            Err(e) => return fail(e),
        }
        return ExitCode::SUCCESS;
    }
    let mut out = String::new();
    if !scores.is_empty() {
        out.push_str("# switchyard calibrate: measured from the routing data's TRAIN parts\n");
        out.push_str(&format!(
            "{:<38} {:<9} {:<18} {:>8} {:>6}\n",
            "model", "tier", "task", "quality", "n"
        ));
        for s in &scores {
            out.push_str(&format!(
                "{:<38} {:<9} {:<18} {:>8.3} {:>6}\n",
                s.model, s.tier, s.task, s.quality, s.n
            ));
        }
        out.push('\n');
        out.push_str(&cal::toml_by_tier(&scores, min_n));
    }
    if !feedback.is_empty() {
        out.push_str("\n# mean feedback score per served model and task (ledger)\n");
        for (m, t, q, n) in &feedback {
            out.push_str(&format!("{m:<38} {t:<18} {q:>8.3} {n:>6}\n"));
        }
    }
    say(&out);
    ExitCode::SUCCESS
}

fn eval_routing(
    config: &std::path::Path,
    route: &str,
    data: &std::path::Path,
    sets: &[String],
    json: bool,
    svg: Option<&std::path::Path>,
    progress: bool,
) -> ExitCode {
    if !switchyard::routing::routedata::present(data) {
        say(&format!(
            "eval-routing: skipped: routing data not found at {} (see docs/routing.md)\n",
            data.display()
        ));
        return ExitCode::SUCCESS;
    }
    let cfg = match config::load_file(config) {
        Ok(c) => c,
        Err(errs) => {
            return fail(
                errs.0
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        }
    };
    let reports = match switchyard::commands::eval_routing(&cfg, route, data, sets, progress) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Some(path) = svg {
        if let Err(e) = std::fs::write(path, switchyard::routing::replay::render_svg(&reports)) {
            return fail(format!("cannot write {}: {e}", path.display()));
        }
    }
    if json {
        match serde_json::to_string_pretty(&reports) {
            Ok(s) => say(&format!("{s}\n")),
            Err(e) => return fail(e.to_string()),
        }
    } else {
        say(&switchyard::routing::replay::render_table(&reports));
    }
    ExitCode::SUCCESS
}

fn classify(file: &str, config: Option<&std::path::Path>, route: &str, threshold: Option<f32>) -> ExitCode {
    if threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return fail("--threshold must be between 0 and 1".to_string());
    }
    // Classifying calls no provider: `${VAR}` references (API keys) need not be set.
    let loaded = match config {
        Some(p) => switchyard::accounting::audit::load_config(Some(p)).map(|(c, _)| c),
        None => load_config(None),
    };
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if !cfg.routing.routes.contains_key(route) {
        eprintln!("warning: route {route:?} does not exist in this config; tier and model will be null");
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = if file == "-" {
        let stdin = std::io::stdin();
        switchyard::commands::classify_at(&cfg, route, threshold, &mut stdin.lock(), &mut out)
    } else {
        match std::fs::File::open(file) {
            Ok(f) => switchyard::commands::classify_at(
                &cfg,
                route,
                threshold,
                &mut std::io::BufReader::new(f),
                &mut out,
            ),
            Err(e) => return fail(format!("cannot open {file}: {e}")),
        }
    };
    match result {
        Ok((_, 0)) => ExitCode::SUCCESS,
        Ok((_, bad)) => {
            eprintln!("{bad} line(s) were not valid chat requests");
            ExitCode::FAILURE
        }
        Err(e) => fail(e),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load_file(file) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                say(&format!("warning: {w}\n"));
            }
            say(&format!(
                "{}: OK ({} providers, {} models, {} aliases)\n",
                file.display(),
                cfg.providers.len(),
                cfg.models.len(),
                cfg.aliases.len()
            ));
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                say(&format!("error: {e}\n"));
            }
            say(&format!("{}: {} error(s)\n", file.display(), errs.0.len()));
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config_path: Option<PathBuf>,
    listen: Option<String>,
    ledger_path: Option<PathBuf>,
    data_dir: PathBuf,
    allow_unauthenticated: bool,
) -> Result<(), String> {
    let loaded = load_config(config_path.as_deref());
    let _log_guard = match &loaded {
        Ok(c) => init_logging(c.log.json, &c.log.level),
        Err(_) => init_logging(false, "info"),
    };
    let mut cfg: Config = loaded?;
    cfg.server.allow_unauthenticated |= allow_unauthenticated;
    if let Some(l) = listen {
        cfg.server.listen = config::parse_listen(&l).ok_or_else(|| {
            format!("--listen {l:?} is not a socket address like 127.0.0.1:4000 or localhost:4000")
        })?;
    }
    let ledger_path = ledger_path
        .or_else(|| cfg.ledger.path.clone())
        .unwrap_or_else(|| ledger::default_path(&data_dir));
    log_startup(&cfg);
    match switchyard::server::edge::raise_nofile_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!(
                before,
                after,
                "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
            )
        }
        Ok((before, _)) => tracing::info!(limit = before, "open-file limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.server.listen))?;
    let backend = if cfg.ledger.url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let server = switchyard::start(cfg, &ledger_path, listener).await?;
    // The start's code and read-only data pages leave the resident set
    // (docs/reliability.md, "Memory"); SWITCHYARD_KEEP_STARTUP_PAGES keeps them.
    #[cfg(target_os = "linux")]
    if std::env::var_os("SWITCHYARD_KEEP_STARTUP_PAGES").is_none() {
        match switchyard::server::edge::release_startup_pages() {
            Ok(bytes) => tracing::debug!(bytes, "released the start's read-only pages of the executable"),
            Err(e) => tracing::debug!("cannot release the start's pages: {e}"),
        }
    }
    tracing::info!(
        ledger = %ledger_path.display(),
        ledger_backend = backend,
        "switchyard listening on http://{}",
        server.addr
    );
    let stop = server.stop_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    #[cfg(unix)]
    {
        let state = server.state();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload");
                return;
            };
            while hup.recv().await.is_some() {
                let Some(state) = state.upgrade() else { break };
                match switchyard::server::reload(&state).await {
                    Ok(changes) => {
                        tracing::info!(
                            generation = state.rt().generation,
                            ?changes,
                            "configuration reloaded (SIGHUP)"
                        )
                    }
                    Err(e) => tracing::warn!("configuration reload rejected; keeping the running one: {e}"),
                }
            }
        });
    }
    server.wait().await;
    tracing::info!("stopped; ledger flushed");
    Ok(())
}

fn log_startup(cfg: &Config) {
    match &cfg.source {
        ConfigSource::File(p) => tracing::info!("config: {}", p.display()),
        ConfigSource::Environment => {
            tracing::info!("config: none given; providers from the environment")
        }
    }
    for p in &cfg.providers {
        let patterns: Vec<&str> = p.patterns.iter().map(|x| x.as_str()).collect();
        match p.kind {
            ProviderKind::Simulated => tracing::warn!(
                provider = %p.name,
                "SIMULATED provider active: answers are generated locally, not by a real model \
                 (set OPENAI_API_KEY or pass --config to use a real provider)"
            ),
            _ => {
                tracing::info!(provider = %p.name, kind = p.kind.as_str(), base_url = %p.base_url, pass_through = ?patterns, "provider")
            }
        }
    }
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
}
