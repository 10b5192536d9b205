//! Vendor alert formats: turns the webhook bodies that SIEMs, EDRs, cloud detectors and
//! mail reports send into Tocsin [`Alert`](v1::Alert)s, one module per source.
//!
//! A body is one event, a JSON array, NDJSON (or any whitespace-separated JSON values), or
//! the product's envelope around its events (EventBridge `detail`, Graph `value`, Okta
//! `data.events`, CrowdStrike `resources`, ...), which each source unwraps. Records that
//! are not alerts (Suricata `flow`, OCSF `PASS` findings) are listed in
//! [`Normalized::skipped`]; anything else that cannot be mapped rejects the whole body, as
//! the generic format does.
//!
//! Every source fills `source` (its canonical name), `source_ref` (the product's own id, or
//! `sha256:` of the event's stable fields when it has none), `title`, `description`,
//! `severity` (the product's scale mapped onto info..critical, documented per module),
//! `occurred_at_ms`, the observables the payload carries (ip v4/v6 checked with std::net
//! and the unspecified address dropped, host, domain, url, md5/sha1/sha256 hash, email,
//! user; canonical and de-duplicated), `tags` (MITRE ids and the product's own labels)
//! and `raw_json` (the event as received, after unwrapping; for an e-mail, its headers,
//! parts and a summary). Tenant, ids and receipt times are the caller's.
//!
//! Links back into the vendor's console (`alertWebUrl`, `falcon_host_link`,
//! `results_link`, ...) and the people who handle an alert (an incident's owner) are not
//! observables: they stay in `raw_json`, so enrichment never looks them up or acts on them.

mod aws_guardduty;
mod aws_securityhub_asff;
mod body;
mod crowdstrike_falcon;
mod eml;
pub(crate) mod extract;
mod falco;
mod google_secops;
mod microsoft_defender;
mod microsoft_sentinel;
mod ocsf;
mod okta;
mod phishing;
mod sentinelone;
mod splunk;
mod suricata_eve;
mod wazuh;

use serde_json::Value;
use tocsin_proto::types::Severity;
use tocsin_proto::v1;

pub(crate) use extract::{Observables, Tags};
pub(crate) use splunk::CIM_OBSERVABLES;

/// Same limits as the generic format, applied by truncation: a vendor cannot shorten its
/// fields, so an over-long one must not reject the delivery.
const MAX_TITLE_CHARS: usize = 1_000;
const MAX_DESCRIPTION_CHARS: usize = 64 * 1024;
const MAX_SOURCE_REF_BYTES: usize = 512;

/// Why a body could not be normalized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// No format has this name or alias.
    #[error("unknown alert source {name:?}")]
    UnknownSource {
        /// The name asked for.
        name: String,
    },
    /// The body holds no event at all.
    #[error("the request holds no event")]
    Empty,
    /// The body is not JSON (or, for a source that also takes text, not that text format).
    #[error("line {line}, column {column}: malformed JSON: {message}")]
    Malformed {
        /// 1-based line of the body.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Parser message.
        message: String,
    },
    /// More alerts than one request may carry.
    #[error("{count} alerts in one request; at most {max} are accepted")]
    TooMany {
        /// Alerts in the request.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An event is not one the source can map.
    #[error("event {index}: {reason}")]
    InvalidEvent {
        /// 1-based position of the event in the body (NDJSON line, array element or
        /// element of the envelope's list, counted across the whole body).
        index: usize,
        /// What is wrong with it.
        reason: EventError,
    },
}

/// What is wrong with one event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The event is a JSON value other than an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A field the source always sends is absent or empty.
    #[error("no {field}")]
    Missing {
        /// Its path in the event (`rule/description`), the first one tried.
        field: &'static str,
    },
    /// A text body that is not an RFC 5322 message.
    #[error("not an e-mail message (RFC 5322)")]
    NotAMessage,
}

