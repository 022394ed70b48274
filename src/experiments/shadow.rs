//! Shadow calls: a copy of a live request sent to each candidate in the
//! background. The client's response, status and latency never depend on
//! it: the copy is spawned (never awaited by the request), non-streaming,
//! and bounded by the sample rate, a per-experiment concurrency limit
//! (skipped when full), its own timeout, the candidate's breaker and
//! deployment limits, and the shadow budget. Shadow calls do not feed
//! breakers or latency balancing, and never count against the client key.
//!
//! Each call writes one ledger row: endpoint `shadow.chat.completions`,
//! request id `<live id>:shadow:<model>`, `shadow = 1`, the live request id
//! in `parent_request_id`, and optionally the truncated answer in `output`.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::Live;
use crate::accounting::budget::{BudgetMode, CostLine};
use crate::accounting::estimate::{OutputField, PromptInfo};
use crate::accounting::ledger::{ExperimentTag, LedgerEntry, RoutingRecord};
use crate::accounting::recorder::{Recorder, TokenSink};
use crate::api::chat::ChatRequest;
use crate::providers::ChatAnswer;
use crate::resilience::breaker::State;
use crate::state::AppState;
use crate::state::Runtime;

/// The ledger endpoint of shadow rows.
pub const ENDPOINT: &str = "shadow.chat.completions";

/// The live request a shadow copies.
pub struct Origin {
    pub request_id: String,
    pub ts_ms: i64,
    pub requested_model: String,
    pub routing: Option<Box<RoutingRecord>>,
}

/// Starts the shadow copies of `req` (sampled, within the concurrency
/// limit) and returns at once.
pub fn launch(st: &Arc<AppState>, rt: &Arc<Runtime>, live: &Arc<Live>, req: &ChatRequest, origin: Origin) {
    let counters = &live.cell.counters;
    if fastrand::f64() >= live.settings.sample_rate {
        counters
            .shadow_not_sampled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return;
    }
    let origin = Arc::new(origin);
    for idx in 0..live.candidates().len() {
        let Ok(permit) = live.shadow_slots.clone().try_acquire_owned() else {
            counters
                .shadow_busy
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        let mut copy = req.clone();
        copy.stream = None;
        copy.stream_options = None;
        let (st, rt, live, origin) = (st.clone(), rt.clone(), live.clone(), origin.clone());
        tokio::spawn(async move {
            run(&st, &rt, &live, idx, copy, &origin, permit).await;
        });
    }
}

/// The answer's text (`choices[0].message.content`), at most `max` characters.
pub fn answer_text(body: &[u8], max: usize) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let s = v.pointer("/choices/0/message/content")?.as_str()?;
    Some(s.chars().take(max).collect())
}

