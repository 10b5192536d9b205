//! Custom mappings (`PUT /v1/mappings/{source}`, then posts to that source): the first
//! line of the input is the mapping document, the rest the body. Validation
//! (`Mapping::parse`) and application (`map_body`) must not panic; a mapping that
//! validates must still validate after a JSON round trip (it is stored as JSON), and every
//! alert it yields keeps the alert invariants. Seeds: fuzz/seeds/mapping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tocsin_fuzz::{Observables, check_alert};
use tocsin_ingest::mapping::{Mapping, check_source, map_body};

const MAX_BATCH: usize = 64;
const SOURCE: &str = "custom-edr";
const LABEL: &str = "custom-edr@v1";

fuzz_target!(|data: &[u8]| {
    let (doc, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(doc) = serde_json::from_slice::<Value>(doc) else {
        return;
    };
    let mapping = match Mapping::parse(&doc) {
        Ok(mapping) => mapping,
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a reason");
            return;
        }
    };
    let stored: Value = serde_json::from_str(&doc.to_string()).unwrap();
    assert_eq!(Mapping::parse(&stored).as_ref(), Ok(&mapping));
    check_source(SOURCE).unwrap();
    match map_body(&mapping, SOURCE, LABEL, body, MAX_BATCH) {
        Ok(alerts) => {
            assert!(!alerts.is_empty() && alerts.len() <= MAX_BATCH);
            for alert in &alerts {
                assert_eq!(
                    (alert.source.as_str(), alert.mapping.as_str()),
                    (SOURCE, LABEL)
                );
                check_alert(alert, Observables::Mapped);
                assert!(alert.tags.len() <= 100);
                assert!(alert.tags.iter().all(|t| !t.is_empty() && t.len() <= 256));
            }
        }
        Err((line, message)) => {
            assert!(!message.is_empty());
            if let Some(line) = line {
                assert!(line >= 1);
            }
        }
    }
});
