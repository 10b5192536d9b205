//! Falco JSON output (`json_output: true`, also as Falcosidekick forwards it), from the
//! syscall source and from plugins such as k8saudit.
//!
//! - title `rule`; description `output`.
//! - severity `priority`: Emergency, Alert, Critical critical; Error high; Warning medium;
//!   Notice low; Informational, Info, Debug info.
//! - occurred_at `time` (RFC 3339, ns), else `output_fields."evt.time"` (ns).
//! - source_ref `uuid` (Falco 0.37+ / Falcosidekick); without one, a hash of `time`,
//!   `rule` and `hostname` (the event's stable fields).
//! - observables `hostname` (host); `user.name`, `ka.user.name` (user); connection
//!   addresses `fd.*ip`, `ka.sourceips` (ip); `fd.sip.name` (domain).
//! - tags `tags[]` (the rule's tags, including its MITRE ones).

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{Kind, Lines, first_severity, first_time, required, source_ref};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "falco",
    aliases: &["falcosidekick"],
    envelopes: &[],
    expand: None,
    text: None,
    map,
};

const PRIORITIES: [(&str, Severity); 9] = [
    ("emergency", Severity::Critical),
    ("alert", Severity::Critical),
    ("critical", Severity::Critical),
    ("error", Severity::High),
    ("warning", Severity::Medium),
    ("notice", Severity::Low),
    ("informational", Severity::Info),
    ("info", Severity::Info),
    ("debug", Severity::Info),
];

fn map(event: &Value) -> Result<Outcome, EventError> {
    let title = required(event, &["rule"])?;
    let severity = first_severity(event, &["priority"], &PRIORITIES).unwrap_or(Severity::Medium);
    let reference = source_ref(event, &["uuid"], &["time", "rule", "hostname"]);
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(event, &["time", "output_fields/evt.time"]);
    draft.description = Lines::default().text(event, &["output"]).join();
    draft.observables.collect(
        event,
        &[
            (Kind::Host, "hostname"),
            (Kind::User, "output_fields/user.name"),
            (Kind::User, "output_fields/ka.user.name"),
            (Kind::Ip, "output_fields/fd.sip"),
            (Kind::Ip, "output_fields/fd.cip"),
            (Kind::Ip, "output_fields/fd.rip"),
            (Kind::Ip, "output_fields/fd.lip"),
            (Kind::Ip, "output_fields/ka.sourceips"),
            (Kind::Domain, "output_fields/fd.sip.name"),
        ],
    );
    draft.tags.collect(event, &["tags"]);
    draft.alert()
}
