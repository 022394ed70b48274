//! HTTP handlers for the OpenAI-compatible API and the health endpoints.
//!
//! Each handler reads as the pipeline: read body -> parse -> resolve the
//! model -> call the provider (recording to the ledger) -> respond with the
//! x-switchyard-* headers.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::accounting::budget::{BudgetMode, OnExceed, Scope};
use crate::accounting::estimate::{OutputField, PromptInfo};
use crate::accounting::ledger::{LedgerEntry, RoutingRecord};
use crate::api::chat::{ChatRequest, EmbeddingsRequest, StreamOptions};
use crate::api::ApiError;
use crate::auth::KeyUse;
use crate::gateway::attempt::{self, Accounting, ChatCall, EmbeddingsCall, Served};
use crate::gateway::relay::Relay;
use crate::providers::ChatAnswer;
use crate::state::{AppState, Runtime, Target};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");
pub const X_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
pub const X_COST: HeaderName = HeaderName::from_static("x-switchyard-cost-usd");
pub const X_OVERHEAD: HeaderName = HeaderName::from_static("x-switchyard-overhead-ms");
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
/// W3C trace context (accepted from the client, sent upstream).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const X_EXPERIMENT: HeaderName = HeaderName::from_static("x-switchyard-experiment");
/// The output-token cap a strict budget put on the request (set or lowered).
pub const X_MAX_TOKENS_CLAMPED: HeaderName = HeaderName::from_static("x-switchyard-max-tokens-clamped");

type St = State<Arc<AppState>>;

/// Per-request context shared by the handlers.
pub(super) struct Ctx {
    pub(super) started: Instant,
    /// The configuration this request runs on, start to end (reloads swap in new ones).
    pub(super) rt: Arc<Runtime>,
    /// The client's virtual key, when keys are in use.
    pub(super) key: Option<Arc<KeyUse>>,
    metrics: Arc<crate::metrics::Metrics>,
    pub(super) ts_ms: i64,
    pub(super) request_id: String,
    request_id_header: HeaderValue,
    /// `x-switchyard-experiment`, once the request is in a split experiment's arm.
    experiment: std::sync::OnceLock<HeaderValue>,
    /// `x-switchyard-max-tokens-clamped`, once a strict budget capped the answer.
    clamped: std::sync::OnceLock<HeaderValue>,
    /// The client's W3C `traceparent`, if any.
    traceparent: Option<HeaderValue>,
}

impl Ctx {
    pub(super) fn new(st: &AppState, headers: &HeaderMap, key: Option<Extension<Arc<KeyUse>>>) -> Ctx {
        let started = Instant::now();
        let ts_ms = st.budgets.clock().now_ms();
        // Keep the client's id when it is a sane token; otherwise make one.
        let client = headers
            .get(&X_REQUEST_ID)
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .and_then(|v| v.to_str().ok().map(|s| (v.clone(), s.to_string())));
        let (request_id_header, request_id) = match client {
            Some((hv, s)) => (hv, s),
            None => {
                let id = st.next_request_id();
                (
                    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("req_invalid")),
                    id,
                )
            }
        };
        Ctx {
            started,
            rt: st.rt(),
            key: key.map(|Extension(k)| k),
            metrics: st.metrics.clone(),
            ts_ms,
            request_id,
            request_id_header,
            experiment: std::sync::OnceLock::new(),
            clamped: std::sync::OnceLock::new(),
            traceparent: headers.get(TRACEPARENT).filter(|v| v.len() <= 128).cloned(),
        }
    }

    /// The request's trace span (when traces are exported) and the client's
    /// `traceparent` (forwarded upstream when they are not).
    pub(super) fn trace(
        &self,
        st: &AppState,
        operation: &'static str,
        model: &str,
    ) -> (Option<Arc<crate::telemetry::RequestSpan>>, Option<HeaderValue>) {
        if !st.telemetry.enabled() {
            return (None, self.traceparent.clone());
        }
        let parent = self
            .traceparent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(crate::telemetry::parse_traceparent);
        let arrived = std::time::SystemTime::now()
            .checked_sub(self.started.elapsed())
            .unwrap_or_else(std::time::SystemTime::now);
        let span = st
            .telemetry
            .request_span(parent.as_ref(), operation, model, &self.request_id, arrived);
        (span, None)
    }

    /// Tags the request with its experiment arm: the ledger rows (through
    /// the returned tag) and, in split mode, the response header.
    pub(super) fn join_experiment(
        &self,
        a: Option<&crate::experiments::Assigned>,
    ) -> Option<Box<crate::accounting::ledger::ExperimentTag>> {
        let a = a?;
        if let Some(h) = a.header() {
            let _ = self.experiment.set(h.clone());
        }
        Some(a.tag())
    }

    pub(super) fn experiment_header(&self, h: &mut HeaderMap) {
        if let Some(v) = self.experiment.get() {
            h.insert(X_EXPERIMENT, v.clone());
        }
        if let Some(v) = self.clamped.get() {
            h.insert(X_MAX_TOKENS_CLAMPED, v.clone());
        }
    }

    /// Whether a strict budget capped the answer's length.
    pub(super) fn was_clamped(&self) -> bool {
        self.clamped.get().is_some()
    }

    pub(super) fn request_id_header(&self) -> &HeaderValue {
        &self.request_id_header
    }

    pub(super) fn error(&self, e: ApiError) -> Response {
        self.log_refused(&e);
        let mut r = e.into_response();
        r.headers_mut()
            .insert(X_REQUEST_ID, self.request_id_header.clone());
        r.extensions_mut().insert(AccessLogged);
        r
    }

    /// The access line of a request the gateway refused (or failed).
    pub(super) fn log_refused(&self, e: &ApiError) {
        tracing::info!(
            target: "switchyard::access",
            request_id = %self.request_id,
            key = self.key.as_ref().map_or("-", |k| k.name()),
            status = e.status.as_u16(),
            code = e.code.as_deref().unwrap_or("-"),
            "request refused"
        );
    }

    /// The response when no attempt succeeded.
    pub(super) fn failed(&self, f: attempt::Failed, route: Option<&RoutingRecord>) -> Response {
        let mut r = self.error(f.error);
        let h = r.headers_mut();
        h.insert(X_ATTEMPTS, HeaderValue::from(f.attempts));
        self.experiment_header(h);
        if let Some(v) = f.provider.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
            h.insert(X_PROVIDER, v);
        }
        if let Some(rr) = route {
            route_headers(h, rr);
        }
        r
    }

    pub(super) fn entry(
        &self,
        endpoint: &'static str,
        requested: String,
        t: &Target,
        stream: bool,
    ) -> LedgerEntry {
        let mut e = LedgerEntry::pending(
            self.request_id.clone(),
            self.ts_ms,
            endpoint,
            requested,
            t.public.clone(),
            self.rt.providers[t.provider].name.clone(),
            t.upstream.clone(),
            stream,
        );
        e.key_name = self.key.as_ref().map(|k| k.name().to_string());
        e
    }

    /// Adds the identity and timing headers to a successful response.
    pub(super) fn decorate(
        &self,
        h: &mut HeaderMap,
        t: &Target,
        upstream: Duration,
        cost: Option<f64>,
        attempts: u32,
    ) {
        h.insert(X_REQUEST_ID, self.request_id_header.clone());
        h.insert(X_ATTEMPTS, HeaderValue::from(attempts));
        self.experiment_header(h);
        if let Ok(v) = HeaderValue::from_str(&t.public) {
            h.insert(X_MODEL, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.rt.providers[t.provider].name) {
            h.insert(X_PROVIDER, v);
        }
        if let Some(c) = cost {
            if let Ok(v) = HeaderValue::from_str(&format_usd(c)) {
                h.insert(X_COST, v);
            }
        }
        let total = self.started.elapsed();
        let overhead = total.saturating_sub(upstream);
        self.metrics.overhead(overhead.as_secs_f64());
        let mut s = String::with_capacity(64);
        push_ms(&mut s, overhead);
        if let Ok(v) = HeaderValue::from_str(&s) {
            h.insert(X_OVERHEAD, v);
        }
        s.clear();
        s.push_str("gateway;dur=");
        push_ms(&mut s, overhead);
        s.push_str(", upstream;dur=");
        push_ms(&mut s, upstream);
        if let Ok(v) = HeaderValue::from_str(&s) {
            h.insert(SERVER_TIMING, v);
        }
    }
}

