//! Experiment endpoints: `POST /v1/feedback` (client API) and
//! `/admin/experiments*` (admin API).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::admin::json;
use super::handlers::{read_body, Ctx};
use crate::api::ApiError;
use crate::auth::KeyUse;
use crate::config::experiments::Experiment;
use crate::experiments::ramp::RampView;
use crate::experiments::{report, store};
use crate::state::AppState;

/// Longest feedback comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    request_id: String,
    score: Option<f64>,
    thumbs: Option<String>,
    comment: Option<String>,
}

fn not_found(what: &str, name: &str, code: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("No {what} `{name}`."),
    )
    .with_code(code)
}

/// The score of a feedback body: `score` in 0..=1, or `thumbs` up (1) / down (0).
fn score_of(b: &FeedbackBody) -> Result<f64, ApiError> {
    let bad = |msg: &str, param: &str| ApiError::invalid_request(msg, Some(param.into()));
    match (b.score, b.thumbs.as_deref()) {
        (Some(_), Some(_)) => Err(bad("Give either `score` or `thumbs`, not both.", "thumbs")),
        (None, None) => Err(bad(
            "Missing `score` (a number from 0 to 1) or `thumbs` (\"up\" or \"down\").",
            "score",
        )),
        (Some(s), None) if s.is_finite() && (0.0..=1.0).contains(&s) => Ok(s),
        (Some(_), None) => Err(bad("`score` must be a number from 0 to 1.", "score")),
        (None, Some("up")) => Ok(1.0),
        (None, Some("down")) => Ok(0.0),
        (None, Some(_)) => Err(bad("`thumbs` must be \"up\" or \"down\".", "thumbs")),
    }
}

/// POST /v1/feedback: a quality score for a request the gateway served.
pub async fn feedback(
    State(st): State<Arc<AppState>>,
    key: Option<Extension<Arc<KeyUse>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = Ctx::new(&st, &headers, key);
    match feedback_inner(&st, &ctx, &headers, body).await {
        Ok(r) => r,
        Err(e) => ctx.error(e),
    }
}

async fn feedback_inner(
    st: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Rows queued before this request arrived, which the lookup may need.
    let queued = st
        .ledger
        .stats()
        .queued
        .load(std::sync::atomic::Ordering::Relaxed);
    let bytes = read_body(body, headers, 64 * 1024).await?;
    let b: FeedbackBody = crate::api::chat::parse_json(&bytes)?;
    if b.request_id.is_empty() || b.request_id.len() > 200 {
        return Err(ApiError::invalid_request(
            "`request_id` must be 1 to 200 characters: the x-request-id of the response.",
            Some("request_id".into()),
        ));
    }
    let score = score_of(&b)?;
    if b.comment
        .as_deref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(ApiError::invalid_request(
            format!("`comment` is longer than {MAX_COMMENT_CHARS} characters."),
            Some("comment".into()),
        ));
    }
    let path = &st.ledger_path;
    let lookup_id = |id: &str| {
        let id = id.to_string();
        async move {
            match &st.ledger_pg {
                Some(pool) => store::lookup_request_pg(pool, &id).await,
                None => store::lookup_request(path, &id).await,
            }
        }
    };
    let lookup = || lookup_id(&b.request_id);
    let mut info = lookup().await.map_err(ApiError::internal)?;
    if info.is_none() {
        // The ledger writes in batches: wait for the rows queued before us.
        let wait = ctx.rt.config.ledger.flush_interval + Duration::from_secs(2);
        let deadline = tokio::time::Instant::now() + wait;
        let stats = st.ledger.stats();
        let done = || {
            stats.written.load(std::sync::atomic::Ordering::Relaxed)
                + stats.failed.load(std::sync::atomic::Ordering::Relaxed)
        };
        while done() < queued && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        info = lookup().await.map_err(ApiError::internal)?;
    }
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "No request `{}`: feedback needs the x-request-id of a response this gateway served.",
                b.request_id
            ),
        )
        .with_code("request_not_found")
        .with_param("request_id")
    };
    let Some(info) = info else {
        return Err(unknown());
    };
    // With keys, a client scores only its own requests (and their shadow copies).
    if let Some(k) = &ctx.key {
        let owner = match (&info.key_name, &info.parent_request_id) {
            (Some(o), _) => Some(o.clone()),
            (None, Some(parent)) => lookup_id(parent)
                .await
                .map_err(ApiError::internal)?
                .and_then(|p| p.key_name),
            (None, None) => None,
        };
        if owner.as_deref() != Some(k.name()) {
            return Err(unknown());
        }
    }
    let id = store::insert_feedback(
        path,
        &b.request_id,
        ctx.ts_ms,
        ctx.key.as_ref().map(|k| k.name()),
        score,
        b.comment.as_deref(),
    )
    .await
    .map_err(ApiError::internal)?;
    tracing::info!(
        request_id = %b.request_id,
        score,
        experiment = info.experiment.as_deref().unwrap_or("-"),
        arm = info.arm.as_deref().unwrap_or("-"),
        "feedback recorded"
    );
    let mut r = json(
        StatusCode::OK,
        &serde_json::json!({
            "object": "feedback",
            "id": id,
            "request_id": b.request_id,
            "score": score,
            "experiment": info.experiment,
            "arm": info.arm,
        }),
    );
    r.headers_mut()
        .insert(super::handlers::X_REQUEST_ID, ctx.request_id_header().clone());
    Ok(r)
}

