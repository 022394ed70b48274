//! A fast fake OpenAI upstream for benchmarks: answers instantly with a
//! ~1.3 KB chat completion, or a short SSE stream when `"stream":true`.
//!
//! Usage: bench_upstream [ADDR] [--status CODE] [--chunks N]
//! (default 127.0.0.1:0; prints the bound address). With `--status 503` every
//! request fails with that status and an OpenAI error body: a broken deployment.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn completion_body() -> Bytes {
    let content = "The quick brown fox jumps over the lazy dog. ".repeat(22);
    let body = format!(
        r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":1767225600,"model":"bench-model","system_fingerprint":"fp_bench","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":42,"completion_tokens":220,"total_tokens":262,"prompt_tokens_details":{{"cached_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0}}}}}}"#,
        content.trim_end()
    );
    Bytes::from(body)
}

/// `chunks` content chunks (default 5), then the finish chunk, usage and `[DONE]`.
fn stream_body(chunks: usize) -> Bytes {
    let mut s = String::new();
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"bench-model\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    s.push_str(&chunk(r#"{"role":"assistant","content":""}"#, "null"));
    let words = ["Hello", " from", " the", " bench", " upstream."];
    for i in 0..chunks {
        let w = words[i % words.len()];
        s.push_str(&chunk(&format!(r#"{{"content":"{w}"}}"#), "null"));
    }
    s.push_str(&chunk("{}", "\"stop\""));
    s.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"bench-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":42,\"completion_tokens\":6,\"total_tokens\":48}}\n\n");
    s.push_str("data: [DONE]\n\n");
    Bytes::from(s)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:0".into());
    let fail_status = args
        .iter()
        .position(|a| a == "--status")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<u16>().ok());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("{}", listener.local_addr()?);
    let completion = completion_body();
    let chunks = args
        .iter()
        .position(|a| a == "--chunks")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(5);
    let stream = stream_body(chunks);
    loop {
        let (sock, _) = listener.accept().await?;
        sock.set_nodelay(true)?;
        let (completion, stream) = (completion.clone(), stream.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (completion, stream) = (completion.clone(), stream.clone());
                async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    if let Some(code) = fail_status {
                        let resp = Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(
                                br#"{"error":{"message":"injected failure","type":"server_error","param":null,"code":null}}"#,
                            )))
                            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                        return Ok::<_, Infallible>(resp);
                    }
                    let is_stream = asks_to_stream(&body);
                    let (ct, b) = if is_stream {
                        ("text/event-stream", stream)
                    } else {
                        ("application/json", completion)
                    };
                    let resp = Response::builder()
                        .header("content-type", ct)
                        .body(Full::new(b))
                        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), svc)
                .await;
        });
    }
}

/// Whether a request body has `"stream": true` (any whitespace around the
/// colon: the gateway forwards the client's bytes as they are).
fn asks_to_stream(body: &[u8]) -> bool {
    memchr::memmem::find_iter(body, b"\"stream\"").any(|at| {
        let rest = body[at + 8..].trim_ascii_start();
        rest.strip_prefix(b":")
            .is_some_and(|r| r.trim_ascii_start().starts_with(b"true"))
    })
}
