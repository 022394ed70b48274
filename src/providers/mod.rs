//! Upstream providers: one `Provider` per `[providers.*]` table.
//!
//! A provider takes an OpenAI-format request (with the upstream model id
//! already set) and returns an OpenAI-format answer: a complete JSON body, or
//! a stream of OpenAI SSE bytes. Adapters for non-OpenAI wire formats
//! translate to this shape, so the gateway core handles one format.

pub mod anthropic;
pub mod azure;
pub mod deepseek;
pub mod error;
pub mod gemini;
pub mod native;
pub mod openai;
pub mod prompt_cache;
pub mod reasoning;
pub mod simulated;
pub mod upstream;

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderName, HeaderValue};

pub use error::{ProviderError, ProviderErrorKind};

use crate::api::chat::{ChatRequest, EmbeddingsRequest};
use crate::api::usage::Usage;
use crate::config::{ProviderKind, ProviderSettings};

/// A stream of OpenAI-format SSE bytes from upstream (arbitrary splits).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

/// A successful chat answer.
pub enum ChatAnswer {
    /// Non-streaming: the OpenAI JSON body, and its usage if reported.
    Complete { body: Bytes, usage: Option<Usage> },
    /// Streaming: upstream's SSE bytes, not yet split into events.
    Stream(ByteStream),
}

/// A successful embeddings answer.
pub struct EmbeddingsAnswer {
    pub body: Bytes,
    pub usage: Option<Usage>,
}

enum Backend {
    OpenAi(Box<openai::OpenAiBackend>),
    Native(Box<native::NativeBackend>),
    Simulated(simulated::Simulated),
}

/// One configured upstream provider.
pub struct Provider {
    pub name: Arc<str>,
    pub settings: ProviderSettings,
    backend: Backend,
}

impl Provider {
    /// Builds the provider (and its HTTP client) from validated settings.
    pub fn new(settings: ProviderSettings) -> Result<Provider, String> {
        let backend = match settings.kind {
            ProviderKind::Openai | ProviderKind::Deepseek => {
                Backend::OpenAi(Box::new(openai::OpenAiBackend::new(&settings)?))
            }
            ProviderKind::Anthropic | ProviderKind::Gemini | ProviderKind::Azure => {
                Backend::Native(Box::new(native::NativeBackend::new(&settings)?))
            }
            ProviderKind::Simulated => {
                Backend::Simulated(simulated::Simulated::new(settings.simulated.clone()))
            }
        };
        Ok(Provider {
            name: Arc::from(settings.name.as_str()),
            settings,
            backend,
        })
    }

    pub fn is_simulated(&self) -> bool {
        matches!(self.backend, Backend::Simulated(_))
    }

    /// The provider's secret, for scrubbing error text.
    pub fn secret(&self) -> Option<&str> {
        self.settings.api_key.as_ref().map(|s| s.expose())
    }

    /// Sends a chat request. `req.model` must already be the upstream id; for
    /// streams the caller has set `stream_options.include_usage`.
    /// `forward`: client headers for native upstreams that understand them
    /// (`anthropic-version` / `anthropic-beta` to Anthropic); others ignore them.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        forward: &[(HeaderName, HeaderValue)],
    ) -> Result<ChatAnswer, ProviderError> {
        self.chat_raw(req, forward, None).await
    }

    /// [`chat`](Self::chat) with the client's body bytes: an OpenAI-compatible
    /// upstream gets them as sent, with only the model id (and, on streams,
    /// `include_usage`) patched in, unless the request needs other changes for it.
    /// `raw` must be the body `req` was parsed from, unchanged since but for
    /// `model` and `stream_options`.
    pub async fn chat_raw(
        &self,
        req: &ChatRequest,
        forward: &[(HeaderName, HeaderValue)],
        raw: Option<&crate::api::raw::RawChat>,
    ) -> Result<ChatAnswer, ProviderError> {
        match &self.backend {
            Backend::OpenAi(b) => b.chat(req, raw).await,
            Backend::Native(b) => b.chat(req, forward).await,
            Backend::Simulated(s) => s.chat(req).await,
        }
    }

    /// Whether `/v1/responses` requests go to this upstream as they are
    /// (an OpenAI provider with `responses_api`).
    pub fn speaks_responses(&self) -> bool {
        self.settings.responses_api && matches!(self.backend, Backend::OpenAi(_))
    }

    /// Forwards a Responses API body (`model` already the upstream id) to an
    /// upstream that [`speaks_responses`](Self::speaks_responses).
    pub async fn responses(&self, body: Vec<u8>, stream: bool) -> Result<ChatAnswer, ProviderError> {
        match &self.backend {
            Backend::OpenAi(b) => b.responses(body, stream).await,
            _ => Err(ProviderError::new(
                ProviderErrorKind::Malformed,
                "this provider does not speak the Responses API",
            )),
        }
    }

    /// A cheap active health check.
    pub async fn probe(&self) -> Result<(), ProviderError> {
        match &self.backend {
            Backend::OpenAi(b) => b.probe().await,
            Backend::Native(b) => b.probe().await,
            Backend::Simulated(s) => s.probe(),
        }
    }

    /// Whether the gateway lists this provider's own models (from its
    /// `GET /models`): an OpenAI-compatible provider that serves every name
    /// (`models = ["*"]`) at a base URL other than OpenAI's, i.e. a local
    /// vLLM / Ollama / llama.cpp server or a proxy.
    pub fn discovers_models(&self) -> bool {
        matches!(self.backend, Backend::OpenAi(_))
            && self.settings.kind == ProviderKind::Openai
            && self.settings.patterns.iter().any(|p| p.as_str() == "*")
            && !self.settings.base_url.contains("://api.openai.com")
    }

    /// The upstream's model ids (OpenAI-compatible providers only).
    pub async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        match &self.backend {
            Backend::OpenAi(b) => b.list_models().await,
            _ => Ok(Vec::new()),
        }
    }

    /// Sends an embeddings request (`req.model` already the upstream id).
    pub async fn embeddings(&self, req: &EmbeddingsRequest) -> Result<EmbeddingsAnswer, ProviderError> {
        match &self.backend {
            Backend::OpenAi(b) => b.embeddings(req).await,
            Backend::Native(b) => b.embeddings(req).await,
            Backend::Simulated(s) => s.embeddings(req).await,
        }
    }
}
