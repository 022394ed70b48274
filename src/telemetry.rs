//! OpenTelemetry traces: one server span per request and one client span per
//! upstream attempt, with the GenAI semantic-convention attributes, exported
//! over OTLP/HTTP (protobuf) by a batch processor.
//!
//! Off unless `[telemetry] otlp_endpoint` is set; then the request path only
//! builds spans in memory (a few allocations per span) and hands them to the
//! SDK's batch processor, which exports from its own thread with a blocking
//! HTTP client, never on a request's task. A full queue drops spans (the SDK
//! counts and logs them) rather than waiting.
//!
//! W3C trace context: a client's `traceparent` becomes the request span's
//! parent; each attempt sends its own span's `traceparent` upstream. With
//! export off, a client's `traceparent` is forwarded upstream unchanged.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderValue;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::accounting::ledger::LedgerEntry;
use crate::config::TelemetrySettings;

/// The process's trace exporter, or nothing.
#[derive(Default)]
pub struct Telemetry {
    inner: Option<(SdkTracerProvider, SdkTracer)>,
}

impl Telemetry {
    /// No export.
    pub fn off() -> Telemetry {
        Telemetry { inner: None }
    }

    /// Builds the exporter for `settings` (no export when no endpoint is set).
    pub fn new(settings: &TelemetrySettings) -> Result<Telemetry, String> {
        let Some(endpoint) = settings.otlp_endpoint.clone() else {
            return Ok(Telemetry::off());
        };
        let service = settings.service_name.clone();
        let headers: std::collections::HashMap<String, String> = settings
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        // The SDK's blocking client must not be built or dropped on an async
        // runtime's thread: build it on a plain one.
        let built = std::thread::spawn(move || -> Result<SdkTracerProvider, String> {
            use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .with_headers(headers)
                .build()
                .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build();
            Ok(SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build())
        })
        .join()
        .map_err(|_| "telemetry: the exporter could not be built".to_string())??;
        let tracer = built.tracer("switchyard");
        Ok(Telemetry {
            inner: Some((built, tracer)),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts the span of one client request. `parent` is the client's trace
    /// context, if it sent one; `started` when the request arrived.
    pub fn request_span(
        &self,
        parent: Option<&SpanContext>,
        operation: &'static str,
        model: &str,
        request_id: &str,
        started: SystemTime,
    ) -> Option<Arc<RequestSpan>> {
        let (_, tracer) = self.inner.as_ref()?;
        let parent_cx = match parent {
            Some(sc) => Context::new().with_remote_span_context(sc.clone()),
            None => Context::new(),
        };
        let span = tracer
            .span_builder(format!("{operation} {model}"))
            .with_kind(SpanKind::Server)
            .with_start_time(started)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", operation),
                KeyValue::new("gen_ai.request.model", model.to_string()),
                KeyValue::new("switchyard.request_id", request_id.to_string()),
            ])
            .start_with_context(tracer, &parent_cx);
        Some(Arc::new(RequestSpan {
            cx: parent_cx.with_span(span),
            tracer: tracer.clone(),
            operation,
        }))
    }

    /// Exports what is queued and stops the exporter (blocks: call it off the
    /// async threads, e.g. in `spawn_blocking`).
    pub fn shutdown(&self) {
        if let Some((provider, _)) = &self.inner {
            if let Err(e) = provider.shutdown() {
                tracing::warn!("telemetry: final export failed: {e}");
            }
        }
    }
}

/// The request's span; ends when the last holder (the handler's accounting,
/// each attempt's ledger guard) lets go, which for a stream is its end.
pub struct RequestSpan {
    cx: Context,
    tracer: SdkTracer,
    operation: &'static str,
}

impl RequestSpan {
    /// Starts the span of one upstream attempt, a child of this one.
    pub fn attempt(
        self: &Arc<Self>,
        provider: &str,
        kind: &str,
        upstream_model: &str,
        attempt: u32,
    ) -> AttemptSpan {
        let span = self
            .tracer
            .span_builder(format!("{} {upstream_model}", self.operation))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", self.operation),
                KeyValue::new("gen_ai.provider.name", kind.to_string()),
                KeyValue::new("gen_ai.system", kind.to_string()),
                KeyValue::new("gen_ai.request.model", upstream_model.to_string()),
                KeyValue::new("switchyard.provider", provider.to_string()),
                KeyValue::new("switchyard.attempt", i64::from(attempt)),
            ])
            .start_with_context(&self.tracer, &self.cx);
        let sc = span.span_context().clone();
        AttemptSpan {
            span,
            traceparent: traceparent_of(&sc),
            request: self.clone(),
        }
    }

    /// This span's context (trace id and span id).
    pub fn span_context(&self) -> SpanContext {
        self.cx.span().span_context().clone()
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}

