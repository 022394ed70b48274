//! Configuration: the TOML schema, environment defaults and validation.
//!
//! `RawConfig` mirrors the file (unknown keys are errors); `validate` turns it
//! into the runtime `Config`, collecting every problem with the exact key path
//! (`providers.openai.base_url`). Secrets are resolved here, once, and kept in
//! [`Secret`], whose `Debug` never shows the value.

pub mod budgets;
pub mod cache;
pub mod env;
pub mod experiments;
pub mod state;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use indexmap::IndexMap;
use serde::Deserialize;

use crate::accounting::pricing::{self, Price};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
/// Default request body limit: 10 MiB.
pub const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;
/// Default cap on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// A secret value (API key). Its `Debug` and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The real value: only for building upstream requests.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// One configuration problem, with the key path it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `providers.openai.base_url`; empty for file-level errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A list of configuration problems.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// The file schema
// ---------------------------------------------------------------------------

/// The TOML file as written. Every key is documented in the README.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub ledger: RawLedger,
    #[serde(default)]
    pub providers: IndexMap<String, RawProvider>,
    #[serde(default)]
    pub models: IndexMap<String, RawModel>,
    #[serde(default)]
    pub aliases: IndexMap<String, String>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub routes: IndexMap<String, RawRoute>,
    #[serde(default)]
    pub resilience: RawResilience,
    #[serde(default)]
    pub budgets: budgets::RawBudgets,
    #[serde(default)]
    pub experiments: IndexMap<String, experiments::RawExperiment>,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub cache: cache::RawCache,
    #[serde(default)]
    pub state: state::RawState,
}

/// `[telemetry]`: OpenTelemetry trace export (off unless `otlp_endpoint` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// OTLP/HTTP collector base URL (`http://host:4318`; `/v1/traces` is added
    /// unless the URL already has a path).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans (default "switchyard").
    pub service_name: Option<String>,
    /// Extra headers on export requests (a collector's API key: use `${VAR}`).
    #[serde(default)]
    pub headers: IndexMap<String, String>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// "text" (default) or "json".
    pub format: Option<String>,
    /// Level or filter directive (default "info"); RUST_LOG overrides it.
    pub level: Option<String>,
    /// One `switchyard::access` line per upstream attempt (default true).
    pub access: Option<bool>,
}

/// `[resilience]`: retries, deadlines and circuit breakers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResilience {
    /// Upstream attempts per request at most, retries and fallbacks included (default 4).
    pub max_attempts: Option<u32>,
    /// Retries of the same deployment before moving on (default 1).
    pub retries_per_target: Option<u32>,
    /// Overall deadline for getting an answer started, in ms (default 120000).
    pub deadline_ms: Option<u64>,
    /// Exponential backoff with full jitter: base and cap in ms (defaults 100, 2000).
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    /// Longest Retry-After honoured, in ms (default 5000); longer waits move on instead.
    pub retry_after_cap_ms: Option<u64>,
    /// Breaker: open after this many consecutive failures (default 5).
    pub breaker_consecutive_failures: Option<u32>,
    /// Breaker: open when the failure rate over the window reaches this (default 0.5) ...
    pub breaker_failure_rate: Option<f64>,
    /// ... with at least this many calls in the window (default 20).
    pub breaker_min_calls: Option<u32>,
    /// Sliding window length in seconds (default 30).
    pub breaker_window_secs: Option<u64>,
    /// First cool-down before a half-open probe, in ms (default 5000); doubles on each failed probe ...
    pub breaker_cooldown_ms: Option<u64>,
    /// ... up to this (default 60000).
    pub breaker_max_cooldown_ms: Option<u64>,
}

/// `[routing]`: settings shared by every route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Tier names, cheapest first. Default: economy, quality, frontier.
    pub tiers: Option<Vec<String>>,
    /// Classifier weights file (from `switchyard train-classifier`); default: built in.
    pub classifier: Option<PathBuf>,
    /// Below this confidence the classifier abstains and the route's default task applies.
    pub min_confidence: Option<f32>,
    /// Session pinning idle window in seconds (0 disables pinning). Default 1800.
    pub session_idle_secs: Option<u64>,
    /// Tier-predictor weights file (from `switchyard train-router`); default: built in.
    pub router: Option<PathBuf>,
}

/// `[routes.NAME]`: a virtual model name (such as `auto`) that picks a model per request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Task used when the classifier abstains and for tasks without an entry.
    pub default_task: Option<String>,
    /// Candidate models of a predictor-routed route (any order; ranked by price,
    /// cheapest first). Each request goes to the cheapest candidate whose predicted
    /// chance of answering as well as the dearest clears `threshold`.
    pub models: Option<Vec<String>>,
    /// Predictor threshold in [0, 1]: 0 always the cheapest candidate, 1 always the dearest.
    pub threshold: Option<f64>,
    /// Target share of requests on the dearest candidate in [0, 1]; derives `threshold`
    /// from the predictor's training distribution (conflicts with `threshold`).
    pub strong_share: Option<f64>,
    #[serde(default)]
    pub tasks: IndexMap<String, RawRouteTask>,
}

/// How a route task picks its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// `models` in the order given (or the tier's models, cheapest first).
    #[default]
    Chain,
    /// The cheapest model whose quality score for the task meets the threshold,
    /// then the other qualifying models in cost order.
    CheapestAboveThreshold,
}

/// Budget-pacing priority of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteTask {
    /// Ordered model chain: primary first, then fallbacks.
    pub models: Option<Vec<String>>,
    /// The task's tier; with no `models`, the chain is this tier's models, cheapest first.
    pub tier: Option<String>,
    /// Minimum per-task quality score (0-1) for `select = "cheapest_above_threshold"`.
    pub quality_threshold: Option<f64>,
    #[serde(default)]
    pub select: Select,
    #[serde(default)]
    pub priority: Priority,
    /// Complexity (0-1) above which the request moves up one tier.
    pub escalate_above: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    /// Bearer key for /admin/* (admin endpoints are disabled without one).
    pub admin_key: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// Largest request head (request line and headers) in bytes (default 65536).
    pub max_header_bytes: Option<usize>,
    pub shutdown_grace_secs: Option<u64>,
    /// Serve without client keys on a non-loopback address (default false).
    pub allow_unauthenticated: Option<bool>,
    /// How often virtual keys are re-read from the database, in seconds (default 5).
    pub key_refresh_secs: Option<u64>,
    /// Longest time a client may take to send a request body, in ms (default 30000).
    pub body_timeout_ms: Option<u64>,
    /// Most client connections open at once; beyond it new ones get a 503 (default 4096).
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    pub path: Option<PathBuf>,
    pub batch_size: Option<usize>,
    pub flush_interval_ms: Option<u64>,
    /// How long `/v1/responses` answers are kept for `previous_response_id`, in
    /// seconds (default 2592000 = 30 days; 0 turns storage off).
    pub responses_ttl_secs: Option<u64>,
    /// "batch" (default) or "sync" (responses wait until their rows are on disk).
    pub durability: Option<String>,
    /// Rows kept in memory behind a failing write before they are spooled to a file (default 10000).
    pub max_pending_rows: Option<usize>,
    /// `postgres://...` (may use `${VAR}`): the ledger rows go to PostgreSQL
    /// instead of the SQLite file (which keeps the spool and local state).
    pub url: Option<String>,
}

