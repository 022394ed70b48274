//! The dashboard at `/ui`: pages and assets embedded in the binary
//! (`assets/ui/`), the login that turns the admin key into a session cookie,
//! and the JSON endpoints under `/admin/` the pages read (`/admin/ui/overview`,
//! `/admin/ui/health`, `/admin/savings`, `/admin/traffic`, `/admin/requests`).
//!
//! Sessions: the login form posts the admin key; a right key gets a random
//! session token in two cookies (`Path=/ui` and `Path=/admin`; HttpOnly,
//! SameSite=Strict), mapped server-side to "admin" ([`crate::auth::sessions`]).
//! The page carries the session's CSRF token in a meta tag and sends it as
//! `x-csrf-token` on every POST and DELETE, which `admin::require_admin` checks.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

use super::admin::{constant_time_eq, json};
use crate::accounting::dashboard::{self as dash, Source};
use crate::api::ApiError;
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "switchyard_session";
/// The header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

const APP_HTML: &str = include_str!("../../assets/ui/index.html");
const LOGIN_HTML: &str = include_str!("../../assets/ui/login.html");
const APP_JS: &str = include_str!("../../assets/ui/app.js");
const APP_CSS: &str = include_str!("../../assets/ui/app.css");
const UPLOT_JS: &str = include_str!("../../assets/ui/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/ui/uPlot.min.css");

/// The session token presented in the `Cookie` header, if any.
fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of the live session in `headers`' cookie (opened with `admin_key`).
pub fn session_csrf(st: &AppState, headers: &HeaderMap, admin_key: &str) -> Option<String> {
    let token = session_token(headers)?;
    st.ui_sessions.csrf(token, admin_key, st.budgets.clock().now_ms())
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    page_headers(h);
    r
}

fn page_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let msg = match error {
        Some(e) => format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)),
        None => String::new(),
    };
    html(status, LOGIN_HTML.replace("{{error}}", &msg))
}

/// GET /ui: the dashboard for a live session, else the login page.
pub async fn page(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let rt = st.rt();
    let Some(key) = &rt.config.server.admin_key else {
        return login_page(
            StatusCode::NOT_FOUND,
            Some("The dashboard is disabled: set server.admin_key to enable it."),
        );
    };
    match session_csrf(&st, &headers, key.expose()) {
        Some(csrf) => html(StatusCode::OK, APP_HTML.replace("{{csrf}}", &escape(&csrf))),
        None => login_page(StatusCode::OK, None),
    }
}

/// GET /ui/assets/{file}: the embedded scripts and styles (no data in them).
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, ct) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "uPlot.iife.min.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "uPlot.min.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        _ => return ApiError::not_found(&format!("/ui/assets/{file}")).into_response(),
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A form post from another site (login CSRF): its `Origin` names another host.
fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let o = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    o != host
}

