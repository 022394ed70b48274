//! The HTTP server: router, accept loop, graceful shutdown.
//!
//! `app(state)` builds the router so tests can drive it directly; `start`
//! binds the ledger, the state and the accept loop together and returns a
//! [`Server`] handle whose `shutdown` drains connections and then the ledger.

pub mod admin;
pub mod handlers;
pub mod messages;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::accounting::ledger;
use crate::config::Config;
pub use state::AppState;

/// The router with every endpoint.
pub fn app(state: Arc<AppState>) -> Router {
    use handlers::*;
    let admin = Router::new()
        .route("/admin/health", get(admin::health))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    Router::new()
        .merge(admin)
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/embeddings", post(embeddings))
        .route("/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A running gateway.
pub struct Server {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Asks for a graceful shutdown and waits until connections are closed
    /// (or the grace period ran out) and every ledger row is written.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.wait().await;
    }

    /// Waits until the server has stopped (after `stop_token().cancel()`).
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::error!("server task failed: {e}");
        }
    }

    /// The token that starts a graceful shutdown when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Opens the ledger, builds the state and serves on `listener`.
pub async fn start(config: Config, ledger_path: &Path, listener: TcpListener) -> Result<Server, String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listener has no address: {e}"))?;
    let (ledger, writer) = ledger::open_sqlite(
        ledger_path,
        config.ledger.batch_size,
        config.ledger.flush_interval,
    )
    .await?;
    let grace = config.server.shutdown_grace;
    let state = Arc::new(AppState::new(config, ledger)?);
    let stop = CancellationToken::new();
    spawn_probes(&state, &stop);
    let router = app(state);
    let token = stop.clone();
    let task = tokio::spawn(async move {
        serve_loop(listener, router, token.cancelled_owned(), grace).await;
        // Every handle to the ledger is gone once connections are: drain it.
        writer.finish().await;
    });
    Ok(Server { addr, stop, task })
}

/// Active health probes: one task per provider with `probe_interval_secs`,
/// feeding the same breaker as live traffic. They hold no ledger handle.
fn spawn_probes(state: &AppState, stop: &CancellationToken) {
    for (provider, health) in state.providers.iter().zip(&state.health) {
        let Some(every) = provider.settings.probe_interval else {
            continue;
        };
        let (provider, health, stop) = (provider.clone(), health.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let Some(permit) = health.acquire() else { continue };
                let started = std::time::Instant::now();
                let outcome = match provider.probe().await {
                    Ok(()) => crate::resilience::breaker::Outcome::Success,
                    Err(e) => {
                        tracing::debug!(provider = %provider.name, "health probe failed: {}", e.message);
                        crate::resilience::breaker::Outcome::Failure
                    }
                };
                tracing::trace!(provider = %provider.name, ms = started.elapsed().as_millis() as u64, "health probe");
                health.record(permit, outcome, None);
            }
        });
    }
}

async fn serve_loop(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(30));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("set_nodelay failed: {e}");
                    }
                    let svc = TowerToHyperService::new(router.clone());
                    let conn = http.serve_connection(TokioIo::new(stream), svc);
                    let conn = graceful.watch(conn);
                    tasks.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!("connection ended with error: {e}");
                        }
                    });
                    while tasks.try_join_next().is_some() {}
                }
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    drop(router);
    tracing::info!(
        "shutting down: waiting up to {}s for open requests",
        grace.as_secs()
    );
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("grace period over: closing {} remaining connections", tasks.len());
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}
