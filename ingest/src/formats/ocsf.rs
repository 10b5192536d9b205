//! OCSF findings and alerts (Detection Finding 2004, Security Finding 2001, Compliance
//! Finding 2003, ...), one event, an array (Prowler's `json-ocsf`) or NDJSON. Findings
//! whose check passed (`status_code` or `compliance.status` `PASS`) are skipped.
//!
//! - title `finding_info.title`, else `message`, `class_name`; description
//!   `status_detail`, else `message`, `finding_info.desc`; then risk and resources.
//! - severity `severity_id`: 1 info, 2 low, 3 medium, 4 high, 5 critical, 6 (fatal)
//!   critical; 0 (unknown), 99 (other) or absent: the `severity` name, else medium.
//! - occurred_at `finding_info.first_seen_time`, else `finding_info.created_time`, `time`
//!   (OCSF says ms; seconds, as Prowler writes, are told apart by magnitude).
//! - source_ref `finding_info.uid`, else `metadata.uid`, else a hash of class, time and
//!   title.
//! - observables the `observables[]` array by `type_id`, endpoint IPs and host names,
//!   user names, e-mail addresses, URLs and file hashes.
//! - tags MITRE ATT&CK tactic, technique and sub-technique uids (`attacks[]`).

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{
    COMMON_SEVERITIES, Kind, Lines, first, first_number, first_severity, first_time, required,
    severity_from_level, source_ref,
};
use super::{Draft, EventError, Format, Outcome, SkipReason};

pub(super) const FORMAT: Format = Format {
    name: "ocsf",
    aliases: &["prowler"],
    envelopes: &[],
    expand: None,
    text: None,
    map,
};

/// OCSF `observables[].type_id` values that are Tocsin observables.
const OBSERVABLE_TYPES: [(&str, &str, Kind); 6] = [
    ("1", "value", Kind::Host),
    ("2", "value", Kind::Ip),
    ("4", "value", Kind::User),
    ("5", "value", Kind::Email),
    ("6", "value", Kind::Url),
    ("8", "value", Kind::Hash),
];

fn map(finding: &Value) -> Result<Outcome, EventError> {
    if let Some(status) = first(finding, &["status_code", "compliance/status"])
        .filter(|s| s.eq_ignore_ascii_case("pass"))
    {
        return Ok(Outcome::Skip(SkipReason::Passed { status }));
    }
    let title = required(finding, &["finding_info/title", "message", "class_name"])?;
    let severity = first_number(finding, &["severity_id"])
        .filter(|id| (1.0..=6.0).contains(id))
        .map(severity_from_level)
        .or_else(|| first_severity(finding, &["severity"], &COMMON_SEVERITIES))
        .unwrap_or(Severity::Medium);
    let reference = source_ref(
        finding,
        &["finding_info/uid", "metadata/uid"],
        &["class_uid", "time", "finding_info/title", "message"],
    );
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(
        finding,
        &[
            "finding_info/first_seen_time",
            "finding_info/created_time",
            "time",
        ],
    );
    draft.description = Lines::default()
        .text(finding, &["status_detail", "message", "finding_info/desc"])
        .facts(
            finding,
            &[
                ("Risk", "risk_details"),
                ("Resources", "resources/[]/uid"),
                ("Account", "cloud/account/uid"),
                ("Region", "cloud/region"),
                ("Remediation", "remediation/desc"),
            ],
        )
        .join();
    let obs = &mut draft.observables;
    obs.collect_typed(finding, "observables/[]", "type_id", &OBSERVABLE_TYPES);
    obs.collect(
        finding,
        &[
            (Kind::Ip, "src_endpoint/ip"),
            (Kind::Ip, "dst_endpoint/ip"),
            (Kind::Ip, "device/ip"),
            (Kind::Host, "src_endpoint/hostname"),
            (Kind::Host, "dst_endpoint/hostname"),
            (Kind::Host, "device/hostname"),
            (Kind::User, "**/user/name"),
            (Kind::Email, "**/user/email_addr"),
            (Kind::Url, "**/url/url_string"),
            (Kind::Hash, "**/file/hashes/[]/value"),
        ],
    );
    draft.tags.collect(
        finding,
        &[
            "finding_info/attacks/[]/tactic/uid",
            "finding_info/attacks/[]/technique/uid",
            "finding_info/attacks/[]/sub_technique/uid",
            "attacks/[]/tactic/uid",
            "attacks/[]/technique/uid",
            "attacks/[]/sub_technique/uid",
        ],
    );
    draft.alert()
}