/// Provider types known to this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI or any OpenAI-compatible server (vLLM, Ollama, Groq, Together, ...).
    Openai,
    /// DeepSeek (OpenAI-compatible; its cache-hit usage fields are normalised).
    Deepseek,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini API (generateContent).
    Gemini,
    /// Azure OpenAI (deployment URLs, api-version, api-key header).
    Azure,
    /// The built-in simulated provider: no network, plausible answers.
    Simulated,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Deepseek => "deepseek",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Azure => "azure",
            ProviderKind::Simulated => "simulated",
        }
    }

    /// The base URL used when the config gives none (None: required).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Deepseek => Some("https://api.deepseek.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            ProviderKind::Azure | ProviderKind::Simulated => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    #[serde(rename = "type")]
    pub kind: Option<ProviderKind>,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    /// Pass-through patterns: model names this provider accepts as given.
    #[serde(default)]
    pub models: Vec<String>,
    pub connect_timeout_ms: Option<u64>,
    /// Time allowed until the response headers arrive.
    pub first_byte_timeout_ms: Option<u64>,
    /// Longest gap allowed between two stream chunks.
    pub idle_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    /// Active health probe interval (0 or absent: passive health only).
    pub probe_interval_secs: Option<u64>,
    /// This deployment's request-per-minute limit with the provider (skipped when reached).
    pub rpm: Option<u32>,
    /// This deployment's token-per-minute limit with the provider.
    pub tpm: Option<u64>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    // azure only
    /// Azure `api-version` query parameter (default 2024-10-21).
    pub api_version: Option<String>,
    // anthropic only
    /// `anthropic-version` header (default 2023-06-01).
    pub anthropic_version: Option<String>,
    /// `max_tokens` sent when the client gives none (Anthropic requires it; default 4096).
    pub default_max_tokens: Option<u32>,
    /// `cache_control` breakpoints added where a request has none: "auto" (default) or "off".
    pub prompt_cache: Option<String>,
    /// Smallest prefix (tokens) worth a breakpoint (default: the model's minimum).
    pub prompt_cache_min_tokens: Option<u64>,
    // openai only
    /// The upstream speaks OpenAI's Responses API (`POST /responses`): `/v1/responses`
    /// requests are forwarded as they are (default: true for OpenAI's own URL).
    pub responses_api: Option<bool>,
    /// Set `prompt_cache_key` from the session or virtual key when the client sent
    /// none (default: true for OpenAI's own URL).
    pub prompt_cache_key: Option<bool>,
    // simulated only
    pub latency_ms: Option<u64>,
    pub tokens_per_second: Option<f64>,
    pub failure_rate: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Several deployments serving this model (instead of `provider` / `model`).
    pub deployments: Option<Vec<RawDeployment>>,
    /// How to spread requests over the deployments.
    #[serde(default)]
    pub balance: Balance,
    /// Models to fall back to (in order) when every deployment of this one fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    pub price: Option<RawPrice>,
    /// Tier name (one of `routing.tiers`).
    pub tier: Option<String>,
    /// Per-task quality scores in [0, 1], from the team's own evals.
    #[serde(default)]
    pub quality: IndexMap<String, f64>,
    /// "chat" or "embedding"; default: "embedding" when the upstream id contains "embed".
    pub kind: Option<ModelKind>,
}

/// One deployment of a model: a provider and the upstream id there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub weight: Option<u32>,
}

/// Load-balancing policy across a model's deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Random, proportional to `weight`.
    #[default]
    Weighted,
    /// Power of two choices over a peak-EWMA of latency (times in-flight requests).
    Latency,
}

/// A validated deployment.
#[derive(Debug, Clone)]
pub struct DeploymentSettings {
    pub provider: ProviderId,
    pub upstream: String,
    pub weight: u32,
}

/// What a model serves; routes only use chat models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Chat,
    Embedding,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input: f64,
    pub output: f64,
    pub cached_input: Option<f64>,
    pub cache_write: Option<f64>,
    pub per_request: Option<f64>,
}

// ---------------------------------------------------------------------------
// The runtime config
// ---------------------------------------------------------------------------

/// Where the running config came from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    Environment,
}

/// A validated, ready-to-use configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: ConfigSource,
    pub server: ServerSettings,
    pub ledger: LedgerSettings,
    /// Providers in config order; a `ProviderId` indexes this.
    pub providers: Vec<ProviderSettings>,
    /// Public model name -> where it is served.
    pub models: IndexMap<String, ModelSettings>,
    /// Alias -> public model name (already resolved through alias chains).
    pub aliases: IndexMap<String, String>,
    /// Task routing: tiers, classifier, routes.
    pub routing: crate::routing::policy::Routing,
    /// Retries, deadlines, breakers.
    pub resilience: crate::resilience::ResilienceSettings,
    /// Spend limits, pacing and alerts.
    pub budgets: crate::accounting::budget::BudgetSettings,
    /// Model-swap experiments, by name.
    pub experiments: IndexMap<String, experiments::Experiment>,
    pub log: LogSettings,
    /// OpenTelemetry export.
    pub telemetry: TelemetrySettings,
    /// `[cache]`: the exact response cache.
    pub cache: cache::CacheSettings,
    /// `[state]`: shared state (Redis) for several instances.
    pub state: state::StateSettings,
    /// Non-fatal notes for the start-up log (e.g. models without a price).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_key: Option<Secret>,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    pub allow_unauthenticated: bool,
    pub key_refresh: Duration,
    /// Deadline for reading a whole request body (408 beyond it).
    pub body_timeout: Duration,
    /// Cap on open client connections (a 503 beyond it).
    pub max_connections: usize,
}