/// Milliseconds with three decimals (`12.345`), rounded to the microsecond:
/// integer digits instead of float formatting, which showed up in profiles.
fn push_ms(s: &mut String, d: Duration) {
    let micros = d.as_nanos().saturating_add(500) / 1000;
    s.push_str(itoa::Buffer::new().format(micros / 1000));
    s.push('.');
    let frac = (micros % 1000) as u32;
    for div in [100, 10, 1] {
        s.push(char::from(b'0' + ((frac / div) % 10) as u8));
    }
}

/// USD with 12 decimals, trailing zeros trimmed: `0.0000224`, `0.001285`, `0`.
pub fn format_usd(c: f64) -> String {
    // Integer arithmetic on pico-dollars: `format!("{c:.12}")` takes the
    // slow exact float path and showed up in profiles.
    if !c.is_finite() || c.abs() >= 1e6 {
        let s = format!("{c:.12}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return if s.is_empty() || s == "-" {
            "0".into()
        } else {
            s.to_string()
        };
    }
    let pico = (c.abs() * 1e12).round() as u64;
    if pico == 0 {
        return "0".into();
    }
    let (whole, frac) = (pico / 1_000_000_000_000, pico % 1_000_000_000_000);
    let mut out = String::with_capacity(24);
    if c < 0.0 {
        out.push('-');
    }
    out.push_str(itoa::Buffer::new().format(whole));
    if frac > 0 {
        // Twelve digits, zero-padded, trailing zeros trimmed (no `format!`).
        let mut digits = [b'0'; 12];
        let mut f = frac;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        let end = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
        out.push('.');
        out.extend(digits[..end].iter().map(|&d| char::from(d)));
    }
    out
}

/// Reads the body up to the configured limit (413 beyond it).
pub(super) async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(ApiError::payload_too_large(limit));
        }
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::payload_too_large(limit))
        }
        Err(e) if super::edge::is_body_timeout(&*e) => Err(super::edge::body_timeout_error()),
        Err(_) => Err(ApiError::invalid_request(
            "The request body could not be read (shorter than its Content-Length, or the connection broke).",
            None,
        )),
    }
}

pub(super) fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    // Room for the gateway's headers (`decorate`, routing, cache) at once,
    // instead of the map growing and rehashing on the way.
    h.reserve(16);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// POST /v1/chat/completions
pub async fn chat_completions(
    State(st): St,
    key: Option<Extension<Arc<KeyUse>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = Ctx::new(&st, &headers, key);
    let mut outcome = super::cache::Outcome::Bypass;
    // Boxed once here: the handler's future is then a pointer, not the
    // whole request's state machine, which axum's service layers would
    // otherwise move into boxes of their own, memcpy after memcpy.
    let mut r = match Box::pin(chat_inner(&st, &ctx, &headers, body, &mut outcome)).await {
        Ok(r) => r,
        Err(e) => ctx.error(e),
    };
    r.headers_mut().insert(super::cache::X_CACHE, outcome.header());
    r
}

async fn chat_inner(
    st: &Arc<AppState>,
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
    outcome: &mut super::cache::Outcome,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, headers, ctx.rt.config.server.max_body_bytes).await?;
    let mut req = ChatRequest::parse(&bytes)?;
    // Small bodies are kept to be forwarded as sent (big ones cost memory instead).
    let bytes = (bytes.len() <= crate::api::raw::RAW_MAX_BYTES).then_some(bytes);
    let routed = route_request(st, ctx, headers, &req).await?;
    // The cache right after routing: a hit reserves no budget.
    let mut cached = super::cache::lookup("chat.completions", st, ctx, headers, &routed, &req).await;
    *outcome = cached.outcome;
    if let Some(hit) = &cached.hit {
        return Ok(super::cache::serve_hit(
            "chat.completions",
            st,
            ctx,
            &routed,
            &req.model,
            hit,
        ));
    }
    let p = admit_routed(st, ctx, routed, &mut req, OutputField::CHAT).await?;
    // Only a strict budget's output cap changes the request in `prepare`: patched in too.
    let cap = match ctx.clamped.get() {
        None => Ok(None),
        Some(_) => OutputField::CHAT
            .get(&req.extra)
            .map(|n| {
                Some(crate::api::raw::Cap {
                    read: OutputField::CHAT.read,
                    write: OutputField::CHAT.write,
                    n,
                })
            })
            .ok_or(()),
    };
    let raw = match (bytes, cap) {
        (Some(b), Ok(cap)) => crate::api::raw::RawChat::scan(b, req.is_stream(), cap),
        _ => None,
    };
    let stream = req.is_stream();
    let client_wants_usage = req.client_wants_stream_usage();
    if stream {
        // Always ask for usage so the call can be accounted for.
        req.stream_options
            .get_or_insert_with(StreamOptions::default)
            .include_usage = Some(true);
    }
    let requested = std::mem::take(&mut req.model);
    let entry = |t: &Target, attempt: u32| p.entry(ctx, "chat.completions", &requested, t, stream, attempt);
    let Prepared {
        ref targets,
        ref route,
        ref acct,
        ..
    } = p;
    let cache_key = prompt_cache_key(ctx, headers, &req, &p.targets);
    let served = crate::providers::openai::with_prompt_cache_key(
        cache_key,
        attempt::run(
            st,
            &ctx.rt,
            targets,
            &mut ChatCall {
                req: &mut req,
                forward: &[],
                raw: raw.as_ref(),
            },
            &entry,
            ctx.started,
            acct,
        ),
    )
    .await;
    let served = match served {
        Ok(s) => s,
        Err(f) => {
            st.ledger.durable().await;
            return Ok(ctx.failed(f, route.as_ref()));
        }
    };
    let Served {
        target,
        answer,
        mut recorder,
        attempts,
        upstream,
    } = served;
    match answer {
        ChatAnswer::Complete { body, usage } => {
            match usage {
                Some(u) => recorder.set_usage(u),
                None => recorder.estimate_from_body(&body),
            }
            let cost = recorder.cost();
            if let Some(k) = cached.store_key(ctx, &target) {
                super::cache::store(st, ctx, k, body.clone(), usage, cost);
            }
            let mut r = json_response(StatusCode::OK, body);
            ctx.decorate(r.headers_mut(), &target, upstream, cost, attempts);
            if let Some(rr) = &route {
                route_headers(r.headers_mut(), rr);
            }
            recorder.finish(200, None);
            st.ledger.durable().await;
            Ok(r)
        }
        ChatAnswer::Stream(upstream_bytes) => {
            let mut relay = relay_for(&ctx.rt, &target, upstream_bytes, client_wants_usage, recorder);
            if let Some(k) = cached.store_key(ctx, &target) {
                relay = relay.with_capture(super::cache::stream_capture(st, ctx, k));
            }
            Ok(sse_response(
                durable_body(st, relay),
                ctx,
                &target,
                upstream,
                attempts,
                route.as_ref(),
            ))
        }
    }
}

