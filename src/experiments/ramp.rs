//! The automatic ramp: a split experiment's candidate share moves through
//! `ramp.steps` (e.g. 10% -> 25% -> 50% -> 100%), one step per
//! `every_secs` while the step's figures stay within the thresholds, and
//! drops to 0 (the experiment paused) on a breach.
//!
//! [`evaluate`] is the pure decision; [`tick`] gathers the figures since the
//! step began from the ledger, applies the decision to the live state and
//! logs (and stores) every step. A background task per runtime calls `tick`.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::live::{next, Live, RampState, Snapshot};
use super::report::{self, ArmReport};
use crate::config::experiments::{Ramp, CONTROL};
use crate::state::AppState;

/// How often the ramp task looks at the figures (breaches roll back within this).
pub const TICK: Duration = Duration::from_secs(5);

/// What the figures of the current step say.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Stay at this step (why, for the admin API).
    Hold { reason: String },
    /// Move on to step `to`.
    Advance { to: usize, reason: String },
    /// The last step passed: stay there.
    Complete { reason: String },
    /// A threshold was breached: back to share 0, paused.
    Rollback { reason: String },
}

/// The figures one evaluation looks at: one arm's since the step began.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArmStep {
    pub requests: u64,
    pub errors: u64,
    pub feedback_n: u64,
    pub feedback_mean: Option<f64>,
}

