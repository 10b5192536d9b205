//! Custom field mappings: for a source without a built-in normalizer, a tenant declares
//! (`PUT /v1/mappings/{source}`) where each alert field is in its events:
//!
//! ```json
//! {
//!   "title":       "$.rule.name",
//!   "severity":    {"path": "$.level", "map": {"1": "low", "3": "high"}, "default": "medium"},
//!   "source_ref":  "$.id",
//!   "occurred_at": "$.ts",
//!   "description": {"path": "$.message", "default": ""},
//!   "observables": [{"type": "ip", "path": "$.src.ip"}, {"type": "user", "path": "$.users"}],
//!   "tags":        ["$.category", {"value": "custom"}]
//! }
//! ```
//!
//! A field is a path (`$.a.b[0]["odd key"]`), `{"path", "default"}` or a constant
//! `{"value"}`. `title` and `severity` are required. Severity values go through `map` when
//! given (keys compared as text, then case-insensitively; values it does not list take
//! `default`), else they must be a severity name or a 0-10 score. `occurred_at` takes RFC 3339 text or epoch seconds (or milliseconds, past
//! 1e11). An observable path may reach one string or an array of strings. Without
//! `source_ref`, a hash of the event is used, so a retried post deduplicates. The whole event
//! is kept as `raw`. Validation reports every problem at once.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tocsin_core::cache::TtlCache;
use tocsin_proto::types::{OBSERVABLE_TYPES, Severity};
use tocsin_proto::v1;

const MAX_TITLE: usize = 1_000;
const MAX_DESCRIPTION: usize = 64 * 1024;
const MAX_SOURCE_REF: usize = 512;
const MAX_OBSERVABLE_SPECS: usize = 50;
const MAX_TAG_SPECS: usize = 20;
const MAX_VALUES_PER_PATH: usize = 100;
const MAX_PATH_SEGMENTS: usize = 32;

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A parsed `$...` path.
#[derive(Debug, Clone, PartialEq)]
struct Path(Vec<Segment>);

impl Path {
    fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix('$')
            .ok_or_else(|| format!("path {text:?} must start with $"))?;
        let bytes = rest.as_bytes();
        let mut segments = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < bytes.len() && bytes[end] != b'.' && bytes[end] != b'[' {
                        end += 1;
                    }
                    if end == start {
                        return Err(format!("path {text:?} has an empty name"));
                    }
                    segments.push(Segment::Key(rest[start..end].to_owned()));
                    i = end;
                }
                b'[' => {
                    let close = rest[i..]
                        .find(']')
                        .map(|n| i + n)
                        .ok_or_else(|| format!("path {text:?} has an unclosed ["))?;
                    let inner = &rest[i + 1..close];
                    if let Some(quoted) = inner.strip_prefix('"').and_then(|q| q.strip_suffix('"'))
                    {
                        segments.push(Segment::Key(quoted.to_owned()));
                    } else {
                        let index = inner
                            .parse::<usize>()
                            .map_err(|_| format!("path {text:?}: [{inner}] is not an index"))?;
                        segments.push(Segment::Index(index));
                    }
                    i = close + 1;
                }
                _ => return Err(format!("path {text:?}: expected . or [ at {}", i + 1)),
            }
        }
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(format!("path {text:?} is deeper than {MAX_PATH_SEGMENTS}"));
        }
        Ok(Self(segments))
    }

    fn get<'a>(&self, mut value: &'a Value) -> Option<&'a Value> {
        for segment in &self.0 {
            value = match (segment, value) {
                (Segment::Key(k), Value::Object(map)) => map.get(k)?,
                (Segment::Index(n), Value::Array(items)) => items.get(*n)?,
                _ => return None,
            };
        }
        (!value.is_null()).then_some(value)
    }
}

/// Where one field comes from.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Path { path: Path, default: Option<Value> },
    Constant(Value),
}

