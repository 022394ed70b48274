//! Budgets: daily and monthly spend limits (global, per route, per key),
//! enforced without the check-then-spend race, plus daily pacing and alerts.
//!
//! Admission reserves the request's estimated maximum cost in every scope
//! that applies, atomically (one short critical section, never held across
//! an await): either every scope has room and all are reserved, or none is.
//! Each upstream attempt charges its real cost when its ledger row is written;
//! the reservation is released when the last holder (the handler, the stream
//! relay) drops it. So `spent + reserved` never passes a limit through
//! concurrency; only an answer costing more than its reservation can.
//!
//! In [`BudgetMode::Strict`] (the default) the reservation also bounds the
//! answer: admission computes, under the same lock, how many output tokens
//! the scopes' remaining room affords at the targets' output prices
//! ([`Budgets::reserve_output`]), the handler caps the request's
//! `max_tokens` (or the inbound format's field) at that, and exactly that is
//! reserved. In [`BudgetMode::Estimate`] the reservation is an estimate
//! (`max_tokens`, else `reserve_output_tokens`) and the answer is not capped.
//!
//! Periods follow the configured time zone. State is rebuilt from the ledger
//! at start ([`Budgets::seed`]), so a restart does not reset a day's spend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use tokio::sync::mpsc;

/// Milliseconds since the Unix epoch; tests drive time with [`Clock::manual`].
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        }))
    }

    /// A clock reading the shared cell; tests move time by storing into it.
    pub fn manual(now_ms: Arc<std::sync::atomic::AtomicI64>) -> Clock {
        Clock(Arc::new(move || {
            now_ms.load(std::sync::atomic::Ordering::Relaxed)
        }))
    }

    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Limits of one scope, in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub daily: Option<f64>,
    pub monthly: Option<f64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.daily.is_none() && self.monthly.is_none()
    }
}

/// What happens when a request does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnExceed {
    /// 429 `budget_exceeded`.
    #[default]
    Reject,
    /// Routed requests move to the cheapest tier; if even that does not fit, 429.
    Downgrade,
}

/// How a budget bounds an answer (`budgets.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BudgetMode {
    /// Cap each request's output tokens at what the remaining room affords
    /// and reserve exactly that: spend never passes a limit (see docs/reliability.md).
    #[default]
    Strict,
    /// Reserve `max_tokens` (else `reserve_output_tokens`) without capping the
    /// answer: an answer longer than its reservation can overshoot.
    Estimate,
}

/// One target's cost of a request: `fixed` USD (the prompt, the
/// per-request fee) plus `per_output` USD per output token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostLine {
    pub fixed: f64,
    pub per_output: f64,
}

impl CostLine {
    /// A request's cost at `price`: the prompt by the byte rule at the dearer
    /// of the input and cache-write prices plus the per-request fee, and the
    /// output price for every choice (`n`).
    pub fn of(
        price: &crate::accounting::pricing::Price,
        prompt: &crate::accounting::estimate::PromptInfo,
    ) -> CostLine {
        let input = prompt.approx_prompt_tokens() as f64;
        CostLine {
            fixed: input * price.input.max(price.cache_write.unwrap_or(price.input)) / 1e6
                + price.per_request,
            per_output: price.output * prompt.choices as f64 / 1e6,
        }
    }

    /// The cost with `n` output tokens.
    pub fn at(&self, n: u64) -> f64 {
        self.fixed + n as f64 * self.per_output
    }
}

/// What [`Budgets::reserve_output`] granted.
pub struct Granted {
    pub reservation: Reservation,
    /// Output tokens the request may produce (at most the wanted number).
    pub output_tokens: u64,
}

/// Validated `[budgets]` settings.
#[derive(Debug, Clone)]
pub struct BudgetSettings {
    pub timezone: Tz,
    pub global: Limits,
    pub routes: HashMap<String, Limits>,
    pub keys: HashMap<String, Limits>,
    /// Shadow calls of an experiment (`experiments.NAME.daily_budget`).
    pub shadows: HashMap<String, Limits>,
    pub pace_factor: f64,
    /// Fractions of a limit at which a soft alert fires, ascending.
    pub alerts: Vec<f64>,
    pub webhook: Option<String>,
    pub on_exceed: OnExceed,
    /// Output tokens reserved for a request that sets no max_tokens (in
    /// strict mode also the cap such a request is sent with).
    pub reserve_output_tokens: u32,
    pub mode: BudgetMode,
    /// Strict mode: a request whose room affords fewer output tokens than
    /// this (or than its own smaller `max_tokens`) is refused, not clamped.
    pub min_output_tokens: u32,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            timezone: Tz::UTC,
            global: Limits::default(),
            routes: HashMap::new(),
            keys: HashMap::new(),
            shadows: HashMap::new(),
            pace_factor: 1.5,
            alerts: vec![0.5, 0.8, 1.0],
            webhook: None,
            on_exceed: OnExceed::Reject,
            reserve_output_tokens: 4096,
            mode: BudgetMode::Strict,
            min_output_tokens: 16,
        }
    }
}

