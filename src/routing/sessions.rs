//! Session pinning: requests with the same session key keep their model
//! while the session is active (last seen within the idle window), so a
//! conversation does not jump between models.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// A shard is swept of idle sessions when it grows past this.
const SWEEP_AT: usize = 4_096;

type Shard = HashMap<String, (Arc<str>, Instant)>;

pub struct Sessions {
    shards: Vec<Mutex<Shard>>,
    idle: Duration,
    hasher: RandomState,
}

impl Sessions {
    pub fn new(idle: Duration) -> Self {
        Sessions {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            idle,
            hasher: RandomState::new(),
        }
    }

    /// Returns the model to use for `key`: the pinned one while the session is
    /// active (and `still_valid` accepts it), else `proposed`, which becomes
    /// the pin. The bool is true when the pin was used.
    pub fn pick(
        &self,
        key: &str,
        proposed: &str,
        still_valid: impl Fn(&str) -> bool,
        now: Instant,
    ) -> (Arc<str>, bool) {
        if self.idle.is_zero() {
            return (Arc::from(proposed), false);
        }
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = match shard.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((model, seen)) = map.get_mut(key) {
            if now.saturating_duration_since(*seen) <= self.idle && still_valid(model) {
                *seen = now;
                return (model.clone(), true);
            }
        }
        if map.len() >= SWEEP_AT {
            let idle = self.idle;
            map.retain(|_, (_, seen)| now.saturating_duration_since(*seen) <= idle);
        }
        let model: Arc<str> = Arc::from(proposed);
        map.insert(key.to_string(), (model.clone(), now));
        (model, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_within_idle_window_and_expires() {
        let s = Sessions::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let ok = |_: &str| true;
        assert_eq!(s.pick("u1", "a", ok, t0), (Arc::from("a"), false));
        assert_eq!(
            s.pick("u1", "b", ok, t0 + Duration::from_secs(30)),
            (Arc::from("a"), true)
        );
        // Activity refreshed the window: still pinned 59 s after the last request.
        assert_eq!(
            s.pick("u1", "b", ok, t0 + Duration::from_secs(89)),
            (Arc::from("a"), true)
        );
        // Idle longer than the window: re-decided and re-pinned.
        assert_eq!(
            s.pick("u1", "b", ok, t0 + Duration::from_secs(200)),
            (Arc::from("b"), false)
        );
        assert_eq!(s.pick("u2", "c", ok, t0), (Arc::from("c"), false));
        // A pin that is no longer valid (model gone) is replaced.
        assert_eq!(
            s.pick("u1", "d", |m| m != "b", t0 + Duration::from_secs(201)),
            (Arc::from("d"), false)
        );
    }

    #[test]
    fn disabled_when_idle_is_zero() {
        let s = Sessions::new(Duration::ZERO);
        let t0 = Instant::now();
        s.pick("u", "a", |_| true, t0);
        assert_eq!(s.pick("u", "b", |_| true, t0), (Arc::from("b"), false));
    }
}
