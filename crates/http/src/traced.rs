//! The server span of every request: named after the route template, continuing the
//! caller's trace when the request carries a W3C `traceparent` header, with the answer's
//! status recorded. Handlers find it as `tracing::Span::current()`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tocsin_core::trace::{TRACEPARENT, TRACESTATE};
use tracing::Instrument;

/// Middleware (`route_layer(axum::middleware::from_fn(traced))`).
pub async fn traced(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    if matches!(route, "/healthz" | "/readyz" | "/metrics") {
        // Probes and scrapes every few seconds would drown the traces that matter.
        return next.run(request).await;
    }
    let method = request.method().as_str();
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    {
        // Scoped: a borrow of the (not `Sync`) request must not live across the await.
        let headers = request.headers();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        tocsin_core::trace::continue_trace(&span, header(TRACEPARENT), header(TRACESTATE));
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
