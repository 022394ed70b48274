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

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::api::ApiError;
use crate::config::state::OnFailure;
use crate::state::shared::{AdmitRefusal, Admitted, KeyAsk, Shared};
use crate::state::AppState;
use keys::ActiveKey;
use limiter::{format_reset, Denied, Snapshot};

/// One request's use of a key: holds its concurrency slot (released on drop,
/// which for a stream is when the stream ends) and settles its token estimate.
/// With shared state (`[state] redis_url`) the buckets and the slot are the
/// key's shared ones in Redis while it answers, this instance's own otherwise.
///
/// On the routes that go through budget admission (chat, messages, responses,
/// completions) the middleware defers the key's RPM take and concurrency slot
/// while Redis answers: admission then takes them together with the TPM take
/// and the budget reservation in one script call (one round trip). A deferred
/// request that ends before admission (a malformed body, say) still counts
/// against RPM, unchecked (on drop).
#[derive(Debug)]
pub struct KeyUse {
    pub key: Arc<ActiveKey>,
    clock: crate::accounting::budget::Clock,
    /// Where the concurrency slot was taken ([`Slot`] as u8).
    slot: AtomicU8,
    /// Tokens taken from the TPM bucket up front; swapped to 0 by the first
    /// settlement, so later attempts count in full.
    estimated: AtomicU64,
    shared: Option<Arc<Shared>>,
    /// RPM and slot not taken yet (admission takes them).
    deferred: AtomicBool,
    /// The key's limits were taken (admission ran once).
    admitted: AtomicBool,
    /// Whether the TPM take went to the shared bucket.
    tpm_shared: AtomicBool,
    /// The buckets as the takes saw them (for `x-ratelimit-*`): RPM, TPM.
    seen: std::sync::Mutex<[Option<Snapshot>; 2]>,
}

/// Where a request's concurrency slot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Slot {
    None = 0,
    Local = 1,
    Shared = 2,
}

/// Why a key's limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Requests(Denied),
    /// Every one of the key's concurrency slots (this many) is in use.
    Concurrency(u64),
    Tokens(Denied),
    /// Shared state is unreachable and `[state] on_failure = "fail_closed"`.
    Unavailable,
}

impl Refused {
    /// The client's error (and the refusal counted in the metrics).
    pub fn error(self, metrics: &crate::metrics::Metrics) -> ApiError {
        match self {
            Refused::Requests(d) => {
                metrics.rejected("rate_limit_requests");
                rate_limited("requests per min (RPM)", d)
            }
            Refused::Concurrency(max) => {
                metrics.rejected("rate_limit_concurrency");
                concurrency_limited(max)
            }
            Refused::Tokens(d) => {
                metrics.rejected("rate_limit_tokens");
                rate_limited("tokens per min (TPM)", d)
            }
            Refused::Unavailable => {
                metrics.rejected("state_unavailable");
                state_unavailable()
            }
        }
    }
}

impl KeyUse {
    pub fn name(&self) -> &str {
        self.key.name()
    }

    fn remember(&self, i: usize, s: Snapshot) {
        if let Ok(mut g) = self.seen.lock() {
            g[i] = Some(s);
        }
    }

    /// The key's part of a shared admission (see [`Shared::admit`]): the deferred
    /// RPM take and slot, and the TPM take of `tokens` (None: no TPM take, as on
    /// routes without admission). None when Redis is not in use or down, or
    /// nothing is left to ask.
    pub fn shared_ask(&self, tokens: Option<u64>) -> Option<(&Arc<Shared>, KeyAsk<'_>)> {
        let sh = self.shared.as_ref().filter(|s| s.is_up())?;
        if self.admitted.load(Ordering::Acquire) {
            return None;
        }
        let deferred = self.deferred.load(Ordering::Acquire);
        let ask = KeyAsk {
            key_id: &self.key.record.id,
            now_ms: self.clock.now_ms(),
            rpm: self.key.rpm.as_ref().filter(|_| deferred).map(|b| b.limit()),
            slot: self
                .key
                .concurrency
                .as_ref()
                .filter(|_| deferred)
                .map(|c| c.max()),
            tpm: self.key.tpm.as_ref().zip(tokens).map(|(b, n)| (b.limit(), n)),
        };
        (ask.rpm.is_some() || ask.slot.is_some() || ask.tpm.is_some()).then_some((sh, ask))
    }

