//! The exact response cache on /v1/chat/completions, /v1/messages and
//! (non-stream) /v1/responses: lookup
//! right after routing (the model after routing is part of the key), before
//! budget admission, so a hit reserves no budget and takes no tokens per
//! minute; store after a 200 (a stream once it completed, chunk by chunk as the
//! client got it); replay on a hit (a stream with the same chunks).
//!
//! Only what the model the key names answered is stored: an answer from a
//! fallback (the first target failed) or from a budget downgrade is not, nor
//! one a strict budget cut short (its output cap was lowered).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::response::Response;
use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, StatusCode};

use super::handlers::{json_response, Ctx, Routed};
use crate::api::chat::ChatRequest;
use crate::api::usage::Usage;
use crate::state::cache::{self, Answer, Cached};
pub(super) use crate::state::cache::{Outcome, X_CACHE};
use crate::state::{AppState, Target};

/// The lookup's result: what happened and, on a miss, where to store.
pub(super) struct Lookup {
    pub(super) outcome: Outcome,
    key: Option<Vec<u8>>,
    /// The public model the key names.
    model: Option<Arc<str>>,
    pub(super) hit: Option<Arc<Cached>>,
}

impl Lookup {
    pub(super) fn bypass() -> Lookup {
        Lookup {
            outcome: Outcome::Bypass,
            key: None,
            model: None,
            hit: None,
        }
    }

    /// On a miss, the key to store what `served` answered under: only when
    /// the model the key names served it and no strict budget capped it.
    pub(super) fn store_key(&mut self, ctx: &Ctx, served: &Target) -> Option<Vec<u8>> {
        let same = self.model.as_deref().is_some_and(|m| *m == *served.public);
        if !same || ctx.was_clamped() {
            return None;
        }
        self.key.take()
    }
}

/// Looks `req` up for an endpoint (`"chat.completions"`, `"messages"`):
/// entries of different endpoints never meet (their answers are in different
/// formats).
pub(super) async fn lookup(
    endpoint: &'static str,
    st: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    routed: &Routed,
    req: &ChatRequest,
) -> Lookup {
    let temperature = req.extra.get("temperature");
    lookup_with(endpoint, st, ctx, headers, routed, temperature, || {
        serde_json::to_vec(req).ok()
    })
    .await
}

/// [`lookup`] of a request whose canonical bytes `canonical` makes (called
/// only when the cache applies), with its `temperature`.
pub(super) async fn lookup_with(
    endpoint: &'static str,
    st: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    routed: &Routed,
    temperature: Option<&serde_json::Value>,
    canonical: impl FnOnce() -> Option<Vec<u8>>,
) -> Lookup {
    let s = &ctx.rt.config.cache;
    let target = &routed.targets[0];
    if !s.exact
        || cache::client_bypass(headers)
        || !cache::sampling_allows(s, temperature)
        || s.exclude_models.iter().any(|m| **m == *target.public)
    {
        return Lookup::bypass();
    }
    let Some(canonical) = canonical() else {
        return Lookup::bypass();
    };
    let ns = ctx.key.as_ref().map_or("", |k| k.name());
    let key = cache::key(endpoint, ns, &target.public, &canonical);
    match st.cache.get(&key, ctx.ts_ms).await {
        Some(hit) => Lookup {
            outcome: Outcome::Hit,
            key: None,
            model: None,
            hit: Some(hit),
        },
        None => Lookup {
            outcome: Outcome::Miss,
            key: Some(key),
            model: Some(target.public.clone()),
            hit: None,
        },
    }
}

fn expires_ms(ctx: &Ctx) -> i64 {
    let ttl_ms = ctx.rt.config.cache.ttl.as_millis().min(i64::MAX as u128) as i64;
    ctx.ts_ms.saturating_add(ttl_ms)
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
    st.cache.put(
        key,
        Cached {
            body: Answer::Complete(body),
            usage,
            cost_usd: cost,
            expires_ms: expires_ms(ctx),
        },
        ctx.rt.config.cache.ttl,
    );
}

/// What a completed stream calls to store itself under a miss's key (streams
/// larger than `max_entry_bytes` are not kept).
pub(super) fn stream_capture(st: &AppState, ctx: &Ctx, key: Vec<u8>) -> crate::gateway::relay::Capture {
    let (expires_ms, ttl) = (expires_ms(ctx), ctx.rt.config.cache.ttl);
    let cache = st.cache.clone();
    crate::gateway::relay::Capture::new(
        cache.max_entry_bytes(),
        Box::new(move |chunks, usage, cost| {
            cache.put(
                key,
                Cached {
                    body: Answer::Stream(chunks),
                    usage,
                    cost_usd: cost,
                    expires_ms,
                },
                ttl,
            );
        }),
    )
}

