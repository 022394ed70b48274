//! The gateway's edge under hostile clients, over raw sockets: every error
//! the gateway writes is JSON in the route's wire format, request bodies
//! have a deadline, open connections are capped (docs/reliability.md).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "admin-key-edge-5d1e";
/// Generous: these tests wait for events, they do not time them.
const PATIENCE: Duration = Duration::from_secs(60);

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Index just past the blank line ending the response head, if complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..i]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = i + 2;
        let end = (start + size).min(body.len());
        out.extend_from_slice(&body[start..end]);
        body = body.get(end + 2..).unwrap_or_default();
    }
    out
}

/// Reads one response from a keep-alive connection (Content-Length framed),
/// or up to EOF.
async fn read_response(s: &mut TcpStream) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let work = async {
        loop {
            if let Some(end) = head_end(&buf) {
                let (status, headers) = parse_head(&buf[..end]);
                let len = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse::<usize>().ok());
                if let Some(len) = len {
                    if buf.len() >= end + len {
                        let body = buf[end..end + len].to_vec();
                        return Resp {
                            status,
                            headers,
                            body,
                        };
                    }
                }
            }
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                let end = head_end(&buf).unwrap_or(buf.len());
                let (status, headers) = parse_head(&buf[..end]);
                let raw = buf[end..].to_vec();
                let chunked = headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
                let body = if chunked { dechunk(&raw) } else { raw };
                return Resp {
                    status,
                    headers,
                    body,
                };
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, work)
        .await
        .expect("a response in time")
}

/// Sends `raw` on a new connection (optionally closing our sending half)
/// and reads the answer.
async fn send_raw(addr: SocketAddr, raw: &[u8], half_close: bool) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    if half_close {
        s.shutdown().await.expect("shutdown");
    }
    read_response(&mut s).await
}

fn addr_of(gw: &Gw) -> SocketAddr {
    gw.base
        .trim_start_matches("http://")
        .parse()
        .expect("gateway address")
}