impl BudgetSettings {
    /// Whether any limit is configured (else budgets cost nothing per request).
    pub fn any(&self) -> bool {
        !self.global.is_empty()
            || self.routes.values().any(|l| !l.is_empty())
            || self.keys.values().any(|l| !l.is_empty())
            || self.shadows.values().any(|l| !l.is_empty())
    }

    /// The scopes a shadow call of experiment `name` is charged to: the
    /// global budget and the experiment's own, never a route or a client key.
    pub fn shadow_scopes(&self, name: &str) -> Vec<(Scope, Limits)> {
        let mut v = Vec::new();
        if !self.global.is_empty() {
            v.push((Scope::Global, self.global));
        }
        if let Some(l) = self.shadows.get(name).filter(|l| !l.is_empty()) {
            v.push((Scope::Shadow(name.to_string()), *l));
        }
        v
    }

    /// The scopes of one request that carry limits. A key's own budget
    /// (from its virtual key record) applies where the config names none.
    pub fn scopes(&self, route: Option<&str>, key: Option<(&str, Limits)>) -> Vec<(Scope, Limits)> {
        let mut v = Vec::new();
        if !self.global.is_empty() {
            v.push((Scope::Global, self.global));
        }
        if let Some(r) = route {
            if let Some(l) = self.routes.get(r).filter(|l| !l.is_empty()) {
                v.push((Scope::Route(r.to_string()), *l));
            }
        }
        if let Some((k, own)) = key {
            let l = self.keys.get(k).copied().unwrap_or(own);
            if !l.is_empty() {
                v.push((Scope::Key(k.to_string()), l));
            }
        }
        v
    }
}

/// Who a budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Global,
    Route(String),
    Key(String),
    /// Shadow calls of one experiment.
    Shadow(String),
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Route(_) => "route",
            Scope::Key(_) => "key",
            Scope::Shadow(_) => "shadow",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Scope::Global => "*",
            Scope::Route(n) | Scope::Key(n) | Scope::Shadow(n) => n,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Route(n) => write!(f, "route:{n}"),
            Scope::Key(n) => write!(f, "key:{n}"),
            Scope::Shadow(n) => write!(f, "shadow:{n}"),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Window {
    day_spent: f64,
    day_reserved: f64,
    month_spent: f64,
    month_reserved: f64,
    /// Alert thresholds already fired this period (bit i: alerts[i]).
    day_alerted: u32,
    month_alerted: u32,
}

#[derive(Debug)]
struct State {
    /// Day number (days since 1970-01-01 in the budget time zone) the windows belong to.
    day: i64,
    /// year * 12 + month0 of the windows.
    month: i64,
    /// The zone and [start, end) in Unix ms of `day`: while the clock stays
    /// inside, no calendar arithmetic is needed.
    tz: Tz,
    day_start_ms: i64,
    day_end_ms: i64,
    windows: HashMap<Scope, Window>,
}

impl State {
    /// Moves to the periods of `p`: windows of a past day (or month) start empty.
    fn roll(&mut self, tz: Tz, p: Periods) {
        if self.day != p.day {
            for w in self.windows.values_mut() {
                w.day_spent = 0.0;
                w.day_reserved = 0.0;
                w.day_alerted = 0;
            }
        }
        if self.month != p.month {
            for w in self.windows.values_mut() {
                w.month_spent = 0.0;
                w.month_reserved = 0.0;
                w.month_alerted = 0;
            }
        }
        self.day = p.day;
        self.month = p.month;
        self.tz = tz;
        self.day_start_ms = p.start_ms;
        self.day_end_ms = p.end_ms;
    }
}