/// `[telemetry]`, validated: where traces go.
#[derive(Debug, Clone, Default)]
pub struct TelemetrySettings {
    /// Full OTLP/HTTP traces URL (`.../v1/traces`); `None`: no export.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// Export request headers; values are secrets (never logged).
    pub headers: Vec<(String, Secret)>,
}

/// `[log]`: the log format and level.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// `json` for one JSON object per line; else human-readable text.
    pub json: bool,
    /// An `EnvFilter` directive such as `info` or `switchyard=debug` (RUST_LOG wins).
    pub level: String,
    /// One access line per upstream attempt.
    pub access: bool,
}

#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// SQLite file; `None` means "default under the data directory".
    pub path: Option<PathBuf>,
    pub batch_size: usize,
    /// How long the writer waits to fill a batch before writing it.
    pub flush_interval: Duration,
    /// How long stored `/v1/responses` answers live; `None`: storage off.
    pub responses_ttl: Option<Duration>,
    pub durability: crate::accounting::ledger::Durability,
    pub max_pending_rows: usize,
    /// PostgreSQL ledger URL (`[ledger] url`); None: the SQLite file.
    pub url: Option<Secret>,
}

/// Index of a provider in `Config::providers`.
pub type ProviderId = usize;

#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub patterns: Vec<Pattern>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub timeout: Duration,
    pub probe_interval: Option<Duration>,
    /// Account limits with the provider: requests and tokens per minute.
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub simulated: SimulatedSettings,
    /// Azure `api-version`.
    pub api_version: String,
    /// Anthropic `anthropic-version`.
    pub anthropic_version: String,
    /// Anthropic default `max_tokens`.
    pub default_max_tokens: u32,
    /// Anthropic: add prompt-cache breakpoints to requests without any.
    pub prompt_cache: bool,
    /// Anthropic: the smallest prefix given a breakpoint (None: the model's minimum).
    pub prompt_cache_min_tokens: Option<u64>,
    /// OpenAI: `/v1/responses` is forwarded as is to the upstream's `/responses`.
    pub responses_api: bool,
    /// OpenAI: `prompt_cache_key` set from the session or key when the client sent none.
    pub prompt_cache_key: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedSettings {
    pub latency: Duration,
    pub tokens_per_second: f64,
    pub failure_rate: f64,
}

impl Default for SimulatedSettings {
    fn default() -> Self {
        SimulatedSettings {
            latency: Duration::from_millis(150),
            tokens_per_second: 200.0,
            failure_rate: 0.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// The first deployment's provider.
    pub provider: ProviderId,
    /// Model id sent upstream (first deployment).
    pub upstream: String,
    /// Every deployment, the first one included.
    pub deployments: Vec<DeploymentSettings>,
    pub balance: Balance,
    /// Fallback models for explicit requests of this model.
    pub fallbacks: Vec<String>,
    /// `None`: price unknown, cost recorded as unknown.
    pub price: Option<Price>,
    /// Tier name, if the model has one.
    pub tier: Option<String>,
    /// Per-task quality scores.
    pub quality: IndexMap<String, f64>,
    pub kind: ModelKind,
}

/// A model-name pattern: `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(p: &str) -> Self {
        Pattern(p.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Glob match where `*` matches any (possibly empty) run of characters.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard matching with single backtrack point: O(len(p) * len(s)) worst case.
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![err("", format!("cannot read {}: {e}", path.display()))]))?;
    let (raw, mut errors) = parse_toml_lenient(&text);
    let Some(raw) = raw else {
        return Err(ConfigErrors(errors));
    };
    let result = validate(raw, ConfigSource::File(path.to_path_buf()), &|k| {
        std::env::var(k).ok()
    });
    match result {
        Ok(cfg) if errors.is_empty() => Ok(cfg),
        // Unknown keys, and what validation found besides, in one report.
        Ok(_) => Err(ConfigErrors(errors)),
        Err(ConfigErrors(more)) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    }
}

/// Parses TOML text into the raw schema, naming the key path of a type error.
/// Every unknown key is reported at once (each with its path), not only the
/// first; a syntax or type error still stops the parse.
pub fn parse_toml(text: &str) -> Result<RawConfig, ConfigErrors> {
    match parse_toml_lenient(text) {
        (Some(raw), errors) if errors.is_empty() => Ok(raw),
        (_, errors) => Err(ConfigErrors(errors)),
    }
}

/// [`parse_toml`], plus the config without its unknown keys when unknown
/// keys were the only problem, so validation can report its errors in the
/// same run.
fn parse_toml_lenient(text: &str) -> (Option<RawConfig>, Vec<ConfigError>) {
    let de = toml::Deserializer::new(text);
    let first = match serde_path_to_error::deserialize::<_, RawConfig>(de) {
        Ok(raw) => return (Some(raw), Vec::new()),
        Err(e) => e,
    };
    let path_of = |p: &serde_path_to_error::Path| {
        let s = p.to_string();
        if s == "." {
            String::new()
        } else {
            s
        }
    };
    let located = |inner: &toml::de::Error| {
        let mut msg = inner.message().to_string();
        if let Some(span) = inner.span() {
            let (line, col) = line_col(text, span.start);
            msg = format!("{msg} (line {line}, column {col})");
        }
        msg
    };
    let first_path = path_of(first.path());
    let first_unknown = unknown_field(first.inner().message());
    let first_msg = located(first.inner());
    let Some(first_field) = first_unknown else {
        return (None, vec![err(first_path, first_msg)]);
    };
    // Unknown keys: drop each one from the document and parse again, so the
    // next one (or the next real error) shows up too.
    let mut errors = vec![err(first_path.clone(), first_msg)];
    let Ok(mut doc) = text.parse::<toml::Table>() else {
        return (None, errors);
    };
    let mut cleaned = None;
    let segments = |p: &serde_path_to_error::Path| -> Vec<String> {
        p.iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect()
    };
    let mut pending = Some((segments(first.path()), first_field));
    for _ in 0..200 {
        let Some((at, field)) = pending.take() else { break };
        if !remove_key(&mut doc, &at, &field) {
            break;
        }
        match serde_path_to_error::deserialize::<_, RawConfig>(toml::Value::Table(doc.clone())) {
            Ok(raw) => {
                cleaned = Some(raw);
                break;
            }
            Err(e) => {
                let path = path_of(e.path());
                let msg = e.inner().message().to_string();
                match unknown_field(&msg) {
                    Some(f) => {
                        pending = Some((segments(e.path()), f));
                        errors.push(err(path, msg));
                    }
                    None => {
                        errors.push(err(path, msg));
                        break;
                    }
                }
            }
        }
    }
    (cleaned, errors)
}

