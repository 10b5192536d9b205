//! Limits applied to every request before any JSON is parsed or normalized: the shape of
//! the body (nesting depth, number of JSON values) and per-tenant alert rates.
//!
//! The shape check is one pass over the bytes that tracks strings and brackets, so a hostile
//! body (a million-element array, ten thousand nested arrays) is refused in linear time and
//! constant memory, before serde builds anything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a body's shape was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Arrays and objects nested deeper than the limit.
    #[error("JSON nested deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// More JSON values (scalars, arrays, objects, and object keys) than the limit.
    #[error("more than {limit} JSON values in the body")]
    TooManyValues {
        /// The limit.
        limit: usize,
    },
}

/// Checks nesting depth and the number of values of a JSON, JSON array or NDJSON body. Not a
/// validator: malformed JSON passes here and is refused by the parser with its line.
pub fn check_shape(body: &[u8], max_depth: usize, max_values: usize) -> Result<(), ShapeError> {
    let mut depth = 0usize;
    let mut values = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // Whether the previous structural byte started a value (so `[1,2]` counts 2, `{}` 1).
    let mut in_scalar = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                in_scalar = false;
                values += 1;
            }
            b'[' | b'{' => {
                in_scalar = false;
                values += 1;
                depth += 1;
                if depth > max_depth {
                    return Err(ShapeError::TooDeep { limit: max_depth });
                }
            }
            b']' | b'}' => {
                in_scalar = false;
                depth = depth.saturating_sub(1);
            }
            b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => in_scalar = false,
            _ => {
                if !in_scalar {
                    in_scalar = true;
                    values += 1;
                }
            }
        }
        if values > max_values {
            return Err(ShapeError::TooManyValues { limit: max_values });
        }
    }
    Ok(())
}

/// Per-tenant token buckets of alerts: `rate` alerts per second, up to `burst` at once.
/// Bounded: past `MAX_TENANTS` tracked tenants, full buckets are forgotten first.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    overrides: HashMap<String, f64>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

const MAX_TENANTS: usize = 100_000;

impl RateLimiter {
    /// `rate` alerts per second per tenant, bursts up to `burst` (at least one second of
    /// `rate`); a tenant in `overrides` gets its own rate, and bursts one second of it.
    pub fn new(rate: f64, burst: f64, overrides: HashMap<String, f64>) -> Self {
        Self {
            rate,
            burst,
            overrides,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn limits(&self, tenant: &str) -> (f64, f64) {
        match self.overrides.get(tenant) {
            // An overridden tenant bursts one second of its own rate.
            Some(&rate) => (rate, rate),
            None => (self.rate, self.burst.max(self.rate)),
        }
    }

    /// Takes `n` alerts from the tenant's bucket, or says how long until they would fit.
    pub fn take(&self, tenant: &str, n: usize) -> Result<(), Duration> {
        self.take_at(tenant, n, Instant::now())
    }

    fn take_at(&self, tenant: &str, n: usize, now: Instant) -> Result<(), Duration> {
        let (rate, burst) = self.limits(tenant);
        if rate <= 0.0 {
            return Err(Duration::from_secs(60));
        }
        #[allow(clippy::cast_precision_loss)]
        let need = n as f64;
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere; do not turn it into an outage.
            return Ok(());
        };
        if buckets.len() >= MAX_TENANTS && !buckets.contains_key(tenant) {
            buckets.retain(|t, b| {
                let (r, cap) = self.limits(t);
                b.tokens + now.duration_since(b.at).as_secs_f64() * r < cap
            });
            if buckets.len() >= MAX_TENANTS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if need <= bucket.tokens {
            bucket.tokens -= need;
            return Ok(());
        }
        // A request larger than the burst waits for a full bucket, then goes through.
        let missing = need.min(burst) - bucket.tokens;
        if missing <= 0.0 {
            bucket.tokens -= need;
            return Ok(());
        }
        Err(Duration::from_secs_f64(missing / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_counted_without_parsing() {
        assert_eq!(check_shape(br#"{"a":[1,2,{"b":"x]"}]}"#, 3, 100), Ok(()));
        assert_eq!(
            check_shape(br#"{"a":[1,2,{"b":"x]"}]}"#, 2, 100),
            Err(ShapeError::TooDeep { limit: 2 })
        );
        // {}, [], 1, 2, {}, "x]" plus the key strings "a", "b": 8 values.
        assert_eq!(
            check_shape(br#"{"a":[1,2,{"b":"x]"}]}"#, 10, 7),
            Err(ShapeError::TooManyValues { limit: 7 })
        );
        assert_eq!(check_shape(br#"{"a":[1,2,{"b":"x]"}]}"#, 10, 8), Ok(()));
        let deep = "[".repeat(10_000);
        assert!(matches!(
            check_shape(deep.as_bytes(), 64, 1_000_000),
            Err(ShapeError::TooDeep { .. })
        ));
        let wide = format!("[{}0]", "0,".repeat(200_000));
        assert!(matches!(
            check_shape(wide.as_bytes(), 64, 100_000),
            Err(ShapeError::TooManyValues { .. })
        ));
        // Escaped quotes and brackets inside strings do not count.
        assert_eq!(check_shape(br#"["\"[[[[", "\\"]"#, 1, 3), Ok(()));
        // NDJSON: depth resets per line, values (keys included) add up.
        assert_eq!(check_shape(b"{\"a\":1}\n{\"a\":2}\n", 1, 6), Ok(()));
        assert!(check_shape(b"{\"a\":1}\n{\"a\":2}\n", 1, 5).is_err());
    }

    #[test]
    fn buckets_refill_at_the_rate_and_tenants_are_separate() {
        let limiter = RateLimiter::new(10.0, 20.0, HashMap::from([("big".to_owned(), 100.0)]));
        let t0 = Instant::now();
        assert!(limiter.take_at("a", 20, t0).is_ok());
        let wait = limiter.take_at("a", 5, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Another tenant is not affected.
        assert!(limiter.take_at("b", 20, t0).is_ok());
        // Half a second later, five more fit.
        assert!(
            limiter
                .take_at("a", 5, t0 + Duration::from_millis(500))
                .is_ok()
        );
        // The override: 100/s, burst 100.
        assert!(limiter.take_at("big", 100, t0).is_ok());
        // A batch above the burst goes through once the bucket is full.
        assert!(limiter.take_at("c", 50, t0).is_ok());
        assert!(limiter.take_at("c", 1, t0).is_err());
    }
}
