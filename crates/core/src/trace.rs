//! W3C trace context for Tocsin's spans: continuing a caller's trace (an HTTP `traceparent`
//! header, NATS message headers, a `traceparent` stored with a run) and handing the current
//! span's context on (NATS headers, the runner protocol, outgoing HTTP).
//!
//! Spans are `tracing` spans; the OpenTelemetry layer installed by
//! [`crate::telemetry::init`] gives each one a trace and span id, whether or not spans are
//! exported. Without that layer (unit tests), every helper here is a no-op returning `None`.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C vendor trace state header.
pub const TRACESTATE: &str = "tracestate";

/// The trace and span id of a span, as lowercase hex (32 and 16 digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanIds {
    /// Trace id.
    pub trace_id: String,
    /// Span id.
    pub span_id: String,
}

struct Map<'a>(&'a HashMap<String, String>);

impl Extractor for Map<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct NatsRead<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsRead<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(async_nats::HeaderValue::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        [TRACEPARENT, TRACESTATE]
            .into_iter()
            .filter(|k| self.0.get(*k).is_some())
            .collect()
    }
}

struct NatsWrite<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsWrite<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct Collect(HashMap<String, String>);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// Records the span's trace id in its `trace_id` field (log lines show it); a no-op for a
/// span without that field.
fn record_trace_id(span: &tracing::Span) {
    if let Some(trace_id) = trace_id(span) {
        span.record("trace_id", trace_id);
    }
}

/// Makes `span` a child of the remote span described by `traceparent` (and `tracestate`),
/// then records its trace id in its `trace_id` field. A missing or malformed `traceparent`
/// leaves `span` where it is (a new trace, or under the current span), as the W3C
/// specification asks. Call it before the span has children.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    let Some(traceparent) = traceparent else {
        record_trace_id(span);
        return;
    };
    let mut map = HashMap::with_capacity(2);
    map.insert(TRACEPARENT.to_owned(), traceparent.to_owned());
    if let Some(state) = tracestate {
        map.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let context = TraceContextPropagator::new().extract(&Map(&map));
    if context.span().span_context().is_valid() {
        // Fails only when the span is disabled (no OpenTelemetry layer): nothing to continue.
        let _ = span.set_parent(context);
    }
    record_trace_id(span);
}

/// [`continue_trace`] from the headers of a NATS message.
pub fn continue_from_nats(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    if let Some(headers) = headers {
        let context = TraceContextPropagator::new().extract(&NatsRead(headers));
        if context.span().span_context().is_valid() {
            let _ = span.set_parent(context);
        }
    }
    record_trace_id(span);
}

/// Adds `traceparent` (and `tracestate`) for `span` to NATS message headers.
pub fn inject_nats(span: &tracing::Span, headers: &mut async_nats::HeaderMap) {
    if ids(span).is_some() {
        TraceContextPropagator::new().inject_context(&span.context(), &mut NatsWrite(headers));
    }
}

/// Adds `traceparent` (`00-<trace id>-<span id>-<flags>`) to NATS message headers.
pub fn inject_traceparent(traceparent: &str, headers: &mut async_nats::HeaderMap) {
    headers.insert(TRACEPARENT, traceparent);
}

/// The `traceparent` header value that makes a remote span a child of `span`.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    ids(span)?;
    let mut out = Collect(HashMap::with_capacity(2));
    TraceContextPropagator::new().inject_context(&span.context(), &mut out);
    out.0.remove(TRACEPARENT)
}

/// The trace and span id of `span`, when it has a valid context.
pub fn ids(span: &tracing::Span) -> Option<SpanIds> {
    let context = span.context();
    let span_ref = context.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| SpanIds {
        trace_id: sc.trace_id().to_string(),
        span_id: sc.span_id().to_string(),
    })
}

/// The trace id of `span`, when it has a valid context.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    ids(span).map(|ids| ids.trace_id)
}

/// The trace id inside a `traceparent` value, when it is well-formed.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (Some(version), Some(trace), Some(span), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(version, 2)
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0'))
    .then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_of_reads_only_well_formed_values() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id_of("00-4bf92f35-00f067aa0ba902b7-01"), None);
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
    }

    #[test]
    fn helpers_are_no_ops_without_the_layer() {
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            let span = tracing::info_span!("no layer");
            continue_trace(
                &span,
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                None,
            );
            assert_eq!(ids(&span), None);
            assert_eq!(traceparent(&span), None);
            let mut headers = async_nats::HeaderMap::new();
            inject_nats(&span, &mut headers);
            assert!(headers.get(TRACEPARENT).is_none());
        });
    }
}