/// Every route the gateway serves: (method, path). New routes go here so the
/// error-shape walk covers them.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/chat/completions"),
    ("POST", "/chat/completions"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"),
    ("POST", "/responses"),
    ("GET", "/v1/responses/resp_no_such_response"),
    ("DELETE", "/v1/responses/resp_no_such_response"),
    ("POST", "/v1/completions"),
    ("POST", "/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/embeddings"),
    ("POST", "/v1/feedback"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/fast"),
    ("GET", "/admin/health"),
    ("GET", "/admin/spend"),
    ("GET", "/admin/keys"),
    ("POST", "/admin/keys"),
    ("DELETE", "/admin/keys/no-such-key"),
    ("POST", "/admin/reload"),
    ("GET", "/admin/experiments"),
    ("GET", "/admin/experiments/no-such-experiment"),
    ("POST", "/admin/experiments/no-such-experiment/reset"),
    ("GET", "/metrics"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/no/such/route"),
];

/// Whether errors on `path` use Anthropic's shape.
fn anthropic(path: &str) -> bool {
    path.starts_with("/v1/messages")
}

/// One malformed request: what to change about a route's normal call.
struct Mal {
    name: &'static str,
    method: Option<&'static str>,
    query: &'static str,
    content_type: Option<&'static str>,
    /// Extra header lines, each ending in \r\n.
    headers: &'static [u8],
    body: Vec<u8>,
    /// Declared Content-Length minus what is sent (the body is cut short, then our side closes).
    short_by: usize,
    /// Use a wrong key instead of the right one.
    bad_auth: bool,
}

impl Mal {
    fn new(name: &'static str) -> Mal {
        Mal {
            name,
            method: None,
            query: "",
            content_type: Some("application/json"),
            headers: b"",
            body: Vec::new(),
            short_by: 0,
            bad_auth: false,
        }
    }
}

fn malformed_requests() -> Vec<Mal> {
    let valid_chat = br#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    let mut out = vec![];
    for m in ["PATCH", "PUT", "DELETE", "GET", "POST", "OPTIONS"] {
        out.push(Mal {
            method: Some(m),
            ..Mal::new("other method")
        });
    }
    for q in [
        "?all=1",
        "?all=maybe",
        "?all",
        "?by=%ZZ&since=yesterday",
        "?by=nothing&until=13/45/2026",
        "?since=%FF%FE",
        "?by[]=x&by[]=y",
        "?=&&==",
    ] {
        out.push(Mal {
            query: q,
            ..Mal::new("malformed query")
        });
    }
    for (name, body) in [
        ("empty body", Vec::new()),
        ("whitespace", b"  \n ".to_vec()),
        ("truncated JSON", b"{\"model\":\"fast\",\"mess".to_vec()),
        ("JSON array", b"[1,2,3]".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("JSON string", b"\"hello\"".to_vec()),
        (
            "invalid UTF-8",
            b"{\"model\":\"\xff\xfe\",\"messages\":[]}".to_vec(),
        ),
        (
            "wrong types",
            br#"{"model":5,"messages":{"a":1},"stream":"yes","max_tokens":-3}"#.to_vec(),
        ),
        ("deep nesting", [vec![b'['; 5000], vec![b']'; 5000]].concat()),
        ("trailing garbage", [valid_chat.clone(), b"}}}".to_vec()].concat()),
        ("binary", (0u8..=255).collect()),
    ] {
        out.push(Mal {
            body,
            ..Mal::new(name)
        });
    }
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin1",
    ] {
        out.push(Mal {
            content_type: Some(ct),
            body: valid_chat.clone(),
            ..Mal::new("content type")
        });
    }
    out.push(Mal {
        content_type: None,
        body: valid_chat.clone(),
        ..Mal::new("no content type")
    });
    out.push(Mal {
        body: valid_chat.clone(),
        short_by: 25,
        ..Mal::new("body shorter than Content-Length")
    });
    out.push(Mal {
        body: valid_chat.clone(),
        bad_auth: true,
        ..Mal::new("wrong key")
    });
    for (name, h) in [
        ("unknown route header", &b"x-switchyard-route: no-such-route\r\n"[..]),
        ("unknown task header", b"x-switchyard-task: no-such-task\r\n"),
        ("non-ASCII header values", b"x-request-id: \xc3\xa9\xff\r\nx-switchyard-session: \xfe\r\n"),
        ("huge request id", b"x-request-id: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"),
        ("anthropic headers", b"anthropic-version: 1999-99-99\r\nanthropic-beta: ,,,\r\n"),
        ("authorization without scheme", b"x-api-key: \r\n"),
    ] {
        out.push(Mal {
            headers: h,
            body: valid_chat.clone(),
            ..Mal::new(name)
        });
    }
    out
}

fn build(method: &str, path: &str, m: &Mal, auth: &str) -> Vec<u8> {
    let mut r = format!(
        "{} {}{} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\nauthorization: Bearer {auth}\r\n",
        m.method.unwrap_or(method),
        path,
        m.query
    )
    .into_bytes();
    if let Some(ct) = m.content_type {
        r.extend_from_slice(format!("content-type: {ct}\r\n").as_bytes());
    }
    r.extend_from_slice(m.headers);
    let sent = m.body.len().saturating_sub(m.short_by);
    r.extend_from_slice(format!("content-length: {}\r\n\r\n", m.body.len()).as_bytes());
    r.extend_from_slice(&m.body[..sent]);
    r
}

/// Asserts `r` (an error) is the route's error JSON; returns the message.
fn assert_error_shape(path: &str, what: &str, r: &Resp) -> String {
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{what}: content-type {ct:?}, body {:?}",
        String::from_utf8_lossy(&r.body)
    );
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {:?}", String::from_utf8_lossy(&r.body)));
    if anthropic(path) {
        assert_eq!(v["type"], "error", "{what}: Anthropic shape: {v}");
        assert!(v["error"]["type"].is_string(), "{what}: {v}");
        v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: message: {v}"))
            .to_string()
    } else {
        assert!(v["error"]["type"].is_string(), "{what}: OpenAI shape: {v}");
        assert!(v["error"].get("code").is_some(), "{what}: {v}");
        v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: message: {v}"))
            .to_string()
    }
}

async fn create_key(gw: &Gw) -> String {
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "walker"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    v["key"].as_str().expect("secret").to_string()
}

/// docs/reliability.md, "Errors": every route, every malformed query, body,
/// content type and header: the gateway answers with its own error JSON
/// (Anthropic's on /v1/messages), never text, never a 5xx for a client mistake.
#[tokio::test]
async fn every_error_on_every_route_is_json_in_the_routes_format() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&with_admin_key(&config_for(fake.addr, ""), ADMIN)).await;
    let key = create_key(&gw).await;
    let addr = addr_of(&gw);
    let mut errors = 0;
    let mut by_status = std::collections::BTreeMap::new();
    for (method, path) in ROUTES {
        for m in malformed_requests() {
            let right = if path.starts_with("/admin") {
                ADMIN
            } else {
                key.as_str()
            };
            let auth = if m.bad_auth { "sk-wrong" } else { right };
            let raw = build(method, path, &m, auth);
            let r = send_raw(addr, &raw, m.short_by > 0).await;
            let what = format!(
                "{} {path}{} [{}]: HTTP {}",
                m.method.unwrap_or(method),
                m.query,
                m.name,
                r.status
            );
            assert!(r.status >= 200, "{what}: no HTTP response");
            assert!(
                r.status < 500,
                "{what}: a client mistake is not a server error: {:?}",
                String::from_utf8_lossy(&r.body)
            );
            *by_status.entry(r.status).or_insert(0) += 1;
            if r.status >= 400 {
                errors += 1;
                let msg = assert_error_shape(path, &what, &r);
                assert!(!msg.is_empty(), "{what}: empty message");
                assert!(
                    !msg.contains(UPSTREAM_KEY) && !msg.contains(ADMIN),
                    "{what}: a secret in {msg}"
                );
            }
        }
    }
    eprintln!("error-shape walk: {errors} errors, statuses {by_status:?}");
    assert!(errors > 300, "the walk exercises errors: {errors}");
    gw.stop().await;
}