async fn run(
    st: &AppState,
    rt: &Runtime,
    live: &Live,
    idx: usize,
    mut req: ChatRequest,
    origin: &Origin,
    _permit: OwnedSemaphorePermit,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = &live.cell.counters;
    let model = live.candidates()[idx].clone();
    // A deployment whose breaker is closed: shadows never probe a failing provider.
    let Some(target) = rt
        .targets(&[&*model], false)
        .into_iter()
        .find(|t| rt.health[t.provider].breaker.state() == State::Closed)
    else {
        counters.shadow_unavailable.fetch_add(1, Relaxed);
        return;
    };
    let provider = rt.providers[target.provider].clone();
    let prompt = PromptInfo::from_chat(&req);
    let estimated = prompt.token_estimate();
    let clock = st.budgets.clock().clone();
    let limits = rt.limits[target.provider].clone();
    if let Some(l) = &limits {
        if l.try_acquire(estimated, clock.now_ms()).is_err() {
            counters.shadow_unavailable.fetch_add(1, Relaxed);
            return;
        }
    }
    let budgets = &rt.config.budgets;
    let scopes = budgets.shadow_scopes(&live.name);
    let reservation = if scopes.is_empty() {
        None
    } else {
        let reserved = if budgets.mode == BudgetMode::Strict {
            // Like a client request: the copy's answer is capped at what the room affords.
            let lines: Vec<CostLine> = target.price.iter().map(|p| CostLine::of(p, &prompt)).collect();
            let wanted = prompt
                .max_output
                .unwrap_or(u64::from(budgets.reserve_output_tokens));
            st.budgets
                .reserve_output(
                    budgets,
                    scopes,
                    &lines,
                    wanted,
                    u64::from(budgets.min_output_tokens),
                )
                .map(|g| {
                    if prompt.max_output != Some(g.output_tokens) {
                        OutputField::CHAT.set(&mut req.extra, g.output_tokens);
                    }
                    g.reservation
                })
        } else {
            let worst = prompt.worst_case_usage(budgets.reserve_output_tokens);
            let estimate = target.price.map_or(0.0, |p| p.cost(&worst));
            st.budgets.reserve(budgets, scopes, estimate)
        };
        match reserved {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                counters.shadow_over_budget.fetch_add(1, Relaxed);
                tracing::debug!(experiment = %live.name, "shadow call skipped: {}", e.message());
                if let Some(l) = &limits {
                    // Give the request back: nothing was sent.
                    l.release(estimated, clock.now_ms());
                }
                return;
            }
        }
    };
    counters.shadow_started.fetch_add(1, Relaxed);
    let mut entry = LedgerEntry::pending(
        format!("{}:shadow:{model}", origin.request_id),
        origin.ts_ms,
        ENDPOINT,
        origin.requested_model.clone(),
        target.public.clone(),
        provider.name.clone(),
        target.upstream.clone(),
        false,
    );
    entry.routing = origin.routing.clone();
    entry.experiment = Some(Box::new(ExperimentTag {
        name: live.name.clone(),
        arm: model.clone(),
        shadow: true,
        parent_request_id: Some(origin.request_id.clone()),
        output: None,
    }));
    let mut recorder = Recorder::new(st.ledger.clone(), entry, Instant::now(), target.price)
        .with_request(Some(Arc::new(prompt)), reservation);
    if let Some(l) = limits.filter(|l| l.tpm.is_some()) {
        recorder.add_sink(TokenSink::Deployment(l, estimated, clock));
    }
    req.model.clear();
    req.model.push_str(&target.upstream);
    let timeout = live.settings.shadow_timeout;
    let call = tokio::time::timeout(timeout, provider.chat(&req, &[]));
    let outcome = tokio::select! {
        _ = st.shutdown.cancelled() => None,
        r = call => Some(r),
    };
    match outcome {
        None => recorder.finish(
            499,
            Some("shadow call cancelled: the server is shutting down".into()),
        ),
        Some(Err(_)) => recorder.finish(
            504,
            Some(format!("shadow call timed out after {} ms", timeout.as_millis())),
        ),
        Some(Ok(Ok(ChatAnswer::Complete { body, usage }))) => {
            recorder.mark_first_token();
            if let Some(u) = usage {
                recorder.set_usage(u);
            }
            let max = live.settings.record_output_chars;
            if max > 0 {
                let text = answer_text(&body, max);
                recorder.annotate(|e| {
                    if let Some(x) = e.experiment.as_deref_mut() {
                        x.output = text;
                    }
                });
            }
            recorder.finish(200, None);
        }
        Some(Ok(Ok(ChatAnswer::Stream(_)))) => {
            recorder.finish(502, Some("shadow call answered with a stream".into()))
        }
        Some(Ok(Err(e))) => {
            let api = e.to_api_error(&provider.name, provider.secret());
            recorder.finish(api.status.as_u16(), Some(api.message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiment_shadow_answer_text() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":"h\u00e9llo world"}}]}"#;
        assert_eq!(answer_text(body, 5).as_deref(), Some("h\u{e9}llo"));
        assert_eq!(answer_text(body, 100).as_deref(), Some("h\u{e9}llo world"));
        assert_eq!(answer_text(b"not json", 5), None);
        assert_eq!(answer_text(br#"{"choices":[]}"#, 5), None);
    }
}
