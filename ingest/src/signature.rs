//! Signed webhooks, the Standard Webhooks scheme (<https://www.standardwebhooks.com>):
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature` (space-separated
//! `v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`), signed with one of the tenant's
//! `whsec_` secrets (several are kept for rotation). Timestamps more than the tolerance away
//! from now are refused; so is a message id accepted before (see the store's receipts).
//! Comparison is constant-time (`Mac::verify_slice`).

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tocsin_core::cache::TtlCache;
use tocsin_store::Store;
use tocsin_store::secrets::{MasterKey, SecretError};
use tocsin_store::webhooks::WebhookSigning;

/// A request's signature headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: i64,
    /// The decoded `v1` signatures.
    pub signatures: Vec<Vec<u8>>,
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Some but not all of the three headers, or none when the tenant requires them.
    #[error(
        "signed webhooks need webhook-id, webhook-timestamp and webhook-signature (missing {0})"
    )]
    Missing(&'static str),
    /// A header is present but unusable.
    #[error("invalid {0} header")]
    Malformed(&'static str),
    /// The timestamp is too far from now.
    #[error("webhook-timestamp is more than {tolerance_secs} s away from now")]
    Stale {
        /// The tolerance.
        tolerance_secs: i64,
    },
    /// No signature matches any of the tenant's secrets (or it has none).
    #[error("no webhook-signature matches a signing secret of this tenant")]
    Invalid,
}

/// Parses the three headers: `None` when none is present.
pub fn parse_headers(headers: &HeaderMap) -> Result<Option<Signed>, SignatureError> {
    let get = |name: &'static str| {
        headers
            .get(name)
            .map(|v| v.to_str().map_err(|_| SignatureError::Malformed(name)))
    };
    let (id, timestamp, signature) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    );
    if id.is_none() && timestamp.is_none() && signature.is_none() {
        return Ok(None);
    }
    let id = id.ok_or(SignatureError::Missing("webhook-id"))??;
    let timestamp = timestamp.ok_or(SignatureError::Missing("webhook-timestamp"))??;
    let signature = signature.ok_or(SignatureError::Missing("webhook-signature"))??;
    if id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SignatureError::Malformed("webhook-id"));
    }
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed("webhook-timestamp"))?;
    let signatures: Vec<Vec<u8>> = signature
        .split_whitespace()
        .take(16)
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .collect();
    if signatures.is_empty() {
        return Err(SignatureError::Malformed("webhook-signature"));
    }
    Ok(Some(Signed {
        id: id.to_owned(),
        timestamp,
        signatures,
    }))
}

/// Checks the timestamp against `now` and the signatures against `keys`.
pub fn verify(
    signed: &Signed,
    body: &[u8],
    keys: &[Vec<u8>],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    // `abs_diff`: any i64 may arrive in the header, and `now - timestamp` overflows for
    // timestamps near i64::MIN (a panic with overflow checks, a wrapped `i64::MIN` that
    // passed as fresh without them). A negative tolerance accepts nothing.
    let fresh = u64::try_from(tolerance_secs).is_ok_and(|t| now.abs_diff(signed.timestamp) <= t);
    if !fresh {
        return Err(SignatureError::Stale { tolerance_secs });
    }
    for key in keys {
        for signature in &signed.signatures {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                continue;
            };
            mac.update(signed.id.as_bytes());
            mac.update(b".");
            mac.update(signed.timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            if mac.verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Invalid)
}

/// Signs like a Standard Webhooks sender (for tests and tools).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

const MAX_TENANTS: usize = 10_000;

/// Each tenant's signing setting and keys, cached briefly (like ingest keys).
#[derive(Debug)]
pub(crate) struct SigningCache {
    store: Store,
    master: Option<MasterKey>,
    entries: TtlCache<String, Arc<WebhookSigning>>,
}

impl SigningCache {
    pub(crate) fn new(store: Store, master: Option<MasterKey>, ttl: Duration) -> Self {
        Self {
            store,
            master,
            entries: TtlCache::new(ttl, MAX_TENANTS),
        }
    }

    pub(crate) fn has_master_key(&self) -> bool {
        self.master.is_some()
    }

    pub(crate) async fn get(&self, tenant: &str) -> Result<Arc<WebhookSigning>, SecretError> {
        if let Some(signing) = self.entries.get(tenant) {
            return Ok(signing);
        }
        let signing = Arc::new(
            self.store
                .webhook_signing(self.master.as_ref(), tenant)
                .await?,
        );
        self.entries.insert(tenant.to_owned(), signing.clone());
        Ok(signing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn standard_webhooks_reference_vector_verifies() {
        // The example of the Standard Webhooks specification.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let signed = parse_headers(&headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", &format!("v1a,ignored {signature}")),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            verify(
                &signed,
                body,
                std::slice::from_ref(&key),
                1614265330 + 299,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &signed,
                body,
                std::slice::from_ref(&key),
                1614265330 + 301,
                300
            ),
            Err(SignatureError::Stale {
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(&signed, b"{}", std::slice::from_ref(&key), 1614265330, 300),
            Err(SignatureError::Invalid)
        );
        // Rotation: any of the keys.
        assert_eq!(
            verify(&signed, body, &[b"old".to_vec(), key], 1614265330, 300),
            Ok(())
        );
    }

    #[test]
    fn timestamps_far_from_now_are_stale_not_an_overflow() {
        // Found by the `signature` fuzz target: `now - timestamp` overflowed. With the
        // second timestamp the difference wrapped to i64::MIN, whose `abs()` is negative,
        // so a message signed for 292 billion years ago passed as fresh.
        let (key, now, body) = (b"whsec-key".to_vec(), 1_764_806_400_i64, b"{}");
        let signed_at = |timestamp: i64| {
            parse_headers(&headers(&[
                ("webhook-id", "m1"),
                ("webhook-timestamp", &timestamp.to_string()),
                ("webhook-signature", &sign(&key, "m1", timestamp, body)),
            ]))
            .unwrap()
            .unwrap()
        };
        for timestamp in [i64::MIN, i64::MIN + now, i64::MAX] {
            assert_eq!(
                verify(
                    &signed_at(timestamp),
                    body,
                    std::slice::from_ref(&key),
                    now,
                    300
                ),
                Err(SignatureError::Stale {
                    tolerance_secs: 300
                }),
                "timestamp {timestamp}"
            );
        }
        // The widest distances, against the widest tolerance.
        assert_eq!(
            verify(
                &signed_at(i64::MIN),
                body,
                std::slice::from_ref(&key),
                i64::MAX,
                i64::MAX
            ),
            Err(SignatureError::Stale {
                tolerance_secs: i64::MAX
            })
        );
        assert_eq!(
            verify(
                &signed_at(0),
                body,
                std::slice::from_ref(&key),
                i64::MAX,
                i64::MAX
            ),
            Ok(())
        );
        // A negative tolerance accepts nothing.
        assert_eq!(
            verify(&signed_at(now), body, std::slice::from_ref(&key), now, -1),
            Err(SignatureError::Stale { tolerance_secs: -1 })
        );
    }

    #[test]
    fn headers_are_all_or_nothing() {
        assert_eq!(parse_headers(&HeaderMap::new()), Ok(None));
        assert_eq!(
            parse_headers(&headers(&[("webhook-id", "m1")])),
            Err(SignatureError::Missing("webhook-timestamp"))
        );
        assert_eq!(
            parse_headers(&headers(&[
                ("webhook-id", "m1"),
                ("webhook-timestamp", "soon"),
                ("webhook-signature", "v1,AAAA"),
            ])),
            Err(SignatureError::Malformed("webhook-timestamp"))
        );
        assert_eq!(
            parse_headers(&headers(&[
                ("webhook-id", "m1"),
                ("webhook-timestamp", "1"),
                ("webhook-signature", "v2,AAAA"),
            ])),
            Err(SignatureError::Malformed("webhook-signature"))
        );
    }
}
