//! OpenTelemetry export over real sockets: an OTLP/HTTP receiver on 127.0.0.1
//! decodes the protobuf export and checks one request span, one attempt span
//! per attempt, the GenAI attributes, the client's trace id, and the
//! `traceparent` the upstream received.

mod common;

use std::sync::{Arc, Mutex};

use axum::{body::Bytes, extract::State, routing::post, Router};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

type Got = Arc<Mutex<Vec<Span>>>;

async fn receive(State(got): State<Got>, body: Bytes) -> &'static str {
    if let Ok(req) = ExportTraceServiceRequest::decode(body) {
        let mut g = got.lock().expect("lock");
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                g.extend(ss.spans);
            }
        }
    }
    ""
}

fn attr(s: &Span, key: &str) -> Option<String> {
    let v = s
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        _ => return None,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn request_and_attempt_spans_reach_the_collector_with_the_client_trace() {
    let got: Got = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let collector = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let fake = start_fake().await;
    let cfg = config_for(
        fake.addr,
        &format!("[telemetry]\notlp_endpoint = \"http://{collector}\"\n"),
    );
    let mut gw = start_gateway(&cfg).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    // Shutdown flushes the batch exporter.
    gw.stop().await;

    let spans = got.lock().expect("lock").clone();
    let server: Vec<&Span> = spans.iter().filter(|s| s.kind == 2).collect();
    let attempts: Vec<&Span> = spans.iter().filter(|s| s.kind == 3).collect();
    assert_eq!(server.len(), 1, "one request span: {spans:?}");
    assert_eq!(attempts.len(), 1, "one attempt span");
    let (req, att) = (server[0], attempts[0]);
    assert_eq!(hex(&req.trace_id), trace, "the client's trace id");
    assert_eq!(
        hex(&req.parent_span_id),
        "00f067aa0ba902b7",
        "the client's span is the parent"
    );
    assert_eq!(att.trace_id, req.trace_id);
    assert_eq!(
        att.parent_span_id, req.span_id,
        "the attempt is a child of the request"
    );
    assert_eq!(attr(req, "gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(attr(req, "gen_ai.request.model").as_deref(), Some("fast"));
    assert!(attr(req, "gen_ai.usage.input_tokens").is_some());
    assert!(attr(req, "switchyard.cost_usd").is_some());
    assert_eq!(attr(att, "gen_ai.provider.name").as_deref(), Some("openai"));
    assert!(attr(att, "gen_ai.response.model").is_some());
    assert_eq!(attr(att, "http.response.status_code").as_deref(), Some("200"));

    // The upstream got the attempt span's context, not the client's.
    let sent = fake.requests();
    let tp = sent[0]
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(tp, Some(format!("00-{trace}-{}-01", hex(&att.span_id))));
}

#[tokio::test]
async fn without_export_the_client_traceparent_is_forwarded_as_is() {
    let fake = start_fake().await;
    let mut gw = start_gateway(&config_for(fake.addr, "")).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("traceparent", tp)
        .json(&serde_json::json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    gw.stop().await;
    let sent = fake.requests();
    assert_eq!(
        sent[0].headers.get("traceparent").and_then(|v| v.to_str().ok()),
        Some(tp)
    );
}
