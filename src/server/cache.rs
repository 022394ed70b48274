//! The exact response cache on /v1/chat/completions: lookup before the attempt
//! loop, store after a 200 (a stream once it completed, chunk by chunk as the
//! client got it), replay on a hit (a stream with the same chunks).

use std::sync::Arc;

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::handlers::{json_response, Ctx, Prepared};
use crate::api::chat::ChatRequest;
use crate::api::usage::Usage;
use crate::state::cache::{self, Answer, Cached};
pub(super) use crate::state::cache::{Outcome, X_CACHE};
use crate::state::{AppState, Target};

/// The lookup's result: what happened and, on a miss, where to store.
pub(super) struct Lookup {
    pub(super) outcome: Outcome,
    pub(super) key: Option<Vec<u8>>,
    pub(super) hit: Option<Arc<Cached>>,
}

pub(super) fn lookup(
    st: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    target: &Target,
    req: &ChatRequest,
) -> Lookup {
    lookup_for("chat.completions", st, ctx, headers, target, req)
}

/// [`lookup`] for an endpoint (`"chat.completions"`, `"messages"`): entries of
/// different endpoints never meet (their answers are in different formats).
/// `/v1/messages` streams are not cached.
pub(super) fn lookup_for(
    endpoint: &'static str,
    st: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    target: &Target,
    req: &ChatRequest,
) -> Lookup {
    let s = &ctx.rt.config.cache;
    let bypass = Lookup {
        outcome: Outcome::Bypass,
        key: None,
        hit: None,
    };
    if !s.exact
        || (endpoint != "chat.completions" && req.is_stream())
        || cache::client_bypass(headers)
        || !cache::sampling_allows(s, req.extra.get("temperature"))
        || s.exclude_models.iter().any(|m| **m == *target.public)
    {
        return bypass;
    }
    let Ok(canonical) = serde_json::to_vec(req) else {
        return bypass;
    };
    let ns = ctx.key.as_ref().map_or("", |k| k.name());
    let key = cache::key(endpoint, ns, &target.public, &canonical);
    match st.cache.store.get(&key, ctx.ts_ms) {
        Some(hit) => Lookup {
            outcome: Outcome::Hit,
            key: None,
            hit: Some(hit),
        },
        None => Lookup {
            outcome: Outcome::Miss,
            key: Some(key),
            hit: None,
        },
    }
}

/// Stores a 200 answer under a miss's key.
pub(super) fn store(
    st: &AppState,
    ctx: &Ctx,
    key: Vec<u8>,
    body: Bytes,
    usage: Option<Usage>,
    cost: Option<f64>,
) {
    let ttl_ms = ctx.rt.config.cache.ttl.as_millis().min(i64::MAX as u128) as i64;
    st.cache.store.put(
        key,
        Cached {
            body: Answer::Complete(body),
            usage,
            cost_usd: cost,
            expires_ms: ctx.ts_ms.saturating_add(ttl_ms),
        },
    );
}

/// What a completed stream calls to store itself under a miss's key
/// (streams larger than a quarter of `max_bytes` are not kept).
pub(super) fn stream_capture(st: &AppState, ctx: &Ctx, key: Vec<u8>) -> crate::gateway::relay::Capture {
    let c = &ctx.rt.config.cache;
    let ttl_ms = c.ttl.as_millis().min(i64::MAX as u128) as i64;
    let expires_ms = ctx.ts_ms.saturating_add(ttl_ms);
    let cache = st.cache.clone();
    crate::gateway::relay::Capture::new(
        (c.max_bytes / 4).max(1),
        Box::new(move |chunks, usage, cost| {
            cache.store.put(
                key,
                Cached {
                    body: Answer::Stream(chunks),
                    usage,
                    cost_usd: cost,
                    expires_ms,
                },
            );
        }),
    )
}

/// The response of a hit, with its ledger row (cost 0, `cache_hit = 1`,
/// `saved_usd` = the original call's cost).
pub(super) fn serve_hit(
    st: &AppState,
    ctx: &Ctx,
    p: &Prepared,
    requested: &str,
    target: &Target,
    hit: &Cached,
) -> Option<Response> {
    serve_hit_for("chat.completions", st, ctx, p, requested, target, hit)
}

/// [`serve_hit`] for an endpoint (its ledger rows name it).
pub(super) fn serve_hit_for(
    endpoint: &'static str,
    st: &AppState,
    ctx: &Ctx,
    p: &Prepared,
    requested: &str,
    target: &Target,
    hit: &Cached,
) -> Option<Response> {
    let stream = matches!(hit.body, Answer::Stream(_));
    let mut e = p.entry(ctx, endpoint, requested, target, stream, 1);
    e.status = 200;
    e.latency_ms = ctx.started.elapsed().as_secs_f64() * 1e3;
    e.usage = hit.usage;
    e.cost_usd = Some(0.0);
    e.cache_saved_usd = Some(hit.cost_usd.unwrap_or(0.0));
    st.ledger.record(e);
    match &hit.body {
        Answer::Complete(body) => {
            let mut r = json_response(StatusCode::OK, body.clone());
            ctx.decorate(r.headers_mut(), target, std::time::Duration::ZERO, Some(0.0), 0);
            Some(r)
        }
        Answer::Stream(chunks) => {
            let chunks: Vec<Result<Bytes, std::convert::Infallible>> =
                chunks.iter().cloned().map(Ok).collect();
            let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
            let route = p.route.as_ref();
            Some(super::handlers::sse_response(
                body,
                ctx,
                target,
                std::time::Duration::ZERO,
                0,
                route,
            ))
        }
    }
}
