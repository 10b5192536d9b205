//! Shared domain types that services map the protobuf fields onto.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::v1;

/// Namespace for deterministic alert ids (UUIDv5).
const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d0e_8a4b_4c55_9b0e_5f3a_7d21_c001);
/// Namespace for deterministic run ids (UUIDv5).
const RUN_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d0e_8a4b_4c55_9b0e_5f3a_7d21_c002);

/// Deterministic alert id: the same (tenant, source, source_ref) always yields the same id.
pub fn alert_id(tenant: &str, source: &str, source_ref: &str) -> Uuid {
    // Length-prefix each part so ("a", "bc") and ("ab", "c") cannot collide.
    let key = format!(
        "{}:{tenant}{}:{source}{}:{source_ref}",
        tenant.len(),
        source.len(),
        source_ref.len()
    );
    Uuid::new_v5(&ALERT_NAMESPACE, key.as_bytes())
}

/// Deterministic run id: one run per (alert, playbook).
pub fn run_id(alert_id: Uuid, playbook: &str) -> Uuid {
    let key = format!("{alert_id}:{playbook}");
    Uuid::new_v5(&RUN_NAMESPACE, key.as_bytes())
}

/// Alert severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lowercase name used in JSON, SQL and playbooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Maps a 0-10 score onto the scale: <1 info, <4 low, <7 medium, <9 high, else critical.
    pub fn from_score(score: f64) -> Option<Severity> {
        if !(0.0..=10.0).contains(&score) {
            return None;
        }
        Some(match score {
            s if s < 1.0 => Severity::Info,
            s if s < 4.0 => Severity::Low,
            s if s < 7.0 => Severity::Medium,
            s if s < 9.0 => Severity::High,
            _ => Severity::Critical,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one of info, low, medium, high, critical.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}: expected info, low, medium, high or critical")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// Case-insensitive; `informational` is accepted for `info`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" | "informational" => Ok(Severity::Info),
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(UnknownSeverity(s.to_owned())),
        }
    }
}

impl From<Severity> for v1::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => v1::Severity::Info,
            Severity::Low => v1::Severity::Low,
            Severity::Medium => v1::Severity::Medium,
            Severity::High => v1::Severity::High,
            Severity::Critical => v1::Severity::Critical,
        }
    }
}

impl TryFrom<v1::Severity> for Severity {
    type Error = UnknownSeverity;

    fn try_from(s: v1::Severity) -> Result<Self, Self::Error> {
        match s {
            v1::Severity::Info => Ok(Severity::Info),
            v1::Severity::Low => Ok(Severity::Low),
            v1::Severity::Medium => Ok(Severity::Medium),
            v1::Severity::High => Ok(Severity::High),
            v1::Severity::Critical => Ok(Severity::Critical),
            v1::Severity::Unspecified => Err(UnknownSeverity("unspecified".to_owned())),
        }
    }
}

/// Observable kinds an alert can carry.
pub const OBSERVABLE_TYPES: [&str; 7] = ["ip", "domain", "url", "hash", "email", "user", "host"];

/// Lifecycle state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created by the scheduler, waiting for a worker.
    Queued,
    /// Claimed by a worker.
    Running,
    /// The playbook returned.
    Succeeded,
    /// The playbook raised, timed out or returned something invalid.
    Failed,
    /// The playbook decided not to act (`run.skip`).
    Skipped,
    /// Stopped for an analyst to look at (for example an uncertain side effect).
    NeedsReview,
    /// Suspended until an approval is decided (or times out).
    WaitingApproval,
    /// Suspended until a durable timer fires.
    Sleeping,
    /// Cancelled by an operator.
    Cancelled,
    /// Passed its playbook timeout.
    TimedOut,
    /// Its job kept failing for infrastructure reasons and was set aside.
    DeadLettered,
}

impl RunStatus {
    /// The snake_case name stored in Postgres and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
            RunStatus::NeedsReview => "needs_review",
            RunStatus::WaitingApproval => "waiting_approval",
            RunStatus::Sleeping => "sleeping",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
            RunStatus::DeadLettered => "dead_lettered",
        }
    }

    /// Whether no worker will touch the run again on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded
                | RunStatus::Failed
                | RunStatus::Skipped
                | RunStatus::NeedsReview
                | RunStatus::Cancelled
                | RunStatus::TimedOut
                | RunStatus::DeadLettered
        )
    }

    /// Whether the run is durably suspended (the scheduler re-dispatches it).
    pub fn is_suspended(self) -> bool {
        matches!(self, RunStatus::WaitingApproval | RunStatus::Sleeping)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run status name that Tocsin does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run status {0:?}")]
pub struct UnknownRunStatus(pub String);

impl FromStr for RunStatus {
    type Err = UnknownRunStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(RunStatus::Queued),
            "running" => Ok(RunStatus::Running),
            "succeeded" => Ok(RunStatus::Succeeded),
            "failed" => Ok(RunStatus::Failed),
            "skipped" => Ok(RunStatus::Skipped),
            "needs_review" => Ok(RunStatus::NeedsReview),
            "waiting_approval" => Ok(RunStatus::WaitingApproval),
            "sleeping" => Ok(RunStatus::Sleeping),
            "cancelled" => Ok(RunStatus::Cancelled),
            "timed_out" => Ok(RunStatus::TimedOut),
            "dead_lettered" => Ok(RunStatus::DeadLettered),
            _ => Err(UnknownRunStatus(s.to_owned())),
        }
    }
}

/// Validates a tenant id: 1-63 chars of `[a-z0-9-]`, starting with a letter or digit. Tenant
/// ids appear in NATS subjects, so this rule keeps them a single safe subject token.
pub fn is_valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_unambiguous() {
        assert_eq!(alert_id("t", "s", "r"), alert_id("t", "s", "r"));
        assert_ne!(alert_id("t", "ab", "c"), alert_id("t", "a", "bc"));
        let a = alert_id("t", "s", "r");
        assert_eq!(run_id(a, "p"), run_id(a, "p"));
        assert_ne!(run_id(a, "p"), run_id(a, "q"));
    }

    #[test]
    fn severities_parse_order_and_map_scores() {
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert_eq!("Informational".parse::<Severity>(), Ok(Severity::Info));
        assert!("severe".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High);
        assert_eq!(Severity::from_score(0.0), Some(Severity::Info));
        assert_eq!(Severity::from_score(3.9), Some(Severity::Low));
        assert_eq!(Severity::from_score(7.0), Some(Severity::High));
        assert_eq!(Severity::from_score(10.0), Some(Severity::Critical));
        assert_eq!(Severity::from_score(10.5), None);
        for s in Severity::ALL {
            assert_eq!(Severity::try_from(v1::Severity::from(s)), Ok(s));
        }
    }

    #[test]
    fn tenant_ids_are_single_subject_tokens() {
        assert!(is_valid_tenant_id("default"));
        assert!(is_valid_tenant_id("acme-2"));
        assert!(!is_valid_tenant_id(""));
        assert!(!is_valid_tenant_id("a.b"));
        assert!(!is_valid_tenant_id("A"));
        assert!(!is_valid_tenant_id("-x"));
        assert!(!is_valid_tenant_id(&"a".repeat(64)));
    }
}
