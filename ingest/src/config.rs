//! Ingest configuration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tocsin_core::config::{
    NatsConfig, PostgresConfig, SecretsConfig, ShutdownConfig, TelemetryConfig, Validate,
};

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
    /// The master key, to read tenants' webhook signing secrets (without it, signed
    /// webhooks cannot be verified and are refused with 503).
    pub secrets: SecretsConfig,
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
    /// Deepest nesting of arrays and objects accepted in a body; deeper gets 400.
    pub max_depth: usize,
    /// Most JSON values (scalars, arrays, objects, keys) in a body; more gets 400.
    pub max_values: usize,
    /// How long a client may take to send its body; slower gets 408.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Alerts per second each tenant may send to this ingest instance (429 past it, with
    /// `Retry-After`); a flood from one tenant does not hold up the others.
    pub rate_limit_per_sec: f64,
    /// Alerts a tenant may send at once above its rate (at least one second of its rate).
    pub rate_limit_burst: f64,
    /// How far a signed webhook's `webhook-timestamp` may be from now.
    #[serde(with = "humantime_serde")]
    pub signature_tolerance: Duration,
    /// Per-tenant rates overriding `rate_limit_per_sec` (`{ acme = 50.0 }`); such a tenant
    /// bursts one second of its rate.
    pub tenant_rate_limits: HashMap<String, f64>,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            max_batch: 1000,
            key_cache_ttl: Duration::from_secs(30),
            retry_after_secs: 2,
            max_depth: 64,
            max_values: 250_000,
            body_timeout: Duration::from_secs(30),
            rate_limit_per_sec: 10_000.0,
            rate_limit_burst: 20_000.0,
            tenant_rate_limits: HashMap::new(),
            signature_tolerance: Duration::from_secs(300),
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
            secrets: SecretsConfig::default(),
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
        if !(2..=1024).contains(&self.ingest.max_depth) {
            problems.push("ingest.max_depth must be between 2 and 1024".to_owned());
        }
        if self.ingest.max_values < 16 {
            problems.push("ingest.max_values must be at least 16".to_owned());
        }
        if self.ingest.body_timeout.is_zero() {
            problems.push("ingest.body_timeout must be above zero".to_owned());
        }
        let rates = std::iter::once((
            "ingest.rate_limit_per_sec".to_owned(),
            self.ingest.rate_limit_per_sec,
        ))
        .chain(std::iter::once((
            "ingest.rate_limit_burst".to_owned(),
            self.ingest.rate_limit_burst,
        )))
        .chain(
            self.ingest
                .tenant_rate_limits
                .iter()
                .map(|(t, r)| (format!("ingest.tenant_rate_limits.{t}"), *r)),
        );
        for (name, rate) in rates {
            if !(rate.is_finite() && rate > 0.0) {
                problems.push(format!("{name} must be a positive number"));
            }
        }
        self.nats.validate(problems);
        self.postgres.validate(problems);
        self.secrets.validate(problems);
        self.telemetry.validate(problems);
        self.shutdown.validate(problems);
    }
}
