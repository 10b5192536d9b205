//! CrowdStrike Falcon: Event Streams / SIEM-connector events (`{"event", "metadata"}`)
//! and Alerts API v2 entities (bare or in the `resources` list of a response).
//!
//! Event Streams carry audit events too: only `*DetectionSummaryEvent` and
//! `IncidentSummaryEvent` are alerts, the other `metadata.eventType`s are skipped.
//!
//! - title `event.DetectName` (stream) or `display_name`/`name` (alert); description the
//!   detection's description, tactic, technique, file and command line.
//! - severity: stream `event.Severity` 1-5 (informational, low, medium, high, critical),
//!   else `SeverityName`; alerts `severity_name`, else `severity` 0-100 banded 0 info,
//!   1-39 low, 40-69 medium, 70-89 high, 90+ critical.
//! - occurred_at: stream `metadata.eventCreationTime` (ms), else `event.ProcessStartTime`;
//!   alerts `first_timestamp`, else `timestamp`, `created_timestamp`.
//! - source_ref: stream `event.DetectId` (`event.IncidentId`); alerts `composite_id`,
//!   else `id`.
//! - observables host names, local/external/source IPs, user names, file hashes; e-mail
//!   addresses in `user_principal_id`. `falcon_host_link` is a console link, not one.
//! - tags MITRE tactic and technique ids.

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{
    COMMON_SEVERITIES, Kind, Lines, first, first_number, first_severity, first_time, required,
    severity_from_level, severity_from_percent,
};
use super::{Draft, EventError, Format, Outcome, SkipReason};

pub(super) const FORMAT: Format = Format {
    name: "crowdstrike-falcon",
    aliases: &["crowdstrike", "falcon"],
    envelopes: &["/resources"],
    expand: None,
    text: None,
    map,
};

fn map(event: &Value) -> Result<Outcome, EventError> {
    match event.get("event") {
        Some(inner) => map_stream_event(event, inner),
        None => map_alert(event),
    }
}

fn map_stream_event(envelope: &Value, event: &Value) -> Result<Outcome, EventError> {
    let event_type = first(envelope, &["metadata/eventType"]).unwrap_or_default();
    if !(event_type.ends_with("DetectionSummaryEvent") || event_type == "IncidentSummaryEvent") {
        return Ok(Outcome::Skip(SkipReason::NotAnAlert { event_type }));
    }
    let title = required(event, &["DetectName", "Name", "Objective"])?;
    let severity = first_number(event, &["Severity"])
        .map(severity_from_level)
        .or_else(|| first_severity(event, &["SeverityName"], &COMMON_SEVERITIES))
        .unwrap_or(Severity::Medium);
    let reference = required(event, &["DetectId", "IncidentId", "CompositeId"])?;
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(
        envelope,
        &["metadata/eventCreationTime", "event/ProcessStartTime"],
    );
    draft.description = Lines::default()
        .text(event, &["DetectDescription", "Description"])
        .facts(
            event,
            &[
                ("Tactic", "Tactic"),
                ("Technique", "Technique"),
                ("File path", "FilePath"),
                ("File name", "FileName"),
                ("Command line", "CommandLine"),
                ("Parent command line", "ParentCommandLine"),
                ("Disposition", "PatternDispositionDescription"),
            ],
        )
        .join();
    draft.observables.collect(
        event,
        &[
            (Kind::Host, "ComputerName"),
            (Kind::Domain, "MachineDomain"),
            (Kind::Ip, "LocalIP"),
            (Kind::Ip, "ExternalIP"),
            (Kind::User, "UserName"),
            (Kind::Hash, "SHA256String"),
            (Kind::Hash, "SHA1String"),
            (Kind::Hash, "MD5String"),
            (Kind::Hash, "ParentSHA256String"),
        ],
    );
    draft
        .tags
        .collect(event, &["TacticId", "TechniqueId", "Tactics/[]/TacticId"]);
    draft.alert()
}

fn map_alert(alert: &Value) -> Result<Outcome, EventError> {
    let title = required(alert, &["display_name", "name", "description"])?;
    let severity = first_severity(alert, &["severity_name"], &COMMON_SEVERITIES)
        .or_else(|| first_number(alert, &["severity"]).map(severity_from_percent))
        .unwrap_or(Severity::Medium);
    let reference = required(alert, &["composite_id", "id"])?;
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(
        alert,
        &["first_timestamp", "timestamp", "created_timestamp"],
    );
    draft.description = Lines::default()
        .text(alert, &["description"])
        .facts(
            alert,
            &[
                ("Tactic", "tactic"),
                ("Technique", "technique"),
                ("Event", "event_name"),
                ("Cloud account", "cloud_account_id"),
                ("Resource", "resource_id"),
                ("Command line", "cmdline"),
            ],
        )
        .join();
    let obs = &mut draft.observables;
    obs.collect(
        alert,
        &[
            (Kind::Host, "device/hostname"),
            (Kind::Host, "hostname"),
            (Kind::Ip, "device/local_ip"),
            (Kind::Ip, "device/external_ip"),
            (Kind::Ip, "local_ip"),
            (Kind::Ip, "external_ip"),
            (Kind::Ip, "source_ip_address"),
            (Kind::Ip, "source_ips"),
            (Kind::User, "user_name"),
            (Kind::User, "user_names"),
            (Kind::Hash, "sha256"),
            (Kind::Hash, "sha1"),
            (Kind::Hash, "md5"),
            (Kind::Hash, "parent_details/sha256"),
            (Kind::Hash, "grandparent_details/sha256"),
        ],
    );
    obs.scan(alert, &["user_principal_id"]);
    draft.tags.collect(
        alert,
        &[
            "mitre_attack/[]/tactic_id",
            "mitre_attack/[]/technique_id",
            "tactic_id",
            "technique_id",
        ],
    );
    draft.alert()
}