/// A streamed body; with `[ledger] durability = "sync"` it ends only once
/// the stream's ledger row (written when the relay finishes) is on disk.
pub(super) fn durable_body<S>(st: &AppState, s: S) -> Body
where
    S: futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    use futures_util::StreamExt;
    if !st.ledger.is_sync() {
        return Body::from_stream(s);
    }
    let ledger = st.ledger.clone();
    let tail = futures_util::stream::once(async move {
        ledger.durable().await;
    })
    .filter_map(|()| async { None::<Result<Bytes, std::convert::Infallible>> });
    Body::from_stream(s.chain(tail))
}

/// The relay for a served stream, wired to its provider's name, secret and health.
pub(super) fn relay_for(
    st: &Runtime,
    target: &Target,
    upstream: crate::providers::ByteStream,
    client_wants_usage: bool,
    recorder: crate::accounting::recorder::Recorder,
) -> Relay {
    let provider = &st.providers[target.provider];
    Relay::new(
        upstream,
        client_wants_usage,
        recorder,
        provider.name.clone(),
        st.secrets[target.provider].clone(),
        provider.settings.idle_timeout,
        Some(st.health[target.provider].clone()),
    )
}

/// A streaming response with the SSE and x-switchyard-* headers.
pub(super) fn sse_response(
    body: Body,
    ctx: &Ctx,
    target: &Target,
    upstream: Duration,
    attempts: u32,
    route: Option<&RoutingRecord>,
) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    ctx.decorate(h, target, upstream, None, attempts);
    if let Some(rr) = route {
        route_headers(h, rr);
    }
    r
}

pub const X_ROUTE_HEADER: HeaderName = HeaderName::from_static("x-switchyard-route");
pub const X_TASK: HeaderName = HeaderName::from_static("x-switchyard-task");
pub const X_TIER: HeaderName = HeaderName::from_static("x-switchyard-tier");
pub const X_ROUTE_REASON: HeaderName = HeaderName::from_static("x-switchyard-route-reason");
pub const X_SESSION: HeaderName = HeaderName::from_static("x-switchyard-session");
pub const X_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");

/// What [`plan`] decided.
pub(super) struct Plan {
    /// Model names in attempt order.
    pub(super) chain: Vec<Arc<str>>,
    pub(super) route: Option<RoutingRecord>,
    /// Whether the first model's configured fallbacks follow the chain.
    pub(super) fallbacks: bool,
    /// The experiment arm the request is in.
    pub(super) experiment: Option<crate::experiments::Assigned>,
}

/// A chat-shaped request between parsing and the attempt loop.
pub(super) struct Prepared {
    pub(super) targets: Vec<Target>,
    pub(super) route: Option<RoutingRecord>,
    pub(super) acct: Accounting,
    routing: Option<Box<RoutingRecord>>,
    experiment: Option<Box<crate::accounting::ledger::ExperimentTag>>,
}

impl Prepared {
    /// The ledger row of one attempt.
    pub(super) fn entry(
        &self,
        ctx: &Ctx,
        endpoint: &'static str,
        requested: &str,
        t: &Target,
        stream: bool,
        attempt: u32,
    ) -> LedgerEntry {
        let mut e = ctx.entry(endpoint, requested.to_string(), t, stream);
        e.attempt = attempt;
        e.routing = self.routing.clone();
        e.experiment = self.experiment.clone();
        e
    }
}

/// A chat-shaped request once routed (allow-list, plan, targets), before
/// budget admission: what a response-cache lookup needs (the model after
/// routing) and a hit's ledger row names.
pub(super) struct Routed {
    pub(super) targets: Vec<Target>,
    pub(super) route: Option<RoutingRecord>,
    experiment: Option<crate::experiments::Assigned>,
}

impl Routed {
    /// The ledger row of a request served without an attempt (a cache hit):
    /// the routing decision and the experiment arm, as an attempt's row has.
    pub(super) fn entry(
        &self,
        ctx: &Ctx,
        endpoint: &'static str,
        requested: &str,
        stream: bool,
    ) -> LedgerEntry {
        let mut e = ctx.entry(endpoint, requested.to_string(), &self.targets[0], stream);
        e.attempt = 1;
        e.routing = self.route.clone().map(Box::new);
        let a = self
            .experiment
            .as_ref()
            .filter(|a| self.targets.first().is_some_and(|t| t.public == *a.model()));
        e.experiment = ctx.join_experiment(a);
        e
    }
}

/// What /v1/chat/completions and /v1/messages share once the request is
/// parsed: [`route_request`], then [`admit_routed`].
pub(super) async fn prepare(
    st: &Arc<AppState>,
    ctx: &Ctx,
    headers: &HeaderMap,
    req: &mut ChatRequest,
    field: OutputField,
) -> Result<Prepared, ApiError> {
    let r = route_request(st, ctx, headers, req).await?;
    admit_routed(st, ctx, r, req, field).await
}

