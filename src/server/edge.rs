//! The gateway's edge: what protects it from its clients before a handler
//! runs. Every error the gateway writes itself is JSON in the route's wire
//! format; request bodies have a deadline; open connections are capped; the
//! open-file limit is raised at start, and the start's code pages are let go
//! once it is over.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::BodyExt;

use crate::api::ApiError;
use crate::state::AppState;

/// Whether `path` speaks Anthropic's wire format (errors included).
pub fn is_anthropic_path(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}

/// `e` rendered in the wire format of the route at `path`: Anthropic's
/// `{"type":"error","error":{...}}` on `/v1/messages`, OpenAI's elsewhere.
pub fn error_for_path(path: &str, e: ApiError) -> Response {
    render_error(is_anthropic_path(path), e)
}

/// `e` in Anthropic's error shape (`anthropic`) or OpenAI's.
pub fn render_error(anthropic: bool, e: ApiError) -> Response {
    if !anthropic {
        return e.into_response();
    }
    let body = crate::providers::anthropic::api_error_to_messages(&e);
    let mut r = (e.status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(s) = e.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// Largest framework error body turned into a message (they are short).
const MAX_REWRITTEN_BODY: usize = 4096;

/// Outermost middleware: an error response that is not JSON (the
/// framework's extractor rejections: query strings, body buffering, JSON
/// content types, path parameters) becomes the route's error JSON, with its
/// status kept and the framework's text as the message.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let anthropic = is_anthropic_path(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"));
    // JSON, or a dashboard page (`/ui` login with its error): ours, kept.
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match http_body_util::Limited::new(body, MAX_REWRITTEN_BODY)
        .collect()
        .await
    {
        Ok(c) => String::from_utf8_lossy(&c.to_bytes()).trim().to_string(),
        Err(_) => String::new(),
    };
    let e = framework_error(status, text);
    let mut out = render_error(anthropic, e);
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// The ApiError for a framework rejection with `status` and text `text`.
fn framework_error(status: StatusCode, text: String) -> ApiError {
    let (kind, code) = match status.as_u16() {
        400 => ("invalid_request_error", "invalid_request"),
        404 => ("invalid_request_error", "unknown_url"),
        405 => ("invalid_request_error", "method_not_allowed"),
        408 => ("invalid_request_error", "body_timeout"),
        411 => ("invalid_request_error", "length_required"),
        413 => ("invalid_request_error", "payload_too_large"),
        415 => ("invalid_request_error", "unsupported_media_type"),
        422 => ("invalid_request_error", "invalid_request"),
        s if s < 500 => ("invalid_request_error", "invalid_request"),
        _ => ("server_error", "internal_error"),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("Request failed").to_string()
    } else {
        text
    };
    let message = if message.ends_with('.') {
        message
    } else {
        format!("{message}.")
    };
    ApiError::new(status, kind, message).with_code(code)
}

/// The error a request body yields when its deadline passed.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body not received within {} ms", self.0.as_millis())
    }
}

impl std::error::Error for BodyTimeout {}

/// Whether an error (from reading a request body) is the body deadline.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes:
/// a client sending its body a byte at a time cannot hold a connection, a
/// task and a buffer forever.
struct TimedBody {
    inner: Body,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {}
            other => return other,
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.expired = true;
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: every request body must arrive within `server.body_timeout_ms`
/// of the request head (read_body answers 408 beyond it).
pub async fn body_deadline(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if HttpBody::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let limit = st.rt().config.server.body_timeout;
    let req = req.map(|inner| {
        Body::new(TimedBody {
            inner,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
            expired: false,
        })
    });
    next.run(req).await
}

/// 408 for a body that did not arrive in time.
pub fn body_timeout_error() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "invalid_request_error",
        "The request body was not received in time.",
    )
    .with_code("body_timeout")
}

/// The canned answer to a connection over `server.max_connections`: written
/// straight to the socket (no request parsing, no task budget spent).
pub fn over_capacity_response() -> Vec<u8> {
    let body = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "The gateway is at its connection limit (server.max_connections); retry shortly.",
    )
    .with_code("too_many_connections")
    .body();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Answers an over-capacity connection with a 503 and closes it. The
/// request (if any was sent) is read and discarded briefly first so the
/// close does not reset the connection before the client reads the answer.
pub async fn reject_connection(mut stream: tokio::net::TcpStream, answer: Arc<[u8]>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut buf = [0u8; 4096];
        // What the client already sent (its request head), if anything.
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {}
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        // Drain until the client closes, so our close is not a reset.
        while stream.read(&mut buf).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), work).await;
}

