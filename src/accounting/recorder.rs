//! `Recorder`: the guard that turns one upstream call into one ledger row.
//!
//! Created just before a request goes upstream. `finish` records the outcome;
//! if the guard is dropped unfinished (the client hung up, the task was
//! aborted at shutdown) `Drop` records the row with status 499, so every
//! request that reached a provider is in the ledger.

use std::time::Instant;

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
            e.status = status;
            e.error = error;
            e.latency_ms = self.started.elapsed().as_secs_f64() * 1e3;
            e.ttft_ms = self.ttft_ms;
            e.usage = self.usage;
            e.cost_usd = self.cost();
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
