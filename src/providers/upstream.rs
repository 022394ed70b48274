//! The HTTP client every provider backend sends its upstream requests with:
//! hyper-util's pooled client (the one reqwest builds on) called directly.
//!
//! What it keeps from the reqwest client it replaced: one connection pool per
//! provider (90 s idle timeout, up to 1,024 idle connections a host),
//! TCP_NODELAY, the provider's connect timeout, rustls with the webpki roots
//! for `https` upstreams (HTTP/2 when the server offers it through ALPN,
//! HTTP/1.1 otherwise), no redirects, and one total timeout per request that
//! covers the response body (streams included). What it drops is reqwest's
//! per-request work that a gateway does not need: its redirect layer (which
//! parses the request URL twice even with redirects off), a `url::Url` per
//! request (upstream URIs are parsed once per deployment), and its default
//! headers. Unlike reqwest's default client it does not read proxy settings
//! (`HTTPS_PROXY`, `HTTP_PROXY`) from the environment: upstreams are reached
//! directly.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, Sleep};

use super::{ProviderError, ProviderErrorKind};

type Tls = hyper_rustls::HttpsConnector<HttpConnector>;

/// One provider's pooled client. Plain-HTTP upstreams get a client without
/// TLS (no root store is built for them); `https` ones get rustls.
#[derive(Clone)]
pub enum Client {
    Plain(Legacy<HttpConnector, Full<Bytes>>),
    Tls(Legacy<Tls, Full<Bytes>>),
}

/// Why a request failed, before it is turned into a [`ProviderError`].
#[derive(Debug)]
pub enum Error {
    /// The total timeout passed (sending, waiting or reading the body).
    Timeout,
    /// No response: connecting failed, or the connection failed before the
    /// response head arrived.
    Request(hyper_util::client::legacy::Error),
    /// The response body broke off.
    Body(hyper::Error),
}

/// The TLS settings every `https` upstream shares: built once, on first use.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
}

impl Client {
    /// A client for upstreams under `base_url` (its scheme picks TLS or not).
    pub fn new(base_url: &str, connect_timeout: Duration) -> Result<Client, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let mut builder = Legacy::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new());
        let https = base_url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        if https {
            http.enforce_http(false);
            let tls = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*tls_config()?).clone())
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http);
            Ok(Client::Tls(builder.build(tls)))
        } else {
            Ok(Client::Plain(builder.build(http)))
        }
    }

    /// Sends one request; `timeout` covers the response body too (see [`Response`]).
    pub async fn send(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, Error> {
        let deadline = Instant::now() + timeout;
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let sent = match self {
            Client::Plain(c) => tokio::time::timeout_at(deadline, c.request(req)).await,
            Client::Tls(c) => tokio::time::timeout_at(deadline, c.request(req)).await,
        };
        match sent {
            Err(_) => Err(Error::Timeout),
            Ok(Err(e)) => Err(Error::Request(e)),
            Ok(Ok(resp)) => {
                let (parts, body) = resp.into_parts();
                Ok(Response {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                    deadline,
                })
            }
        }
    }
}

/// A response head and its unread body; reading the body is bounded by the
/// request's total timeout.
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Incoming,
    deadline: Instant,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        match tokio::time::timeout_at(self.deadline, self.body.collect()).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(e)) => Err(Error::Body(e)),
            Ok(Ok(c)) => Ok(c.to_bytes()),
        }
    }

    /// The body as a stream of its data frames; after an error (the timeout
    /// included) the stream ends.
    pub fn bytes_stream(self) -> BodyStream {
        BodyStream {
            body: Some(self.body),
            timer: Box::pin(tokio::time::sleep_until(self.deadline)),
        }
    }

    /// The body up to `limit` bytes (the rest is discarded); what a broken
    /// body delivered before it broke.
    pub async fn read_limited(self, limit: usize) -> Bytes {
        use futures_util::StreamExt;
        let mut out = Vec::new();
        let mut stream = self.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            let room = limit.saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= limit {
                break;
            }
        }
        Bytes::from(out)
    }
}

/// See [`Response::bytes_stream`].
pub struct BodyStream {
    body: Option<Incoming>,
    timer: Pin<Box<Sleep>>,
}

impl Stream for BodyStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    this.body = None;
                    return Poll::Ready(Some(Err(Error::Body(e))));
                }
                Poll::Ready(None) => {
                    this.body = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            this.body = None;
            return Poll::Ready(Some(Err(Error::Timeout)));
        }
        Poll::Pending
    }
}

/// Classifies a transport error without copying its text (which names URLs).
/// The gateway's own resource exhaustion (EMFILE, ENFILE, ENOBUFS, ENOMEM,
/// EADDRNOTAVAIL) is `Local`: never blamed on the provider.
pub fn map_error(e: Error) -> ProviderError {
    match e {
        Error::Timeout => ProviderError::new(ProviderErrorKind::Timeout, "timed out"),
        Error::Request(e) if super::openai::is_local_resource_error(&e) => ProviderError::new(
            ProviderErrorKind::Local,
            "the gateway could not open a connection (local resource limit)",
        ),
        Error::Request(e) if timed_out(&e) => ProviderError::new(ProviderErrorKind::Timeout, "timed out"),
        Error::Request(e) if e.is_connect() => {
            ProviderError::new(ProviderErrorKind::Connect, "connection failed")
        }
        Error::Request(_) => ProviderError::new(ProviderErrorKind::Connect, "request could not be sent"),
        Error::Body(_) => ProviderError::new(
            ProviderErrorKind::Interrupted,
            "connection closed while reading the response",
        ),
    }
}

/// A connect timeout (an `io::ErrorKind::TimedOut` in the error's chain).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// `base` + `path` as a URI, parsed once (a deployment's fixed endpoints).
pub fn uri(base: &str, path: &str) -> Result<Uri, String> {
    let mut s = String::with_capacity(base.len() + path.len());
    s.push_str(base);
    s.push_str(path);
    let absolute = |u: Uri| u.scheme().is_some() && u.authority().is_some();
    match s.parse::<Uri>() {
        Ok(u) if absolute(u.clone()) => Ok(u),
        // Characters a URI must escape (a space, non-ASCII): escaped the WHATWG way first.
        _ => reqwest::Url::parse(&s)
            .ok()
            .and_then(|u| u.as_str().parse::<Uri>().ok())
            .filter(|u| absolute(u.clone()))
            .ok_or_else(|| "invalid base_url".to_string()),
    }
}