    /// Records what a shared admission took for this key (`tokens` as asked).
    pub fn admitted(&self, a: &Admitted, tokens: Option<u64>) {
        if let Some(s) = a.rpm {
            self.remember(0, s);
        }
        if let (Some(s), Some(n)) = (a.tpm, tokens) {
            self.remember(1, s);
            self.tpm_shared.store(true, Ordering::Release);
            self.estimated.store(n, Ordering::Release);
        }
        if a.slot {
            self.slot.store(Slot::Shared as u8, Ordering::Release);
        }
        self.deferred.store(false, Ordering::Release);
        // Admitted once the TPM part ran (routes without admission ask none).
        if tokens.is_some() {
            self.admitted.store(true, Ordering::Release);
        }
    }

    /// The key's refusal in a shared admission (nothing was taken; a refused
    /// slot or TPM take still counts the request against RPM, as a local one does).
    pub fn refused(&self, r: &AdmitRefusal) -> Option<Refused> {
        Some(match r {
            AdmitRefusal::Rpm(d) => {
                self.deferred.store(false, Ordering::Release);
                self.remember(0, refused_snapshot(*d));
                Refused::Requests(*d)
            }
            AdmitRefusal::Slot(max) => Refused::Concurrency(*max),
            AdmitRefusal::Tpm(d) => Refused::Tokens(*d),
            AdmitRefusal::Budget(_) => return None,
        })
    }

    /// Takes the key's limits when no budget is asked for alongside (`tokens`
    /// as in [`Self::shared_ask`]): one Redis call while it answers, this
    /// instance's own buckets otherwise.
    pub async fn take(&self, tokens: Option<u64>) -> Result<(), Refused> {
        let Some((sh, ask)) = self.shared_ask(tokens) else {
            return self.take_local(tokens);
        };
        match sh.admit(Some(&ask), None).await {
            Some(Ok(a)) => {
                self.admitted(&a, tokens);
                Ok(())
            }
            Some(Err(r)) => Err(self.refused(&r).unwrap_or(Refused::Unavailable)),
            None => self.take_local(tokens),
        }
    }