/// One experiment as the admin API lists it.
#[derive(Serialize)]
struct View {
    name: String,
    enabled: bool,
    /// Enabled and in the running config.
    live: bool,
    mode: &'static str,
    applies_to: String,
    control: String,
    candidates: Vec<CandidateView>,
    sticky_by: &'static str,
    sample_rate: f64,
    max_concurrency: u32,
    shadow_in_flight: Option<usize>,
    counters: Option<crate::experiments::live::CounterView>,
    ramp: Option<RampView>,
}

#[derive(Serialize)]
struct CandidateView {
    model: String,
    configured_share: f64,
    /// The share in effect (the ramp's, for a ramped experiment); null in shadow mode.
    share: Option<f64>,
}

fn view(st: &AppState, e: &Experiment) -> View {
    let rt = st.rt();
    let live = rt.experiments.iter().find(|l| *l.name == *e.name);
    let cell = st.experiments.cell(&e.name);
    let shares = live.map(|l| l.shares());
    let split = e.mode == crate::config::experiments::Mode::Split;
    View {
        name: e.name.clone(),
        enabled: e.enabled,
        live: live.is_some(),
        mode: e.mode.as_str(),
        applies_to: e.scope.to_string(),
        control: e.control.clone(),
        candidates: e
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| CandidateView {
                model: c.model.clone(),
                configured_share: c.share,
                share: match (&shares, split) {
                    (Some(s), true) => s.get(i).copied(),
                    (None, true) => Some(0.0),
                    (_, false) => None,
                },
            })
            .collect(),
        sticky_by: e.sticky_by.as_str(),
        sample_rate: e.sample_rate,
        max_concurrency: e.max_concurrency,
        shadow_in_flight: live
            .filter(|_| !split)
            .map(|l| (e.max_concurrency as usize).saturating_sub(l.shadow_slots.available_permits())),
        counters: cell.as_ref().map(|c| c.counters.view()),
        ramp: match (&e.ramp, cell.as_ref().and_then(|c| c.ramp_state())) {
            (Some(r), Some(s)) => Some(RampView::of(r, &s, cell.as_ref().and_then(|c| c.last_decision()))),
            _ => None,
        },
    }
}

/// GET /admin/experiments: every configured experiment with its shares now.
pub async fn list(State(st): State<Arc<AppState>>) -> Response {
    let rt = st.rt();
    let data: Vec<View> = rt.config.experiments.values().map(|e| view(&st, e)).collect();
    json(
        StatusCode::OK,
        &serde_json::json!({"object": "list", "data": data}),
    )
}

#[derive(Deserialize)]
pub struct ReportQuery {
    since: Option<String>,
    until: Option<String>,
}

/// GET /admin/experiments/{name}[?since=&until=]: the experiment and its report.
pub async fn show(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let mut bounds = [None, None];
    for (i, (param, v)) in [("since", &q.since), ("until", &q.until)].into_iter().enumerate() {
        if let Some(v) = v {
            match crate::accounting::report::parse_time(v) {
                Ok(t) => bounds[i] = Some(t),
                Err(e) => return ApiError::invalid_request(e, Some(param.into())).into_response(),
            }
        }
    }
    let rt = st.rt();
    let configured = rt.config.experiments.get(&name).map(|e| view(&st, e));
    let r = match report::report_from(
        st.ledger_pg.as_ref(),
        &st.ledger_path,
        &name,
        bounds[0],
        bounds[1],
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    if configured.is_none() && r.arms.is_empty() {
        return not_found("experiment", &name, "experiment_not_found").into_response();
    }
    let text = report::to_text(&r, configured.as_ref().map(|c| c.mode));
    json(
        StatusCode::OK,
        &serde_json::json!({
            "object": "experiment",
            "name": name,
            "experiment": configured,
            "report": r,
            "text": text,
            "ledger_queue_depth": st.ledger.depth(),
        }),
    )
}

/// POST /admin/experiments/{name}/reset: restarts a ramp (after a roll-back) at its first step.
pub async fn reset(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let rt = st.rt();
    let Some(live) = rt.experiments.iter().find(|l| *l.name == *name) else {
        return not_found("running experiment", &name, "experiment_not_found").into_response();
    };
    let (Some(ramp), Some(fp)) = (&live.settings.ramp, live.settings.ramp_fingerprint()) else {
        return ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            format!("Experiment `{name}` has no ramp to reset."),
        )
        .with_code("no_ramp")
        .into_response();
    };
    let row = live.cell.reset(
        ramp,
        &fp,
        st.budgets.clock().now_ms(),
        "reset",
        "reset through the admin API",
    );
    crate::experiments::live::log_ramp(&row);
    if let Err(e) = store::insert_ramp(&st.ledger_path, &row).await {
        tracing::warn!(experiment = %name, "cannot store the ramp step: {e}");
    }
    crate::experiments::ramp::publish_reset(&st, live).await;
    json(StatusCode::OK, &view(&st, &live.settings))
}
