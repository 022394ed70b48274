//! HTTP backends for providers with their own wire formats: Anthropic,
//! Gemini, and Azure OpenAI (OpenAI's format at Azure's URLs). The
//! translation itself lives in `anthropic.rs`, `gemini.rs` and `azure.rs`;
//! this module does the I/O and turns translated streams back into the
//! OpenAI SSE bytes the gateway core relays.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use http::{header, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::error::parse_retry_after;
use super::openai::{checked_usage, event_stream, http_client};
use super::upstream::{self, map_error, Response};
use super::{
    anthropic, azure, gemini, ByteStream, ChatAnswer, EmbeddingsAnswer, ProviderError, ProviderErrorKind,
};
use crate::api::chat::{ChatRequest, EmbeddingsRequest};
use crate::api::ApiError;
use crate::config::{ProviderKind, ProviderSettings};
use crate::gateway::sse::{SseEvent, SseSplitter};

const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Anthropic,
    Gemini,
    Azure,
}

pub struct NativeBackend {
    flavor: Flavor,
    name: String,
    client: upstream::Client,
    base: String,
    headers: HeaderMap,
    timeout: Duration,
    probe_timeout: Duration,
    anthropic: anthropic::AnthropicOptions,
    gemini: gemini::GeminiOptions,
    api_version: String,
}

/// A client-side translation problem becomes a 400 for the client, never a breaker failure.
fn client_error(e: ApiError) -> ProviderError {
    ProviderError::from_status(e.status.as_u16(), None, &e.body())
}

impl NativeBackend {
    pub fn new(s: &ProviderSettings) -> Result<Self, String> {
        let flavor = match s.kind {
            ProviderKind::Anthropic => Flavor::Anthropic,
            ProviderKind::Gemini => Flavor::Gemini,
            ProviderKind::Azure => Flavor::Azure,
            other => {
                return Err(format!(
                    "provider {}: {} is not a native backend",
                    s.name,
                    other.as_str()
                ))
            }
        };
        let client = http_client(s)?;
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let key_header = match flavor {
            // https://docs.anthropic.com/en/api/overview#authentication
            Flavor::Anthropic => HeaderName::from_static("x-api-key"),
            // https://ai.google.dev/api#authentication
            Flavor::Gemini => HeaderName::from_static("x-goog-api-key"),
            // Azure resource keys go in `api-key`, not Authorization (see azure.rs).
            Flavor::Azure => HeaderName::from_static("api-key"),
        };
        if let Some(key) = &s.api_key {
            let mut v = HeaderValue::from_str(key.expose())
                .map_err(|_| format!("provider {}: api_key is not a valid header value", s.name))?;
            v.set_sensitive(true);
            headers.insert(key_header, v);
        }
        if flavor == Flavor::Anthropic {
            let v = HeaderValue::from_str(&s.anthropic_version).map_err(|_| {
                format!(
                    "provider {}: anthropic_version is not a valid header value",
                    s.name
                )
            })?;
            headers.insert(HeaderName::from_static("anthropic-version"), v);
        }
        for (k, v) in &s.headers {
            headers.insert(k.clone(), v.clone());
        }
        Ok(NativeBackend {
            flavor,
            name: s.name.clone(),
            client,
            base: s.base_url.clone(),
            headers,
            timeout: s.timeout,
            probe_timeout: s.first_byte_timeout,
            anthropic: anthropic::AnthropicOptions {
                default_max_tokens: s.default_max_tokens,
                version: s.anthropic_version.clone(),
                prompt_cache: s.prompt_cache,
                prompt_cache_min_tokens: s.prompt_cache_min_tokens,
            },
            gemini: gemini::GeminiOptions::default(),
            api_version: s.api_version.clone(),
        })
    }

