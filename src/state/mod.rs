//! `AppState` and `Runtime`: the state a request works with, built once at start and
//! swapped on reload. Below the HTTP layer: `server/` uses it, it never uses `server/`.

pub mod cache;
pub mod cache_redis;
pub mod response_store;
pub mod shared;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::accounting::budget::Budgets;
use crate::accounting::ledger::LedgerHandle;
use crate::accounting::pricing::{self, Price};
use crate::api::models::{ModelList, ModelObject};
use crate::auth::keys::KeyStore;
use crate::auth::limiter::DeploymentLimits;
use crate::config::{Balance, Config};
use crate::metrics::Metrics;
use crate::providers::Provider;
use crate::resilience::health::Health;
use crate::routing::sessions::Sessions;

/// Where a public model name is served.
#[derive(Debug, Clone)]
pub struct Target {
    /// The public model name (after alias resolution).
    pub public: Arc<str>,
    pub provider: usize,
    /// Model id sent upstream.
    pub upstream: Arc<str>,
    pub price: Option<Price>,
}

/// A configured model (or alias): its deployments and fallbacks.
#[derive(Debug, Clone)]
struct ModelEntry {
    deployments: Vec<Target>,
    /// Weight of each deployment (same index).
    weights: Vec<u64>,
    balance: Balance,
    fallbacks: Vec<String>,
}

/// Everything derived from one configuration. Swapped atomically on reload;
/// a request keeps the `Arc<Runtime>` it started with until it ends.
pub struct Runtime {
    pub config: Config,
    pub providers: Vec<Arc<Provider>>,
    /// Health (breaker, latency) per provider, same index as `providers`.
    pub health: Vec<Arc<Health>>,
    /// Account rate limits per provider, same index as `providers`.
    pub limits: Vec<Option<Arc<DeploymentLimits>>>,
    /// 1 for the configuration the server started with, +1 per reload.
    pub generation: u64,
    /// Provider secrets as shared strings, for scrubbing in stream relays.
    pub secrets: Vec<Option<Arc<str>>>,
    /// Configured models and aliases, resolved.
    targets: HashMap<String, ModelEntry>,
    /// Pre-rendered `GET /v1/models` body.
    pub models_body: Bytes,
    model_objects: HashMap<String, Bytes>,
    /// The configured models, aliases and routes, in list order.
    pub model_list: Vec<ModelObject>,
    /// Models listed by local / pass-through upstreams (their `GET /models`),
    /// refreshed by `server::spawn_discovery`; empty when none discovers.
    pub discovered: arc_swap::ArcSwap<Vec<ModelObject>>,
    /// Stops this runtime's background tasks (health probes) when it is replaced.
    pub retired: tokio_util::sync::CancellationToken,
    /// Enabled experiments, bound to their state in `AppState::experiments`.
    pub experiments: Vec<Arc<crate::experiments::Live>>,
}

/// Process-wide state: the current [`Runtime`] plus what outlives a reload.
pub struct AppState {
    runtime: ArcSwap<Runtime>,
    pub ledger: LedgerHandle,
    id_prefix: u32,
    counter: AtomicU64,
    /// Session pinning for routed requests.
    pub sessions: Sessions,
    /// Spend limits and pacing.
    pub budgets: Arc<Budgets>,
    /// Serialises reloads.
    reload_lock: tokio::sync::Mutex<()>,
    /// The ledger file, for read-only queries (/admin/spend).
    pub ledger_path: std::path::PathBuf,
    /// The PostgreSQL ledger (`[ledger] url`), for read-only queries; None: the SQLite file.
    pub ledger_pg: Option<sqlx::PgPool>,
    /// Virtual keys.
    pub keys: Arc<KeyStore>,
    pub metrics: Arc<Metrics>,
    /// Serve without a key while no key exists (loopback, or --allow-unauthenticated).
    pub open_access: bool,
    /// Cancelled to shut the server down (and its background tasks).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Experiment state that outlives reloads (ramp positions, shadow limits).
    pub experiments: Arc<crate::experiments::Experiments>,
    /// OpenTelemetry trace export (`[telemetry]`; kept across reloads).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Stored `/v1/responses` answers (in the ledger database).
    pub responses: Arc<response_store::ResponseStore>,
    /// The exact response cache (sized from `[cache]` at start).
    pub cache: Arc<cache::ResponseCache>,
    /// Shared state on Redis (`[state] redis_url`; kept across reloads); None: in memory.
    pub shared: Option<Arc<shared::Shared>>,
    /// Dashboard (`/ui`) login sessions.
    pub ui_sessions: crate::auth::sessions::UiSessions,
}

