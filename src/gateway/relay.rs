//! The streaming relay: upstream SSE bytes in, client SSE bytes out.
//!
//! Each complete upstream event is forwarded as soon as it is complete (never
//! the whole stream buffered). The relay watches for the usage chunk (which
//! the gateway always asks for), records it, and drops it again when the
//! client did not ask for usage. A broken upstream ends the client's stream
//! with an OpenAI-style error event, never a silent clean end.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::future::Future;

use super::sse::{SseEvent, SseSplitter};
use crate::accounting::recorder::Recorder;
use crate::api::usage::{OpenAiUsage, Usage};
use crate::providers::{ByteStream, ProviderError, ProviderErrorKind};
use crate::resilience::breaker::{Outcome, Permit};
use crate::resilience::health::Health;

/// Client-facing SSE body for one streamed chat completion.
pub struct Relay {
    upstream: ByteStream,
    splitter: SseSplitter,
    queue: VecDeque<Bytes>,
    client_wants_usage: bool,
    done: bool,
    recorder: Option<Recorder>,
    provider: Arc<str>,
    secret: Option<Arc<str>>,
    /// Longest allowed gap between upstream chunks.
    idle: Duration,
    idle_timer: Pin<Box<tokio::time::Sleep>>,
    /// Told about a failure after the stream was committed (passive health).
    health: Option<Arc<Health>>,
    /// Keeps what the client is sent, for the response cache.
    capture: Option<Capture>,
}

/// What a completed stream hands the response cache: the chunks exactly as the
/// client got them, the usage and what the call cost.
pub type OnComplete = Box<dyn FnOnce(Vec<Bytes>, Option<Usage>, Option<f64>) + Send>;

/// A bounded copy of a stream's client-bound chunks (the chunks are
/// reference-counted `Bytes`: no payload is copied). Dropped when the stream
/// fails or grows past `limit` bytes.
pub struct Capture {
    limit: usize,
    bytes: usize,
    chunks: Vec<Bytes>,
    on_complete: OnComplete,
}

impl Capture {
    pub fn new(limit: usize, on_complete: OnComplete) -> Capture {
        Capture {
            limit,
            bytes: 0,
            chunks: Vec::new(),
            on_complete,
        }
    }

    /// Keeps `b`; false once over the limit (the capture is then given up).
    fn keep(&mut self, b: &Bytes) -> bool {
        self.bytes += b.len();
        self.chunks.push(b.clone());
        self.bytes <= self.limit
    }
}

#[derive(Deserialize)]
struct UsageChunk {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
}

impl Relay {
    pub fn new(
        upstream: ByteStream,
        client_wants_usage: bool,
        recorder: Recorder,
        provider: Arc<str>,
        secret: Option<Arc<str>>,
        idle: Duration,
        health: Option<Arc<Health>>,
    ) -> Self {
        Relay {
            upstream,
            splitter: SseSplitter::new(),
            queue: VecDeque::new(),
            client_wants_usage,
            done: false,
            recorder: Some(recorder),
            provider,
            secret,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            health,
            capture: None,
        }
    }

    /// Hands the stream to `capture` once it completes (status 200, `[DONE]`).
    pub fn with_capture(mut self, capture: Capture) -> Self {
        self.capture = Some(capture);
        self
    }

    fn on_event(&mut self, ev: SseEvent) {
        let Some(data) = ev.data.as_deref() else {
            // Comments / keep-alives pass through.
            self.queue.push_back(ev.raw);
            return;
        };
        if data.trim_ascii() == b"[DONE]" {
            self.queue.push_back(ev.raw);
            self.finish(200, None);
            return;
        }
        if data.trim_ascii_start().starts_with(b"{\"error\"") {
            // An upstream error event mid-stream: forward it and end.
            let msg = serde_json::from_slice::<serde_json::Value>(data)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .and_then(|m| m.as_str().map(str::to_string))
                })
                .unwrap_or_else(|| "upstream error event".into());
            self.queue.push_back(ev.raw);
            self.finish(502, Some(format!("upstream error mid-stream: {msg}")));
            return;
        }
        if let Some(usage_only) = self.observe_usage(data) {
            if usage_only && !self.client_wants_usage {
                return;
            }
            if usage_only {
                // The client asked for usage: add what the call cost (`usage.cost`, USD).
                if let Some(frame) = self
                    .recorder
                    .as_ref()
                    .and_then(|r| r.cost())
                    .and_then(|c| with_cost(data, c))
                {
                    self.queue.push_back(frame);
                    return;
                }
            }
        }
        if let Some(r) = self.recorder.as_mut() {
            r.mark_first_token();
            r.observe_output(data);
        }
        self.queue.push_back(ev.raw);
    }

    /// If the chunk carries a usage object, records it. Returns Some(true)
    /// when the chunk is a usage-only chunk (no choices).
    fn observe_usage(&mut self, data: &[u8]) -> Option<bool> {
        static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
        let at = USAGE.find(data)?;
        let rest = data[at + 7..]
            .trim_ascii_start()
            .strip_prefix(b":")?
            .trim_ascii_start();
        if !rest.starts_with(b"{") {
            return None;
        }
        let chunk: UsageChunk = serde_json::from_slice(data).ok()?;
        let usage = Usage::from(chunk.usage?);
        if let Some(r) = self.recorder.as_mut() {
            r.set_usage(usage);
        }
        Some(chunk.choices.is_none_or(|c| c.is_empty()))
    }

    fn fail(&mut self, e: ProviderError) {
        if let Some(h) = self
            .health
            .as_ref()
            .filter(|_| e.kind != ProviderErrorKind::Local)
        {
            h.record(Permit::Normal, Outcome::Failure, None);
        }
        let api = e.to_api_error(&self.provider, self.secret.as_deref());
        self.queue.push_back(api.sse_event());
        self.finish(api.status.as_u16(), Some(api.message));
    }

    fn finish(&mut self, status: u16, error: Option<String>) {
        self.done = true;
        let capture = self.capture.take().filter(|_| status == 200);
        if let Some(r) = self.recorder.take() {
            let (usage, cost) = (r.usage(), r.cost());
            r.finish(status, error);
            if let Some(mut c) = capture {
                // What is still queued (the final events, `[DONE]`) goes out after this.
                let rest: Vec<Bytes> = self.queue.iter().cloned().collect();
                if rest.iter().all(|b| c.keep(b)) {
                    (c.on_complete)(c.chunks, usage, cost);
                }
            }
        }
    }
}