/// Raises the soft open-file limit (RLIMIT_NOFILE) to the hard limit, so
/// the gateway is not capped at the common default of 1,024 descriptors.
/// Returns (before, after) soft limits.
pub fn raise_nofile_limit() -> Result<(u64, u64), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur >= lim.rlim_max {
        return Ok((before, before));
    }
    let want = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok((before, lim.rlim_max))
}

/// Drops the executable's read-only pages (its code and read-only data) from
/// this process's page tables, once the gateway has started. The start runs
/// code that serving never runs again (argument and config parsing, schema
/// creation, the runtime's and the routers' set-up), and the kernel maps 64 KB
/// around every code page touched: 18 MB of an idle gateway's 29 MB resident
/// memory were the executable's own file pages, most of them the start's
/// (bench/RESULTS.md, 2026-12-07 evening). The pages stay in the page cache;
/// those serving uses come back on first touch (a minor fault each).
///
/// Only mappings of the executable that are not writable and hold no page
/// of their own (`Anonymous: 0 kB` in `/proc/self/smaps`) are advised
/// (`MADV_DONTNEED`): for them the advice drops page-table entries and loses
/// nothing. The relocated read-only data (RELRO) holds private copies and is
/// left alone. Returns the bytes advised.
#[cfg(target_os = "linux")]
pub fn release_startup_pages() -> Result<usize, String> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| format!("/proc/self/exe: {e}"))?;
    let smaps = std::fs::read_to_string("/proc/self/smaps").map_err(|e| format!("/proc/self/smaps: {e}"))?;
    let mut advised = 0;
    for (start, end) in clean_mappings_of(&smaps, &exe.to_string_lossy()) {
        // SAFETY: [start, end) is a whole mapping of the executable's file that
        // is not writable and has no private pages: MADV_DONTNEED only drops
        // its page-table entries, and every later access reads the same bytes
        // back from the file.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) } == 0 {
            advised += end - start;
        }
    }
    Ok(advised)
}

/// The address ranges of `/proc/self/smaps` mappings of the file `path` that
/// are private, not writable, and hold no anonymous (copied) page.
fn clean_mappings_of(smaps: &str, path: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The mapping being read: its range, whether it qualifies so far.
    let mut current: Option<((usize, usize), bool)> = None;
    let finish = |m: Option<((usize, usize), bool)>, out: &mut Vec<(usize, usize)>| {
        if let Some((range, true)) = m {
            out.push(range);
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((a, b)) = first.split_once('-') {
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
                continue;
            };
            finish(current.take(), &mut out);
            let perms = fields.next().unwrap_or("");
            let file: Vec<&str> = fields.skip(3).collect();
            let ok = perms.len() == 4
                && perms.as_bytes()[1] != b'w'
                && perms.as_bytes()[3] == b'p'
                && !file.is_empty()
                && file.join(" ") == path;
            current = Some(((a, b), ok));
        } else if first == "Anonymous:" {
            if let Some((_, ok)) = current.as_mut() {
                *ok &= fields.next() == Some("0");
            }
        }
    }
    finish(current.take(), &mut out);
    out
}

/// The current soft open-file limit, if it can be read.
pub fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

/// The connection cap that fits in `nofile` descriptors: each proxied
/// request holds its client socket and an upstream socket, plus headroom for
/// the ledger, listeners and logs.
pub fn connections_that_fit(configured: usize, nofile: Option<u64>) -> usize {
    match nofile {
        Some(n) if n != libc::RLIM_INFINITY => {
            let fit = (n.saturating_sub(64) / 2).max(1);
            configured.min(usize::try_from(fit).unwrap_or(usize::MAX))
        }
        _ => configured,
    }
}

/// The connection's IO, with one rewrite: the bodiless 4xx that hyper itself
/// writes for a request that is not valid HTTP (a control character in a
/// header, a bad Content-Length, a head over `max_header_bytes`) becomes an
/// error JSON body. Everything else passes through untouched; the check is a
/// prefix comparison per write.
pub struct JsonErrorIo<T> {
    inner: T,
    /// A rewritten response still being written, and how much of it is out.
    pending: Option<(Bytes, usize)>,
}

impl<T> JsonErrorIo<T> {
    pub fn new(inner: T) -> Self {
        JsonErrorIo { inner, pending: None }
    }
}

/// The JSON replacement for hyper's own bodiless error response `head`, if
/// it is one: a 4xx with `content-length: 0` (the gateway's own errors always
/// have a body).
fn rewrite_framework_head(head: &[u8]) -> Option<Bytes> {
    if !head.starts_with(b"HTTP/1.1 4") || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    memchr::memmem::find(head, b"\r\ncontent-length: 0\r\n")?;
    let code: u16 = std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()?;
    let status = StatusCode::from_u16(code).ok()?;
    let reason = status.canonical_reason().unwrap_or("Bad Request");
    let message = match code {
        431 => "The request head (request line and headers) is over server.max_header_bytes.",
        _ => "The request is not valid HTTP/1.1 (malformed request line, header or Content-Length).",
    };
    let body = ApiError::new(status, "invalid_request_error", message)
        .with_code(if code == 431 {
            "headers_too_large"
        } else {
            "malformed_http"
        })
        .body();
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(Bytes::from(out))
}