impl Field {
    fn parse(name: &str, spec: &Value, problems: &mut Vec<String>) -> Option<Self> {
        match spec {
            Value::String(p) => match Path::parse(p) {
                Ok(path) => Some(Field::Path {
                    path,
                    default: None,
                }),
                Err(e) => {
                    problems.push(format!("{name}: {e}"));
                    None
                }
            },
            Value::Object(o) => {
                if let Some(unknown) = o
                    .keys()
                    .find(|k| !["path", "default", "value", "map"].contains(&k.as_str()))
                {
                    problems.push(format!("{name}: unknown key {unknown:?}"));
                }
                match (o.get("path"), o.get("value")) {
                    (Some(Value::String(p)), None) => match Path::parse(p) {
                        Ok(path) => Some(Field::Path {
                            path,
                            default: o.get("default").cloned(),
                        }),
                        Err(e) => {
                            problems.push(format!("{name}: {e}"));
                            None
                        }
                    },
                    (None, Some(v)) if !v.is_null() => Some(Field::Constant(v.clone())),
                    _ => {
                        problems.push(format!(
                            "{name}: give a path (\"$.a.b\" or {{\"path\"}}) or a constant {{\"value\"}}"
                        ));
                        None
                    }
                }
            }
            _ => {
                problems.push(format!("{name}: must be a path string or an object"));
                None
            }
        }
    }

    fn resolve<'a>(&'a self, event: &'a Value) -> Option<&'a Value> {
        match self {
            Field::Path { path, default } => path.get(event).or(default.as_ref()),
            Field::Constant(v) => Some(v),
        }
    }
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A validated mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    title: Field,
    severity: Field,
    severity_map: BTreeMap<String, Severity>,
    source_ref: Option<Field>,
    occurred_at: Option<Field>,
    description: Option<Field>,
    observables: Vec<(String, Field)>,
    tags: Vec<Field>,
}

const KEYS: [&str; 7] = [
    "title",
    "severity",
    "source_ref",
    "occurred_at",
    "description",
    "observables",
    "tags",
];

