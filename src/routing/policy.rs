//! Routing policy: tiers, routes (`auto`, `auto-economy`, ...) and the
//! per-request decision of which model chain serves a chat request.
//!
//! Built and validated once from the config (`build`), so a request only
//! classifies, looks up its task's precomputed chain and maybe escalates.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use super::classifier::{Classifier, ClassifyInput};
use super::predictor::{view_from, Predictor, View};
use crate::config::{
    ConfigError, ModelKind, ModelSettings, Priority, RawRoute, RawRouteTask, RawRouting, Select,
};

/// Default tier names, cheapest first.
pub const DEFAULT_TIERS: [&str; 3] = ["economy", "quality", "frontier"];
/// Default session-pinning idle window.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(1800);

/// Validated routing settings.
#[derive(Debug, Clone)]
pub struct Routing {
    /// Tier names, cheapest first.
    pub tiers: Vec<String>,
    pub classifier: Arc<Classifier>,
    /// Zero disables session pinning.
    pub session_idle: Duration,
    pub routes: IndexMap<String, Route>,
    /// The tier predictor of predictor-routed routes.
    pub predictor: Arc<Predictor>,
}

/// One route: a per-task model chain.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Task index used when the classifier abstains.
    pub default_task: usize,
    /// One entry per classifier task (tasks without their own entry copy the default's).
    pub tasks: Vec<TaskRoute>,
    /// Built from the configured models because the config names no route.
    pub built_in: bool,
    /// Candidates routed by the tier predictor (`models` on the route).
    pub predicted: Option<Predicted>,
}

/// A predictor-routed route: candidates cheapest first, one knob.
#[derive(Debug, Clone)]
pub struct Predicted {
    /// Candidate models, cheapest first (the last is the strongest).
    pub models: Vec<String>,
    /// Each candidate's tier (or "default").
    pub tiers: Vec<String>,
    /// The chain served when candidate `i` is chosen: it, the dearer ones
    /// (nearest first), then the cheaper ones.
    pub chains: Vec<Vec<String>>,
    /// Threshold in [0, 1] on P(cheaper answer as good as the strongest's).
    pub threshold: f32,
    /// The `strong_share` target it was derived from, if any.
    pub strong_share: Option<f64>,
    /// Per task: candidate indices allowed by a per-task entry (`None`: all).
    pub task_candidates: Vec<Option<Vec<usize>>>,
}

/// How one task is served on one route.
#[derive(Debug, Clone)]
pub struct TaskRoute {
    /// Whether the config has an entry for this task (else it inherits the default task's).
    pub configured: bool,
    pub tier: String,
    /// Model names: primary first, then fallbacks.
    pub chain: Vec<String>,
    pub escalation: Option<Escalation>,
    pub priority: Priority,
}

/// Complexity escalation: above `above`, serve from `tier` with `chain`.
#[derive(Debug, Clone)]
pub struct Escalation {
    pub above: f32,
    pub tier: String,
    pub chain: Vec<String>,
}

/// Why a route picked what it picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The hashed n-gram model decided.
    Classified,
    /// A deterministic signal decided (e.g. `code_fence`).
    Signal(&'static str),
    /// The classifier was unsure; the route's default task applied.
    Abstained,
    /// The `x-switchyard-task` header forced the task.
    TaskHeader,
}

/// The outcome of routing one request.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub task: usize,
    pub confidence: f32,
    pub complexity: f32,
    pub tier: &'a str,
    pub chain: &'a [String],
    pub reason: Reason,
    pub escalated: bool,
    /// Predictor-routed: P(the cheapest candidate's answer is as good as the
    /// strongest's) and the threshold it was compared with.
    pub predicted: Option<(f32, f32)>,
    /// A per-task entry left a single candidate.
    pub task_pinned: bool,
}

