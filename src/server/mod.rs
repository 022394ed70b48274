//! The HTTP server: router, accept loop, graceful shutdown.
//!
//! `app(state)` builds the router so tests can drive it directly; `start`
//! binds the ledger, the state and the accept loop together and returns a
//! [`Server`] handle whose `shutdown` drains connections and then the ledger.

pub mod admin;
mod cache;
pub mod edge;
pub mod experiments;
pub mod handlers;
pub mod messages;
pub mod responses;
pub mod ui;

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
pub use crate::state::AppState;

/// The router with every endpoint.
pub fn app(state: Arc<AppState>) -> Router {
    use handlers::*;
    let admin = Router::new()
        .route("/admin/health", get(admin::health))
        .route("/admin/spend", get(admin::spend))
        .route("/admin/keys", get(admin::list_keys).post(admin::create_key))
        .route("/admin/keys/{id}", axum::routing::delete(admin::revoke_key))
        .route("/admin/reload", post(admin::reload))
        .route("/admin/experiments", get(experiments::list))
        .route("/admin/experiments/{name}", get(experiments::show))
        .route("/admin/experiments/{name}/reset", post(experiments::reset))
        .route("/admin/ui/overview", get(ui::overview))
        .route("/admin/ui/health", get(ui::health))
        .route("/admin/savings", get(ui::savings))
        .route("/admin/traffic", get(ui::traffic))
        .route("/admin/requests", get(ui::requests))
        .route("/admin/requests/{id}", get(ui::request))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    let api = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses::create))
        .route("/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route("/v1/completions", post(responses::completions))
        .route("/completions", post(responses::completions))
        .route("/v1/feedback", post(experiments::feedback))
        .route("/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_key,
        ));
    Router::new()
        .merge(admin)
        .merge(api)
        .route("/metrics", get(admin::metrics))
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/ui/login", post(ui::login))
        .route("/ui/logout", post(ui::logout))
        .route("/ui/assets/{file}", get(ui::asset))
        .route("/", get(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::body_deadline,
        ))
        .layer(axum::middleware::from_fn(edge::json_errors))
        // Outermost: one access line for every refused request nobody logged.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log_unlogged_errors,
        ))
        .with_state(state)
}

/// A running gateway.
pub struct Server {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
    state: Arc<AppState>,
}

impl Server {
    /// The running state (to reload its configuration, for instance). Hold
    /// it weakly in long-lived tasks: the ledger drains only when every
    /// strong reference is gone.
    pub fn state(&self) -> std::sync::Weak<AppState> {
        Arc::downgrade(&self.state)
    }

    /// Asks for a graceful shutdown and waits until connections are closed
    /// (or the grace period ran out) and every ledger row is written.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.wait().await;
    }

    /// Waits until the server has stopped (after `stop_token().cancel()`).
    pub async fn wait(self) {
        // The ledger drains once every handle is gone, this one included.
        drop(self.state);
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
    start_with_clock(
        config,
        ledger_path,
        listener,
        crate::accounting::budget::Clock::system(),
    )
    .await
}