/// The key's allow-list, the plan and the targets.
pub(super) async fn route_request(
    st: &Arc<AppState>,
    ctx: &Ctx,
    headers: &HeaderMap,
    req: &ChatRequest,
) -> Result<Routed, ApiError> {
    check_allowed(ctx, &req.model, headers.get(&X_ROUTE_HEADER))?;
    let Plan {
        chain,
        route,
        fallbacks,
        experiment,
    } = plan(st, ctx, headers, req).await?;
    let names: Vec<&str> = chain.iter().map(|m| &**m).collect();
    let targets = ctx
        .rt
        .targets_with_affinity(&names, fallbacks, affinity_key(headers, req));
    if targets.is_empty() {
        return Err(ApiError::model_not_found(&req.model));
    }
    Ok(Routed {
        targets,
        route,
        experiment,
    })
}

/// Budget admission (which may cap the request's `field`, the inbound
/// format's output-token field, in strict budget mode, or move it to a
/// cheaper tier), and the experiment arm with its shadow copies.
pub(super) async fn admit_routed(
    st: &Arc<AppState>,
    ctx: &Ctx,
    r: Routed,
    req: &mut ChatRequest,
    field: OutputField,
) -> Result<Prepared, ApiError> {
    let Routed {
        mut targets,
        mut route,
        experiment,
    } = r;
    let acct = admit(st, ctx, req, field, &mut route, &mut targets).await?;
    let experiment = still_in_experiment(experiment, &targets);
    let tag = ctx.join_experiment(experiment.as_ref());
    launch_shadows(st, ctx, experiment.as_ref(), req, route.as_ref());
    Ok(Prepared {
        routing: route.clone().map(Box::new),
        targets,
        route,
        acct,
        experiment: tag,
    })
}

/// An experiment assignment holds only while its model serves first (a
/// budget downgrade can move the request elsewhere).
pub(super) fn still_in_experiment(
    a: Option<crate::experiments::Assigned>,
    targets: &[Target],
) -> Option<crate::experiments::Assigned> {
    a.filter(|a| targets.first().is_some_and(|t| t.public == *a.model()))
}

/// Starts the shadow copies of a request in a shadow experiment (never awaited).
pub(super) fn launch_shadows(
    st: &Arc<AppState>,
    ctx: &Ctx,
    a: Option<&crate::experiments::Assigned>,
    req: &ChatRequest,
    route: Option<&RoutingRecord>,
) {
    let Some(a) = a.filter(|a| a.is_shadow_mode()) else {
        return;
    };
    crate::experiments::shadow::launch(
        st,
        &ctx.rt,
        &a.live,
        req,
        crate::experiments::shadow::Origin {
            request_id: ctx.request_id.clone(),
            ts_ms: ctx.ts_ms,
            requested_model: req.model.clone(),
            routing: route.cloned().map(Box::new),
        },
    );
}

/// The experiment arm of a request, from its stickiness key.
fn assign(
    live: &Arc<crate::experiments::Live>,
    ctx: &Ctx,
    session: Option<&str>,
    user: Option<&str>,
) -> crate::experiments::Assigned {
    let key = crate::experiments::live::sticky_key(
        live.settings.sticky_by,
        session,
        user,
        ctx.key.as_ref().map(|k| k.name()),
        &ctx.request_id,
    );
    crate::experiments::Assigned {
        live: live.clone(),
        arm: live.arm_for(key),
    }
}

/// Picks the model chain: a route (model `auto`, another route name, or the
/// `x-switchyard-route` header) classifies and routes; any other model name
/// is served directly (its deployments, then its configured fallbacks),
/// bypassing classification. An experiment on the traffic may then swap
/// the first model for its arm's.
pub(super) async fn plan(
    st: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    req: &ChatRequest,
) -> Result<Plan, ApiError> {
    let rt = &*ctx.rt;
    let key = ctx.key.as_deref();
    let routing = &rt.config.routing;
    let header_str = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let route = match header_str(&X_ROUTE_HEADER) {
        Some(name) => Some(routing.routes.get(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The route `{name}` does not exist."),
            )
            .with_code("route_not_found")
            .with_param("x-switchyard-route")
        })?),
        None => routing.routes.get(&req.model),
    };
    let session = header_str(&X_SESSION);
    let user = req.extra.get("user").and_then(|u| u.as_str());
    let Some(route) = route else {
        // `auto` with no route but upstreams that list their models (a local vLLM / Ollama).
        if req.model == "auto" && headers.get(&X_ROUTE_HEADER).is_none() {
            if let Some(chain) = rt.discovered_auto_chain() {
                return Ok(Plan {
                    chain,
                    route: None,
                    fallbacks: true,
                    experiment: None,
                });
            }
        }
        return Ok(plan_explicit(rt, ctx, req, session, user));
    };
    let forced = match header_str(&X_TASK) {
        None => None,
        Some(t) => Some(routing.classifier.task_index(t).ok_or_else(|| {
            ApiError::invalid_request(
                format!(
                    "Unknown task `{t}` in x-switchyard-task; known tasks: {}.",
                    routing.classifier.tasks().join(", ")
                ),
                Some("x-switchyard-task".into()),
            )
        })?),
    };
    let input = crate::routing::input_from_chat(req);
    let mut d = routing.decide(route, &input.as_input(), forced);
    let budgets = &rt.config.budgets;
    // Pacing on a predictor route: the threshold is divided by how far spend
    // runs ahead of the day, so the strong share falls smoothly.
    let mut threshold_paced = false;
    if let (Some(pr), Some((_, t))) = (&route.predicted, d.predicted) {
        if budgets.any() {
            let scopes = budgets.scopes(Some(&route.name), key_scope(key));
            let ratio = st.budgets.pace_ratio(budgets, &scopes);
            if ratio > 1.0 && t > 0.0 {
                d = routing.decide_at(
                    route,
                    &input.as_input(),
                    forced,
                    Some(pr.threshold.min(t) / ratio as f32),
                );
                threshold_paced = true;
            }
        }
    }
    if let Some(last) = route.predicted.as_ref().and_then(|p| p.tiers.last()) {
        st.metrics.routed(&route.name, d.tier, d.tier == last.as_str());
    }
    // Pacing: a low-priority task moves down a tier while spend runs ahead of the day.
    let task_route = &route.tasks[d.task.min(route.tasks.len().saturating_sub(1))];
    let paced =
        (route.predicted.is_none() && task_route.priority == crate::config::Priority::Low && budgets.any())
            .then(|| budgets.scopes(Some(&route.name), key_scope(key)))
            .filter(|scopes| st.budgets.pacing(budgets, scopes))
            .and_then(|_| lower_tier(rt, d.tier));
    let (tier, chain_models) = match &paced {
        Some((t, c)) => (t.as_str(), c.as_slice()),
        None => (d.tier, d.chain),
    };
    let proposed = chain_models.first().map(String::as_str).unwrap_or_default();
    let task_name = routing.task_name(d.task);
    let experiment = rt
        .experiments
        .iter()
        .find(|e| e.matches_route(&route.name, task_name, proposed))
        .map(|live| assign(live, ctx, session, user));
    let split = experiment.as_ref().filter(|a| !a.is_shadow_mode());
    let (model, pinned) = match (split, session.or(user)) {
        // The arm replaces session pinning: assignment is sticky itself.
        (Some(a), _) => (a.model().clone(), false),
        (None, Some(key)) if !key.is_empty() => {
            let key = format!("{}\u{1f}{key}", route.name);
            pick_session(st, rt, &key, proposed).await
        }
        _ => (Arc::from(proposed), false),
    };
    // The chosen model first, then the rest of the route's chain as fallbacks.
    let mut chain = vec![model.clone()];
    chain.extend(
        chain_models
            .iter()
            .filter(|m| **m != *model)
            .map(|m| Arc::from(m.as_str())),
    );
    let mut reason = d.reason_text(pinned);
    if paced.is_some() {
        reason.push_str(";paced:budget");
    }
    if threshold_paced {
        reason.push_str(";paced:threshold");
    }
    if let Some(a) = split {
        let _ = write!(reason, ";experiment:{}/{}", a.live.name, a.label());
    }
    let record = RoutingRecord {
        route: route.name.clone(),
        task: task_name.to_string(),
        confidence: d.confidence,
        complexity: d.complexity,
        tier: if pinned || split.is_some() {
            target_tier(rt, &model, tier)
        } else {
            tier.to_string()
        },
        reason,
    };
    Ok(Plan {
        chain,
        route: Some(record),
        fallbacks: false,
        experiment,
    })
}

