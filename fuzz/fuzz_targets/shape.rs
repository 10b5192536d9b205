//! `limits::check_shape` (the depth and value-count check run on every body before any
//! parsing) against serde_json. Never panics, and for input serde_json reads as a sequence
//! of JSON values (one document, an array, NDJSON) its verdict is exact: `Ok` exactly when
//! the real nesting depth and value count (scalars, arrays, objects and object keys) are
//! within the limits, so it neither lets a too-deep or too-large body through to the
//! parsers nor refuses a body within the limits. Seeds: ingest/tests/fixtures.
#![no_main]

use std::fmt;

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use tocsin_ingest::limits::{ShapeError, check_shape};

/// The shape of one JSON document as the parser reads it: nesting depth (0 for a scalar)
/// and values, object keys included. Counted while parsing, not on a `Value`, whose maps
/// drop repeated keys that the body still carries.
#[derive(Debug, Clone, Copy)]
struct Shape {
    depth: usize,
    values: usize,
}

const SCALAR: Shape = Shape {
    depth: 0,
    values: 1,
};

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(SCALAR)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(SCALAR)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(SCALAR)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(SCALAR)
    }

    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(SCALAR)
    }

    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(SCALAR)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut shape = Shape {
            depth: 1,
            values: 1,
        };
        while let Some(item) = seq.next_element::<Shape>()? {
            shape.depth = shape.depth.max(item.depth + 1);
            shape.values += item.values;
        }
        Ok(shape)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut shape = Shape {
            depth: 1,
            values: 1,
        };
        while map.next_key::<IgnoredAny>()?.is_some() {
            let item = map.next_value::<Shape>()?;
            shape.depth = shape.depth.max(item.depth + 1);
            shape.values += 1 + item.values;
        }
        Ok(shape)
    }
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick the limits, the rest is the body.
    let [d, v, body @ ..] = data else {
        return;
    };
    let (limit_depth, limit_values) = (usize::from(*d % 40), usize::from(*v) * 4);
    let verdict = check_shape(body, limit_depth, limit_values);
    // The production limits never panic either, whatever the body.
    let _ = check_shape(body, 64, 250_000);

    let (mut depth, mut values) = (0, 0);
    for shape in serde_json::Deserializer::from_slice(body).into_iter::<Shape>() {
        let Ok(shape) = shape else {
            // Not JSON: the parsers refuse it with its line; the shape check has no say.
            return;
        };
        depth = depth.max(shape.depth);
        values += shape.values;
    }
    match verdict {
        Ok(()) => assert!(
            depth <= limit_depth && values <= limit_values,
            "passed with depth {depth} > {limit_depth} or {values} values > {limit_values}"
        ),
        Err(ShapeError::TooDeep { limit }) => {
            assert_eq!(limit, limit_depth);
            assert!(depth > limit_depth, "refused as too deep at depth {depth}");
        }
        Err(ShapeError::TooManyValues { limit }) => {
            assert_eq!(limit, limit_values);
            assert!(values > limit_values, "refused {values} values as too many");
        }
    }
});
