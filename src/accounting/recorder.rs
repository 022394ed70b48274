//! `Recorder`: the guard that turns one upstream call into one ledger row.
//!
//! Created just before a request goes upstream. `finish` records the outcome;
//! if the guard is dropped unfinished (the client hung up, the task was
//! aborted at shutdown) `Drop` records the row with status 499, so every
//! request that reached a provider is in the ledger.

use std::time::Instant;

use std::sync::Arc;

use super::budget::Reservation;
use super::estimate::{self, SharedPrompt};
use super::ledger::{LedgerEntry, LedgerHandle};
use super::pricing::Price;
use crate::api::usage::Usage;

/// Status recorded when the client went away before the answer was complete.
pub const STATUS_CLIENT_CLOSED: u16 = 499;

pub struct Recorder {
    ledger: LedgerHandle,
    entry: Option<LedgerEntry>,
    started: Instant,
    price: Option<Price>,
    usage: Option<Usage>,
    ttft_ms: Option<f64>,
    /// For an estimate when the provider reports no usage.
    prompt: Option<SharedPrompt>,
    /// Output text seen in a stream (captured until usage arrives).
    output: Vec<u8>,
    /// The request's budget reservation; the attempt's cost is charged to it.
    reservation: Option<Arc<Reservation>>,
    /// Token buckets to correct with the real token count.
    sinks: Vec<TokenSink>,
    /// Whether `usage` is an estimate.
    estimated: bool,
    /// This attempt's trace span, ended with the row.
    span: Option<crate::telemetry::AttemptSpan>,
}

/// A token-per-minute bucket that took an estimate before the call.
pub enum TokenSink {
    /// The client key's TPM (settled once per request).
    Key(Arc<crate::auth::KeyUse>),
    /// A deployment's TPM: (limits, estimate taken, clock).
    Deployment(
        Arc<crate::auth::limiter::DeploymentLimits>,
        u64,
        crate::accounting::budget::Clock,
    ),
    /// A deployment's TPM bucket shared by every instance: (store, provider, capacity, estimate, clock).
    SharedDeployment(
        Arc<crate::state::shared::Shared>,
        Arc<str>,
        u64,
        u64,
        crate::accounting::budget::Clock,
    ),
}

impl Recorder {
    /// `entry` carries the request's identity; outcome fields are filled later.
    pub fn new(ledger: LedgerHandle, entry: LedgerEntry, started: Instant, price: Option<Price>) -> Self {
        Recorder {
            ledger,
            entry: Some(entry),
            started,
            price,
            usage: None,
            ttft_ms: None,
            prompt: None,
            output: Vec::new(),
            reservation: None,
            sinks: Vec::new(),
            estimated: false,
            span: None,
        }
    }

    /// For a complete answer that came without usage: estimates it from the
    /// prompt and the answer body now, so the cost header can show it.
    pub fn estimate_from_body(&mut self, body: &[u8]) {
        if self.usage.is_some() {
            return;
        }
        if let Some(p) = &self.prompt {
            estimate::capture_output(body, &mut self.output);
            self.usage = Some(estimate::estimate_usage(p, &self.output));
            self.estimated = true;
        }
    }

    /// Ends `span` with this attempt's row.
    pub fn set_span(&mut self, span: crate::telemetry::AttemptSpan) {
        self.span = Some(span);
    }

    /// Adds a token bucket to correct when the real usage is known.
    pub fn add_sink(&mut self, sink: TokenSink) {
        self.sinks.push(sink);
    }

    /// Enables the after-the-fact estimate and budget charging for this attempt.
    pub fn with_request(
        mut self,
        prompt: Option<SharedPrompt>,
        reservation: Option<Arc<Reservation>>,
    ) -> Self {
        self.prompt = prompt;
        self.reservation = reservation;
        self
    }

    /// Captures output text of a chunk while no usage has been seen (for an estimate).
    pub fn observe_output(&mut self, data: &[u8]) {
        if self.usage.is_none() && self.prompt.is_some() && self.output.len() < estimate::OUTPUT_CAP {
            estimate::capture_output(data, &mut self.output);
        }
    }

    /// Notes the moment the first byte of the answer went to the client.
    pub fn mark_first_token(&mut self) {
        if self.ttft_ms.is_none() {
            self.ttft_ms = Some(self.started.elapsed().as_secs_f64() * 1e3);
        }
    }

    pub fn set_usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    /// Edits the row before it is written (e.g. a shadow call's recorded output).
    pub fn annotate(&mut self, f: impl FnOnce(&mut LedgerEntry)) {
        if let Some(e) = self.entry.as_mut() {
            f(e);
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Cost of the usage seen so far; None when price or usage is unknown.
    pub fn cost(&self) -> Option<f64> {
        Some(self.price?.cost(&self.usage?))
    }

    /// Records the final outcome.
    pub fn finish(mut self, status: u16, error: Option<String>) {
        self.write(status, error);
    }

    fn write(&mut self, status: u16, error: Option<String>) {
        if let Some(mut e) = self.entry.take() {
            // The provider said nothing about usage, but it did work (an
            // answer started, or the client left while it ran): estimate.
            let billed = status == 200 || status == STATUS_CLIENT_CLOSED || self.ttft_ms.is_some();
            if self.usage.is_none() && billed {
                if let Some(p) = &self.prompt {
                    // A hang-up never builds the tokenizer (see `estimate_usage_by_bytes`).
                    self.usage = Some(if status == STATUS_CLIENT_CLOSED {
                        estimate::estimate_usage_by_bytes(p, &self.output)
                    } else {
                        estimate::estimate_usage(p, &self.output)
                    });
                    self.estimated = true;
                }
            }
            e.usage_estimated |= self.estimated;
            e.status = status;
            e.error = error;
            e.latency_ms = self.started.elapsed().as_secs_f64() * 1e3;
            e.ttft_ms = self.ttft_ms;
            e.usage = self.usage;
            e.cost_usd = self.cost();
            if let (Some(r), Some(c)) = (&self.reservation, e.cost_usd) {
                r.charge(c);
            }
            let used = self
                .usage
                .map_or(0, |u| u.prompt_tokens.saturating_add(u.completion_tokens));
            for sink in self.sinks.drain(..) {
                match sink {
                    TokenSink::Key(k) => k.settle_tokens(used),
                    TokenSink::SharedDeployment(sh, provider, cap, est, clock) => {
                        sh.settle_deployment(&provider, cap, used as f64 - est as f64, clock.now_ms());
                    }
                    TokenSink::Deployment(d, est, clock) => {
                        if let Some(t) = &d.tpm {
                            t.adjust(used as f64 - est as f64, clock.now_ms());
                        }
                    }
                }
            }
            if let Some(span) = self.span.take() {
                span.finish(&e);
            }
            self.ledger.record(e);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.entry.is_some() {
            self.write(
                STATUS_CLIENT_CLOSED,
                Some("client closed the connection before the answer was complete".into()),
            );
        }
    }
}