impl Decision<'_> {
    /// The `x-switchyard-route-reason` text.
    pub fn reason_text(&self, pinned: bool) -> String {
        // Pushed piece by piece: `format!` (with `{:.3}` floats) was 1,700
        // of the 2,100 instructions this took a routed request (bench/icount.sh, full).
        let mut s = String::with_capacity(64);
        match self.reason {
            Reason::Classified => s.push_str("classifier"),
            Reason::Signal(sig) => {
                s.push_str("signal:");
                s.push_str(sig);
            }
            Reason::Abstained => s.push_str("abstained:default_task"),
            Reason::TaskHeader => s.push_str("override:task_header"),
        }
        if self.escalated {
            s.push_str(";escalated:complexity");
        }
        if let Some((p, t)) = self.predicted {
            let op = if p >= t { ">=" } else { "<" };
            s.push_str(";predictor:p=");
            push_3_decimals(&mut s, p);
            s.push_str(op);
            s.push_str("t=");
            push_3_decimals(&mut s, t);
        }
        if self.task_pinned {
            s.push_str(";task_map");
        }
        if pinned {
            s.push_str(";session_pinned");
        }
        s
    }
}

/// `x` as `format!("{x:.3}")` writes it. For a finite `x` in [0, 1e6) the
/// digits come from integer arithmetic: `x * 1000` is exact in f64 for any
/// f32, and ties round to even as the formatter's exact decimal rounding does.
fn push_3_decimals(s: &mut String, x: f32) {
    if !(0.0..1e6).contains(&x) || x.is_sign_negative() {
        use std::fmt::Write as _;
        let _ = write!(s, "{x:.3}");
        return;
    }
    let milli = (f64::from(x) * 1000.0).round_ties_even() as u64;
    let (whole, frac) = (milli / 1000, milli % 1000);
    s.push_str(itoa::Buffer::new().format(whole));
    s.push('.');
    for div in [100, 10, 1] {
        s.push(char::from(b'0' + ((frac / div) % 10) as u8));
    }
}

impl Routing {
    /// Routes a request on `route`: classify (unless the task is forced),
    /// fall back to the default task on abstention, escalate on complexity.
    pub fn decide<'r>(
        &self,
        route: &'r Route,
        input: &ClassifyInput<'_>,
        forced_task: Option<usize>,
    ) -> Decision<'r> {
        self.decide_at(route, input, forced_task, None)
    }

    /// [`Routing::decide`] with the predictor threshold of a predictor-routed
    /// route overridden (`classify --threshold`, `eval-routing`, budget pacing).
    pub fn decide_at<'r>(
        &self,
        route: &'r Route,
        input: &ClassifyInput<'_>,
        forced_task: Option<usize>,
        threshold: Option<f32>,
    ) -> Decision<'r> {
        // One classifier pass: the classification and, for the predictor, the
        // task probabilities.
        let (c, probs) = self.classifier.classify_with_probabilities(input);
        let (task, reason) = match forced_task {
            Some(t) => (t, Reason::TaskHeader),
            None if c.abstained => (route.default_task, Reason::Abstained),
            None => (c.task, c.signal.map_or(Reason::Classified, Reason::Signal)),
        };
        if let Some(pr) = &route.predicted {
            // The predictor reads the request's task as the caller forced it
            // or the classifier saw it (not the abstention default).
            let view = view_from(&self.classifier, &c, &probs, forced_task);
            return self.decide_predicted(pr, route, input, task, reason, &view, threshold);
        }
        let tr = &route.tasks[task.min(route.tasks.len().saturating_sub(1))];
        let (tier, chain, escalated) = match &tr.escalation {
            Some(e) if c.complexity > e.above => (e.tier.as_str(), e.chain.as_slice(), true),
            _ => (tr.tier.as_str(), tr.chain.as_slice(), false),
        };
        Decision {
            task,
            confidence: c.confidence,
            complexity: c.complexity,
            tier,
            chain,
            reason,
            escalated,
            predicted: None,
            task_pinned: false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_predicted<'r>(
        &self,
        pr: &'r Predicted,
        route: &'r Route,
        input: &ClassifyInput<'_>,
        task: usize,
        reason: Reason,
        view: &View,
        threshold: Option<f32>,
    ) -> Decision<'r> {
        let t = threshold.unwrap_or(pr.threshold);
        let all: &[usize] = &[];
        let allowed = pr
            .task_candidates
            .get(task)
            .and_then(Option::as_deref)
            .unwrap_or(all);
        let n = if allowed.is_empty() {
            pr.models.len()
        } else {
            allowed.len()
        };
        let pick = |k: usize| if allowed.is_empty() { k } else { allowed[k] };
        let mut decision = Decision {
            task,
            confidence: view.confidence,
            complexity: view.complexity,
            tier: "",
            chain: &[],
            reason,
            escalated: false,
            predicted: None,
            task_pinned: false,
        };
        let chosen = if n <= 1 {
            decision.task_pinned = !allowed.is_empty() && !route.built_in;
            pick(0)
        } else {
            let p = self.predictor.predict_with(input, view);
            decision.predicted = Some((p, t));
            // Candidate k of n (cheapest 0): P_k = p^((n-1-k)/(n-1)), rising to 1
            // for the strongest; the cheapest with P_k >= t wins.
            let mut k = n - 1;
            if t <= 0.0 {
                k = 0;
            } else if t < 1.0 {
                for i in 0..n - 1 {
                    let e = (n - 1 - i) as f32 / (n - 1) as f32;
                    if p.powf(e) >= t {
                        k = i;
                        break;
                    }
                }
            }
            pick(k)
        };
        decision.tier = pr.tiers.get(chosen).map_or("default", String::as_str);
        decision.chain = pr.chains.get(chosen).map_or(&[], Vec::as_slice);
        decision
    }

    pub fn task_name(&self, task: usize) -> &str {
        self.classifier
            .tasks()
            .get(task)
            .map_or("unknown", String::as_str)
    }
}