/// A soft alert: a scope's spend crossed a configured fraction of its limit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Alert {
    pub scope: String,
    pub period: &'static str,
    pub threshold: f64,
    pub spent_usd: f64,
    pub limit_usd: f64,
}

/// Why a request was not admitted.
#[derive(Debug, Clone)]
pub struct Exceeded {
    pub scope: Scope,
    pub period: &'static str,
    pub limit: f64,
    pub used: f64,
    pub estimate: f64,
}

impl Exceeded {
    pub fn message(&self) -> String {
        format!(
            "The {} budget of {} (${:.4} per {}) is exhausted: ${:.4} spent or reserved, this request needs up to ${:.6}.",
            self.period_word(),
            self.scope,
            self.limit,
            if self.period == "day" { "day" } else { "month" },
            self.used,
            self.estimate
        )
    }

    fn period_word(&self) -> &'static str {
        if self.period == "day" {
            "daily"
        } else {
            "monthly"
        }
    }
}

/// One row of [`Budgets::snapshot`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScopeStatus {
    pub scope: String,
    pub kind: &'static str,
    pub name: String,
    pub daily_limit_usd: Option<f64>,
    pub daily_spent_usd: f64,
    pub daily_reserved_usd: f64,
    pub monthly_limit_usd: Option<f64>,
    pub monthly_spent_usd: f64,
    pub monthly_reserved_usd: f64,
    /// Whether spend runs ahead of the day (pacing moves low-priority tasks down a tier).
    pub pacing: bool,
}

/// Budget state shared by every request of this instance.
pub struct Budgets {
    clock: Clock,
    state: Mutex<State>,
    alerts: Option<mpsc::UnboundedSender<Alert>>,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Budgets")
    }
}

/// The shared (several-instance) half of a reservation: the same amount held in
/// a store every instance sees (`state::shared`, Redis). Charges and the release
/// go to it in order, charges first.
pub trait SharedHold: Send + Sync + std::fmt::Debug {
    fn charge(&self, cost: f64);
    fn release(&self, amount: f64);
}

/// A reservation held for one client request; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budgets: Arc<Budgets>,
    scopes: Vec<(Scope, Limits)>,
    amount: f64,
    day: i64,
    month: i64,
    alerts: Vec<f64>,
    shared: Option<Box<dyn SharedHold>>,
}

impl Reservation {
    /// Charges a real (or estimated) cost of one upstream attempt.
    pub fn charge(&self, cost: f64) {
        self.budgets.charge(&self.scopes, cost, &self.alerts);
        if let Some(s) = &self.shared {
            if cost.is_finite() && cost > 0.0 {
                s.charge(cost);
            }
        }
    }

    /// Whether the reservation is also held in the shared store.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    pub fn amount(&self) -> f64 {
        self.amount
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.release(self.amount);
        }
        let mut st = self.budgets.lock();
        if st.day != self.day && st.month != self.month {
            return; // both periods rolled over: nothing of ours is left in them
        }
        let same_day = st.day == self.day;
        let same_month = st.month == self.month;
        for (scope, _) in &self.scopes {
            if let Some(w) = st.windows.get_mut(scope) {
                if same_day {
                    w.day_reserved = (w.day_reserved - self.amount).max(0.0);
                }
                if same_month {
                    w.month_reserved = (w.month_reserved - self.amount).max(0.0);
                }
            }
        }
    }
}

/// Civil period numbers of an instant in a time zone.
/// The civil day and month of an instant in a time zone, and the day's
/// bounds in Unix ms (DST days are 23 or 25 hours long).
struct Periods {
    day: i64,
    month: i64,
    start_ms: i64,
    end_ms: i64,
}

fn periods(tz: Tz, now_ms: i64) -> Periods {
    let utc = DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let date = utc.with_timezone(&tz).date_naive();
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let start_ms = start_of(tz, date).unwrap_or(now_ms);
    Periods {
        day: (date - epoch).num_days(),
        month: i64::from(date.year()) * 12 + i64::from(date.month0()),
        start_ms,
        end_ms: date
            .succ_opt()
            .and_then(|d| start_of(tz, d))
            .unwrap_or(start_ms + 86_400_000),
    }
}

fn start_of(tz: Tz, date: NaiveDate) -> Option<i64> {
    let midnight = date.and_hms_opt(0, 0, 0)?;
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            // Midnight skipped by a DST change: the day starts an hour later.
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.timestamp_millis())
}

