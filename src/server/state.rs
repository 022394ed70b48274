//! `AppState`: everything a request handler needs, built once at start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::accounting::ledger::LedgerHandle;
use crate::accounting::pricing::{self, Price};
use crate::api::models::{ModelList, ModelObject};
use crate::config::Config;
use crate::providers::Provider;
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

pub struct AppState {
    pub config: Config,
    pub providers: Vec<Provider>,
    /// Provider secrets as shared strings, for scrubbing in stream relays.
    pub secrets: Vec<Option<Arc<str>>>,
    /// Configured models and aliases, resolved.
    targets: HashMap<String, Target>,
    pub ledger: LedgerHandle,
    /// Pre-rendered `GET /v1/models` body.
    pub models_body: Bytes,
    model_objects: HashMap<String, Bytes>,
    id_prefix: u32,
    counter: AtomicU64,
    /// Session pinning for routed requests.
    pub sessions: Sessions,
}

impl AppState {
    pub fn new(config: Config, ledger: LedgerHandle) -> Result<AppState, String> {
        let providers = config
            .providers
            .iter()
            .cloned()
            .map(Provider::new)
            .collect::<Result<Vec<_>, _>>()?;
        let config_session_idle = config.routing.session_idle;
        let secrets = providers.iter().map(|p| p.secret().map(Arc::from)).collect();
        let mut targets = HashMap::new();
        for (name, m) in &config.models {
            targets.insert(
                name.clone(),
                Target {
                    public: Arc::from(name.as_str()),
                    provider: m.provider,
                    upstream: Arc::from(m.upstream.as_str()),
                    price: m.price,
                },
            );
        }
        for (alias, target) in &config.aliases {
            let t = match targets.get(target) {
                Some(t) => t.clone(),
                None => match pass_through(&providers, target) {
                    Some(t) => t,
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
        Ok(AppState {
            config,
            providers,
            secrets,
            targets,
            ledger,
            models_body,
            model_objects,
            id_prefix: fastrand::u32(..),
            counter: AtomicU64::new(0),
            sessions: Sessions::new(config_session_idle),
        })
    }

    /// Resolves a requested model name: configured model or alias first, then
    /// the first provider whose pass-through pattern matches.
    pub fn resolve(&self, model: &str) -> Option<Target> {
        match self.targets.get(model) {
            Some(t) => Some(t.clone()),
            None => pass_through(&self.providers, model),
        }
    }

    /// The `GET /v1/models/{id}` body, if the id is known or servable.
    pub fn model_object(&self, id: &str) -> Option<Bytes> {
        if let Some(b) = self.model_objects.get(id) {
            return Some(b.clone());
        }
        let t = pass_through(&self.providers, id)?;
        let o = ModelObject {
            id: id.to_string(),
            object: "model",
            created: 1_767_225_600,
            owned_by: self.providers[t.provider].settings.name.clone(),
        };
        serde_json::to_vec(&o).ok().map(Bytes::from)
    }

    /// A new request id, unique across instances (random prefix) and requests.
    pub fn next_request_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("req_{:08x}{:012x}", self.id_prefix, n)
    }

    pub fn is_ready(&self) -> bool {
        self.ledger.is_open()
    }
}

fn pass_through(providers: &[Provider], model: &str) -> Option<Target> {
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
