//! Google SecOps (Chronicle) detections, bare or in the `detections` /
//! `curatedRuleDetections` list of a Backstory API response.
//!
//! - title `detection[0].ruleName`; description the rule's description, rule set and
//!   rule type.
//! - severity `detection[].severity` (INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL), else
//!   `riskScore` 0-100: 0 info, 1-39 low, 40-69 medium, 70-89 high, 90+ critical.
//! - occurred_at `detectionTime`, else `timeWindow.endTime`, `createdTime`.
//! - source_ref `id` (`de_...`).
//! - observables every UDM noun (`principal`, `target`, `src`, ...) of the referenced
//!   events: `ip` (ip), `hostname` (host), `emailAddresses` (email), `userid` (user),
//!   `url`, DNS question names (domain), file hashes; plus the rule's outcome and
//!   detection fields whose `source` names one of those UDM fields.
//! - tags `tags[]` (MITRE tactic and technique ids).

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{
    COMMON_SEVERITIES, Kind, Lines, all, first, first_number, first_severity, first_time, required,
    severity_from_percent, texts,
};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "google-secops",
    aliases: &["chronicle", "google-chronicle", "secops"],
    envelopes: &["/detections", "/curatedRuleDetections"],
    expand: None,
    text: None,
    map,
};

const EVENTS: &str = "collectionElements/[]/references/[]/event";

/// The UDM field a rule outcome or detection field came from (its `source`, by suffix),
/// and what observable its value is.
const UDM_SOURCES: [(&str, Kind); 7] = [
    (".ip", Kind::Ip),
    (".hostname", Kind::Host),
    (".email_addresses", Kind::Email),
    (".userid", Kind::User),
    (".url", Kind::Url),
    (".sha256", Kind::Hash),
    (".md5", Kind::Hash),
];

fn map(detection: &Value) -> Result<Outcome, EventError> {
    let title = required(detection, &["detection/[]/ruleName"])?;
    let severity = first_severity(detection, &["detection/[]/severity"], &COMMON_SEVERITIES)
        .or_else(|| first_number(detection, &["detection/[]/riskScore"]).map(severity_from_percent))
        .unwrap_or(Severity::Medium);
    let reference = required(detection, &["id"])?;
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(
        detection,
        &["detectionTime", "timeWindow/endTime", "createdTime"],
    );
    draft.description = Lines::default()
        .text(detection, &["detection/[]/description"])
        .facts(
            detection,
            &[
                ("Rule set", "detection/[]/ruleSetDisplayName"),
                ("Rule type", "detection/[]/ruleType"),
                ("Risk score", "detection/[]/riskScore"),
            ],
        )
        .join();
    let obs = &mut draft.observables;
    obs.collect(
        detection,
        &[
            (Kind::Ip, &format!("{EVENTS}/**/ip")),
            (Kind::Host, &format!("{EVENTS}/**/hostname")),
            (Kind::Email, &format!("{EVENTS}/**/emailAddresses")),
            (Kind::User, &format!("{EVENTS}/**/userid")),
            (Kind::Url, &format!("{EVENTS}/target/url")),
            (
                Kind::Domain,
                &format!("{EVENTS}/network/dns/questions/[]/name"),
            ),
            (Kind::Hash, &format!("{EVENTS}/**/file/sha256")),
            (Kind::Hash, &format!("{EVENTS}/**/file/md5")),
        ],
    );
    for field in [
        "detection/[]/outcomes/[]",
        "detection/[]/detectionFields/[]",
    ] {
        for item in all(detection, field) {
            let kind = first(item, &["source"]).and_then(|source| {
                UDM_SOURCES
                    .iter()
                    .find(|(suffix, _)| source.ends_with(suffix))
                    .map(|(_, kind)| *kind)
            });
            if let Some(kind) = kind {
                for value in texts(item, "value") {
                    // Outcomes list several values as "a, b".
                    value.split(", ").for_each(|v| obs.add(kind, v));
                }
            }
        }
    }
    draft.tags.collect(detection, &["tags"]);
    draft.alert()
}