/// One upstream attempt's span; finished with the attempt's ledger row.
pub struct AttemptSpan {
    span: opentelemetry_sdk::trace::Span,
    traceparent: Option<HeaderValue>,
    request: Arc<RequestSpan>,
}

impl AttemptSpan {
    /// The `traceparent` to send upstream for this attempt.
    pub fn traceparent(&self) -> Option<HeaderValue> {
        self.traceparent.clone()
    }

    /// Ends the span with the attempt's outcome, and writes the outcome of the
    /// request onto the request span (the last attempt's is the request's).
    pub fn finish(mut self, e: &LedgerEntry) {
        let mut attrs = vec![
            KeyValue::new("gen_ai.response.model", e.upstream_model.to_string()),
            KeyValue::new("http.response.status_code", i64::from(e.status)),
            KeyValue::new("switchyard.latency_ms", e.latency_ms),
        ];
        if let Some(u) = &e.usage {
            attrs.push(KeyValue::new("gen_ai.usage.input_tokens", u.prompt_tokens as i64));
            attrs.push(KeyValue::new(
                "gen_ai.usage.output_tokens",
                u.completion_tokens as i64,
            ));
        }
        if let Some(c) = e.cost_usd {
            attrs.push(KeyValue::new("switchyard.cost_usd", c));
        }
        if let Some(t) = e.ttft_ms {
            attrs.push(KeyValue::new("switchyard.ttft_ms", t));
        }
        let failed = e.status >= 400;
        for kv in &attrs {
            self.span.set_attribute(kv.clone());
        }
        if failed {
            let kind = if e.status == crate::accounting::recorder::STATUS_CLIENT_CLOSED {
                "client_closed".to_string()
            } else {
                e.status.to_string()
            };
            self.span.set_attribute(KeyValue::new("error.type", kind));
            self.span
                .set_status(Status::error(e.error.clone().unwrap_or_default()));
        }
        self.span.end();
        let req = self.request.cx.span();
        for kv in attrs {
            req.set_attribute(kv);
        }
        req.set_attribute(KeyValue::new("switchyard.attempts", i64::from(e.attempt)));
        req.set_attribute(KeyValue::new("switchyard.provider", e.provider.to_string()));
        req.set_attribute(KeyValue::new("switchyard.model", e.served_model.to_string()));
        if let Some(r) = e.routing.as_ref() {
            req.set_attribute(KeyValue::new("switchyard.route", r.route.clone()));
            req.set_attribute(KeyValue::new("switchyard.task", r.task.clone()));
            req.set_attribute(KeyValue::new("switchyard.tier", r.tier.clone()));
        }
        if let Some(k) = &e.key_name {
            req.set_attribute(KeyValue::new("switchyard.key", k.clone()));
        }
        if failed {
            req.set_status(Status::error(e.error.clone().unwrap_or_default()));
        } else {
            req.set_status(Status::Ok);
        }
    }
}

/// Parses a W3C `traceparent` header (version 00; later versions read as 00).
pub fn parse_traceparent(v: &str) -> Option<SpanContext> {
    let mut parts = v.trim().split('-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    ))
}

fn traceparent_of(sc: &SpanContext) -> Option<HeaderValue> {
    if !sc.is_valid() {
        return None;
    }
    let v = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    HeaderValue::from_str(&v).ok()
}

tokio::task_local! {
    /// The `traceparent` for upstream calls made by the current attempt.
    static UPSTREAM_TRACEPARENT: HeaderValue;
}

/// Runs an upstream call with `traceparent` visible to the provider clients.
pub async fn with_upstream_traceparent<F: std::future::Future>(tp: Option<HeaderValue>, f: F) -> F::Output {
    match tp {
        Some(v) => UPSTREAM_TRACEPARENT.scope(v, f).await,
        None => f.await,
    }
}

/// The `traceparent` header the current upstream call should carry, if any.
pub fn upstream_traceparent() -> Option<HeaderValue> {
    UPSTREAM_TRACEPARENT.try_with(HeaderValue::clone).ok()
}

/// Headers to add to the current upstream call (empty, without allocating, when none).
pub fn upstream_headers() -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    if let Some(v) = upstream_traceparent() {
        h.insert(http::header::HeaderName::from_static("traceparent"), v);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_rejects() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(v).expect("valid");
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(
            traceparent_of(&sc).as_ref().and_then(|h| h.to_str().ok()),
            Some(v)
        );
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
        // A later version may carry more fields.
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }
}
