//! Pins the vendor alert formats: every sample under `tests/fixtures/<source>/` normalizes
//! (with its folder as the source) to `tests/golden/<source>/<file>.json`, and nothing
//! `normalize` is given makes it panic.
//!
//! Regenerate the goldens with
//! `TOCSIN_UPDATE_GOLDEN=1 cargo test -p tocsin-ingest --test formats`, then review the
//! diff against the mapping table in `tests/fixtures/README.md`: the goldens are the spec.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tocsin_ingest::formats::{
    EventError, FormatError, Normalized, SkipReason, canonical_source, normalize, sources,
};
use tocsin_proto::types::{OBSERVABLE_TYPES, Severity};
use tocsin_proto::v1;

const MAX_BATCH: usize = 1_000;

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Every sample: (source folder, file name, bytes), sorted; read once.
fn samples() -> &'static [(String, String, Vec<u8>)] {
    static SAMPLES: std::sync::OnceLock<Vec<(String, String, Vec<u8>)>> =
        std::sync::OnceLock::new();
    SAMPLES.get_or_init(read_samples)
}

fn read_samples() -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    let fixtures = tests_dir().join("fixtures");
    for source in sources() {
        let dir = fixtures.join(source);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("{dir:?}: {e}")).path();
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            out.push((source.to_string(), name, body));
        }
    }
    out.sort();
    assert!(
        out.len() >= 32,
        "expected every sample file, found {}",
        out.len()
    );
    out
}

fn normalize_sample(source: &str, name: &str, body: &[u8]) -> Normalized {
    normalize(source, body, MAX_BATCH).unwrap_or_else(|e| panic!("{source}/{name}: {e:?}"))
}