/// The bounds in Unix ms of the civil day (in `tz`) holding `now_ms`: [start, end).
pub fn day_bounds_ms(tz: Tz, now_ms: i64) -> (i64, i64) {
    let p = periods(tz, now_ms);
    (p.start_ms, p.end_ms)
}

/// Unix ms at which the current month (in `tz`) began; the ledger is read from there at start.
pub fn month_start_ms(tz: Tz, now_ms: i64) -> i64 {
    let utc = DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let date = utc.with_timezone(&tz).date_naive();
    NaiveDate::from_ymd_opt(date.year(), date.month(), 1)
        .and_then(|d| start_of(tz, d))
        .unwrap_or(now_ms)
}

/// The least room (limit - spent - reserved) over every limited period of
/// `scopes`; Err when one is already used up (an exhausted budget refuses
/// even a $0 request). `estimate` only fills the error.
fn room(st: &State, scopes: &[(Scope, Limits)], estimate: f64) -> Result<f64, Exceeded> {
    let mut least = f64::INFINITY;
    for (scope, limits) in scopes {
        let w = st.windows.get(scope).cloned().unwrap_or_default();
        for (period, limit, used) in [
            ("day", limits.daily, w.day_spent + w.day_reserved),
            ("month", limits.monthly, w.month_spent + w.month_reserved),
        ] {
            if let Some(limit) = limit {
                if used >= limit {
                    return Err(Exceeded {
                        scope: scope.clone(),
                        period,
                        limit,
                        used,
                        estimate,
                    });
                }
                least = least.min(limit - used);
            }
        }
    }
    Ok(least)
}

/// The refusal for a request needing `estimate`: the scope with the least room.
fn room_error(st: &State, scopes: &[(Scope, Limits)], estimate: f64) -> Exceeded {
    let mut worst: Option<Exceeded> = None;
    for (scope, limits) in scopes {
        let w = st.windows.get(scope).cloned().unwrap_or_default();
        for (period, limit, used) in [
            ("day", limits.daily, w.day_spent + w.day_reserved),
            ("month", limits.monthly, w.month_spent + w.month_reserved),
        ] {
            if let Some(limit) = limit {
                if worst.as_ref().is_none_or(|e| limit - used < e.limit - e.used) {
                    worst = Some(Exceeded {
                        scope: scope.clone(),
                        period,
                        limit,
                        used,
                        estimate,
                    });
                }
            }
        }
    }
    worst.unwrap_or(Exceeded {
        scope: Scope::Global,
        period: "day",
        limit: 0.0,
        used: 0.0,
        estimate,
    })
}

impl Budgets {
    pub fn new(clock: Clock, tz: Tz, alerts: Option<mpsc::UnboundedSender<Alert>>) -> Arc<Budgets> {
        let p = periods(tz, clock.now_ms());
        Arc::new(Budgets {
            clock,
            state: Mutex::new(State {
                day: p.day,
                month: p.month,
                tz,
                day_start_ms: p.start_ms,
                day_end_ms: p.end_ms,
                windows: HashMap::new(),
            }),
            alerts,
        })
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the sums half-updated
        // in a way worse than losing one request's accounting: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the state, rolling the windows over when the day or month changed.
    fn current(&self, tz: Tz) -> (MutexGuard<'_, State>, f64) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if st.tz != tz || now < st.day_start_ms || now >= st.day_end_ms {
            st.roll(tz, periods(tz, now));
        }
        let frac = ((now - st.day_start_ms) as f64 / (st.day_end_ms - st.day_start_ms).max(1) as f64)
            .clamp(0.0, 1.0);
        (st, frac)
    }

    /// Adds spend found in the ledger (at start): `ts_ms` decides whether it
    /// counts for today as well as for this month.
    pub fn seed(&self, settings: &BudgetSettings, scope: Scope, ts_ms: i64, cost: f64) {
        let Periods { day, month, .. } = periods(settings.timezone, ts_ms);
        let (mut st, _) = self.current(settings.timezone);
        let (cur_day, cur_month) = (st.day, st.month);
        let w = st.windows.entry(scope).or_default();
        if month == cur_month {
            w.month_spent += cost;
            if day == cur_day {
                w.day_spent += cost;
            }
        }
    }

