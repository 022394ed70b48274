//! A circuit breaker per provider deployment.
//!
//! Closed -> Open after `consecutive_failures` failures in a row, or when the
//! failure rate over a sliding `window` reaches `failure_rate` (with at least
//! `min_calls` calls). Open -> HalfOpen once the cool-down has passed; half-open
//! admits exactly one probe at a time. The probe's success closes the breaker
//! (and resets the cool-down); its failure re-opens it with the cool-down
//! doubled, up to `max_cooldown`. Client-caused errors are neutral: they never
//! count as failures. Time is `tokio::time::Instant`, so tests can pause it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Breaker thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    pub consecutive_failures: u32,
    pub failure_rate: f64,
    pub min_calls: u32,
    pub window: Duration,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
        }
    }
}

/// The breaker's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// Permission to send one call; report its outcome to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// A normal call (breaker closed).
    Normal,
    /// The single half-open probe.
    Probe,
}

/// What a call's outcome means for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// The provider answered, but the request was the client's mistake (4xx).
    Neutral,
    /// The call was abandoned (client hung up) before an outcome.
    Abandoned,
}

struct Inner {
    state: State,
    consecutive: u32,
    /// (time, failed) of recent calls, pruned to the window.
    window: VecDeque<(Instant, bool)>,
    open_until: Instant,
    cooldown: Duration,
    probe_in_flight: bool,
}

pub struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

/// Upper bound on remembered calls (the window is pruned by time as well).
const WINDOW_CAP: usize = 4_096;

/// A state change, for logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub cooldown: Duration,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        let cooldown = settings.cooldown;
        Breaker {
            settings,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                window: VecDeque::new(),
                open_until: Instant::now(),
                cooldown,
                probe_in_flight: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The state now (an open breaker whose cool-down passed reads half-open).
    pub fn state(&self) -> State {
        let g = self.lock();
        match g.state {
            State::Open if Instant::now() >= g.open_until => State::HalfOpen,
            s => s,
        }
    }

    /// Asks to send a call. None: skip this deployment (open, or a probe is already out).
    pub fn try_acquire(&self) -> (Option<Permit>, Option<Transition>) {
        let now = Instant::now();
        let mut g = self.lock();
        match g.state {
            State::Closed => (Some(Permit::Normal), None),
            State::Open if now < g.open_until => (None, None),
            State::Open => {
                g.state = State::HalfOpen;
                g.probe_in_flight = true;
                let t = Transition {
                    from: State::Open,
                    to: State::HalfOpen,
                    cooldown: g.cooldown,
                };
                (Some(Permit::Probe), Some(t))
            }
            State::HalfOpen if g.probe_in_flight => (None, None),
            State::HalfOpen => {
                g.probe_in_flight = true;
                (Some(Permit::Probe), None)
            }
        }
    }

    /// Reports a call's outcome. Returns the transition it caused, if any.
    pub fn record(&self, permit: Permit, outcome: Outcome) -> Option<Transition> {
        let now = Instant::now();
        let s = &self.settings;
        let mut g = self.lock();
        if permit == Permit::Probe {
            g.probe_in_flight = false;
        }
        let from = g.state;
        match (g.state, outcome) {
            (_, Outcome::Abandoned) => return None,
            (State::HalfOpen, Outcome::Success | Outcome::Neutral) if permit == Permit::Probe => {
                g.state = State::Closed;
                g.consecutive = 0;
                g.window.clear();
                g.cooldown = s.cooldown;
            }
            (State::HalfOpen, Outcome::Failure) if permit == Permit::Probe => {
                g.cooldown = (g.cooldown * 2).min(s.max_cooldown);
                g.state = State::Open;
                g.open_until = now + g.cooldown;
            }
            (State::Closed, Outcome::Success | Outcome::Neutral) => {
                if outcome == Outcome::Success {
                    g.consecutive = 0;
                }
                push(&mut g.window, now, false, s.window);
            }
            (State::Closed, Outcome::Failure) => {
                g.consecutive += 1;
                push(&mut g.window, now, true, s.window);
                let calls = g.window.len() as u32;
                let failed = g.window.iter().filter(|(_, f)| *f).count() as f64;
                let rate_trip = calls >= s.min_calls && failed / calls as f64 >= s.failure_rate;
                if g.consecutive >= s.consecutive_failures || rate_trip {
                    g.state = State::Open;
                    g.open_until = now + g.cooldown;
                }
            }
            // Late outcomes of normal calls while open / half-open change nothing.
            _ => {}
        }
        (g.state != from).then_some(Transition {
            from,
            to: g.state,
            cooldown: g.cooldown,
        })
    }

    /// Opens a closed breaker for `cooldown` because another instance saw this
    /// deployment fail (a shared breaker hint). An open or half-open breaker is
    /// left as it is, and this breaker's own back-off does not grow: after the
    /// cool-down it probes the deployment itself, as after a local trip.
    pub fn hint_open(&self, cooldown: Duration) -> Option<Transition> {
        let mut g = self.lock();
        if g.state != State::Closed || cooldown.is_zero() {
            return None;
        }
        g.state = State::Open;
        g.open_until = Instant::now() + cooldown;
        g.consecutive = 0;
        g.window.clear();
        Some(Transition {
            from: State::Closed,
            to: State::Open,
            cooldown,
        })
    }

    /// Failure rate over the window (0 when empty) and the number of calls in it.
    pub fn error_rate(&self) -> (f64, usize) {
        let now = Instant::now();
        let mut g = self.lock();
        let window = self.settings.window;
        prune(&mut g.window, now, window);
        let n = g.window.len();
        let failed = g.window.iter().filter(|(_, f)| *f).count();
        (if n == 0 { 0.0 } else { failed as f64 / n as f64 }, n)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.lock().consecutive
    }

    /// Current cool-down (what the next open period lasts).
    pub fn cooldown(&self) -> Duration {
        self.lock().cooldown
    }
}