impl AppState {
    /// Read-only queries (/admin/spend, feedback lookups) go to this PostgreSQL ledger.
    pub fn with_ledger_pg(mut self, pg: Option<sqlx::PgPool>) -> AppState {
        self.ledger_pg = pg;
        self
    }

    /// Limits, concurrency caps and budgets go through this Redis backend.
    /// With `[cache] store = "redis"`, the response cache moves to it too.
    pub fn with_shared(mut self, shared: Option<Arc<shared::Shared>>) -> AppState {
        let settings = &self.rt().config.cache;
        if let (Some(s), crate::config::cache::StoreKind::Redis) = (&shared, settings.store) {
            self.cache = Arc::new(cache::ResponseCache::redis(settings, s.clone()));
        }
        self.shared = shared;
        self
    }

    pub fn new(
        config: Config,
        ledger: LedgerHandle,
        ledger_path: std::path::PathBuf,
        budgets: Arc<Budgets>,
        keys: Arc<KeyStore>,
        metrics: Arc<Metrics>,
        experiments: Arc<crate::experiments::Experiments>,
    ) -> Result<AppState, String> {
        let idle = config.routing.session_idle;
        let open_access = config.server.listen.ip().is_loopback() || config.server.allow_unauthenticated;
        let telemetry = Arc::new(crate::telemetry::Telemetry::new(&config.telemetry)?);
        let response_cache = Arc::new(cache::ResponseCache::new(&config.cache));
        let mut rt = Runtime::new(config, None)?;
        let (live, events) = experiments.bind(&rt.config, budgets.clock().now_ms());
        rt.experiments = live;
        persist_ramp_events(&experiments, events);
        Ok(AppState {
            runtime: ArcSwap::from_pointee(rt),
            ledger,
            id_prefix: fastrand::u32(..),
            counter: AtomicU64::new(0),
            sessions: Sessions::new(idle),
            budgets,
            reload_lock: tokio::sync::Mutex::new(()),
            responses: Arc::new(response_store::ResponseStore::new(ledger_path.clone())),
            ledger_path,
            ledger_pg: None,
            keys,
            metrics,
            open_access,
            shutdown: tokio_util::sync::CancellationToken::new(),
            experiments,
            telemetry,
            cache: response_cache,
            shared: None,
            ui_sessions: Default::default(),
        })
    }

    /// With shared state, every deployment's local breaker trips are announced
    /// to the other instances (kept deployments already are).
    pub fn tell_trips(&self, rt: &Runtime) {
        let Some(sh) = self.shared.as_ref().filter(|s| s.share_breakers) else {
            return;
        };
        for h in &rt.health {
            let sh = Arc::downgrade(sh);
            h.tell_trips(Arc::new(move |provider, cooldown| {
                if let Some(sh) = sh.upgrade() {
                    sh.announce_trip(provider, cooldown);
                }
            }));
        }
    }

    /// The configuration-derived state for a new request.
    pub fn rt(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Builds a runtime from `config`, keeping the health state of unchanged
    /// providers, and swaps it in. Requests in flight keep the old one.
    /// Returns what changed, for the log.
    pub async fn reload(&self, config: Config) -> Result<Vec<String>, String> {
        let _guard = self.reload_lock.lock().await;
        let old = self.rt();
        let mut new = Runtime::new(config, Some(&old))?;
        new.generation = old.generation + 1;
        let (live, events) = self.experiments.bind(&new.config, self.budgets.clock().now_ms());
        new.experiments = live;
        persist_ramp_events(&self.experiments, events);
        let changes = old.diff(&new);
        self.tell_trips(&new);
        self.runtime.store(Arc::new(new));
        old.retired.cancel();
        Ok(changes)
    }

    /// A new request id, unique across instances (random prefix) and requests.
    pub fn next_request_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        request_id(self.id_prefix, n)
    }

