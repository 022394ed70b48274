//! The Anthropic-compatible endpoint: `POST /v1/messages` (streaming and
//! not) and `POST /v1/messages/count_tokens`, so Anthropic SDK users and
//! tools such as Claude Code can point at Switchyard.
//!
//! The request is translated to the gateway's OpenAI form, routed and served
//! like any chat request (routing, fallback to non-Anthropic providers, cost
//! tracking), and the answer translated back to Anthropic's format.
//! `anthropic-version` and `anthropic-beta` are forwarded to Anthropic upstreams.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::handlers::{
    admit_routed, durable_body, json_response, read_body, relay_for, route_headers, route_request,
    sse_response, Ctx, Prepared,
};
use crate::accounting::estimate::OutputField;
use crate::api::chat::{parse_json, StreamOptions};
use crate::api::ApiError;
use crate::auth::KeyUse;
use crate::gateway::attempt::{self, ChatCall, Served};
use crate::gateway::relay::{translate_events, EventTranslator};
use crate::gateway::sse::SseEvent;
use crate::providers::anthropic::{self, ChunkToMessagesStream};
use crate::providers::ChatAnswer;
use crate::state::{AppState, Target};

const FORWARDED: [HeaderName; 2] = [
    HeaderName::from_static("anthropic-version"),
    HeaderName::from_static("anthropic-beta"),
];

/// Anthropic's error shape (`{"type":"error","error":{...}}`) with the request id.
fn error_response(ctx: &Ctx, e: ApiError) -> Response {
    ctx.log_refused(&e);
    let status = e.status;
    let body = anthropic::api_error_to_messages(&e);
    let mut r = json_response(status, Bytes::from(body.to_string()));
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r.headers_mut()
        .insert("x-request-id", ctx.request_id_header().clone());
    r.extensions_mut().insert(super::handlers::AccessLogged);
    r
}

/// POST /v1/messages
pub async fn messages(
    State(st): State<Arc<AppState>>,
    key: Option<Extension<Arc<KeyUse>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = Ctx::new(&st, &headers, key);
    let mut outcome = super::cache::Outcome::Bypass;
    let mut r = match messages_inner(&st, &ctx, &headers, body, &mut outcome).await {
        Ok(r) => r,
        Err(e) => error_response(&ctx, e),
    };
    r.headers_mut().insert(super::cache::X_CACHE, outcome.header());
    r
}

async fn messages_inner(
    st: &Arc<AppState>,
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
    outcome: &mut super::cache::Outcome,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, headers, ctx.rt.config.server.max_body_bytes).await?;
    let v: Value = parse_json(&bytes)?;
    drop(bytes);
    let mut req = anthropic::messages_to_chat(&v)?;
    let routed = route_request(st, ctx, headers, &req).await?;
    // The cache right after routing: a hit reserves no budget.
    let mut cached = super::cache::lookup("messages", st, ctx, headers, &routed, &req).await;
    *outcome = cached.outcome;
    if let Some(hit) = &cached.hit {
        return Ok(super::cache::serve_hit(
            "messages", st, ctx, &routed, &req.model, hit,
        ));
    }
    let p = admit_routed(st, ctx, routed, &mut req, OutputField::MESSAGES).await?;
    let stream = req.is_stream();
    if stream {
        // The translation back to Anthropic events needs the usage chunk.
        req.stream_options
            .get_or_insert_with(StreamOptions::default)
            .include_usage = Some(true);
    }
    let requested = std::mem::take(&mut req.model);
    let forward: Vec<(HeaderName, HeaderValue)> = FORWARDED
        .iter()
        .filter_map(|k| headers.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    let entry = |t: &Target, attempt: u32| p.entry(ctx, "messages", &requested, t, stream, attempt);
    let Prepared {
        ref targets,
        ref route,
        ref acct,
        ..
    } = p;
    let mut call = ChatCall {
        req: &mut req,
        forward: &forward,
        raw: None,
    };
    let served = match attempt::run(st, &ctx.rt, targets, &mut call, &entry, ctx.started, acct).await {
        Ok(s) => s,
        Err(f) => {
            st.ledger.durable().await;
            let mut r = error_response(ctx, f.error);
            r.headers_mut()
                .insert("x-switchyard-attempts", HeaderValue::from(f.attempts));
            ctx.experiment_header(r.headers_mut());
            return Ok(r);
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
            // The served model, as Anthropic's API answers (`auto` names what answered).
            let out = match anthropic::chat_response_to_messages(&body, &target.public) {
                Ok(v) => v,
                Err(e) => {
                    recorder.finish(502, Some(e.message.clone()));
                    return Err(e);
                }
            };
            let cost = recorder.cost();
            let out = Bytes::from(out.to_string());
            if let Some(k) = cached.store_key(ctx, &target) {
                super::cache::store(st, ctx, k, out.clone(), recorder.usage(), cost);
            }
            let mut r = json_response(StatusCode::OK, out);
            ctx.decorate(r.headers_mut(), &target, upstream, cost, attempts);
            if let Some(rr) = &route {
                route_headers(r.headers_mut(), rr);
            }
            recorder.finish(200, None);
            st.ledger.durable().await;
            Ok(r)
        }
        ChatAnswer::Stream(upstream_bytes) => {
            let relay = relay_for(&ctx.rt, &target, upstream_bytes, true, recorder);
            // Cached as the client gets it: the Anthropic events, once complete.
            let (relay, keep) = match cached.store_key(ctx, &target) {
                Some(k) => {
                    let (c, keep) = super::cache::translated_capture(st, ctx, k, ends_with_message_stop);
                    (relay.with_capture(c), Some(keep))
                }
                None => (relay, None),
            };
            let events = translate_events(relay, ChunkToMessagesStream::new(&target.public));
            let body = match keep {
                Some(keep) => durable_body(st, keep.wrap(events)),
                None => durable_body(st, events),
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

/// Whether a translated stream ended with Anthropic's `message_stop` (it
/// completed, without an error event).
fn ends_with_message_stop(chunks: &[Bytes]) -> bool {
    chunks
        .last()
        .is_some_and(|c| memchr::memmem::find(c, b"event: message_stop").is_some())
}

impl EventTranslator for ChunkToMessagesStream {
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Bytes>) -> Result<bool, String> {
        ChunkToMessagesStream::on_event(self, ev, out).map_err(|e| e.message)
    }
    fn error_event(&self, message: &str) -> Bytes {
        let msg = json!({"type": "error", "error": {"type": "api_error", "message": message}});
        Bytes::from(format!("event: error\ndata: {msg}\n\n"))
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        ChunkToMessagesStream::finish(self, out);
    }
}

/// POST /v1/messages/count_tokens: an estimate (about four characters per
/// token over the text of system, messages and tool definitions).
pub async fn count_tokens(
    State(st): State<Arc<AppState>>,
    key: Option<Extension<Arc<KeyUse>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = Ctx::new(&st, &headers, key);
    let result = async {
        let bytes = read_body(body, &headers, st.rt().config.server.max_body_bytes).await?;
        let v: Value = parse_json(&bytes)?;
        if !v.get("messages").is_some_and(Value::is_array) {
            return Err(ApiError::invalid_request(
                "`messages` must be an array.",
                Some("messages".into()),
            ));
        }
        Ok(json!({"input_tokens": anthropic::count_tokens_estimate(&v)}))
    }
    .await;
    match result {
        Ok(v) => json_response(StatusCode::OK, Bytes::from(v.to_string())),
        Err(e) => error_response(&ctx, e),
    }
    .into_response()
}