/// [`start`] with the clock budgets, ledger timestamps and experiment ramps
/// read (tests drive time with `Clock::manual`).
pub async fn start_with_clock(
    mut config: Config,
    ledger_path: &Path,
    listener: TcpListener,
    clock: crate::accounting::budget::Clock,
) -> Result<Server, String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listener has no address: {e}"))?;
    // The socket decides loopback-or-not, whatever the config said.
    config.server.listen = addr;
    let metrics = crate::metrics::Metrics::new();
    let opts = ledger::WriterOptions {
        batch_size: config.ledger.batch_size,
        flush_interval: config.ledger.flush_interval,
        durability: config.ledger.durability,
        max_pending_rows: config.ledger.max_pending_rows,
        ..Default::default()
    };
    // `[ledger] url`: rows go to PostgreSQL; the spool stays next to the local file.
    let pg = match &config.ledger.url {
        Some(url) => Some(ledger::pg_pool(url.expose(), 4).await?),
        None => None,
    };
    let (ledger, writer) = match &pg {
        Some(pool) => {
            ledger::init_sqlite(ledger_path).await?;
            ledger::open_postgres_with(pool.clone(), &ledger::spool_path(ledger_path), opts).await?
        }
        None => ledger::open_sqlite_with(ledger_path, opts).await?,
    };
    let ledger = ledger.with_observers(metrics.clone(), config.log.access);
    let grace = config.server.shutdown_grace;
    let max_header = config.server.max_header_bytes;
    let max_conns = edge::connections_that_fit(config.server.max_connections, edge::nofile_limit());
    if max_conns < config.server.max_connections {
        tracing::warn!(
            configured = config.server.max_connections,
            effective = max_conns,
            "server.max_connections lowered to fit the open-file limit (two descriptors per proxied request)"
        );
    }
    let key_refresh = config.server.key_refresh;
    let budgets = start_budgets(&config, ledger_path, pg.as_ref(), &metrics, clock).await?;
    let keys = match &pg {
        // Keys in PostgreSQL: every instance on the database shares them.
        Some(pool) => {
            let db = crate::auth::keys::KeyDb::postgres(pool.clone()).await?;
            crate::auth::keys::KeyStore::open_db(db, budgets.clock().clone()).await?
        }
        None => crate::auth::keys::KeyStore::open(ledger_path, budgets.clock().clone()).await?,
    };
    let experiments = Arc::new(crate::experiments::Experiments::new(
        ledger_path.to_path_buf(),
        crate::experiments::store::ramp_log(ledger_path).await?,
    ));
    let built = AppState::new(
        config,
        ledger,
        ledger_path.to_path_buf(),
        budgets,
        keys.clone(),
        metrics.clone(),
        experiments,
    )?
    .with_ledger_pg(pg);
    let shared =
        crate::state::shared::Shared::connect(&built.rt().config.state, built.shutdown.clone()).await?;
    let state = Arc::new(built.with_shared(shared.clone()));
    if let Some(sh) = &shared {
        start_shared(&state, sh, &keys).await;
    }
    if !keys.any() {
        if !state.open_access {
            return Err(format!(
                "refusing to serve {addr} without client keys: it is not a loopback address. \
                 Create a key (`switchyard keys create --name NAME`) or pass --allow-unauthenticated."
            ));
        }
        tracing::warn!(
            "no client API keys exist: serving {addr} WITHOUT authentication (create one with `switchyard keys create`)"
        );
    }
    let stop = state.shutdown.clone();
    // Keys created or revoked by another process (the CLI) take effect within `key_refresh`.
    spawn_every(key_refresh, stop.clone(), stop.clone(), false, move || {
        let keys = keys.clone();
        async move {
            if let Err(e) = keys.refresh().await {
                tracing::warn!("key refresh failed: {e}");
            }
            true
        }
    });
    spawn_probes(&state.rt(), &stop);
    spawn_discovery(&state.rt(), &stop);
    spawn_ramps(&state);
    let router = app(state.clone());
    let token = stop.clone();
    let responses = state.responses.clone();
    let telemetry = state.telemetry.clone();
    let task = tokio::spawn(async move {
        let limits = ConnLimits {
            max_header,
            max_conns,
            metrics,
        };
        serve_loop(listener, router, token.cancelled_owned(), grace, limits).await;
        // Spend and releases of the last requests reach Redis before exit.
        if let Some(sh) = &shared {
            sh.flush(Duration::from_secs(2)).await;
        }
        // Stored /v1/responses answers still queued are written before exit.
        responses.flush().await;
        // Every handle to the ledger is gone once connections are: drain it.
        writer.finish().await;
        // Spans end with their ledger rows; export what is queued (blocking client).
        if telemetry.enabled() {
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        }
    });
    Ok(Server {
        addr,
        stop,
        task,
        state,
    })
}

