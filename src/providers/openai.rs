//! OpenAI and every OpenAI-compatible server (DeepSeek, vLLM, Ollama, Groq, ...).
//!
//! The request is the client's body bytes with the upstream model id patched in
//! (re-serialised when the gateway changed more, or the body came in another
//! format); the response bytes are forwarded unchanged, so nothing the upstream
//! adds is lost.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue};

use super::error::parse_retry_after;
use super::upstream::{self, map_error, Response};
use super::{ByteStream, ChatAnswer, EmbeddingsAnswer, ProviderError, ProviderErrorKind};
use crate::api::chat::{ChatRequest, EmbeddingsRequest};
use crate::api::raw::{skip_string, skip_ws};
use crate::api::usage::{usage_from_openai_json, OpenAiUsage, Usage};
use crate::config::ProviderSettings;

/// Largest upstream error body read (the rest is discarded).
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct OpenAiBackend {
    client: upstream::Client,
    chat_url: http::Uri,
    embeddings_url: http::Uri,
    responses_url: http::Uri,
    models_url: http::Uri,
    probe_timeout: Duration,
    headers: HeaderMap,
    timeout: Duration,
    /// OpenAI's and DeepSeek's own APIs reject `top_k` (vLLM, Ollama take it).
    strip_top_k: bool,
    /// Set `prompt_cache_key` from the session or key when the client did not.
    prompt_cache_key: bool,
}

tokio::task_local! {
    /// The `prompt_cache_key` for the current request's OpenAI upstream calls.
    static PROMPT_CACHE_KEY: std::sync::Arc<str>;
}

/// Runs `f` (a request's attempt loop) with `key` as the `prompt_cache_key`
/// that OpenAI upstreams with `prompt_cache_key = true` get when the client
/// sent none: requests of one session or key then share OpenAI's prompt cache.
pub async fn with_prompt_cache_key<F: std::future::Future>(
    key: Option<std::sync::Arc<str>>,
    f: F,
) -> F::Output {
    match key {
        Some(k) => PROMPT_CACHE_KEY.scope(k, f).await,
        None => f.await,
    }
}

/// `body` (a JSON object) with `"prompt_cache_key": key` as its first member.
fn with_cache_key(mut body: Vec<u8>, key: &str) -> Vec<u8> {
    let Some(open) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return body;
    };
    let empty = body[open + 1..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|b| *b == b'}');
    if body[open] != b'{' || empty {
        return body;
    }
    let mut member = b"\"prompt_cache_key\":".to_vec();
    if serde_json::to_writer(&mut member, key).is_err() {
        return body;
    }
    member.push(b',');
    body.splice(open + 1..open + 1, member);
    body
}

