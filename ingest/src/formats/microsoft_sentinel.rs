//! Microsoft Sentinel (SecurityInsights API): incidents and SecurityAlert entities, bare
//! or in a `value` list (also the `responses."200".body` of an Azure REST API example).
//!
//! Incidents:
//! - title `properties.title`; description `properties.description`, then status,
//!   classification and incident number.
//! - severity `properties.severity`: Informational info, Low, Medium, High.
//! - occurred_at `firstActivityTimeUtc`, else `createdTimeUtc`.
//! - source_ref `name` (the incident GUID), else `properties.providerIncidentId`.
//! - observables: an incident carries none of its own. Its `owner` is the analyst it is
//!   assigned to, not an indicator, and `incidentUrl` is a console link: both stay in raw.
//! - tags `additionalData.tactics[]`, `labels[].labelName`.
//!
//! SecurityAlert entities (`kind: SecurityAlert`) map as Defender for Cloud alerts do
//! ([`map_arm_alert`]).

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{COMMON_SEVERITIES, Lines, first, first_severity, first_time, required};
use super::microsoft_defender::{AZURE_ENVELOPES, map_arm_alert};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "microsoft-sentinel",
    aliases: &["sentinel", "azure-sentinel"],
    envelopes: AZURE_ENVELOPES,
    expand: None,
    text: None,
    map,
};

fn map(event: &Value) -> Result<Outcome, EventError> {
    if event.pointer("/properties/title").is_some() {
        map_incident(event)
    } else {
        map_arm_alert(event)
    }
}

fn map_incident(incident: &Value) -> Result<Outcome, EventError> {
    let props = incident.get("properties").unwrap_or(incident);
    let title = required(props, &["title"])?;
    let severity =
        first_severity(props, &["severity"], &COMMON_SEVERITIES).unwrap_or(Severity::Medium);
    let reference = first(incident, &["name"])
        .or_else(|| first(props, &["providerIncidentId", "incidentNumber"]))
        .ok_or(EventError::Missing { field: "name" })?;
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(props, &["firstActivityTimeUtc", "createdTimeUtc"]);
    draft.description = Lines::default()
        .text(props, &["description"])
        .facts(
            props,
            &[
                ("Status", "status"),
                ("Classification", "classification"),
                ("Classification reason", "classificationReason"),
                ("Incident number", "incidentNumber"),
                ("Provider", "providerName"),
            ],
        )
        .join();
    draft
        .tags
        .collect(props, &["additionalData/tactics", "labels/[]/labelName"]);
    draft.alert()
}
