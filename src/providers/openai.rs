//! OpenAI and every OpenAI-compatible server (DeepSeek, vLLM, Ollama, Groq, ...).
//!
//! The request is the client's, re-serialised with the upstream model id; the
//! response bytes are forwarded unchanged, so nothing the upstream adds is lost.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue};

use super::error::parse_retry_after;
use super::{ChatAnswer, EmbeddingsAnswer, ProviderError, ProviderErrorKind};
use crate::api::chat::{ChatRequest, EmbeddingsRequest};
use crate::api::usage::usage_from_openai_json;
use crate::config::ProviderSettings;

/// Largest upstream error body read (the rest is discarded).
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct OpenAiBackend {
    client: reqwest::Client,
    chat_url: reqwest::Url,
    embeddings_url: reqwest::Url,
    responses_url: reqwest::Url,
    models_url: reqwest::Url,
    probe_timeout: Duration,
    headers: HeaderMap,
    timeout: Duration,
    /// OpenAI's and DeepSeek's own APIs reject `top_k` (vLLM, Ollama take it).
    strip_top_k: bool,
}

impl OpenAiBackend {
    pub fn new(s: &ProviderSettings) -> Result<Self, String> {
        let client = http_client(s)?;
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{}{path}", s.base_url))
                .map_err(|_| format!("provider {}: invalid base_url", s.name))
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &s.api_key {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| format!("provider {}: api_key is not a valid header value", s.name))?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        for (k, v) in &s.headers {
            headers.insert(k.clone(), v.clone());
        }
        Ok(OpenAiBackend {
            client,
            chat_url: url("/chat/completions")?,
            embeddings_url: url("/embeddings")?,
            responses_url: url("/responses")?,
            models_url: url("/models")?,
            probe_timeout: s.first_byte_timeout,
            headers,
            timeout: s.timeout,
            strip_top_k: s.base_url.contains("://api.openai.com")
                || s.base_url.contains("://api.deepseek.com"),
        })
    }

    async fn post(&self, url: &reqwest::Url, body: Vec<u8>) -> Result<reqwest::Response, ProviderError> {
        let resp = self
            .client
            .post(url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(map_reqwest_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = parse_retry_after(resp.headers().get(header::RETRY_AFTER));
        let body = read_limited(resp, MAX_ERROR_BODY).await;
        Err(ProviderError::from_status(status.as_u16(), retry_after, &body))
    }

    pub async fn chat(&self, req: &ChatRequest) -> Result<ChatAnswer, ProviderError> {
        // Anthropic-only fields out, reasoning controls mapped (usually a no-op, no copy).
        let cleaned = super::reasoning::for_openai(req, self.strip_top_k);
        let req = cleaned.as_ref().unwrap_or(req);
        let body = serde_json::to_vec(req).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Malformed,
                format!("cannot encode request: {e}"),
            )
        })?;
        let resp = self.post(&self.chat_url, body).await?;
        if req.is_stream() {
            let stream = resp.bytes_stream().map(|r| r.map_err(map_reqwest_error));
            Ok(ChatAnswer::Stream(Box::pin(stream)))
        } else {
            let body = resp.bytes().await.map_err(map_reqwest_error)?;
            check_json_object(&body)?;
            let usage = usage_from_openai_json(&body);
            Ok(ChatAnswer::Complete { body, usage })
        }
    }

    /// Forwards a Responses API body (model already the upstream id) to
    /// `POST /responses`; the answer is in the Responses format.
    pub async fn responses(&self, body: Vec<u8>, stream: bool) -> Result<ChatAnswer, ProviderError> {
        let resp = self.post(&self.responses_url, body).await?;
        if stream {
            let stream = resp.bytes_stream().map(|r| r.map_err(map_reqwest_error));
            Ok(ChatAnswer::Stream(Box::pin(stream)))
        } else {
            let body = resp.bytes().await.map_err(map_reqwest_error)?;
            check_json_object(&body)?;
            let usage = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("usage").and_then(crate::api::responses::usage_from_json));
            Ok(ChatAnswer::Complete { body, usage })
        }
    }

    /// A cheap health probe: `GET /models`. Any answer below 500 other than
    /// 401/403/429 means the server is up (some compatible servers lack /models).
    pub async fn probe(&self) -> Result<(), ProviderError> {
        let resp = self
            .client
            .get(self.models_url.clone())
            .headers(self.headers.clone())
            .timeout(self.probe_timeout)
            .send()
            .await
            .map_err(map_reqwest_error)?;
        let status = resp.status().as_u16();
        match status {
            401 | 403 | 429 | 500..=599 => Err(ProviderError::from_status(status, None, &Bytes::new())),
            _ => Ok(()),
        }
    }

    /// The upstream's own model ids (`GET /models`, OpenAI's list shape, as
    /// vLLM, Ollama, llama.cpp and LM Studio serve it).
    pub async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        let resp = self
            .client
            .get(self.models_url.clone())
            .headers(self.headers.clone())
            .timeout(self.probe_timeout)
            .send()
            .await
            .map_err(map_reqwest_error)?;
        let status = resp.status();
        let body = read_limited(resp, 4 * 1024 * 1024).await;
        if !status.is_success() {
            return Err(ProviderError::from_status(status.as_u16(), None, &body));
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            id: String,
        }
        #[derive(serde::Deserialize)]
        struct List {
            data: Vec<Entry>,
        }
        let list: List = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::new(ProviderErrorKind::Malformed, format!("model list: {e}")))?;
        Ok(list
            .data
            .into_iter()
            .map(|e| e.id)
            .filter(|id| !id.is_empty())
            .collect())
    }

    pub async fn embeddings(&self, req: &EmbeddingsRequest) -> Result<EmbeddingsAnswer, ProviderError> {
        let body = serde_json::to_vec(req).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Malformed,
                format!("cannot encode request: {e}"),
            )
        })?;
        let resp = self.post(&self.embeddings_url, body).await?;
        let body = resp.bytes().await.map_err(map_reqwest_error)?;
        check_json_object(&body)?;
        let usage = usage_from_openai_json(&body);
        Ok(EmbeddingsAnswer { body, usage })
    }
}

/// A 2xx body must at least be a JSON object; anything else is a bad gateway.
fn check_json_object(body: &Bytes) -> Result<(), ProviderError> {
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => Ok(()),
        _ => Err(ProviderError::new(
            ProviderErrorKind::Malformed,
            "response body is not a JSON object",
        )),
    }
}

/// The pooled HTTP client of one provider: TCP_NODELAY, no redirects
/// (an upstream never moves a request elsewhere), the provider's connect timeout.
pub(super) fn http_client(s: &ProviderSettings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(s.connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("provider {}: cannot build HTTP client: {e}", s.name))
}

/// Reads an (error) body up to `limit` bytes; the rest is discarded.
pub(super) async fn read_limited(resp: reqwest::Response, limit: usize) -> Bytes {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Bytes::from(out)
}

/// Classifies a transport error without copying its text (which names URLs).
pub fn map_reqwest_error(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::new(ProviderErrorKind::Timeout, "timed out")
    } else if e.is_connect() {
        ProviderError::new(ProviderErrorKind::Connect, "connection failed")
    } else if e.is_body() || e.is_decode() {
        ProviderError::new(
            ProviderErrorKind::Interrupted,
            "connection closed while reading the response",
        )
    } else {
        ProviderError::new(ProviderErrorKind::Connect, "request could not be sent")
    }
}
