//! Tocsin's generic alert format, and request body framing (one JSON object, a JSON array,
//! or NDJSON).
//!
//! Fields: `title` (required), `severity` (required: info|low|medium|high|critical in any
//! case, or a number 0-10), `source` (default `generic`), `source_ref` (the producer's id;
//! when absent, a hash of the alert's content, so a retried post deduplicates),
//! `occurred_at` (RFC 3339), `description`, `observables` (`[{"type", "value"}]`), `tags`;
//! every other field is kept in `raw`.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tocsin_proto::types::{OBSERVABLE_TYPES, Severity};
use tocsin_proto::v1;

/// Longest accepted `source`, in bytes.
pub(crate) const MAX_SOURCE: usize = 64;
const MAX_TITLE: usize = 1_000;
const MAX_DESCRIPTION: usize = 64 * 1024;
const MAX_SOURCE_REF: usize = 512;
const MAX_OBSERVABLE: usize = 4_096;
const MAX_TAG: usize = 256;

/// Why an alert in a request was rejected. `line` is 1-based: the NDJSON line, or the
/// array element for a JSON array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// The body is not JSON (or a line of it is not).
    #[error("line {line}: malformed JSON: {message}")]
    Malformed {
        /// Line (or element) number.
        line: usize,
        /// Parser message.
        message: String,
    },
    /// A field is missing or invalid.
    #[error("line {line}: field {field}: {message}")]
    Field {
        /// Line (or element) number.
        line: usize,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The body holds no alert.
    #[error("the request holds no alert")]
    Empty,
}

impl NormalizeError {
    /// The line (or element) the error is about.
    pub fn line(&self) -> Option<usize> {
        match self {
            NormalizeError::Malformed { line, .. } | NormalizeError::Field { line, .. } => {
                Some(*line)
            }
            NormalizeError::Empty => None,
        }
    }
}

/// An alert object and its 1-based line (NDJSON) or element (array) number.
pub(crate) type NumberedObject = (usize, Map<String, Value>);

/// Splits a request body into alert objects: one JSON object, a JSON array of objects, or
/// NDJSON (one object per line; blank lines are skipped).
pub(crate) fn split_body(body: &[u8]) -> Result<Vec<NumberedObject>, NormalizeError> {
    let as_object = |line: usize, value: Value| match value {
        Value::Object(map) => Ok((line, map)),
        _ => Err(NormalizeError::Malformed {
            line,
            message: "expected a JSON object".to_owned(),
        }),
    };
    // One JSON document (object or array) first; NDJSON otherwise.
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        return match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| as_object(i + 1, v))
                .collect(),
            other => Ok(vec![as_object(1, other)?]),
        };
    }
    let mut out = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        let value =
            serde_json::from_slice::<Value>(trimmed).map_err(|e| NormalizeError::Malformed {
                line: line_no,
                message: e.to_string(),
            })?;
        out.push(as_object(line_no, value)?);
    }
    Ok(out)
}

/// Parses and normalizes a generic-format body. Tenant, ids and receipt times are filled in
/// by the caller. All-or-nothing: one invalid alert rejects the request.
pub fn parse_generic_body(body: &[u8], max_batch: usize) -> Result<Vec<v1::Alert>, BodyError> {
    let objects = split_body(body).map_err(BodyError::Invalid)?;
    if objects.is_empty() {
        return Err(BodyError::Invalid(NormalizeError::Empty));
    }
    if objects.len() > max_batch {
        return Err(BodyError::TooMany {
            count: objects.len(),
            max: max_batch,
        });
    }
    objects
        .into_iter()
        .map(|(line, map)| normalize(line, map).map_err(BodyError::Invalid))
        .collect()
}