/// Shared state's start: spend restored from the ledger seeds the Redis
/// counters nobody has used yet; key changes announced by any instance are
/// applied at once; every second this instance's view of each budget's spend
/// (pacing, `/admin/spend`) catches up with every instance's.
async fn start_shared(
    state: &Arc<AppState>,
    sh: &Arc<crate::state::shared::Shared>,
    keys: &Arc<crate::auth::keys::KeyStore>,
) {
    use crate::accounting::budget::Limits;
    let tz = state.rt().config.budgets.timezone;
    let (day, month) = state.budgets.period_numbers(tz);
    let both = Limits {
        daily: Some(0.0),
        monthly: Some(0.0),
    };
    for (scope, d, m) in state.budgets.spent_windows(tz) {
        let k = sh.budget_keys(&[(scope, both)], day, month);
        if !sh.seed(&k, &[d, m]).await {
            break;
        }
    }
    state.tell_trips(&state.rt());
    let keys = keys.clone();
    let weak = Arc::downgrade(state);
    let me = sh.clone();
    sh.subscribe(state.shutdown.clone(), move |event| {
        let keys = keys.clone();
        // Another instance's breaker opened: open ours for the same deployment.
        if let (Some((provider, cooldown)), Some(st)) = (me.trip_of(&event), weak.upgrade()) {
            let rt = st.rt();
            if let Some(h) = rt.health.iter().find(|h| &*h.name == provider) {
                h.hinted_open(cooldown);
            }
        }
        async move {
            if event == "keys" {
                if let Err(e) = keys.refresh().await {
                    tracing::warn!("key refresh failed: {e}");
                }
            }
        }
    });
    let st = Arc::downgrade(state);
    let sh = sh.clone();
    let stop = state.shutdown.clone();
    spawn_every(Duration::from_secs(1), stop.clone(), stop, true, move || {
        let st = st.clone();
        let sh = sh.clone();
        async move {
            let Some(st) = st.upgrade() else { return false };
            if !sh.is_up() {
                return true;
            }
            let tz = st.rt().config.budgets.timezone;
            let (day, month) = st.budgets.period_numbers(tz);
            let scopes: Vec<_> = st
                .budgets
                .spent_windows(tz)
                .into_iter()
                .map(|(s, _, _)| s)
                .collect();
            let mut names = Vec::with_capacity(scopes.len() * 2);
            for s in &scopes {
                for (k, _) in sh.budget_keys(&[(s.clone(), both)], day, month).iter() {
                    names.push(k.clone());
                }
            }
            if let Some(v) = sh.spent(&names).await {
                for (i, s) in scopes.iter().enumerate() {
                    st.budgets
                        .observe_shared_spend(tz, s, v.get(2 * i).copied(), v.get(2 * i + 1).copied());
                }
            }
            true
        }
    });
}

/// Budget state: rebuilt from this month's ledger rows (every scope: global,
/// routes, keys, shadows); alerts go to the log
/// and, if configured, to a webhook.
async fn start_budgets(
    config: &Config,
    ledger_path: &Path,
    pg: Option<&sqlx::PgPool>,
    metrics: &Arc<crate::metrics::Metrics>,
    clock: crate::accounting::budget::Clock,
) -> Result<Arc<crate::accounting::budget::Budgets>, String> {
    use crate::accounting::budget::{self, Budgets, Scope};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let s = &config.budgets;
    let b = Budgets::new(clock, s.timezone, Some(tx));
    spawn_alerts(rx, s.webhook.clone(), metrics.clone());
    // Always, not only when the config names limits: a virtual key's own
    // `daily_budget` lives in the key store, and its spend must survive a
    // restart like any configured scope's.
    {
        let since = budget::month_start_ms(s.timezone, b.clock().now_ms());
        let rows = match pg {
            Some(pool) => ledger::spend_since_pg(pool, since).await?,
            None => ledger::spend_since(ledger_path, since).await?,
        };
        let mut total = 0.0;
        for r in &rows {
            total += r.cost_usd;
            b.seed(s, Scope::Global, r.ts_ms, r.cost_usd);
            if let Some(name) = &r.shadow_of {
                // Shadow calls count against the global budget and their own, nothing else.
                b.seed(s, Scope::Shadow(name.clone()), r.ts_ms, r.cost_usd);
                continue;
            }
            if let Some(route) = &r.route {
                b.seed(s, Scope::Route(route.clone()), r.ts_ms, r.cost_usd);
            }
            if let Some(key) = &r.key_name {
                b.seed(s, Scope::Key(key.clone()), r.ts_ms, r.cost_usd);
            }
        }
        tracing::info!(
            rows = rows.len(),
            month_usd = total,
            "budget state restored from the ledger"
        );
    }
    Ok(b)
}