    pub fn is_ready(&self) -> bool {
        self.ledger.is_open()
    }
}

/// `req_` + the prefix in 8 hex digits + the counter in 12 (wrapping past
/// 2^48 it grows), as `format!("req_{:08x}{:012x}")` writes them, without
/// the formatting machinery (this is on every request's path).
fn request_id(prefix: u32, n: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if n > 0xffff_ffff_ffff {
        return format!("req_{prefix:08x}{n:012x}");
    }
    let mut buf = *b"req_00000000000000000000";
    for (i, slot) in buf[4..12].iter_mut().enumerate() {
        *slot = HEX[((prefix >> (28 - 4 * i)) & 0xf) as usize];
    }
    for (i, slot) in buf[12..].iter_mut().enumerate() {
        *slot = HEX[((n >> (44 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits and `req_`: always UTF-8.
    String::from_utf8(buf.to_vec()).unwrap_or_default()
}

/// Logs ramp log lines written while binding a runtime and stores them in the background.
fn persist_ramp_events(
    ex: &Arc<crate::experiments::Experiments>,
    events: Vec<crate::experiments::store::RampRow>,
) {
    if events.is_empty() {
        return;
    }
    for row in &events {
        crate::experiments::live::log_ramp(row);
    }
    let path = ex.ledger_path.clone();
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        for row in &events {
            if let Err(e) = crate::experiments::store::insert_ramp(&path, row).await {
                tracing::warn!(experiment = %row.experiment, "cannot store the ramp step: {e}");
            }
        }
    });
}

impl Runtime {
    /// Builds the runtime; with `previous`, providers whose settings did not
    /// change keep their client and health (breaker, latency) state.
    pub fn new(config: Config, previous: Option<&Runtime>) -> Result<Runtime, String> {
        let mut providers = Vec::with_capacity(config.providers.len());
        let mut health = Vec::with_capacity(config.providers.len());
        let mut limits = Vec::with_capacity(config.providers.len());
        let now_ms = crate::accounting::budget::Clock::system().now_ms();
        for p in &config.providers {
            let kept = previous.and_then(|old| {
                let i = old.providers.iter().position(|o| o.name.as_ref() == p.name)?;
                let same = fingerprint(&old.providers[i].settings) == fingerprint(p)
                    && old.config.resilience.breaker == config.resilience.breaker;
                same.then(|| {
                    (
                        old.providers[i].clone(),
                        old.health[i].clone(),
                        old.limits[i].clone(),
                    )
                })
            });
            let (prov, h, l) = match kept {
                Some(k) => k,
                None => {
                    let prov = Arc::new(Provider::new(p.clone())?);
                    let h = Arc::new(Health::new(prov.name.clone(), config.resilience.breaker.clone()));
                    let l = DeploymentLimits::new(p.rpm, p.tpm, now_ms).map(Arc::new);
                    (prov, h, l)
                }
            };
            providers.push(prov);
            health.push(h);
            limits.push(l);
        }
        let secrets = providers.iter().map(|p| p.secret().map(Arc::from)).collect();
        let mut targets = HashMap::new();
        for (name, m) in &config.models {
            let public: Arc<str> = Arc::from(name.as_str());
            let deployments = m
                .deployments
                .iter()
                .map(|d| Target {
                    public: public.clone(),
                    provider: d.provider,
                    upstream: Arc::from(d.upstream.as_str()),
                    price: m.price,
                })
                .collect();
            let weights = m.deployments.iter().map(|d| d.weight as u64).collect();
            targets.insert(
                name.clone(),
                ModelEntry {
                    deployments,
                    weights,
                    balance: m.balance,
                    fallbacks: m.fallbacks.clone(),
                },
            );
        }
        for (alias, target) in &config.aliases {
            let t = match targets.get(target) {
                Some(t) => t.clone(),
                None => match pass_through(&providers, target) {
                    Some(t) => ModelEntry {
                        deployments: vec![t],
                        weights: vec![1],
                        balance: Balance::Weighted,
                        fallbacks: vec![],
                    },
                    None => continue, // validate() guarantees this cannot happen
                },
            };
            targets.insert(alias.clone(), t);
        }
        let created = 1_767_225_600; // 2026-01-01: stable, as OpenAI's list is.
        let mut objects = Vec::new();
        for (name, m) in &config.models {
            objects.push(ModelObject {
                id: name.clone(),
                object: "model",
                created,
                owned_by: providers[m.provider].settings.name.clone(),
            });
        }
        for alias in config.aliases.keys() {
            objects.push(ModelObject {
                id: alias.clone(),
                object: "model",
                created,
                owned_by: "switchyard".into(),
            });
        }
        for route in config.routing.routes.keys() {
            objects.push(ModelObject {
                id: route.clone(),
                object: "model",
                created,
                owned_by: "switchyard-router".into(),
            });
        }
        let models_body = Bytes::from(
            serde_json::to_vec(&ModelList {
                object: "list",
                data: &objects,
            })
            .map_err(|e| e.to_string())?,
        );
        let model_objects = objects
            .iter()
            .map(|o| Ok((o.id.clone(), Bytes::from(serde_json::to_vec(o)?))))
            .collect::<Result<HashMap<_, _>, serde_json::Error>>()
            .map_err(|e| e.to_string())?;
        Ok(Runtime {
            config,
            providers,
            health,
            limits,
            generation: 1,
            secrets,
            targets,
            models_body,
            model_objects,
            model_list: objects,
            discovered: arc_swap::ArcSwap::from_pointee(Vec::new()),
            retired: tokio_util::sync::CancellationToken::new(),
            experiments: Vec::new(),
        })
    }

    /// Human-readable differences to `new`, for the reload log line.
    pub fn diff(&self, new: &Runtime) -> Vec<String> {
        let mut out = Vec::new();
        let names = |r: &Runtime| r.providers.iter().map(|p| p.name.to_string()).collect::<Vec<_>>();
        let (a, b) = (names(self), names(new));
        for n in b.iter().filter(|n| !a.contains(n)) {
            out.push(format!("provider {n} added"));
        }
        for n in a.iter().filter(|n| !b.contains(n)) {
            out.push(format!("provider {n} removed"));
        }
        for (i, p) in new.providers.iter().enumerate() {
            if let Some(j) = a.iter().position(|n| **n == *p.name) {
                if !Arc::ptr_eq(&self.health[j], &new.health[i]) {
                    out.push(format!("provider {} changed", p.name));
                }
            }
        }
        let models = |r: &Runtime| r.config.models.keys().cloned().collect::<Vec<_>>();
        let (ma, mb) = (models(self), models(new));
        for n in mb.iter().filter(|n| !ma.contains(n)) {
            out.push(format!("model {n} added"));
        }
        for n in ma.iter().filter(|n| !mb.contains(n)) {
            out.push(format!("model {n} removed"));
        }
        let aliases = |r: &Runtime| r.config.aliases.keys().cloned().collect::<Vec<_>>();
        let (aa, ab) = (aliases(self), aliases(new));
        for n in ab.iter().filter(|n| !aa.contains(n)) {
            out.push(format!("alias {n} added"));
        }
        for n in aa.iter().filter(|n| !ab.contains(n)) {
            out.push(format!("alias {n} removed"));
        }
        for (n, m) in &new.config.models {
            if self.config.models.get(n).is_some_and(|o| o.price != m.price) {
                out.push(format!("model {n} price changed"));
            }
        }
        if self.config.budgets.global != new.config.budgets.global {
            out.push("global budget changed".into());
        }
        let routes = |r: &Runtime| r.config.routing.routes.keys().cloned().collect::<Vec<_>>();
        if routes(self) != routes(new) {
            out.push(format!("routes now {:?}", routes(new)));
        }
        let live = |r: &Runtime| {
            r.experiments
                .iter()
                .map(|e| (e.name.to_string(), e.settings.clone()))
                .collect::<Vec<_>>()
        };
        let (ea, eb) = (live(self), live(new));
        for (n, e) in &eb {
            match ea.iter().find(|(m, _)| m == n) {
                None => out.push(format!("experiment {n} started")),
                Some((_, old)) if old != e => out.push(format!("experiment {n} changed")),
                Some(_) => {}
            }
        }
        for (n, _) in ea.iter().filter(|(n, _)| !eb.iter().any(|(m, _)| m == n)) {
            out.push(format!("experiment {n} stopped"));
        }
        out
    }

    /// Resolves a requested model name: configured model or alias first, then
    /// the first provider whose pass-through pattern matches.
    pub fn resolve(&self, model: &str) -> Option<Target> {
        match self.targets.get(model) {
            Some(t) => t.deployments.first().cloned(),
            None => pass_through(&self.providers, model),
        }
    }

    /// Every target for a chain of model names, in attempt order: each
    /// model's deployments (ordered by its balancing policy), then the next
    /// model's. With `with_fallbacks`, the first model's configured
    /// fallbacks follow. Unknown names are skipped.
    pub fn targets(&self, chain: &[&str], with_fallbacks: bool) -> Vec<Target> {
        self.targets_with_affinity(chain, with_fallbacks, None)
    }

    /// [`targets`](Self::targets), with the first model's deployments in
    /// rendezvous order of `affinity` (a session's or a long prefix's hash):
    /// requests sharing it go to the same deployment while it is healthy, so the
    /// provider's prompt cache hits; when it fails (breaker open) they move to the
    /// next in that order, the same one for all of them, and come back once it
    /// recovers. The balancer trades this against load: when the affine
    /// deployment has more than twice the load of the least loaded one (and at
    /// least 4 requests in flight), the request is balanced as usual.
    pub fn targets_with_affinity(
        &self,
        chain: &[&str],
        with_fallbacks: bool,
        affinity: Option<u64>,
    ) -> Vec<Target> {
        let mut out = Vec::new();
        let mut names: Vec<&str> = chain.to_vec();
        if with_fallbacks {
            if let Some(first) = chain.first().and_then(|m| self.targets.get(*m)) {
                names.extend(first.fallbacks.iter().map(String::as_str));
            }
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                continue;
            }
            match self.targets.get(*name) {
                Some(e) if i == 0 && affinity.is_some() && e.deployments.len() > 1 => {
                    self.push_affine(e, affinity.unwrap_or_default(), &mut out)
                }
                Some(e) => self.push_balanced(e, &mut out),
                None => out.extend(pass_through(&self.providers, name)),
            }
        }
        out
    }

    fn push_affine(&self, e: &ModelEntry, key: u64, out: &mut Vec<Target>) {
        // Highest random weight: score = weight / -ln(u), u uniform in (0, 1) from (key, provider).
        let score = |i: usize| {
            use crate::experiments::assign::{fnv1a, mix};
            let d = &e.deployments[i];
            let h = mix(fnv1a(key, self.providers[d.provider].name.as_bytes()));
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            e.weights[i].max(1) as f64 / -u.ln()
        };
        let mut order: Vec<usize> = (0..e.deployments.len()).collect();
        order.sort_by(|a, b| score(*b).total_cmp(&score(*a)));
        let health = |i: usize| &self.health[e.deployments[i].provider];
        let first = order[0];
        let least = order
            .iter()
            .map(|i| health(*i).load())
            .fold(f64::INFINITY, f64::min);
        if health(first).in_flight() >= 4 && health(first).load() > 2.0 * least {
            return self.push_balanced(e, out);
        }
        out.extend(order.into_iter().map(|i| e.deployments[i].clone()));
    }

    fn push_balanced(&self, e: &ModelEntry, out: &mut Vec<Target>) {
        let n = e.deployments.len();
        if n <= 1 {
            out.extend(e.deployments.iter().cloned());
            return;
        }
        let mut rest: Vec<usize> = (0..n).collect();
        match e.balance {
            Balance::Weighted => {
                // Weighted random order without replacement.
                while !rest.is_empty() {
                    let total: u64 = rest.iter().map(|i| e.weights[*i]).sum();
                    let mut pick = fastrand::u64(0..total.max(1));
                    let mut at = rest.len() - 1;
                    for (k, i) in rest.iter().enumerate() {
                        if pick < e.weights[*i] {
                            at = k;
                            break;
                        }
                        pick -= e.weights[*i];
                    }
                    out.push(e.deployments[rest.remove(at)].clone());
                }
            }
            Balance::Latency => {
                // Power of two choices on load (peak-EWMA x in flight), then the rest by load.
                let load = |i: usize| self.health[e.deployments[i].provider].load();
                let a = fastrand::usize(0..n);
                let mut b = fastrand::usize(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let first = if load(b) < load(a) { b } else { a };
                out.push(e.deployments[rest.remove(first)].clone());
                rest.sort_by(|x, y| load(*x).total_cmp(&load(*y)));
                out.extend(rest.into_iter().map(|i| e.deployments[i].clone()));
            }
        }
    }

    /// The `GET /v1/models/{id}` body, if the id is known or servable.
    pub fn model_object(&self, id: &str) -> Option<Bytes> {
        if let Some(b) = self.model_objects.get(id) {
            return Some(b.clone());
        }
        serde_json::to_vec(&self.model_info(id)?).ok().map(Bytes::from)
    }

    /// Every listed model: the configured ones, then the discovered ones
    /// not configured under the same name.
    pub fn all_models(&self) -> std::borrow::Cow<'_, [ModelObject]> {
        let disc = self.discovered.load();
        if disc.is_empty() {
            return std::borrow::Cow::Borrowed(&self.model_list);
        }
        let mut all = self.model_list.clone();
        all.extend(
            disc.iter()
                .filter(|d| !self.model_list.iter().any(|o| o.id == d.id))
                .cloned(),
        );
        std::borrow::Cow::Owned(all)
    }

    /// The `auto` chain when the config has no `auto` route but upstreams
    /// list their models: the discovered chat models, cheapest first by the
    /// shipped prices (unpriced ones after, in the upstream's order).
    pub fn discovered_auto_chain(&self) -> Option<Vec<Arc<str>>> {
        let disc = self.discovered.load();
        let mut m: Vec<(f64, usize, &str)> = disc
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.id.contains("embed"))
            .map(|(i, o)| {
                let p = pricing::default_price(&o.id).map_or(f64::INFINITY, |p| p.input + p.output);
                (p, i, o.id.as_str())
            })
            .collect();
        if m.is_empty() {
            return None;
        }
        m.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Some(m.into_iter().map(|(_, _, id)| Arc::from(id)).collect())
    }

    /// The model object of a configured or pass-through model id.
    pub fn model_info(&self, id: &str) -> Option<ModelObject> {
        if let Some(o) = self.model_list.iter().find(|o| o.id == id) {
            return Some(o.clone());
        }
        let t = pass_through(&self.providers, id)?;
        Some(ModelObject {
            id: id.to_string(),
            object: "model",
            created: 1_767_225_600,
            owned_by: self.providers[t.provider].settings.name.clone(),
        })
    }
}

/// Identity of a provider's settings, secrets included (their `Debug` is redacted).
fn fingerprint(p: &crate::config::ProviderSettings) -> String {
    format!("{p:?}\u{1f}{}", p.api_key.as_ref().map_or("", |k| k.expose()))
}

fn pass_through(providers: &[Arc<Provider>], model: &str) -> Option<Target> {
    let idx = providers
        .iter()
        .position(|p| p.settings.patterns.iter().any(|pat| pat.matches(model)))?;
    let name: Arc<str> = Arc::from(model);
    Some(Target {
        public: name.clone(),
        provider: idx,
        upstream: name,
        price: pricing::default_price(model),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_read_as_the_format_string_writes_them() {
        for (p, n) in [
            (0, 0),
            (0xdead_beef, 1),
            (u32::MAX, 0xffff_ffff_ffff),
            (0x0123_4567, 0x89ab_cdef_0123),
            (7, 1 << 48),
            (7, u64::MAX),
        ] {
            assert_eq!(super::request_id(p, n), format!("req_{p:08x}{n:012x}"));
        }
    }
}