impl From<&ArmReport> for ArmStep {
    fn from(a: &ArmReport) -> Self {
        ArmStep {
            requests: a.requests,
            errors: a.errors,
            feedback_n: a.feedback_count,
            feedback_mean: a.feedback_mean,
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Decides a ramp step. Breaches are checked as soon as the candidate has
/// `min_requests` requests (or `min_feedback_samples` scores) at this step;
/// advancing also needs `every` to have passed. `complete`: the last step
/// already passed (breaches still roll back).
pub fn evaluate(
    ramp: &Ramp,
    step: usize,
    elapsed_ms: i64,
    complete: bool,
    candidate: &ArmStep,
    control: &ArmStep,
) -> Decision {
    if candidate.requests >= ramp.min_requests.max(1) {
        let rate = candidate.errors as f64 / candidate.requests as f64;
        if rate > ramp.max_error_rate {
            return Decision::Rollback {
                reason: format!(
                    "error rate {} over {} requests exceeds max_error_rate {}",
                    pct(rate),
                    candidate.requests,
                    pct(ramp.max_error_rate)
                ),
            };
        }
    }
    if candidate.feedback_n >= ramp.min_feedback_samples {
        if let (Some(min), Some(mean)) = (ramp.min_feedback, candidate.feedback_mean) {
            if mean < min {
                return Decision::Rollback {
                    reason: format!(
                        "mean feedback {mean:.3} over {} scores is below min_feedback {min}",
                        candidate.feedback_n
                    ),
                };
            }
        }
        if let (Some(drop), Some(mean), Some(base)) = (
            ramp.max_feedback_drop,
            candidate.feedback_mean,
            control.feedback_mean,
        ) {
            if control.feedback_n >= ramp.min_feedback_samples && base - mean > drop {
                return Decision::Rollback {
                    reason: format!(
                        "mean feedback {mean:.3} is {:.3} below the control's {base:.3} (max_feedback_drop {drop})",
                        base - mean
                    ),
                };
            }
        }
    }
    if complete {
        return Decision::Hold {
            reason: "ramp complete; watching for breaches".into(),
        };
    }
    let every = ramp.every.as_millis() as i64;
    if elapsed_ms < every {
        return Decision::Hold {
            reason: format!(
                "step {} of {}: {}s of {}s elapsed",
                step + 1,
                ramp.steps.len(),
                elapsed_ms.max(0) / 1000,
                every / 1000
            ),
        };
    }
    if candidate.requests < ramp.min_requests {
        return Decision::Hold {
            reason: format!(
                "step {} of {}: {} of min_requests {} candidate requests",
                step + 1,
                ramp.steps.len(),
                candidate.requests,
                ramp.min_requests
            ),
        };
    }
    let rate = if candidate.requests > 0 {
        candidate.errors as f64 / candidate.requests as f64
    } else {
        0.0
    };
    let why = format!(
        "{} candidate requests, error rate {}{}",
        candidate.requests,
        pct(rate),
        candidate.feedback_mean.map_or_else(String::new, |m| format!(
            ", mean feedback {m:.3} (n={})",
            candidate.feedback_n
        ))
    );
    if step + 1 < ramp.steps.len() {
        Decision::Advance {
            to: step + 1,
            reason: why,
        }
    } else {
        Decision::Complete { reason: why }
    }
}

/// Evaluates every ramped experiment of the current runtime once.
pub async fn tick(st: &AppState) {
    let rt = st.rt();
    for live in rt.experiments.iter().filter(|l| l.settings.ramp.is_some()) {
        if let Err(e) = tick_one(st, live).await {
            tracing::warn!(experiment = %live.name, "ramp evaluation failed: {e}");
        }
    }
}

async fn tick_one(st: &AppState, live: &Arc<Live>) -> Result<(), String> {
    let Some(ramp) = &live.settings.ramp else {
        return Ok(());
    };
    let Some(mut snap) = live.cell.ramp_snapshot() else {
        return Ok(());
    };
    // With shared state every instance follows one position (Redis, per version
    // of the ramp): take the shared one, or publish ours if there is none yet.
    let shared = st.shared.as_ref().filter(|s| s.is_up());
    let mut version = None;
    if let Some(sh) = shared {
        match sh.ramp_read(&live.name, &snap.fingerprint).await {
            Some(Some(r)) => {
                let to = Snapshot {
                    fingerprint: snap.fingerprint.clone(),
                    step: r.step,
                    step_started_ms: r.step_started_ms,
                    paused: r.paused,
                    complete: r.complete,
                };
                if let Some(row) = live.cell.follow(&to, ramp) {
                    record(st, &live.name, &row).await;
                }
                snap = to;
                version = Some(r.version);
            }
            Some(None) => {
                let mine = shared_ramp(&snap, 0);
                if sh.ramp_write(&live.name, &snap.fingerprint, Some(0), &mine).await != Some(true) {
                    return Ok(()); // another instance was first: follow it next time
                }
                version = Some(1);
            }
            None => {} // Redis went away: this instance's own ramp until it is back
        }
    }
    if snap.paused {
        return Ok(());
    }
    let now = st.budgets.clock().now_ms();
    let (rows, feedback) = report::load_from(
        st.ledger_pg.as_ref(),
        &st.ledger_path,
        &live.name,
        Some(snap.step_started_ms),
        None,
    )
    .await?;
    let arms = report::figures(&rows, &feedback);
    let cand_name = live.settings.candidates.first().map_or("", |c| c.model.as_str());
    let arm = |name: &str| {
        arms.iter()
            .find(|a| a.arm == name && !a.shadow)
            .map(ArmStep::from)
            .unwrap_or_default()
    };
    let decision = evaluate(
        ramp,
        snap.step,
        now - snap.step_started_ms,
        snap.complete,
        &arm(cand_name),
        &arm(CONTROL),
    );
    // A move goes to Redis first, and only if nobody moved the ramp meanwhile.
    if let (Some(sh), Some(v), Some((to, _, _))) = (shared, version, next(&snap, &decision, ramp, now)) {
        if sh
            .ramp_write(&live.name, &snap.fingerprint, Some(v), &shared_ramp(&to, v))
            .await
            != Some(true)
        {
            return Ok(());
        }
    }
    let event = live.cell.apply(&snap, &decision, ramp, now);
    live.cell.set_last_decision(decision);
    if let Some(row) = event {
        record(st, &live.name, &row).await;
    }
    Ok(())
}

fn shared_ramp(s: &Snapshot, version: u64) -> crate::state::shared::SharedRamp {
    crate::state::shared::SharedRamp {
        version,
        step: s.step,
        step_started_ms: s.step_started_ms,
        paused: s.paused,
        complete: s.complete,
    }
}

/// Logs a ramp step and stores it in the local ramp log (restored at start).
async fn record(st: &AppState, name: &str, row: &super::store::RampRow) {
    super::live::log_ramp(row);
    if let Err(e) = super::store::insert_ramp(&st.ledger_path, row).await {
        tracing::warn!(experiment = %name, "cannot store the ramp step: {e}");
    }
}

/// After a reset through the admin API: the shared position restarts too, so
/// every instance follows at its next evaluation.
pub async fn publish_reset(st: &AppState, live: &Live) {
    let (Some(sh), Some(snap)) = (
        st.shared.as_ref().filter(|s| s.is_up()),
        live.cell.ramp_snapshot(),
    ) else {
        return;
    };
    if sh
        .ramp_write(&live.name, &snap.fingerprint, None, &shared_ramp(&snap, 0))
        .await
        .is_none()
    {
        tracing::warn!(experiment = %live.name, "the reset could not reach Redis: other instances keep their ramp position");
    }
}

/// Ramp state as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RampView {
    pub steps: Vec<f64>,
    pub step: usize,
    pub share: f64,
    pub paused: bool,
    pub complete: bool,
    pub step_started_ms: i64,
    pub every_secs: u64,
    pub last_decision: Option<Decision>,
    pub history: Vec<super::store::RampRow>,
}

impl RampView {
    pub fn of(ramp: &Ramp, s: &RampState, last: Option<Decision>) -> RampView {
        RampView {
            steps: ramp.steps.clone(),
            step: s.step,
            share: s.share(ramp),
            paused: s.paused,
            complete: s.complete,
            step_started_ms: s.step_started_ms,
            every_secs: ramp.every.as_secs(),
            last_decision: last,
            history: s.history.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Ramp {
        Ramp {
            steps: vec![0.1, 0.25, 0.5, 1.0],
            every: Duration::from_secs(3600),
            min_requests: 100,
            max_error_rate: 0.05,
            min_feedback: Some(0.5),
            max_feedback_drop: Some(0.1),
            min_feedback_samples: 20,
        }
    }

    fn arm(requests: u64, errors: u64, fb: Option<(u64, f64)>) -> ArmStep {
        ArmStep {
            requests,
            errors,
            feedback_n: fb.map_or(0, |f| f.0),
            feedback_mean: fb.map(|f| f.1),
        }
    }

    #[test]
    fn experiment_ramp_decisions() {
        let r = ramp();
        let hour = 3_600_000;
        let ctl = arm(1000, 5, Some((200, 0.8)));
        // Too early, too few: hold.
        assert!(matches!(
            evaluate(&r, 0, hour - 1, false, &arm(500, 0, None), &ctl),
            Decision::Hold { .. }
        ));
        assert!(matches!(
            evaluate(&r, 0, hour, false, &arm(99, 0, None), &ctl),
            Decision::Hold { .. }
        ));
        // Time up, enough requests, healthy: advance; at the last step: complete.
        assert!(matches!(
            evaluate(&r, 0, hour, false, &arm(100, 5, None), &ctl),
            Decision::Advance { to: 1, .. }
        ));
        assert!(matches!(
            evaluate(&r, 3, hour, false, &arm(100, 0, None), &ctl),
            Decision::Complete { .. }
        ));
        assert!(matches!(
            evaluate(&r, 3, hour * 9, true, &arm(100, 0, None), &ctl),
            Decision::Hold { .. }
        ));
        // Error rate above 5%: roll back at once, even before the step's time is up or after completion.
        let d = evaluate(&r, 1, 10, false, &arm(100, 6, None), &ctl);
        assert!(
            matches!(&d, Decision::Rollback { reason } if reason.contains("6.0%")),
            "{d:?}"
        );
        assert!(matches!(
            evaluate(&r, 3, 10, true, &arm(100, 6, None), &ctl),
            Decision::Rollback { .. }
        ));
        // ... but not on a handful of requests.
        assert!(matches!(
            evaluate(&r, 1, 10, false, &arm(10, 6, None), &ctl),
            Decision::Hold { .. }
        ));
        // Feedback below the floor, or too far below the control's.
        assert!(matches!(
            evaluate(&r, 0, 10, false, &arm(5, 0, Some((20, 0.4))), &ctl),
            Decision::Rollback { .. }
        ));
        assert!(matches!(
            evaluate(&r, 0, 10, false, &arm(5, 0, Some((20, 0.65))), &ctl),
            Decision::Rollback { .. }
        ));
        assert!(matches!(
            evaluate(&r, 0, 10, false, &arm(5, 0, Some((20, 0.75))), &ctl),
            Decision::Hold { .. }
        ));
        // Too few scores: the feedback rules wait.
        assert!(matches!(
            evaluate(&r, 0, 10, false, &arm(5, 0, Some((19, 0.1))), &ctl),
            Decision::Hold { .. }
        ));
    }
}
