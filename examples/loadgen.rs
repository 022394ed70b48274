//! A small closed-loop HTTP load generator for the benchmarks.
//!
//! Each of `--concurrency` workers holds one keep-alive HTTP/1.1 connection
//! and sends POST requests back to back for `--seconds` (after a warm-up),
//! recording latency (full response) and time to first body byte into HDR
//! histograms. Prints one JSON line of results.
//!
//! `--url` may list several URLs separated by commas (instances behind a
//! round-robin balancer): worker i sends to URL i mod n.
//!
//! Usage: loadgen --url URL[,URL...] [--concurrency N] [--seconds S] [--warmup S] [--stream] [--model NAME]
//! [--key KEY] [--header "name: value"]... (extra request headers, e.g. a peer gateway's routing headers)

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;

struct Args {
    url: String,
    concurrency: usize,
    seconds: f64,
    warmup: f64,
    stream: bool,
    model: String,
    /// Value of the Authorization header (`Bearer ...`).
    key: String,
    /// Extra request headers.
    headers: Vec<(String, String)>,
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        concurrency: 1,
        seconds: 5.0,
        warmup: 1.0,
        stream: false,
        model: "bench".into(),
        key: "sk-bench".into(),
        headers: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--url" => a.url = it.next().unwrap_or_default(),
            "--concurrency" => a.concurrency = it.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(5.0),
            "--warmup" => a.warmup = it.next().and_then(|v| v.parse().ok()).unwrap_or(1.0),
            "--stream" => a.stream = true,
            "--model" => a.model = it.next().unwrap_or_default(),
            "--key" => a.key = it.next().unwrap_or_default(),
            "--header" => {
                let h = it.next().unwrap_or_default();
                match h.split_once(':') {
                    Some((k, v)) => a.headers.push((k.trim().to_string(), v.trim().to_string())),
                    None => {
                        eprintln!("--header wants \"name: value\", got {h:?}");
                        std::process::exit(2);
                    }
                }
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    if a.url.is_empty() {
        eprintln!("--url is required");
        std::process::exit(2);
    }
    a
}

struct WorkerResult {
    latency: Histogram<u64>,
    ttfb: Histogram<u64>,
    ok: u64,
    errors: u64,
}

async fn worker(
    uri: hyper::Uri,
    body: Bytes,
    auth: Arc<str>,
    headers: Arc<Vec<(String, String)>>,
    warm_until: Instant,
    end: Instant,
) -> WorkerResult {
    let mut r = WorkerResult {
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("hist"),
        ttfb: Histogram::new_with_bounds(1, 60_000_000, 3).expect("hist"),
        ok: 0,
        errors: 0,
    };
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    // The request line in origin form (`POST /v1/chat/completions`), as clients send it
    // (some servers, uvicorn among them, refuse the absolute form).
    let target: hyper::Uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .expect("path");
    'conn: while Instant::now() < end {
        let Ok(stream) = tokio::net::TcpStream::connect(&host).await else {
            r.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
            r.errors += 1;
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < end {
            let mut req = hyper::Request::post(target.clone())
                .header("host", &host)
                .header("content-type", "application/json")
                .header("authorization", &*auth);
            for (k, v) in headers.iter() {
                req = req.header(k.as_str(), v.as_str());
            }
            let req = req.body(Full::new(body.clone())).expect("request");
            let t0 = Instant::now();
            if sender.ready().await.is_err() {
                r.errors += 1;
                continue 'conn;
            }
            let resp = match sender.send_request(req).await {
                Ok(resp) => resp,
                Err(_) => {
                    r.errors += 1;
                    continue 'conn;
                }
            };
            let status = resp.status();
            let mut b = resp.into_body();
            let mut first: Option<Duration> = None;
            let mut failed = false;
            while !b.is_end_stream() {
                match b.frame().await {
                    Some(Ok(f)) => {
                        if first.is_none() && f.data_ref().is_some_and(|d| !d.is_empty()) {
                            first = Some(t0.elapsed());
                        }
                    }
                    Some(Err(_)) => {
                        failed = true;
                        break;
                    }
                    None => break,
                }
            }
            let lat = t0.elapsed();
            if t0 < warm_until {
                continue;
            }
            if failed || !status.is_success() {
                r.errors += 1;
                if failed {
                    continue 'conn;
                }
                continue;
            }
            r.ok += 1;
            let _ = r.latency.record(lat.as_micros().max(1) as u64);
            let _ = r.ttfb.record(first.unwrap_or(lat).as_micros().max(1) as u64);
        }
    }
    r
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = parse_args();
    let uris: Vec<hyper::Uri> = a.url.split(',').map(|u| u.parse().expect("url")).collect();
    let body = if a.stream {
        r#"{"model":"bench","stream":true,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one short sentence about benchmarks."}]}"#
    } else {
        r#"{"model":"bench","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one short sentence about benchmarks."}],"temperature":0.2,"max_tokens":256}"#
    };
    let body = Bytes::from(body.replace("\"model\":\"bench\"", &format!("\"model\":\"{}\"", a.model)));
    let start = Instant::now();
    let warm_until = start + Duration::from_secs_f64(a.warmup);
    let end = warm_until + Duration::from_secs_f64(a.seconds);
    let auth: Arc<str> = Arc::from(format!("Bearer {}", a.key));
    let headers = Arc::new(a.headers.clone());
    let mut handles = Vec::new();
    for i in 0..a.concurrency {
        handles.push(tokio::spawn(worker(
            uris[i % uris.len()].clone(),
            body.clone(),
            auth.clone(),
            headers.clone(),
            warm_until,
            end,
        )));
    }
    let mut lat = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("hist");
    let mut ttfb = lat.clone();
    let (mut ok, mut errors) = (0, 0);
    for h in handles {
        if let Ok(r) = h.await {
            let _ = lat.add(&r.latency);
            let _ = ttfb.add(&r.ttfb);
            ok += r.ok;
            errors += r.errors;
        }
    }
    let secs = a.seconds;
    println!(
        "{{\"concurrency\":{},\"seconds\":{secs},\"ok\":{ok},\"errors\":{errors},\"rps\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{},\"ttfb_p50_us\":{},\"ttfb_p99_us\":{}}}",
        a.concurrency,
        ok as f64 / secs,
        lat.value_at_quantile(0.5),
        lat.value_at_quantile(0.9),
        lat.value_at_quantile(0.99),
        lat.max(),
        ttfb.value_at_quantile(0.5),
        ttfb.value_at_quantile(0.99),
    );
}