/// An explicit model name: its deployments and fallbacks; in a split
/// experiment's candidate arm, the candidate first, then the model and its fallbacks.
fn plan_explicit(
    rt: &Runtime,
    ctx: &Ctx,
    req: &ChatRequest,
    session: Option<&str>,
    user: Option<&str>,
) -> Plan {
    let mut plan = Plan {
        chain: vec![Arc::from(req.model.as_str())],
        route: None,
        fallbacks: true,
        experiment: None,
    };
    if rt.experiments.is_empty() {
        return plan;
    }
    let resolved = rt
        .config
        .aliases
        .get(&req.model)
        .map_or(req.model.as_str(), String::as_str);
    let Some(live) = rt.experiments.iter().find(|e| e.matches_model(resolved)) else {
        return plan;
    };
    let a = assign(live, ctx, session, user);
    if a.arm.is_some() && !a.is_shadow_mode() {
        let mut chain = vec![a.model().clone(), Arc::from(resolved)];
        if let Some(m) = rt.config.models.get(resolved) {
            chain.extend(m.fallbacks.iter().map(|f| Arc::from(f.as_str())));
        }
        plan.chain = chain;
        plan.fallbacks = false;
    }
    plan.experiment = Some(a);
    plan
}

/// The session of a request: `x-switchyard-session`, else the OpenAI `user`.
fn session_of<'a>(headers: &'a HeaderMap, req: &'a ChatRequest) -> Option<&'a [u8]> {
    headers
        .get(&X_SESSION)
        .map(HeaderValue::as_bytes)
        .filter(|s| !s.is_empty())
        .or_else(|| req.extra.get("user").and_then(|u| u.as_str()).map(str::as_bytes))
        .filter(|s| !s.is_empty())
}

/// The `prompt_cache_key` OpenAI upstreams get when the client sent none: a
/// hash of the virtual key's name and the session, else of the key alone;
/// None without either, or when no target's provider sends one.
fn prompt_cache_key(
    ctx: &Ctx,
    headers: &HeaderMap,
    req: &ChatRequest,
    targets: &[Target],
) -> Option<Arc<str>> {
    let wanted = targets
        .iter()
        .any(|t| ctx.rt.providers[t.provider].settings.prompt_cache_key);
    if !wanted || req.extra.contains_key("prompt_cache_key") {
        return None;
    }
    let session = session_of(headers, req);
    let key = ctx.key.as_ref().map(|k| k.name().as_bytes());
    if session.is_none() && key.is_none() {
        return None;
    }
    use crate::experiments::assign::{fnv1a, FNV_OFFSET};
    let h = fnv1a(
        fnv1a(fnv1a(FNV_OFFSET, key.unwrap_or_default()), &[0x1f]),
        session.unwrap_or_default(),
    );
    let mut s = String::with_capacity(19);
    s.push_str("sy-");
    let _ = write!(s, "{h:016x}");
    Some(Arc::from(s))
}

/// Prefixes at least this long (bytes of the first message) keep their deployment.
const AFFINITY_PREFIX_BYTES: usize = 4096;

/// What keeps a request on one deployment of its model (see
/// `Runtime::targets_with_affinity`): the session, else a long first message
/// (a system prompt), hashed (FNV-1a).
fn affinity_key(headers: &HeaderMap, req: &ChatRequest) -> Option<u64> {
    use crate::experiments::assign::{fnv1a, FNV_OFFSET};
    if let Some(s) = session_of(headers, req) {
        return Some(fnv1a(FNV_OFFSET, s));
    }
    let text = req.messages.first()?.content.as_ref()?.as_str()?;
    (text.len() >= AFFINITY_PREFIX_BYTES)
        .then(|| fnv1a(FNV_OFFSET, &text.as_bytes()[..AFFINITY_PREFIX_BYTES]))
}

/// The session's pinned model: shared by every instance on Redis while it
/// answers, this instance's own otherwise.
async fn pick_session(st: &AppState, rt: &Runtime, key: &str, proposed: &str) -> (Arc<str>, bool) {
    let idle = rt.config.routing.session_idle;
    if let Some(sh) = st.shared.as_ref().filter(|s| s.is_up() && !idle.is_zero()) {
        if let Some(p) = sh.pin(key, proposed, idle, |m| rt.resolve(m).is_some()).await {
            return p;
        }
    }
    st.sessions
        .pick(key, proposed, |m| rt.resolve(m).is_some(), Instant::now())
}

/// The next cheaper tier that has models, and its models (cheapest first).
fn lower_tier(rt: &Runtime, tier: &str) -> Option<(String, Vec<String>)> {
    let tiers = &rt.config.routing.tiers;
    let at = tiers.iter().position(|t| t == tier)?;
    tiers[..at].iter().rev().find_map(|t| {
        let models = crate::routing::policy::tier_models(&rt.config.models, t);
        (!models.is_empty()).then(|| (t.clone(), models))
    })
}