/// A record of the body that is well-formed but not an alert.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// 1-based position of the record, counted like [`FormatError::InvalidEvent::index`].
    pub index: usize,
    /// Why it is not an alert.
    pub reason: SkipReason,
}

/// Why a record is not an alert.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    /// An event of another type (Suricata `flow`, a CrowdStrike audit event, ...).
    NotAnAlert {
        /// The record's own type name.
        event_type: String,
    },
    /// A compliance check that passed.
    Passed {
        /// The record's status value.
        status: String,
    },
}

/// A normalized body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Normalized {
    /// The alerts, in body order, with tenant, id, receipt id and `received_at_ms` empty.
    pub alerts: Vec<v1::Alert>,
    /// The records that are not alerts.
    pub skipped: Vec<Skipped>,
}

/// Parses a body that is not JSON into one event.
pub(crate) type TextParser = fn(&[u8]) -> Result<Value, EventError>;

/// One source's format.
pub(crate) struct Format {
    /// Canonical name: the `source` of its alerts.
    name: &'static str,
    /// Other accepted names.
    aliases: &'static [&'static str],
    /// JSON pointers to the envelope's event list (or single event), tried in order and
    /// again on what they yield, so envelopes may nest.
    envelopes: &'static [&'static str],
    /// Replaces envelope unwrapping when unwrapping needs more than a pointer.
    expand: Option<fn(Value) -> Vec<Value>>,
    /// Parses a body that is not JSON (the phishing source's e-mails).
    text: Option<TextParser>,
    /// Maps one event.
    map: fn(&Value) -> Result<Outcome, EventError>,
}

/// What a format makes of one event.
pub(crate) enum Outcome {
    Alert(Box<Draft>),
    Skip(SkipReason),
}

/// An alert as a format maps it; [`Draft::finish`] applies the limits.
pub(crate) struct Draft {
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) severity: Severity,
    pub(crate) occurred_at_ms: i64,
    pub(crate) source_ref: String,
    pub(crate) observables: Observables,
    pub(crate) tags: Tags,
}

impl Draft {
    pub(crate) fn new(title: String, severity: Severity, source_ref: String) -> Self {
        Self {
            title,
            description: String::new(),
            severity,
            occurred_at_ms: 0,
            source_ref,
            observables: Observables::default(),
            tags: Tags::default(),
        }
    }

    fn alert(self) -> Result<Outcome, EventError> {
        Ok(Outcome::Alert(Box::new(self)))
    }

    /// The alert of `source`, with `raw` as its `raw_json` and the limits applied.
    pub(crate) fn finish(self, source: &str, raw: &Value) -> v1::Alert {
        let source_ref = if self.source_ref.len() > MAX_SOURCE_REF_BYTES {
            extract::sha256_ref(&[&Value::String(self.source_ref)])
        } else {
            self.source_ref
        };
        v1::Alert {
            source: source.to_owned(),
            source_ref,
            title: truncate(&self.title, MAX_TITLE_CHARS),
            description: truncate(&self.description, MAX_DESCRIPTION_CHARS),
            severity: v1::Severity::from(self.severity).into(),
            occurred_at_ms: self.occurred_at_ms,
            observables: self.observables.into_vec(),
            tags: self.tags.into_vec(),
            raw_json: raw.to_string(),
            ..v1::Alert::default()
        }
    }
}

/// `text` trimmed and cut to at most `max_chars` characters.
pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => text.get(..end).unwrap_or(text).to_owned(),
        None => text.to_owned(),
    }
}

const FORMATS: [&Format; 14] = [
    &aws_guardduty::FORMAT,
    &aws_securityhub_asff::FORMAT,
    &crowdstrike_falcon::FORMAT,
    &falco::FORMAT,
    &google_secops::FORMAT,
    &microsoft_defender::FORMAT,
    &microsoft_sentinel::FORMAT,
    &ocsf::FORMAT,
    &okta::FORMAT,
    &phishing::FORMAT,
    &sentinelone::FORMAT,
    &splunk::FORMAT,
    &suricata_eve::FORMAT,
    &wazuh::FORMAT,
];

