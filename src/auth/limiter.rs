//! Token buckets for rate limits: requests per minute, tokens per minute,
//! concurrent requests.
//!
//! A bucket holds up to `capacity` units and refills `capacity` per minute,
//! continuously. A request takes its units up front; a token bucket is then
//! corrected by the real count ([`Bucket::adjust`]), which may leave it in
//! debt so the next requests wait. The level is kept under a tiny mutex
//! (two numbers, no await while held).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// How full a bucket is, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub limit: u64,
    pub remaining: u64,
    /// Time until the bucket is full again, in ms.
    pub reset_ms: u64,
}

/// Refused: try again after this many ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub retry_after_ms: u64,
    pub limit: u64,
}

#[derive(Debug)]
pub struct Bucket {
    capacity: f64,
    /// Units refilled per ms.
    rate: f64,
    /// (level, last update in ms).
    state: Mutex<(f64, i64)>,
}

impl Bucket {
    /// A bucket of `n` units refilled over a minute; starts full.
    pub fn per_minute(n: u64, now_ms: i64) -> Bucket {
        let capacity = n as f64;
        Bucket {
            capacity,
            rate: capacity / 60_000.0,
            state: Mutex::new((capacity, now_ms)),
        }
    }

    pub fn limit(&self) -> u64 {
        self.capacity as u64
    }

    fn refill(&self, st: &mut (f64, i64), now_ms: i64) {
        let elapsed = (now_ms - st.1).max(0) as f64;
        st.0 = (st.0 + elapsed * self.rate).min(self.capacity);
        st.1 = st.1.max(now_ms);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (f64, i64)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `n` units if the bucket holds them. A request larger than the
    /// whole bucket is admitted when the bucket is full (else it could never run).
    pub fn try_take(&self, n: f64, now_ms: i64) -> Result<Snapshot, Denied> {
        let mut st = self.lock();
        self.refill(&mut st, now_ms);
        let need = n.min(self.capacity);
        // A small epsilon keeps float drift from refusing an exact refill.
        if st.0 + 1e-9 >= need {
            st.0 -= n;
            Ok(self.snap(&st))
        } else {
            let missing = need - st.0;
            Err(Denied {
                retry_after_ms: (missing / self.rate).ceil().max(1.0) as u64,
                limit: self.limit(),
            })
        }
    }

    /// Corrects an earlier take: positive `delta` takes more (possibly into
    /// debt), negative gives back.
    pub fn adjust(&self, delta: f64, now_ms: i64) {
        let mut st = self.lock();
        self.refill(&mut st, now_ms);
        st.0 = (st.0 - delta).min(self.capacity);
    }

    pub fn snapshot(&self, now_ms: i64) -> Snapshot {
        let mut st = self.lock();
        self.refill(&mut st, now_ms);
        self.snap(&st)
    }

    fn snap(&self, st: &(f64, i64)) -> Snapshot {
        Snapshot {
            limit: self.limit(),
            remaining: st.0.max(0.0).floor() as u64,
            reset_ms: ((self.capacity - st.0).max(0.0) / self.rate).ceil() as u64,
        }
    }
}

/// A cap on requests in flight.
#[derive(Debug)]
pub struct Concurrency {
    max: u32,
    current: AtomicU32,
}

impl Concurrency {
    pub fn new(max: u32) -> Concurrency {
        Concurrency {
            max,
            current: AtomicU32::new(0),
        }
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    /// Takes a slot; `release` must follow (see the guard in `auth`).
    pub fn try_acquire(&self) -> bool {
        self.current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < self.max).then_some(c + 1)
            })
            .is_ok()
    }

    pub fn release(&self) {
        let _ = self
            .current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1));
    }

    pub fn in_flight(&self) -> u32 {
        self.current.load(Ordering::Acquire)
    }
}

/// A provider deployment's account limits (RPM, TPM). A deployment at its
/// limit is skipped in favour of the next target instead of earning a 429.
#[derive(Debug)]
pub struct DeploymentLimits {
    pub rpm: Option<Bucket>,
    pub tpm: Option<Bucket>,
}

impl DeploymentLimits {
    pub fn new(rpm: Option<u32>, tpm: Option<u64>, now_ms: i64) -> Option<DeploymentLimits> {
        (rpm.is_some() || tpm.is_some()).then(|| DeploymentLimits {
            rpm: rpm.map(|n| Bucket::per_minute(u64::from(n), now_ms)),
            tpm: tpm.map(|n| Bucket::per_minute(n, now_ms)),
        })
    }

    /// Takes one request and `tokens` estimated tokens, or neither.
    pub fn try_acquire(&self, tokens: u64, now_ms: i64) -> Result<(), Denied> {
        if let Some(r) = &self.rpm {
            r.try_take(1.0, now_ms)?;
        }
        if let Some(t) = &self.tpm {
            if let Err(d) = t.try_take(tokens as f64, now_ms) {
                self.release(0, now_ms);
                return Err(d);
            }
        }
        Ok(())
    }

    /// Gives back what [`try_acquire`](Self::try_acquire) took, when nothing was sent after all.
    pub fn release(&self, tokens: u64, now_ms: i64) {
        if let Some(r) = &self.rpm {
            r.adjust(-1.0, now_ms);
        }
        if let Some(t) = &self.tpm {
            t.adjust(-(tokens as f64), now_ms);
        }
    }
}

/// OpenAI's duration format for `x-ratelimit-reset-*`: `1s`, `6m0s`, `120ms`.
pub fn format_reset(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1000);
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_plus_one_is_refused_and_the_window_refills_on_time() {
        let t0 = 1_000_000;
        let b = Bucket::per_minute(6, t0); // one request per 10 s
        for _ in 0..6 {
            assert!(b.try_take(1.0, t0).is_ok());
        }
        let d = b
            .try_take(1.0, t0)
            .expect_err("the 7th request in the window is refused");
        assert_eq!(d.retry_after_ms, 10_000);
        assert!(b.try_take(1.0, t0 + 9_999).is_err(), "one ms early");
        assert!(b.try_take(1.0, t0 + 10_000).is_ok(), "exactly on the boundary");
        assert!(b.try_take(1.0, t0 + 10_001).is_err());
    }

    #[test]
    fn corrections_go_into_debt_and_back() {
        let t0 = 0;
        let b = Bucket::per_minute(1_000, t0);
        assert!(b.try_take(100.0, t0).is_ok());
        // The call used 1,500 tokens, not 100: the bucket is 500 in debt.
        b.adjust(1_400.0, t0);
        assert_eq!(b.snapshot(t0).remaining, 0);
        let d = b.try_take(1.0, t0).expect_err("in debt");
        assert_eq!(d.retry_after_ms, 30_060); // 501 tokens at 1000/min
        b.adjust(-2_000.0, t0);
        assert_eq!(b.snapshot(t0).remaining, 1_000, "never above capacity");
    }

    #[test]
    fn oversized_request_runs_when_full() {
        let b = Bucket::per_minute(100, 0);
        assert!(b.try_take(500.0, 0).is_ok());
        assert!(b.try_take(1.0, 0).is_err());
    }

    #[test]
    fn concurrency_caps_in_flight() {
        let c = Concurrency::new(2);
        assert!(c.try_acquire() && c.try_acquire());
        assert!(!c.try_acquire());
        c.release();
        assert!(c.try_acquire());
    }

    #[test]
    fn reset_format_matches_openai() {
        assert_eq!(format_reset(120), "120ms");
        assert_eq!(format_reset(1_000), "1s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(3_723_000), "1h2m3s");
    }
}
