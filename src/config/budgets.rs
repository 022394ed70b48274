//! `[budgets]`: spend limits, pacing and alerts (see `accounting::budget`).

use indexmap::IndexMap;
use serde::Deserialize;

use super::{err, ConfigError};
use crate::accounting::budget::{BudgetMode, BudgetSettings, Limits, OnExceed};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgets {
    /// IANA time zone for the day and month boundaries (default UTC).
    pub timezone: Option<String>,
    /// Global daily limit in USD.
    pub daily: Option<f64>,
    /// Global monthly limit in USD.
    pub monthly: Option<f64>,
    /// Pacing: low-priority tasks move down a tier when the spent fraction of
    /// a daily budget exceeds pace_factor x the elapsed fraction of the day (default 1.5).
    pub pace_factor: Option<f64>,
    /// Fractions of a limit at which a soft alert fires (default [0.5, 0.8, 1.0]).
    pub alert_at: Option<Vec<f64>>,
    /// Optional URL that receives each alert as a JSON POST.
    pub alert_webhook: Option<String>,
    /// "reject" (429 budget_exceeded, default) or "downgrade" (routed requests move to the cheapest tier).
    pub on_exceed: Option<String>,
    /// Output tokens reserved for a request without max_tokens (default 4096).
    pub reserve_output_tokens: Option<u32>,
    /// "strict" (default: cap each answer's max_tokens at what the budget's
    /// room affords and reserve exactly that) or "estimate" (reserve
    /// max_tokens or reserve_output_tokens, answers uncapped).
    pub mode: Option<String>,
    /// Strict mode: refuse rather than clamp below this many output tokens (default 16).
    pub min_output_tokens: Option<u32>,
    #[serde(default)]
    pub routes: IndexMap<String, RawLimits>,
    #[serde(default)]
    pub keys: IndexMap<String, RawLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub daily: Option<f64>,
    pub monthly: Option<f64>,
}

fn limits(path: &str, daily: Option<f64>, monthly: Option<f64>, errors: &mut Vec<ConfigError>) -> Limits {
    for (k, v) in [("daily", daily), ("monthly", monthly)] {
        if let Some(v) = v {
            if !(v.is_finite() && v >= 0.0) {
                errors.push(err(format!("{path}{k}"), "must be a non-negative number of USD"));
            }
        }
    }
    Limits { daily, monthly }
}

pub fn build(raw: RawBudgets, routes: &[&str], errors: &mut Vec<ConfigError>) -> BudgetSettings {
    let mut s = BudgetSettings::default();
    if let Some(tz) = &raw.timezone {
        match tz.parse::<chrono_tz::Tz>() {
            Ok(t) => s.timezone = t,
            Err(_) => errors.push(err(
                "budgets.timezone",
                format!("{tz:?} is not an IANA time zone name such as \"UTC\" or \"Europe/Berlin\""),
            )),
        }
    }
    s.global = limits("budgets.", raw.daily, raw.monthly, errors);
    if let Some(f) = raw.pace_factor {
        if f.is_finite() && f > 0.0 {
            s.pace_factor = f;
        } else {
            errors.push(err("budgets.pace_factor", "must be greater than 0"));
        }
    }
    if let Some(mut a) = raw.alert_at {
        if a.iter().any(|f| !(f.is_finite() && *f > 0.0)) || a.len() > 32 {
            errors.push(err(
                "budgets.alert_at",
                "must be at most 32 fractions greater than 0, e.g. [0.5, 0.8, 1.0]",
            ));
        }
        a.sort_by(f64::total_cmp);
        a.dedup();
        s.alerts = a;
    }
    if let Some(url) = raw.alert_webhook.filter(|u| !u.is_empty()) {
        if url.starts_with("http://") || url.starts_with("https://") {
            s.webhook = Some(url);
        } else {
            errors.push(err("budgets.alert_webhook", "must be an http:// or https:// URL"));
        }
    }
    match raw.on_exceed.as_deref() {
        None | Some("reject") => {}
        Some("downgrade") => s.on_exceed = OnExceed::Downgrade,
        Some(o) => errors.push(err(
            "budgets.on_exceed",
            format!("{o:?}: expected \"reject\" or \"downgrade\""),
        )),
    }
    if let Some(n) = raw.reserve_output_tokens {
        if n == 0 {
            errors.push(err("budgets.reserve_output_tokens", "must be at least 1"));
        }
        s.reserve_output_tokens = n.max(1);
    }
    match raw.mode.as_deref() {
        None | Some("strict") => {}
        Some("estimate") => s.mode = BudgetMode::Estimate,
        Some(m) => errors.push(err(
            "budgets.mode",
            format!("{m:?}: expected \"strict\" or \"estimate\""),
        )),
    }
    if let Some(n) = raw.min_output_tokens {
        if n == 0 {
            errors.push(err("budgets.min_output_tokens", "must be at least 1"));
        }
        s.min_output_tokens = n.max(1);
    }
    for (name, l) in raw.routes {
        if !routes.contains(&name.as_str()) {
            errors.push(err(
                format!("budgets.routes.{name}"),
                format!("no such route; routes are {routes:?}"),
            ));
        }
        let v = limits(&format!("budgets.routes.{name}."), l.daily, l.monthly, errors);
        s.routes.insert(name, v);
    }
    for (name, l) in raw.keys {
        let v = limits(&format!("budgets.keys.{name}."), l.daily, l.monthly, errors);
        s.keys.insert(name, v);
    }
    s
}
