//! The exact response cache on /v1/chat/completions (non-streamed answers):
//! lookup before the attempt loop, store after a 200, replay on a hit.

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
    let s = &ctx.rt.config.cache;
    let bypass = Lookup {
        outcome: Outcome::Bypass,
        key: None,
        hit: None,
    };
    if !s.exact
        || req.is_stream()
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
    let key = cache::key("chat.completions", ns, &target.public, &canonical);
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
    let Answer::Complete(body) = &hit.body else {
        return None;
    };
    let mut e = p.entry(ctx, "chat.completions", requested, target, false, 1);
    e.status = 200;
    e.latency_ms = ctx.started.elapsed().as_secs_f64() * 1e3;
    e.usage = hit.usage;
    e.cost_usd = Some(0.0);
    e.cache_saved_usd = Some(hit.cost_usd.unwrap_or(0.0));
    st.ledger.record(e);
    let mut r = json_response(StatusCode::OK, body.clone());
    ctx.decorate(r.headers_mut(), target, std::time::Duration::ZERO, Some(0.0), 0);
    Some(r)
}