impl OpenAiBackend {
    pub fn new(s: &ProviderSettings) -> Result<Self, String> {
        let client = http_client(s)?;
        let url = |path: &str| {
            upstream::uri(&s.base_url, path).map_err(|_| format!("provider {}: invalid base_url", s.name))
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
            prompt_cache_key: s.prompt_cache_key,
        })
    }

    async fn post(&self, url: &http::Uri, body: Vec<u8>) -> Result<Response, ProviderError> {
        let mut headers = self.headers.clone();
        if let Some(tp) = crate::telemetry::upstream_traceparent() {
            headers.insert(http::header::HeaderName::from_static("traceparent"), tp);
        }
        let resp = self
            .client
            .send(
                http::Method::POST,
                url.clone(),
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
        Err(ProviderError::from_status(status.as_u16(), retry_after, &body))
    }

    pub async fn chat(
        &self,
        req: &ChatRequest,
        raw: Option<&crate::api::raw::RawChat>,
    ) -> Result<ChatAnswer, ProviderError> {
        // Anthropic-only fields out, reasoning controls mapped (usually a no-op, no copy).
        let cleaned = super::reasoning::for_openai(req, self.strip_top_k);
        let body = match (&cleaned, raw) {
            // Nothing to change but the model: the client's bytes, patched.
            (None, Some(raw)) => raw.patched(&req.model),
            _ => serde_json::to_vec(cleaned.as_ref().unwrap_or(req)).map_err(|e| {
                ProviderError::new(
                    ProviderErrorKind::Malformed,
                    format!("cannot encode request: {e}"),
                )
            })?,
        };
        let body = match PROMPT_CACHE_KEY.try_with(std::sync::Arc::clone) {
            Ok(k) if self.prompt_cache_key && !req.extra.contains_key("prompt_cache_key") => {
                with_cache_key(body, &k)
            }
            _ => body,
        };
        let resp = self.post(&self.chat_url, body).await?;
        if req.is_stream() {
            Ok(ChatAnswer::Stream(event_stream(resp).await?))
        } else {
            let body = resp.bytes().await.map_err(map_error)?;
            let usage = checked_usage(&body)?;
            Ok(ChatAnswer::Complete { body, usage })
        }
    }

    /// Forwards a Responses API body (model already the upstream id) to
    /// `POST /responses`; the answer is in the Responses format.
    pub async fn responses(&self, body: Vec<u8>, stream: bool) -> Result<ChatAnswer, ProviderError> {
        let resp = self.post(&self.responses_url, body).await?;
        if stream {
            let stream = resp.bytes_stream().map(|r| r.map_err(map_error));
            Ok(ChatAnswer::Stream(Box::pin(stream)))
        } else {
            let body = resp.bytes().await.map_err(map_error)?;
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
        let resp = self.get_models().await?;
        let status = resp.status().as_u16();
        match status {
            401 | 403 | 429 | 500..=599 => Err(ProviderError::from_status(status, None, &Bytes::new())),
            _ => Ok(()),
        }
    }

    /// The upstream's own model ids (`GET /models`, OpenAI's list shape, as
    /// vLLM, Ollama, llama.cpp and LM Studio serve it).
    pub async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        let resp = self.get_models().await?;
        let status = resp.status();
        let body = resp.read_limited(4 * 1024 * 1024).await;
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

    async fn get_models(&self) -> Result<Response, ProviderError> {
        self.client
            .send(
                http::Method::GET,
                self.models_url.clone(),
                self.headers.clone(),
                Bytes::new(),
                self.probe_timeout,
            )
            .await
            .map_err(map_error)
    }

    pub async fn embeddings(&self, req: &EmbeddingsRequest) -> Result<EmbeddingsAnswer, ProviderError> {
        let body = serde_json::to_vec(req).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Malformed,
                format!("cannot encode request: {e}"),
            )
        })?;
        let resp = self.post(&self.embeddings_url, body).await?;
        let body = resp.bytes().await.map_err(map_error)?;
        let usage = checked_usage(&body)?;
        Ok(EmbeddingsAnswer { body, usage })
    }
}

/// A 2xx body must be valid UTF-8 JSON, an object, and not an error object
/// (`{"error":{...}}`, which some compatible servers send with HTTP 200);
/// anything else is the upstream's failure: retried, fallen back from, and
/// counted against its breaker.
pub(super) fn check_json_object(body: &Bytes) -> Result<(), ProviderError> {
    let valid = std::str::from_utf8(body).is_ok()
        && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    if !valid {
        return Err(ProviderError::new(
            ProviderErrorKind::Malformed,
            "response body is not a JSON object",
        ));
    }
    if super::error::has_error_member(body) {
        return Err(ProviderError::from_error_in_ok(body));
    }
    Ok(())
}

/// [`check_json_object`] and the body's usage (as [`usage_from_openai_json`]
/// reads it). The common case is one structural scan ([`scan_top`]) and a
/// serde parse of the `usage` member alone: 11,900 instructions a 1.3 KB
/// completion through serde (UTF-8 validation, then every string of the body
/// scanned byte by byte), 8,500 this way, 3,700 of them serde on the usage
/// object (bench/RESULTS.md, 2026-12-07). The scan still refuses what a broken upstream sends: invalid
/// UTF-8, anything but one object, a truncated body (unterminated strings,
/// unclosed or mismatched brackets), text after the object, top-level
/// members out of shape (`{"a" 1}`, `{"a":1 "b":2}`), characters outside
/// strings that no JSON value has, and a non-null `error`. What it no longer
/// checks, inside nested values: that literals are spelled right (`tru`),
/// numbers well-formed (`1.2.3`), commas and colons in place, strings free
/// of raw control characters and bad escapes. Whatever the scan does not
/// take (an escaped key, a repeated `usage` or `error`, very deep nesting)
/// is read by serde as before.
pub(super) fn checked_usage(body: &Bytes) -> Result<Option<Usage>, ProviderError> {
    if let Some(top) = scan_top(body) {
        if let Some(e) = top.error {
            if body.get(e) != Some(&b"null"[..]) {
                return Err(ProviderError::from_error_in_ok(body));
            }
        }
        return Ok(top.usage.and_then(|u| {
            plain_usage(body, u.start).unwrap_or_else(|| {
                serde_json::from_slice::<Option<OpenAiUsage>>(&body[u])
                    .ok()
                    .flatten()
                    .map(Usage::from)
            })
        }));
    }
    checked_usage_serde(body)
}