/// Cost of 1M tokens at a typical 3:1 input:output mix; how "cheapest" is ranked.
pub fn blended_price(m: &ModelSettings) -> Option<f64> {
    m.price.map(|p| (3.0 * p.input + p.output) / 4.0)
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// Models of `tier`, cheapest first (unpriced last, then config order).
pub fn tier_models(models: &IndexMap<String, ModelSettings>, tier: &str) -> Vec<String> {
    let mut v: Vec<(&String, Option<f64>)> = models
        .iter()
        .filter(|(_, m)| m.kind == ModelKind::Chat && m.tier.as_deref() == Some(tier))
        .map(|(n, m)| (n, blended_price(m)))
        .collect();
    v.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    v.into_iter().map(|(n, _)| n.clone()).collect()
}

/// Validates `[routing]` and `[routes.*]` against the models; builds the
/// default `auto` route when the config names none.
pub fn build(
    raw: RawRouting,
    raw_routes: IndexMap<String, RawRoute>,
    models: &IndexMap<String, ModelSettings>,
    aliases: &IndexMap<String, String>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Routing {
    let tiers: Vec<String> = raw
        .tiers
        .unwrap_or_else(|| DEFAULT_TIERS.iter().map(|s| s.to_string()).collect());
    if tiers.is_empty() {
        errors.push(err("routing.tiers", "must name at least one tier"));
    }
    for (i, t) in tiers.iter().enumerate() {
        if t.is_empty() || tiers[..i].contains(t) {
            errors.push(err(
                format!("routing.tiers[{i}]"),
                "tier names must be non-empty and unique",
            ));
        }
    }
    let mut classifier = match &raw.classifier {
        Some(path) => match Classifier::load(path) {
            Ok(c) => c,
            Err(e) => {
                errors.push(err("routing.classifier", e));
                Classifier::embedded().clone()
            }
        },
        None => Classifier::embedded().clone(),
    };
    if let Some(t) = raw.min_confidence {
        if (0.0..=1.0).contains(&t) {
            classifier.set_threshold(t);
        } else {
            errors.push(err("routing.min_confidence", "must be between 0 and 1"));
        }
    }
    let session_idle = raw
        .session_idle_secs
        .map_or(DEFAULT_SESSION_IDLE, Duration::from_secs);
    let tasks: Vec<String> = classifier.tasks().to_vec();
    let predictor: Arc<Predictor> = match &raw.router {
        Some(path) => match std::fs::read(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|b| Predictor::from_bytes(&b))
        {
            Ok(p) => Arc::new(p),
            Err(e) => {
                errors.push(err("routing.router", e));
                Arc::new(Predictor::embedded().clone())
            }
        },
        None => Arc::new(Predictor::embedded().clone()),
    };

    for (name, m) in models {
        if let Some(t) = &m.tier {
            if !tiers.contains(t) {
                errors.push(err(
                    format!("models.{name}.tier"),
                    format!("unknown tier {t:?}; tiers are {tiers:?}"),
                ));
            }
        }
        for task in m.quality.keys() {
            if !tasks.contains(task) {
                errors.push(err(
                    format!("models.{name}.quality.{task}"),
                    format!("unknown task; tasks are {tasks:?}"),
                ));
            }
        }
    }

    let mut routes = IndexMap::new();
    if raw_routes.is_empty() {
        // The zero-config `auto` is a predictor route over the configured
        // tiers (one candidate per tier, cheapest tier first), at the default
        // `strong_share`; the task map is kept on it as the per-task
        // explanation, and an operator's `[routes.auto]` overrides it.
        if let Some(r) = default_auto_route(models, &tiers, &tasks, &predictor) {
            routes.insert(r.name.clone(), r);
        }
    }
    for (rname, rr) in raw_routes {
        let at = |k: &str| format!("routes.{rname}.{k}");
        if models.contains_key(&rname) || aliases.contains_key(&rname) {
            errors.push(err(
                format!("routes.{rname}"),
                "a route cannot have the name of a model or alias",
            ));
            continue;
        }
        let default_name = rr.default_task.clone().unwrap_or_else(|| {
            if tasks.iter().any(|t| t == "simple_chat") {
                "simple_chat".into()
            } else {
                tasks.first().cloned().unwrap_or_default()
            }
        });
        let Some(default_task) = tasks.iter().position(|t| *t == default_name) else {
            errors.push(err(
                at("default_task"),
                format!("unknown task {default_name:?}; tasks are {tasks:?}"),
            ));
            continue;
        };
        if rr.threshold.is_some() && rr.strong_share.is_some() {
            errors.push(err(at("strong_share"), "conflicts with threshold: set one"));
            continue;
        }
        for (k, v) in [("threshold", rr.threshold), ("strong_share", rr.strong_share)] {
            if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                errors.push(err(at(k), "must be between 0 and 1"));
            }
        }
        if rr.models.is_none() && (rr.threshold.is_some() || rr.strong_share.is_some()) {
            errors.push(err(
                at("threshold"),
                "threshold and strong_share need the route's candidate `models`",
            ));
            continue;
        }
        let mut built: Vec<Option<TaskRoute>> = vec![None; tasks.len()];
        for (tname, rt) in &rr.tasks {
            let Some(ti) = tasks.iter().position(|t| t == tname) else {
                errors.push(err(
                    format!("routes.{rname}.tasks.{tname}"),
                    format!("unknown task; tasks are {tasks:?}"),
                ));
                continue;
            };
            let path = format!("routes.{rname}.tasks.{tname}");
            if let Some(tr) = build_task(&path, tname, rt, models, &tiers, errors) {
                built[ti] = Some(tr);
            }
        }
        if let Some(list) = &rr.models {
            let n_errors = errors.len();
            let pr = build_predicted(&rname, list, models, &tiers, &built, &rr, &predictor, errors);
            if errors.len() > n_errors {
                continue;
            }
            let Some(pr) = pr else { continue };
            let last = pr.models.len() - 1;
            let fill = TaskRoute {
                configured: false,
                tier: pr.tiers[last].clone(),
                chain: pr.chains[last].clone(),
                escalation: None,
                priority: Priority::Normal,
            };
            let tasks_filled = built
                .into_iter()
                .map(|t| t.unwrap_or_else(|| fill.clone()))
                .collect();
            routes.insert(
                rname.clone(),
                Route {
                    name: rname,
                    default_task,
                    tasks: tasks_filled,
                    built_in: false,
                    predicted: Some(pr),
                },
            );
            continue;
        }
        let Some(default_route) = built[default_task].clone() else {
            errors.push(err(
                at("default_task"),
                format!("task {default_name:?} needs an entry in routes.{rname}.tasks"),
            ));
            continue;
        };
        let tasks_filled = built
            .into_iter()
            .map(|t| {
                t.unwrap_or_else(|| TaskRoute {
                    configured: false,
                    ..default_route.clone()
                })
            })
            .collect();
        routes.insert(
            rname.clone(),
            Route {
                name: rname,
                default_task,
                tasks: tasks_filled,
                built_in: false,
                predicted: None,
            },
        );
    }
    if routes.is_empty() && !models.is_empty() {
        warnings.push("no route could be built from the configured models: `auto` is not available".into());
    }
    Routing {
        tiers,
        classifier: Arc::new(classifier),
        session_idle,
        routes,
        predictor,
    }
}

/// Candidate order of a predictor-routed route: by blended price (unpriced
/// last), ties by tier rank.
fn rank_candidates(
    list: &[String],
    models: &IndexMap<String, ModelSettings>,
    tiers: &[String],
) -> Vec<String> {
    let mut v: Vec<(String, f64, usize)> = list
        .iter()
        .filter_map(|n| {
            let m = models.get(n)?;
            let t = m
                .tier
                .as_ref()
                .and_then(|t| tiers.iter().position(|x| x == t))
                .unwrap_or(0);
            Some((n.clone(), blended_price(m).unwrap_or(f64::INFINITY), t))
        })
        .collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)));
    v.dedup_by(|a, b| a.0 == b.0);
    v.into_iter().map(|x| x.0).collect()
}

