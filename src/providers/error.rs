//! `ProviderError`: what went wrong talking to an upstream, classified once.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;

use crate::api::ApiError;

/// The class of an upstream failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// TCP/TLS connection could not be made (refused, DNS, reset before a response).
    Connect,
    /// No (complete) answer within the configured time.
    Timeout,
    /// The upstream answered with a non-success HTTP status.
    Status,
    /// The upstream answered 2xx with a body we could not understand.
    Malformed,
    /// The connection broke while reading the response.
    Interrupted,
    /// The gateway itself ran out of a local resource (open files, sockets,
    /// ports, memory) before reaching the upstream: not the provider's fault,
    /// never counted against its breaker.
    Local,
}

/// A failed upstream call.
#[derive(Debug, Clone)]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    /// Upstream HTTP status, for `Status`.
    pub status: Option<u16>,
    /// Human-readable detail; never contains a secret.
    pub message: String,
    /// Upstream's Retry-After, if it sent one.
    pub retry_after: Option<Duration>,
    /// Upstream's OpenAI-style error fields, when its body had them.
    pub upstream: Option<Box<UpstreamErrorBody>>,
}

/// The fields of an OpenAI-style error body from upstream.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpstreamErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default, deserialize_with = "code_as_string")]
    pub code: Option<String>,
}

fn code_as_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: UpstreamErrorBody,
}

#[derive(Deserialize)]
struct EmbeddedStatus {
    error: EmbeddedStatusInner,
}

#[derive(Deserialize)]
struct EmbeddedStatusInner {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    status: Option<serde_json::Value>,
}

/// Whether a JSON object body carries a top-level, non-null `error` member.
/// A cheap pre-check (substring) keeps the common success path at one scan.
pub fn has_error_member(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Top {
        #[serde(default)]
        error: Option<serde_json::Value>,
    }
    static ERROR: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"error\""));
    if ERROR.find(body).is_none() {
        return false;
    }
    // `"error": null` is a success with an empty error field.
    serde_json::from_slice::<Top>(body)
        .ok()
        .and_then(|t| t.error)
        .is_some_and(|v| !v.is_null())
}