fn cookies(token: &str, max_age: i64, secure: bool) -> [HeaderValue; 2] {
    let secure = if secure { "; Secure" } else { "" };
    ["/ui", "/admin"].map(|path| {
        HeaderValue::from_str(&format!(
            "{COOKIE}={token}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    })
}

/// Behind a TLS-terminating proxy the cookie gets `Secure`.
fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    key: String,
}

/// POST /ui/login (form field `key`): the right admin key opens a session
/// (303 to /ui with the cookies); a wrong one gets the login page again (401).
pub async fn login(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let rt = st.rt();
    let Some(key) = &rt.config.server.admin_key else {
        return login_page(
            StatusCode::NOT_FOUND,
            Some("The dashboard is disabled: set server.admin_key to enable it."),
        );
    };
    if cross_origin(&headers) {
        return login_page(StatusCode::FORBIDDEN, Some("Log in from this page."));
    }
    let Ok(axum::Form(form)) = form else {
        return login_page(StatusCode::BAD_REQUEST, Some("Enter the admin key."));
    };
    if !constant_time_eq(form.key.trim().as_bytes(), key.expose().as_bytes()) {
        tracing::warn!("dashboard login with a wrong admin key");
        return login_page(StatusCode::UNAUTHORIZED, Some("Wrong admin key."));
    }
    let s = match st.ui_sessions.open(key.expose(), st.budgets.clock().now_ms()) {
        Ok(s) => s,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    tracing::info!("dashboard session opened");
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/ui"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let max_age = crate::auth::sessions::SESSION_TTL_MS / 1000;
    for c in cookies(&s.token, max_age, is_https(&headers)) {
        h.append(header::SET_COOKIE, c);
    }
    r
}

/// POST /ui/logout (with `x-csrf-token`): ends the session and clears the cookies.
pub async fn logout(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let rt = st.rt();
    let key = rt
        .config
        .server
        .admin_key
        .as_ref()
        .map(|k| k.expose().to_string());
    if let (Some(key), Some(token)) = (key, session_token(&headers)) {
        let Some(csrf) = session_csrf(&st, &headers, &key) else {
            return json(StatusCode::OK, &serde_json::json!({"logged_out": true}));
        };
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                "Missing or wrong x-csrf-token header for this dashboard session.",
            )
            .with_code("csrf_failed")
            .into_response();
        }
        st.ui_sessions.close(token);
    }
    let mut r = json(StatusCode::OK, &serde_json::json!({"logged_out": true}));
    for c in cookies("", 0, is_https(&headers)) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

// ------------------------------------------------------------ data endpoints

fn source(st: &AppState) -> Source<'_> {
    match &st.ledger_pg {
        Some(pool) => Source::Pg(pool),
        None => Source::Sqlite(&st.ledger_path),
    }
}

/// `since`/`until` query bounds (`YYYY-MM-DD` or Unix ms), defaults around now.
fn bounds(
    since: Option<&str>,
    until: Option<&str>,
    default_since: i64,
    now: i64,
) -> Result<(i64, i64), Box<Response>> {
    let parse = |name: &str, v: Option<&str>, default: i64| match v {
        None | Some("") => Ok(default),
        Some(v) => crate::accounting::report::parse_time(v)
            .map_err(|e| Box::new(ApiError::invalid_request(e, Some(name.into())).into_response())),
    };
    let since = parse("since", since, default_since)?;
    let until = parse("until", until, now + 1)?;
    if until <= since {
        return Err(Box::new(
            ApiError::invalid_request("until must be after since", Some("until".into())).into_response(),
        ));
    }
    Ok((since, until))
}

/// GET /admin/ui/overview: spend today and this month (from the ledger, in
/// the budget time zone), each budget with its pace (where the day's spend
/// should be by now) and a projection to the end of the day, and the day's
/// cumulative spend per hour.
pub async fn overview(State(st): State<Arc<AppState>>) -> Response {
    let rt = st.rt();
    let settings = &rt.config.budgets;
    let now = st.budgets.clock().now_ms();
    let (day_start, day_end) = crate::accounting::budget::day_bounds_ms(settings.timezone, now);
    let month_start = crate::accounting::budget::month_start_ms(settings.timezone, now);
    let (rows, truncated) = match dash::rows_between(source(&st), month_start, now + 1).await {
        Ok(r) => r,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let first_today = rows.partition_point(|r| r.ts_ms < day_start);
    let today = &rows[first_today..];
    let frac = ((now - day_start) as f64 / (day_end - day_start).max(1) as f64).clamp(0.0, 1.0);
    let project = |spent: f64| if frac > 0.0 { spent / frac } else { spent };
    let budgets: Vec<serde_json::Value> = st
        .budgets
        .snapshot(settings, &st.keys.budgets())
        .into_iter()
        .map(|b| {
            let day_used = b.daily_spent_usd + b.daily_reserved_usd;
            let mut v = serde_json::to_value(&b).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "daily_pace_usd".into(),
                    b.daily_limit_usd.map(|l| l * frac).into(),
                );
                o.insert("daily_projected_usd".into(), project(day_used).into());
                o.insert(
                    "daily_used_share".into(),
                    b.daily_limit_usd
                        .filter(|l| *l > 0.0)
                        .map(|l| day_used / l)
                        .into(),
                );
                o.insert(
                    "monthly_used_share".into(),
                    b.monthly_limit_usd
                        .filter(|l| *l > 0.0)
                        .map(|l| (b.monthly_spent_usd + b.monthly_reserved_usd) / l)
                        .into(),
                );
            }
            v
        })
        .collect();
    let today_spend = dash::spend(today);
    let hourly: Vec<serde_json::Value> = dash::cumulative(today, day_start, day_end, now, 3_600_000)
        .into_iter()
        .map(|(t, c)| serde_json::json!({"ts_ms": t, "cost_usd": c}))
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "object": "overview",
            "now_ms": now,
            "timezone": settings.timezone.name(),
            "day_start_ms": day_start,
            "day_end_ms": day_end,
            "day_elapsed": frac,
            "month_start_ms": month_start,
            "today": today_spend,
            "today_projected_usd": project(today_spend.cost_usd),
            "month": dash::spend(&rows),
            "hourly": hourly,
            "budgets": budgets,
            "pace_factor": settings.pace_factor,
            "truncated": truncated,
            "ledger_queue_depth": st.ledger.depth(),
        }),
    )
}