    async fn post(
        &self,
        url: &str,
        body: Vec<u8>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Response, ProviderError> {
        let mut headers = self.headers.clone();
        for (k, v) in extra {
            headers.insert(k.clone(), v.clone());
        }
        headers.extend(crate::telemetry::upstream_headers());
        let resp = self
            .client
            .send(
                http::Method::POST,
                self.uri(url)?,
                headers,
                Bytes::from(body),
                self.timeout,
            )
            .await
            .map_err(map_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = parse_retry_after(resp.headers().get(header::RETRY_AFTER));
        let body = resp.read_limited(MAX_ERROR_BODY).await;
        Err(match self.flavor {
            Flavor::Anthropic => anthropic::map_error(status.as_u16(), retry_after, &body),
            Flavor::Gemini => gemini::map_error(status.as_u16(), retry_after, &body),
            Flavor::Azure => ProviderError::from_status(status.as_u16(), retry_after, &body),
        })
    }

    /// A request URL built from the base URL (model names and paths vary per request).
    fn uri(&self, url: &str) -> Result<http::Uri, ProviderError> {
        upstream::uri(url, "").map_err(|_| {
            ProviderError::new(
                ProviderErrorKind::Malformed,
                format!("provider {}: the request URL is not valid", self.name),
            )
        })
    }

    fn warn_dropped(&self, dropped: &[String]) {
        if !dropped.is_empty() {
            tracing::warn!(provider = %self.name, fields = ?dropped, "request fields this provider cannot take were dropped");
        }
    }

    pub async fn chat(
        &self,
        req: &ChatRequest,
        forward: &[(HeaderName, HeaderValue)],
    ) -> Result<ChatAnswer, ProviderError> {
        let stream = req.is_stream();
        let model = req.model.as_str();
        let encode = |v: &Value| {
            serde_json::to_vec(v).map_err(|e| ProviderError::new(ProviderErrorKind::Malformed, e.to_string()))
        };
        match self.flavor {
            Flavor::Anthropic => {
                let built = anthropic::build_request(req, model, &self.anthropic).map_err(client_error)?;
                self.warn_dropped(&built.dropped);
                let url = format!("{}/v1/messages", self.base);
                let resp = self.post(&url, encode(&built.body)?, forward).await?;
                if stream {
                    let t = anthropic::StreamTranslator::new(model, true);
                    Ok(ChatAnswer::Stream(translate(resp.bytes_stream(), Box::new(t))))
                } else {
                    let body = resp.bytes().await.map_err(map_error)?;
                    let (body, usage) = anthropic::parse_response(&body, model)?;
                    Ok(ChatAnswer::Complete {
                        body,
                        usage: Some(usage),
                    })
                }
            }
            Flavor::Gemini => {
                let built = gemini::build_request(req, &self.gemini).map_err(client_error)?;
                self.warn_dropped(&built.dropped);
                let url = format!("{}/{}", self.base, gemini::chat_path(model, stream));
                let resp = self.post(&url, encode(&built.body)?, &[]).await?;
                if stream {
                    let t = gemini::StreamTranslator::new(model, true);
                    Ok(ChatAnswer::Stream(translate(resp.bytes_stream(), Box::new(t))))
                } else {
                    let body = resp.bytes().await.map_err(map_error)?;
                    let (body, usage) = gemini::parse_response(&body, model)?;
                    Ok(ChatAnswer::Complete {
                        body,
                        usage: Some(usage),
                    })
                }
            }
            Flavor::Azure => {
                // OpenAI's API rules: Anthropic-only fields out, reasoning mapped.
                let cleaned = super::reasoning::for_openai(req, true);
                let body = serde_json::to_vec(cleaned.as_ref().unwrap_or(req))
                    .map_err(|e| ProviderError::new(ProviderErrorKind::Malformed, e.to_string()))?;
                let url = azure::chat_url(&self.base, model, &self.api_version);
                let resp = self.post(&url, body, &[]).await?;
                if stream {
                    Ok(ChatAnswer::Stream(event_stream(resp).await?))
                } else {
                    let body = resp.bytes().await.map_err(map_error)?;
                    let usage = checked_usage(&body)?;
                    Ok(ChatAnswer::Complete { body, usage })
                }
            }
        }
    }

    pub async fn embeddings(&self, req: &EmbeddingsRequest) -> Result<EmbeddingsAnswer, ProviderError> {
        match self.flavor {
            Flavor::Anthropic => Err(client_error(ApiError::invalid_request(
                format!("Provider '{}' (Anthropic) has no embeddings API.", self.name),
                Some("model".into()),
            ))),
            Flavor::Gemini => {
                let (path, body) = gemini::build_embed_request(req, &req.model).map_err(client_error)?;
                let body = serde_json::to_vec(&body)
                    .map_err(|e| ProviderError::new(ProviderErrorKind::Malformed, e.to_string()))?;
                let resp = self.post(&format!("{}/{path}", self.base), body, &[]).await?;
                let bytes = resp.bytes().await.map_err(map_error)?;
                let base64 = req.extra.get("encoding_format").and_then(Value::as_str) == Some("base64");
                let (body, mut usage) = gemini::parse_embed_response(&bytes, &req.model, base64)?;
                if usage.prompt_tokens == 0 {
                    // Gemini reports no tokens for embeddings: estimate, so cost is not silently zero.
                    usage = gemini::embed_usage_estimate(req);
                }
                Ok(EmbeddingsAnswer {
                    body,
                    usage: Some(usage),
                })
            }
            Flavor::Azure => {
                let body = serde_json::to_vec(req)
                    .map_err(|e| ProviderError::new(ProviderErrorKind::Malformed, e.to_string()))?;
                let url = azure::embeddings_url(&self.base, &req.model, &self.api_version);
                let resp = self.post(&url, body, &[]).await?;
                let body = resp.bytes().await.map_err(map_error)?;
                let usage = checked_usage(&body)?;
                Ok(EmbeddingsAnswer { body, usage })
            }
        }
    }

    /// Health probe: the provider's model list.
    pub async fn probe(&self) -> Result<(), ProviderError> {
        let url = match self.flavor {
            Flavor::Anthropic => format!("{}/v1/models", self.base),
            Flavor::Gemini => format!("{}/models", self.base),
            Flavor::Azure => format!(
                "{}/openai/models?api-version={}",
                self.base.trim_end_matches('/'),
                self.api_version
            ),
        };
        let resp = self
            .client
            .send(
                http::Method::GET,
                self.uri(&url)?,
                self.headers.clone(),
                Bytes::new(),
                self.probe_timeout,
            )
            .await
            .map_err(map_error)?;
        match resp.status().as_u16() {
            s @ (401 | 403 | 429 | 500..=599) => Err(ProviderError::from_status(s, None, &Bytes::new())),
            _ => Ok(()),
        }
    }
}

/// A provider stream translator (provider SSE events -> OpenAI SSE frames).
pub trait Translate: Send {
    /// Handles one event; returns true once the answer is complete.
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Bytes>) -> Result<bool, ProviderError>;
    /// The upstream body ended: Ok if the answer had completed.
    fn end(&mut self, out: &mut Vec<Bytes>) -> Result<(), ProviderError>;
}

impl Translate for anthropic::StreamTranslator {
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Bytes>) -> Result<bool, ProviderError> {
        anthropic::StreamTranslator::on_event(self, ev, out)
    }
    fn end(&mut self, _out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        if self.is_finished() {
            Ok(())
        } else {
            Err(ProviderError::new(
                ProviderErrorKind::Interrupted,
                "stream ended before message_stop",
            ))
        }
    }
}