    /// Takes the key's limits on this instance's own buckets (no Redis, or
    /// `fail_open` while it is down; `fail_closed` refuses instead).
    pub fn take_local(&self, tokens: Option<u64>) -> Result<(), Refused> {
        if self.admitted.load(Ordering::Acquire) {
            return Ok(());
        }
        let closed = self
            .shared
            .as_ref()
            .is_some_and(|s| s.on_failure == OnFailure::FailClosed);
        let now = self.clock.now_ms();
        if self.deferred.swap(false, Ordering::AcqRel) {
            let limited = self.key.rpm.is_some() || self.key.concurrency.is_some();
            if closed && limited {
                return Err(Refused::Unavailable);
            }
            if let Some(b) = &self.key.rpm {
                match b.try_take(1.0, now) {
                    Ok(s) => self.remember(0, s),
                    Err(d) => {
                        self.remember(0, refused_snapshot(d));
                        return Err(Refused::Requests(d));
                    }
                }
            }
            if let Some(c) = &self.key.concurrency {
                if !c.try_acquire() {
                    return Err(Refused::Concurrency(u64::from(c.max())));
                }
                self.slot.store(Slot::Local as u8, Ordering::Release);
            }
        }
        let Some(tokens) = tokens else { return Ok(()) };
        if let Some(b) = &self.key.tpm {
            if closed {
                return Err(Refused::Unavailable);
            }
            b.try_take(tokens as f64, now).map_err(Refused::Tokens)?;
            self.estimated.store(tokens, Ordering::Release);
        }
        self.admitted.store(true, Ordering::Release);
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

/// The RPM headers of a refused request.
fn refused_snapshot(d: Denied) -> Snapshot {
    Snapshot {
        limit: d.limit,
        remaining: 0,
        reset_ms: d.retry_after_ms,
    }
}

impl Drop for KeyUse {
    fn drop(&mut self) {
        match self.slot.load(Ordering::Acquire) {
            x if x == Slot::Local as u8 => {
                if let Some(c) = &self.key.concurrency {
                    c.release();
                }
            }
            x if x == Slot::Shared as u8 => {
                if let Some(sh) = &self.shared {
                    sh.release_slot(&self.key.record.id);
                }
            }
            _ => {}
        }
        // Deferred and never admitted: the request still counts against RPM.
        if self.deferred.load(Ordering::Acquire) {
            if let Some(b) = &self.key.rpm {
                let now = self.clock.now_ms();
                match &self.shared {
                    Some(sh) => sh.adjust(&self.key.record.id, "rpm", b.limit(), 1.0, now),
                    None => b.adjust(1.0, now),
                }
            }
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
    let limited = key.rpm.is_some() || key.concurrency.is_some();
    // Admission takes RPM and the slot with the rest, in one Redis round trip.
    let defer =
        limited && shared.as_ref().is_some_and(|s| s.is_up()) && admits(req.method(), req.uri().path());
    let key_use = Arc::new(KeyUse {
        key: key.clone(),
        clock: keys.clock().clone(),
        slot: AtomicU8::new(Slot::None as u8),
        estimated: AtomicU64::new(0),
        shared,
        deferred: AtomicBool::new(limited),
        admitted: AtomicBool::new(false),
        tpm_shared: AtomicBool::new(false),
        seen: std::sync::Mutex::new([None, None]),
    });
    // RPM and the concurrency slot here on routes without admission, or while
    // Redis is down: one Redis call while it answers, this instance's own
    // buckets otherwise (TPM is taken by admission).
    if limited && !defer {
        if let Err(r) = key_use.take(None).await {
            let mut resp = reject(anthropic, r.error(&st.metrics));
            if let Refused::Requests(_) = r {
                if let Some(s) = key_use.seen.lock().ok().and_then(|g| g[0]) {
                    put_limit(resp.headers_mut(), "requests", s);
                }
                if let Some(t) = &key.tpm {
                    put_limit(resp.headers_mut(), "tokens", t.snapshot(now));
                }
            }
            return resp;
        }
    }
    let ku = key_use.clone();
    req.extensions_mut().insert(key_use);
    let mut resp = next.run(req).await;
    let [rpm, tpm] = ku.seen.lock().map(|g| *g).unwrap_or_default();
    if let Some(s) = rpm {
        put_limit(resp.headers_mut(), "requests", s);
    }
    if let Some(b) = &key.tpm {
        // With shared state, the shared bucket as the TPM take saw it.
        let s = tpm.unwrap_or_else(|| b.snapshot(keys.clock().now_ms()));
        put_limit(resp.headers_mut(), "tokens", s);
    }
    resp
}

/// Whether a request goes through budget admission (which takes the key's
/// limits itself): POST to chat, messages, responses and completions.
fn admits(method: &http::Method, path: &str) -> bool {
    method == http::Method::POST
        && matches!(
            path,
            "/v1/chat/completions"
                | "/chat/completions"
                | "/v1/messages"
                | "/v1/responses"
                | "/responses"
                | "/v1/completions"
                | "/completions"
        )
}

/// 429 for a key whose concurrent requests are all in flight.
pub fn concurrency_limited(max: u64) -> ApiError {
    rate_limited(
        "concurrent requests",
        Denied {
            retry_after_ms: 1000,
            limit: max,
        },
    )
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
