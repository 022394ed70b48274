//! Resilience: retry policy, backoff, circuit breakers and per-deployment
//! health (passive from live traffic, optionally active probes).

pub mod backoff;
pub mod breaker;
pub mod health;

use std::time::Duration;

use crate::config::{ConfigError, RawResilience};

/// Validated `[resilience]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ResilienceSettings {
    pub max_attempts: u32,
    pub retries_per_target: u32,
    pub deadline: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub retry_after_cap: Duration,
    pub breaker: breaker::BreakerSettings,
}

impl Default for ResilienceSettings {
    fn default() -> Self {
        ResilienceSettings {
            max_attempts: 4,
            retries_per_target: 1,
            deadline: Duration::from_secs(120),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            retry_after_cap: Duration::from_secs(5),
            breaker: breaker::BreakerSettings::default(),
        }
    }
}

impl ResilienceSettings {
    pub fn from_raw(r: &RawResilience, errors: &mut Vec<ConfigError>) -> Self {
        let d = ResilienceSettings::default();
        let b = d.breaker.clone();
        let ms = |v: Option<u64>, dflt: Duration| v.map_or(dflt, Duration::from_millis);
        let mut err = |k: &str, m: &str| {
            errors.push(ConfigError {
                path: format!("resilience.{k}"),
                message: m.to_string(),
            })
        };
        let s = ResilienceSettings {
            max_attempts: r.max_attempts.unwrap_or(d.max_attempts),
            retries_per_target: r.retries_per_target.unwrap_or(d.retries_per_target),
            deadline: ms(r.deadline_ms, d.deadline),
            backoff_base: ms(r.backoff_base_ms, d.backoff_base),
            backoff_max: ms(r.backoff_max_ms, d.backoff_max),
            retry_after_cap: ms(r.retry_after_cap_ms, d.retry_after_cap),
            breaker: breaker::BreakerSettings {
                consecutive_failures: r.breaker_consecutive_failures.unwrap_or(b.consecutive_failures),
                failure_rate: r.breaker_failure_rate.unwrap_or(b.failure_rate),
                min_calls: r.breaker_min_calls.unwrap_or(b.min_calls),
                window: r.breaker_window_secs.map_or(b.window, Duration::from_secs),
                cooldown: ms(r.breaker_cooldown_ms, b.cooldown),
                max_cooldown: ms(r.breaker_max_cooldown_ms, b.max_cooldown),
            },
        };
        if s.max_attempts == 0 {
            err("max_attempts", "must be at least 1");
        }
        if s.deadline.is_zero() {
            err("deadline_ms", "must be greater than 0");
        }
        if s.backoff_max < s.backoff_base {
            err("backoff_max_ms", "must be at least backoff_base_ms");
        }
        if s.breaker.consecutive_failures == 0 {
            err("breaker_consecutive_failures", "must be at least 1");
        }
        if !(s.breaker.failure_rate > 0.0 && s.breaker.failure_rate <= 1.0) {
            err("breaker_failure_rate", "must be in (0, 1]");
        }
        if s.breaker.window.is_zero() {
            err("breaker_window_secs", "must be greater than 0");
        }
        if s.breaker.cooldown.is_zero() || s.breaker.max_cooldown < s.breaker.cooldown {
            err(
                "breaker_cooldown_ms",
                "must be > 0 and at most breaker_max_cooldown_ms",
            );
        }
        s
    }
}