/// Budget admission: reserves the request's maximum cost in every budget
/// that applies. When a budget has no room, routed requests move to the
/// cheapest tier if `budgets.on_exceed = "downgrade"`; otherwise 429.
///
/// In strict mode (the default) the request's output-token `field` is capped
/// at what the room affords (a request without one gets at most
/// `reserve_output_tokens`) and exactly that cost is reserved, so the answer
/// cannot cost more than its reservation (see [`Budgets::reserve_output`]).
///
/// [`Budgets::reserve_output`]: crate::accounting::budget::Budgets::reserve_output
pub(super) async fn admit(
    st: &AppState,
    ctx: &Ctx,
    req: &mut ChatRequest,
    field: OutputField,
    route: &mut Option<RoutingRecord>,
    targets: &mut Vec<Target>,
) -> Result<Accounting, ApiError> {
    let rt = &ctx.rt;
    let budgets = &rt.config.budgets;
    let mut prompt = PromptInfo::from_chat_with(req, field);
    if prompt.max_output == Some(0) {
        let name = field.name_in(&req.extra);
        return Err(ApiError::invalid_request(
            format!("`{name}` must be at least 1."),
            Some(name.into()),
        ));
    }
    let estimated_tokens = prompt.token_estimate();
    let key = ctx.key.as_deref();
    let (trace, client_traceparent) = ctx.trace(st, "chat", &req.model);
    let mut acct = Accounting {
        prompt: None,
        reservation: None,
        key: ctx.key.clone(),
        estimated_tokens,
        trace,
        client_traceparent,
    };
    let scopes = budgets.scopes(
        route.as_ref().map(|r| r.route.as_str()),
        key_scope(ctx.key.as_deref()),
    );
    if scopes.is_empty() {
        // The key's limits alone (one round trip with Redis).
        if let Some(k) = key {
            k.take(Some(estimated_tokens))
                .await
                .map_err(|r| r.error(&st.metrics))?;
        }
        acct.prompt = Some(Arc::new(prompt));
        return Ok(acct);
    }
    let strict = budgets.mode == BudgetMode::Strict;
    // Strict: the answer may use what the client asked for, else the reserve.
    let wanted = prompt
        .max_output
        .unwrap_or(u64::from(budgets.reserve_output_tokens));
    let ask = Ask {
        settings: budgets,
        scopes: &scopes,
        strict,
        wanted,
        prompt: &prompt,
    };
    let first = reserve(st, &ask, targets, key).await;
    let granted = match first {
        Ok(g) => Ok(g),
        Err(Refusal::Exceeded(exceeded)) => {
            let mut downgraded = None;
            if let (OnExceed::Downgrade, Some(rr)) = (budgets.on_exceed, route.as_mut()) {
                let cheapest = rt.config.routing.tiers.first().cloned().unwrap_or_default();
                let models = crate::routing::policy::tier_models(&rt.config.models, &cheapest);
                let names: Vec<&str> = models.iter().map(String::as_str).collect();
                let cheaper = rt.targets(&names, false);
                if !cheaper.is_empty() {
                    if let Ok(g) = reserve(st, &ask, &cheaper, key).await {
                        *targets = cheaper;
                        rr.tier = cheapest;
                        rr.reason.push_str(";downgraded:budget");
                        downgraded = Some(g);
                    }
                }
            }
            downgraded.ok_or(Refusal::Exceeded(exceeded))
        }
        Err(e) => Err(e),
    };
    match granted {
        Ok((reservation, n)) => {
            // Unpriced models are never charged: nothing to cap for.
            let priced = targets.iter().any(|t| t.price.is_some());
            if strict && priced && prompt.max_output != Some(n) {
                // Set or lowered: the answer (and the TPM estimate) follow the cap.
                // (`ctx.clamped` also tells `chat_inner` to patch the cap into the body.)
                field.set(&mut req.extra, n);
                prompt.max_output = Some(n);
                acct.estimated_tokens = prompt.token_estimate();
                let _ = ctx.clamped.set(HeaderValue::from(n));
            }
            acct.prompt = Some(Arc::new(prompt));
            acct.reservation = Some(Arc::new(reservation));
            Ok(acct)
        }
        Err(refusal) => {
            if let Some(k) = &ctx.key {
                // Nothing will be sent: give the estimated tokens back.
                k.settle_tokens(0);
            }
            match refusal {
                Refusal::Exceeded(exceeded) => {
                    st.metrics.rejected("budget");
                    tracing::info!(scope = %exceeded.scope, period = exceeded.period, "request refused: budget exhausted");
                    Err(budget_error(&exceeded.scope, &exceeded.message()))
                }
                Refusal::Unavailable => {
                    st.metrics.rejected("state_unavailable");
                    Err(crate::auth::state_unavailable())
                }
                Refusal::Key(r) => Err(r.error(&st.metrics)),
            }
        }
    }
}

/// What one budget admission needs (the targets vary when it downgrades).
struct Ask<'a> {
    settings: &'a crate::accounting::budget::BudgetSettings,
    scopes: &'a [(Scope, crate::accounting::budget::Limits)],
    strict: bool,
    /// Output tokens the request wants (strict mode grants at most this many).
    wanted: u64,
    prompt: &'a PromptInfo,
}

enum Refusal {
    Exceeded(crate::accounting::budget::Exceeded),
    /// `[state] on_failure = "fail_closed"` and Redis does not answer.
    Unavailable,
    /// One of the key's own limits (RPM, concurrency, TPM).
    Key(crate::auth::Refused),
}

