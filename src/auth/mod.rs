//! Client authentication and per-key limits.
//!
//! The middleware in front of the API checks the presented key (Bearer, or
//! `x-api-key` as Anthropic clients send it), its requests-per-minute and
//! concurrency limits, and hands the handler a [`KeyUse`]; the handler checks
//! the model allow-list and tokens per minute once the body is parsed.
//! `x-ratelimit-*` headers go on every response of a limited key.

pub mod keys;
pub mod limiter;
pub mod sessions;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::api::ApiError;
use crate::config::state::OnFailure;
use crate::state::shared::Shared;
use crate::state::AppState;
use keys::ActiveKey;
use limiter::{format_reset, Denied, Snapshot};

/// One request's use of a key: holds its concurrency slot (released on drop,
/// which for a stream is when the stream ends) and settles its token estimate.
/// With shared state (`[state] redis_url`) the buckets and the slot are the
/// key's shared ones in Redis while it answers, this instance's own otherwise.
#[derive(Debug)]
pub struct KeyUse {
    pub key: Arc<ActiveKey>,
    clock: crate::accounting::budget::Clock,
    slot: Slot,
    /// Tokens taken from the TPM bucket up front; swapped to 0 by the first
    /// settlement, so later attempts count in full.
    estimated: AtomicU64,
    shared: Option<Arc<Shared>>,
    /// Whether the TPM take went to the shared bucket.
    tpm_shared: std::sync::atomic::AtomicBool,
    /// The shared TPM bucket after the take (for `x-ratelimit-*-tokens`).
    tpm_seen: std::sync::Mutex<Option<Snapshot>>,
}

/// Where a request's concurrency slot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    None,
    Local,
    Shared,
}

/// Why a limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Limit(Denied),
    /// Shared state is unreachable and `[state] on_failure = "fail_closed"`.
    Unavailable,
}

impl KeyUse {
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// Takes the request's estimated tokens from the key's TPM bucket.
    pub async fn take_tokens(&self, estimate: u64) -> Result<(), Refused> {
        let Some(b) = &self.key.tpm else { return Ok(()) };
        let now = self.clock.now_ms();
        if let Some(sh) = self.shared.as_ref() {
            if sh.is_up() {
                let cap = b.limit();
                match sh
                    .take(&self.key.record.id, "tpm", cap, estimate as f64, now)
                    .await
                {
                    Some(Ok(snap)) => {
                        if let Ok(mut g) = self.tpm_seen.lock() {
                            *g = Some(snap);
                        }
                        self.tpm_shared.store(true, Ordering::Release);
                        self.estimated.store(estimate, Ordering::Release);
                        return Ok(());
                    }
                    Some(Err(d)) => return Err(Refused::Limit(d)),
                    None => {}
                }
            }
            if sh.on_failure == OnFailure::FailClosed {
                return Err(Refused::Unavailable);
            }
        }
        b.try_take(estimate as f64, now).map_err(Refused::Limit)?;
        self.estimated.store(estimate, Ordering::Release);
        Ok(())
    }

    /// Corrects the TPM bucket with the tokens an attempt really used.
    pub fn settle_tokens(&self, actual: u64) {
        let Some(b) = &self.key.tpm else { return };
        let estimated = self.estimated.swap(0, Ordering::AcqRel);
        let delta = actual as f64 - estimated as f64;
        let now = self.clock.now_ms();
        match &self.shared {
            Some(sh) if self.tpm_shared.load(Ordering::Acquire) => {
                sh.adjust(&self.key.record.id, "tpm", b.limit(), delta, now)
            }
            _ => b.adjust(delta, now),
        }
    }
}

impl Drop for KeyUse {
    fn drop(&mut self) {
        match self.slot {
            Slot::Local => {
                if let Some(c) = &self.key.concurrency {
                    c.release();
                }
            }
            Slot::Shared => {
                if let Some(sh) = &self.shared {
                    sh.release_slot(&self.key.record.id);
                }
            }
            Slot::None => {}
        }
    }
}

/// 503 `state_unavailable`: `[state] on_failure = "fail_closed"` while Redis does not answer.
pub fn state_unavailable() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error",
        "The gateway's shared state (Redis) is unreachable and [state] on_failure = \"fail_closed\": requests that need a shared rate limit, concurrency cap or budget are refused until it is back.".to_string(),
    )
    .with_code("state_unavailable");
    e.retry_after = Some(1);
    e
}

pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The presented key: `Authorization: Bearer ...`, else `x-api-key`.
fn presented(h: &HeaderMap) -> Option<&str> {
    if let Some(v) = h.get(header::AUTHORIZATION) {
        let s = v.to_str().ok()?.trim();
        let (scheme, rest) = s.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim());
    }
    h.get(&X_API_KEY).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        message.to_string(),
    )
    .with_code("invalid_api_key")
}

/// 429 `rate_limit_exceeded` with Retry-After.
pub fn rate_limited(what: &str, d: Denied) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "requests",
        format!(
            "Rate limit reached for {what} (limit {}). Please try again in {}.",
            d.limit,
            format_reset(d.retry_after_ms)
        ),
    )
    .with_code("rate_limit_exceeded");
    e.retry_after = Some(d.retry_after_ms.div_ceil(1000).max(1));
    if what.contains("tokens") {
        e.kind = "tokens";
    }
    e
}

