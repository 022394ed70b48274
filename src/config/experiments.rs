//! `[experiments.NAME]`: model swaps tested on live traffic (see `crate::experiments`).
//!
//! An experiment is attached to a route (optionally one task of it) or to an
//! explicit model name. Wherever its `control` model would serve, a sticky
//! share of the traffic goes to a candidate instead (`mode = "split"`), or a
//! sampled copy of the request goes to every candidate in the background
//! (`mode = "shadow"`).

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use super::{err, valid_name, ConfigError, ModelKind, ModelSettings};
use crate::routing::policy::Routing;

/// The arm label of the control in the ledger, the header and reports.
pub const CONTROL: &str = "control";

/// Default ramp steps (candidate share at each step).
pub const DEFAULT_STEPS: [f64; 4] = [0.1, 0.25, 0.5, 1.0];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExperiment {
    /// false: validated but not applied (default true).
    pub enabled: Option<bool>,
    /// A route name (e.g. "auto"); use with an optional `task`.
    pub route: Option<String>,
    /// A classifier task on `route` (e.g. "code_generation"); default: every task.
    pub task: Option<String>,
    /// An explicit model name (a [models.*] table): requests naming it or an alias of it.
    pub model: Option<String>,
    /// The model being replaced; default: `model`, or the first model of the route task.
    pub control: Option<String>,
    #[serde(default)]
    pub candidates: Vec<RawCandidate>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub sticky_by: StickyBy,
    /// Shadow mode: fraction of matching requests copied to the candidates (default 1).
    pub sample_rate: Option<f64>,
    /// Shadow mode: shadow calls in flight at most; more are skipped (default 4).
    pub max_concurrency: Option<u32>,
    /// Shadow mode: a shadow call is abandoned after this long (default 30000).
    pub shadow_timeout_ms: Option<u64>,
    /// Shadow mode: characters of the candidate's answer kept in the ledger (default 0: none).
    pub record_output_chars: Option<usize>,
    /// Shadow mode: USD per day the shadow calls may spend (budget scope `shadow:NAME`).
    pub daily_budget: Option<f64>,
    /// Split mode: automatic ramp of the (single) candidate's share.
    pub ramp: Option<RawRamp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCandidate {
    pub model: Option<String>,
    /// Share of the matching traffic (0-1) in split mode.
    pub share: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRamp {
    /// Candidate shares, ascending (default [0.1, 0.25, 0.5, 1.0]).
    pub steps: Option<Vec<f64>>,
    /// Seconds at a step before it may advance (default 3600).
    pub every_secs: Option<u64>,
    /// Candidate requests needed at a step before it is judged (default 100).
    pub min_requests: Option<u64>,
    /// Roll back when the candidate's error rate at a step exceeds this (default 0.05).
    pub max_error_rate: Option<f64>,
    /// Roll back when the candidate's mean feedback falls below this (0-1; default none).
    pub min_feedback: Option<f64>,
    /// Roll back when the candidate's mean feedback is this much below the control's (default none).
    pub max_feedback_drop: Option<f64>,
    /// Feedback scores the candidate needs at a step before the feedback rules apply (default 20).
    pub min_feedback_samples: Option<u64>,
}

/// How candidates get traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A sticky share of the traffic is served by a candidate.
    #[default]
    Split,
    /// The client is always served by the control; sampled copies go to every candidate.
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Split => "split",
            Mode::Shadow => "shadow",
        }
    }
}

/// What keeps one client in one arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StickyBy {
    /// The x-switchyard-session header, else the `user` field, else the key name, else the request id.
    #[default]
    Auto,
    /// The x-switchyard-session header first.
    Session,
    /// The request's `user` field first.
    User,
    /// The client key's name first.
    Key,
}

impl StickyBy {
    pub fn as_str(self) -> &'static str {
        match self {
            StickyBy::Auto => "auto",
            StickyBy::Session => "session",
            StickyBy::User => "user",
            StickyBy::Key => "key",
        }
    }
}

/// Which traffic an experiment sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Requests routed by `route` (and classified as `task`, when given).
    Route { route: String, task: Option<String> },
    /// Requests naming `model` (or an alias resolving to it).
    Model(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Route { route, task: None } => write!(f, "route {route}"),
            Scope::Route { route, task: Some(t) } => write!(f, "route {route}, task {t}"),
            Scope::Model(m) => write!(f, "model {m}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub model: String,
    /// Configured share (split mode; the ramp overrides it).
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    pub steps: Vec<f64>,
    pub every: Duration,
    pub min_requests: u64,
    pub max_error_rate: f64,
    pub min_feedback: Option<f64>,
    pub max_feedback_drop: Option<f64>,
    pub min_feedback_samples: u64,
}

/// A validated experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: String,
    pub enabled: bool,
    pub scope: Scope,
    pub control: String,
    pub candidates: Vec<Candidate>,
    pub mode: Mode,
    pub sticky_by: StickyBy,
    pub sample_rate: f64,
    pub max_concurrency: u32,
    pub shadow_timeout: Duration,
    pub record_output_chars: usize,
    pub daily_budget: Option<f64>,
    pub ramp: Option<Ramp>,
}

