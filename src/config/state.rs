//! `[state]`: where the state several instances must share lives (rate limits,
//! concurrency caps, budget reservations and spend, key revocations).

use serde::Deserialize;

use super::{env, err, ConfigError, Secret};

/// `[state]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// `redis://host:port[/db]` (may use `${VAR}`); absent or empty: in memory, per instance.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (default "switchyard").
    pub key_prefix: Option<String>,
    /// Hard limit on one Redis call in ms (default 50).
    pub timeout_ms: Option<u64>,
    /// "fail_open" (default) or "fail_closed".
    pub on_failure: Option<String>,
    /// Tell the other instances when a deployment's breaker opens here (default true).
    pub share_breakers: Option<bool>,
    /// Most admissions one Redis call carries (default 64; 1: one call per admission).
    pub admit_batch: Option<u64>,
}

/// What requests get while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Serve on this instance's own limits and counters (flagged in the log and metrics).
    #[default]
    FailOpen,
    /// Refuse with 503 `state_unavailable`.
    FailClosed,
}

/// `[state]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    pub redis_url: Option<Secret>,
    pub key_prefix: String,
    pub timeout: std::time::Duration,
    pub on_failure: OnFailure,
    /// A breaker that opens on one instance opens on every instance for its cool-down.
    pub share_breakers: bool,
    /// Most admissions sent in one script call (admissions queued while a call is in flight share the next).
    pub admit_batch: usize,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            redis_url: None,
            key_prefix: "switchyard".into(),
            timeout: std::time::Duration::from_millis(50),
            on_failure: OnFailure::FailOpen,
            share_breakers: true,
            admit_batch: 64,
        }
    }
}

pub(super) fn validate(
    raw: &RawState,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> StateSettings {
    let d = StateSettings::default();
    let redis_url = match raw.redis_url.as_deref().map(|u| env::expand_with(u, lookup)) {
        None => None,
        Some(Ok(u)) if u.is_empty() => None,
        Some(Ok(u)) if u.starts_with("redis://") || u.starts_with("rediss://") => Some(Secret::new(u)),
        Some(Ok(_)) => {
            errors.push(err("state.redis_url", "must start with redis://"));
            None
        }
        Some(Err(e)) => {
            errors.push(err("state.redis_url", e.to_string()));
            None
        }
    };
    let key_prefix = raw.key_prefix.clone().unwrap_or(d.key_prefix);
    if key_prefix.is_empty() || key_prefix.contains(['{', '}', ' ']) {
        errors.push(err(
            "state.key_prefix",
            "must be non-empty, without spaces or braces",
        ));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(50);
    if timeout_ms == 0 || timeout_ms > 10_000 {
        errors.push(err("state.timeout_ms", "must be between 1 and 10000"));
    }
    let admit_batch = raw.admit_batch.unwrap_or(d.admit_batch as u64);
    if !(1..=1000).contains(&admit_batch) {
        errors.push(err("state.admit_batch", "must be between 1 and 1000"));
    }
    let on_failure = match raw.on_failure.as_deref() {
        None | Some("fail_open") => OnFailure::FailOpen,
        Some("fail_closed") => OnFailure::FailClosed,
        Some(o) => {
            errors.push(err(
                "state.on_failure",
                format!("{o:?}: expected \"fail_open\" or \"fail_closed\""),
            ));
            OnFailure::FailOpen
        }
    };
    StateSettings {
        redis_url,
        key_prefix,
        timeout: std::time::Duration::from_millis(timeout_ms.clamp(1, 10_000)),
        on_failure,
        share_breakers: raw.share_breakers.unwrap_or(true),
        admit_batch: admit_batch.clamp(1, 1000) as usize,
    }
}
