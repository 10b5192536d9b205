//! Logging and tracing setup: an EnvFilter plus JSON (in Kubernetes) or pretty (locally) log
//! output, and an OpenTelemetry layer that gives Tocsin's spans trace context (always) and
//! exports them over OTLP/HTTP (when `telemetry.traces.endpoint` is set).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig, TracesConfig};

/// Keeps telemetry alive; `main` calls [`TelemetryGuard::shutdown`] last.
#[derive(Debug)]
#[must_use = "dropping the guard early loses buffered telemetry"]
pub struct TelemetryGuard {
    service: &'static str,
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports the spans still buffered (bounded by the export timeout) and stops the
    /// exporter. Logs are written synchronously and need no flushing.
    pub async fn shutdown(mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        // The exporter's HTTP client blocks; keep it off the async threads.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match flushed {
            Ok(Ok(())) => tracing::debug!(service = self.service, "telemetry flushed"),
            Ok(Err(error)) => {
                tracing::warn!(service = self.service, %error, "failed to flush trace spans")
            }
            Err(error) => tracing::warn!(service = self.service, %error, "trace flush panicked"),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Dropped without `shutdown` (an early return, or a caller that only needs the
            // subscriber): export what is buffered, from a plain thread, and leave the
            // provider running for spans still to come.
            let _ = std::thread::spawn(move || provider.force_flush()).join();
        }
    }
}

/// Installs the global subscriber for `service` (`ingest`, `scheduler`, ...). A second call
/// (tests, or `tocsin dev` starting several services) keeps the first subscriber and
/// returns a guard that owns nothing.
pub fn init(config: &TelemetryConfig, service: &'static str) -> TelemetryGuard {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&config.filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
    };
    let (provider, export_error) = tracer_provider(&config.traces, service);
    // One global filter: the log filter decides which spans exist (Tocsin's are INFO). With
    // per-layer filters instead, some spans came out disabled for both layers in the
    // services while `is_disabled()` said otherwise (tracing-subscriber 0.3).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("tocsin"))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
            .is_ok()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
            .is_ok()
    };
    if let Some(error) = export_error {
        tracing::warn!(%error, "trace export is off");
    }
    TelemetryGuard {
        service,
        provider: installed.then_some(provider),
    }
}

/// The tracer provider: sampling as configured, and a batch OTLP exporter when an endpoint
/// is set (a broken exporter configuration turns export off, with the reason).
fn tracer_provider(
    config: &TracesConfig,
    service: &'static str,
) -> (SdkTracerProvider, Option<String>) {
    let name = config
        .service_name
        .clone()
        .unwrap_or_else(|| format!("tocsin-{service}"));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    let builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler);
    let Some(endpoint) = &config.endpoint else {
        return (builder.build(), None);
    };
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let timeout = config.export_timeout;
    // The blocking HTTP client the exporter uses must not be built on an async thread.
    let exporter = std::thread::spawn(move || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(timeout)
            .build()
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap_or_else(|_| Err("building the exporter panicked".to_owned()));
    match exporter {
        Ok(exporter) => {
            let batch = BatchConfigBuilder::default()
                .with_scheduled_delay(config.export_interval)
                .with_max_queue_size(8192)
                .build();
            let processor = BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build();
            (builder.with_span_processor(processor).build(), None)
        }
        Err(error) => (builder.build(), Some(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_get_trace_context_without_an_exporter() {
        let _guard = init(&TelemetryConfig::default(), "test");
        let span = tracing::info_span!("outer");
        let ids = crate::trace::ids(&span).expect("the span has a trace id");
        assert_eq!(ids.trace_id.len(), 32);
        let child = span.in_scope(|| tracing::info_span!("inner"));
        let child_ids = crate::trace::ids(&child).expect("child ids");
        assert_eq!(child_ids.trace_id, ids.trace_id);
        assert_ne!(child_ids.span_id, ids.span_id);
        let tp = crate::trace::traceparent(&child).expect("traceparent");
        assert_eq!(tp, format!("00-{}-{}-01", ids.trace_id, child_ids.span_id));

        let remote = tracing::info_span!("continued");
        crate::trace::continue_trace(
            &remote,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None,
        );
        assert_eq!(
            crate::trace::trace_id(&remote).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // A context carried in NATS headers (with an empty tracestate, as ingest sends it).
        let consumer = tracing::info_span!("consumer", otel.kind = "consumer");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-6df5a95ed269402d-01",
        );
        headers.insert("tracestate", "");
        crate::trace::continue_from_nats(&consumer, Some(&headers));
        assert_eq!(
            crate::trace::trace_id(&consumer).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // Injected again for the next hop: the same trace, this span as the parent.
        let mut out = async_nats::HeaderMap::new();
        crate::trace::inject_nats(&consumer, &mut out);
        let ids = crate::trace::ids(&consumer).expect("ids");
        assert_eq!(
            out.get("traceparent").map(async_nats::HeaderValue::as_str),
            Some(format!("00-{}-{}-01", ids.trace_id, ids.span_id).as_str())
        );
    }
}
