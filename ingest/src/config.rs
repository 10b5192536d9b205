//! Ingest configuration.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tocsin_core::config::{NatsConfig, PostgresConfig, ShutdownConfig, TelemetryConfig, Validate};

/// Ingest service configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP service settings.
    pub ingest: IngestSection,
    /// NATS.
    pub nats: NatsConfig,
    /// PostgreSQL (ingest keys).
    pub postgres: PostgresConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// Draining.
    pub shutdown: ShutdownConfig,
}

/// The `[ingest]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSection {
    /// Address the HTTP intake listens on.
    pub listen: SocketAddr,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Most alerts accepted in one request; more get 413.
    pub max_batch: usize,
    /// How long a resolved ingest key is cached (revocations take this long to apply).
    #[serde(with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// `Retry-After` seconds sent with 503 answers.
    pub retry_after_secs: u32,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            max_batch: 1000,
            key_cache_ttl: Duration::from_secs(30),
            retry_after_secs: 2,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ingest: IngestSection::default(),
            nats: NatsConfig::default(),
            postgres: PostgresConfig {
                max_connections: 4,
                ..PostgresConfig::default()
            },
            telemetry: TelemetryConfig::default(),
            shutdown: ShutdownConfig::default(),
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.ingest.max_body_bytes < 1024 {
            problems.push("ingest.max_body_bytes must be at least 1024".to_owned());
        }
        if self.ingest.max_batch == 0 {
            problems.push("ingest.max_batch must be at least 1".to_owned());
        }
        self.nats.validate(problems);
        self.postgres.validate(problems);
        self.telemetry.validate(problems);
        self.shutdown.validate(problems);
    }
}
