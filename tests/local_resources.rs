//! The gateway's own resource exhaustion is not the provider's fault
//! (docs/reliability.md, "Errors"). Alone in its test binary: it lowers the
//! process's open-file limit, which would disturb any test running beside it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "admin-key-local-77aa";

fn config(up: std::net::SocketAddr) -> String {
    format!(
        r#"
[server]
admin_key = "{ADMIN}"

[resilience]
max_attempts = 2
retries_per_target = 1
backoff_base_ms = 5
backoff_max_ms = 20
# One blamed failure would open the breaker.
breaker_consecutive_failures = 1
breaker_cooldown_ms = 60000
breaker_max_cooldown_ms = 120000

[providers.up]
type = "openai"
base_url = "http://{up}/v1"
api_key = "{UPSTREAM_KEY}"

[models.fast]
provider = "up"
model = "ok"
"#
    )
}

/// Reads one Content-Length framed response: (status, body).
async fn read_response(s: &mut TcpStream) -> (u16, Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let work = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + len {
                    let v = serde_json::from_slice(&buf[end..end + len]).unwrap_or(Value::Null);
                    return (status, v);
                }
            }
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed early");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("a response in time")
}

async fn request(s: &mut TcpStream, raw: &str) -> (u16, Value) {
    s.write_all(raw.as_bytes()).await.expect("write");
    read_response(s).await
}

fn chat() -> String {
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn breaker() -> String {
    format!("GET /admin/health HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN}\r\n\r\n")
}

fn set_soft_nofile(n: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on structs we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let before = lim.rlim_cur;
        lim.rlim_cur = n.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        before
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_open_the_providers_breaker() {
    let up = start_fake().await;
    let mut gw = start_gateway(&config(up.addr)).await;
    let addr: std::net::SocketAddr = gw.base.trim_start_matches("http://").parse().expect("addr");
    // A client connection the gateway has accepted (proven by an answer).
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let (status, _) = request(&mut conn, "GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(status, 200);

    // Use up every descriptor this process may open.
    let before = set_soft_nofile(4096);
    let mut hog = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
        assert!(hog.len() < 100_000, "the open-file limit did not apply");
    }
    let (status, body) = request(&mut conn, &chat()).await;
    drop(hog);
    set_soft_nofile(before);

    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "gateway_overloaded", "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!msg.contains("'up'"), "the provider is not blamed: {msg}");
    let (_, health) = request(&mut conn, &breaker()).await;
    let up_state = &health["data"][0];
    assert_eq!(up_state["state"], "closed", "{health}");
    assert_eq!(up_state["consecutive_failures"], 0, "{health}");
    assert_eq!(up.hits(), 0, "nothing reached the provider");

    // With descriptors back, the same provider serves at once.
    let (status, body) = request(&mut conn, &chat()).await;
    assert_eq!(status, 200, "{body}");
    gw.stop().await;
}
