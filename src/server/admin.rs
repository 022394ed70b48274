//! Admin API (`/admin/*`): needs `Authorization: Bearer <server.admin_key>`,
//! or a dashboard session cookie (`/ui` login) plus its `x-csrf-token` header
//! on POST and DELETE; disabled (404) when no admin key is configured.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use crate::api::ApiError;
use crate::resilience::health::HealthReport;
use crate::state::AppState;

/// Compares in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware guarding every /admin route.
pub async fn require_admin(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let rt = st.rt();
    let Some(key) = &rt.config.server.admin_key else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "The admin API is disabled: set server.admin_key to enable it.",
        )
        .with_code("admin_disabled")
        .into_response();
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // No admin key header: the dashboard's session cookie, with its CSRF
    // token on anything that changes state.
    if bearer.is_none() {
        if let Some(csrf) = super::ui::session_csrf(&st, req.headers(), key.expose()) {
            let safe = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
            let sent = req
                .headers()
                .get(super::ui::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !safe && !constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "invalid_request_error",
                    "Missing or wrong x-csrf-token header for this dashboard session.",
                )
                .with_code("csrf_failed")
                .into_response();
            }
            return next.run(req).await;
        }
    }
    let presented = bearer.unwrap_or("");
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
    let data = st.rt().health.iter().map(|h| h.report()).collect();
    json(StatusCode::OK, &HealthList { object: "list", data })
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

/// Query of GET /admin/spend.
#[derive(serde::Deserialize)]
pub struct SpendQuery {
    by: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// GET /admin/spend?by=task|model|provider|key|route|day&since=&until=: the
/// `switchyard report` breakdown as JSON, with the live budget state.
pub async fn spend(
    State(st): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<SpendQuery>,
) -> Response {
    use crate::accounting::report as r;
    let by_name = q.by.as_deref().unwrap_or("model");
    let Some(by) = r::GroupBy::parse(by_name) else {
        return ApiError::invalid_request(
            format!("by={by_name:?}: use task, model, provider, key, route, day or tag:NAME"),
            Some("by".into()),
        )
        .into_response();
    };
    let mut bounds = [None, None];
    for (i, (name, v)) in [("since", &q.since), ("until", &q.until)].into_iter().enumerate() {
        if let Some(v) = v {
            match r::parse_time(v) {
                Ok(t) => bounds[i] = Some(t),
                Err(e) => return ApiError::invalid_request(e, Some(name.into())).into_response(),
            }
        }
    }
    if st.ledger_pg.is_some() && matches!(by, r::GroupBy::Tag(_)) {
        return ApiError::invalid_request(
            "by=tag:NAME is not available on a PostgreSQL ledger yet",
            Some("by".into()),
        )
        .into_response();
    }
    let by_model = matches!(by, r::GroupBy::Model);
    let rows = match &st.ledger_pg {
        Some(pool) => r::report_pg(pool, by, bounds[0], bounds[1]).await,
        None => r::report(&st.ledger_path, by, bounds[0], bounds[1]).await,
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let total_cost: f64 = rows.iter().map(|r| r.cost_usd).sum();
    let total_requests: i64 = rows.iter().map(|r| r.requests).sum();
    let rt = st.rt();
    let budgets = st.budgets.snapshot(&rt.config.budgets, &st.keys.budgets());
    // What the providers' prompt caches saved: cached input tokens at the
    // model's input price minus its cached price (by model only: the other
    // groupings mix models whose prices differ).
    let cached_saving = |r: &r::ReportRow| -> Option<f64> {
        let m = rt.config.models.get(&r.group)?;
        let p = m.price?;
        let saved = r.cached_tokens as f64 * (p.input - p.cached_input.unwrap_or(p.input)) / 1e6;
        Some(saved.max(0.0))
    };
    let mut data = Vec::with_capacity(rows.len());
    let mut cached_total = 0.0;
    for row in &rows {
        let mut v = serde_json::to_value(row).unwrap_or_default();
        if by_model {
            let saved = cached_saving(row);
            cached_total += saved.unwrap_or(0.0);
            if let Some(o) = v.as_object_mut() {
                o.insert("cached_input_saved_usd".into(), serde_json::json!(saved));
            }
        }
        data.push(v);
    }
    let body = serde_json::json!({
        "object": "spend",
        "by": by_name,
        "since": bounds[0],
        "until": bounds[1],
        "data": data,
        "total": {
            "requests": total_requests,
            "cost_usd": total_cost,
            "cache_hits": rows.iter().map(|r| r.cache_hits).sum::<i64>(),
            "response_cache_saved_usd": rows.iter().map(|r| r.saved_usd).sum::<f64>(),
            "cached_input_saved_usd": by_model.then_some(cached_total),
        },
        "budgets": budgets,
        "ledger_queue_depth": st.ledger.depth(),
    });
    json(StatusCode::OK, &body)
}

/// `v` as a JSON response.
pub(super) fn json(status: StatusCode, v: &impl Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => super::handlers::json_response(status, Bytes::from(b)),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    #[serde(default, deserialize_with = "lenient_bool")]
    all: bool,
}

/// A query flag: `true`/`false`, `1`/`0`, `yes`/`no`, or empty (true).
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
    match s.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "`{other}` is not a flag: use true or false"
        ))),
    }
}