/// Renders an auth error in the endpoint's own format (Anthropic's on /v1/messages).
fn reject(anthropic: bool, e: ApiError) -> Response {
    if anthropic {
        let status = e.status;
        let body = crate::providers::anthropic::api_error_to_messages(&e);
        let mut r = (status, body.to_string()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(s) = e.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return r;
    }
    e.into_response()
}

/// Middleware on the client API.
pub async fn require_key(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let keys = &st.keys;
    if !keys.any() && st.open_access {
        return next.run(req).await;
    }
    let anthropic = req.uri().path().starts_with("/v1/messages");
    let Some(secret) = presented(req.headers()).filter(|s| !s.is_empty()) else {
        st.metrics.rejected("auth");
        return reject(
            anthropic,
            unauthorized(
                "You didn't provide an API key. Provide it as `Authorization: Bearer sk-...` (or `x-api-key`).",
            ),
        );
    };
    let Some(key) = keys.lookup(secret) else {
        st.metrics.rejected("auth");
        return reject(anthropic, unauthorized("Incorrect API key provided."));
    };
    let now = keys.clock().now_ms();
    let shared = st.shared.clone();
    let closed = |st: &AppState| {
        st.metrics.rejected("state_unavailable");
        reject(anthropic, state_unavailable())
    };
    // RPM and the concurrency slot: the key's shared ones while Redis answers
    // (both calls in flight at once: one round trip), this instance's own otherwise.
    let (rpm_shared, slot_shared) = match shared.as_ref().filter(|s| s.is_up()) {
        Some(sh) => {
            let id = key.record.id.as_str();
            let r = async {
                match &key.rpm {
                    Some(b) => sh.take(id, "rpm", b.limit(), 1.0, now).await,
                    None => None,
                }
            };
            let c = async {
                match &key.concurrency {
                    Some(c) => sh.acquire_slot(id, c.max()).await,
                    None => None,
                }
            };
            tokio::join!(r, c)
        }
        None => (None, None),
    };
    // A shared slot taken for a request refused after all goes back.
    let give_back = || {
        if let (Some(sh), Some(true)) = (shared.as_ref(), slot_shared) {
            sh.release_slot(&key.record.id);
        }
    };
    let mut rpm = None;
    if let Some(b) = &key.rpm {
        let taken = rpm_shared;
        if taken.is_none()
            && shared
                .as_ref()
                .is_some_and(|s| s.on_failure == OnFailure::FailClosed)
        {
            give_back();
            return closed(&st);
        }
        match taken.unwrap_or_else(|| b.try_take(1.0, now)) {
            Err(d) => {
                give_back();
                st.metrics.rejected("rate_limit_requests");
                let mut r = reject(anthropic, rate_limited("requests per min (RPM)", d));
                put_limit(
                    r.headers_mut(),
                    "requests",
                    Snapshot {
                        limit: d.limit,
                        remaining: 0,
                        reset_ms: d.retry_after_ms,
                    },
                );
                if let Some(t) = &key.tpm {
                    put_limit(r.headers_mut(), "tokens", t.snapshot(now));
                }
                return r;
            }
            Ok(s) => rpm = Some(s),
        }
    }
    let slot = match &key.concurrency {
        None => Slot::None,
        Some(c) => {
            let taken = slot_shared.map(|ok| ok.then_some(Slot::Shared));
            if taken.is_none()
                && shared
                    .as_ref()
                    .is_some_and(|s| s.on_failure == OnFailure::FailClosed)
            {
                return closed(&st);
            }
            match taken.unwrap_or_else(|| c.try_acquire().then_some(Slot::Local)) {
                Some(s) => s,
                None => {
                    st.metrics.rejected("rate_limit_concurrency");
                    let e = rate_limited(
                        "concurrent requests",
                        Denied {
                            retry_after_ms: 1000,
                            limit: u64::from(c.max()),
                        },
                    );
                    return reject(anthropic, e);
                }
            }
        }
    };
    let key_use = Arc::new(KeyUse {
        key: key.clone(),
        clock: keys.clock().clone(),
        slot,
        estimated: AtomicU64::new(0),
        shared,
        tpm_shared: std::sync::atomic::AtomicBool::new(false),
        tpm_seen: std::sync::Mutex::new(None),
    });
    let ku = key_use.clone();
    req.extensions_mut().insert(key_use);
    let mut resp = next.run(req).await;
    if let Some(s) = rpm {
        put_limit(resp.headers_mut(), "requests", s);
    }
    if let Some(b) = &key.tpm {
        // With shared state, the shared bucket as the TPM take saw it.
        let s = ku
            .tpm_seen
            .lock()
            .ok()
            .and_then(|g| *g)
            .unwrap_or_else(|| b.snapshot(keys.clock().now_ms()));
        put_limit(resp.headers_mut(), "tokens", s);
    }
    resp
}

const LIMIT_HEADERS: [[HeaderName; 3]; 2] = [
    [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ],
];

/// `x-ratelimit-limit-<what>`, `-remaining-`, `-reset-` as OpenAI sends them
/// (`what`: "requests" or "tokens").
pub fn put_limit(h: &mut HeaderMap, what: &str, s: Snapshot) {
    let [limit, remaining, reset] = &LIMIT_HEADERS[usize::from(what == "tokens")];
    h.insert(limit.clone(), HeaderValue::from(s.limit));
    h.insert(remaining.clone(), HeaderValue::from(s.remaining));
    if let Ok(v) = HeaderValue::try_from(format_reset(s.reset_ms)) {
        h.insert(reset.clone(), v);
    }
}
