//! `POST /v1/responses` (OpenAI's Responses API, streaming and not),
//! `GET`/`DELETE /v1/responses/{id}`, and the legacy `POST /v1/completions`.
//!
//! Both are translated once into the gateway's internal (chat) request and
//! go through the same [`prepare`] (allow-list, routing, experiments, budget
//! admission) and attempt loop as `/v1/chat/completions`, so keys, limits,
//! budgets, fallback and the ledger apply unchanged. An upstream that
//! speaks the Responses API itself (`responses_api` on an OpenAI provider)
//! gets the request as sent; every other upstream gets the chat
//! translation, and its answer is translated back (see `api/responses.rs`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::handlers::{
    admit_routed, json_response, prepare, read_body, relay_for, route_headers, route_request, sse_response,
    Ctx, Prepared,
};
use crate::accounting::estimate::OutputField;
use crate::accounting::recorder::Recorder;
use crate::api::chat::{ChatRequest, StreamOptions};
use crate::api::completions::{self, CompletionRequest};
use crate::api::responses::{ChunkToResponses, ResponsesRequest, Shell};
use crate::api::ApiError;
use crate::auth::KeyUse;
use crate::gateway::attempt::{self, BoxFut, Call, ChatCall, Served};
use crate::gateway::relay::{translate_events, EventTranslator};
use crate::gateway::sse::{SseEvent, SseSplitter};
use crate::providers::{ByteStream, ChatAnswer, Provider};
use crate::state::response_store::{ResponseStore, Stored};
use crate::state::{AppState, Target};

/// A `/v1/responses` request re-aimed at each target: the body as sent to
/// upstreams that speak the Responses API, the chat translation to the rest.
struct ResponsesCall<'r> {
    chat: &'r mut ChatRequest,
    /// The request body for native upstreams (`previous_response_id` already
    /// expanded when the conversation is stored here).
    native: &'r Map<String, Value>,
    stream: bool,
    /// Whether the latest call went to a native upstream.
    went_native: bool,
}

impl Call for ResponsesCall<'_> {
    fn call<'a>(&'a mut self, provider: &'a Provider, target: &'a Target) -> BoxFut<'a> {
        self.went_native = provider.speaks_responses();
        if self.went_native {
            let mut body = self.native.clone();
            body.insert("model".into(), Value::String(target.upstream.to_string()));
            // The output cap the chat request carries (from `max_output_tokens`, or
            // lowered by admission) applies here too.
            let cap = ["max_completion_tokens", "max_tokens"]
                .iter()
                .filter_map(|k| self.chat.extra.get(*k).and_then(Value::as_u64))
                .min();
            if let Some(n) = cap {
                body.insert("max_output_tokens".into(), n.into());
            }
            // Serialising a Map cannot fail.
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            Box::pin(provider.responses(bytes, self.stream))
        } else {
            self.chat.model.clear();
            self.chat.model.push_str(&target.upstream);
            Box::pin(provider.chat(self.chat, &[]))
        }
    }
}

/// Keeps a finished response for `previous_response_id`.
struct Keep {
    store: Arc<ResponseStore>,
    key_name: Option<String>,
    context: Vec<Value>,
    now_ms: i64,
    expires_ms: i64,
}

impl Keep {
    fn put(self, response: &Value) {
        let Some(id) = response.get("id").and_then(Value::as_str) else {
            return;
        };
        if !matches!(
            response.get("status").and_then(Value::as_str),
            Some("completed" | "incomplete")
        ) {
            return;
        }
        self.store.put(
            id.to_string(),
            Stored {
                key_name: self.key_name,
                expires_ms: self.expires_ms,
                context: self.context,
                response: response.clone(),
            },
            self.now_ms,
        );
    }
}

/// POST /v1/responses
pub async fn create(
    State(st): State<Arc<AppState>>,
    key: Option<Extension<Arc<KeyUse>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = Ctx::new(&st, &headers, key);
    let mut outcome = super::cache::Outcome::Bypass;
    let mut r = match create_inner(&st, &ctx, &headers, body, &mut outcome).await {
        Ok(r) => r,
        Err(e) => ctx.error(e),
    };
    r.headers_mut().insert(super::cache::X_CACHE, outcome.header());
    r
}

fn key_name(ctx: &Ctx) -> Option<String> {
    ctx.key.as_ref().map(|k| k.name().to_string())
}