/// The `usage` value at `at` of a body [`scan_top`] took, read as
/// [`OpenAiUsage`] would be when it is plain (an object, or null, of plain
/// non-negative integers, with the two detail objects): serde on that small
/// object was 3,700 instructions a request (bench/RESULTS.md, 2026-12-07).
/// `None`: not plain (another number form, a repeated field, an escaped
/// key), left to serde.
fn plain_usage(b: &[u8], at: usize) -> Option<Option<Usage>> {
    if b.get(at..at + 4) == Some(b"null") {
        return Some(None);
    }
    let (mut prompt, mut completion, mut hit) = (None, None, None);
    let (mut details, mut cached) = (None, None);
    let (mut completion_details, mut reasoning) = (None, None);
    for_members(b, at, |key, v| {
        let slot = match key {
            b"prompt_tokens" => &mut prompt,
            b"completion_tokens" => &mut completion,
            b"prompt_cache_hit_tokens" => &mut hit,
            b"prompt_tokens_details" => return detail(b, v, &mut details, b"cached_tokens", &mut cached),
            b"completion_tokens_details" => {
                return detail(b, v, &mut completion_details, b"reasoning_tokens", &mut reasoning)
            }
            _ => return Some(()),
        };
        let n = match &b[v] {
            b"null" if key == b"prompt_cache_hit_tokens" => None,
            digits => Some(plain_uint(digits)?),
        };
        slot.replace(n).is_none().then_some(())
    })?;
    Some(Some(Usage {
        prompt_tokens: prompt.flatten().unwrap_or(0),
        completion_tokens: completion.flatten().unwrap_or(0),
        cached_tokens: cached.flatten().or(hit.flatten()).unwrap_or(0),
        cache_write_tokens: 0,
        reasoning_tokens: reasoning.flatten().unwrap_or(0),
    }))
}

/// A details object (or null) of [`plain_usage`]: its one counted field into `field`.
fn detail(
    b: &[u8],
    v: std::ops::Range<usize>,
    seen: &mut Option<()>,
    name: &[u8],
    field: &mut Option<Option<u64>>,
) -> Option<()> {
    if seen.replace(()).is_some() {
        return None;
    }
    if &b[v.clone()] == b"null" {
        return Some(());
    }
    for_members(b, v.start, |key, v| {
        if key != name {
            return Some(());
        }
        let n = match &b[v] {
            b"null" => None,
            digits => Some(plain_uint(digits)?),
        };
        field.replace(n).is_none().then_some(())
    })
    .map(drop)
}

/// A JSON integer of digits only (no sign, fraction or exponent) that fits a u64.
fn plain_uint(d: &[u8]) -> Option<u64> {
    if d.is_empty() || (d.len() > 1 && d[0] == b'0') {
        return None;
    }
    d.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(c - b'0')))
            .flatten()
    })
}

/// Calls `f` with each member (unescaped key, value range) of the object at
/// `at`; the index after the object, or `None` if it is not an object, a key
/// is escaped, or `f` says so.
fn for_members(
    b: &[u8],
    at: usize,
    mut f: impl FnMut(&[u8], std::ops::Range<usize>) -> Option<()>,
) -> Option<usize> {
    if b.get(at) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(b, at + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, i)?;
        let key = &b[i + 1..key_end - 1];
        if key.contains(&b'\\') {
            return None;
        }
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = skip_json_value(b, start)?;
        f(key, start..end)?;
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(i + 1),
            _ => return None,
        }
    }
}

