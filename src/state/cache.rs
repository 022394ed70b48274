//! The exact response cache: answers of identical requests (same virtual
//! key, same model after routing, same messages, tools and sampling
//! parameters) served again without an upstream call.
//!
//! The store is this instance's memory (an LRU) or, with `[cache] store =
//! "redis"`, the shared-state Redis ([`super::cache_redis`]), so every
//! instance serves what any of them cached. The key is the endpoint, the
//! namespace (the virtual key's name), the model after routing and the
//! request's canonical JSON, compared in full: two different requests never
//! share an answer, whatever their hashes.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::api::usage::Usage;
use crate::config::cache::CacheSettings;

/// `x-switchyard-cache`: what the response cache did for a request.
pub const X_CACHE: http::HeaderName = http::HeaderName::from_static("x-switchyard-cache");

/// What the response cache did for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    Bypass,
}

impl Outcome {
    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
        })
    }
}

/// A stored answer.
#[derive(Debug)]
pub struct Cached {
    /// A complete JSON answer, or the SSE bytes of a stream, chunk by chunk.
    pub body: Answer,
    pub usage: Option<Usage>,
    /// What the original call cost (None: unknown).
    pub cost_usd: Option<f64>,
    /// Unix ms after which the entry is stale.
    pub expires_ms: i64,
}

#[derive(Debug)]
pub enum Answer {
    Complete(Bytes),
    Stream(Vec<Bytes>),
}

impl Cached {
    /// Bytes of the answer.
    pub fn size(&self) -> usize {
        match &self.body {
            Answer::Complete(b) => b.len(),
            Answer::Stream(c) => c.iter().map(|b| b.len()).sum(),
        }
    }
}

/// Bounded in-memory LRU (by entries and by bytes of key plus answer).
pub struct MemoryStore {
    inner: Mutex<Lru>,
    max_entries: usize,
    max_bytes: usize,
}

struct Lru {
    map: hashlink::LinkedHashMap<Vec<u8>, Arc<Cached>>,
    bytes: usize,
}

impl MemoryStore {
    pub fn new(max_entries: usize, max_bytes: usize) -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(Lru {
                map: hashlink::LinkedHashMap::new(),
                bytes: 0,
            }),
            max_entries: max_entries.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &[u8], now_ms: i64) -> Option<Arc<Cached>> {
        let mut g = self.lock();
        let v = g.map.to_back(key)?.clone();
        if v.expires_ms <= now_ms {
            if let Some(old) = g.map.remove(key) {
                g.bytes = g.bytes.saturating_sub(key.len() + old.size());
            }
            return None;
        }
        Some(v)
    }

    pub fn put(&self, key: Vec<u8>, value: Cached) {
        let size = key.len() + value.size();
        if size > self.max_bytes {
            return;
        }
        let mut g = self.lock();
        if let Some(old) = g.map.remove(&key) {
            g.bytes = g.bytes.saturating_sub(key.len() + old.size());
        }
        while !g.map.is_empty() && (g.map.len() >= self.max_entries || g.bytes + size > self.max_bytes) {
            if let Some((k, v)) = g.map.pop_front() {
                g.bytes = g.bytes.saturating_sub(k.len() + v.size());
            }
        }
        g.bytes += size;
        g.map.insert(key, Arc::new(value));
    }
}

/// Where answers are kept: this instance's memory, or the shared Redis.
pub enum Store {
    Memory(MemoryStore),
    Redis(super::cache_redis::RedisStore),
}

/// The response cache of a gateway: its store (sized at start) and the
/// largest entry it keeps.
pub struct ResponseCache {
    pub store: Store,
    max_entry_bytes: usize,
}

impl ResponseCache {
    /// The in-memory store of `s` (also what `store = "redis"` starts with,
    /// until [`ResponseCache::redis`] replaces it once Redis is configured).
    pub fn new(s: &CacheSettings) -> ResponseCache {
        ResponseCache {
            store: Store::Memory(MemoryStore::new(s.max_entries, s.max_bytes)),
            max_entry_bytes: s.max_entry_bytes,
        }
    }

    /// The Redis store of `s` on the shared-state connection.
    pub fn redis(s: &CacheSettings, shared: Arc<super::shared::Shared>) -> ResponseCache {
        ResponseCache {
            store: Store::Redis(super::cache_redis::RedisStore::new(s, shared)),
            max_entry_bytes: s.max_entry_bytes,
        }
    }