    /// Reserves `estimate` USD in every scope, or none if one lacks room.
    pub fn reserve(
        self: &Arc<Self>,
        settings: &BudgetSettings,
        scopes: Vec<(Scope, Limits)>,
        estimate: f64,
    ) -> Result<Reservation, Exceeded> {
        let estimate = estimate.max(0.0);
        let (st, _) = self.current(settings.timezone);
        let room = room(&st, &scopes, estimate)?;
        if estimate > room + 1e-12 {
            return Err(room_error(&st, &scopes, estimate));
        }
        Ok(self.hold(st, settings, scopes, estimate))
    }

    /// Strict admission: under one lock, the largest `n <= wanted` output
    /// tokens such that the costliest target's `fixed + n * per_output` fits
    /// the room left in every scope, reserved in every scope. Refused when
    /// `n` would be below `min(wanted, min_output)`. Without priced lines
    /// nothing is reserved and `wanted` is granted.
    pub fn reserve_output(
        self: &Arc<Self>,
        settings: &BudgetSettings,
        scopes: Vec<(Scope, Limits)>,
        lines: &[CostLine],
        wanted: u64,
        min_output: u64,
    ) -> Result<Granted, Exceeded> {
        let need = wanted.min(min_output.max(1));
        let worst = |n: u64| lines.iter().map(|l| l.at(n).max(0.0)).fold(0.0, f64::max);
        let (st, _) = self.current(settings.timezone);
        let room = room(&st, &scopes, worst(need))?;
        let mut n = wanted;
        for l in lines {
            let left = room - l.fixed.max(0.0);
            if left < 0.0 {
                return Err(room_error(&st, &scopes, worst(need)));
            }
            if l.per_output > 0.0 {
                // `as` saturates: a free-ish model with a large room affords u64::MAX.
                n = n.min((left / l.per_output).floor() as u64);
            }
        }
        // Float rounding can put n * price a hair above the room: step down.
        while n > 0 && worst(n) > room {
            n -= 1;
        }
        if n < need {
            return Err(room_error(&st, &scopes, worst(need)));
        }
        let amount = worst(n);
        let reservation = self.hold(st, settings, scopes, amount);
        Ok(Granted {
            reservation,
            output_tokens: n,
        })
    }

    /// Adds `amount` to every scope's reservations (the caller checked the room).
    fn hold(
        self: &Arc<Self>,
        mut st: MutexGuard<'_, State>,
        settings: &BudgetSettings,
        scopes: Vec<(Scope, Limits)>,
        amount: f64,
    ) -> Reservation {
        for (scope, _) in &scopes {
            let w = st.windows.entry(scope.clone()).or_default();
            w.day_reserved += amount;
            w.month_reserved += amount;
        }
        let (day, month) = (st.day, st.month);
        drop(st);
        Reservation {
            budgets: self.clone(),
            scopes,
            amount,
            day,
            month,
            alerts: settings.alerts.clone(),
            shared: None,
        }
    }

    /// The current day and month numbers in `tz` (the shared store's period keys).
    pub fn period_numbers(&self, tz: Tz) -> (i64, i64) {
        let (st, _) = self.current(tz);
        (st.day, st.month)
    }

    /// Records a reservation the shared store admitted (it checked the room
    /// across every instance): held here too, unconditionally, so this
    /// instance's pacing, snapshots and fail-open fallback see it.
    pub fn hold_shared(
        self: &Arc<Self>,
        settings: &BudgetSettings,
        scopes: Vec<(Scope, Limits)>,
        amount: f64,
        shared: Box<dyn SharedHold>,
    ) -> Reservation {
        let (st, _) = self.current(settings.timezone);
        let mut r = self.hold(st, settings, scopes, amount.max(0.0));
        r.shared = Some(shared);
        r
    }

    /// This period's spend of every scope this instance knows: (scope, day, month).
    pub fn spent_windows(&self, tz: Tz) -> Vec<(Scope, f64, f64)> {
        let (st, _) = self.current(tz);
        st.windows
            .iter()
            .map(|(s, w)| (s.clone(), w.day_spent, w.month_spent))
            .collect()
    }

    /// Raises this instance's view of a scope's spend to what every instance
    /// spent (read from the shared store), for pacing and snapshots; admission
    /// itself is decided by the shared store.
    pub fn observe_shared_spend(&self, tz: Tz, scope: &Scope, day: Option<f64>, month: Option<f64>) {
        let (mut st, _) = self.current(tz);
        let w = st.windows.entry(scope.clone()).or_default();
        if let Some(d) = day {
            w.day_spent = w.day_spent.max(d);
        }
        if let Some(m) = month {
            w.month_spent = w.month_spent.max(m);
        }
    }

