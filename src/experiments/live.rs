//! Live experiment state: what a request needs to pick an arm, and what
//! outlives a config reload (ramp position, shadow limits, counters).
//!
//! [`Experiments`] (in `AppState`) keeps one [`Cell`] per experiment name
//! for the life of the process; each runtime binds its configured, enabled
//! experiments to their cells as [`Live`] entries. A request reads a
//! ramped share with one atomic load.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use http::HeaderValue;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::ramp::Decision;
use super::store::RampRow;
use crate::accounting::ledger::ExperimentTag;
use crate::config::experiments::{Experiment, Mode, Ramp, Scope, StickyBy, CONTROL};
use crate::config::Config;

/// Ramp log lines kept in memory per experiment (all are in the ledger file).
const HISTORY: usize = 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a ramp stands.
#[derive(Debug, Clone, PartialEq)]
pub struct RampState {
    /// The ramp it belongs to (`Experiment::ramp_fingerprint`).
    pub fingerprint: String,
    pub step: usize,
    pub step_started_ms: i64,
    /// Rolled back: share 0 until reset or a changed ramp.
    pub paused: bool,
    /// The last step passed.
    pub complete: bool,
    pub history: VecDeque<RampRow>,
}

impl RampState {
    /// The candidate's share now.
    pub fn share(&self, ramp: &Ramp) -> f64 {
        if self.paused {
            return 0.0;
        }
        ramp.steps
            .get(self.step.min(ramp.steps.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    }
}

/// A copy of the ramp position an evaluation started from.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub fingerprint: String,
    pub step: usize,
    pub step_started_ms: i64,
    pub paused: bool,
    pub complete: bool,
}

/// Where a decision made from `snap` leads: the new position, the log action
/// and its reason; None when it changes nothing.
pub fn next(
    snap: &Snapshot,
    d: &Decision,
    ramp: &Ramp,
    now_ms: i64,
) -> Option<(Snapshot, &'static str, String)> {
    let mut to = snap.clone();
    let (action, reason) = match d {
        Decision::Hold { .. } => return None,
        Decision::Advance { to: step, reason } => {
            to.step = (*step).min(ramp.steps.len().saturating_sub(1));
            to.step_started_ms = now_ms;
            ("advance", reason.clone())
        }
        Decision::Complete { reason } => {
            if snap.complete {
                return None;
            }
            to.complete = true;
            ("complete", reason.clone())
        }
        Decision::Rollback { reason } => {
            to.paused = true;
            to.step_started_ms = now_ms;
            ("rollback", reason.clone())
        }
    };
    Some((to, action, reason))
}

/// Shadow calls skipped, and why; and started.
#[derive(Debug, Default)]
pub struct Counters {
    pub shadow_started: AtomicU64,
    pub shadow_not_sampled: AtomicU64,
    pub shadow_busy: AtomicU64,
    pub shadow_over_budget: AtomicU64,
    pub shadow_unavailable: AtomicU64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CounterView {
    pub shadow_started: u64,
    pub shadow_not_sampled: u64,
    pub shadow_skipped_busy: u64,
    pub shadow_skipped_budget: u64,
    pub shadow_skipped_unavailable: u64,
}

impl Counters {
    pub fn view(&self) -> CounterView {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterView {
            shadow_started: g(&self.shadow_started),
            shadow_not_sampled: g(&self.shadow_not_sampled),
            shadow_skipped_busy: g(&self.shadow_busy),
            shadow_skipped_budget: g(&self.shadow_over_budget),
            shadow_skipped_unavailable: g(&self.shadow_unavailable),
        }
    }
}

/// Per-experiment state that survives reloads.
pub struct Cell {
    name: String,
    /// The ramped candidate share (f64 bits).
    share: AtomicU64,
    ramp: Mutex<Option<RampState>>,
    last_decision: Mutex<Option<Decision>>,
    /// (max_concurrency, its semaphore).
    shadow: Mutex<(u32, Arc<Semaphore>)>,
    pub counters: Counters,
}

impl Cell {
    fn new(name: &str) -> Cell {
        Cell {
            name: name.to_string(),
            share: AtomicU64::new(0f64.to_bits()),
            ramp: Mutex::new(None),
            last_decision: Mutex::new(None),
            shadow: Mutex::new((0, Arc::new(Semaphore::new(0)))),
            counters: Counters::default(),
        }
    }

