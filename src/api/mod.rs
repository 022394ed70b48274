//! OpenAI wire types: requests, usage, errors, model lists.

pub mod chat;
pub mod completions;
pub mod error;
pub mod models;
pub mod raw;
pub mod responses;
pub mod usage;

pub use error::ApiError;
