//! Scheduler configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tocsin_core::config::{NatsConfig, PostgresConfig, ShutdownConfig, TelemetryConfig, Validate};

/// Scheduler configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Scheduling settings.
    pub scheduler: SchedulerSection,
    /// NATS.
    pub nats: NatsConfig,
    /// PostgreSQL.
    pub postgres: PostgresConfig,
    /// Logging.
    pub telemetry: TelemetryConfig,
    /// Draining.
    pub shutdown: ShutdownConfig,
}

/// The `[scheduler]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSection {
    /// Alerts each scheduler handles concurrently.
    pub concurrency: usize,
    /// Alerts in flight across every scheduler replica (they share one durable consumer):
    /// the consumer's `max_ack_pending`, set each time a scheduler starts.
    pub max_ack_pending: i64,
    /// How long JetStream waits for an ack before redelivering an alert.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// How long the tenant's deployed playbooks are cached; a deploy takes effect within
    /// this time.
    #[serde(with = "humantime_serde")]
    pub playbook_cache_ttl: Duration,
    /// How often the dispatcher looks for runs to publish, approvals to time out and timers
    /// to fire, besides being woken by notifications.
    #[serde(with = "humantime_serde")]
    pub dispatch_interval: Duration,
    /// A queued run published this long ago without being claimed is published again
    /// (its job may have been lost).
    #[serde(with = "humantime_serde")]
    pub stale_dispatch: Duration,
    /// A running run whose lease expired this long ago goes back to the queue.
    #[serde(with = "humantime_serde")]
    pub lease_grace: Duration,
    /// Deliveries of an alert that keeps failing before it is dead-lettered.
    pub max_deliver: i64,
}

impl Default for SchedulerSection {
    fn default() -> Self {
        Self {
            concurrency: 64,
            max_ack_pending: 10_000,
            ack_wait: Duration::from_secs(30),
            playbook_cache_ttl: Duration::from_secs(2),
            dispatch_interval: Duration::from_secs(1),
            stale_dispatch: Duration::from_secs(300),
            lease_grace: Duration::from_secs(30),
            max_deliver: 20,
        }
    }
}

impl Validate for Config {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.scheduler.concurrency == 0 || self.scheduler.concurrency > 10_000 {
            problems.push("scheduler.concurrency must be between 1 and 10000".to_owned());
        }
        if self.scheduler.max_ack_pending < 1 {
            problems.push("scheduler.max_ack_pending must be at least 1".to_owned());
        }
        if self.scheduler.max_deliver < 2 {
            problems.push("scheduler.max_deliver must be at least 2".to_owned());
        }
        if self.scheduler.dispatch_interval.is_zero() {
            problems.push("scheduler.dispatch_interval must be positive".to_owned());
        }
        if self.scheduler.ack_wait < Duration::from_secs(1) {
            problems.push("scheduler.ack_wait must be at least 1s".to_owned());
        }
        self.nats.validate(problems);
        self.postgres.validate(problems);
        self.telemetry.validate(problems);
        self.shutdown.validate(problems);
    }
}