    /// The ramped candidate share.
    pub fn share(&self) -> f64 {
        f64::from_bits(self.share.load(Ordering::Relaxed))
    }

    fn store_share(&self, s: f64) {
        self.share.store(s.to_bits(), Ordering::Relaxed);
    }

    pub fn ramp_state(&self) -> Option<RampState> {
        lock(&self.ramp).clone()
    }

    pub fn last_decision(&self) -> Option<Decision> {
        lock(&self.last_decision).clone()
    }

    pub fn set_last_decision(&self, d: Decision) {
        *lock(&self.last_decision) = Some(d);
    }

    pub fn ramp_snapshot(&self) -> Option<Snapshot> {
        lock(&self.ramp).as_ref().map(|s| Snapshot {
            fingerprint: s.fingerprint.clone(),
            step: s.step,
            step_started_ms: s.step_started_ms,
            paused: s.paused,
            complete: s.complete,
        })
    }

    fn row(&self, s: &RampState, ramp: &Ramp, ts_ms: i64, action: &str, reason: String) -> RampRow {
        RampRow {
            ts_ms,
            experiment: self.name.clone(),
            fingerprint: s.fingerprint.clone(),
            step: s.step,
            share: s.share(ramp),
            paused: s.paused,
            action: action.to_string(),
            reason,
        }
    }

    fn push(s: &mut RampState, row: &RampRow) {
        s.history.push_back(row.clone());
        while s.history.len() > HISTORY {
            s.history.pop_front();
        }
    }

    /// Applies a decision made from `snap`; None when it changes nothing
    /// (or the state moved on meanwhile). Returns the log line otherwise.
    pub fn apply(&self, snap: &Snapshot, d: &Decision, ramp: &Ramp, now_ms: i64) -> Option<RampRow> {
        let (to, action, reason) = next(snap, d, ramp, now_ms)?;
        let mut g = lock(&self.ramp);
        let s = g.as_mut()?;
        if s.fingerprint != snap.fingerprint || s.step != snap.step || s.paused != snap.paused {
            return None;
        }
        s.step = to.step;
        s.step_started_ms = to.step_started_ms;
        s.paused = to.paused;
        s.complete = to.complete;
        self.store_share(s.share(ramp));
        let row = self.row(s, ramp, now_ms, action, reason);
        Self::push(s, &row);
        Some(row)
    }

    /// Takes the ramp position another instance moved to (shared state): None
    /// when this instance is there already (or runs another version of the ramp).
    pub fn follow(&self, to: &Snapshot, ramp: &Ramp) -> Option<RampRow> {
        let mut g = lock(&self.ramp);
        let s = g.as_mut()?;
        let same = s.step == to.step
            && s.step_started_ms == to.step_started_ms
            && s.paused == to.paused
            && s.complete == to.complete;
        if s.fingerprint != to.fingerprint || same {
            return None;
        }
        s.step = to.step.min(ramp.steps.len().saturating_sub(1));
        s.step_started_ms = to.step_started_ms;
        s.paused = to.paused;
        s.complete = to.complete;
        self.store_share(s.share(ramp));
        let reason = "the ramp moved on another instance".to_string();
        let row = self.row(s, ramp, to.step_started_ms, "follow", reason);
        Self::push(s, &row);
        Some(row)
    }

    /// Restarts the ramp at its first step.
    pub fn reset(&self, ramp: &Ramp, fingerprint: &str, now_ms: i64, action: &str, reason: &str) -> RampRow {
        let mut g = lock(&self.ramp);
        let history = g.take().map(|s| s.history).unwrap_or_default();
        let s = g.insert(RampState {
            fingerprint: fingerprint.to_string(),
            step: 0,
            step_started_ms: now_ms,
            paused: false,
            complete: false,
            history,
        });
        self.store_share(s.share(ramp));
        let row = self.row(s, ramp, now_ms, action, reason.to_string());
        Self::push(s, &row);
        *lock(&self.last_decision) = None;
        row
    }