/// A request body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// An alert is invalid.
    #[error(transparent)]
    Invalid(NormalizeError),
    /// More alerts than one request may carry.
    #[error("{count} alerts in one request; at most {max} are accepted")]
    TooMany {
        /// Alerts in the request.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Whether `source` is a source name an alert may carry: 1-64 characters of a-z, 0-9,
/// '-', '_', '.' (what the generic format accepts after lowercasing).
pub(crate) fn is_valid_source(source: &str) -> bool {
    !source.is_empty()
        && source.len() <= MAX_SOURCE
        && source.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

fn field_err(line: usize, field: &'static str, message: impl Into<String>) -> NormalizeError {
    NormalizeError::Field {
        line,
        field,
        message: message.into(),
    }
}

fn take_string(
    map: &mut Map<String, Value>,
    line: usize,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, NormalizeError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(field_err(
            line,
            field,
            format!("longer than {max} characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(field_err(line, field, "must be a string")),
    }
}

fn normalize(line: usize, mut map: Map<String, Value>) -> Result<v1::Alert, NormalizeError> {
    // The content hash is taken before fields are removed, over the canonical (sorted-key)
    // serialization serde_json produces for a Map.
    let content_hash = hex::encode(Sha256::digest(Value::Object(map.clone()).to_string()));

    let title = take_string(&mut map, line, "title", MAX_TITLE)?
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| field_err(line, "title", "is required"))?;
    let severity = match map.remove("severity") {
        Some(Value::String(s)) => s
            .parse::<Severity>()
            .map_err(|e| field_err(line, "severity", e.to_string()))?,
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(Severity::from_score)
            .ok_or_else(|| field_err(line, "severity", "a number must be between 0 and 10"))?,
        None | Some(Value::Null) => return Err(field_err(line, "severity", "is required")),
        Some(_) => {
            return Err(field_err(
                line,
                "severity",
                "must be info, low, medium, high, critical or a number 0-10",
            ));
        }
    };
    let source = take_string(&mut map, line, "source", MAX_SOURCE)?
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "generic".to_owned());
    if !is_valid_source(&source) {
        return Err(field_err(
            line,
            "source",
            "must be 1-64 characters of a-z, 0-9, '-', '_', '.'",
        ));
    }
    let source_ref = match map.remove("source_ref") {
        None | Some(Value::Null) => format!("sha256:{content_hash}"),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_SOURCE_REF => {
            s.trim().to_owned()
        }
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(field_err(
                line,
                "source_ref",
                format!("must be a non-empty string of at most {MAX_SOURCE_REF} bytes"),
            ));
        }
    };
    let occurred_at_ms = match take_string(&mut map, line, "occurred_at", 64)? {
        None => 0,
        Some(text) => {
            let at = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|e| {
                field_err(
                    line,
                    "occurred_at",
                    format!("not an RFC 3339 timestamp: {e}"),
                )
            })?;
            i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| field_err(line, "occurred_at", "out of range"))?
        }
    };
    let description =
        take_string(&mut map, line, "description", MAX_DESCRIPTION)?.unwrap_or_default();
    let observables = parse_observables(line, map.remove("observables"))?;
    let tags = parse_tags(line, map.remove("tags"))?;
    // Ids and tenants are assigned by ingest, never taken from the payload.
    for reserved in ["id", "tenant", "received_at"] {
        if let Some(v) = map.remove(reserved) {
            map.insert(format!("original_{reserved}"), v);
        }
    }
    Ok(v1::Alert {
        source,
        source_ref,
        title,
        description,
        severity: v1::Severity::from(severity).into(),
        occurred_at_ms,
        observables,
        tags,
        raw_json: Value::Object(map).to_string(),
        ..v1::Alert::default()
    })
}

fn parse_observables(
    line: usize,
    value: Option<Value>,
) -> Result<Vec<v1::Observable>, NormalizeError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(field_err(line, "observables", "must be a list")),
    };
    let mut out: Vec<v1::Observable> = Vec::with_capacity(items.len());
    for item in items {
        let (kind, value) = match &item {
            Value::Object(o) => (o.get("type"), o.get("value")),
            _ => (None, None),
        };
        let (Some(Value::String(kind)), Some(Value::String(value))) = (kind, value) else {
            return Err(field_err(
                line,
                "observables",
                "each observable must be {\"type\": ..., \"value\": ...} with string values",
            ));
        };
        let kind = kind.trim().to_ascii_lowercase();
        if !OBSERVABLE_TYPES.contains(&kind.as_str()) {
            return Err(field_err(
                line,
                "observables",
                format!(
                    "unknown type {kind:?}; expected one of {}",
                    OBSERVABLE_TYPES.join(", ")
                ),
            ));
        }
        let value = value.trim().to_owned();
        if value.is_empty() || value.len() > MAX_OBSERVABLE {
            return Err(field_err(
                line,
                "observables",
                format!("value must be 1-{MAX_OBSERVABLE} bytes"),
            ));
        }
        if !out.iter().any(|o| o.r#type == kind && o.value == value) {
            out.push(v1::Observable {
                r#type: kind,
                value,
            });
        }
    }
    Ok(out)
}