fn store_unavailable(e: String) -> ApiError {
    tracing::warn!("response store: {e}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "The stored responses could not be read; retry shortly.",
    )
    .with_code("response_store_unavailable")
}

async fn create_inner(
    st: &Arc<AppState>,
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
    outcome: &mut super::cache::Outcome,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, headers, ctx.rt.config.server.max_body_bytes).await?;
    let req = ResponsesRequest::parse(&bytes)?;
    drop(bytes);
    let ttl = ctx.rt.config.ledger.responses_ttl;
    let key_name = key_name(ctx);
    // The conversation so far, when it is stored here.
    let mut history: Option<Vec<Value>> = None;
    if let (Some(prev), Some(_)) = (&req.previous_response_id, ttl) {
        match st.responses.get(prev, key_name.as_deref(), ctx.ts_ms).await {
            Ok(Some(s)) => history = Some(s.history()),
            Ok(None) => {}
            Err(e) => return Err(store_unavailable(e)),
        }
    }
    // Hosted tools, or a previous response we do not have, need an upstream
    // that speaks the Responses API itself (OpenAI keeps its own responses).
    let native_only = !req.hosted.is_empty() || (req.previous_response_id.is_some() && history.is_none());
    let (mut chat, translation) = req.to_chat(history.as_deref().unwrap_or(&[]), native_only)?;
    // The translated request carries the Responses cap as `max_completion_tokens`;
    // a strict-budget cap lands there too and is carried back to native calls.
    let routed = route_request(st, ctx, headers, &chat).await?;
    // The response cache (non-stream; not for requests that build on upstream
    // or stored state: hosted tools, `previous_response_id`), keyed by the body
    // as sent. Right after routing: a hit reserves no budget.
    let mut cached = if req.stream || native_only || req.previous_response_id.is_some() {
        super::cache::Lookup::bypass()
    } else {
        super::cache::lookup_with(
            "responses",
            st,
            ctx,
            headers,
            &routed,
            req.body.get("temperature"),
            || serde_json::to_vec(&req.body).ok(),
        )
        .await
    };
    *outcome = cached.outcome;
    if let Some(hit) = &cached.hit {
        return Ok(super::cache::serve_hit(
            "responses",
            st,
            ctx,
            &routed,
            &req.model,
            hit,
        ));
    }
    let mut p = admit_routed(st, ctx, routed, &mut chat, OutputField::CHAT).await?;
    if native_only {
        p.targets
            .retain(|t| ctx.rt.providers[t.provider].speaks_responses());
        if p.targets.is_empty() {
            if let Some(k) = &ctx.key {
                // Nothing will be sent: give the estimated tokens back.
                k.settle_tokens(0);
            }
            return Err(match (req.hosted_tool_error(), &req.previous_response_id) {
                (Some(e), _) => e,
                (None, Some(prev)) if ttl.is_none() => ApiError::invalid_request(
                    format!(
                        "`previous_response_id` ({prev}) needs stored responses, and response storage is \
                         off on this gateway (ledger.responses_ttl_secs = 0); send the whole \
                         conversation in `input` instead."
                    ),
                    Some("previous_response_id".into()),
                )
                .with_code("response_storage_disabled"),
                (None, prev) => ApiError::invalid_request(
                    format!(
                        "Previous response with id '{}' not found (it expired, was created with \
                         `store: false`, or belongs to another key).",
                        prev.as_deref().unwrap_or_default()
                    ),
                    Some("previous_response_id".into()),
                )
                .with_code("previous_response_not_found"),
            });
        }
    }
    let stream = req.stream;
    if stream {
        // Always ask for usage so the call can be accounted for.
        chat.stream_options
            .get_or_insert_with(StreamOptions::default)
            .include_usage = Some(true);
    }
    let mut native = req.body.clone();
    let mut context = history.clone().unwrap_or_default();
    context.extend(req.input.iter().cloned());
    if let Some(h) = &history {
        native.remove("previous_response_id");
        let mut items: Vec<Value> = h.iter().filter_map(native_history_item).collect();
        items.extend(req.input.iter().cloned());
        native.insert("input".into(), Value::Array(items));
    }
    let requested = req.model.clone();
    let entry = |t: &Target, attempt: u32| p.entry(ctx, "responses", &requested, t, stream, attempt);
    let Prepared {
        ref targets,
        ref route,
        ref acct,
        ..
    } = p;
    let mut call = ResponsesCall {
        chat: &mut chat,
        native: &native,
        stream,
        went_native: false,
    };
    let served = attempt::run(st, &ctx.rt, targets, &mut call, &entry, ctx.started, acct).await;
    let went_native = call.went_native;
    let served = match served {
        Ok(s) => s,
        Err(f) => return Ok(ctx.failed(f, route.as_ref())),
    };
    let Served {
        target,
        answer,
        mut recorder,
        attempts,
        upstream,
    } = served;
    let keep = match (req.store, ttl) {
        (true, Some(ttl)) => Some(Keep {
            store: st.responses.clone(),
            key_name,
            context,
            now_ms: ctx.ts_ms,
            expires_ms: ctx
                .ts_ms
                .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
        }),
        _ => None,
    };
    let shell = Shell::new(&target.public, req.echo());
    match answer {
        ChatAnswer::Complete { body, usage } => {
            match usage {
                Some(u) => recorder.set_usage(u),
                None => recorder.estimate_from_body(&body),
            }
            let (out, value) = if went_native {
                let v = serde_json::from_slice::<Value>(&body).ok();
                (body, v)
            } else {
                match translation.chat_body_to_response(&body, &shell, recorder.usage().as_ref()) {
                    Ok(v) => (Bytes::from(v.to_string()), Some(v)),
                    Err(e) => {
                        recorder.finish(502, Some(e.message.clone()));
                        return Err(e);
                    }
                }
            };
            if let (Some(k), Some(v)) = (keep, &value) {
                k.put(v);
            }
            let cost = recorder.cost();
            if let Some(k) = cached.store_key(ctx, &target) {
                super::cache::store(st, ctx, k, out.clone(), recorder.usage(), cost);
            }
            let mut r = json_response(StatusCode::OK, out);
            ctx.decorate(r.headers_mut(), &target, upstream, cost, attempts);
            if let Some(rr) = &route {
                route_headers(r.headers_mut(), rr);
            }
            recorder.finish(200, None);
            Ok(r)
        }
        ChatAnswer::Stream(upstream_bytes) => {
            let body = if went_native {
                let provider = &ctx.rt.providers[target.provider];
                Body::from_stream(native_events(
                    upstream_bytes,
                    recorder,
                    provider.settings.idle_timeout,
                    provider.name.clone(),
                    ctx.rt.secrets[target.provider].clone(),
                    ctx.rt.health[target.provider].clone(),
                    keep,
                ))
            } else {
                let relay = relay_for(&ctx.rt, &target, upstream_bytes, true, recorder);
                Body::from_stream(translate_events(
                    relay,
                    ToResponses {
                        t: ChunkToResponses::new(shell, translation),
                        keep,
                    },
                ))
            };
            Ok(sse_response(
                body,
                ctx,
                &target,
                upstream,
                attempts,
                route.as_ref(),
            ))
        }
    }
}

