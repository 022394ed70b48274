//! The attempt loop: try each target of a plan in order, retrying retryable
//! failures with backoff, skipping deployments whose breaker is open, until
//! one answers or the attempt budget / deadline runs out.
//!
//! A streamed answer counts as served only once its first chunk has arrived:
//! until then a failure moves on to the next target, so the client never sees
//! it. Every attempt that reached a provider gets its own ledger row.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::StatusCode;

use crate::accounting::budget::Reservation;
use crate::accounting::estimate::SharedPrompt;
use crate::accounting::ledger::LedgerEntry;
use crate::accounting::recorder::{Recorder, TokenSink};
use crate::api::chat::{ChatRequest, EmbeddingsRequest};
use crate::api::ApiError;
use crate::gateway::sse::SseSplitter;
use crate::providers::{ChatAnswer, Provider, ProviderError, ProviderErrorKind};
use crate::resilience::backoff;
use crate::resilience::breaker::{Outcome, Permit};
use crate::resilience::health::Health;
use crate::state::{AppState, Runtime, Target};

pub type BoxFut<'a> = Pin<Box<dyn Future<Output = Result<ChatAnswer, ProviderError>> + Send + 'a>>;

/// One kind of upstream call (chat, embeddings), re-aimed at each target.
pub trait Call: Send {
    fn call<'a>(&'a mut self, provider: &'a Provider, target: &'a Target) -> BoxFut<'a>;
}

/// A chat completion; the request's `model` is set to each target's upstream
/// id. `forward` carries client headers for native upstreams (anthropic-beta).
pub struct ChatCall<'r> {
    pub req: &'r mut ChatRequest,
    pub forward: &'r [(http::HeaderName, http::HeaderValue)],
    /// The client's body, when `req` is unchanged since parsing but for
    /// `model` and `stream_options` (see [`Provider::chat_raw`]).
    pub raw: Option<&'r crate::api::raw::RawChat>,
}

impl Call for ChatCall<'_> {
    fn call<'a>(&'a mut self, provider: &'a Provider, target: &'a Target) -> BoxFut<'a> {
        self.req.model.clear();
        self.req.model.push_str(&target.upstream);
        Box::pin(provider.chat_raw(self.req, self.forward, self.raw))
    }
}

/// An embeddings request.
pub struct EmbeddingsCall<'r>(pub &'r mut EmbeddingsRequest);

impl Call for EmbeddingsCall<'_> {
    fn call<'a>(&'a mut self, provider: &'a Provider, target: &'a Target) -> BoxFut<'a> {
        self.0.model.clear();
        self.0.model.push_str(&target.upstream);
        Box::pin(async move {
            let a = provider.embeddings(self.0).await?;
            Ok(ChatAnswer::Complete {
                body: a.body,
                usage: a.usage,
            })
        })
    }
}

/// The served answer and what it took.
pub struct Served {
    pub target: Target,
    pub answer: ChatAnswer,
    /// The ledger guard of the successful attempt (streams finish it at the end).
    pub recorder: Recorder,
    pub attempts: u32,
    /// Time from sending the successful attempt to its first byte (or whole body).
    pub upstream: Duration,
}

/// Nothing could serve the request.
pub struct Failed {
    pub error: ApiError,
    pub attempts: u32,
    /// The provider of the last attempt, if any.
    pub provider: Option<Arc<str>>,
}

/// Records `Abandoned` if an attempt is dropped mid-flight (client hung up),
/// so a half-open probe slot is never leaked.
struct PermitGuard<'h> {
    health: &'h Health,
    permit: Option<Permit>,
}

impl PermitGuard<'_> {
    fn record(mut self, outcome: Outcome, latency: Option<Duration>) {
        if let Some(p) = self.permit.take() {
            self.health.record(p, outcome, latency);
        }
    }
}

impl Drop for PermitGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.health.record(p, Outcome::Abandoned, None);
        }
    }
}

/// How an upstream error steers the loop.
enum Next {
    /// The client's mistake: answer with it, no fallback.
    Return,
    /// Try the same target again (after backoff), if retries remain.
    Retry,
    /// Move on to the next target.
    Fallback,
}

fn classify(e: &ProviderError) -> (Outcome, Next) {
    match (e.kind, e.status) {
        // The gateway's own resource exhaustion: not the provider's fault.
        (ProviderErrorKind::Local, _) => (Outcome::Neutral, Next::Retry),
        // The gateway's own credentials were refused: this deployment is unusable.
        (ProviderErrorKind::Status, Some(401 | 403 | 407)) => (Outcome::Failure, Next::Fallback),
        (ProviderErrorKind::Status, Some(s)) if (400..500).contains(&s) && !e.is_retryable() => {
            (Outcome::Neutral, Next::Return)
        }
        _ if e.is_retryable() => (Outcome::Failure, Next::Retry),
        _ => (Outcome::Failure, Next::Fallback),
    }
}