/// GET /admin/keys[?all=true]: active keys (with `all`, revoked ones too). Never the secrets.
pub async fn list_keys(
    State(st): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    match st.keys.db().list(q.all).await {
        Ok(data) => json(
            StatusCode::OK,
            &serde_json::json!({"object": "list", "data": data}),
        ),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// POST /admin/keys: creates a key; the response is the only time the secret is shown.
pub async fn create_key(
    State(st): State<Arc<AppState>>,
    headers: http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    let body = match super::handlers::read_body(body, &headers, 64 * 1024).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let spec: crate::auth::keys::KeySpec = match crate::api::chat::parse_json(&body) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = spec.validate() {
        return ApiError::invalid_request(e, None).into_response();
    }
    match st.keys.db().create(spec).await {
        Ok((record, secret)) => {
            if let Err(e) = st.keys.refresh().await {
                tracing::warn!("key refresh failed: {e}");
            }
            announce_key_change(&st).await;
            tracing::info!(key = %record.spec.name, id = %record.id, "api key created");
            let mut v = serde_json::to_value(&record).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("object".into(), "api_key".into());
                o.insert("key".into(), secret.into());
            }
            json(StatusCode::CREATED, &v)
        }
        Err(e) if e.contains("already exists") => {
            ApiError::new(StatusCode::CONFLICT, "invalid_request_error", e)
                .with_code("key_exists")
                .into_response()
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// DELETE /admin/keys/{id or name}: revokes the key at once.
pub async fn revoke_key(
    State(st): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match st.keys.db().revoke(&id).await {
        Ok(Some(record)) => {
            if let Err(e) = st.keys.refresh().await {
                tracing::warn!("key refresh failed: {e}");
            }
            announce_key_change(&st).await;
            tracing::info!(key = %record.spec.name, id = %record.id, "api key revoked");
            json(StatusCode::OK, &record)
        }
        Ok(None) => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No active key with id or name `{id}`."),
        )
        .with_code("key_not_found")
        .into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// POST /admin/reload: re-reads and validates the config, then swaps it in.
pub async fn reload(State(st): State<Arc<AppState>>) -> Response {
    match super::reload(&st).await {
        Ok(changes) => {
            let generation = st.rt().generation;
            tracing::info!(generation, ?changes, "configuration reloaded");
            json(
                StatusCode::OK,
                &serde_json::json!({"reloaded": true, "generation": generation, "changes": changes}),
            )
        }
        Err(e) => {
            tracing::warn!("configuration reload rejected; keeping the running one: {e}");
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                format!("The new configuration was rejected; the running one is kept. {e}"),
            )
            .with_code("invalid_config")
            .into_response()
        }
    }
}

/// GET /metrics: Prometheus text format.
pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let rt = st.rt();
    let stats = st.ledger.stats();
    let mut budgets = Vec::new();
    for b in st.budgets.snapshot(&rt.config.budgets, &st.keys.budgets()) {
        if let Some(l) = b.daily_limit_usd {
            budgets.push((
                b.scope.clone(),
                "day",
                b.daily_spent_usd + b.daily_reserved_usd,
                l,
            ));
        }
        if let Some(l) = b.monthly_limit_usd {
            budgets.push((
                b.scope.clone(),
                "month",
                b.monthly_spent_usd + b.monthly_reserved_usd,
                l,
            ));
        }
    }
    let g = crate::metrics::Gauges {
        breakers: rt
            .health
            .iter()
            .map(|h| {
                let r = h.report();
                (r.provider, r.state)
            })
            .collect(),
        ledger_queue_depth: st.ledger.depth(),
        ledger_written: stats.written.load(std::sync::atomic::Ordering::Relaxed),
        ledger_failed: stats.failed.load(std::sync::atomic::Ordering::Relaxed),
        ledger_pending: stats.pending.load(std::sync::atomic::Ordering::Relaxed),
        ledger_spooled: stats.spooled.load(std::sync::atomic::Ordering::Relaxed),
        ledger_retries: stats.retries.load(std::sync::atomic::Ordering::Relaxed),
        budgets,
        config_generation: rt.generation,
        state_backend: st.shared.as_ref().map(|sh| {
            let (on_path, off_path) = sh.calls();
            (
                sh.is_up(),
                sh.transitions(),
                sh.pending_writes(),
                on_path,
                off_path,
                sh.admissions(),
            )
        }),
    };
    let mut r = (StatusCode::OK, st.metrics.render(&g)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Tells the other instances sharing Redis to re-read the key table now
/// (otherwise they would within `server.key_refresh`).
async fn announce_key_change(st: &AppState) {
    if let Some(sh) = &st.shared {
        if !sh.publish("keys").await {
            tracing::warn!("could not announce the key change on Redis: other instances see it within server.key_refresh");
        }
    }
}
