//! Standard Webhooks verification (`signature::parse_headers` + `verify`, what
//! `/v1/webhooks/{source}` runs for a tenant with signing on). Never panics, and:
//!
//! 1. arbitrary headers, keys and clock: whatever `verify` accepts is fresh (within the
//!    tolerance of now) and carries a signature that `sign` produces with one of the keys
//!    over exactly that id, timestamp and body;
//! 2. round trip: what `sign` produces with a key verifies with that key (among others)
//!    within the tolerance, and is stale beyond it;
//! 3. a changed body byte, key byte, timestamp or id is refused as invalid.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tocsin_ingest::signature::{SignatureError, Signed, parse_headers, sign, verify};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Raw header values (each may be absent or not a valid header value).
    raw_id: Option<&'a [u8]>,
    raw_timestamp: Option<&'a [u8]>,
    raw_signature: Option<&'a [u8]>,
    /// The clock and tolerance for the arbitrary headers.
    now: i64,
    tolerance: i64,
    /// The signing key, other keys of the tenant (rotation), and the message.
    key: &'a [u8],
    other_keys: Vec<&'a [u8]>,
    id: &'a str,
    timestamp: i64,
    body: &'a [u8],
    /// Where the receiver's clock is, relative to the timestamp.
    skew: i32,
    tolerance_secs: u16,
    /// Which byte to change, and how (xor; 0 is taken as 1).
    flip_at: usize,
    flip: u8,
}

fn decode(signature: &str) -> Vec<u8> {
    let b64 = signature.strip_prefix("v1,").unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn headers(pairs: &[(&'static str, Option<&[u8]>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            map.insert(*name, value);
        }
    }
    map
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn flipped(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        let i = at % out.len();
        out[i] ^= mask.max(1);
    }
    out
}

fuzz_target!(|input: Input<'_>| {
    let mut keys: Vec<Vec<u8>> = input.other_keys.iter().map(|k| k.to_vec()).collect();
    keys.push(input.key.to_vec());

    // 1. Arbitrary headers, and arbitrary parsed headers: only real signatures pass.
    let arbitrary_headers = headers(&[
        ("webhook-id", input.raw_id),
        ("webhook-timestamp", input.raw_timestamp),
        ("webhook-signature", input.raw_signature),
    ]);
    let mut candidates = Vec::new();
    if let Ok(Some(signed)) = parse_headers(&arbitrary_headers) {
        assert!(valid_id(&signed.id) && !signed.signatures.is_empty());
        candidates.push(signed);
    }
    candidates.push(Signed {
        id: input.id.to_owned(),
        timestamp: input.timestamp,
        signatures: vec![input.body.to_vec(), input.key.to_vec()],
    });
    for signed in &candidates {
        if verify(signed, input.body, &keys, input.now, input.tolerance).is_ok() {
            let distance = i128::from(input.now) - i128::from(signed.timestamp);
            assert!(
                distance.abs() <= i128::from(input.tolerance),
                "accepted a stale message"
            );
            let mut produced = keys
                .iter()
                .map(|k| decode(&sign(k, &signed.id, signed.timestamp, input.body)));
            assert!(
                produced.any(|s| signed.signatures.contains(&s)),
                "accepted a signature no key produced: {signed:?}"
            );
        }
    }

    // 2. Round trip through the headers a sender sets.
    if !valid_id(input.id) {
        return;
    }
    let signature = sign(input.key, input.id, input.timestamp, input.body);
    let header = format!("v1,bm90IGl0 v2,xyz {signature}");
    let timestamp = input.timestamp.to_string();
    let signed = parse_headers(&headers(&[
        ("webhook-id", Some(input.id.as_bytes())),
        ("webhook-timestamp", Some(timestamp.as_bytes())),
        ("webhook-signature", Some(header.as_bytes())),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(
        (signed.id.as_str(), signed.timestamp),
        (input.id, input.timestamp)
    );
    let tolerance = i64::from(input.tolerance_secs);
    let ts = input.timestamp;
    assert_eq!(verify(&signed, input.body, &keys, ts, tolerance), Ok(()));
    if let Some(now) = ts.checked_add(i64::from(input.skew)) {
        let expected = if i64::from(input.skew).abs() <= tolerance {
            Ok(())
        } else {
            Err(SignatureError::Stale {
                tolerance_secs: tolerance,
            })
        };
        assert_eq!(verify(&signed, input.body, &keys, now, tolerance), expected);
    }

    // 3. Any change is refused (only the signing key is offered).
    let key = std::slice::from_ref(&keys[keys.len() - 1]);
    let invalid = Err(SignatureError::Invalid);
    if !input.body.is_empty() {
        let body = flipped(input.body, input.flip_at, input.flip);
        assert_eq!(verify(&signed, &body, key, ts, tolerance), invalid);
    }
    if !input.key.is_empty() {
        let other = [flipped(input.key, input.flip_at, input.flip)];
        assert_eq!(verify(&signed, input.body, &other, ts, tolerance), invalid);
    }
    if let Some(later) = ts.checked_add(1) {
        let moved = Signed {
            timestamp: later,
            ..signed.clone()
        };
        assert_eq!(verify(&moved, input.body, key, later, tolerance), invalid);
    }
    let renamed = Signed {
        id: format!("{}x", signed.id),
        ..signed.clone()
    };
    assert_eq!(verify(&renamed, input.body, key, ts, tolerance), invalid);
});