/// `first` and every event queued behind it as one body frame: events that
/// arrived together (one upstream read) go out together, in one write,
/// instead of a frame each (an HTTP chunk header and a write apiece was most
/// of a streamed event's cost). Nothing is held back for it.
fn coalesce(first: Bytes, queue: &mut VecDeque<Bytes>) -> Bytes {
    if queue.is_empty() {
        return first;
    }
    let len = first.len() + queue.iter().map(Bytes::len).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&first);
    for b in queue.drain(..) {
        out.extend_from_slice(&b);
    }
    Bytes::from(out)
}

/// The usage chunk with `usage.cost` added, re-framed as one SSE event.
fn with_cost(data: &[u8], cost: f64) -> Option<Bytes> {
    let mut v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let usage = v.get_mut("usage")?.as_object_mut()?;
    usage.insert("cost".into(), serde_json::Value::from(cost));
    let mut out = b"data: ".to_vec();
    serde_json::to_writer(&mut out, &v).ok()?;
    out.extend_from_slice(b"\n\n");
    Some(Bytes::from(out))
}

impl Stream for Relay {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.queue.pop_front() {
                let b = coalesce(b, &mut this.queue);
                if let Some(c) = this.capture.as_mut() {
                    if !c.keep(&b) {
                        this.capture = None;
                    }
                }
                return Poll::Ready(Some(Ok(b)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => {
                    if this.idle_timer.as_mut().poll(cx).is_ready() {
                        this.fail(ProviderError::new(
                            ProviderErrorKind::Timeout,
                            format!("no stream data for {} ms", this.idle.as_millis()),
                        ));
                        continue;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(bytes))) => {
                    let next = tokio::time::Instant::now() + this.idle;
                    this.idle_timer.as_mut().reset(next);
                    this.splitter.push(&bytes);
                    while let Some(ev) = this.splitter.next_event() {
                        this.on_event(ev);
                        if this.done {
                            break;
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => this.fail(e),
                Poll::Ready(None) => {
                    if this.splitter.pending() > 0 {
                        this.fail(ProviderError::new(
                            ProviderErrorKind::Interrupted,
                            "stream ended inside an event",
                        ));
                    } else {
                        // A clean end of the HTTP body without [DONE]: the
                        // server finished on purpose, so close the stream properly.
                        this.queue.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                        this.finish(200, None);
                    }
                }
            }
        }
    }
}

/// One inbound format's stream translator: turns the relay's OpenAI chat
/// SSE events into that format's events (`/v1/messages`, `/v1/responses`).
pub trait EventTranslator: Send + 'static {
    /// Translates one event into `out`; `Ok(true)` once the stream is complete.
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Bytes>) -> Result<bool, String>;
    /// The event the client gets when an upstream event cannot be translated.
    fn error_event(&self, message: &str) -> Bytes;
    /// Closes the stream when the upstream ended without its end marker (idempotent).
    fn finish(&mut self, out: &mut Vec<Bytes>);
    /// Called once, when the stream is over (after the last event is queued).
    fn done(&mut self) {}
}

/// The relay's chat SSE, translated event by event by `t`: events are split
/// as bytes arrive, translated events are yielded in order, and a translation
/// error ends the stream with `t`'s error event.
pub fn translate_events<S, T>(relay: S, t: T) -> impl Stream<Item = Result<Bytes, Infallible>> + Send
where
    S: Stream<Item = Result<Bytes, Infallible>> + Send + Unpin + 'static,
    T: EventTranslator,
{
    use futures_util::StreamExt;
    struct St<S, T> {
        relay: S,
        splitter: SseSplitter,
        t: T,
        queue: VecDeque<Bytes>,
        done: bool,
    }
    let st = St {
        relay,
        splitter: SseSplitter::new(),
        t,
        queue: VecDeque::new(),
        done: false,
    };
    futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(b) = st.queue.pop_front() {
                return Some((Ok(b), st));
            }
            if st.done {
                return None;
            }
            let mut out = Vec::new();
            match st.relay.next().await {
                Some(Ok(bytes)) => {
                    st.splitter.push(&bytes);
                    while let Some(ev) = st.splitter.next_event() {
                        match st.t.on_event(&ev, &mut out) {
                            Ok(false) => {}
                            Ok(true) => {
                                st.done = true;
                                break;
                            }
                            Err(message) => {
                                out.push(st.t.error_event(&message));
                                st.done = true;
                                break;
                            }
                        }
                    }
                }
                Some(Err(never)) => match never {},
                None => {
                    st.done = true;
                    st.t.finish(&mut out);
                }
            }
            if st.done {
                st.t.done();
            }
            st.queue.extend(out);
        }
    })
}