    /// "memory" or "redis".
    pub fn kind(&self) -> &'static str {
        match self.store {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    /// Entries larger than this (key plus answer) are not kept.
    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// The live entry under `key` (namespace-qualified canonical bytes), if
    /// any. A store that cannot answer (Redis down, slow or failing) is a miss.
    pub async fn get(&self, key: &[u8], now_ms: i64) -> Option<Arc<Cached>> {
        match &self.store {
            Store::Memory(m) => m.get(key, now_ms),
            Store::Redis(r) => r.get(key).await,
        }
    }

    /// Keeps `value` under `key` for `ttl` (not when larger than
    /// `max_entry_bytes`; the memory store goes by `value.expires_ms`, Redis by
    /// `ttl`, in its own clock). Never waits: a Redis write runs in the
    /// background, and a failed one is dropped (the next identical request is
    /// a miss and stores again).
    pub fn put(&self, key: Vec<u8>, value: Cached, ttl: std::time::Duration) {
        if key.len() + value.size() > self.max_entry_bytes {
            return;
        }
        match &self.store {
            Store::Memory(m) => m.put(key, value),
            Store::Redis(r) => r.put(key, value, ttl),
        }
    }
}

/// Whether the client asked to skip the cache: `Cache-Control: no-cache`
/// (or `no-store`) or `x-switchyard-cache: bypass`.
pub fn client_bypass(headers: &HeaderMap) -> bool {
    let has = |name: &http::HeaderName, word: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(word)))
        })
    };
    has(&http::header::CACHE_CONTROL, "no-cache")
        || has(&http::header::CACHE_CONTROL, "no-store")
        || has(&X_CACHE, "bypass")
}

/// Whether a request's sampling makes it cacheable under `s`: deterministic
/// (`temperature` absent or 0) unless `cache_temperature` is set.
pub fn sampling_allows(s: &CacheSettings, temperature: Option<&serde_json::Value>) -> bool {
    s.cache_temperature
        || match temperature {
            None | Some(serde_json::Value::Null) => true,
            Some(t) => t.as_f64().is_some_and(|t| t == 0.0),
        }
}

/// The store key: endpoint, namespace (the virtual key), model after
/// routing and the request's canonical JSON, separated by NUL bytes.
pub fn key(endpoint: &str, namespace: &str, model: &str, canonical: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(endpoint.len() + namespace.len() + model.len() + canonical.len() + 3);
    k.extend_from_slice(endpoint.as_bytes());
    k.push(0);
    k.extend_from_slice(namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(model.as_bytes());
    k.push(0);
    k.extend_from_slice(canonical);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &'static str, expires_ms: i64) -> Cached {
        Cached {
            body: Answer::Complete(Bytes::from_static(body.as_bytes())),
            usage: None,
            cost_usd: Some(1.0),
            expires_ms,
        }
    }

    #[test]
    fn lru_evicts_least_recently_used_and_expires() {
        let s = MemoryStore::new(2, 1 << 20);
        s.put(b"a".to_vec(), entry("A", 100));
        s.put(b"b".to_vec(), entry("B", 100));
        assert!(s.get(b"a", 0).is_some()); // a is now the most recent
        s.put(b"c".to_vec(), entry("C", 100));
        assert!(s.get(b"b", 0).is_none(), "b was least recently used");
        assert!(s.get(b"a", 0).is_some());
        assert!(s.get(b"c", 0).is_some());
        assert!(s.get(b"c", 100).is_none(), "expired at its deadline");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn byte_bound_holds() {
        let s = MemoryStore::new(100, 10);
        s.put(b"k1".to_vec(), entry("12345", 100));
        s.put(b"k2".to_vec(), entry("12345", 100));
        assert!(s.get(b"k1", 0).is_none());
        assert!(s.get(b"k2", 0).is_some());
        s.put(b"big".to_vec(), entry("0123456789", 100));
        assert!(s.get(b"big", 0).is_none(), "larger than the whole cache");
    }

    #[test]
    fn bypass_headers_and_sampling() {
        let mut h = HeaderMap::new();
        assert!(!client_bypass(&h));
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=0, No-Cache"),
        );
        assert!(client_bypass(&h));
        let mut h = HeaderMap::new();
        h.insert(X_CACHE, HeaderValue::from_static("bypass"));
        assert!(client_bypass(&h));
        let d = CacheSettings::default();
        assert!(sampling_allows(&d, None));
        assert!(sampling_allows(&d, Some(&serde_json::json!(0))));
        assert!(!sampling_allows(&d, Some(&serde_json::json!(0.7))));
        let t = CacheSettings {
            cache_temperature: true,
            ..d
        };
        assert!(sampling_allows(&t, Some(&serde_json::json!(0.7))));
    }
}
