//! The response cache in Redis (`[cache] store = "redis"`), on the shared-state
//! connection of `[state] redis_url`: every instance on that Redis serves what
//! any of them cached.
//!
//! Keys (all under the `{prefix}` hash tag, one Redis Cluster slot):
//! - `{prefix}:cache:e:<id>`: one entry, a string with a TTL (`SET PX`); `<id>`
//!   is the SHA-256 (hex) of the full cache key, and the value carries the full
//!   key, compared on read, so two requests never share an answer whatever
//!   their hashes;
//! - `{prefix}:cache:idx`: a sorted set of the ids by expiry time, the
//!   eviction order (with one TTL, oldest first);
//! - `{prefix}:cache:sz` (hash, id -> bytes) and `{prefix}:cache:bytes` (their sum).
//!
//! The size limit holds: an entry larger than `max_entry_bytes` is never sent,
//! and the store script (atomic) drops expired ids, then the soonest-expiring
//! entries until the new one fits under `max_entries` and `max_bytes` (counted
//! as stored: key plus answer plus a small header). Entries expired by Redis on
//! their own are still counted until a store clears them, so the count errs
//! high, never low.
//!
//! A read is one `GET` within `[state] timeout_ms`; a failure or timeout marks
//! the shared backend down (as any shared-state call does) and is a miss.
//! While the backend is down, reads do not try Redis at all (a miss at once)
//! and writes are dropped. Writes never hold up a response: they run in the
//! background.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use redis::Script;
use sha2::Digest;

use super::cache::{Answer, Cached};
use super::shared::Shared;
use crate::api::usage::Usage;
use crate::config::cache::CacheSettings;

/// Stores an entry within the bounds. KEYS: entry, index, sizes, total.
/// ARGV: value, ttl ms, now ms, max entries, max bytes, id, entry key prefix.
const PUT: &str = r#"
local entry, idx, sizes, total = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local value, ttl, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_n, max_b, id, ep = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
local size = #value
local function drop(m)
  local s = tonumber(redis.call('HGET', sizes, m) or '0')
  redis.call('HDEL', sizes, m)
  redis.call('ZREM', idx, m)
  redis.call('DEL', ep .. m)
  redis.call('DECRBY', total, s)
end
if redis.call('ZSCORE', idx, id) then drop(id) end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', now, 'LIMIT', 0, 64)) do drop(m) end
if redis.call('ZCARD', idx) == 0 then redis.call('SET', total, 0) end
local used = tonumber(redis.call('GET', total) or '0')
while redis.call('ZCARD', idx) > 0 and (redis.call('ZCARD', idx) >= max_n or used + size > max_b) do
  drop(redis.call('ZRANGE', idx, 0, 0)[1])
  used = tonumber(redis.call('GET', total) or '0')
end
redis.call('SET', entry, value, 'PX', ttl)
redis.call('ZADD', idx, now + ttl, id)
redis.call('HSET', sizes, id, size)
redis.call('INCRBY', total, size)
return 1
"#;

/// Format tag of a stored value (bumped when the layout changes: older
/// values then read as misses).
const MAGIC: &[u8; 4] = b"SYC1";

pub struct RedisStore {
    shared: Arc<Shared>,
    entry_prefix: String,
    idx: String,
    sizes: String,
    total: String,
    max_entries: usize,
    max_bytes: usize,
    put: Arc<Script>,
    /// Reads and writes that failed (Redis down, slow or erroring).
    errors: Arc<AtomicU64>,
    /// Writes that reached Redis.
    stored: Arc<AtomicU64>,
}

