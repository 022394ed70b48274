//! `GET /v1/models` in OpenAI's list format.

use serde::Serialize;

/// One entry of the model list.
#[derive(Debug, Clone, Serialize)]
pub struct ModelObject {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: String,
}

/// The list envelope.
#[derive(Debug, Serialize)]
pub struct ModelList<'a> {
    pub object: &'static str,
    pub data: &'a [ModelObject],
}