/// A stored conversation item as input for a native upstream: item ids are
/// left out (they may be this gateway's, unknown upstream), and reasoning
/// items are kept only with their `encrypted_content` (which OpenAI needs).
fn native_history_item(it: &Value) -> Option<Value> {
    if it.get("type").and_then(Value::as_str) == Some("reasoning") {
        return it
            .get("encrypted_content")
            .is_some_and(Value::is_string)
            .then(|| it.clone());
    }
    let mut it = it.clone();
    if let Some(o) = it.as_object_mut() {
        o.remove("id");
    }
    Some(it)
}

/// Chat SSE (from the relay) -> the Responses event stream; the final
/// response is stored (`keep`) once the stream is over.
struct ToResponses {
    t: ChunkToResponses,
    keep: Option<Keep>,
}

impl EventTranslator for ToResponses {
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Bytes>) -> Result<bool, String> {
        self.t.on_event(ev, out).map_err(|e| e.message)
    }
    fn error_event(&self, message: &str) -> Bytes {
        let msg = json!({"type": "error", "code": "bad_upstream_response",
                         "message": message, "param": null, "sequence_number": 0});
        Bytes::from(format!("event: error\ndata: {msg}\n\n"))
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        self.t.finish(out);
    }
    fn done(&mut self) {
        if let (Some(k), Some(r)) = (self.keep.take(), self.t.final_response()) {
            k.put(r);
        }
    }
}