impl Translate for gemini::StreamTranslator {
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<Bytes>) -> Result<bool, ProviderError> {
        gemini::StreamTranslator::on_event(self, ev, out)
    }
    fn end(&mut self, out: &mut Vec<Bytes>) -> Result<(), ProviderError> {
        // Gemini has no end-of-stream event: the body ending after a finishReason is the end.
        let mut tail = Vec::new();
        if self.finish(&mut tail) {
            out.extend(tail);
            Ok(())
        } else {
            Err(ProviderError::new(
                ProviderErrorKind::Interrupted,
                "stream ended before a finishReason",
            ))
        }
    }
}

struct TranslateState<S> {
    upstream: S,
    splitter: SseSplitter,
    t: Box<dyn Translate>,
    queue: VecDeque<Bytes>,
    /// Reported after the queued frames (frames translated before a failure are valid output).
    error: Option<ProviderError>,
    done: bool,
}

/// Upstream provider SSE bytes -> OpenAI SSE frames, event by event.
pub fn translate<S>(upstream: S, t: Box<dyn Translate>) -> ByteStream
where
    S: Stream<Item = Result<Bytes, upstream::Error>> + Send + Unpin + 'static,
{
    let state = TranslateState {
        upstream,
        splitter: SseSplitter::new(),
        t,
        queue: VecDeque::new(),
        error: None,
        done: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.queue.pop_front() {
                return Some((Ok(b), st));
            }
            if let Some(e) = st.error.take() {
                return Some((Err(e), st));
            }
            if st.done {
                return None;
            }
            let mut out = Vec::new();
            match st.upstream.next().await {
                Some(Ok(bytes)) => {
                    st.splitter.push(&bytes);
                    while let Some(ev) = st.splitter.next_event() {
                        match st.t.on_event(&ev, &mut out) {
                            Ok(false) => {}
                            Ok(true) => {
                                st.done = true;
                                break;
                            }
                            Err(e) => {
                                st.done = true;
                                st.error = Some(e);
                                break;
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    st.error = Some(map_error(e));
                }
                None => {
                    st.done = true;
                    if let Err(e) = st.t.end(&mut out) {
                        st.error = Some(e);
                    }
                }
            }
            st.queue.extend(out);
        }
    }))
}