/// A translated stream's cache capture (`/v1/messages`): the relay's capture
/// says whether the upstream stream completed (and its usage and cost), and
/// the [`Keep`]'s [`Tee`] keeps the translated chunks the client got; they are
/// stored when both ended well (`complete` judges the translated chunks: the
/// format's end event is there).
pub(super) fn translated_capture(
    st: &AppState,
    ctx: &Ctx,
    key: Vec<u8>,
    complete: fn(&[Bytes]) -> bool,
) -> (crate::gateway::relay::Capture, Keep) {
    type Done = Arc<Mutex<Option<(Option<Usage>, Option<f64>)>>>;
    let done: Done = Arc::new(Mutex::new(None));
    let limit = st.cache.max_entry_bytes();
    let relay_side = {
        let done = done.clone();
        crate::gateway::relay::Capture::new(
            limit,
            Box::new(move |_chunks, usage, cost| {
                *done.lock().unwrap_or_else(|p| p.into_inner()) = Some((usage, cost));
            }),
        )
    };
    let (expires_ms, ttl) = (expires_ms(ctx), ctx.rt.config.cache.ttl);
    let cache = st.cache.clone();
    let keep = Keep {
        limit,
        on_end: Box::new(move |chunks: Vec<Bytes>| {
            let ended = done.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some((usage, cost)) = ended.filter(|_| complete(&chunks)) {
                cache.put(
                    key,
                    Cached {
                        body: Answer::Stream(chunks),
                        usage,
                        cost_usd: cost,
                        expires_ms,
                    },
                    ttl,
                );
            }
        }),
    };
    (relay_side, keep)
}

/// What a [`Tee`] hands its chunks to.
pub(super) struct Keep {
    limit: usize,
    on_end: Box<dyn FnOnce(Vec<Bytes>) + Send>,
}

impl Keep {
    pub(super) fn wrap<S>(self, s: S) -> Tee<S> {
        Tee {
            inner: Box::pin(s),
            chunks: Vec::new(),
            bytes: 0,
            limit: self.limit,
            on_end: Some(self.on_end),
        }
    }
}

/// A stream passed through while a bounded copy of its chunks is kept (the
/// chunks are reference-counted: nothing is copied), handed to `on_end` when
/// the stream ends; given up past `limit` bytes.
pub(super) struct Tee<S> {
    inner: Pin<Box<S>>,
    chunks: Vec<Bytes>,
    bytes: usize,
    limit: usize,
    on_end: Option<Box<dyn FnOnce(Vec<Bytes>) + Send>>,
}

impl<S> Stream for Tee<S>
where
    S: Stream<Item = Result<Bytes, Infallible>>,
{
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(b))) => {
                if this.on_end.is_some() {
                    this.bytes += b.len();
                    if this.bytes > this.limit {
                        this.on_end = None;
                        this.chunks = Vec::new();
                    } else {
                        this.chunks.push(b.clone());
                    }
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(never))) => match never {},
            Poll::Ready(None) => {
                if let Some(f) = this.on_end.take() {
                    f(std::mem::take(&mut this.chunks));
                }
                Poll::Ready(None)
            }
        }
    }
}

/// The response of a hit, with its ledger row (cost 0, `cache_hit = 1`,
/// `saved_usd` = the original call's cost).
pub(super) fn serve_hit(
    endpoint: &'static str,
    st: &AppState,
    ctx: &Ctx,
    routed: &Routed,
    requested: &str,
    hit: &Cached,
) -> Response {
    let target = &routed.targets[0];
    let stream = matches!(hit.body, Answer::Stream(_));
    // First: it joins the experiment arm, whose header the response then carries.
    let mut e = routed.entry(ctx, endpoint, requested, stream);
    let r = match &hit.body {
        Answer::Complete(body) => {
            let mut r = json_response(StatusCode::OK, body.clone());
            ctx.decorate(r.headers_mut(), target, std::time::Duration::ZERO, Some(0.0), 0);
            if let Some(rr) = &routed.route {
                super::handlers::route_headers(r.headers_mut(), rr);
            }
            r
        }
        Answer::Stream(chunks) => {
            let chunks: Vec<Result<Bytes, Infallible>> = chunks.iter().cloned().map(Ok).collect();
            let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
            super::handlers::sse_response(
                body,
                ctx,
                target,
                std::time::Duration::ZERO,
                0,
                routed.route.as_ref(),
            )
        }
    };
    e.status = 200;
    e.latency_ms = ctx.started.elapsed().as_secs_f64() * 1e3;
    e.usage = hit.usage;
    e.cost_usd = Some(0.0);
    e.cache_saved_usd = Some(hit.cost_usd.unwrap_or(0.0));
    st.ledger.record(e);
    r
}