/// The terminal event types of a Responses stream.
fn terminal_kind(ev: &crate::gateway::sse::SseEvent) -> Option<&'static str> {
    let name = ev.event.as_deref().map(<[u8]>::trim_ascii);
    for kind in [
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
    ] {
        if name == Some(kind.as_bytes()) {
            return Some(kind);
        }
    }
    if name.is_some() {
        return None;
    }
    // No `event:` line: look at the payload's leading `type`.
    let data = ev.data.as_deref()?;
    let head = &data[..data.len().min(64)];
    ["response.completed", "response.incomplete", "response.failed"]
        .into_iter()
        .find(|k| memchr::memmem::find(head, format!("\"{k}\"").as_bytes()).is_some())
}

/// A native upstream's Responses stream, forwarded event by event; usage
/// comes from its terminal event.
fn native_events(
    upstream: ByteStream,
    recorder: Recorder,
    idle: Duration,
    provider: Arc<str>,
    secret: Option<Arc<str>>,
    health: Arc<crate::resilience::health::Health>,
    keep: Option<Keep>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    // A failure after the stream was committed still counts against the deployment.
    let failed = move || {
        health.record(
            crate::resilience::breaker::Permit::Normal,
            crate::resilience::breaker::Outcome::Failure,
            None,
        )
    };
    struct St {
        upstream: ByteStream,
        splitter: SseSplitter,
        recorder: Option<Recorder>,
        queue: VecDeque<Bytes>,
        done: bool,
        status: Option<u16>,
        keep: Option<Keep>,
    }
    fn error_frame(message: &str) -> Bytes {
        let msg = json!({"type": "error", "code": "upstream_error", "message": message, "param": null, "sequence_number": 0});
        Bytes::from(format!("event: error\ndata: {msg}\n\n"))
    }
    let st = St {
        upstream,
        splitter: SseSplitter::new(),
        recorder: Some(recorder),
        queue: VecDeque::new(),
        done: false,
        status: None,
        keep,
    };
    stream::unfold(st, move |mut st| {
        let provider = provider.clone();
        let secret = secret.clone();
        let failed = failed.clone();
        async move {
            loop {
                if let Some(b) = st.queue.pop_front() {
                    return Some((Ok(b), st));
                }
                if st.done {
                    return None;
                }
                match tokio::time::timeout(idle, st.upstream.next()).await {
                    Err(_) => {
                        let m = format!("no stream data for {} ms", idle.as_millis());
                        st.queue.push_back(error_frame(&m));
                        if let Some(r) = st.recorder.take() {
                            r.finish(504, Some(m));
                        }
                        failed();
                        st.done = true;
                    }
                    Ok(Some(Ok(bytes))) => {
                        st.splitter.push(&bytes);
                        while let Some(ev) = st.splitter.next_event() {
                            if let Some(r) = st.recorder.as_mut() {
                                r.mark_first_token();
                            }
                            if let Some(kind) = terminal_kind(&ev) {
                                let v = ev
                                    .data
                                    .as_deref()
                                    .and_then(|d| serde_json::from_slice::<Value>(d).ok());
                                let response = v.as_ref().and_then(|v| v.get("response"));
                                if let (Some(u), Some(r)) = (
                                    response
                                        .and_then(|r| r.get("usage"))
                                        .and_then(crate::api::responses::usage_from_json),
                                    st.recorder.as_mut(),
                                ) {
                                    r.set_usage(u);
                                }
                                if let (Some(k), Some(resp)) = (st.keep.take(), response) {
                                    k.put(resp);
                                }
                                st.status = Some(match kind {
                                    "response.failed" | "error" => 502,
                                    _ => 200,
                                });
                            }
                            st.queue.push_back(ev.raw);
                        }
                    }
                    Ok(Some(Err(e))) => {
                        let api = e.to_api_error(&provider, secret.as_deref());
                        st.queue.push_back(error_frame(&api.message));
                        if let Some(r) = st.recorder.take() {
                            r.finish(api.status.as_u16(), Some(api.message));
                        }
                        failed();
                        st.done = true;
                    }
                    Ok(None) => {
                        if let Some(r) = st.recorder.take() {
                            match st.status {
                                Some(s) => r.finish(s, (s != 200).then(|| "upstream response failed".into())),
                                None => {
                                    let m = "upstream stream ended before response.completed";
                                    st.queue.push_back(error_frame(m));
                                    r.finish(502, Some(m.into()));
                                }
                            }
                        }
                        st.done = true;
                    }
                }
            }
        }
    })
}