/// Delivers budget alerts: a warning in the log and a JSON POST to the webhook.
fn spawn_alerts(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<crate::accounting::budget::Alert>,
    webhook: Option<String>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .ok();
        while let Some(a) = rx.recv().await {
            metrics.budget_alert();
            tracing::warn!(
                scope = %a.scope,
                period = a.period,
                threshold = a.threshold,
                spent_usd = a.spent_usd,
                limit_usd = a.limit_usd,
                "budget alert: {:.0}% of the {} budget of {} spent",
                a.threshold * 100.0,
                if a.period == "day" { "daily" } else { "monthly" },
                a.scope
            );
            if let (Some(url), Some(c)) = (&webhook, &client) {
                let body = serde_json::json!({"type": "budget_alert", "alert": a});
                if let Err(e) = c.post(url).json(&body).send().await {
                    tracing::warn!("budget alert webhook failed: {}", e.without_url());
                }
            }
        }
    });
}

/// Re-reads the configuration from where it came from (the file, or the
/// environment), validates it and swaps it in. The listen address and
/// ledger file of a running server do not change.
pub async fn reload(state: &Arc<AppState>) -> Result<Vec<String>, String> {
    let old = state.rt();
    let mut config = match &old.config.source {
        crate::config::ConfigSource::File(p) => crate::config::load_file(p),
        crate::config::ConfigSource::Environment => crate::config::from_env(&|k| std::env::var(k).ok()),
    }
    .map_err(|e| e.to_string())?;
    if config.server.listen != old.config.server.listen {
        tracing::warn!("server.listen changed: a running server keeps its address until restarted");
    }
    config.server.listen = old.config.server.listen;
    config.server.allow_unauthenticated = old.config.server.allow_unauthenticated;
    let changes = state.reload(config).await?;
    spawn_probes(&state.rt(), &state.shutdown);
    spawn_discovery(&state.rt(), &state.shutdown);
    spawn_ramps(state);
    Ok(changes)
}

/// The ramp task of the current runtime (when an experiment has a ramp):
/// evaluates every [`crate::experiments::ramp::TICK`] until the runtime is
/// replaced or the server stops. It holds the state weakly.
pub(crate) fn spawn_ramps(state: &Arc<AppState>) {
    let rt = state.rt();
    if !rt.experiments.iter().any(|e| e.settings.ramp.is_some()) {
        return;
    }
    let weak = Arc::downgrade(state);
    let every = crate::experiments::ramp::TICK;
    spawn_every(
        every,
        state.shutdown.clone(),
        rt.retired.clone(),
        true,
        move || {
            let weak = weak.clone();
            async move {
                let Some(st) = weak.upgrade() else { return false };
                crate::experiments::ramp::tick(&st).await;
                true
            }
        },
    );
}

/// Runs `f` every `every` (at once first, unless `skip_first`) until `stop`
/// or `retired` is cancelled or `f` answers false. Missed ticks are delayed,
/// not bunched.
pub(crate) fn spawn_every<F, Fut>(
    every: Duration,
    stop: CancellationToken,
    retired: CancellationToken,
    skip_first: bool,
    mut f: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if skip_first {
            tick.tick().await;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = retired.cancelled() => break,
                _ = tick.tick() => {}
            }
            if !f().await {
                break;
            }
        }
    });
}

/// How often the model lists of local upstreams are fetched again.
pub const DISCOVERY_EVERY: Duration = Duration::from_secs(60);

