//! Splunk's Webhook alert action (`{"sid", "search_name", "app", "owner",
//! "results_link", "result": {...}}`, `result` being one result row). A body with a
//! `results` list (custom alert actions) yields one alert per row, each as if it had come
//! alone in `result`.
//!
//! - title `search_name`, else the row's `rule_name`, `signature`; description the row's
//!   `_raw`, then app, owner, source and sourcetype.
//! - severity the row's `severity`, else `urgency` (informational, low, medium, high,
//!   critical); the webhook itself carries none (it is the saved search's setting), so
//!   without one: medium.
//! - occurred_at `result._time` (epoch seconds or ISO 8601), else `_indextime`.
//! - source_ref `<sid>:<first 16 hex digits of the SHA-256 of the row>`: the search id
//!   alone is shared by every row a "for each result" alert sends.
//! - observables the row's CIM fields: `host`, `dest`/`src` names (host), `src_ip`,
//!   `dest_ip`, `ip` (ip), `user`, `src_user`, `dest_user` (user), `url`, `domain`,
//!   `query` (domain), file hashes, `sender`/`recipient`; URLs, e-mail addresses and
//!   IPv4 in `_raw`. `results_link` is a console link, not one.
//! - tags the row's MITRE annotations.

use serde_json::{Map, Value};
use tocsin_proto::types::Severity;

use super::extract::{
    COMMON_SEVERITIES, Kind, Lines, first, first_severity, first_time, required, sha256_ref,
};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "splunk",
    aliases: &["splunk-webhook"],
    envelopes: &[],
    expand: Some(expand),
    text: None,
    map,
};

/// One `{..., "result": row}` per row of a `results` list.
fn expand(mut body: Value) -> Vec<Value> {
    let rows = match body.as_object_mut().and_then(|o| o.remove("results")) {
        Some(Value::Array(rows)) => rows,
        Some(other) => {
            // Not a row list: leave it where it was.
            if let Some(o) = body.as_object_mut() {
                o.insert("results".to_owned(), other);
            }
            return vec![body];
        }
        None => return vec![body],
    };
    let envelope = match body {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    rows.into_iter()
        .map(|row| {
            let mut event = envelope.clone();
            event.insert("result".to_owned(), row);
            Value::Object(event)
        })
        .collect()
}

/// The observables of a result row's Common Information Model fields (also read from the
/// events that reach the Splunk HEC endpoint without a built-in source).
pub(crate) const CIM_OBSERVABLES: [(Kind, &str); 18] = [
    (Kind::Host, "host"),
    (Kind::Host, "dest"),
    (Kind::Host, "src"),
    (Kind::Ip, "src_ip"),
    (Kind::Ip, "dest_ip"),
    (Kind::Ip, "ip"),
    (Kind::User, "user"),
    (Kind::User, "src_user"),
    (Kind::User, "dest_user"),
    (Kind::Url, "url"),
    (Kind::Domain, "domain"),
    (Kind::Domain, "query"),
    (Kind::Hash, "file_hash"),
    (Kind::Hash, "sha256"),
    (Kind::Hash, "sha1"),
    (Kind::Hash, "md5"),
    (Kind::Email, "sender"),
    (Kind::Email, "recipient"),
];

fn map(event: &Value) -> Result<Outcome, EventError> {
    let row = event.get("result").unwrap_or(&Value::Null);
    let title = required(
        event,
        &["search_name", "result/rule_name", "result/signature"],
    )?;
    let severity = first_severity(row, &["severity", "urgency"], &COMMON_SEVERITIES)
        .unwrap_or(Severity::Medium);
    let reference = match (first(event, &["sid"]), sha256_ref(&[row]).get(7..23)) {
        (Some(sid), Some(row_hash)) => format!("{sid}:{row_hash}"),
        _ => sha256_ref(&[event]),
    };
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(row, &["_time", "_indextime"]);
    draft.description = Lines::default()
        .text(row, &["_raw"])
        .facts(event, &[("App", "app"), ("Owner", "owner")])
        .facts(row, &[("Source", "source"), ("Sourcetype", "sourcetype")])
        .join();
    let obs = &mut draft.observables;
    obs.collect(row, &CIM_OBSERVABLES);
    obs.scan(row, &["_raw"]);
    draft.tags.collect(
        row,
        &[
            "annotations.mitre_attack",
            "annotations.mitre_attack.mitre_technique_id",
            "mitre_technique_id",
        ],
    );
    draft.alert()
}