/// GET /v1/responses/{id}: a stored response (of the caller's key).
pub async fn retrieve(
    State(st): State<Arc<AppState>>,
    key: Option<Extension<Arc<KeyUse>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = Ctx::new(&st, &headers, key);
    if ctx.rt.config.ledger.responses_ttl.is_none() {
        return ctx.error(not_stored(&id));
    }
    match st.responses.get(&id, key_name(&ctx).as_deref(), ctx.ts_ms).await {
        Ok(Some(s)) => json_response(StatusCode::OK, Bytes::from(s.response.to_string())),
        Ok(None) => ctx.error(not_stored(&id)),
        Err(e) => ctx.error(store_unavailable(e)),
    }
}

/// DELETE /v1/responses/{id}
pub async fn delete(
    State(st): State<Arc<AppState>>,
    key: Option<Extension<Arc<KeyUse>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = Ctx::new(&st, &headers, key);
    if ctx.rt.config.ledger.responses_ttl.is_none() {
        return ctx.error(not_stored(&id));
    }
    match st
        .responses
        .delete(&id, key_name(&ctx).as_deref(), ctx.ts_ms)
        .await
    {
        Ok(true) => json_response(
            StatusCode::OK,
            Bytes::from(json!({"id": id, "object": "response.deleted", "deleted": true}).to_string()),
        ),
        Ok(false) => ctx.error(not_stored(&id)),
        Err(e) => ctx.error(store_unavailable(e)),
    }
}

fn not_stored(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("No response with id '{id}' is stored here."),
    )
    .with_code("not_found")
}

/// POST /v1/completions (legacy)
pub async fn completions(
    State(st): State<Arc<AppState>>,
    key: Option<Extension<Arc<KeyUse>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = Ctx::new(&st, &headers, key);
    match completions_inner(&st, &ctx, &headers, body).await {
        Ok(r) => r,
        Err(e) => ctx.error(e),
    }
}

async fn completions_inner(
    st: &Arc<AppState>,
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, headers, ctx.rt.config.server.max_body_bytes).await?;
    let CompletionRequest { chat: mut req, echo } = CompletionRequest::parse(&bytes)?;
    drop(bytes);
    let p = prepare(st, ctx, headers, &mut req, OutputField::CHAT).await?;
    let stream = req.is_stream();
    let client_wants_usage = req.client_wants_stream_usage();
    if stream {
        req.stream_options
            .get_or_insert_with(StreamOptions::default)
            .include_usage = Some(true);
    }
    let requested = std::mem::take(&mut req.model);
    let entry = |t: &Target, attempt: u32| p.entry(ctx, "completions", &requested, t, stream, attempt);
    let Prepared {
        ref targets,
        ref route,
        ref acct,
        ..
    } = p;
    let mut call = ChatCall {
        req: &mut req,
        forward: &[],
        raw: None,
    };
    let served = match attempt::run(st, &ctx.rt, targets, &mut call, &entry, ctx.started, acct).await {
        Ok(s) => s,
        Err(f) => return Ok(ctx.failed(f, route.as_ref())),
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
            let out = match completions::chat_body_to_completion(&body, &target.public, echo.as_deref()) {
                Ok(v) => v,
                Err(e) => {
                    recorder.finish(502, Some(e.message.clone()));
                    return Err(e);
                }
            };
            let cost = recorder.cost();
            let mut r = json_response(StatusCode::OK, Bytes::from(out.to_string()));
            ctx.decorate(r.headers_mut(), &target, upstream, cost, attempts);
            if let Some(rr) = &route {
                route_headers(r.headers_mut(), rr);
            }
            recorder.finish(200, None);
            Ok(r)
        }
        ChatAnswer::Stream(upstream_bytes) => {
            let relay = relay_for(&ctx.rt, &target, upstream_bytes, client_wants_usage, recorder);
            let model = target.public.clone();
            let mut splitter = SseSplitter::new();
            let mut echo = echo;
            let events = relay.flat_map(move |chunk| {
                let mut out: Vec<Result<Bytes, Infallible>> = Vec::new();
                let Ok(bytes) = chunk;
                splitter.push(&bytes);
                while let Some(ev) = splitter.next_event() {
                    match ev.data.as_deref() {
                        Some(d) => {
                            if let Some(b) = completions::chunk_to_completion(d, &model, &mut echo) {
                                out.push(Ok(b));
                            }
                        }
                        None => out.push(Ok(ev.raw)),
                    }
                }
                stream::iter(out)
            });
            Ok(sse_response(
                Body::from_stream(events),
                ctx,
                &target,
                upstream,
                attempts,
                route.as_ref(),
            ))
        }
    }
}
