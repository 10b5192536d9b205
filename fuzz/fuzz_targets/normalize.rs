//! Every normalizer on the same arbitrary body: each built-in source's format
//! (`formats::normalize`, what `/v1/webhooks/{source}` runs) and the generic format
//! (`parse_generic_body`, `/v1/alerts`). None may panic; every alert they accept must keep
//! the alert invariants of `tocsin_fuzz::check_alert`. Seeds: ingest/tests/fixtures.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin_fuzz::{Observables, check_alert};
use tocsin_ingest::formats::{self, FormatError};
use tocsin_ingest::parse_generic_body;

/// Small, so the too-many path is reached too.
const MAX_BATCH: usize = 64;

fuzz_target!(|body: &[u8]| {
    for &source in formats::sources() {
        match formats::normalize(source, body, MAX_BATCH) {
            Ok(normalized) => {
                assert!(normalized.alerts.len() <= MAX_BATCH);
                for alert in &normalized.alerts {
                    assert_eq!(alert.source, source);
                    check_alert(alert, Observables::Canonical);
                }
            }
            Err(FormatError::UnknownSource { name }) => panic!("{name} is listed but unknown"),
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
    match parse_generic_body(body, MAX_BATCH) {
        Ok(alerts) => {
            assert!(!alerts.is_empty() && alerts.len() <= MAX_BATCH);
            for alert in &alerts {
                check_alert(alert, Observables::Typed);
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