/// The framework's specific rejections named in issue 18, one by one.
#[tokio::test]
async fn framework_rejections_are_error_json() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&with_admin_key(&config_for(fake.addr, ""), ADMIN)).await;
    let addr = addr_of(&gw);
    // A flag written as 1 is understood; a nonsense flag is a 400 naming it.
    let ok = send_raw(
        addr,
        format!("GET /admin/keys?all=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {ADMIN}\r\n\r\n").as_bytes(),
        false,
    )
    .await;
    assert_eq!(ok.status, 200, "{:?}", String::from_utf8_lossy(&ok.body));
    let bad = send_raw(
        addr,
        format!("GET /admin/keys?all=maybe HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {ADMIN}\r\n\r\n").as_bytes(),
        false,
    )
    .await;
    assert_eq!(bad.status, 400);
    let msg = assert_error_shape("/admin/keys", "all=maybe", &bad);
    assert!(msg.contains("all"), "{msg}");
    // A body shorter than its Content-Length, on the chat and Anthropic routes and the admin API.
    for path in ["/v1/chat/completions", "/v1/messages", "/admin/keys"] {
        let raw = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\""
        );
        let r = send_raw(addr, raw.as_bytes(), true).await;
        assert_eq!(r.status, 400, "{path}: {:?}", String::from_utf8_lossy(&r.body));
        assert_error_shape(path, path, &r);
    }
    // The wrong method on the Anthropic route answers in Anthropic's shape.
    let r = send_raw(
        addr,
        b"GET /v1/messages HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        false,
    )
    .await;
    assert_eq!(r.status, 405);
    assert_error_shape("/v1/messages", "GET /v1/messages", &r);
    gw.stop().await;
}

