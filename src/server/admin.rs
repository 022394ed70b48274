//! Admin API (`/admin/*`): needs `Authorization: Bearer <server.admin_key>`;
//! disabled (404) when no admin key is configured.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use super::state::AppState;
use crate::api::ApiError;
use crate::resilience::health::HealthReport;

/// Compares in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware guarding every /admin route.
pub async fn require_admin(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = &st.config.server.admin_key else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "The admin API is disabled: set server.admin_key to enable it.",
        )
        .with_code("admin_disabled")
        .into_response();
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), key.expose().as_bytes()) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid admin key.",
        )
        .with_code("invalid_api_key")
        .into_response();
    }
    next.run(req).await
}

#[derive(Serialize)]
struct HealthList {
    object: &'static str,
    data: Vec<HealthReport>,
}

/// GET /admin/health: breaker state, recent error rate and EWMA latency per deployment.
pub async fn health(State(st): State<Arc<AppState>>) -> Response {
    let data = st.health.iter().map(|h| h.report()).collect();
    match serde_json::to_vec(&HealthList { object: "list", data }) {
        Ok(b) => {
            let mut r = (StatusCode::OK, Bytes::from(b)).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