/// Reserves the request's maximum cost on `ts` in every scope: across every
/// instance in Redis when `[state] redis_url` is set and Redis answers, else
/// (no Redis, or `fail_open` while it is down) on this instance's own counters.
/// The key's limits (`key`: RPM, slot, TPM) are taken in the same call, all or
/// nothing, until they have been taken once.
async fn reserve(
    st: &AppState,
    a: &Ask<'_>,
    ts: &[Target],
    key: Option<&KeyUse>,
) -> Result<(crate::accounting::budget::Reservation, u64), Refusal> {
    let settings = a.settings;
    let scopes = a.scopes.to_vec();
    let lines = if a.strict {
        cost_lines(ts, a.prompt)
    } else {
        Vec::new()
    };
    let estimate = if a.strict {
        0.0
    } else {
        let worst = a.prompt.worst_case_usage(settings.reserve_output_tokens);
        ts.iter()
            .filter_map(|t| t.price.map(|p| p.cost(&worst)))
            .fold(0.0, f64::max)
    };
    let need = a.wanted.min(u64::from(settings.min_output_tokens).max(1));
    if let Some(shared) = &st.shared {
        use crate::state::shared::{AdmitRefusal, Ask as SharedAsk, BudgetAsk, RedisHold};
        if shared.is_up() {
            let (day, month) = st.budgets.period_numbers(settings.timezone);
            let keys = shared.budget_keys(&scopes, day, month);
            let ask = if a.strict {
                SharedAsk::Lines {
                    lines: &lines,
                    wanted: a.wanted,
                    need,
                }
            } else {
                SharedAsk::Fixed(estimate)
            };
            let tokens = a.prompt.token_estimate();
            let key_ask = key.and_then(|k| k.shared_ask(Some(tokens))).map(|(_, ask)| ask);
            let budget = BudgetAsk {
                scopes: &scopes,
                keys: &keys,
                ask,
            };
            match shared.admit(key_ask.as_ref(), Some(budget)).await {
                Some(Ok(admitted)) => {
                    if let Some(k) = key.filter(|_| key_ask.is_some()) {
                        k.admitted(&admitted, Some(tokens));
                    }
                    let (n, amount) = admitted.budget.unwrap_or((0, 0.0));
                    let n = if a.strict { n } else { a.wanted };
                    let hold = Box::new(RedisHold {
                        shared: shared.clone(),
                        keys,
                    });
                    let r = st.budgets.hold_shared(settings, scopes, amount, hold);
                    return Ok((r, n));
                }
                Some(Err(AdmitRefusal::Budget(refused))) => {
                    let worst = |n: u64| lines.iter().map(|l| l.at(n).max(0.0)).fold(0.0, f64::max);
                    let scope = scopes
                        .get(refused.scope)
                        .map_or(Scope::Global, |(s, _)| s.clone());
                    return Err(Refusal::Exceeded(crate::accounting::budget::Exceeded {
                        scope,
                        period: refused.period,
                        limit: refused.limit,
                        used: refused.used,
                        estimate: if a.strict { worst(need) } else { estimate },
                    }));
                }
                Some(Err(r)) => {
                    let k = key.and_then(|k| k.refused(&r));
                    return Err(Refusal::Key(k.unwrap_or(crate::auth::Refused::Unavailable)));
                }
                None => {} // went down just now: the policy below
            }
        }
        if shared.on_failure == crate::config::state::OnFailure::FailClosed {
            return Err(Refusal::Unavailable);
        }
    }
    if let Some(k) = key {
        k.take_local(Some(a.prompt.token_estimate()))
            .map_err(Refusal::Key)?;
    }
    if a.strict {
        st.budgets
            .reserve_output(
                settings,
                scopes,
                &lines,
                a.wanted,
                u64::from(settings.min_output_tokens),
            )
            .map(|g| (g.reservation, g.output_tokens))
            .map_err(Refusal::Exceeded)
    } else {
        st.budgets
            .reserve(settings, scopes, estimate)
            .map(|r| (r, a.wanted))
            .map_err(Refusal::Exceeded)
    }
}

/// Each priced target's cost of `prompt` (see [`CostLine::of`]).
///
/// [`CostLine::of`]: crate::accounting::budget::CostLine::of
fn cost_lines(targets: &[Target], prompt: &PromptInfo) -> Vec<crate::accounting::budget::CostLine> {
    targets
        .iter()
        .filter_map(|t| t.price)
        .map(|p| crate::accounting::budget::CostLine::of(&p, prompt))
        .collect()
}

fn budget_error(_scope: &Scope, message: &str) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "budget_exceeded",
        message.to_string(),
    )
    .with_code("budget_exceeded")
}

/// The budget scope of a client key: its name and its own daily budget.
fn key_scope(k: Option<&KeyUse>) -> Option<(&str, crate::accounting::budget::Limits)> {
    k.map(|k| {
        (
            k.name(),
            crate::accounting::budget::Limits {
                daily: k.key.record.spec.daily_budget,
                monthly: None,
            },
        )
    })
}

/// 403 when the client's key may not use the requested model or route.
pub(super) fn check_allowed(
    ctx: &Ctx,
    model: &str,
    route_header: Option<&HeaderValue>,
) -> Result<(), ApiError> {
    let Some(k) = &ctx.key else { return Ok(()) };
    let route = route_header.and_then(|v| v.to_str().ok());
    for name in std::iter::once(model).chain(route) {
        if !k.key.allows(name) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                format!("This API key is not allowed to use `{name}`."),
            )
            .with_code("model_not_allowed")
            .with_param(if Some(name) == route {
                "x-switchyard-route"
            } else {
                "model"
            }));
        }
    }
    Ok(())
}

/// The tier of a pinned model (which may differ from the decision's).
fn target_tier(rt: &Runtime, model: &str, fallback: &str) -> String {
    rt.config
        .models
        .get(model)
        .and_then(|m| m.tier.clone())
        .unwrap_or_else(|| fallback.to_string())
}

pub(super) fn route_headers(h: &mut HeaderMap, r: &RoutingRecord) {
    for (name, value) in [
        (X_ROUTE_HEADER, &r.route),
        (X_TASK, &r.task),
        (X_TIER, &r.tier),
        (X_ROUTE_REASON, &r.reason),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
}

/// POST /v1/embeddings
pub async fn embeddings(
    State(st): St,
    key: Option<Extension<Arc<KeyUse>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = Ctx::new(&st, &headers, key);
    match embeddings_inner(&st, &ctx, &headers, body).await {
        Ok(r) => r,
        Err(e) => ctx.error(e),
    }
}

async fn embeddings_inner(
    st: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, headers, ctx.rt.config.server.max_body_bytes).await?;
    let mut req = EmbeddingsRequest::parse(&bytes)?;
    drop(bytes);
    check_allowed(ctx, &req.model, None)?;
    let targets = ctx.rt.targets(&[req.model.as_str()], true);
    if targets.is_empty() {
        return Err(ApiError::model_not_found(&req.model));
    }
    let requested = std::mem::take(&mut req.model);
    let entry = |t: &Target, attempt: u32| {
        let mut e = ctx.entry("embeddings", requested.clone(), t, false);
        e.attempt = attempt;
        e
    };
    let (trace, client_traceparent) = ctx.trace(st, "embeddings", &requested);
    let acct = Accounting {
        key: ctx.key.clone(),
        trace,
        client_traceparent,
        ..Default::default()
    };
    match attempt::run(
        st,
        &ctx.rt,
        &targets,
        &mut EmbeddingsCall(&mut req),
        &entry,
        ctx.started,
        &acct,
    )
    .await
    {
        Ok(Served {
            target,
            answer: ChatAnswer::Complete { body, usage },
            mut recorder,
            attempts,
            upstream,
        }) => {
            if let Some(u) = usage {
                recorder.set_usage(u);
            }
            let cost = recorder.cost();
            let mut r = json_response(StatusCode::OK, body);
            ctx.decorate(r.headers_mut(), &target, upstream, cost, attempts);
            recorder.finish(200, None);
            st.ledger.durable().await;
            Ok(r)
        }
        Ok(Served { recorder, .. }) => {
            recorder.finish(502, Some("embeddings answered with a stream".into()));
            Err(ApiError::internal("embeddings answered with a stream"))
        }
        Err(f) => {
            st.ledger.durable().await;
            Ok(ctx.failed(f, None))
        }
    }
}