impl RedisStore {
    pub fn new(s: &CacheSettings, shared: Arc<Shared>) -> RedisStore {
        let p = format!("{}:cache:", shared.prefix());
        RedisStore {
            entry_prefix: format!("{p}e:"),
            idx: format!("{p}idx"),
            sizes: format!("{p}sz"),
            total: format!("{p}bytes"),
            shared,
            max_entries: s.max_entries,
            max_bytes: s.max_bytes,
            put: Arc::new(Script::new(PUT)),
            errors: Arc::new(AtomicU64::new(0)),
            stored: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Reads and writes that failed since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Writes that reached Redis since start.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    fn id(key: &[u8]) -> String {
        let d = sha2::Sha256::digest(key);
        let mut s = String::with_capacity(64);
        for b in d {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    pub async fn get(&self, key: &[u8]) -> Option<Arc<Cached>> {
        if !self.shared.is_up() {
            return None;
        }
        let mut c = self.shared.connection();
        let entry = format!("{}{}", self.entry_prefix, Self::id(key));
        let cmd = redis::cmd("GET").arg(&entry).to_owned();
        let got = tokio::time::timeout(
            self.shared.call_timeout(),
            cmd.query_async::<Option<Vec<u8>>>(&mut c),
        )
        .await;
        match got {
            Ok(Ok(v)) => decode(key, Bytes::from(v?)).map(Arc::new),
            Ok(Err(e)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.shared.call_failed(&e.to_string());
                None
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.shared.call_failed("a response-cache read timed out");
                None
            }
        }
    }

    /// Stores in the background (dropped while the backend is down).
    pub fn put(&self, key: Vec<u8>, value: Cached, ttl: Duration) {
        if !self.shared.is_up() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let id = Self::id(&key);
        let encoded = encode(&key, &value);
        drop(key);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let ttl_ms = ttl.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        let keys = [
            format!("{}{id}", self.entry_prefix),
            self.idx.clone(),
            self.sizes.clone(),
            self.total.clone(),
        ];
        let (shared, script, errors, stored) = (
            self.shared.clone(),
            self.put.clone(),
            self.errors.clone(),
            self.stored.clone(),
        );
        let (max_entries, max_bytes, entry_prefix) =
            (self.max_entries, self.max_bytes, self.entry_prefix.clone());
        handle.spawn(async move {
            let mut inv = script.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            inv.arg(encoded)
                .arg(ttl_ms)
                .arg(now_ms)
                .arg(max_entries)
                .arg(max_bytes)
                .arg(&id)
                .arg(&entry_prefix);
            let mut c = shared.connection();
            // A write may carry up to `max_entry_bytes`: a longer limit than a read's.
            let limit = shared.call_timeout().max(Duration::from_secs(1));
            match tokio::time::timeout(limit, inv.invoke_async::<i64>(&mut c)).await {
                Ok(Ok(_)) => {
                    stored.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "response cache: an answer was not stored in Redis");
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("response cache: storing an answer in Redis timed out");
                }
            }
        });
    }
}

/// `MAGIC`, the key (u32 length + bytes), flags (1 stream, 2 cost, 4 usage),
/// the cost (f64), the usage (five u64), the expiry (i64 ms), then the answer:
/// one body (u32 length + bytes) or the chunk count and each chunk likewise.
/// Little-endian throughout.
fn encode(key: &[u8], v: &Cached) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + v.size() + 96);
    out.put_slice(MAGIC);
    out.put_u32_le(key.len() as u32);
    out.put_slice(key);
    let stream = matches!(v.body, Answer::Stream(_));
    let flags = u8::from(stream) | (u8::from(v.cost_usd.is_some()) << 1) | (u8::from(v.usage.is_some()) << 2);
    out.put_u8(flags);
    out.put_f64_le(v.cost_usd.unwrap_or(0.0));
    let u = v.usage.unwrap_or_default();
    for n in [
        u.prompt_tokens,
        u.completion_tokens,
        u.cached_tokens,
        u.cache_write_tokens,
        u.reasoning_tokens,
    ] {
        out.put_u64_le(n);
    }
    out.put_i64_le(v.expires_ms);
    match &v.body {
        Answer::Complete(b) => {
            out.put_u32_le(b.len() as u32);
            out.put_slice(b);
        }
        Answer::Stream(chunks) => {
            out.put_u32_le(chunks.len() as u32);
            for c in chunks {
                out.put_u32_le(c.len() as u32);
                out.put_slice(c);
            }
        }
    }
    out
}

/// The entry in `v` when it is well-formed and stored under exactly `key`
/// (the body and chunks are slices of `v`: nothing is copied).
fn decode(key: &[u8], v: Bytes) -> Option<Cached> {
    let mut b = v.clone();
    fn take(b: &mut Bytes, n: usize) -> Option<Bytes> {
        (b.remaining() >= n).then(|| b.split_to(n))
    }
    fn u32_of(b: &mut Bytes) -> Option<usize> {
        (b.remaining() >= 4).then(|| b.get_u32_le() as usize)
    }
    if take(&mut b, 4)?.as_ref() != MAGIC {
        return None;
    }
    let klen = u32_of(&mut b)?;
    if take(&mut b, klen)?.as_ref() != key {
        return None;
    }
    if b.remaining() < 1 + 8 + 5 * 8 + 8 {
        return None;
    }
    let flags = b.get_u8();
    let cost = b.get_f64_le();
    let mut n = [0u64; 5];
    for x in &mut n {
        *x = b.get_u64_le();
    }
    let expires_ms = b.get_i64_le();
    let body = if flags & 1 == 0 {
        let len = u32_of(&mut b)?;
        Answer::Complete(take(&mut b, len)?)
    } else {
        let count = u32_of(&mut b)?;
        // Each chunk takes at least its 4-byte length: a corrupt count cannot
        // make the vector larger than the value.
        let mut chunks = Vec::with_capacity(count.min(b.remaining() / 4));
        for _ in 0..count {
            let len = u32_of(&mut b)?;
            chunks.push(take(&mut b, len)?);
        }
        Answer::Stream(chunks)
    };
    Some(Cached {
        body,
        usage: (flags & 4 != 0).then_some(Usage {
            prompt_tokens: n[0],
            completion_tokens: n[1],
            cached_tokens: n[2],
            cache_write_tokens: n[3],
            reasoning_tokens: n[4],
        }),
        cost_usd: (flags & 2 != 0).then_some(cost),
        expires_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_other_keys_never_match() {
        let usage = Usage {
            prompt_tokens: 1000,
            completion_tokens: 200,
            cached_tokens: 400,
            cache_write_tokens: 0,
            reasoning_tokens: 7,
        };
        let v = Cached {
            body: Answer::Stream(vec![
                Bytes::from_static(b"data: a\n\n"),
                Bytes::from_static(b"data: [DONE]\n\n"),
            ]),
            usage: Some(usage),
            cost_usd: Some(0.0034),
            expires_ms: 12345,
        };
        let e = Bytes::from(encode(b"k\0ns\0m\0{}", &v));
        let d = decode(b"k\0ns\0m\0{}", e.clone()).expect("decodes");
        assert_eq!(d.usage, Some(usage));
        assert_eq!(d.cost_usd, Some(0.0034));
        assert_eq!(d.expires_ms, 12345);
        match d.body {
            Answer::Stream(c) => assert_eq!(
                c,
                vec![
                    Bytes::from_static(b"data: a\n\n"),
                    Bytes::from_static(b"data: [DONE]\n\n")
                ]
            ),
            Answer::Complete(_) => panic!("a stream"),
        }
        assert!(
            decode(b"k\0other\0m\0{}", e.clone()).is_none(),
            "the full key is compared"
        );
        for cut in 0..e.len() {
            assert!(
                decode(b"k\0ns\0m\0{}", e.slice(..cut)).is_none(),
                "truncated at {cut}"
            );
        }
        let c = Cached {
            body: Answer::Complete(Bytes::from_static(b"{\"id\":1}")),
            usage: None,
            cost_usd: None,
            expires_ms: 1,
        };
        let d = decode(b"x", Bytes::from(encode(b"x", &c))).expect("decodes");
        assert!(d.usage.is_none() && d.cost_usd.is_none());
        assert!(matches!(d.body, Answer::Complete(b) if b.as_ref() == b"{\"id\":1}"));
        assert_eq!(RedisStore::id(b"x").len(), 64);
    }
}