impl Mapping {
    /// Validates a mapping document; every problem is reported.
    pub fn parse(doc: &Value) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let Value::Object(o) = doc else {
            return Err(vec!["a mapping is a JSON object".to_owned()]);
        };
        for key in o.keys().filter(|k| !KEYS.contains(&k.as_str())) {
            problems.push(format!(
                "unknown field {key:?} (fields: {})",
                KEYS.join(", ")
            ));
        }
        let required = |name: &str, problems: &mut Vec<String>| match o.get(name) {
            Some(spec) => Field::parse(name, spec, problems),
            None => {
                problems.push(format!("{name} is required"));
                None
            }
        };
        let title = required("title", &mut problems);
        let severity = required("severity", &mut problems);
        let mut severity_map = BTreeMap::new();
        if let Some(Value::Object(spec)) = o.get("severity") {
            match spec.get("map") {
                None => {}
                Some(Value::Object(map)) => {
                    for (k, v) in map {
                        match v.as_str().map(str::parse::<Severity>) {
                            Some(Ok(s)) => {
                                severity_map.insert(k.clone(), s);
                            }
                            _ => problems.push(format!(
                                "severity.map[{k:?}]: must be info, low, medium, high or critical"
                            )),
                        }
                    }
                }
                Some(_) => problems.push("severity.map must be an object".to_owned()),
            }
            if let Some(default) = spec.get("default")
                && default
                    .as_str()
                    .is_none_or(|d| d.parse::<Severity>().is_err())
            {
                problems.push(
                    "severity.default must be info, low, medium, high or critical".to_owned(),
                );
            }
        }
        let optional = |name: &str, problems: &mut Vec<String>| {
            o.get(name)
                .and_then(|spec| Field::parse(name, spec, problems))
        };
        let source_ref = optional("source_ref", &mut problems);
        let occurred_at = optional("occurred_at", &mut problems);
        let description = optional("description", &mut problems);
        let mut observables = Vec::new();
        match o.get("observables") {
            None => {}
            Some(Value::Array(items)) if items.len() <= MAX_OBSERVABLE_SPECS => {
                for (i, item) in items.iter().enumerate() {
                    let name = format!("observables[{i}]");
                    let kind = item.get("type").and_then(Value::as_str);
                    match kind {
                        Some(k) if OBSERVABLE_TYPES.contains(&k) => {}
                        _ => problems.push(format!(
                            "{name}.type must be one of {}",
                            OBSERVABLE_TYPES.join(", ")
                        )),
                    }
                    let spec = match item {
                        Value::Object(m) => {
                            let mut m = m.clone();
                            m.remove("type");
                            Value::Object(m)
                        }
                        other => other.clone(),
                    };
                    if let (Some(kind), Some(field)) = (kind, Field::parse(&name, &spec, &mut problems)) {
                        observables.push((kind.to_owned(), field));
                    }
                }
            }
            Some(_) => problems.push(format!(
                "observables must be an array of at most {MAX_OBSERVABLE_SPECS} {{\"type\", \"path\"}}"
            )),
        }
        let mut tags = Vec::new();
        match o.get("tags") {
            None => {}
            Some(Value::Array(items)) if items.len() <= MAX_TAG_SPECS => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(field) = Field::parse(&format!("tags[{i}]"), item, &mut problems) {
                        tags.push(field);
                    }
                }
            }
            Some(_) => problems.push(format!("tags must be an array of at most {MAX_TAG_SPECS}")),
        }
        match (title, severity, problems.is_empty()) {
            (Some(title), Some(severity), true) => Ok(Self {
                title,
                severity,
                severity_map,
                source_ref,
                occurred_at,
                description,
                observables,
                tags,
            }),
            _ => Err(problems),
        }
    }

    fn severity_of(&self, event: &Value) -> Result<Severity, String> {
        let value = self
            .severity
            .resolve(event)
            .ok_or("severity: not found and no default")?;
        if !self.severity_map.is_empty() {
            let text = as_text(value).unwrap_or_default();
            if let Some(s) = self.severity_map.get(&text).or_else(|| {
                self.severity_map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&text))
                    .map(|(_, s)| s)
            }) {
                return Ok(*s);
            }
        }
        if !self.severity_map.is_empty()
            && let Some(default) = self.severity_default()
        {
            // A table defines the source's scale: what it does not list takes the default.
            return Ok(default);
        }
        let parsed = match value {
            Value::String(s) => s.parse::<Severity>().ok(),
            Value::Number(n) => n.as_f64().and_then(Severity::from_score),
            _ => None,
        };
        if let Some(s) = parsed {
            return Ok(s);
        }
        self.severity_default()
            .ok_or_else(|| format!("severity: {value} is not mapped and not a severity"))
    }

    fn severity_default(&self) -> Option<Severity> {
        match &self.severity {
            Field::Path {
                default: Some(Value::String(d)),
                ..
            } => d.parse::<Severity>().ok(),
            _ => None,
        }
    }

    /// The alert an event maps to (tenant, ids and receipt left for ingest to stamp).
    pub fn apply(&self, source: &str, label: &str, event: &Value) -> Result<v1::Alert, String> {
        let title = self
            .title
            .resolve(event)
            .and_then(as_text)
            .map(|t| t.trim().chars().take(MAX_TITLE).collect::<String>())
            .filter(|t| !t.is_empty())
            .ok_or("title: not found (and no default)")?;
        let severity = self.severity_of(event)?;
        let source_ref = match &self.source_ref {
            Some(field) => field
                .resolve(event)
                .and_then(as_text)
                .filter(|r| !r.is_empty() && r.len() <= MAX_SOURCE_REF)
                .ok_or("source_ref: not found, empty, or longer than 512 bytes")?,
            None => hex::encode(Sha256::digest(event.to_string())),
        };
        let occurred_at_ms = match self.occurred_at.as_ref().and_then(|f| f.resolve(event)) {
            None => 0,
            Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
                .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
                .map_err(|_| format!("occurred_at: {s:?} is not RFC 3339"))?,
            Some(Value::Number(n)) => {
                let n = n.as_f64().ok_or("occurred_at: not a number")?;
                #[allow(clippy::cast_possible_truncation)]
                let ms = if n > 1e11 { n } else { n * 1000.0 } as i64;
                ms
            }
            Some(_) => return Err("occurred_at: must be RFC 3339 text or epoch seconds".to_owned()),
        };
        let description = self
            .description
            .as_ref()
            .and_then(|f| f.resolve(event))
            .and_then(as_text)
            .map(|d| d.chars().take(MAX_DESCRIPTION).collect())
            .unwrap_or_default();
        let mut observables = Vec::new();
        for (kind, field) in &self.observables {
            let values: Vec<String> = match field.resolve(event) {
                Some(Value::Array(items)) => items.iter().filter_map(as_text).collect(),
                Some(v) => as_text(v).into_iter().collect(),
                None => Vec::new(),
            };
            for value in values.into_iter().take(MAX_VALUES_PER_PATH) {
                let value = value.trim().to_owned();
                if !value.is_empty() && value.len() <= 4096 {
                    observables.push(v1::Observable {
                        r#type: kind.clone(),
                        value,
                    });
                }
            }
        }
        let mut tags = Vec::new();
        for field in &self.tags {
            match field.resolve(event) {
                Some(Value::Array(items)) => tags.extend(items.iter().filter_map(as_text)),
                Some(v) => tags.extend(as_text(v)),
                None => {}
            }
        }
        tags.retain(|t| !t.is_empty() && t.len() <= 256);
        tags.truncate(MAX_VALUES_PER_PATH);
        let mut alert = v1::Alert {
            source: source.to_owned(),
            source_ref,
            title,
            description,
            occurred_at_ms,
            observables,
            tags,
            raw_json: event.to_string(),
            mapping: label.to_owned(),
            ..Default::default()
        };
        alert.set_severity(severity.into());
        Ok(alert)
    }
}