/// Chains and tiers for ranked candidates.
fn predicted_from(
    ranked: Vec<String>,
    models: &IndexMap<String, ModelSettings>,
    threshold: f32,
    strong_share: Option<f64>,
    task_candidates: Vec<Option<Vec<usize>>>,
) -> Predicted {
    let n = ranked.len();
    let chains = (0..n)
        .map(|i| {
            let mut c = vec![ranked[i].clone()];
            c.extend(ranked[i + 1..].iter().cloned());
            c.extend(ranked[..i].iter().rev().cloned());
            c
        })
        .collect();
    let tiers = ranked
        .iter()
        .map(|m| {
            models
                .get(m)
                .and_then(|s| s.tier.clone())
                .unwrap_or_else(|| "default".into())
        })
        .collect();
    Predicted {
        models: ranked,
        tiers,
        chains,
        threshold,
        strong_share,
        task_candidates,
    }
}

/// The `strong_share` a predictor route targets when it states neither
/// `threshold` nor `strong_share` (the zero-config `auto` route too).
pub const DEFAULT_STRONG_SHARE: f64 = 0.5;

#[allow(clippy::too_many_arguments)]
fn build_predicted(
    rname: &str,
    list: &[String],
    models: &IndexMap<String, ModelSettings>,
    tiers: &[String],
    built: &[Option<TaskRoute>],
    rr: &RawRoute,
    predictor: &Predictor,
    errors: &mut Vec<ConfigError>,
) -> Option<Predicted> {
    for (i, m) in list.iter().enumerate() {
        match models.get(m) {
            None => errors.push(err(
                format!("routes.{rname}.models[{i}]"),
                format!("unknown model {m:?} (a [models.*] name)"),
            )),
            Some(ms) if ms.kind != ModelKind::Chat => errors.push(err(
                format!("routes.{rname}.models[{i}]"),
                format!("{m:?} is an embedding model"),
            )),
            Some(_) => {}
        }
    }
    if list.is_empty() {
        errors.push(err(
            format!("routes.{rname}.models"),
            "must name at least one model",
        ));
    }
    let ranked = rank_candidates(list, models, tiers);
    if ranked.is_empty() {
        return None;
    }
    let mut task_candidates = vec![None; built.len()];
    for (ti, t) in built.iter().enumerate() {
        let Some(tr) = t else { continue };
        let idx: Vec<usize> = ranked
            .iter()
            .enumerate()
            .filter(|(_, m)| tr.chain.contains(m))
            .map(|(i, _)| i)
            .collect();
        if idx.is_empty() {
            errors.push(err(
                format!("routes.{rname}.tasks"),
                format!(
                    "a task entry ({:?}) names none of the route's candidate models",
                    tr.chain
                ),
            ));
            return None;
        }
        task_candidates[ti] = Some(idx);
    }
    let threshold = match (rr.threshold, rr.strong_share) {
        (Some(t), _) => t as f32,
        (None, Some(s)) => predictor.threshold_for_share(s),
        (None, None) => predictor.threshold_for_share(DEFAULT_STRONG_SHARE),
    };
    Some(predicted_from(
        ranked,
        models,
        threshold,
        rr.strong_share,
        task_candidates,
    ))
}