fn parse_tags(line: usize, value: Option<Value>) -> Result<Vec<String>, NormalizeError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            let mut tags = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if !s.trim().is_empty() && s.len() <= MAX_TAG => {
                        let tag = s.trim().to_owned();
                        if !tags.contains(&tag) {
                            tags.push(tag);
                        }
                    }
                    _ => {
                        return Err(field_err(
                            line,
                            "tags",
                            format!(
                                "each tag must be a non-empty string of at most {MAX_TAG} bytes"
                            ),
                        ));
                    }
                }
            }
            Ok(tags)
        }
        Some(_) => Err(field_err(line, "tags", "must be a list of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Result<v1::Alert, BodyError> {
        parse_generic_body(body.as_bytes(), 10).map(|mut v| v.remove(0))
    }

    #[test]
    fn normalizes_a_full_generic_alert_and_keeps_extra_fields_raw() {
        let alert = one(
            r#"{"title":" Port scan ","severity":"HIGH","source":"Suricata","source_ref":"e-1",
                "occurred_at":"2026-11-23T10:00:00Z","description":"d",
                "observables":[{"type":"IP","value":"10.0.0.1"},{"type":"ip","value":"10.0.0.1"}],
                "tags":["scan","scan"],"rule":{"level":12},"id":"spoofed"}"#,
        )
        .unwrap();
        assert_eq!(alert.title, "Port scan");
        assert_eq!(alert.severity(), v1::Severity::High);
        assert_eq!(alert.source, "suricata");
        assert_eq!(alert.source_ref, "e-1");
        assert_eq!(alert.occurred_at_ms, 1_795_428_000_000);
        assert_eq!(alert.observables.len(), 1);
        assert_eq!(alert.tags, vec!["scan"]);
        let raw: Value = serde_json::from_str(&alert.raw_json).unwrap();
        assert_eq!(raw["rule"]["level"], 12);
        assert_eq!(raw["original_id"], "spoofed");
        assert!(raw.get("title").is_none());
    }

    #[test]
    fn numeric_severity_and_content_hash_source_ref() {
        let a = one(r#"{"title":"t","severity":9.5}"#).unwrap();
        let b = one(r#"{"severity":9.5,"title":"t"}"#).unwrap();
        assert_eq!(a.severity(), v1::Severity::Critical);
        assert_eq!(a.source, "generic");
        assert!(a.source_ref.starts_with("sha256:"));
        assert_eq!(
            a.source_ref, b.source_ref,
            "key order must not change the hash"
        );
        let c = one(r#"{"title":"t2","severity":9.5}"#).unwrap();
        assert_ne!(a.source_ref, c.source_ref);
    }

    #[test]
    fn rejects_bad_fields_with_the_line_number() {
        let body =
            "{\"title\":\"a\",\"severity\":\"low\"}\n\n{\"title\":\"b\",\"severity\":\"bad\"}\n";
        match parse_generic_body(body.as_bytes(), 10) {
            Err(BodyError::Invalid(NormalizeError::Field {
                line: 3,
                field: "severity",
                ..
            })) => {}
            other => panic!("unexpected {other:?}"),
        }
        let body = "{\"title\":\"a\",\"severity\":\"low\"}\n{not json\n";
        match parse_generic_body(body.as_bytes(), 10) {
            Err(BodyError::Invalid(NormalizeError::Malformed { line: 2, .. })) => {}
            other => panic!("unexpected {other:?}"),
        }
        for (body, field) in [
            (r#"{"severity":"low"}"#, "title"),
            (r#"{"title":"t"}"#, "severity"),
            (r#"{"title":"t","severity":11}"#, "severity"),
            (
                r#"{"title":"t","severity":"low","occurred_at":"yesterday"}"#,
                "occurred_at",
            ),
            (
                r#"{"title":"t","severity":"low","observables":[{"type":"car","value":"x"}]}"#,
                "observables",
            ),
            (r#"{"title":"t","severity":"low","source":"a b"}"#, "source"),
            (r#"{"title":"t","severity":"low","tags":"x"}"#, "tags"),
        ] {
            match one(body) {
                Err(BodyError::Invalid(NormalizeError::Field { field: f, .. })) => {
                    assert_eq!(f, field, "{body}")
                }
                other => panic!("{body}: unexpected {other:?}"),
            }
        }
        assert_eq!(
            parse_generic_body(b"  \n", 10),
            Err(BodyError::Invalid(NormalizeError::Empty))
        );
        assert!(matches!(
            parse_generic_body(b"[1]", 10),
            Err(BodyError::Invalid(NormalizeError::Malformed {
                line: 1,
                ..
            }))
        ));
    }

    #[test]
    fn arrays_and_batch_limits() {
        let body = r#"[{"title":"a","severity":1},{"title":"b","severity":2}]"#;
        assert_eq!(parse_generic_body(body.as_bytes(), 10).unwrap().len(), 2);
        assert_eq!(
            parse_generic_body(body.as_bytes(), 1),
            Err(BodyError::TooMany { count: 2, max: 1 })
        );
    }
}