/// The top-level `usage` and `error` values of a body [`scan_top`] took.
#[derive(Debug, Default)]
struct Top {
    usage: Option<std::ops::Range<usize>>,
    error: Option<std::ops::Range<usize>>,
}

/// One pass over a 2xx body: `Some` when it is valid UTF-8 holding one
/// JSON object whose structure is sound (see [`checked_usage`] for what is
/// and is not checked), with where its `usage` and `error` values are.
/// `None` for anything else, including bodies that are valid but that this
/// scan leaves to serde (an escaped key might spell either, a repeated one).
fn scan_top(b: &[u8]) -> Option<Top> {
    // Non-ASCII bytes are the rare case (std's ASCII check is word-at-a-time).
    if !b.is_ascii() && std::str::from_utf8(b).is_err() {
        return None;
    }
    let mut top = Top::default();
    let end = for_members(b, skip_ws(b, 0), |key, v| {
        let slot = match key {
            b"usage" => &mut top.usage,
            b"error" => &mut top.error,
            _ => return Some(()),
        };
        slot.replace(v).is_none().then_some(())
    })?;
    (skip_ws(b, end) == b.len()).then_some(top)
}

/// Bytes a number or `true`/`false`/`null` is made of.
fn scalar_byte(c: u8) -> bool {
    matches!(
        c,
        b'0'..=b'9'
            | b'-'
            | b'+'
            | b'.'
            | b'e'
            | b'E'
            | b't'
            | b'r'
            | b'u'
            | b'f'
            | b'a'
            | b'l'
            | b's'
            | b'n'
    )
}