    fn charge(&self, scopes: &[(Scope, Limits)], cost: f64, alerts: &[f64]) {
        if cost.is_nan() || cost <= 0.0 {
            return;
        }
        // The time zone only matters for rollover, which `reserve` already did for this period.
        let mut fired = Vec::new();
        {
            let mut st = self.lock();
            for (scope, limits) in scopes {
                let w = st.windows.entry(scope.clone()).or_default();
                w.day_spent += cost;
                w.month_spent += cost;
                for (period, limit, spent, mask) in [
                    ("day", limits.daily, w.day_spent, &mut w.day_alerted),
                    ("month", limits.monthly, w.month_spent, &mut w.month_alerted),
                ] {
                    let Some(limit) = limit.filter(|l| *l > 0.0) else {
                        continue;
                    };
                    for (i, t) in alerts.iter().enumerate().take(32) {
                        if spent >= t * limit && *mask & (1 << i) == 0 {
                            *mask |= 1 << i;
                            fired.push(Alert {
                                scope: scope.to_string(),
                                period,
                                threshold: *t,
                                spent_usd: spent,
                                limit_usd: limit,
                            });
                        }
                    }
                }
            }
        }
        if let Some(tx) = &self.alerts {
            for a in fired {
                let _ = tx.send(a);
            }
        }
    }

    /// How far spend runs ahead of the day: the largest
    /// `((spent + reserved) / limit) / (pace_factor x elapsed fraction)` over the
    /// daily-limited scopes (above 1: ahead of pace; 0 without a daily limit).
    /// Predictor routes divide their threshold by it, so the share of strong
    /// calls falls smoothly as spend runs ahead instead of a whole tier at once.
    pub fn pace_ratio(&self, settings: &BudgetSettings, scopes: &[(Scope, Limits)]) -> f64 {
        let (st, frac) = self.current(settings.timezone);
        let allowed = (settings.pace_factor * frac).max(1e-6);
        scopes
            .iter()
            .filter_map(|(scope, l)| {
                let (Some(limit), Some(w)) = (l.daily, st.windows.get(scope)) else {
                    return None;
                };
                (limit > 0.0).then(|| (w.day_spent + w.day_reserved) / limit / allowed)
            })
            .fold(0.0, f64::max)
    }

    /// Whether spend runs ahead of the day in any daily-limited scope:
    /// (spent + reserved) / limit > pace_factor x elapsed fraction of the day.
    pub fn pacing(&self, settings: &BudgetSettings, scopes: &[(Scope, Limits)]) -> bool {
        let (st, frac) = self.current(settings.timezone);
        scopes.iter().any(|(scope, l)| {
            let (Some(limit), Some(w)) = (l.daily, st.windows.get(scope)) else {
                return false;
            };
            limit > 0.0 && (w.day_spent + w.day_reserved) / limit > settings.pace_factor * frac
        })
    }