fn prune(w: &mut VecDeque<(Instant, bool)>, now: Instant, window: Duration) {
    while w
        .front()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > window)
    {
        w.pop_front();
    }
}

fn push(w: &mut VecDeque<(Instant, bool)>, now: Instant, failed: bool, window: Duration) {
    prune(w, now, window);
    if w.len() >= WINDOW_CAP {
        w.pop_front();
    }
    w.push_back((now, failed));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_calls: 10,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(20),
        }
    }

    fn fail(b: &Breaker) -> Option<Transition> {
        let (p, _) = b.try_acquire();
        b.record(p.expect("permit"), Outcome::Failure)
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_then_half_open_probe_closes() {
        let b = Breaker::new(settings());
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), State::Closed);
        let t = fail(&b).expect("transition");
        assert_eq!((t.from, t.to), (State::Closed, State::Open));
        assert_eq!(b.try_acquire().0, None, "open: calls are skipped");
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert_eq!(b.try_acquire().0, None, "still cooling down");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), State::HalfOpen);
        let (p, t) = b.try_acquire();
        assert_eq!(p, Some(Permit::Probe));
        assert_eq!(t.map(|t| t.to), Some(State::HalfOpen));
        assert_eq!(b.try_acquire().0, None, "exactly one probe at a time");
        let t = b.record(Permit::Probe, Outcome::Success).expect("closes");
        assert_eq!((t.from, t.to), (State::HalfOpen, State::Closed));
        assert_eq!(b.try_acquire().0, Some(Permit::Normal));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_with_doubled_capped_cooldown() {
        let b = Breaker::new(settings());
        for _ in 0..3 {
            fail(&b);
        }
        for want in [10u64, 20, 20] {
            tokio::time::advance(b.cooldown()).await;
            let (p, _) = b.try_acquire();
            assert_eq!(p, Some(Permit::Probe));
            let t = b.record(Permit::Probe, Outcome::Failure).expect("re-opens");
            assert_eq!(t.to, State::Open);
            assert_eq!(b.cooldown(), Duration::from_secs(want));
            tokio::time::advance(Duration::from_secs(want) - Duration::from_millis(1)).await;
            assert_eq!(b.try_acquire().0, None);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        let (p, _) = b.try_acquire();
        b.record(p.expect("probe"), Outcome::Success);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(
            b.cooldown(),
            Duration::from_secs(5),
            "cool-down reset after recovery"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_over_window_opens() {
        let b = Breaker::new(settings());
        // Alternate success/failure: never 3 in a row, but 50% over >= 10 calls.
        let mut opened = None;
        for i in 0..10 {
            let (p, _) = b.try_acquire();
            let out = if i % 2 == 0 {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            if let Some(t) = b.record(p.expect("permit"), out) {
                opened = Some((i, t.to));
            }
        }
        assert_eq!(opened, Some((9, State::Open)));
    }

    #[tokio::test(start_paused = true)]
    async fn window_forgets_old_calls() {
        let b = Breaker::new(settings());
        for _ in 0..2 {
            fail(&b);
        }
        let (p, _) = b.try_acquire();
        b.record(p.expect("p"), Outcome::Success);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(b.error_rate(), (0.0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_never_trip() {
        let b = Breaker::new(settings());
        for _ in 0..50 {
            let (p, _) = b.try_acquire();
            b.record(p.expect("permit"), Outcome::Neutral);
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_probe_frees_the_slot() {
        let b = Breaker::new(settings());
        for _ in 0..3 {
            fail(&b);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let (p, _) = b.try_acquire();
        assert_eq!(p, Some(Permit::Probe));
        b.record(Permit::Probe, Outcome::Abandoned);
        assert_eq!(b.try_acquire().0, Some(Permit::Probe), "another probe may go");
    }
}