impl Experiment {
    /// What identifies a ramp: a change of it (or of the candidate) restarts the ramp.
    pub fn ramp_fingerprint(&self) -> Option<String> {
        let r = self.ramp.as_ref()?;
        let cand = self.candidates.first().map_or("", |c| c.model.as_str());
        Some(format!("{}|{}|{:?}", self.control, cand, r.steps))
    }
}

/// Largest `record_output_chars`.
const MAX_OUTPUT_CHARS: usize = 100_000;

/// Validates `[experiments.*]` against the models and routes.
pub fn build(
    raw: IndexMap<String, RawExperiment>,
    models: &IndexMap<String, ModelSettings>,
    routing: &Routing,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> IndexMap<String, Experiment> {
    let mut out = IndexMap::new();
    for (name, r) in raw {
        if let Some(e) = build_one(&name, r, models, routing, errors, warnings) {
            out.insert(name, e);
        }
    }
    let enabled: Vec<&Experiment> = out.values().filter(|e| e.enabled).collect();
    for (i, a) in enabled.iter().enumerate() {
        if let Some(b) = enabled[..i]
            .iter()
            .find(|b| b.scope == a.scope && b.control == a.control)
        {
            warnings.push(format!(
                "experiments {:?} and {:?} see the same traffic ({}, control {}): only {:?} applies",
                b.name, a.name, a.scope, a.control, b.name
            ));
        }
    }
    out
}

fn chat_model(
    path: String,
    m: &str,
    models: &IndexMap<String, ModelSettings>,
    errors: &mut Vec<ConfigError>,
) -> bool {
    match models.get(m) {
        None => {
            errors.push(err(path, format!("unknown model {m:?} (a [models.*] name)")));
            false
        }
        Some(ms) if ms.kind != ModelKind::Chat => {
            errors.push(err(path, format!("{m:?} is an embedding model")));
            false
        }
        Some(_) => true,
    }
}

fn fraction(path: String, v: f64, errors: &mut Vec<ConfigError>) -> bool {
    let ok = (0.0..=1.0).contains(&v);
    if !ok {
        errors.push(err(path, "must be between 0 and 1"));
    }
    ok
}

fn build_one(
    name: &str,
    r: RawExperiment,
    models: &IndexMap<String, ModelSettings>,
    routing: &Routing,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Option<Experiment> {
    let at = |k: &str| format!("experiments.{name}.{k}");
    let n_errors = errors.len();
    if !valid_name(name) {
        errors.push(err(
            format!("experiments.{name}"),
            "experiment names may use letters, digits, '-', '_' and '.'",
        ));
    }
    let tasks = routing.classifier.tasks();
    let mut default_control = None;
    let scope = match (&r.route, &r.model) {
        (Some(_), Some(_)) | (None, None) => {
            errors.push(err(
                at("route"),
                "set either `route` (with an optional `task`) or `model`",
            ));
            None
        }
        (None, Some(m)) => {
            if r.task.is_some() {
                errors.push(err(at("task"), "only used with `route`"));
            }
            if chat_model(at("model"), m, models, errors) {
                default_control = Some(m.clone());
            }
            Some(Scope::Model(m.clone()))
        }
        (Some(route), None) => match routing.routes.get(route) {
            None => {
                let known: Vec<&String> = routing.routes.keys().collect();
                errors.push(err(
                    at("route"),
                    format!("unknown route {route:?}; routes are {known:?}"),
                ));
                None
            }
            Some(rt) => {
                if let Some(t) = &r.task {
                    match tasks.iter().position(|x| x == t) {
                        None => errors.push(err(
                            at("task"),
                            format!("unknown task {t:?}; tasks are {tasks:?}"),
                        )),
                        Some(ti) => {
                            default_control = rt.tasks.get(ti).and_then(|tr| tr.chain.first().cloned());
                        }
                    }
                }
                Some(Scope::Route {
                    route: route.clone(),
                    task: r.task.clone(),
                })
            }
        },
    };
    let control = match (&r.control, &scope) {
        (Some(c), Some(Scope::Model(m))) if c != m => {
            errors.push(err(
                at("control"),
                format!("with `model`, the control is {m:?}; omit `control`"),
            ));
            None
        }
        (Some(c), _) => chat_model(at("control"), c, models, errors).then(|| c.clone()),
        (None, Some(Scope::Route { task: None, .. })) => {
            errors.push(err(
                at("control"),
                "required for a route without `task`: the model whose traffic is tested",
            ));
            None
        }
        (None, _) => default_control,
    };
    if let (Some(c), Some(Scope::Route { route, task: Some(t) })) = (&control, &scope) {
        let first = routing
            .routes
            .get(route)
            .and_then(|rt| rt.tasks.get(tasks.iter().position(|x| x == t)?))
            .and_then(|tr| tr.chain.first());
        if first.is_some_and(|f| f != c) {
            warnings.push(format!(
                "experiment {name:?}: control {c:?} is not the first model of route {route:?} task {t:?}; \
                 the experiment applies only where {c:?} would serve"
            ));
        }
    }
    let mode = r.mode;
    if r.candidates.is_empty() {
        errors.push(err(at("candidates"), "must list at least one candidate"));
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    for (i, c) in r.candidates.iter().enumerate() {
        let cp = |k: &str| format!("experiments.{name}.candidates[{i}].{k}");
        let Some(m) = &c.model else {
            errors.push(err(cp("model"), "missing"));
            continue;
        };
        if !chat_model(cp("model"), m, models, errors) {
            continue;
        }
        if control.as_deref() == Some(m.as_str()) {
            errors.push(err(cp("model"), "the candidate must differ from the control"));
        } else if candidates.iter().any(|x| x.model == *m) {
            errors.push(err(cp("model"), format!("{m:?} is listed twice")));
        } else if m == CONTROL {
            errors.push(err(
                cp("model"),
                "a model named \"control\" cannot be a candidate (it is the control arm's label)",
            ));
        }
        let share = match (c.share, mode, &r.ramp) {
            (Some(_), Mode::Split, Some(_)) => {
                errors.push(err(cp("share"), "set by the ramp; omit it"));
                0.0
            }
            (Some(s), _, _) => {
                fraction(cp("share"), s, errors);
                s
            }
            (None, Mode::Split, None) => {
                errors.push(err(
                    cp("share"),
                    "missing; the candidate's share of the traffic (0-1)",
                ));
                0.0
            }
            (None, _, _) => 0.0,
        };
        candidates.push(Candidate {
            model: m.clone(),
            share,
        });
    }
    let total: f64 = candidates.iter().map(|c| c.share).sum();
    let shares_valid = candidates.iter().all(|c| (0.0..=1.0).contains(&c.share));
    if mode == Mode::Split && shares_valid && total > 1.0 + 1e-9 {
        errors.push(err(
            at("candidates"),
            format!("the shares add up to {total}; at most 1 (the rest goes to the control)"),
        ));
    }
    let sample_rate = r.sample_rate.unwrap_or(1.0);
    fraction(at("sample_rate"), sample_rate, errors);
    let max_concurrency = r.max_concurrency.unwrap_or(4);
    if max_concurrency == 0 {
        errors.push(err(at("max_concurrency"), "must be at least 1"));
    }
    let shadow_timeout = Duration::from_millis(r.shadow_timeout_ms.unwrap_or(30_000));
    if shadow_timeout.is_zero() {
        errors.push(err(at("shadow_timeout_ms"), "must be greater than 0"));
    }
    let record_output_chars = r.record_output_chars.unwrap_or(0);
    if record_output_chars > MAX_OUTPUT_CHARS {
        errors.push(err(
            at("record_output_chars"),
            format!("at most {MAX_OUTPUT_CHARS}"),
        ));
    }
    if let Some(b) = r.daily_budget {
        if !(b.is_finite() && b >= 0.0) {
            errors.push(err(at("daily_budget"), "must be a non-negative number of USD"));
        }
    }
    if mode == Mode::Split {
        let unused: Vec<&str> = [
            ("sample_rate", r.sample_rate.is_some()),
            ("max_concurrency", r.max_concurrency.is_some()),
            ("shadow_timeout_ms", r.shadow_timeout_ms.is_some()),
            ("record_output_chars", r.record_output_chars.is_some()),
            ("daily_budget", r.daily_budget.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if !unused.is_empty() {
            warnings.push(format!(
                "experiment {name:?}: {} only apply to mode = \"shadow\"",
                unused.join(", ")
            ));
        }
    }
    let ramp = match r.ramp {
        None => None,
        Some(_) if mode == Mode::Shadow => {
            errors.push(err(at("ramp"), "a ramp needs mode = \"split\""));
            None
        }
        Some(_) if r.candidates.len() != 1 => {
            errors.push(err(at("ramp"), "a ramp needs exactly one candidate"));
            None
        }
        Some(raw) => build_ramp(name, raw, errors),
    };
    if errors.len() > n_errors {
        return None;
    }
    Some(Experiment {
        name: name.to_string(),
        enabled: r.enabled.unwrap_or(true),
        scope: scope?,
        control: control?,
        candidates,
        mode,
        sticky_by: r.sticky_by,
        sample_rate,
        max_concurrency,
        shadow_timeout,
        record_output_chars,
        daily_budget: r.daily_budget,
        ramp,
    })
}

fn build_ramp(name: &str, r: RawRamp, errors: &mut Vec<ConfigError>) -> Option<Ramp> {
    let at = |k: &str| format!("experiments.{name}.ramp.{k}");
    let n_errors = errors.len();
    let steps = r.steps.unwrap_or_else(|| DEFAULT_STEPS.to_vec());
    if steps.is_empty() || steps.len() > 32 {
        errors.push(err(at("steps"), "must list 1 to 32 shares"));
    }
    for (i, s) in steps.iter().enumerate() {
        if !(*s > 0.0 && *s <= 1.0) {
            errors.push(err(
                format!("{}[{i}]", at("steps")),
                "must be above 0 and at most 1",
            ));
        } else if i > 0 && *s <= steps[i - 1] {
            errors.push(err(format!("{}[{i}]", at("steps")), "steps must increase"));
        }
    }
    let every_secs = r.every_secs.unwrap_or(3600);
    if every_secs == 0 {
        errors.push(err(at("every_secs"), "must be at least 1"));
    }
    let max_error_rate = r.max_error_rate.unwrap_or(0.05);
    fraction(at("max_error_rate"), max_error_rate, errors);
    for (k, v) in [
        ("min_feedback", r.min_feedback),
        ("max_feedback_drop", r.max_feedback_drop),
    ] {
        if let Some(v) = v {
            fraction(at(k), v, errors);
        }
    }
    if errors.len() > n_errors {
        return None;
    }
    Some(Ramp {
        steps,
        every: Duration::from_secs(every_secs),
        min_requests: r.min_requests.unwrap_or(100),
        max_error_rate,
        min_feedback: r.min_feedback,
        max_feedback_drop: r.max_feedback_drop,
        min_feedback_samples: r.min_feedback_samples.unwrap_or(20).max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_toml, validate, Config, ConfigErrors, ConfigSource};

    const BASE: &str = r#"
[providers.sim]
type = "simulated"
[models.big]
provider = "sim"
tier = "frontier"
[models.mid]
provider = "sim"
tier = "quality"
[models.small]
provider = "sim"
tier = "economy"
[models.embed]
provider = "sim"
model = "text-embedding-3-small"
[routes.auto.tasks.simple_chat]
models = ["mid", "small"]
[routes.auto.tasks.code_generation]
models = ["big", "mid"]
"#;

    fn check(extra: &str) -> Result<Config, ConfigErrors> {
        let raw = parse_toml(&format!("{BASE}\n{extra}"))?;
        validate(raw, ConfigSource::Environment, &|_| None)
    }

    fn paths(extra: &str) -> Vec<String> {
        match check(extra) {
            Ok(_) => vec![],
            Err(e) => e.0.into_iter().map(|e| e.path).collect(),
        }
    }

    #[test]
    fn experiment_config_valid() {
        let cfg = check(
            r#"
[experiments.code-swap]
route = "auto"
task = "code_generation"
candidates = [{ model = "mid", share = 0.1 }]
sticky_by = "user"

[experiments.shadow-small]
model = "mid"
mode = "shadow"
candidates = [{ model = "small" }]
sample_rate = 0.5
max_concurrency = 2
record_output_chars = 200
daily_budget = 1.5

[experiments.ramped]
route = "auto"
control = "mid"
candidates = [{ model = "small" }]
enabled = false
ramp = { steps = [0.2, 1.0], every_secs = 60, min_requests = 10 }
"#,
        )
        .expect("valid");
        let e = &cfg.experiments["code-swap"];
        assert_eq!(e.control, "big", "defaults to the task's first model");
        assert_eq!(e.mode, Mode::Split);
        assert_eq!(e.sticky_by, StickyBy::User);
        assert_eq!(
            e.scope,
            Scope::Route {
                route: "auto".into(),
                task: Some("code_generation".into())
            }
        );
        let s = &cfg.experiments["shadow-small"];
        assert_eq!(
            (s.control.as_str(), s.mode, s.max_concurrency),
            ("mid", Mode::Shadow, 2)
        );
        assert_eq!(cfg.budgets.shadows["shadow-small"].daily, Some(1.5));
        let r = &cfg.experiments["ramped"];
        assert!(!r.enabled);
        let ramp = r.ramp.as_ref().expect("ramp");
        assert_eq!(ramp.steps, vec![0.2, 1.0]);
        assert_eq!((ramp.min_requests, ramp.max_error_rate), (10, 0.05));
        assert!(r.ramp_fingerprint().is_some());
    }

    #[test]
    fn experiment_config_errors_name_key_paths() {
        let cases: &[(&str, &[&str])] = &[
            ("[experiments.a]\ncandidates = [{ model = \"mid\", share = 0.1 }]\n", &["experiments.a.route"]),
            (
                "[experiments.a]\nroute = \"nope\"\ncontrol = \"big\"\ncandidates = [{ model = \"mid\", share = 0.1 }]\n",
                &["experiments.a.route"],
            ),
            (
                "[experiments.a]\nroute = \"auto\"\ntask = \"poetry\"\ncontrol = \"big\"\ncandidates = [{ model = \"mid\", share = 0.1 }]\n",
                &["experiments.a.task"],
            ),
            (
                "[experiments.a]\nroute = \"auto\"\ncandidates = [{ model = \"mid\", share = 0.1 }]\n",
                &["experiments.a.control"],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\ncandidates = [{ model = \"ghost\", share = 0.1 }, { model = \"embed\", share = 0.1 }]\n",
                &["experiments.a.candidates[0].model", "experiments.a.candidates[1].model"],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\ncandidates = [{ model = \"mid\", share = 0.7 }, { model = \"small\", share = 0.6 }]\n",
                &["experiments.a.candidates"],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\ncandidates = [{ model = \"mid\" }, { model = \"big\", share = 2.0 }]\n",
                &[
                    "experiments.a.candidates[0].share",
                    "experiments.a.candidates[1].model",
                    "experiments.a.candidates[1].share",
                ],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\ncontrol = \"mid\"\ncandidates = [{ model = \"small\", share = 0.1 }]\n",
                &["experiments.a.control"],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\nmode = \"shadow\"\ncandidates = [{ model = \"mid\" }]\nsample_rate = 1.5\nmax_concurrency = 0\n",
                &["experiments.a.sample_rate", "experiments.a.max_concurrency"],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\nmode = \"sideways\"\ncandidates = []\n",
                &["experiments.a.mode"],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\ncandidates = [{ model = \"mid\", share = 0.1 }]\nramp = { steps = [0.5, 0.25] }\n",
                &["experiments.a.candidates[0].share", "experiments.a.ramp.steps[1]"],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\ncandidates = [{ model = \"mid\" }, { model = \"small\" }]\nramp = { max_error_rate = 2.0 }\n",
                &["experiments.a.ramp"],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\ncandidates = [{ model = \"mid\" }]\nramp = { every_secs = 0, max_error_rate = 2.0 }\n",
                &["experiments.a.ramp.every_secs", "experiments.a.ramp.max_error_rate"],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\ncandidates = [{ model = \"mid\", share = 0.1 }]\nsticky_by = \"ip\"\n",
                &["experiments.a.sticky_by"],
            ),
            (
                "[experiments.\"a b\"]\nmodel = \"big\"\ncandidates = [{ model = \"mid\", share = 0.1 }]\n",
                &["experiments.a b"],
            ),
            (
                "[experiments.a]\nmodel = \"big\"\ncandidates = [{ model = \"mid\", share = 0.1 }]\nshadows = 1\n",
                &["experiments.a.shadows"],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(paths(text), want.to_vec(), "config:\n{text}");
        }
    }

    #[test]
    fn experiment_config_warnings() {
        let cfg = check(
            "[experiments.a]\nroute = \"auto\"\ntask = \"code_generation\"\ncontrol = \"mid\"\n\
             candidates = [{ model = \"small\", share = 0.1 }]\nsample_rate = 0.5\n\
             [experiments.b]\nroute = \"auto\"\ntask = \"code_generation\"\ncontrol = \"mid\"\n\
             candidates = [{ model = \"big\", share = 0.1 }]\n",
        )
        .expect("valid");
        let w = cfg.warnings.join("\n");
        assert!(w.contains("not the first model"), "{w}");
        assert!(w.contains("only apply to mode = \"shadow\""), "{w}");
        assert!(w.contains("only \"a\" applies"), "{w}");
    }
}