/// The index after the value starting at `at`: strings end, brackets pair
/// up (kind for kind), and outside strings only structural, blank and
/// scalar bytes occur. Nesting deeper than 128 is left to serde (None).
fn skip_json_value(b: &[u8], at: usize) -> Option<usize> {
    match *b.get(at)? {
        b'"' => skip_string(b, at),
        b'{' | b'[' => {
            // One bit a level: 1 for an object, 0 for an array.
            let mut kinds: u128 = 0;
            let mut depth = 0u32;
            let mut i = at;
            while let Some(&c) = b.get(i) {
                match c {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => {
                        if depth == 128 {
                            return None;
                        }
                        kinds = (kinds << 1) | u128::from(c == b'{');
                        depth += 1;
                    }
                    b'}' | b']' => {
                        if depth == 0 || (kinds & 1 == 1) != (c == b'}') {
                            return None;
                        }
                        kinds >>= 1;
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => {}
                    c if scalar_byte(c) => {}
                    _ => return None,
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = at;
            while b.get(i).is_some_and(|&c| scalar_byte(c)) {
                i += 1;
            }
            (i > at).then_some(i)
        }
    }
}

/// [`checked_usage`] through serde: one parse when the body is well-formed,
/// the two readings one by one when it is not.
fn checked_usage_serde(body: &Bytes) -> Result<Option<Usage>, ProviderError> {
    #[derive(serde::Deserialize)]
    struct Top {
        #[serde(default)]
        usage: Option<OpenAiUsage>,
        #[serde(default)]
        error: Option<serde_json::Value>,
    }
    let object =
        std::str::from_utf8(body).is_ok() && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if object {
        if let Ok(top) = serde_json::from_slice::<Top>(body) {
            if top.error.is_some() {
                return Err(ProviderError::from_error_in_ok(body));
            }
            return Ok(top.usage.map(Usage::from));
        }
    }
    // Not JSON, or a `usage` of an unexpected shape: the two readings one by one.
    check_json_object(body)?;
    Ok(usage_from_openai_json(body))
}

/// The body of a 2xx answer to a streaming request, as a stream. A JSON
/// object instead of events (an error object served with 200) is read and
/// turned into the upstream error it is. A server that labels real events
/// `application/json` still streams: only a body starting with `{` is read.
pub(super) async fn event_stream(resp: Response) -> Result<ByteStream, ProviderError> {
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let mut s = resp.bytes_stream().map(|r| r.map_err(map_error));
    if !json {
        return Ok(Box::pin(s));
    }
    let mut head = Vec::new();
    loop {
        match s.next().await {
            Some(Ok(b)) => head.extend_from_slice(&b),
            Some(Err(e)) => return Err(e),
            None => break,
        }
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            None => continue,
            Some(b'{') if head.len() < MAX_ERROR_BODY => continue,
            Some(b'{') => break,
            // Events after all: hand them on, what was read first.
            Some(_) => {
                let first = futures_util::stream::once(async move { Ok(Bytes::from(head)) });
                return Ok(Box::pin(first.chain(s)));
            }
        }
    }
    let body = Bytes::from(head);
    Err(match check_json_object(&body) {
        Err(e) => e,
        Ok(()) => ProviderError::new(
            ProviderErrorKind::Malformed,
            "a JSON body instead of an event stream",
        ),
    })
}

/// The pooled HTTP client of one provider (see `upstream.rs`).
pub(super) fn http_client(s: &ProviderSettings) -> Result<upstream::Client, String> {
    upstream::Client::new(&s.base_url, s.connect_timeout)
        .map_err(|e| format!("provider {}: cannot build HTTP client: {e}", s.name))
}

/// Whether an error chain holds an OS error meaning the gateway itself ran
/// out of something (file descriptors, socket buffers, memory, local ports).
pub fn is_local_resource_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.raw_os_error().is_some_and(is_local_errno) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL.
pub fn is_local_errno(code: i32) -> bool {
    [
        libc::EMFILE,
        libc::ENFILE,
        libc::ENOBUFS,
        libc::ENOMEM,
        libc::EADDRNOTAVAIL,
    ]
    .contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_resource_errors_are_recognised_through_the_chain() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tcp open error")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let emfile = Wrap(std::io::Error::from_raw_os_error(libc::EMFILE));
        assert!(is_local_resource_error(&emfile));
        let refused = Wrap(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert!(!is_local_resource_error(&refused));
    }

    #[test]
    fn one_pass_check_and_usage_agree_with_the_two_readings() {
        for body in [
            &br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":1}}}"#[..],
            br#"{"id":"x","choices":[],"error":null,"usage":null}"#,
            br#"{"usage":"odd","choices":[]}"#,
            br#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
            br#"{"error":{"message":"slow down","code":429}}"#,
            br#"{"id":"x","choices":["#,
            b"{\"id\":\"\xff\"}",
            b"[1,2]",
            b"",
        ] {
            let body = Bytes::copy_from_slice(body);
            let two = check_json_object(&body).map(|()| usage_from_openai_json(&body));
            let one = checked_usage(&body);
            match (one, two) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{body:?}"),
                (Err(a), Err(b)) => assert_eq!((a.kind, a.status), (b.kind, b.status), "{body:?}"),
                (a, b) => panic!("{body:?}: {a:?} vs {b:?}"),
            }
        }
    }

    #[test]
    fn the_scan_reads_valid_bodies_as_serde_does() {
        for body in [
            &br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":1}}}"#[..],
            br#" {"choices":[{"message":{"content":"a \"quoted\" {[ text ]} \\"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}} "#,
            "{\"content\":\"caf\u{e9} \u{1F600}\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}".as_bytes(),
            br#"{"a":[1,-2.5e3,true,false,null,[],{}],"usage":null,"error":null}"#,
            br#"{"us\u0061ge":{"prompt_tokens":7,"completion_tokens":8}}"#,
            br#"{"usage":{"prompt_tokens":-1}}"#,
            br#"{}"#,
            br#"{"usage":{"prompt_tokens":9,"completion_tokens":1,"prompt_cache_hit_tokens":4}}"#,
            br#"{"usage":{"prompt_tokens":9,"prompt_cache_hit_tokens":4,"prompt_tokens_details":{"cached_tokens":2,"audio_tokens":0}}}"#,
            br#"{"usage":{"prompt_tokens":9,"prompt_cache_hit_tokens":null,"prompt_tokens_details":{"cached_tokens":null}}}"#,
            br#"{"usage":{"prompt_tokens":9,"prompt_cache_hit_tokens":3,"prompt_tokens_details":null,"completion_tokens_details":null}}"#,
            br#"{"usage":{"completion_tokens":5,"completion_tokens_details":{"reasoning_tokens":4,"x":[1,{"y":2}]},"total_tokens":5}}"#,
            br#"{"usage":{"prompt_tokens":null}}"#,
            br#"{"usage":{"prompt_tokens":1.0}}"#,
            br#"{"usage":{"prompt_tokens":1e2}}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551615}}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
            br#"{"usage":{"prompt_tokens":3,"prompt_tokens":4}}"#,
            br#"{"usage":{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":2}}}"#,
            br#"{"usage":{"prompt_tokens_details":{"cached_tokens":"7"}}}"#,
            br#"{"usage":{"prompt_tokens_details":[1]}}"#,
            br#"{"usage":{"pro\u006dpt_tokens":6}}"#,
            br#"{"usage":{}}"#,
            br#"{"usage":[]}"#,
            br#"{"usage":7}"#,
        ] {
            let body = Bytes::copy_from_slice(body);
            let serde = checked_usage_serde(&body).expect("valid body");
            let scanned = checked_usage(&body).expect("valid body");
            assert_eq!(scanned, serde, "{}", String::from_utf8_lossy(&body));
        }
        let deep = format!(
            "{{\"a\":{}{},\"usage\":{{\"prompt_tokens\":2}}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let deep = Bytes::from(deep);
        assert!(scan_top(&deep).is_none(), "left to serde");
        assert_eq!(
            checked_usage(&deep).expect("valid").map(|u| u.prompt_tokens),
            Some(2)
        );
    }

    #[test]
    fn the_scan_refuses_broken_bodies() {
        for bad in [
            &br#"{"id":"x","choices":[{"message":{"content":"hi"}}]"#[..],
            br#"{"id":"x","choices":[{"message":{"content":"hi"}]}]}"#,
            br#"{"id":"x","choices":[{"message":{"content":"hi"#,
            br#"{"id":"x"} trailing"#,
            br#"{"id":"x"}{"id":"y"}"#,
            br#"{"id" "x"}"#,
            br#"{"id":"x" "usage":null}"#,
            br#"{"id":"x",}"#,
            br#"{"a":[1,<b>]}"#,
            br#"{"a":undefined}"#,
            b"<html><body>502 Bad Gateway</body></html>",
            b"{\"id\":\"\xff\"}",
            b"",
            b"   ",
            br#""just a string""#,
            br#"[{"usage":null}]"#,
            br#"{"error":{"message":"overloaded"},"usage":null}"#,
            br#"{"error":"overloaded"}"#,
        ] {
            let e = checked_usage(&Bytes::copy_from_slice(bad)).expect_err(&String::from_utf8_lossy(bad));
            assert!(e.is_retryable(), "{e:?}");
        }
    }

    #[test]
    fn ok_bodies_that_are_errors_are_refused() {
        let ok = Bytes::from_static(br#"{"id":"x","choices":[],"error":null}"#);
        assert!(check_json_object(&ok).is_ok());
        let mentions = Bytes::from_static(br#"{"choices":[{"message":{"content":"\"error\": 1"}}]}"#);
        assert!(check_json_object(&mentions).is_ok());
        for bad in [
            &br#"{"error":{"message":"upstream overloaded","type":"server_error"}}"#[..],
            br#"{"id":"x","choices":["#,
            b"{\"id\":\"\xff\xfe\"}",
            b"[1,2]",
            b"",
        ] {
            let e = check_json_object(&Bytes::copy_from_slice(bad)).expect_err("refused");
            assert!(e.is_retryable(), "{e:?}");
        }
        let e = check_json_object(&Bytes::from_static(
            br#"{"error":{"message":"slow down","code":429}}"#,
        ))
        .expect_err("refused");
        assert_eq!((e.kind, e.status), (ProviderErrorKind::Status, Some(429)));
        let e = check_json_object(&Bytes::from_static(
            br#"{"error":{"message":"bad","code":"400"}}"#,
        ))
        .expect_err("refused");
        assert!(!e.is_retryable());
    }
}