    fn semaphore(&self, max: u32) -> Arc<Semaphore> {
        let mut g = lock(&self.shadow);
        if g.0 != max {
            // Shadows in flight keep their permits on the old semaphore.
            *g = (max, Arc::new(Semaphore::new(max as usize)));
        }
        g.1.clone()
    }
}

/// Logs a ramp step at info.
pub fn log_ramp(row: &RampRow) {
    tracing::info!(
        experiment = %row.experiment,
        action = %row.action,
        step = row.step + 1,
        share = row.share,
        paused = row.paused,
        "experiment ramp {}: candidate share {:.0}% ({})",
        row.action,
        row.share * 100.0,
        row.reason
    );
}

/// Every experiment's [`Cell`], by name.
pub struct Experiments {
    cells: Mutex<HashMap<String, Arc<Cell>>>,
    pub ledger_path: PathBuf,
}

impl Experiments {
    /// Empty state; `log` (the stored ramp log, oldest first) restores ramp positions.
    pub fn new(ledger_path: PathBuf, log: Vec<RampRow>) -> Experiments {
        let mut cells: HashMap<String, Arc<Cell>> = HashMap::new();
        for row in log {
            let cell = cells
                .entry(row.experiment.clone())
                .or_insert_with(|| Arc::new(Cell::new(&row.experiment)));
            let mut g = lock(&cell.ramp);
            let history = g.take().map(|s| s.history).unwrap_or_default();
            let s = g.insert(RampState {
                fingerprint: row.fingerprint.clone(),
                step: row.step,
                step_started_ms: row.ts_ms,
                paused: row.paused,
                complete: row.action == "complete",
                history,
            });
            Cell::push(s, &row);
            cell.store_share(row.share);
        }
        Experiments {
            cells: Mutex::new(cells),
            ledger_path,
        }
    }

    pub fn cell(&self, name: &str) -> Option<Arc<Cell>> {
        lock(&self.cells).get(name).cloned()
    }

    /// The live experiments of `config` (enabled ones), bound to their
    /// cells; a new or changed ramp starts at its first step. Returns the
    /// ramp log lines this wrote (to log and store).
    pub fn bind(&self, config: &Config, now_ms: i64) -> (Vec<Arc<Live>>, Vec<RampRow>) {
        let mut out = Vec::new();
        let mut events = Vec::new();
        let mut cells = lock(&self.cells);
        for e in config.experiments.values().filter(|e| e.enabled) {
            let cell = cells
                .entry(e.name.clone())
                .or_insert_with(|| Arc::new(Cell::new(&e.name)))
                .clone();
            if let (Some(ramp), Some(fp)) = (&e.ramp, e.ramp_fingerprint()) {
                let known = cell.ramp_snapshot().map(|s| s.fingerprint);
                match known {
                    Some(k) if k == fp => {
                        if let Some(s) = lock(&cell.ramp).as_mut() {
                            s.step = s.step.min(ramp.steps.len().saturating_sub(1));
                            cell.store_share(s.share(ramp));
                        }
                    }
                    Some(_) => events.push(cell.reset(
                        ramp,
                        &fp,
                        now_ms,
                        "start",
                        "ramp or candidate changed: restarted",
                    )),
                    None => events.push(cell.reset(ramp, &fp, now_ms, "start", "ramp started")),
                }
            }
            let semaphore = cell.semaphore(e.max_concurrency);
            out.push(Arc::new(Live::new(e.clone(), cell, semaphore)));
        }
        (out, events)
    }
}

/// One experiment as a runtime serves it.
pub struct Live {
    pub name: Arc<str>,
    pub settings: Experiment,
    pub cell: Arc<Cell>,
    control: Arc<str>,
    candidates: Vec<Arc<str>>,
    control_label: Arc<str>,
    /// `NAME/ARM` values of x-switchyard-experiment: the control's, then each candidate's.
    headers: Vec<Option<HeaderValue>>,
    pub shadow_slots: Arc<Semaphore>,
}

impl Live {
    fn new(settings: Experiment, cell: Arc<Cell>, shadow_slots: Arc<Semaphore>) -> Live {
        let candidates: Vec<Arc<str>> = settings
            .candidates
            .iter()
            .map(|c| Arc::from(c.model.as_str()))
            .collect();
        let headers = std::iter::once(CONTROL)
            .chain(settings.candidates.iter().map(|c| c.model.as_str()))
            .map(|arm| HeaderValue::from_str(&format!("{}/{arm}", settings.name)).ok())
            .collect();
        Live {
            name: Arc::from(settings.name.as_str()),
            control: Arc::from(settings.control.as_str()),
            control_label: Arc::from(CONTROL),
            candidates,
            headers,
            settings,
            cell,
            shadow_slots,
        }
    }

