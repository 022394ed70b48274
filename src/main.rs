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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
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
    let mut cfg: Config = match &config_path {
        Some(p) => config::load_file(p).map_err(|e| format!("invalid config {}:\n{e}", p.display()))?,
        None => {
            config::from_env(&|k| std::env::var(k).ok()).map_err(|e| format!("environment defaults:\n{e}"))?
        }
    };
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
