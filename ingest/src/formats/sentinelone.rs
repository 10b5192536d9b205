//! SentinelOne Management API: threats (`GET /threats`, 2.x) and Unified Alert
//! Management alerts, bare or in the response's `data` (a list, or `data.alert`).
//!
//! Threats (`threatInfo`):
//! - title `"<threatName> detected as <classification>"` (the wording of S1's own alert
//!   names); description file path, confidence, mitigation and incident status.
//! - severity `threatInfo.confidenceLevel`: malicious high, suspicious medium, else
//!   medium.
//! - occurred_at `threatInfo.identifiedAt`, else `createdAt`.
//! - source_ref `id`, else `threatInfo.threatId`.
//! - observables file hashes, the agent's computer name (host) and interface addresses
//!   (ip), process and logged-in users (user).
//! - tags MITRE technique ids of `indicators[]`.
//!
//! Unified alerts:
//! - title `name`; description `description`, classification, analytics.
//! - severity `severity`: INFO info, LOW, MEDIUM, HIGH, CRITICAL.
//! - occurred_at `detectedAt`, else `firstSeenAt`, `createdAt`.
//! - source_ref `id`.
//! - observables `asset.name` (host), the asset's IPv4/IPv6 at detection (ip), logged-in
//!   users (user), `fileHash` (placeholders such as `N/A` are dropped).

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{COMMON_SEVERITIES, Kind, Lines, first, first_severity, first_time, required};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "sentinelone",
    aliases: &["s1", "sentinel-one"],
    envelopes: &["/data", "/alert"],
    expand: None,
    text: None,
    map,
};

const CONFIDENCE: [(&str, Severity); 2] = [
    ("malicious", Severity::High),
    ("suspicious", Severity::Medium),
];

fn map(event: &Value) -> Result<Outcome, EventError> {
    match event.get("threatInfo") {
        Some(threat) => map_threat(event, threat),
        None => map_alert(event),
    }
}

fn map_threat(event: &Value, threat: &Value) -> Result<Outcome, EventError> {
    let name = required(threat, &["threatName", "fileDisplayName"])?;
    let title = match first(threat, &["classification"]) {
        Some(classification) => format!("{name} detected as {classification}"),
        None => name,
    };
    let severity =
        first_severity(threat, &["confidenceLevel"], &CONFIDENCE).unwrap_or(Severity::Medium);
    let reference = required(event, &["id", "threatInfo/threatId"])?;
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(threat, &["identifiedAt", "createdAt", "updatedAt"]);
    draft.description = Lines::default()
        .facts(
            threat,
            &[
                ("File", "filePath"),
                ("Confidence", "confidenceLevel"),
                ("Detection", "detectionType"),
                ("Engines", "engines"),
                ("Mitigation", "mitigationStatus"),
                ("Incident status", "incidentStatus"),
                ("Analyst verdict", "analystVerdict"),
            ],
        )
        .join();
    draft.observables.collect(
        event,
        &[
            (Kind::Hash, "threatInfo/sha256"),
            (Kind::Hash, "threatInfo/sha1"),
            (Kind::Hash, "threatInfo/md5"),
            (Kind::Host, "agentRealtimeInfo/agentComputerName"),
            (Kind::Host, "agentDetectionInfo/agentComputerName"),
            (Kind::Ip, "agentRealtimeInfo/networkInterfaces/[]/inet"),
            (Kind::Ip, "agentRealtimeInfo/networkInterfaces/[]/inet6"),
            (Kind::Ip, "agentDetectionInfo/agentIpV4"),
            (Kind::Ip, "agentDetectionInfo/agentIpV6"),
            (Kind::Ip, "agentDetectionInfo/externalIp"),
            (Kind::User, "threatInfo/processUser"),
            (Kind::User, "threatInfo/initiatingUsername"),
            (Kind::User, "agentDetectionInfo/agentLastLoggedInUserName"),
        ],
    );
    draft
        .tags
        .collect(event, &["indicators/[]/tactics/[]/techniques/[]/title"]);
    draft.alert()
}

fn map_alert(alert: &Value) -> Result<Outcome, EventError> {
    let title = required(alert, &["name"])?;
    let severity =
        first_severity(alert, &["severity"], &COMMON_SEVERITIES).unwrap_or(Severity::Medium);
    let reference = required(alert, &["id"])?;
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(alert, &["detectedAt", "firstSeenAt", "createdAt"]);
    draft.description = Lines::default()
        .text(alert, &["description"])
        .facts(
            alert,
            &[
                ("Classification", "classification"),
                ("Confidence", "confidenceLevel"),
                ("Analytics", "analytics/category"),
                ("Result", "result"),
                ("Status", "status"),
            ],
        )
        .join();
    draft.observables.collect(
        alert,
        &[
            (Kind::Host, "asset/name"),
            (Kind::Ip, "detectionTime/asset/ipV4"),
            (Kind::Ip, "detectionTime/asset/ipV6"),
            (Kind::User, "asset/lastLoggedInUser"),
            (Kind::User, "detectionTime/asset/lastLoggedInUser"),
            (Kind::Hash, "fileHash"),
        ],
    );
    draft.alert()
}
