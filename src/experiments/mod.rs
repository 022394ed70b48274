//! Safe model swaps: experiments that test a candidate model on live
//! traffic before it replaces the control.
//!
//! - `assign`: the sticky arm of a request (stable hash of experiment and user).
//! - `live`: experiment state bound to the running config and kept across reloads.
//! - `shadow`: background copies of requests to candidates, bounded and invisible to clients.
//! - `ramp`: the automatic share ramp and its roll-back rules.
//! - `report`: per arm figures and verdicts from the ledger and feedback.
//! - `store`: the feedback and ramp tables in the ledger file.
//! - `stats`: means, confidence intervals, percentiles.
//!
//! See docs/experiments.md.

pub mod assign;
pub mod live;
pub mod ramp;
pub mod report;
pub mod shadow;
pub mod stats;
pub mod store;

pub use live::{Assigned, Experiments, Live};
