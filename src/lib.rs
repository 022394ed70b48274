//! Switchyard: a fast, cost-aware, OpenAI-compatible LLM gateway.
//!
//! The request pipeline (see `docs/architecture.md`): parse -> resolve the
//! model -> call the provider -> relay the answer -> record to the ledger.

pub mod accounting;
pub mod api;
pub mod auth;
pub mod commands;
pub mod config;
pub mod experiments;
pub mod gateway;
pub mod metrics;
pub mod providers;
pub mod resilience;
pub mod routing;
pub mod server;
pub mod state;
pub mod telemetry;

pub use server::{app, start, AppState, Server};