#[derive(Deserialize)]
pub struct RangeQuery {
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    buckets: Option<i64>,
}

/// GET /admin/savings?since=&until= (default: the last 30 days): actual cost
/// against the cost of the same tokens on each route's strongest model, in
/// total, per day (UTC), per task and per route.
pub async fn savings(State(st): State<Arc<AppState>>, Query(q): Query<RangeQuery>) -> Response {
    let now = st.budgets.clock().now_ms();
    let (since, until) = match bounds(q.since.as_deref(), q.until.as_deref(), now - 30 * 86_400_000, now) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let (rows, truncated) = match dash::rows_between(source(&st), since, until).await {
        Ok(r) => r,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let rt = st.rt();
    let day_of = |ts: i64| {
        chrono::DateTime::from_timestamp_millis(ts)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    let s = dash::savings(&rt.config, &rows, &day_of);
    let mut v = serde_json::to_value(&s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("object".into(), "savings".into());
        o.insert("since".into(), since.into());
        o.insert("until".into(), until.into());
        o.insert("truncated".into(), truncated.into());
    }
    json(StatusCode::OK, &v)
}

/// GET /admin/traffic?since=&until=&by=model|provider|task|tier|key|route|none&buckets=
/// (default: the last 24 hours in 24 buckets, by model): requests, errors,
/// p50/p95 latency and median time to first token per bucket and group, and
/// the share of routed requests per tier.
pub async fn traffic(State(st): State<Arc<AppState>>, Query(q): Query<RangeQuery>) -> Response {
    let now = st.budgets.clock().now_ms();
    let (since, until) = match bounds(q.since.as_deref(), q.until.as_deref(), now - 86_400_000, now) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let by_name = q.by.as_deref().unwrap_or("model");
    let Some(by) = dash::Split::parse(by_name) else {
        return ApiError::invalid_request(
            format!("by={by_name:?}: use model, provider, task, tier, key, route or none"),
            Some("by".into()),
        )
        .into_response();
    };
    let buckets = q.buckets.unwrap_or(24);
    if !(1..=500).contains(&buckets) {
        return ApiError::invalid_request("buckets must be between 1 and 500", Some("buckets".into()))
            .into_response();
    }
    let (rows, truncated) = match dash::rows_between(source(&st), since, until).await {
        Ok(r) => r,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let t = dash::traffic(&rows, since, until, buckets, by, 8);
    let mut v = serde_json::to_value(&t).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("object".into(), "traffic".into());
        o.insert("by".into(), by_name.into());
        o.insert("truncated".into(), truncated.into());
    }
    json(StatusCode::OK, &v)
}

#[derive(Deserialize)]
pub struct RequestsQuery {
    key: Option<String>,
    model: Option<String>,
    task: Option<String>,
    status: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// GET /admin/requests?key=&model=&task=&status=ok|error|CODE&limit=&before=:
/// the ledger's most recent rows, newest first (`before`: a row id, for the next page).
pub async fn requests(State(st): State<Arc<AppState>>, Query(q): Query<RequestsQuery>) -> Response {
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let status = match nonempty(q.status) {
        None => None,
        Some(s) => match dash::StatusFilter::parse(&s) {
            Some(f) => Some(f),
            None => {
                return ApiError::invalid_request(
                    format!("status={s:?}: use ok, error or an HTTP status code"),
                    Some("status".into()),
                )
                .into_response()
            }
        },
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return ApiError::invalid_request("limit must be between 1 and 500", Some("limit".into()))
            .into_response();
    }
    let f = dash::RequestFilter {
        key: nonempty(q.key),
        model: nonempty(q.model),
        task: nonempty(q.task),
        status,
        before_id: q.before,
        limit,
    };
    match dash::recent(source(&st), &f).await {
        Ok(rows) => {
            let next = (rows.len() as i64 == limit)
                .then(|| rows.last().map(|r| r.id))
                .flatten();
            json(
                StatusCode::OK,
                &serde_json::json!({"object": "list", "data": rows, "next_before": next}),
            )
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// GET /admin/requests/{request_id}: the request's full record: every
/// attempt's row (route reason, cost, experiment arm) and its shadow copies.
pub async fn request(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match dash::request(source(&st), &id).await {
        Ok(rows) if rows.is_empty() => ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No ledger row for request `{id}`."),
        )
        .with_code("request_not_found")
        .into_response(),
        Ok(rows) => {
            let (shadows, attempts): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|r| r.shadow && r.request_id != id);
            let cost: f64 = attempts.iter().filter_map(|r| r.cost_usd).sum();
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "object": "request",
                    "request_id": id,
                    "cost_usd": cost,
                    "attempts": attempts,
                    "shadows": shadows,
                }),
            )
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// GET /admin/ui/health: each deployment's breaker state and EWMA latency
/// (as `/admin/health`), its rate-limit headroom, its failures in the last
/// hour from the ledger, and the latest failed rows.
pub async fn health(State(st): State<Arc<AppState>>) -> Response {
    let now = st.budgets.clock().now_ms();
    let since = now - 3_600_000;
    let failures = match dash::failures_since(source(&st), since, 500).await {
        Ok(r) => r,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let rt = st.rt();
    let data: Vec<serde_json::Value> = rt
        .health
        .iter()
        .zip(&rt.limits)
        .map(|(h, limits)| {
            let r = h.report();
            // Account rate-limit headroom (`rpm` / `tpm` on the provider), if limited.
            let bucket = |b: Option<&crate::auth::limiter::Bucket>| {
                b.map(|b| {
                    let s = b.snapshot(now);
                    serde_json::json!({"limit": s.limit, "remaining": s.remaining, "reset_ms": s.reset_ms})
                })
            };
            let headroom = limits
                .as_deref()
                .map(|l| serde_json::json!({"rpm": bucket(l.rpm.as_ref()), "tpm": bucket(l.tpm.as_ref())}));
            let recent: Vec<&dash::Record> = failures.iter().filter(|f| f.provider == r.provider).collect();
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("failures_last_hour".into(), recent.len().into());
                o.insert("rate_limits".into(), headroom.unwrap_or_default());
                o.insert(
                    "recent_failures".into(),
                    serde_json::to_value(recent.iter().take(5).collect::<Vec<_>>()).unwrap_or_default(),
                );
            }
            v
        })
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({"object": "list", "data": data, "since_ms": since}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; switchyard_session=abc ; b=2"),
        );
        assert_eq!(session_token(&h), Some("abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("switchyard_session="));
        assert_eq!(session_token(&h), None);
    }

    #[test]
    fn origin_check() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:4000"));
        assert!(!cross_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:4000"));
        assert!(!cross_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(cross_origin(&h));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