fn alert_json(alert: &v1::Alert) -> Value {
    let severity = Severity::try_from(alert.severity()).map_or("unspecified", Severity::as_str);
    let occurred_at =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(alert.occurred_at_ms) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok());
    let observables: Vec<Value> = alert
        .observables
        .iter()
        .map(|o| json!({"type": o.r#type, "value": o.value}))
        .collect();
    json!({
        "source": alert.source,
        "source_ref": alert.source_ref,
        "title": alert.title,
        "severity": severity,
        "occurred_at_ms": alert.occurred_at_ms,
        "occurred_at": occurred_at,
        "description": alert.description,
        "observables": observables,
        "tags": alert.tags,
        "raw": serde_json::from_str::<Value>(&alert.raw_json)
            .unwrap_or_else(|e| panic!("raw_json of {}: {e}", alert.source_ref)),
    })
}

fn golden_json(normalized: &Normalized) -> Value {
    let alerts: Vec<Value> = normalized.alerts.iter().map(alert_json).collect();
    json!({"alerts": alerts, "skipped": normalized.skipped})
}

#[test]
fn every_sample_matches_its_golden_file() {
    let update = std::env::var("TOCSIN_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut mismatched = Vec::new();
    for (source, name, body) in samples() {
        let text =
            serde_json::to_string_pretty(&golden_json(&normalize_sample(source, name, body)))
                .unwrap()
                + "\n";
        let path = tests_dir()
            .join("golden")
            .join(source)
            .join(format!("{name}.json"));
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            mismatched.push(format!("{source}/{name}"));
        }
    }
    assert!(
        mismatched.is_empty(),
        "differs from its golden file (TOCSIN_UPDATE_GOLDEN=1 regenerates; review the diff): {mismatched:?}"
    );
}

#[test]
fn every_sample_yields_well_formed_alerts_with_stable_refs() {
    for (source, name, body) in samples() {
        let first = normalize_sample(source, name, body);
        assert!(!first.alerts.is_empty(), "{source}/{name}: no alert");
        assert_eq!(
            first,
            normalize_sample(source, name, body),
            "{source}/{name}: not stable"
        );
        for alert in &first.alerts {
            assert_eq!(&alert.source, source);
            assert!(
                !alert.title.is_empty() && !alert.source_ref.is_empty(),
                "{source}/{name}"
            );
            assert_ne!(
                alert.severity(),
                v1::Severity::Unspecified,
                "{source}/{name}"
            );
            assert!(alert.occurred_at_ms > 0, "{source}/{name}: no timestamp");
            assert!(alert.id.is_empty() && alert.tenant.is_empty() && alert.receipt_id.is_empty());
            assert!(
                serde_json::from_str::<Value>(&alert.raw_json)
                    .unwrap()
                    .is_object()
            );
            for o in &alert.observables {
                assert!(OBSERVABLE_TYPES.contains(&o.r#type.as_str()), "{o:?}");
            }
        }
        let mut refs: Vec<&str> = first.alerts.iter().map(|a| a.source_ref.as_str()).collect();
        refs.sort_unstable();
        refs.dedup();
        if source != "wazuh" {
            assert_eq!(
                refs.len(),
                first.alerts.len(),
                "{source}/{name}: refs collide"
            );
        }
    }
}

fn sample(source: &str, prefix: &str) -> Vec<u8> {
    samples()
        .iter()
        .find(|(s, n, _)| s == source && n.starts_with(prefix))
        .map(|(_, _, body)| body.clone())
        .unwrap_or_else(|| panic!("no sample {source}/{prefix}*"))
}

#[test]
fn suricata_keeps_its_68_alerts_and_skips_the_other_records() {
    let out = normalize("suricata", &sample("suricata-eve", "eve_"), MAX_BATCH).unwrap();
    assert_eq!(out.alerts.len(), 68);
    assert_eq!(out.alerts.len() + out.skipped.len(), 266);
    for skipped in &out.skipped {
        match &skipped.reason {
            SkipReason::NotAnAlert { event_type } => assert!(
                ["http", "fileinfo", "dns", "flow", "stats"].contains(&event_type.as_str()),
                "{event_type}"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
    // 68 alerts are within a batch of 100 even though the body has 266 records.
    assert!(normalize("suricata-eve", &sample("suricata-eve", "eve_"), 100).is_ok());
}

#[test]
fn wazuh_duplicate_lines_share_a_source_ref() {
    let out = normalize("wazuh", &sample("wazuh", "logstash-capture"), MAX_BATCH).unwrap();
    assert_eq!(out.alerts.len(), 6);
    assert_eq!(out.alerts[0].source_ref, out.alerts[1].source_ref);
    assert_eq!(out.alerts[0], out.alerts[1]);
    assert_ne!(out.alerts[2].source_ref, out.alerts[5].source_ref);
}

#[test]
fn crlf_replacement_characters_and_stray_tabs_parse() {
    let secops = sample("google-secops", "chronicle");
    assert!(secops.windows(2).any(|w| w == b"\r\n"));
    assert_eq!(
        normalize("chronicle", &secops, MAX_BATCH)
            .unwrap()
            .alerts
            .len(),
        2
    );
    let graph = sample("microsoft-defender", "graph-security");
    let alert = &normalize("defender", &graph, MAX_BATCH).unwrap().alerts[0];
    let raw: Value = serde_json::from_str(&alert.raw_json).unwrap();
    assert!(
        raw["recommendedActions"]
            .as_str()
            .unwrap()
            .contains('\u{FFFD}')
    );
    assert_eq!(raw["systemTags"], json!(["Defender Experts"]));
    let threats = sample("sentinelone", "mgmt-api");
    assert_eq!(
        normalize("s1", &threats, MAX_BATCH).unwrap().alerts.len(),
        4
    );
}

#[test]
fn envelopes_unwrap_to_the_same_alerts() {
    let finding: Value = serde_json::from_slice(&sample("aws-guardduty", "finding_ec2")).unwrap();
    let event = json!({"version": "0", "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty", "detail": finding});
    let bare = normalize("guardduty", finding.to_string().as_bytes(), 10).unwrap();
    let wrapped = normalize("guardduty", event.to_string().as_bytes(), 10).unwrap();
    assert_eq!(bare, wrapped);

    let asff: Value = serde_json::from_slice(&sample("aws-securityhub-asff", "asff_cis")).unwrap();
    let imported = json!({"detail-type": "Security Hub Findings - Imported",
        "detail": {"findings": [asff.clone(), asff.clone()]}});
    let batch = json!({"Findings": [asff.clone()]});
    let one = normalize("asff", asff.to_string().as_bytes(), 10).unwrap();
    assert_eq!(
        normalize("asff", batch.to_string().as_bytes(), 10).unwrap(),
        one
    );
    let two = normalize("asff", imported.to_string().as_bytes(), 10).unwrap();
    assert_eq!(two.alerts.len(), 2);
    assert_eq!(two.alerts[0], one.alerts[0]);

    // NDJSON of envelopes, and a Splunk body with several result rows.
    let ndjson = format!("{event}\n{event}\n");
    assert_eq!(
        normalize("guardduty", ndjson.as_bytes(), 10)
            .unwrap()
            .alerts
            .len(),
        2
    );
    let splunk: Value =
        serde_json::from_slice(&sample("splunk", "webhook-alert-action_search")).unwrap();
    let mut rows = splunk.clone();
    let row = rows["result"].take();
    rows.as_object_mut().unwrap().remove("result");
    rows["results"] = json!([row, {"host": "other", "_time": "1483557273"}]);
    let split = normalize("splunk", rows.to_string().as_bytes(), 10).unwrap();
    let single = normalize("splunk", splunk.to_string().as_bytes(), 10).unwrap();
    assert_eq!(split.alerts.len(), 2);
    assert_eq!(split.alerts[0].source_ref, single.alerts[0].source_ref);
    assert_ne!(split.alerts[0].source_ref, split.alerts[1].source_ref);
}

#[test]
fn errors_are_typed() {
    assert_eq!(
        normalize("nope", b"{}", 10),
        Err(FormatError::UnknownSource {
            name: "nope".to_owned()
        })
    );
    assert_eq!(normalize("falco", b"  \n", 10), Err(FormatError::Empty));
    assert!(matches!(
        normalize("falco", b"{\"rule\":\"a\"}\n{\"rule\":\n", 10),
        Err(FormatError::Malformed { line: 3, .. })
    ));
    assert_eq!(
        normalize("falco", b"{\"rule\":\"a\"}\n[1]", 10),
        Err(FormatError::InvalidEvent {
            index: 2,
            reason: EventError::NotAnObject
        })
    );
    assert_eq!(
        normalize("wazuh", b"{\"_source\":{}}", 10),
        Err(FormatError::InvalidEvent {
            index: 1,
            reason: EventError::Missing {
                field: "rule/description"
            }
        })
    );
    assert_eq!(
        normalize("phishing", b"hello world", 10),
        Err(FormatError::InvalidEvent {
            index: 1,
            reason: EventError::NotAMessage
        })
    );
    assert_eq!(
        normalize("falco", &sample("falco", "k8saudit_ovh"), 3),
        Err(FormatError::TooMany { count: 4, max: 3 })
    );
    assert_eq!(canonical_source("SURICATA"), Some("suricata-eve"));
}

/// JSON whose keys are often ones the formats look for, so mapping code is reached.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => prop::sample::select(vec![
            "event_type", "alert", "signature", "severity", "_source", "rule", "description",
            "level", "detail", "findings", "Findings", "Title", "Id", "resources", "event",
            "metadata", "eventType", "DetectName", "output_fields", "priority", "time",
            "detections", "detection", "ruleName", "value", "evidence", "properties",
            "alertDisplayName", "incidentId", "alerts", "entities", "status_code", "data",
            "events", "displayMessage", "outcome", "threatInfo", "result", "results",
            "search_name", "id", "title", "type", "headers", "mail", "timestamp", "src_ip",
            "http", "url", "hostname", "uuid", "responses", "200", "body", "hits",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "alert",
            "1.2.3.4",
            "::1",
            "N/A",
            "2024-02-30T25:00:00Z",
            "1483557272",
            "http://x",
            "a@b.co",
            "ALERT",
            "PASS",
            "high",
            "DetectionSummaryEvent",
            "",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
        for source in sources() {
            let _ = normalize(source, &body, MAX_BATCH);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_json(value in json_value()) {
        let body = value.to_string();
        for source in sources() {
            let _ = normalize(source, body.as_bytes(), MAX_BATCH);
        }
    }

    #[test]
    fn never_panics_on_cut_or_altered_samples(index in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let all = samples();
        let (source, _, body) = &all[index.index(all.len())];
        let at = cut.index(body.len().max(1));
        let _ = normalize(source, &body[..at.min(body.len())], MAX_BATCH);
        let mut altered = body.clone();
        if let Some(b) = altered.get_mut(at) {
            *b = byte;
        }
        let _ = normalize(source, &altered, MAX_BATCH);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    for source in sources() {
        assert!(normalize(source, deep.as_bytes(), MAX_BATCH).is_err());
    }
    let nested = format!(
        "{}{}",
        "{\"a\":".repeat(120),
        "1".to_owned() + &"}".repeat(120)
    );
    for source in sources() {
        let _ = normalize(source, nested.as_bytes(), MAX_BATCH);
    }
}