/// Model discovery: for the providers that list their own models
/// ([`crate::providers::Provider::discovers_models`]), `GET /models` at
/// start and every [`DISCOVERY_EVERY`], into `Runtime::discovered`. A failed
/// fetch keeps the last list. Holds the runtime weakly; stops with it.
pub(crate) fn spawn_discovery(rt: &Arc<crate::state::Runtime>, stop: &CancellationToken) {
    let providers: Vec<_> = rt
        .providers
        .iter()
        .filter(|p| p.discovers_models())
        .cloned()
        .collect();
    if providers.is_empty() {
        return;
    }
    let weak = Arc::downgrade(rt);
    // The last list each provider gave (kept while its fetches fail), and
    // whether it is failing (warn once per run of failures, not every minute).
    type Last = Vec<(Option<Vec<crate::api::models::ModelObject>>, bool)>;
    let last: Arc<std::sync::Mutex<Last>> =
        Arc::new(std::sync::Mutex::new(vec![(None, false); providers.len()]));
    spawn_every(
        DISCOVERY_EVERY,
        stop.clone(),
        rt.retired.clone(),
        false,
        move || {
            let (weak, providers, last) = (weak.clone(), providers.clone(), last.clone());
            async move {
                let mut results = Vec::with_capacity(providers.len());
                for p in &providers {
                    results.push(p.list_models().await);
                }
                let Some(rt) = weak.upgrade() else { return false };
                let Ok(mut last) = last.lock() else { return false };
                for ((p, result), (list, failing)) in providers.iter().zip(results).zip(last.iter_mut()) {
                    match result {
                        Ok(ids) => {
                            *failing = false;
                            *list = Some(
                                ids.into_iter()
                                    .map(|id| crate::api::models::ModelObject {
                                        id,
                                        object: "model",
                                        created: 1_767_225_600,
                                        owned_by: p.settings.name.clone(),
                                    })
                                    .collect(),
                            );
                        }
                        Err(e) if *failing => {
                            tracing::debug!(provider = %p.name, "cannot list the upstream's models: {}", e.message);
                        }
                        Err(e) => {
                            *failing = true;
                            tracing::warn!(
                                provider = %p.name,
                                "cannot list the upstream's models (GET /models): {}; retrying every {} s",
                                e.message,
                                DISCOVERY_EVERY.as_secs()
                            );
                        }
                    }
                }
                let mut seen = std::collections::HashSet::new();
                let found: Vec<_> = last
                    .iter()
                    .filter_map(|(l, _)| l.as_ref())
                    .flatten()
                    .filter(|o| seen.insert(o.id.clone()))
                    .cloned()
                    .collect();
                if found.len() != rt.discovered.load().len() {
                    tracing::info!(models = found.len(), "upstream models discovered");
                }
                rt.discovered.store(Arc::new(found));
                true
            }
        },
    );
}

/// Active health probes: one task per provider with `probe_interval_secs`,
/// feeding the same breaker as live traffic. They hold no ledger handle.
pub(crate) fn spawn_probes(rt: &crate::state::Runtime, stop: &CancellationToken) {
    for (provider, health) in rt.providers.iter().zip(&rt.health) {
        let Some(every) = provider.settings.probe_interval else {
            continue;
        };
        let (provider, health) = (provider.clone(), health.clone());
        spawn_every(every, stop.clone(), rt.retired.clone(), false, move || {
            let (provider, health) = (provider.clone(), health.clone());
            async move {
                let Some(permit) = health.acquire() else {
                    return true;
                };
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
                true
            }
        });
    }
}

/// What the accept loop enforces per connection.
struct ConnLimits {
    max_header: usize,
    /// Open client connections at most; beyond it a canned 503.
    max_conns: usize,
    metrics: Arc<crate::metrics::Metrics>,
}

/// Connections being answered 503 at once at most (beyond it they are just closed).
const MAX_REJECTING: usize = 256;

async fn serve_loop(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    limits: ConnLimits,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .max_header_size(limits.max_header)
        .header_read_timeout(Duration::from_secs(30));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_conns));
    let rejecting = Arc::new(tokio::sync::Semaphore::new(MAX_REJECTING));
    let busy: Arc<[u8]> = Arc::from(edge::over_capacity_response());
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        limits.metrics.rejected("connection_limit");
                        if let Ok(r) = rejecting.clone().try_acquire_owned() {
                            let busy = busy.clone();
                            tokio::spawn(async move {
                                edge::reject_connection(stream, busy).await;
                                drop(r);
                            });
                        }
                        continue;
                    };
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("set_nodelay failed: {e}");
                    }
                    let svc = TowerToHyperService::new(router.clone());
                    let conn = http.serve_connection(edge::JsonErrorIo::new(TokioIo::new(stream)), svc);
                    let conn = graceful.watch(conn);
                    tasks.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!("connection ended with error: {e}");
                        }
                        drop(slot);
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
