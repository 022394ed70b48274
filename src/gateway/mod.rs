//! Executing a request against its target: model resolution and the
//! streaming relay. (Retries and fallback chains build on this.)

pub mod attempt;
pub mod relay;
pub mod sse;
