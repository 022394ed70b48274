//! `[cache]`: the exact response cache.

use serde::Deserialize;

use super::{err, ConfigError};

/// `[cache]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Turn the exact response cache on (default false).
    pub exact: Option<bool>,
    /// Seconds an answer stays servable (default 300).
    pub ttl_secs: Option<u64>,
    /// Most answers kept (default 10000).
    pub max_entries: Option<usize>,
    /// Most bytes of request keys plus answers kept (default 64 MiB).
    pub max_bytes: Option<usize>,
    /// Largest entry (request key plus answer) kept (default 1 MiB, at most `max_bytes`).
    pub max_entry_bytes: Option<usize>,
    /// Where answers are kept: "memory" (default, per instance) or "redis"
    /// (shared by every instance on `[state] redis_url`).
    pub store: Option<String>,
    /// Also cache requests with `temperature > 0` (default false).
    pub cache_temperature: Option<bool>,
    /// Public model names (after routing) never cached.
    #[serde(default)]
    pub exclude_models: Vec<String>,
}

/// Where the response cache keeps answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// In this instance's memory (LRU).
    #[default]
    Memory,
    /// In the Redis of `[state] redis_url`, shared by every instance on it.
    Redis,
}

/// `[cache]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub exact: bool,
    pub ttl: std::time::Duration,
    pub max_entries: usize,
    pub max_bytes: usize,
    pub max_entry_bytes: usize,
    pub store: StoreKind,
    pub cache_temperature: bool,
    pub exclude_models: Vec<String>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            exact: false,
            ttl: std::time::Duration::from_secs(300),
            max_entries: 10_000,
            max_bytes: 64 << 20,
            max_entry_bytes: 1 << 20,
            store: StoreKind::Memory,
            cache_temperature: false,
            exclude_models: Vec::new(),
        }
    }
}

/// `redis`: whether `[state] redis_url` is set (`store = "redis"` needs it).
pub(super) fn validate(raw: &RawCache, redis: bool, errors: &mut Vec<ConfigError>) -> CacheSettings {
    let d = CacheSettings::default();
    let ttl_secs = raw.ttl_secs.unwrap_or(d.ttl.as_secs());
    if ttl_secs == 0 {
        errors.push(err("cache.ttl_secs", "must be greater than 0"));
    }
    let max_entries = raw.max_entries.unwrap_or(d.max_entries);
    if max_entries == 0 {
        errors.push(err("cache.max_entries", "must be greater than 0"));
    }
    let max_bytes = raw.max_bytes.unwrap_or(d.max_bytes);
    if max_bytes == 0 {
        errors.push(err("cache.max_bytes", "must be greater than 0"));
    }
    let max_entry_bytes = raw.max_entry_bytes.unwrap_or(d.max_entry_bytes.min(max_bytes));
    if max_entry_bytes == 0 || max_entry_bytes > max_bytes {
        errors.push(err(
            "cache.max_entry_bytes",
            "must be greater than 0 and at most cache.max_bytes",
        ));
    }
    let store = match raw.store.as_deref() {
        None | Some("memory") => StoreKind::Memory,
        Some("redis") => {
            if !redis {
                errors.push(err(
                    "cache.store",
                    "\"redis\" needs [state] redis_url (the Redis the cache shares)",
                ));
            }
            StoreKind::Redis
        }
        Some(o) => {
            errors.push(err(
                "cache.store",
                format!("{o:?}: expected \"memory\" or \"redis\""),
            ));
            StoreKind::Memory
        }
    };
    CacheSettings {
        exact: raw.exact.unwrap_or(false),
        ttl: std::time::Duration::from_secs(ttl_secs),
        max_entries,
        max_bytes,
        max_entry_bytes,
        store,
        cache_temperature: raw.cache_temperature.unwrap_or(false),
        exclude_models: raw.exclude_models.clone(),
    }
}