/// Per-request accounting every attempt's ledger guard carries.
#[derive(Default)]
pub struct Accounting {
    /// The prompt, for estimating usage the provider does not report.
    pub prompt: Option<SharedPrompt>,
    /// The request's budget reservation.
    pub reservation: Option<Arc<Reservation>>,
    /// The client key (its TPM bucket is settled with the real usage).
    pub key: Option<Arc<crate::auth::KeyUse>>,
    /// Tokens estimated before the call (prompt plus max output), for TPM limits.
    pub estimated_tokens: u64,
    /// The request's trace span, when traces are exported.
    pub trace: Option<Arc<crate::telemetry::RequestSpan>>,
    /// The client's `traceparent`, forwarded upstream as is when traces are not exported.
    pub client_traceparent: Option<http::HeaderValue>,
}

/// Runs `call` against `targets` in order. `entry` builds the ledger row
/// for an attempt (target, 1-based attempt number).
pub async fn run(
    st: &AppState,
    rt: &Runtime,
    targets: &[Target],
    call: &mut dyn Call,
    entry: &(dyn Fn(&Target, u32) -> LedgerEntry + Sync),
    started: Instant,
    acct: &Accounting,
) -> Result<Served, Failed> {
    let r = &rt.config.resilience;
    let deadline = tokio::time::Instant::now() + r.deadline;
    let mut attempts = 0u32;
    let mut last: Option<(ApiError, Arc<str>)> = None;
    let mut skipped = 0usize;
    let mut limited: Option<crate::auth::limiter::Denied> = None;
    let clock = st.budgets.clock();
    'targets: for target in targets {
        let provider = &rt.providers[target.provider];
        let health = &rt.health[target.provider];
        let limits = rt.limits[target.provider].as_ref();
        let settings = &provider.settings;
        let mut tries_here = 0u32;
        loop {
            if attempts >= r.max_attempts || tokio::time::Instant::now() >= deadline {
                break 'targets;
            }
            // Account limits: shared by every instance on Redis while it answers.
            let mut shared_limits = false;
            if let Some(l) = limits {
                let now = clock.now_ms();
                let mut taken = None;
                if let Some(sh) = st.shared.as_ref().filter(|s| s.is_up()) {
                    taken = sh
                        .take_deployment(&provider.name, l, acct.estimated_tokens, now)
                        .await;
                    shared_limits = taken.is_some();
                }
                if let Err(d) = taken.unwrap_or_else(|| l.try_acquire(acct.estimated_tokens, now)) {
                    st.metrics.skipped(&provider.name);
                    limited =
                        Some(limited.map_or(d, |p| if d.retry_after_ms < p.retry_after_ms { d } else { p }));
                    continue 'targets;
                }
            }
            let Some(permit) = health.acquire() else {
                if let Some(l) = limits {
                    // Give the request back: nothing was sent.
                    match st.shared.as_ref().filter(|_| shared_limits) {
                        Some(sh) => {
                            sh.release_deployment(&provider.name, l, acct.estimated_tokens, clock.now_ms())
                        }
                        None => l.release(acct.estimated_tokens, clock.now_ms()),
                    }
                }
                skipped += 1;
                continue 'targets;
            };
            let guard = PermitGuard {
                health,
                permit: Some(permit),
            };
            attempts += 1;
            tries_here += 1;
            let mut recorder =
                Recorder::new(st.ledger.clone(), entry(target, attempts), started, target.price)
                    .with_request(acct.prompt.clone(), acct.reservation.clone());
            if let Some(k) = &acct.key {
                recorder.add_sink(TokenSink::Key(k.clone()));
            }
            if let Some(l) = limits.filter(|l| l.tpm.is_some()) {
                match (st.shared.as_ref().filter(|_| shared_limits), &l.tpm) {
                    (Some(sh), Some(t)) => recorder.add_sink(TokenSink::SharedDeployment(
                        sh.clone(),
                        provider.name.clone(),
                        t.limit(),
                        acct.estimated_tokens,
                        clock.clone(),
                    )),
                    _ => recorder.add_sink(TokenSink::Deployment(
                        l.clone(),
                        acct.estimated_tokens,
                        clock.clone(),
                    )),
                }
            }
            let traceparent = match &acct.trace {
                Some(t) => {
                    let span = t.attempt(&provider.name, settings.kind.as_str(), &target.upstream, attempts);
                    let tp = span.traceparent();
                    recorder.set_span(span);
                    tp
                }
                None => acct.client_traceparent.clone(),
            };
            let _in_flight = health.start();
            let sent = Instant::now();
            let limit = tokio::time::Instant::now() + settings.first_byte_timeout;
            let upstream_call =
                crate::telemetry::with_upstream_traceparent(traceparent, call.call(provider, target));
            let result = match tokio::time::timeout_at(limit.min(deadline), upstream_call).await {
                Ok(Ok(ChatAnswer::Stream(s))) => first_event(s, settings.idle_timeout, deadline).await,
                Ok(other) => other,
                Err(_) => Err(ProviderError::new(
                    ProviderErrorKind::Timeout,
                    "no response in time",
                )),
            };
            let upstream = sent.elapsed();
            let e = match result {
                Ok(answer) => {
                    guard.record(Outcome::Success, Some(upstream));
                    if matches!(answer, ChatAnswer::Complete { .. }) {
                        recorder.mark_first_token();
                    }
                    return Ok(Served {
                        target: target.clone(),
                        answer,
                        recorder,
                        attempts,
                        upstream,
                    });
                }
                Err(e) => e,
            };
            let (outcome, next) = classify(&e);
            guard.record(outcome, None);
            let api = e.to_api_error(&provider.name, provider.secret());
            recorder.finish(api.status.as_u16(), Some(api.message.clone()));
            tracing::debug!(provider = %provider.name, attempt = attempts, status = api.status.as_u16(), "upstream attempt failed");
            last = Some((api, provider.name.clone()));
            match next {
                Next::Return => break 'targets,
                Next::Fallback => continue 'targets,
                Next::Retry if tries_here > r.retries_per_target => continue 'targets,
                Next::Retry => {
                    let wait = backoff::delay(
                        attempts,
                        r.backoff_base,
                        r.backoff_max,
                        e.retry_after,
                        r.retry_after_cap,
                        fastrand::f64(),
                    );
                    match wait {
                        // Retry-After longer than we are willing to wait: try elsewhere.
                        None => continue 'targets,
                        Some(d) => {
                            tokio::time::sleep_until((tokio::time::Instant::now() + d).min(deadline)).await
                        }
                    }
                }
            }
        }
    }
    Err(match last {
        Some((error, provider)) => Failed { error, attempts, provider: Some(provider) },
        None if limited.is_some() && skipped == 0 => {
            let d = limited.unwrap_or(crate::auth::limiter::Denied { retry_after_ms: 1000, limit: 0 });
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                "Every deployment that can serve this model is at its configured rate limit; retry shortly.",
            )
            .with_code("rate_limit_exceeded");
            error.retry_after = Some(d.retry_after_ms.div_ceil(1000).max(1));
            Failed { error, attempts, provider: None }
        }
        None if skipped > 0 || limited.is_some() => Failed {
            error: ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_error",
                "Every deployment that can serve this model is unavailable (circuit breaker open); retry shortly.",
            )
            .with_code("no_healthy_upstream"),
            attempts,
            provider: None,
        },
        None => Failed {
            error: ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_error",
                "The request deadline passed before any provider could be tried.",
            )
            .with_code("deadline_exceeded"),
            attempts,
            provider: None,
        },
    })
}