fn build_task(
    path: &str,
    task: &str,
    rt: &RawRouteTask,
    models: &IndexMap<String, ModelSettings>,
    tiers: &[String],
    errors: &mut Vec<ConfigError>,
) -> Option<TaskRoute> {
    let n_errors = errors.len();
    if let Some(t) = &rt.tier {
        if !tiers.contains(t) {
            errors.push(err(
                format!("{path}.tier"),
                format!("unknown tier {t:?}; tiers are {tiers:?}"),
            ));
        }
    }
    if let Some(list) = &rt.models {
        for (i, m) in list.iter().enumerate() {
            match models.get(m) {
                None => errors.push(err(
                    format!("{path}.models[{i}]"),
                    format!("unknown model {m:?} (a [models.*] name)"),
                )),
                Some(ms) if ms.kind != ModelKind::Chat => errors.push(err(
                    format!("{path}.models[{i}]"),
                    format!("{m:?} is an embedding model"),
                )),
                Some(_) => {}
            }
        }
    }
    if let Some(q) = rt.quality_threshold {
        if !(0.0..=1.0).contains(&q) {
            errors.push(err(
                format!("{path}.quality_threshold"),
                "must be between 0 and 1",
            ));
        }
    }
    if let Some(e) = rt.escalate_above {
        if !(0.0..=1.0).contains(&e) {
            errors.push(err(format!("{path}.escalate_above"), "must be between 0 and 1"));
        }
    }
    if errors.len() > n_errors {
        return None;
    }
    let chain: Vec<String> = match rt.select {
        Select::Chain => match (&rt.models, &rt.tier) {
            (Some(list), _) => list.clone(),
            (None, Some(t)) => tier_models(models, t),
            (None, None) => {
                errors.push(err(path, "needs `models` or `tier`"));
                return None;
            }
        },
        Select::CheapestAboveThreshold => {
            let Some(threshold) = rt.quality_threshold else {
                errors.push(err(
                    format!("{path}.quality_threshold"),
                    "required by select = \"cheapest_above_threshold\"",
                ));
                return None;
            };
            let candidates: Vec<&String> = match &rt.models {
                Some(list) => list.iter().collect(),
                None => models
                    .iter()
                    .filter(|(_, m)| m.kind == ModelKind::Chat)
                    .map(|(n, _)| n)
                    .collect(),
            };
            let mut ok: Vec<(&String, f64)> = candidates
                .into_iter()
                .filter_map(|n| {
                    let m = models.get(n)?;
                    let q = *m.quality.get(task)?;
                    (q >= threshold).then(|| (n, blended_price(m).unwrap_or(f64::INFINITY)))
                })
                .collect();
            ok.sort_by(|a, b| a.1.total_cmp(&b.1));
            ok.into_iter().map(|(n, _)| n.clone()).collect()
        }
    };
    // A threshold also filters an explicit chain: models whose score for the
    // task is known and below it are dropped (unscored models stay).
    let chain: Vec<String> = match (rt.select, rt.quality_threshold) {
        (Select::Chain, Some(threshold)) => chain
            .into_iter()
            .filter(|n| {
                models
                    .get(n)
                    .and_then(|m| m.quality.get(task))
                    .is_none_or(|q| *q >= threshold)
            })
            .collect(),
        _ => chain,
    };
    if chain.is_empty() {
        let why = match rt.select {
            Select::CheapestAboveThreshold => {
                "no model has a quality score for this task at or above quality_threshold"
            }
            Select::Chain => "the chain is empty (no models in that tier, or none meets quality_threshold)",
        };
        errors.push(err(path, why));
        return None;
    }
    let tier = rt
        .tier
        .clone()
        .or_else(|| models.get(&chain[0]).and_then(|m| m.tier.clone()))
        .unwrap_or_else(|| "default".into());
    let escalation = match rt.escalate_above {
        None => None,
        Some(above) => {
            let Some(next) = tiers
                .iter()
                .position(|t| *t == tier)
                .and_then(|i| tiers.get(i + 1))
            else {
                errors.push(err(
                    format!("{path}.escalate_above"),
                    format!("tier {tier:?} has no higher tier to escalate to"),
                ));
                return None;
            };
            let mut up = tier_models(models, next);
            if up.is_empty() {
                errors.push(err(
                    format!("{path}.escalate_above"),
                    format!("tier {next:?} has no models"),
                ));
                return None;
            }
            up.extend(
                chain
                    .iter()
                    .filter(|m| !up.contains(m))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            Some(Escalation {
                above,
                tier: next.clone(),
                chain: up,
            })
        }
    };
    Some(TaskRoute {
        configured: true,
        tier,
        chain,
        escalation,
        priority: rt.priority,
    })
}

/// The built-in task -> tier map of the default `auto` route.
fn default_tier_for(task: &str) -> (&'static str, Priority) {
    match task {
        "code_generation" | "complex_reasoning" => ("frontier", Priority::High),
        "translation" | "extraction" => ("quality", Priority::Normal),
        "creative_writing" => ("quality", Priority::Low),
        _ => ("economy", Priority::Low), // simple_chat, summarization, custom tasks
    }
}

/// `auto` built from the configured models: a predictor route whose
/// candidates are the configured tiers (see the comment in [`build`]). Its
/// per-task entries are the seed task map (each task to its default tier's
/// models, cheapest first, then the nearest other tiers as fallbacks): they
/// label the request and are what `[routes.auto]` replaces, but do not pick
/// the model.
fn default_auto_route(
    models: &IndexMap<String, ModelSettings>,
    tiers: &[String],
    tasks: &[String],
    predictor: &Predictor,
) -> Option<Route> {
    if models.is_empty() || tasks.is_empty() || tiers.is_empty() {
        return None;
    }
    // Only chat models; those without a tier are ranked into the default tiers by price.
    let mut models: IndexMap<String, ModelSettings> = models
        .iter()
        .filter(|(_, m)| m.kind == ModelKind::Chat)
        .map(|(n, m)| (n.clone(), m.clone()))
        .collect();
    if models.is_empty() {
        return None;
    }
    let untiered: Vec<String> = models
        .iter()
        .filter(|(_, m)| m.tier.is_none())
        .map(|(n, _)| n.clone())
        .collect();
    if !untiered.is_empty() && models.values().all(|m| m.tier.is_none()) {
        let mut by_price: Vec<(String, f64)> = untiered
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    models.get(n).and_then(blended_price).unwrap_or(f64::INFINITY),
                )
            })
            .collect();
        by_price.sort_by(|a, b| a.1.total_cmp(&b.1));
        let last = by_price.len() - 1;
        for (i, (n, _)) in by_price.iter().enumerate() {
            let t = if i == 0 {
                tiers.first()
            } else if i == last {
                tiers.last()
            } else {
                tiers.get(tiers.len() / 2)
            };
            if let (Some(m), Some(t)) = (models.get_mut(n), t) {
                m.tier = Some(t.clone());
            }
        }
    }
    let per_tier: Vec<Vec<String>> = tiers.iter().map(|t| tier_models(&models, t)).collect();
    // The chain for tier i: its models, then tiers above (nearest first), then below.
    let chain_from = |i: usize| -> Option<(String, Vec<String>)> {
        let order = (i..tiers.len()).chain((0..i).rev());
        let mut chain = Vec::new();
        let mut serving_tier = None;
        for j in order {
            if !per_tier[j].is_empty() && serving_tier.is_none() {
                serving_tier = Some(tiers[j].clone());
            }
            chain.extend(per_tier[j].iter().cloned());
        }
        serving_tier.map(|t| (t, chain))
    };
    let tier_index = |name: &str| tiers.iter().position(|t| t == name).unwrap_or(0);
    let mut task_routes = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (tier, priority) = default_tier_for(task);
        let i = tier_index(tier).min(tiers.len() - 1);
        let (tier, chain) = chain_from(i)?;
        let escalation = if task == "simple_chat" {
            let ti = tier_index(&tier);
            (ti + 1..tiers.len())
                .find(|j| !per_tier[*j].is_empty())
                .and_then(|j| {
                    let (t, c) = chain_from(j)?;
                    Some(Escalation {
                        above: 0.7,
                        tier: t,
                        chain: c,
                    })
                })
        } else {
            None
        };
        task_routes.push(TaskRoute {
            configured: true,
            tier,
            chain,
            escalation,
            priority,
        });
    }
    let default_task = tasks.iter().position(|t| t == "simple_chat").unwrap_or(0);
    // The predictor's candidates: every tier that has a chat model, cheapest
    // tier first; a tier is served by its cheapest model, then the tiers
    // above it, then the ones below (the same chains as the task map's).
    let mut predicted = Predicted {
        models: Vec::new(),
        tiers: Vec::new(),
        chains: Vec::new(),
        threshold: predictor.threshold_for_share(DEFAULT_STRONG_SHARE),
        strong_share: Some(DEFAULT_STRONG_SHARE),
        task_candidates: vec![None; tasks.len()],
    };
    for (i, models) in per_tier.iter().enumerate() {
        let (Some(first), Some((tier, chain))) = (models.first(), chain_from(i)) else {
            continue;
        };
        predicted.models.push(first.clone());
        predicted.tiers.push(tier);
        predicted.chains.push(chain);
    }
    Some(Route {
        name: "auto".into(),
        default_task,
        tasks: task_routes,
        built_in: true,
        predicted: (!predicted.models.is_empty()).then_some(predicted),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_decimals_match_the_formatter() {
        let mut xs: Vec<f32> = vec![
            0.0, 0.0625, 0.1875, 0.5, 0.9995, 0.99951, 1.0, 0.123_456, 2.5e-4, 7.5e-4, 999_999.9,
        ];
        xs.extend((0..=20_000).map(|i| i as f32 / 20_000.0));
        xs.extend((0..2_000).map(|i| i as f32 * 0.000_5 + 0.000_25));
        xs.extend([-0.0, -0.25, f32::NAN, f32::INFINITY, 1e7]);
        for x in xs {
            let mut s = String::new();
            push_3_decimals(&mut s, x);
            assert_eq!(s, format!("{x:.3}"), "{x:e}");
        }
    }
}
