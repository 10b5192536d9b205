//! Logging setup: an EnvFilter plus JSON (in Kubernetes) or pretty (locally) output.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};

/// Keeps telemetry alive; `main` calls [`TelemetryGuard::shutdown`] last.
#[derive(Debug)]
#[must_use = "dropping the guard early loses buffered telemetry"]
pub struct TelemetryGuard {
    service: &'static str,
}

impl TelemetryGuard {
    /// Flushes whatever telemetry is buffered. Logs are written synchronously, so this only
    /// records the end of the process.
    pub async fn shutdown(self) {
        tracing::debug!(service = self.service, "telemetry shut down");
    }
}

/// Installs the global subscriber for `service`. A second call (tests, or `tocsin dev`
/// starting several services) keeps the first subscriber.
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
    let registry = tracing_subscriber::registry().with(filter);
    // try_init fails only when a subscriber is already installed, which is fine.
    let _ = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    TelemetryGuard { service }
}
