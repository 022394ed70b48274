//! The `switchyard` binary: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard::accounting::ledger;
use switchyard::config::{self, Config, ConfigSource, ProviderKind};
use tracing_subscriber::EnvFilter;

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
    },
    /// Spend, requests and tokens from the ledger, grouped.
    Report {
        /// SQLite ledger file (default: <data-dir>/ledger.sqlite).
        #[arg(long, env = "SWITCHYARD_LEDGER")]
        ledger: Option<PathBuf>,
        #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "switchyard-data")]
        data_dir: PathBuf,
        /// Group by: task, model, provider, key, route or day.
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Classify { file, config, route } => classify(&file, config.as_deref(), &route),
        Command::Report {
            ledger: ledger_path,
            data_dir,
            by,
            since,
            until,
            json,
            drift,
            drift_threshold,
        } => {
            let path = ledger_path.unwrap_or_else(|| ledger::default_path(&data_dir));
            if drift {
                drift_report(path, until, drift_threshold, json)
            } else {
                report(path, &by, since, until, json)
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
                    println!("{report}");
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
        } => match switchyard::commands::train_classifier(&data, &out, epochs, buckets_log2) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Serve {
            config,
            listen,
            ledger,
            data_dir,
        } => {
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(config, listen, ledger, data_dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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

fn report(path: PathBuf, by: &str, since: Option<String>, until: Option<String>, json: bool) -> ExitCode {
    use switchyard::accounting::report as r;
    let Some(group) = r::GroupBy::parse(by) else {
        return fail(format!(
            "--by {by:?}: use task, model, provider, key, route or day"
        ));
    };
    let parse = |v: Option<String>| v.map(|s| r::parse_time(&s)).transpose();
    let (since, until) = match (parse(since), parse(until)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    if !path.exists() {
        return fail(format!("no ledger at {}", path.display()));
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    match rt.block_on(r::report(&path, group, since, until)) {
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
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
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
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
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
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    if report.requests == 0 {
        eprintln!("error: no line of {file} could be audited");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn classify(file: &str, config: Option<&std::path::Path>, route: &str) -> ExitCode {
    let cfg = match load_config(config) {
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
        switchyard::commands::classify(&cfg, route, &mut stdin.lock(), &mut out)
    } else {
        match std::fs::File::open(file) {
            Ok(f) => switchyard::commands::classify(&cfg, route, &mut std::io::BufReader::new(f), &mut out),
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
                println!("warning: {w}");
            }
            println!(
                "{}: OK ({} providers, {} models, {} aliases)",
                file.display(),
                cfg.providers.len(),
                cfg.models.len(),
                cfg.aliases.len()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                println!("error: {e}");
            }
            println!("{}: {} error(s)", file.display(), errs.0.len());
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config_path: Option<PathBuf>,
    listen: Option<String>,
    ledger_path: Option<PathBuf>,
    data_dir: PathBuf,
) -> Result<(), String> {
    let mut cfg: Config = load_config(config_path.as_deref())?;
    if let Some(l) = listen {
        cfg.server.listen = l
            .parse()
            .map_err(|_| format!("--listen {l:?} is not a socket address"))?;
    }
    let ledger_path = ledger_path
        .or_else(|| cfg.ledger.path.clone())
        .unwrap_or_else(|| ledger::default_path(&data_dir));
    log_startup(&cfg);
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.server.listen))?;
    let server = switchyard::start(cfg, &ledger_path, listener).await?;
    tracing::info!(ledger = %ledger_path.display(), "switchyard listening on http://{}", server.addr);
    let stop = server.stop_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
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