/// Whether a custom mapping may be saved for `source`: a valid source name (1-64 of a-z 0-9
/// `-_.`) that has no built-in format.
pub fn check_source(source: &str) -> Result<(), String> {
    if !crate::generic::is_valid_source(source) {
        return Err("a source name is 1-64 characters of a-z, 0-9, '-', '_' and '.'".to_owned());
    }
    if crate::formats::canonical_source(source).is_some() {
        return Err(format!(
            "{source:?} has a built-in format; choose another source name"
        ));
    }
    Ok(())
}

/// Maps every event of a body (one object, an array, or NDJSON) with `mapping`; the error
/// names the line (or element) at fault.
pub fn map_body(
    mapping: &Mapping,
    source: &str,
    label: &str,
    body: &[u8],
    max_batch: usize,
) -> Result<Vec<v1::Alert>, (Option<usize>, String)> {
    let events = crate::generic::split_body(body).map_err(|e| (e.line(), e.to_string()))?;
    if events.is_empty() {
        return Err((None, "the request holds no event".to_owned()));
    }
    if events.len() > max_batch {
        return Err((
            None,
            format!(
                "{} events in one request; at most {max_batch}",
                events.len()
            ),
        ));
    }
    events
        .into_iter()
        .map(|(line, map)| {
            mapping
                .apply(source, label, &Value::Object(map))
                .map_err(|e| (Some(line), format!("line {line}: {e}")))
        })
        .collect()
}

/// A tenant's mapping for a source, as ingest uses it.
#[derive(Debug)]
pub struct ActiveMapping {
    /// `source@vN`, recorded on each alert.
    pub label: String,
    /// The mapping.
    pub mapping: Mapping,
}

/// The newest mapping per (tenant, source), cached for `ttl` (a miss is cached too).
#[derive(Debug)]
pub(crate) struct MappingCache {
    store: tocsin_store::Store,
    entries: TtlCache<(String, String), Option<std::sync::Arc<ActiveMapping>>>,
}

impl MappingCache {
    pub(crate) fn new(store: tocsin_store::Store, ttl: std::time::Duration) -> Self {
        Self {
            store,
            entries: TtlCache::new(ttl, 10_000),
        }
    }