/// GET /v1/models: OpenAI's list, or Anthropic's (paged with `limit`,
/// `after_id`, `before_id`) when the request is Anthropic-style
/// (`anthropic-version` or `x-api-key` header).
pub async fn list_models(State(st): St, headers: HeaderMap, uri: http::Uri) -> Response {
    let rt = st.rt();
    if crate::api::models::is_anthropic_style(&headers) {
        let page = anthropic_page(uri.query().unwrap_or(""));
        let v = crate::api::models::anthropic_list(&rt.all_models(), &page);
        return json_response(StatusCode::OK, Bytes::from(v.to_string()));
    }
    if rt.discovered.load().is_empty() {
        return json_response(StatusCode::OK, rt.models_body.clone());
    }
    let list = crate::api::models::ModelList {
        object: "list",
        data: &rt.all_models(),
    };
    match serde_json::to_vec(&list) {
        Ok(b) => json_response(StatusCode::OK, Bytes::from(b)),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// The Anthropic paging parameters of a query string (unknown ones ignored).
fn anthropic_page(q: &str) -> crate::api::models::AnthropicPage {
    let mut page = crate::api::models::AnthropicPage::default();
    for (k, v) in q.split('&').filter_map(|kv| kv.split_once('=')) {
        match k {
            "limit" => page.limit = v.parse().ok(),
            "after_id" => page.after_id = Some(v.to_string()),
            "before_id" => page.before_id = Some(v.to_string()),
            _ => {}
        }
    }
    page
}

/// GET /v1/models/{id} (Anthropic's object for Anthropic-style requests).
pub async fn get_model(State(st): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let rt = st.rt();
    if crate::api::models::is_anthropic_style(&headers) {
        return match rt.model_info(&id) {
            Some(o) => json_response(
                StatusCode::OK,
                Bytes::from(crate::api::models::anthropic_object(&o).to_string()),
            ),
            None => {
                let e = ApiError::model_not_found(&id);
                let body = crate::providers::anthropic::api_error_to_messages(&e);
                json_response(e.status, Bytes::from(body.to_string()))
            }
        };
    }
    match rt.model_object(&id) {
        Some(b) => json_response(StatusCode::OK, b),
        None => ApiError::model_not_found(&id).into_response(),
    }
}

/// Marks a response whose access line was already written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AccessLogged;

/// Outermost layer: one access line for every error response nothing else
/// logged (authentication 401/403/429, unknown URL 404, wrong method 405,
/// extractor rejections), so every refused request is in the log.
pub async fn log_unlogged_errors(
    State(st): St,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Cheap copies (reference-counted), no allocation on the request path.
    let method = req.method().clone();
    let uri = req.uri().clone();
    let request_id = req.headers().get(&X_REQUEST_ID).cloned();
    let r = next.run(req).await;
    let status = r.status();
    if (status.is_client_error() || status.is_server_error())
        && r.extensions().get::<AccessLogged>().is_none()
        && st.rt().config.log.access
    {
        tracing::info!(
            target: "switchyard::access",
            request_id = %request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
            method = %method,
            path = uri.path(),
            status = status.as_u16(),
            "request refused"
        );
    }
    r
}

/// HEAD / and GET /: 200, for clients and load balancers that check the base URL.
pub async fn root() -> Response {
    json_response(
        StatusCode::OK,
        Bytes::from_static(br#"{"status":"ok","service":"switchyard"}"#),
    )
}

/// GET /health: the process is alive.
pub async fn health() -> Response {
    json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// GET /ready: config loaded and the ledger writer running.
pub async fn ready(State(st): St) -> Response {
    if st.is_ready() {
        json_response(StatusCode::OK, Bytes::from_static(br#"{"status":"ready"}"#))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Bytes::from_static(br#"{"status":"ledger unavailable"}"#),
        )
    }
}

/// Any other URL.
pub async fn not_found(uri: http::Uri) -> Response {
    super::edge::error_for_path(uri.path(), ApiError::not_found(uri.path()))
}

/// A known URL with the wrong method.
pub async fn method_not_allowed(uri: http::Uri) -> Response {
    super::edge::error_for_path(uri.path(), ApiError::method_not_allowed())
}

#[cfg(test)]
mod tests {
    use super::format_usd;

    #[test]
    fn milliseconds_read_as_three_decimals() {
        use std::time::Duration;
        for (d, want) in [
            (Duration::ZERO, "0.000"),
            (Duration::from_nanos(499), "0.000"),
            (Duration::from_nanos(500), "0.001"),
            (Duration::from_micros(1_234), "1.234"),
            (Duration::from_micros(12_345_678), "12345.678"),
            (Duration::from_nanos(999_999_600), "1000.000"),
        ] {
            let mut s = String::new();
            super::push_ms(&mut s, d);
            assert_eq!(s, want, "{d:?}");
        }
        // Agrees with `{:.3}` of the float milliseconds away from rounding ties.
        for us in (0..5_000_000u64).step_by(7_919) {
            let d = Duration::from_micros(us) + Duration::from_nanos(123);
            let mut s = String::new();
            super::push_ms(&mut s, d);
            assert_eq!(s, format!("{:.3}", d.as_secs_f64() * 1e3), "{d:?}");
        }
    }

    #[test]
    fn usd_formatting_matches_fixed_point_with_trailing_zeros_trimmed() {
        for (c, want) in [
            (0.0, "0"),
            (0.0000224, "0.0000224"),
            (0.001285, "0.001285"),
            (0.0034, "0.0034"),
            (1.5, "1.5"),
            (12.0, "12"),
            (-0.25, "-0.25"),
            (1e-13, "0"),
            (0.1 + 0.2, "0.3"),
        ] {
            assert_eq!(format_usd(c), want, "{c}");
        }
        for i in 0..2000u32 {
            let c = f64::from(i) * 0.000_137_9;
            let slow = format!("{c:.12}");
            let slow = slow.trim_end_matches('0').trim_end_matches('.');
            let slow = if slow.is_empty() { "0" } else { slow };
            assert_eq!(format_usd(c), slow, "{c}");
        }
    }
}
