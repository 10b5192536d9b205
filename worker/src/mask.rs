//! Masks the tenant's secret values in everything a run writes: run logs (stored and
//! logged), step arguments, results and errors, the run's result, error and traceback, and
//! case changes. A playbook that echoes a secret (`run.log(secrets["token"])`, or passes the
//! value itself to an action) therefore stores and logs `***` instead.

use std::borrow::Cow;

use serde_json::Value;

/// What replaces a secret value.
pub(crate) const MASK: &str = "***";

/// Values shorter than this are not masked: they would mask ordinary text everywhere.
const MIN_LEN: usize = 4;

/// The secret values of one run's tenant.
#[derive(Debug, Default)]
pub(crate) struct Masker {
    /// Longest first, so that a value containing another is masked whole.
    values: Vec<String>,
}

impl Masker {
    pub(crate) fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.chars().count() >= MIN_LEN)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Self { values }
    }

    /// `text` with every secret value replaced by [`MASK`].
    pub(crate) fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.values.iter().any(|v| text.contains(v.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        Cow::Owned(out)
    }

    /// Masks every string (keys included) of a JSON value.
    pub(crate) fn json(&self, value: Value) -> Value {
        if self.values.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.text(&s).into_owned()),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(&k).into_owned(), self.json(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    /// Masks JSON text: unchanged (byte for byte) unless a secret occurs in it, raw or as
    /// JSON-escaped, in which case it is parsed, masked and serialized again.
    pub(crate) fn json_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let occurs = self.values.iter().any(|v| {
            text.contains(v.as_str())
                || serde_json::to_string(v)
                    .is_ok_and(|quoted| text.contains(quoted.trim_matches('"')))
        });
        if !occurs {
            return Cow::Borrowed(text);
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value) => Cow::Owned(self.json(value).to_string()),
            Err(_) => Cow::Owned(self.text(text).into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_are_masked_in_text_and_json() {
        let m = Masker::new([
            "s3cr3t-token".to_owned(),
            "abc".to_owned(),
            "tok\"en".to_owned(),
        ]);
        assert_eq!(m.text("Bearer s3cr3t-token!"), "Bearer ***!");
        assert!(matches!(m.text("nothing here"), Cow::Borrowed(_)));
        // Too short to mask.
        assert_eq!(m.text("abc"), "abc");
        let masked =
            m.json(json!({"h": {"Authorization": "Bearer s3cr3t-token"}, "l": ["tok\"en", 1]}));
        assert_eq!(
            masked,
            json!({"h": {"Authorization": "Bearer ***"}, "l": ["***", 1]})
        );
        let raw = r#"{"a":"x tok\"en y","b":2}"#;
        assert_eq!(m.json_text(raw), r#"{"a":"x *** y","b":2}"#);
        let untouched = r#"{"b":2,"a":"plain"}"#;
        assert!(matches!(m.json_text(untouched), Cow::Borrowed(s) if s == untouched));
    }
}
