//! Invariants the fuzz targets check on every alert a normalizer, the HEC parser or a custom
//! mapping produces (see docs/fuzzing.md). A violated invariant panics, which libFuzzer
//! reports as a crash with the input that caused it.

use std::collections::HashSet;
use std::net::IpAddr;

use tocsin_proto::types::OBSERVABLE_TYPES;
use tocsin_proto::v1;

/// Limits of the built-in formats, the generic format and custom mappings.
const MAX_TITLE_CHARS: usize = 1_000;
const MAX_DESCRIPTION_CHARS: usize = 64 * 1024;
const MAX_SOURCE_REF_BYTES: usize = 512;
const MAX_SOURCE_BYTES: usize = 64;

/// How strictly observables were validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observables {
    /// Built-in formats (and HEC): canonical, validated (IPs parse, are not unspecified),
    /// de-duplicated.
    Canonical,
    /// The generic format: a known type and a 1-4096 byte value, de-duplicated.
    Typed,
    /// Custom mappings: a known type (checked when the mapping is saved) and a trimmed
    /// 1-4096 byte value; duplicates allowed.
    Mapped,
}

/// Whether `source` is a name an alert may carry: 1-64 of a-z, 0-9, `-`, `_`, `.`.
pub fn is_valid_source(source: &str) -> bool {
    !source.is_empty()
        && source.len() <= MAX_SOURCE_BYTES
        && source.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// Panics when `alert` breaks an invariant every intake path promises.
pub fn check_alert(alert: &v1::Alert, observables: Observables) {
    assert!(is_valid_source(&alert.source), "source {:?}", alert.source);
    assert!(!alert.title.trim().is_empty(), "empty title: {alert:?}");
    assert!(
        alert.title.chars().count() <= MAX_TITLE_CHARS,
        "title of {} chars",
        alert.title.chars().count()
    );
    assert!(
        alert.description.chars().count() <= MAX_DESCRIPTION_CHARS,
        "description of {} chars",
        alert.description.chars().count()
    );
    assert!(
        !alert.source_ref.is_empty() && alert.source_ref.len() <= MAX_SOURCE_REF_BYTES,
        "source_ref {:?}",
        alert.source_ref
    );
    let severity = v1::Severity::try_from(alert.severity);
    assert!(
        matches!(severity, Ok(s) if s != v1::Severity::Unspecified),
        "severity {}",
        alert.severity
    );
    // raw_json is stored as JSON and read back by playbooks.
    let raw: Result<serde_json::Value, _> = serde_json::from_str(&alert.raw_json);
    assert!(raw.is_ok(), "raw_json is not JSON: {:?}", alert.raw_json);
    assert!(
        alert.id.is_empty() && alert.tenant.is_empty() && alert.receipt_id.is_empty(),
        "ids and tenant are the caller's"
    );
    let mut seen = HashSet::new();
    for o in &alert.observables {
        assert!(
            OBSERVABLE_TYPES.contains(&o.r#type.as_str()),
            "observable type {:?}",
            o.r#type
        );
        assert!(
            !o.value.is_empty() && o.value.len() <= 4096 && o.value.trim() == o.value,
            "observable value {:?}",
            o.value
        );
        if observables != Observables::Mapped {
            assert!(
                seen.insert((&o.r#type, &o.value)),
                "duplicate observable {o:?}"
            );
        }
        if observables == Observables::Canonical && o.r#type == "ip" {
            let ip = o.value.parse::<IpAddr>();
            assert!(
                matches!(ip, Ok(ip) if !ip.is_unspecified() && ip.to_string() == o.value),
                "ip observable {:?} is not a canonical address",
                o.value
            );
        }
    }
}
