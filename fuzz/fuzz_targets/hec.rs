//! The Splunk HEC body parser and its mapping (`/services/collector/event` after
//! authentication): concatenated event envelopes, each routed to a built-in format by its
//! sourcetype or mapped generically. Must not panic; accepted bodies yield at most
//! `MAX_BATCH` alerts, each keeping the alert invariants. Seeds: fuzz/seeds/hec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin_fuzz::{Observables, check_alert};
use tocsin_ingest::hec_body_alerts;

const MAX_BATCH: usize = 64;
/// 2026-12-04T00:00:00Z, the stand-in for an absent `time`.
const NOW_MS: i64 = 1_796_342_400_000;

fuzz_target!(|body: &[u8]| {
    match hec_body_alerts(body, MAX_BATCH, NOW_MS) {
        Ok(alerts) => {
            assert!(alerts.len() <= MAX_BATCH);
            for alert in &alerts {
                check_alert(alert, Observables::Canonical);
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