    /// Every scope with a limit (configured, or seen with a key budget), for /admin/spend.
    pub fn snapshot(
        &self,
        settings: &BudgetSettings,
        key_limits: &HashMap<String, Limits>,
    ) -> Vec<ScopeStatus> {
        let (st, frac) = self.current(settings.timezone);
        let mut scopes: Vec<(Scope, Limits)> = Vec::new();
        if !settings.global.is_empty() {
            scopes.push((Scope::Global, settings.global));
        }
        for (r, l) in &settings.routes {
            scopes.push((Scope::Route(r.clone()), *l));
        }
        for (e, l) in &settings.shadows {
            scopes.push((Scope::Shadow(e.clone()), *l));
        }
        let mut keys: HashMap<&String, Limits> = key_limits.iter().map(|(k, l)| (k, *l)).collect();
        for (k, l) in &settings.keys {
            keys.insert(k, *l);
        }
        for (k, l) in keys {
            if !l.is_empty() {
                scopes.push((Scope::Key(k.clone()), l));
            }
        }
        scopes.sort_by(|a, b| a.0.cmp(&b.0));
        scopes
            .into_iter()
            .map(|(scope, l)| {
                let w = st.windows.get(&scope).cloned().unwrap_or_default();
                let pacing = l.daily.is_some_and(|d| {
                    d > 0.0 && (w.day_spent + w.day_reserved) / d > settings.pace_factor * frac
                });
                ScopeStatus {
                    scope: scope.to_string(),
                    kind: scope.kind(),
                    name: scope.name().to_string(),
                    daily_limit_usd: l.daily,
                    daily_spent_usd: w.day_spent,
                    daily_reserved_usd: w.day_reserved,
                    monthly_limit_usd: l.monthly,
                    monthly_spent_usd: w.month_spent,
                    monthly_reserved_usd: w.month_reserved,
                    pacing,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .unwrap_or(0)
    }

    fn setup(daily: f64, start: &str) -> (Arc<Budgets>, BudgetSettings, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(ms(start)));
        let settings = BudgetSettings {
            global: Limits {
                daily: Some(daily),
                monthly: None,
            },
            ..Default::default()
        };
        let b = Budgets::new(Clock::manual(now.clone()), settings.timezone, None);
        (b, settings, now)
    }

    #[test]
    fn reserve_then_charge_then_release() {
        let (b, s, _) = setup(1.0, "2026-11-27T10:00:00Z");
        let scopes = s.scopes(None, None);
        let r = b.reserve(&s, scopes.clone(), 0.6).expect("fits");
        assert!(
            b.reserve(&s, scopes.clone(), 0.6).is_err(),
            "0.6 reserved + 0.6 > 1.0"
        );
        r.charge(0.2);
        drop(r);
        // 0.2 spent, nothing reserved: 0.6 fits, 0.9 does not.
        assert!(b.reserve(&s, scopes.clone(), 0.9).is_err());
        let r2 = b.reserve(&s, scopes, 0.6).expect("fits");
        assert!((r2.amount() - 0.6).abs() < 1e-12);
    }

    #[test]
    fn day_boundary_in_time_zone() {
        let (b, mut s, now) = setup(1.0, "2026-11-27T22:30:00Z");
        s.timezone = "America/New_York".parse().expect("tz");
        let scopes = s.scopes(None, None);
        let r = b.reserve(&s, scopes.clone(), 0.9).expect("fits");
        r.charge(0.9);
        drop(r);
        assert!(b.reserve(&s, scopes.clone(), 0.5).is_err());
        // 04:59 UTC is still Nov 27 in New York (UTC-5): same day.
        now.store(ms("2026-11-28T04:59:00Z"), Ordering::Relaxed);
        assert!(b.reserve(&s, scopes.clone(), 0.5).is_err());
        // 05:00 UTC is midnight in New York: a new day.
        now.store(ms("2026-11-28T05:00:00Z"), Ordering::Relaxed);
        assert!(b.reserve(&s, scopes, 0.5).is_ok());
    }

    #[test]
    fn pacing_follows_the_clock() {
        let (b, s, now) = setup(10.0, "2026-11-27T06:00:00Z");
        let scopes = s.scopes(None, None);
        // 06:00 UTC: a quarter of the day gone; pacing above 1.5 x 0.25 = 37.5% spent.
        let r = b.reserve(&s, scopes.clone(), 3.7).expect("fits");
        r.charge(3.7);
        drop(r);
        assert!(
            !b.pacing(&s, &scopes),
            "37% spent at 25% of the day is within pace"
        );
        let r = b.reserve(&s, scopes.clone(), 0.1).expect("fits");
        r.charge(0.1);
        drop(r);
        assert!(b.pacing(&s, &scopes), "38% spent at 25% of the day runs ahead");
        // Two hours later (1/3 of the day), the same spend is within pace again.
        now.store(ms("2026-11-27T08:00:00Z"), Ordering::Relaxed);
        assert!(!b.pacing(&s, &scopes));
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let (b, s, _) = setup(1.0, "2026-11-27T12:00:00Z");
        let scopes = s.scopes(None, None);
        let admitted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|t| {
            for _ in 0..8 {
                t.spawn(|| {
                    for _ in 0..100 {
                        if let Ok(r) = b.reserve(&s, scopes.clone(), 0.01) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            r.charge(0.01);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 100);
        let snap = b.snapshot(&s, &HashMap::new());
        assert!(snap[0].daily_spent_usd <= 1.0 + 1e-9);
    }

    #[test]
    fn strict_reservations_cap_the_output_at_the_room() {
        let (b, s, _) = setup(1.0, "2026-11-27T12:00:00Z");
        let scopes = s.scopes(None, None);
        // $0.10 fixed, $0.01 per output token: 90 tokens fit in $1.
        let line = [CostLine {
            fixed: 0.1,
            per_output: 0.01,
        }];
        let g = b.reserve_output(&s, scopes.clone(), &line, 50, 16).expect("fits");
        assert_eq!(g.output_tokens, 50, "what was asked, when it fits");
        assert!((g.reservation.amount() - 0.6).abs() < 1e-12);
        // $0.40 left: 30 tokens, not the 1000 asked.
        let g2 = b
            .reserve_output(&s, scopes.clone(), &line, 1000, 16)
            .expect("clamped");
        assert_eq!(g2.output_tokens, 30);
        // Nothing left: below the minimum is a refusal.
        assert!(b.reserve_output(&s, scopes.clone(), &line, 1000, 16).is_err());
        drop(g2);
        // The dearest of several targets decides.
        let lines = [
            line[0],
            CostLine {
                fixed: 0.0,
                per_output: 0.02,
            },
        ];
        let g3 = b
            .reserve_output(&s, scopes.clone(), &lines, u64::MAX, 1)
            .expect("fits");
        assert_eq!(g3.output_tokens, 20);
        assert!(g3.reservation.amount() <= 0.4 + 1e-12);
        // A request asking for fewer than the minimum gets what it asked, if it fits.
        drop(g3);
        drop(g);
        let g4 = b.reserve_output(&s, scopes, &line, 5, 16).expect("fits");
        assert_eq!(g4.output_tokens, 5);
    }

    #[test]
    fn concurrent_strict_reservations_never_exceed_the_limit() {
        let (b, s, _) = setup(1.0, "2026-11-27T12:00:00Z");
        let scopes = s.scopes(None, None);
        let line = [CostLine {
            fixed: 0.001,
            per_output: 0.0001,
        }];
        let reserved = Mutex::new(Vec::new());
        std::thread::scope(|t| {
            for _ in 0..8 {
                t.spawn(|| {
                    for _ in 0..200 {
                        if let Ok(g) = b.reserve_output(&s, scopes.clone(), &line, 100, 16) {
                            reserved.lock().expect("lock").push(g);
                        }
                    }
                });
            }
        });
        let held = reserved.into_inner().expect("lock");
        let total: f64 = held.iter().map(|g| g.reservation.amount()).sum();
        assert!(total <= 1.0 + 1e-9, "{total}");
        assert!(total > 1.0 - (0.001 + 16.0 * 0.0001), "the room is used: {total}");
    }

    #[test]
    fn alerts_fire_once_per_threshold() {
        let now = Arc::new(AtomicI64::new(ms("2026-11-27T12:00:00Z")));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let s = BudgetSettings {
            global: Limits {
                daily: Some(1.0),
                monthly: Some(10.0),
            },
            ..Default::default()
        };
        let b = Budgets::new(Clock::manual(now), s.timezone, Some(tx));
        let scopes = s.scopes(None, None);
        for _ in 0..6 {
            let r = b.reserve(&s, scopes.clone(), 0.1).expect("fits");
            r.charge(0.1);
        }
        let mut got = Vec::new();
        while let Ok(a) = rx.try_recv() {
            got.push((a.period, a.threshold));
        }
        assert_eq!(got, vec![("day", 0.5)]);
    }

    #[test]
    fn seed_counts_today_and_this_month() {
        let (b, mut s, _) = setup(1.0, "2026-11-27T12:00:00Z");
        s.global.monthly = Some(5.0);
        b.seed(&s, Scope::Global, ms("2026-11-27T01:00:00Z"), 0.5);
        b.seed(&s, Scope::Global, ms("2026-11-02T01:00:00Z"), 4.0);
        b.seed(&s, Scope::Global, ms("2026-10-30T01:00:00Z"), 100.0);
        let snap = b.snapshot(&s, &HashMap::new());
        assert!((snap[0].daily_spent_usd - 0.5).abs() < 1e-9);
        assert!((snap[0].monthly_spent_usd - 4.5).abs() < 1e-9);
        assert_eq!(
            month_start_ms(s.timezone, ms("2026-11-27T12:00:00Z")),
            ms("2026-11-01T00:00:00Z")
        );
    }
}