const SOURCES: [&str; FORMATS.len()] = {
    let mut names = [""; FORMATS.len()];
    let mut i = 0;
    while i < FORMATS.len() {
        names[i] = FORMATS[i].name;
        i += 1;
    }
    names
};

/// The canonical names of every source format (the `source` of their alerts).
pub fn sources() -> &'static [&'static str] {
    &SOURCES
}

fn find_format(name: &str) -> Option<&'static Format> {
    let wanted = name.trim();
    let same = |candidate: &str| {
        candidate.len() == wanted.len()
            && candidate.bytes().zip(wanted.bytes()).all(|(c, w)| {
                let w = if w == b'_' { b'-' } else { w };
                c == w.to_ascii_lowercase()
            })
    };
    FORMATS
        .iter()
        .copied()
        .find(|f| same(f.name) || f.aliases.iter().any(|a| same(a)))
}

/// The canonical source name for a name or alias (case-insensitive, `_` taken as `-`):
/// `"suricata"` and `"suricata-eve"` both give `"suricata-eve"`.
pub fn canonical_source(name: &str) -> Option<&'static str> {
    find_format(name).map(|f| f.name)
}

/// Normalizes a webhook body for `source` (a source name or alias) into alerts (tenant,
/// id, receipt and `received_at` left empty for the caller). All-or-nothing: an event
/// that cannot be mapped rejects the body; records that are not alerts are skipped.
/// `max_batch` bounds the alerts (not the skipped records) one body may yield.
pub fn normalize(source: &str, body: &[u8], max_batch: usize) -> Result<Normalized, FormatError> {
    let format = find_format(source).ok_or_else(|| FormatError::UnknownSource {
        name: source.to_owned(),
    })?;
    let records = body::records(body, format.text)?;
    normalize_records(format, records, max_batch)
}

/// Normalizes one record that arrived already parsed (the `event` of a Splunk HEC event)
/// for `source`, as if it were a one-record body: envelopes are unwrapped, so it may
/// still yield several alerts, or none when it is not an alert.
pub(crate) fn normalize_record(
    source: &str,
    record: Value,
    max_batch: usize,
) -> Result<Normalized, FormatError> {
    let format = find_format(source).ok_or_else(|| FormatError::UnknownSource {
        name: source.to_owned(),
    })?;
    normalize_records(format, vec![record], max_batch)
}

fn normalize_records(
    format: &Format,
    records: Vec<Value>,
    max_batch: usize,
) -> Result<Normalized, FormatError> {
    let mut out = Normalized::default();
    let mut index = 0;
    for record in records {
        let events = match format.expand {
            Some(expand) => expand(record),
            None => body::unwrap(record, format.envelopes),
        };
        for event in events {
            index += 1;
            if !event.is_object() {
                return Err(FormatError::InvalidEvent {
                    index,
                    reason: EventError::NotAnObject,
                });
            }
            match (format.map)(&event) {
                Ok(Outcome::Alert(draft)) => out.alerts.push(draft.finish(format.name, &event)),
                Ok(Outcome::Skip(reason)) => out.skipped.push(Skipped { index, reason }),
                Err(reason) => return Err(FormatError::InvalidEvent { index, reason }),
            }
        }
    }
    if out.alerts.len() > max_batch {
        return Err(FormatError::TooMany {
            count: out.alerts.len(),
            max: max_batch,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_aliases_resolve_to_folder_names() {
        assert_eq!(sources().len(), 14);
        for name in sources() {
            assert_eq!(canonical_source(name), Some(*name));
        }
        assert_eq!(canonical_source("Suricata"), Some("suricata-eve"));
        assert_eq!(canonical_source(" aws_guardduty "), Some("aws-guardduty"));
        assert_eq!(canonical_source("nope"), None);
        let mut all: Vec<&str> = FORMATS
            .iter()
            .flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied()))
            .collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a name or alias is used twice");
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate(" héllo ", 2), "hé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