    pub fn candidates(&self) -> &[Arc<str>] {
        &self.candidates
    }

    /// Each candidate's share now (the ramp's for a ramped experiment).
    pub fn shares(&self) -> Vec<f64> {
        if self.settings.ramp.is_some() {
            return vec![self.cell.share()];
        }
        self.settings.candidates.iter().map(|c| c.share).collect()
    }

    /// Routed traffic: route and task match, and the control would serve.
    pub fn matches_route(&self, route: &str, task: &str, proposed: &str) -> bool {
        match &self.settings.scope {
            Scope::Route { route: r, task: t } => {
                r == route && t.as_deref().is_none_or(|t| t == task) && proposed == &*self.control
            }
            Scope::Model(_) => false,
        }
    }

    /// Explicit traffic: the request names the experiment's model (alias resolved).
    pub fn matches_model(&self, model: &str) -> bool {
        matches!(&self.settings.scope, Scope::Model(m) if m == model)
    }

    /// The arm for a stickiness key: None for the control, else the
    /// candidate's index. Shadow experiments serve every client with the control.
    pub fn arm_for(&self, key: &str) -> Option<usize> {
        if self.settings.mode == Mode::Shadow {
            return None;
        }
        super::assign::pick(super::assign::unit(&self.name, key), self.shares())
    }
}

/// A request's place in an experiment.
#[derive(Clone)]
pub struct Assigned {
    pub live: Arc<Live>,
    /// The candidate (index) serving the request; None: the control.
    pub arm: Option<usize>,
}

impl Assigned {
    /// The model serving the request.
    pub fn model(&self) -> &Arc<str> {
        match self.arm {
            Some(i) => &self.live.candidates[i],
            None => &self.live.control,
        }
    }

    pub fn label(&self) -> &Arc<str> {
        match self.arm {
            Some(i) => &self.live.candidates[i],
            None => &self.live.control_label,
        }
    }

    pub fn is_shadow_mode(&self) -> bool {
        self.live.settings.mode == Mode::Shadow
    }

    /// The x-switchyard-experiment value (split mode only: shadows change nothing the client sees).
    pub fn header(&self) -> Option<&HeaderValue> {
        if self.is_shadow_mode() {
            return None;
        }
        self.live.headers.get(self.arm.map_or(0, |i| i + 1))?.as_ref()
    }

    pub fn tag(&self) -> Box<ExperimentTag> {
        Box::new(ExperimentTag {
            name: self.live.name.clone(),
            arm: self.label().clone(),
            shadow: false,
            parent_request_id: None,
            output: None,
        })
    }
}

/// The stickiness key: the configured source first, then the session
/// header, the `user` field, the key name and finally the request id.
pub fn sticky_key<'a>(
    by: StickyBy,
    session: Option<&'a str>,
    user: Option<&'a str>,
    key: Option<&'a str>,
    request_id: &'a str,
) -> &'a str {
    let first = match by {
        StickyBy::Auto | StickyBy::Session => session,
        StickyBy::User => user,
        StickyBy::Key => key,
    };
    [first, session, user, key]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .unwrap_or(request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiment_sticky_key_order() {
        assert_eq!(
            sticky_key(StickyBy::Auto, Some("s"), Some("u"), Some("k"), "r"),
            "s"
        );
        assert_eq!(
            sticky_key(StickyBy::Auto, Some(""), Some("u"), Some("k"), "r"),
            "u"
        );
        assert_eq!(
            sticky_key(StickyBy::User, Some("s"), Some("u"), Some("k"), "r"),
            "u"
        );
        assert_eq!(
            sticky_key(StickyBy::Key, Some("s"), Some("u"), Some("k"), "r"),
            "k"
        );
        assert_eq!(sticky_key(StickyBy::Key, Some("s"), None, None, "r"), "s");
        assert_eq!(sticky_key(StickyBy::Auto, None, None, None, "r"), "r");
    }
}
