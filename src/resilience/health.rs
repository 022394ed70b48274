//! Per-deployment health: the circuit breaker, a peak-EWMA of latency and
//! the number of calls in flight. Fed passively by live traffic and, when
//! configured, by active probes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::breaker::{Breaker, BreakerSettings, Outcome, Permit, State, Transition};

/// Decay time constant of the latency EWMA.
const TAU: Duration = Duration::from_secs(10);

/// Where a deployment's local breaker trips are told (to the other instances,
/// with shared state): the deployment's name and the cool-down.
pub type TripSink = Arc<dyn Fn(&str, Duration) + Send + Sync>;

pub struct Health {
    pub name: Arc<str>,
    pub breaker: Breaker,
    /// Told when this instance's breaker opens from closed (see [`TripSink`]).
    trips: std::sync::OnceLock<TripSink>,
    /// (ewma seconds, last update)
    ewma: Mutex<(f64, Option<Instant>)>,
    in_flight: AtomicUsize,
}

/// A snapshot for `GET /admin/health`.
#[derive(Debug, Serialize)]
pub struct HealthReport {
    pub provider: String,
    pub state: &'static str,
    pub consecutive_failures: u32,
    pub error_rate: f64,
    pub calls_in_window: usize,
    pub ewma_latency_ms: Option<f64>,
    pub in_flight: usize,
    pub cooldown_ms: u64,
}

/// Decrements the in-flight count when dropped.
pub struct InFlight(Arc<Health>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Health {
    pub fn new(name: Arc<str>, settings: BreakerSettings) -> Self {
        Health {
            name,
            breaker: Breaker::new(settings),
            trips: std::sync::OnceLock::new(),
            ewma: Mutex::new((0.0, None)),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Counts a call in flight until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Asks the breaker for a permit, logging any state change.
    pub fn acquire(&self) -> Option<Permit> {
        let (p, t) = self.breaker.try_acquire();
        self.log(t);
        p
    }

    /// Records a call's outcome (and its latency on success), logging state changes.
    pub fn record(&self, permit: Permit, outcome: Outcome, latency: Option<Duration>) {
        if let (Outcome::Success, Some(l)) = (outcome, latency) {
            self.observe_latency(l);
        }
        let t = self.breaker.record(permit, outcome);
        self.log(t);
        if let (Some(t), Some(sink)) = (t, self.trips.get()) {
            if t.from == State::Closed && t.to == State::Open {
                sink(&self.name, t.cooldown);
            }
        }
    }

    /// Where this deployment's local trips are told (set once).
    pub fn tell_trips(&self, sink: TripSink) {
        let _ = self.trips.set(sink);
    }

    /// Another instance's breaker for this deployment opened: open this one
    /// too for `cooldown`, unless it is already open or probing.
    pub fn hinted_open(&self, cooldown: Duration) {
        if let Some(t) = self.breaker.hint_open(cooldown) {
            tracing::warn!(
                provider = %self.name,
                cooldown_ms = t.cooldown.as_millis() as u64,
                "circuit breaker opened: another instance's breaker for this deployment opened"
            );
        }
    }

    fn log(&self, t: Option<Transition>) {
        if let Some(t) = t {
            match t.to {
                State::Open => tracing::warn!(
                    provider = %self.name,
                    from = t.from.as_str(),
                    cooldown_ms = t.cooldown.as_millis() as u64,
                    "circuit breaker opened"
                ),
                State::HalfOpen => {
                    tracing::info!(provider = %self.name, "circuit breaker half-open: probing")
                }
                State::Closed => tracing::info!(provider = %self.name, "circuit breaker closed"),
            }
        }
    }

    /// Peak-EWMA: a slower sample is taken at once; faster ones decay in with time.
    pub fn observe_latency(&self, sample: Duration) {
        let now = Instant::now();
        let x = sample.as_secs_f64();
        let mut g = match self.ewma.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (ewma, last) = *g;
        let next = match last {
            None => x,
            Some(_) if x > ewma => x,
            Some(t) => {
                let w = (-(now.saturating_duration_since(t).as_secs_f64()) / TAU.as_secs_f64()).exp();
                ewma * w + x * (1.0 - w)
            }
        };
        *g = (next, Some(now));
    }

    /// Calls in flight on this deployment.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Latency-aware load: EWMA latency times (calls in flight + 1). Unknown latency scores 0.
    pub fn load(&self) -> f64 {
        let ewma = match self.ewma.lock() {
            Ok(g) => g.0,
            Err(p) => p.into_inner().0,
        };
        ewma * (self.in_flight.load(Ordering::Relaxed) + 1) as f64
    }

    pub fn report(&self) -> HealthReport {
        let (rate, n) = self.breaker.error_rate();
        let ewma = match self.ewma.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        };
        HealthReport {
            provider: self.name.to_string(),
            state: self.breaker.state().as_str(),
            consecutive_failures: self.breaker.consecutive_failures(),
            error_rate: (rate * 1000.0).round() / 1000.0,
            calls_in_window: n,
            ewma_latency_ms: ewma.1.map(|_| (ewma.0 * 1e6).round() / 1e3),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            cooldown_ms: self.breaker.cooldown().as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_jumps_up_and_decays_down() {
        let h = Arc::new(Health::new(Arc::from("p"), BreakerSettings::default()));
        h.observe_latency(Duration::from_millis(10));
        h.observe_latency(Duration::from_millis(100));
        assert!((h.load() - 0.1).abs() < 1e-9, "peak taken at once");
        tokio::time::advance(TAU).await;
        h.observe_latency(Duration::from_millis(10));
        let after = h.load();
        assert!(
            after < 0.1 && after > 0.01,
            "decays towards faster samples: {after}"
        );
        let _g = h.start();
        assert!(
            (h.load() - 2.0 * after).abs() < 1e-9,
            "in-flight calls raise the load"
        );
    }
}