/// A listen address: `IP:PORT`, or `localhost:PORT` for the IPv4 loopback
/// (no resolver lookup at start).
pub fn parse_listen(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    match s.strip_prefix("localhost:") {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
        None => s.parse().ok(),
    }
}

/// A log level, or `tracing` directives (`target=level`, comma-separated)
/// whose levels are all known.
fn valid_log_level(l: &str) -> bool {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let known = |v: &str| LEVELS.contains(&v.trim().to_ascii_lowercase().as_str());
    !l.trim().is_empty()
        && l.split(',').all(|d| match d.rsplit_once('=') {
            Some((target, level)) => !target.trim().is_empty() && known(level),
            None => known(d),
        })
}

/// The field name of serde's "unknown field `x`, expected ..." message.
fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Removes `field` from the table at `path` inside `doc` (the path may end
/// with the field itself, as serde_path_to_error reports it).
fn remove_key(doc: &mut toml::Table, path: &[String], field: &str) -> bool {
    let path = match path.split_last() {
        Some((last, parent)) if last == field => parent,
        _ => path,
    };
    let mut cur = doc;
    for seg in path {
        match cur.get_mut(seg) {
            Some(toml::Value::Table(t)) => cur = t,
            _ => return false,
        }
    }
    cur.remove(field).is_some()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// (provider name, type, key variable, base-URL variable, pass-through pattern,
/// models registered with their tiers when the base URL is the provider's own).
type EnvProvider = (
    &'static str,
    ProviderKind,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Builds the zero-config setup from the environment: providers whose usual
/// API-key variables are set, or a simulated provider when none is.
pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let mut raw = RawConfig::default();
    let set = |k: &str| lookup(k).filter(|v| !v.is_empty());
    // The admin API and the dashboard (`/ui`) with no config file.
    raw.server.admin_key = set("SWITCHYARD_ADMIN_KEY");
    // Order = pattern priority (OpenAI's "*" last).
    let table: [EnvProvider; 4] = [
        (
            "anthropic",
            ProviderKind::Anthropic,
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "claude-*",
            &[
                ("claude-opus-4.7", "frontier"),
                ("claude-sonnet-4.6", "quality"),
                ("claude-haiku-4.5", "economy"),
            ],
        ),
        (
            "gemini",
            ProviderKind::Gemini,
            "GEMINI_API_KEY",
            "GEMINI_BASE_URL",
            "gemini-*",
            &[("gemini-3-pro", "frontier"), ("gemini-3-flash", "economy")],
        ),
        (
            "deepseek",
            ProviderKind::Deepseek,
            "DEEPSEEK_API_KEY",
            "DEEPSEEK_BASE_URL",
            "deepseek-*",
            &[("deepseek-v4-pro", "economy")],
        ),
        (
            "openai",
            ProviderKind::Openai,
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "*",
            &[
                ("gpt-5.5", "frontier"),
                ("gpt-5.4", "quality"),
                ("gpt-5.4-mini", "economy"),
            ],
        ),
    ];
    for (name, kind, key_var, url_var, pattern, models) in table {
        if set(key_var).is_none() {
            continue;
        }
        // Honour *_BASE_URL the way the official SDKs do; a custom URL (a local
        // vLLM, a proxy) may not serve the provider's own model names.
        let base_url = set(url_var);
        if base_url.is_none() {
            for (m, tier) in models {
                raw.models.insert((*m).into(), model_in(name, m, tier));
            }
        }
        raw.providers.insert(
            name.into(),
            RawProvider {
                kind: Some(kind),
                base_url,
                api_key: Some(format!("${{{key_var}}}")),
                models: vec![pattern.into()],
                ..Default::default()
            },
        );
    }
    if raw.providers.is_empty() {
        raw.providers.insert(
            "simulated".into(),
            RawProvider {
                kind: Some(ProviderKind::Simulated),
                models: vec!["*".into()],
                ..Default::default()
            },
        );
        for (name, tier) in [
            ("gpt-5.5", "frontier"),
            ("gpt-5.4", "quality"),
            ("gpt-5.4-mini", "economy"),
            ("deepseek-v4-pro", "economy"),
        ] {
            raw.models.insert(name.into(), model_in("simulated", name, tier));
        }
    } else if raw.providers.len() == 1 {
        // DeepSeek alone serves every name; beside OpenAI it takes `deepseek-*`.
        if let Some(p) = raw.providers.get_mut("deepseek") {
            p.models = vec!["*".into()];
        }
    }
    validate(raw, ConfigSource::Environment, lookup)
}

fn model_in(provider: &str, upstream: &str, tier: &str) -> RawModel {
    RawModel {
        provider: Some(provider.into()),
        model: Some(upstream.into()),
        tier: Some(tier.into()),
        ..Default::default()
    }
}

/// Validates the raw config, resolving `${VAR}` references with `lookup`.
/// Returns every problem found, each with its key path.
pub fn validate(
    raw: RawConfig,
    source: ConfigSource,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    let listen = raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match parse_listen(listen) {
        Some(a) => a,
        None => {
            errors.push(err(
                "server.listen",
                format!("{listen:?} is not a socket address like 127.0.0.1:4000"),
            ));
            DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 4000)))
        }
    };
    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body_bytes == 0 {
        errors.push(err("server.max_body_bytes", "must be greater than 0"));
    }
    let admin_key = match raw
        .server
        .admin_key
        .as_deref()
        .map(|k| env::expand_with(k, lookup))
    {
        None => None,
        Some(Ok(k)) if k.is_empty() => None,
        Some(Ok(k)) => Some(Secret::new(k)),
        Some(Err(e)) => {
            errors.push(err("server.admin_key", e.to_string()));
            None
        }
    };
    let server = ServerSettings {
        listen,
        admin_key,
        max_body_bytes,
        max_header_bytes: raw.server.max_header_bytes.unwrap_or(64 * 1024),
        shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs.unwrap_or(30)),
        allow_unauthenticated: raw.server.allow_unauthenticated.unwrap_or(false),
        key_refresh: Duration::from_secs(raw.server.key_refresh_secs.unwrap_or(5).max(1)),
        body_timeout: Duration::from_millis(raw.server.body_timeout_ms.unwrap_or(30_000)),
        max_connections: raw.server.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
    };
    if server.body_timeout.is_zero() {
        errors.push(err("server.body_timeout_ms", "must be greater than 0"));
    }
    if server.max_connections == 0 {
        errors.push(err("server.max_connections", "must be greater than 0"));
    }
    if server.max_header_bytes < 8192 {
        errors.push(err("server.max_header_bytes", "must be at least 8192"));
    }
    let state = state::validate(&raw.state, lookup, &mut errors);
    let cache = cache::validate(&raw.cache, state.redis_url.is_some(), &mut errors);
    let log = LogSettings {
        json: match raw.log.format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(f) => {
                errors.push(err("log.format", format!("{f:?}: expected \"text\" or \"json\"")));
                false
            }
        },
        level: match raw.log.level.as_deref() {
            None => "info".into(),
            Some(l) if valid_log_level(l) => l.to_string(),
            Some(l) => {
                errors.push(err(
                    "log.level",
                    format!(
                        "{l:?}: expected one of \"error\", \"warn\", \"info\", \"debug\", \"trace\", \"off\" \
                         (or directives such as \"switchyard=debug,info\")"
                    ),
                ));
                "info".into()
            }
        },
        access: raw.log.access.unwrap_or(true),
    };
    let telemetry = TelemetrySettings {
        otlp_endpoint: match raw.telemetry.otlp_endpoint.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => match http::Uri::try_from(u) {
                Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
                    Some(if uri.path().trim_end_matches('/').is_empty() {
                        format!("{}/v1/traces", u.trim_end_matches('/'))
                    } else {
                        u.to_string()
                    })
                }
                _ => {
                    errors.push(err(
                        "telemetry.otlp_endpoint",
                        format!("{u:?}: expected an http(s) URL such as \"http://127.0.0.1:4318\""),
                    ));
                    None
                }
            },
        },
        service_name: raw
            .telemetry
            .service_name
            .clone()
            .unwrap_or_else(|| "switchyard".into()),
        headers: raw
            .telemetry
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
            .collect(),
    };
    for (k, _) in &telemetry.headers {
        if http::HeaderName::try_from(k.as_str()).is_err() {
            errors.push(err(
                format!("telemetry.headers.{k}"),
                "is not a valid HTTP header name",
            ));
        }
    }

    let batch_size = raw.ledger.batch_size.unwrap_or(512);
    if batch_size == 0 {
        errors.push(err("ledger.batch_size", "must be greater than 0"));
    }
    let durability = match raw.ledger.durability.as_deref() {
        None | Some("batch") => crate::accounting::ledger::Durability::Batch,
        Some("sync") => crate::accounting::ledger::Durability::Sync,
        Some(d) => {
            errors.push(err(
                "ledger.durability",
                format!("{d:?}: expected \"batch\" or \"sync\""),
            ));
            crate::accounting::ledger::Durability::Batch
        }
    };
    let ledger_url = match raw.ledger.url.as_deref().map(|u| env::expand_with(u, lookup)) {
        None => None,
        Some(Ok(u)) if u.is_empty() => None,
        Some(Ok(u)) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Some(Secret::new(u)),
        Some(Ok(_)) => {
            errors.push(err("ledger.url", "must start with postgres:// or postgresql://"));
            None
        }
        Some(Err(e)) => {
            errors.push(err("ledger.url", e.to_string()));
            None
        }
    };
    let ledger = LedgerSettings {
        url: ledger_url,
        path: raw.ledger.path,
        batch_size: batch_size.max(1),
        flush_interval: Duration::from_millis(raw.ledger.flush_interval_ms.unwrap_or(100)),
        responses_ttl: Some(raw.ledger.responses_ttl_secs.unwrap_or(30 * 24 * 3600))
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        durability,
        max_pending_rows: raw.ledger.max_pending_rows.unwrap_or(10_000),
    };

    // Names as written, so that an entry dropped for its own error does not
    // cascade into "unknown ..." errors wherever it is referenced.
    let raw_provider_names: Vec<String> = raw.providers.keys().cloned().collect();
    let raw_model_names: Vec<String> = raw.models.keys().cloned().collect();
    let mut providers = Vec::with_capacity(raw.providers.len());
    for (name, p) in raw.providers {
        let at = |k: &str| format!("providers.{name}.{k}");
        if !valid_name(&name) {
            errors.push(err(
                format!("providers.{name}"),
                "provider names use letters, digits, '-', '_' and '.'",
            ));
        }
        let Some(kind) = p.kind else {
            errors.push(err(at("type"), "missing; one of \"openai\", \"simulated\""));
            continue;
        };
        let base_url = match (kind, p.base_url) {
            (ProviderKind::Simulated, Some(_)) => {
                errors.push(err(at("base_url"), "not used by type \"simulated\""));
                String::new()
            }
            (ProviderKind::Simulated, None) => String::new(),
            (k, None) => match k.default_base_url() {
                Some(u) => u.to_string(),
                None => {
                    errors.push(err(
                        at("base_url"),
                        "missing; e.g. \"https://RESOURCE.openai.azure.com\"",
                    ));
                    String::new()
                }
            },
            (_, Some(u)) => match env::expand_with(&u, lookup) {
                Ok(u) => match reqwest::Url::parse(&u) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
                        u.trim_end_matches('/').to_string()
                    }
                    _ => {
                        errors.push(err(at("base_url"), format!("{u:?} is not an http(s) URL")));
                        String::new()
                    }
                },
                Err(e) => {
                    errors.push(err(at("base_url"), e.to_string()));
                    String::new()
                }
            },
        };
        let api_key = match p.api_key {
            None => None,
            Some(k) => match env::expand_with(&k, lookup) {
                Ok(v) if v.is_empty() => None,
                Ok(v) => {
                    if HeaderValue::from_str(&format!("Bearer {v}")).is_err() {
                        errors.push(err(
                            at("api_key"),
                            "contains characters not allowed in an HTTP header",
                        ));
                    }
                    Some(Secret::new(v))
                }
                Err(e) => {
                    errors.push(err(at("api_key"), e.to_string()));
                    None
                }
            },
        };
        let mut patterns = Vec::with_capacity(p.models.len());
        for (i, m) in p.models.iter().enumerate() {
            if m.is_empty() {
                errors.push(err(format!("providers.{name}.models[{i}]"), "empty pattern"));
            }
            patterns.push(Pattern::new(m));
        }
        let mut headers = Vec::new();
        for (hk, hv) in p.headers {
            let path = format!("providers.{name}.headers.{hk}");
            let key = HeaderName::from_bytes(hk.as_bytes());
            let val = env::expand_with(&hv, lookup)
                .map_err(|e| e.to_string())
                .and_then(|v| HeaderValue::from_str(&v).map_err(|_| "not a valid header value".to_string()));
            match (key, val) {
                (Ok(k), Ok(mut v)) => {
                    v.set_sensitive(true);
                    headers.push((k, v));
                }
                (Err(_), _) => errors.push(err(path, "not a valid header name")),
                (_, Err(e)) => errors.push(err(path, e)),
            }
        }
        for (k, set, only) in [
            ("api_version", p.api_version.is_some(), ProviderKind::Azure),
            (
                "anthropic_version",
                p.anthropic_version.is_some(),
                ProviderKind::Anthropic,
            ),
            (
                "default_max_tokens",
                p.default_max_tokens.is_some(),
                ProviderKind::Anthropic,
            ),
            ("prompt_cache", p.prompt_cache.is_some(), ProviderKind::Anthropic),
            (
                "prompt_cache_min_tokens",
                p.prompt_cache_min_tokens.is_some(),
                ProviderKind::Anthropic,
            ),
        ] {
            if set && kind != only {
                errors.push(err(at(k), format!("only used by type \"{}\"", only.as_str())));
            }
        }
        if p.responses_api.is_some() && kind != ProviderKind::Openai {
            errors.push(err(at("responses_api"), "only used by type \"openai\""));
        }
        if p.prompt_cache_key.is_some() && kind != ProviderKind::Openai {
            errors.push(err(at("prompt_cache_key"), "only used by type \"openai\""));
        }
        let prompt_cache_key = kind == ProviderKind::Openai
            && p.prompt_cache_key
                .unwrap_or_else(|| Some(base_url.as_str()) == ProviderKind::Openai.default_base_url());
        let responses_api = kind == ProviderKind::Openai
            && p.responses_api
                .unwrap_or_else(|| Some(base_url.as_str()) == ProviderKind::Openai.default_base_url());
        if p.default_max_tokens == Some(0) {
            errors.push(err(at("default_max_tokens"), "must be at least 1"));
        }
        let prompt_cache = match p.prompt_cache.as_deref() {
            None | Some("auto") => kind == ProviderKind::Anthropic,
            Some("off") => false,
            Some(o) => {
                errors.push(err(
                    at("prompt_cache"),
                    format!("{o:?}: expected \"auto\" or \"off\""),
                ));
                false
            }
        };
        let mut simulated = SimulatedSettings::default();
        let sim_keys = [
            ("latency_ms", p.latency_ms.is_some()),
            ("tokens_per_second", p.tokens_per_second.is_some()),
            ("failure_rate", p.failure_rate.is_some()),
        ];
        if kind != ProviderKind::Simulated {
            for (k, set) in sim_keys {
                if set {
                    errors.push(err(at(k), "only used by type \"simulated\""));
                }
            }
        }
        if let Some(ms) = p.latency_ms {
            simulated.latency = Duration::from_millis(ms);
        }
        if let Some(tps) = p.tokens_per_second {
            if !(tps > 0.0 && tps.is_finite()) {
                errors.push(err(at("tokens_per_second"), "must be a positive number"));
            } else {
                simulated.tokens_per_second = tps;
            }
        }
        if let Some(fr) = p.failure_rate {
            if !(0.0..=1.0).contains(&fr) {
                errors.push(err(at("failure_rate"), "must be between 0 and 1"));
            } else {
                simulated.failure_rate = fr;
            }
        }
        let connect_timeout = Duration::from_millis(p.connect_timeout_ms.unwrap_or(5_000));
        let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(600_000));
        if connect_timeout.is_zero() {
            errors.push(err(at("connect_timeout_ms"), "must be greater than 0"));
        }
        if timeout.is_zero() {
            errors.push(err(at("timeout_ms"), "must be greater than 0"));
        }
        let first_byte_timeout = Duration::from_millis(p.first_byte_timeout_ms.unwrap_or(60_000));
        let idle_timeout = Duration::from_millis(p.idle_timeout_ms.unwrap_or(60_000));
        for (k, d) in [
            ("first_byte_timeout_ms", first_byte_timeout),
            ("idle_timeout_ms", idle_timeout),
        ] {
            if d.is_zero() {
                errors.push(err(at(k), "must be greater than 0"));
            }
        }
        let probe_interval = p.probe_interval_secs.filter(|s| *s > 0).map(Duration::from_secs);
        if p.rpm == Some(0) || p.tpm == Some(0) {
            errors.push(err(
                at(if p.rpm == Some(0) { "rpm" } else { "tpm" }),
                "must be at least 1",
            ));
        }
        providers.push(ProviderSettings {
            name,
            kind,
            base_url,
            api_key,
            patterns,
            connect_timeout,
            first_byte_timeout,
            idle_timeout,
            timeout,
            probe_interval,
            rpm: p.rpm,
            tpm: p.tpm,
            headers,
            simulated,
            api_version: p.api_version.unwrap_or_else(|| "2024-10-21".into()),
            anthropic_version: p
                .anthropic_version
                .unwrap_or_else(|| crate::providers::anthropic::API_VERSION.into()),
            default_max_tokens: p.default_max_tokens.unwrap_or(4096).max(1),
            prompt_cache,
            prompt_cache_min_tokens: p.prompt_cache_min_tokens,
            responses_api,
            prompt_cache_key,
        });
    }

    let mut models = IndexMap::with_capacity(raw.models.len());
    for (name, m) in raw.models {
        let at = |k: &str| format!("models.{name}.{k}");
        let find = |pname: &str| providers.iter().position(|p| p.name == pname);
        let mut deployments = Vec::new();
        match (&m.provider, &m.deployments) {
            (Some(_), Some(_)) => {
                errors.push(err(
                    at("deployments"),
                    "use either `provider` / `model` or `deployments`, not both",
                ));
                continue;
            }
            (None, None) => {
                errors.push(err(at("provider"), "missing; the name of a [providers.*] table"));
                continue;
            }
            (Some(pname), None) => match find(pname) {
                Some(provider) => deployments.push(DeploymentSettings {
                    provider,
                    upstream: m.model.clone().unwrap_or_else(|| name.clone()),
                    weight: 1,
                }),
                None => {
                    if !raw_provider_names.contains(pname) {
                        errors.push(err(at("provider"), format!("unknown provider {pname:?}")));
                    }
                    continue;
                }
            },
            (None, Some(list)) => {
                if m.model.is_some() {
                    errors.push(err(at("model"), "set `model` inside each deployment"));
                }
                if list.is_empty() {
                    errors.push(err(at("deployments"), "must list at least one deployment"));
                }
                for (i, d) in list.iter().enumerate() {
                    let dp = |k: &str| format!("models.{name}.deployments[{i}].{k}");
                    let Some(pname) = &d.provider else {
                        errors.push(err(dp("provider"), "missing"));
                        continue;
                    };
                    let Some(provider) = find(pname) else {
                        if !raw_provider_names.contains(pname) {
                            errors.push(err(dp("provider"), format!("unknown provider {pname:?}")));
                        }
                        continue;
                    };
                    let weight = d.weight.unwrap_or(1);
                    if weight == 0 {
                        errors.push(err(dp("weight"), "must be at least 1"));
                    }
                    deployments.push(DeploymentSettings {
                        provider,
                        upstream: d.model.clone().unwrap_or_else(|| name.clone()),
                        weight: weight.max(1),
                    });
                }
                if deployments.is_empty() {
                    continue;
                }
            }
        }
        let provider = deployments[0].provider;
        let upstream = deployments[0].upstream.clone();
        if deployments.iter().any(|d| d.upstream.is_empty()) {
            errors.push(err(at("model"), "must not be empty"));
        }
        let price = match m.price {
            Some(rp) => {
                let p = Price {
                    input: rp.input,
                    output: rp.output,
                    cached_input: rp.cached_input,
                    cache_write: rp.cache_write,
                    per_request: rp.per_request.unwrap_or(0.0),
                };
                for (k, v) in p.fields() {
                    if !(v >= 0.0 && v.is_finite()) {
                        errors.push(err(
                            format!("models.{name}.price.{k}"),
                            "must be a non-negative number",
                        ));
                    }
                }
                Some(p)
            }
            None => {
                let p = pricing::default_price(&upstream);
                if p.is_none() {
                    warnings.push(format!(
                        "model {name:?} ({upstream}) has no price: its cost is recorded as unknown; set models.{name}.price"
                    ));
                }
                p
            }
        };
        let upstream_is_embedding = upstream.contains("embed");
        for (task, q) in &m.quality {
            if !(0.0..=1.0).contains(q) {
                errors.push(err(
                    format!("models.{name}.quality.{task}"),
                    "must be between 0 and 1",
                ));
            }
        }
        models.insert(
            name,
            ModelSettings {
                provider,
                upstream,
                deployments,
                balance: m.balance,
                fallbacks: m.fallbacks,
                price,
                tier: m.tier,
                quality: m.quality,
                kind: m.kind.unwrap_or(if upstream_is_embedding {
                    ModelKind::Embedding
                } else {
                    ModelKind::Chat
                }),
            },
        );
    }

    for (name, m) in &models {
        for (i, f) in m.fallbacks.iter().enumerate() {
            if !models.contains_key(f) || f == name {
                errors.push(err(
                    format!("models.{name}.fallbacks[{i}]"),
                    format!("{f:?} is not another [models.*] name"),
                ));
            }
        }
    }

    let mut aliases = IndexMap::with_capacity(raw.aliases.len());
    for (alias, target) in &raw.aliases {
        let path = format!("aliases.{alias}");
        if models.contains_key(alias) {
            errors.push(err(path, "an alias cannot have the name of a model"));
            continue;
        }
        // Follow alias chains to a model, refusing cycles.
        let mut cur = target.as_str();
        let mut hops = 0;
        let resolved = loop {
            if models.contains_key(cur) {
                break Some(cur.to_string());
            }
            match raw.aliases.get(cur) {
                Some(next) if hops < raw.aliases.len() => {
                    cur = next;
                    hops += 1;
                }
                Some(_) => {
                    errors.push(err(path.clone(), "alias cycle"));
                    break None;
                }
                None => {
                    if providers
                        .iter()
                        .any(|p| p.patterns.iter().any(|pat| pat.matches(cur)))
                    {
                        break Some(cur.to_string());
                    }
                    errors.push(err(
                        path.clone(),
                        format!("{cur:?} is not a model, alias or pass-through name"),
                    ));
                    break None;
                }
            }
        };
        if let Some(r) = resolved {
            aliases.insert(alias.clone(), r);
        }
    }

    let routing = crate::routing::policy::build(
        raw.routing,
        raw.routes,
        &models,
        &aliases,
        &mut errors,
        &mut warnings,
    );

    let resilience = crate::resilience::ResilienceSettings::from_raw(&raw.resilience, &mut errors);
    let route_names: Vec<&str> = routing.routes.keys().map(String::as_str).collect();
    let mut budgets = budgets::build(raw.budgets, &route_names, &mut errors);
    let experiments = experiments::build(raw.experiments, &models, &routing, &mut errors, &mut warnings);
    for e in experiments.values() {
        if let Some(daily) = e.daily_budget {
            budgets.shadows.insert(
                e.name.clone(),
                crate::accounting::budget::Limits {
                    daily: Some(daily),
                    monthly: None,
                },
            );
        }
    }

    // A model dropped for its own error is not reported again wherever it is
    // named (routes, aliases, fallbacks, experiments).
    let broken: Vec<String> = raw_model_names
        .iter()
        .filter(|n| !models.contains_key(*n))
        .map(|n| format!("{n:?}"))
        .collect();
    if !broken.is_empty() {
        let own = |path: &str| {
            raw_model_names
                .iter()
                .filter(|n| !models.contains_key(*n))
                .any(|n| path == format!("models.{n}") || path.starts_with(&format!("models.{n}.")))
        };
        errors.retain(|e| own(&e.path) || !broken.iter().any(|b| e.message.contains(b.as_str())));
    }
    if models.is_empty() && errors.is_empty() {
        warnings.push(
            "no [models.*] configured: only names matching a provider's `models` patterns are served, \
             and `auto` routes only among the models a local upstream lists (if any)"
                .into(),
        );
    }

    if errors.is_empty() {
        Ok(Config {
            source,
            server,
            ledger,
            providers,
            models,
            aliases,
            routing,
            resilience,
            budgets,
            experiments,
            log,
            telemetry,
            cache,
            state,
            warnings,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Config, ConfigErrors> {
        let raw = parse_toml(text)?;
        let env = |k: &str| match k {
            "KEY" => Some("sk-test-123".to_string()),
            _ => None,
        };
        validate(raw, ConfigSource::Environment, &env)
    }

    fn paths(r: Result<Config, ConfigErrors>) -> Vec<String> {
        match r {
            Ok(_) => vec![],
            Err(e) => e.0.into_iter().map(|e| e.path).collect(),
        }
    }

    #[test]
    fn glob() {
        for (p, s, want) in [
            ("*", "anything", true),
            ("gpt-*", "gpt-5.5", true),
            ("gpt-*", "xgpt-5", false),
            ("*-mini", "gpt-5.4-mini", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(Pattern::new(p).matches(s), want, "{p} vs {s}");
        }
    }

    #[test]
    fn cache_store_and_entry_cap() {
        let base = "[providers.up]\ntype = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key = \"k\"\nmodels = [\"*\"]\n";
        let cfg = check(&format!("{base}[cache]\nexact = true\nmax_bytes = 1000\n")).expect("valid");
        assert_eq!(cfg.cache.store, cache::StoreKind::Memory);
        assert_eq!(
            cfg.cache.max_entry_bytes, 1000,
            "the default entry cap never exceeds max_bytes"
        );
        let redis =
            format!("{base}[cache]\nstore = \"redis\"\n[state]\nredis_url = \"redis://127.0.0.1:6379\"\n");
        assert_eq!(check(&redis).expect("valid").cache.store, cache::StoreKind::Redis);
        assert_eq!(
            paths(check(&format!("{base}[cache]\nstore = \"redis\"\n"))),
            vec!["cache.store"],
            "redis needs [state] redis_url"
        );
        assert_eq!(
            paths(check(&format!("{base}[cache]\nstore = \"disk\"\n"))),
            vec!["cache.store"]
        );
        assert_eq!(
            paths(check(&format!(
                "{base}[cache]\nmax_bytes = 10\nmax_entry_bytes = 11\n"
            ))),
            vec!["cache.max_entry_bytes"]
        );
    }

    #[test]
    fn valid_full_config() {
        let cfg = check(
            r#"
            [server]
            listen = "127.0.0.1:9999"
            [providers.up]
            type = "openai"
            base_url = "http://127.0.0.1:1234/v1/"
            api_key = "${KEY}"
            models = ["gpt-*"]
            [models.fast]
            provider = "up"
            model = "gpt-5.4-mini"
            price = { input = 0.4, output = 1.6, cached_input = 0.04 }
            [aliases]
            default = "fast"
            chain = "default"
            "#,
        )
        .expect("valid");
        assert_eq!(cfg.server.listen.port(), 9999);
        assert_eq!(cfg.providers[0].base_url, "http://127.0.0.1:1234/v1");
        assert_eq!(
            cfg.providers[0].api_key.as_ref().map(Secret::expose),
            Some("sk-test-123")
        );
        assert_eq!(cfg.aliases["chain"], "fast");
        assert!(
            !format!("{cfg:?}").contains("sk-test-123"),
            "secret leaked in Debug"
        );
    }

    #[test]
    fn errors_name_key_paths() {
        let cases: &[(&str, &[&str])] = &[
            ("[providers.a]\ntype = \"openai\"\nbase_url = \"x\"\ntpye = 1\n", &["providers.a.tpye"]),
            ("[providers.a]\ntype = \"nope\"\n", &["providers.a.type"]),
            ("[providers.a]\ntype = \"azure\"\n", &["providers.a.base_url"]),
            (
                "[providers.a]\ntype = \"openai\"\napi_version = \"x\"\ndefault_max_tokens = 5\n",
                &["providers.a.api_version", "providers.a.default_max_tokens"],
            ),
            ("[providers.a]\ntype = \"openai\"\nbase_url = \"ftp://x\"\n", &["providers.a.base_url"]),
            (
                "[providers.a]\ntype = \"openai\"\nbase_url = \"http://x\"\napi_key = \"${MISSING}\"\n",
                &["providers.a.api_key"],
            ),
            ("[models.m]\nprovider = \"ghost\"\n", &["models.m.provider"]),
            ("[server]\nlisten = \"nowhere\"\n", &["server.listen"]),
            ("[server]\nmax_body_bytes = \"big\"\n", &["server.max_body_bytes"]),
            ("[aliases]\na = \"b\"\nb = \"a\"\n", &["aliases.a", "aliases.b"]),
            (
                "[providers.s]\ntype = \"simulated\"\nfailure_rate = 2.0\n[providers.o]\ntype = \"openai\"\nbase_url = \"http://x\"\nlatency_ms = 5\n",
                &["providers.s.failure_rate", "providers.o.latency_ms"],
            ),
            (
                "[providers.s]\ntype = \"simulated\"\n[models.m]\nprovider = \"s\"\nprice = { input = -1.0, output = 1.0 }\n",
                &["models.m.price.input"],
            ),
            ("[ledger]\nurl = \"mysql://x/y\"\n", &["ledger.url"]),
            ("[ledger]\nurl = \"${MISSING}\"\n", &["ledger.url"]),
        ];
        for (text, want) in cases {
            assert_eq!(paths(check(text)), want.to_vec(), "config:\n{text}");
        }
    }

    #[test]
    fn ledger_url_expands_and_stays_secret() {
        let raw = parse_toml("[ledger]\nurl = \"${DB}\"\n").expect("toml");
        let env = |k: &str| (k == "DB").then(|| "postgres://u:pw-s3cret@h/db".to_string());
        let cfg = validate(raw, ConfigSource::Environment, &env).expect("valid");
        let url = cfg.ledger.url.as_ref().expect("url");
        assert_eq!(url.expose(), "postgres://u:pw-s3cret@h/db");
        assert!(!format!("{:?}", cfg.ledger).contains("pw-s3cret"));
        let raw = parse_toml("[ledger]\nurl = \"\"\n").expect("toml");
        let cfg = validate(raw, ConfigSource::Environment, &|_| None).expect("valid");
        assert!(cfg.ledger.url.is_none(), "empty url: SQLite");
    }

    #[test]
    fn env_default_simulated_when_no_keys() {
        let cfg = from_env(&|_| None).expect("valid");
        assert_eq!(cfg.providers.len(), 1);
        assert_eq!(cfg.providers[0].kind, ProviderKind::Simulated);
        assert!(cfg.server.admin_key.is_none());
    }

    #[test]
    fn env_admin_key() {
        let cfg = from_env(&|k| (k == "SWITCHYARD_ADMIN_KEY").then(|| "adm-x".into())).expect("valid");
        assert_eq!(cfg.server.admin_key.as_ref().map(|k| k.expose()), Some("adm-x"));
    }

    #[test]
    fn env_default_openai_honours_base_url() {
        let cfg = from_env(&|k| match k {
            "OPENAI_API_KEY" => Some("sk-x".into()),
            "OPENAI_BASE_URL" => Some("http://127.0.0.1:8000/v1".into()),
            "DEEPSEEK_API_KEY" => Some("sk-d".into()),
            _ => None,
        })
        .expect("valid");
        let names: Vec<_> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["deepseek", "openai"]);
        assert_eq!(cfg.providers[1].base_url, "http://127.0.0.1:8000/v1");
        assert_eq!(cfg.providers[0].patterns, vec![Pattern::new("deepseek-*")]);
    }
}