/// Holds a stream back until its first real event (one with a `data`
/// field): the commit point. Comments (`: keep-alive`) and blank chunks do
/// not commit, so a reset after them still falls back. A first event that
/// is an error object (`data: {"error":...}`) is the upstream failing before
/// the answer started: it falls back too. Once committed, the held chunks
/// go out in front of the rest, unchanged.
pub(crate) async fn first_event(
    mut s: crate::providers::ByteStream,
    idle: Duration,
    deadline: tokio::time::Instant,
) -> Result<ChatAnswer, ProviderError> {
    let mut held: Vec<Bytes> = Vec::new();
    let mut scan = SseSplitter::new();
    loop {
        let limit = (tokio::time::Instant::now() + idle).min(deadline);
        let b = match tokio::time::timeout_at(limit, s.next()).await {
            Err(_) => {
                return Err(ProviderError::new(
                    ProviderErrorKind::Timeout,
                    "no stream event in time",
                ))
            }
            Ok(None) => {
                return Err(ProviderError::new(
                    ProviderErrorKind::Interrupted,
                    "stream closed before its first event",
                ))
            }
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(b))) => b,
        };
        if b.is_empty() {
            continue;
        }
        scan.push(&b);
        held.push(b);
        while let Some(ev) = scan.next_event() {
            let Some(data) = ev.data else { continue };
            let data = data.trim_ascii();
            if data.starts_with(b"{") && crate::providers::error::has_error_member(data) {
                return Err(ProviderError::from_error_in_ok(data));
            }
            let first = stream::iter(held.into_iter().map(Ok::<Bytes, ProviderError>));
            return Ok(ChatAnswer::Stream(Box::pin(first.chain(s))));
        }
    }
}