    /// The tenant's mapping for `source`, or `None`. A saved mapping that no longer
    /// validates (saved by another version) is an error.
    pub(crate) async fn get(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<Option<std::sync::Arc<ActiveMapping>>, String> {
        let key = (tenant.to_owned(), source.to_owned());
        if let Some(found) = self.entries.get(&key) {
            return Ok(found);
        }
        let saved = self
            .store
            .mapping(tenant, source)
            .await
            .map_err(|e| format!("mapping lookup failed: {e}"))?;
        let found = match saved {
            None => None,
            Some(saved) => {
                let mapping = Mapping::parse(&saved.mapping.0).map_err(|problems| {
                    format!(
                        "the saved mapping no longer validates: {}",
                        problems.join("; ")
                    )
                })?;
                Some(std::sync::Arc::new(ActiveMapping {
                    label: format!("{source}@v{}", saved.version),
                    mapping,
                }))
            }
        };
        self.entries.insert(key, found.clone());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mapping_turns_an_event_into_an_alert() {
        let mapping = Mapping::parse(&json!({
            "title": "$.rule.name",
            "severity": {"path": "$.level", "map": {"1": "low", "3": "HIGH", "crit": "critical"}, "default": "medium"},
            "source_ref": "$.id",
            "occurred_at": "$.ts",
            "description": {"path": "$[\"the message\"]", "default": "none"},
            "observables": [{"type": "ip", "path": "$.src.ip"}, {"type": "user", "path": "$.users"}],
            "tags": ["$.category", {"value": "custom"}]
        }))
        .unwrap();
        let event = json!({"rule": {"name": "Beacon"}, "level": 3, "id": "e-1", "ts": 1700000000,
                           "the message": "hello", "src": {"ip": "10.0.0.1"}, "users": ["a", "b"],
                           "category": "c2"});
        let alert = mapping.apply("acme-edr", "acme-edr@v2", &event).unwrap();
        assert_eq!(alert.title, "Beacon");
        assert_eq!(alert.severity(), v1::Severity::High);
        assert_eq!(alert.source_ref, "e-1");
        assert_eq!(alert.occurred_at_ms, 1_700_000_000_000);
        assert_eq!(alert.description, "hello");
        assert_eq!(alert.observables.len(), 3);
        assert_eq!(alert.tags, vec!["c2", "custom"]);
        assert_eq!(alert.mapping, "acme-edr@v2");
        // Unmapped level: the default. Missing title: an error naming it.
        let other = json!({"rule": {"name": "X"}, "level": 9, "id": "e-2"});
        assert_eq!(
            mapping.apply("s", "s@v1", &other).unwrap().severity(),
            v1::Severity::Medium
        );
        assert!(
            mapping
                .apply("s", "s@v1", &json!({"level": 1, "id": "x"}))
                .unwrap_err()
                .contains("title")
        );
    }

    #[test]
    fn every_problem_of_a_mapping_is_reported() {
        let problems = Mapping::parse(&json!({
            "severity": {"path": "level", "map": {"1": "urgent"}},
            "observables": [{"type": "mac", "path": "$.m"}],
            "colour": "$.c"
        }))
        .unwrap_err();
        let text = problems.join("\n");
        for expected in [
            "title is required",
            "must start with $",
            "severity.map",
            "observables[0].type",
            "unknown field \"colour\"",
        ] {
            assert!(text.contains(expected), "{expected} not in {text}");
        }
    }

    #[test]
    fn paths_reach_keys_indexes_and_quoted_names() {
        let p = Path::parse("$.a[1][\"b.c\"].d").unwrap();
        assert_eq!(
            p.get(&json!({"a": [0, {"b.c": {"d": 5}}]})),
            Some(&json!(5))
        );
        assert!(Path::parse("a.b").is_err());
        assert!(Path::parse("$.a[").is_err());
        assert!(Path::parse("$..a").is_err());
    }
}