impl ProviderError {
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            status: None,
            message: message.into(),
            retry_after: None,
            upstream: None,
        }
    }

    /// Builds a `Status` error from an upstream's non-success response.
    pub fn from_status(status: u16, retry_after: Option<Duration>, body: &Bytes) -> Self {
        let upstream = serde_json::from_slice::<ErrorEnvelope>(body)
            .ok()
            .map(|e| Box::new(e.error));
        let message = upstream
            .as_ref()
            .and_then(|u| u.message.clone())
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                    .trim()
                    .to_string();
                if text.is_empty() {
                    format!("HTTP {status}")
                } else {
                    text
                }
            });
        ProviderError {
            kind: ProviderErrorKind::Status,
            status: Some(status),
            message,
            retry_after,
            upstream,
        }
    }

    /// An upstream that answered 2xx with an error object (`{"error":{...}}`),
    /// as some OpenAI-compatible servers and aggregators do. A numeric status
    /// inside the error (`"code": 429`, `"status": 503`) is honoured as if it
    /// had been the HTTP status; otherwise it is a bad response (retryable).
    pub fn from_error_in_ok(body: &[u8]) -> Self {
        let envelope = serde_json::from_slice::<ErrorEnvelope>(body).ok();
        let embedded = serde_json::from_slice::<EmbeddedStatus>(body)
            .ok()
            .and_then(|e| e.error.code.or(e.error.status))
            .and_then(|v| match v {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.parse::<u64>().ok(),
                _ => None,
            })
            .filter(|s| (400..600).contains(s));
        if let Some(status) = embedded {
            return ProviderError::from_status(status as u16, None, &Bytes::copy_from_slice(body));
        }
        let upstream = envelope.map(|e| Box::new(e.error));
        let detail = upstream
            .as_ref()
            .and_then(|u| u.message.as_deref())
            .unwrap_or("no message");
        let detail: String = detail.chars().take(200).collect();
        ProviderError {
            kind: ProviderErrorKind::Malformed,
            status: None,
            message: format!("HTTP 200 with an error body: {detail}"),
            retry_after: None,
            upstream,
        }
    }

    /// Whether trying again (here or elsewhere) may succeed: 408, 409, 429,
    /// 5xx (Anthropic's 529 included), connect errors, timeouts, broken
    /// connections. Client mistakes (400, 401, 403, 404, 422, content policy) are not.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ProviderErrorKind::Connect
            | ProviderErrorKind::Timeout
            | ProviderErrorKind::Interrupted
            | ProviderErrorKind::Local => true,
            ProviderErrorKind::Malformed => true,
            ProviderErrorKind::Status => {
                matches!(self.status, Some(408 | 409 | 429) | Some(500..=599))
            }
        }
    }

    /// The error as the client sees it. Names the provider, never a secret:
    /// `secret` (the provider's key) is scrubbed from any upstream text.
    pub fn to_api_error(&self, provider: &str, secret: Option<&str>) -> ApiError {
        let scrub = |s: &str| match secret {
            Some(k) if !k.is_empty() && s.contains(k) => s.replace(k, "[redacted]"),
            _ => s.to_string(),
        };
        match self.kind {
            ProviderErrorKind::Local => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "The gateway is out of local resources (open files or sockets); retry shortly.",
            )
            .with_code("gateway_overloaded"),
            ProviderErrorKind::Connect => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("Could not connect to provider '{provider}'."),
            )
            .with_code("upstream_unreachable"),
            ProviderErrorKind::Timeout => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_error",
                format!("Provider '{provider}' did not answer in time."),
            )
            .with_code("upstream_timeout"),
            ProviderErrorKind::Malformed | ProviderErrorKind::Interrupted => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!(
                    "Provider '{provider}' sent a bad response: {}.",
                    scrub(&self.message)
                ),
            )
            .with_code("upstream_bad_response"),
            ProviderErrorKind::Status => {
                let status = self.status.unwrap_or(502);
                match status {
                    // The gateway's own credentials were refused: not the client's fault.
                    401 | 403 | 407 => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        format!("Provider '{provider}' rejected the gateway's credentials (HTTP {status})."),
                    )
                    .with_code("upstream_auth_failed"),
                    400..=499 => {
                        let up = self.upstream.as_deref().cloned().unwrap_or_default();
                        let mut e = ApiError::new(
                            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                            if status == 429 {
                                "rate_limit_error"
                            } else {
                                "invalid_request_error"
                            },
                            scrub(&self.message),
                        );
                        e.code = up.code.map(Into::into);
                        e.param = up.param;
                        e.retry_after = self.retry_after.map(|d| d.as_secs().max(1));
                        e
                    }
                    _ => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        format!(
                            "Provider '{provider}' returned HTTP {status}: {}",
                            scrub(&self.message)
                        ),
                    )
                    .with_code("upstream_error"),
                }
            }
        }
    }
}

/// Parses a Retry-After header given in seconds (HTTP dates are ignored).
pub fn parse_retry_after(v: Option<&http::HeaderValue>) -> Option<Duration> {
    let s = v?.to_str().ok()?.trim();
    s.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let st = |s| ProviderError::from_status(s, None, &Bytes::new());
        for s in [429, 500, 502, 503, 529, 408] {
            assert!(st(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(!st(s).is_retryable(), "{s}");
        }
        assert!(ProviderError::new(ProviderErrorKind::Connect, "x").is_retryable());
        assert!(ProviderError::new(ProviderErrorKind::Timeout, "x").is_retryable());
    }

    #[test]
    fn mapping_to_client_errors() {
        let body = Bytes::from_static(
            br#"{"error":{"message":"bad thing with sk-secret","type":"invalid_request_error","param":"tools","code":"bad_tools"}}"#,
        );
        let e = ProviderError::from_status(400, None, &body).to_api_error("up", Some("sk-secret"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param.as_deref(), Some("tools"));
        assert_eq!(e.code.as_deref(), Some("bad_tools"));
        assert_eq!(e.message, "bad thing with [redacted]");
        let e = ProviderError::from_status(503, None, &Bytes::from_static(b"overloaded"))
            .to_api_error("up", None);
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        assert!(e.message.contains("'up'") && e.message.contains("503"));
        let e = ProviderError::from_status(401, None, &Bytes::new()).to_api_error("up", None);
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        let e = ProviderError::from_status(429, Some(Duration::from_secs(3)), &Bytes::new())
            .to_api_error("up", None);
        assert_eq!(
            (e.status, e.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, Some(3))
        );
        let e = ProviderError::new(ProviderErrorKind::Timeout, "t").to_api_error("up", None);
        assert_eq!(e.status, StatusCode::GATEWAY_TIMEOUT);
    }
}