impl<T: hyper::rt::Write + Unpin> JsonErrorIo<T> {
    /// Writes what is pending; Ready(Ok) once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *done += n;
                    if *done >= bytes.len() {
                        self.pending = None;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for JsonErrorIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for JsonErrorIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.poll_pending(cx)?.is_pending() {
            return Poll::Pending;
        }
        if let Some(replacement) = rewrite_framework_head(buf) {
            this.pending = Some((replacement, 0));
            // The original head counts as written; the replacement goes out instead.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.poll_pending(cx)?.is_pending() {
            return Poll::Pending;
        }
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if first.starts_with(b"HTTP/1.1 4") && rewrite_framework_head(first).is_some() {
                // Only the head: a short write, which the caller continues.
                return Pin::new(this).poll_write(cx, first);
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.poll_pending(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.poll_pending(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_mappings_of_the_file_are_released() {
        let smaps = "\
5600-5700 r--p 00000000 fe:00 42                         /opt/sy/switchyard
Rss:                  64 kB
Anonymous:             0 kB
5700-5900 r-xp 00100000 fe:00 42                         /opt/sy/switchyard
Anonymous:             0 kB
VmFlags: rd ex mr mw me
5900-5a00 r--p 00300000 fe:00 42                         /opt/sy/switchyard
Anonymous:             8 kB
5a00-5b00 rw-p 00400000 fe:00 42                         /opt/sy/switchyard
Anonymous:             0 kB
6000-6100 r-xp 00000000 fe:00 7                          /usr/lib/libc.so.6
Anonymous:             0 kB
7000-7100 rw-p 00000000 00:00 0
Anonymous:             4 kB
8000-8100 r--s 00000000 fe:00 42                         /opt/sy/switchyard
Anonymous:             0 kB
9000-9100 r--p 00000000 fe:00 43                         /opt/sy/switchyard old
Anonymous:             0 kB
a000-a100 r-xp 00000000 fe:00 42                         /opt/sy/switchyard
Anonymous:             0 kB
";
        assert_eq!(
            clean_mappings_of(smaps, "/opt/sy/switchyard"),
            vec![(0x5600, 0x5700), (0x5700, 0x5900), (0xa000, 0xa100)]
        );
        assert_eq!(
            clean_mappings_of(smaps, "/opt/sy/switchyard old"),
            vec![(0x9000, 0x9100)]
        );
        assert!(clean_mappings_of(smaps, "/nowhere").is_empty());
    }

    /// On this test binary itself: its code pages go, and the code runs on
    /// (every page it needs comes back from the file).
    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_the_executables_pages_keeps_it_running() {
        let advised = release_startup_pages().expect("smaps readable");
        assert!(advised > 0, "the test binary has read-only code mappings");
        let v: serde_json::Value = serde_json::from_str(r#"{"a":[1,2,3]}"#).expect("json");
        assert_eq!(v["a"][2], 3);
        assert_eq!(release_startup_pages().map(|n| n > 0), Ok(true));
    }

    #[test]
    fn framework_errors_keep_status_and_text() {
        let e = framework_error(
            StatusCode::BAD_REQUEST,
            "Failed to buffer the request body".into(),
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "Failed to buffer the request body.");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).expect("json");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let e = framework_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, String::new());
        assert_eq!(e.code.as_deref(), Some("unsupported_media_type"));
        assert_eq!(e.message, "Unsupported Media Type.");
    }

    #[test]
    fn connection_cap_fits_the_descriptor_limit() {
        assert_eq!(connections_that_fit(4096, Some(1024)), 480);
        assert_eq!(connections_that_fit(4096, Some(1_048_576)), 4096);
        assert_eq!(connections_that_fit(100, None), 100);
        assert_eq!(connections_that_fit(100, Some(10)), 1);
    }

    #[test]
    fn only_hyper_bodiless_errors_are_rewritten() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 13:47:28 GMT\r\n\r\n";
        let out = rewrite_framework_head(hyper_400).expect("rewritten");
        let text = String::from_utf8(out.to_vec()).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json"));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], "malformed_http");
        let ours =
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 77\r\n\r\n";
        assert!(rewrite_framework_head(ours).is_none());
        assert!(rewrite_framework_head(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite_framework_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n").is_none());
    }

    #[test]
    fn over_capacity_answer_is_http_with_json() {
        let a = over_capacity_response();
        let text = String::from_utf8(a).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 503"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], "too_many_connections");
    }
}
