//! Request body framing: JSON values (one document, an array, NDJSON or any sequence of
//! whitespace-separated values) or a source's text format, then envelope unwrapping.

use serde_json::Value;

use super::{FormatError, TextParser};

/// How many envelopes may nest (EventBridge around Security Hub's `findings`, an Azure
/// REST example around a `value` list, ...).
const MAX_ENVELOPE_DEPTH: usize = 4;

/// Splits a body into top-level records. A top-level array yields its elements; a text
/// body (one that does not start with `{` or `[`) goes to `text` when the source has one.
pub(super) fn records(body: &[u8], text: Option<TextParser>) -> Result<Vec<Value>, FormatError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let Some(&first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(FormatError::Empty);
    };
    if let (Some(text), false) = (text, matches!(first, b'{' | b'[')) {
        return text(body)
            .map(|event| vec![event])
            .map_err(|reason| FormatError::InvalidEvent { index: 1, reason });
    }
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        match value {
            Ok(Value::Array(items)) => out.extend(items),
            Ok(value) => out.push(value),
            Err(e) => {
                return Err(FormatError::Malformed {
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                });
            }
        }
    }
    if out.is_empty() {
        return Err(FormatError::Empty);
    }
    Ok(out)
}

/// Unwraps `record` through the first envelope pointer that leads to an object or an
/// array, repeatedly; a record no pointer matches is an event itself.
pub(super) fn unwrap(record: Value, envelopes: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    unwrap_into(record, envelopes, 0, &mut out);
    out
}

fn unwrap_into(mut record: Value, envelopes: &[&str], depth: usize, out: &mut Vec<Value>) {
    if depth < MAX_ENVELOPE_DEPTH {
        let inner = envelopes.iter().find_map(|pointer| {
            record
                .pointer_mut(pointer)
                .filter(|v| v.is_object() || v.is_array())
                .map(Value::take)
        });
        match inner {
            Some(Value::Array(items)) => {
                for item in items {
                    unwrap_into(item, envelopes, depth + 1, out);
                }
                return;
            }
            Some(object) => return unwrap_into(object, envelopes, depth + 1, out),
            None => {}
        }
    }
    out.push(record);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn frames_documents_arrays_and_ndjson() {
        let ok = |body: &str| records(body.as_bytes(), None).unwrap();
        assert_eq!(ok("{\"a\":1}").len(), 1);
        assert_eq!(ok("\u{feff}[{\"a\":1},{\"a\":2}]").len(), 2);
        assert_eq!(ok("{\"a\":1}\r\n\r\n{\"a\":2}\n").len(), 2);
        assert_eq!(records(b" \n", None), Err(FormatError::Empty));
        assert_eq!(records(b"[]", None), Err(FormatError::Empty));
        match records(b"{\"a\":1}\n{\"a\":\n", None) {
            Err(FormatError::Malformed { line: 3, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        match records(b"{\n  \"a\": 1,\n  \"b\" 2\n}", None) {
            Err(FormatError::Malformed {
                line: 3, column: 7, ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unwraps_nested_envelopes_and_keeps_plain_events() {
        let envelopes = ["/detail", "/findings"];
        let wrapped = json!({"detail": {"findings": [{"id": 1}, {"id": 2}]}});
        assert_eq!(
            unwrap(wrapped, &envelopes),
            vec![json!({"id": 1}), json!({"id": 2})]
        );
        let plain = json!({"detail": "text", "id": 3});
        assert_eq!(unwrap(plain.clone(), &envelopes), vec![plain]);
        assert!(unwrap(json!({"findings": []}), &envelopes).is_empty());
    }
}