/// Requests that are not valid HTTP never reach a route: the HTTP layer's
/// bodiless 400/431 is rewritten to OpenAI's error JSON (the route, and so
/// its format, is unknown before the request parses).
#[tokio::test]
async fn requests_that_are_not_http_get_error_json_too() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let addr = addr_of(&gw);
    let huge = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    for (name, raw, status) in [
        ("control character in a header", b"GET /health HTTP/1.1\r\nhost: x\r\nx-a: \x01\r\n\r\n".to_vec(), 400),
        ("bad Content-Length", b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n".to_vec(), 400),
        ("two Content-Lengths", b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n{}".to_vec(), 400),
        ("not a request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        ("head over max_header_bytes", huge.into_bytes(), 431),
    ] {
        let r = send_raw(addr, &raw, false).await;
        assert_eq!(r.status, status, "{name}: {:?}", String::from_utf8_lossy(&r.body));
        let msg = assert_error_shape("/", name, &r);
        assert!(!msg.is_empty(), "{name}");
    }
    // Ordinary traffic on the same server is untouched.
    let r = send_raw(
        addr,
        b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        false,
    )
    .await;
    assert_eq!((r.status, r.body.as_slice()), (200, &br#"{"status":"ok"}"#[..]));
    gw.stop().await;
}

/// docs/reliability.md, "Timeouts and connections": a body that does not
/// arrive within `server.body_timeout_ms` gets a 408 error JSON and the
/// connection is closed, whether it stalls or trickles a byte at a time.
#[tokio::test]
async fn slow_request_bodies_get_a_408_and_are_closed() {
    let fake = start_fake().await;
    let cfg = config_for(fake.addr, "").replace("[server]\n", "[server]\nbody_timeout_ms = 300\n");
    let mut gw = start_gateway(&cfg).await;
    let addr = addr_of(&gw);
    for path in ["/v1/chat/completions", "/v1/messages"] {
        for trickle in [false, true] {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
            );
            s.write_all(head.as_bytes()).await.expect("write");
            if trickle {
                // One byte every 50 ms while the gateway is still reading: never finishes.
                let (mut rd, mut wr) = s.into_split();
                let writer = tokio::spawn(async move {
                    for _ in 0..100_000 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if wr.write_all(b" ").await.is_err() {
                            break;
                        }
                    }
                });
                let mut buf = Vec::new();
                let _ = tokio::time::timeout(PATIENCE, rd.read_to_end(&mut buf))
                    .await
                    .expect("the gateway answers and closes the connection in time");
                writer.abort();
                let end = head_end(&buf).expect("a response head");
                let (status, _) = parse_head(&buf[..end]);
                assert_eq!(status, 408, "{path} trickle: {:?}", String::from_utf8_lossy(&buf));
                continue;
            }
            let r = read_response(&mut s).await;
            assert_eq!(r.status, 408, "{path}: {:?}", String::from_utf8_lossy(&r.body));
            let msg = assert_error_shape(path, path, &r);
            assert!(msg.contains("not received in time"), "{msg}");
            // The connection is closed after the answer.
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(PATIENCE, s.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "{path}: connection closed after the 408");
        }
    }
    // A body that arrives in time is served as usual.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    gw.stop().await;
}

/// docs/reliability.md, "Timeouts and connections": beyond
/// `server.max_connections` a new connection gets a 503 error JSON at once;
/// when a connection closes, the next one is served again.
#[tokio::test]
async fn connections_beyond_the_cap_get_a_503_and_capacity_comes_back() {
    let fake = start_fake().await;
    let cfg = config_for(fake.addr, "").replace("[server]\n", "[server]\nmax_connections = 2\n");
    let mut gw = start_gateway(&cfg).await;
    let addr = addr_of(&gw);
    let health = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
    // Two keep-alive connections, each proven accepted by a served request.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(health).await.expect("write");
        assert_eq!(read_response(&mut s).await.status, 200);
        held.push(s);
    }
    for _ in 0..3 {
        let r = send_raw(
            addr,
            b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(r.status, 503, "{:?}", String::from_utf8_lossy(&r.body));
        let msg = assert_error_shape("/health", "over the cap", &r);
        assert!(msg.contains("connection limit"), "{msg}");
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    // The held connections still work.
    for s in &mut held {
        s.write_all(health).await.expect("write");
        assert_eq!(read_response(s).await.status, 200);
    }
    // Close one: a new connection is served once the gateway has noticed.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let r = send_raw(
            addr,
            b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            false,
        )
        .await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(tokio::time::Instant::now() < deadline, "capacity never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let metrics = loop {
        let r = send_raw(
            addr,
            b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            false,
        )
        .await;
        if r.status == 200 {
            break String::from_utf8_lossy(&r.body).into_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "capacity never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        metrics.contains("reason=\"connection_limit\""),
        "rejections are counted: {metrics}"
    );
    gw.stop().await;
}
