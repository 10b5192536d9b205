//! `when` conditions: the data form of a playbook's trigger filter, compiled once and
//! evaluated against each alert in Rust, without running Python.
//!
//! A condition set is a map of field path → condition; every entry must hold. A condition is
//! a value (equality), a list (any of), or `{op: value}` with op one of `eq, ne, in, gte, gt,
//! lte, lt, contains, matches, exists`. The key `any` takes a list of condition sets of which
//! one must hold. Paths reach normalized fields (`source`, `severity`, `title`, `tags`,
//! `observables.ip`, ...) and raw ones (`raw.rule.level`). When a field holds a list, a
//! condition holds if it holds for any element (`exists` and `ne` look at the whole field).
//! Severity compares in order info < low < medium < high < critical; numbers (and numeric
//! strings) compare numerically.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::Value;
use tocsin_proto::types::Severity;

/// A compiled `when`.
#[derive(Debug, Clone)]
pub struct When {
    all: Vec<Clause>,
}

#[derive(Debug, Clone)]
enum Clause {
    Field {
        path: Vec<String>,
        cond: Cond,
        /// The condition as written (`severity: {"gte":"high"}`), for explanations.
        text: String,
    },
    Any(Vec<When>),
}

#[derive(Debug, Clone)]
enum Cond {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Cmp(Ordering, bool, Value),
    Contains(Value),
    Matches(Box<Regex>),
    Exists(bool),
}

/// A `when` that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid when condition at {path}: {message}")]
pub struct WhenError {
    /// Where in the condition.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> WhenError {
    WhenError {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl When {
    /// Compiles a `when` value; `None` or `{}` matches every alert.
    pub fn compile(value: Option<&Value>) -> Result<Self, WhenError> {
        match value {
            None | Some(Value::Null) => Ok(When { all: Vec::new() }),
            Some(Value::Object(map)) => {
                let mut all = Vec::with_capacity(map.len());
                for (key, cond) in map {
                    if key == "any" {
                        let Value::Array(options) = cond else {
                            return Err(err("any", "must be a list of condition maps"));
                        };
                        let options = options
                            .iter()
                            .map(|o| match o {
                                Value::Object(_) => When::compile(Some(o)),
                                _ => Err(err("any", "each entry must be a condition map")),
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        all.push(Clause::Any(options));
                    } else {
                        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
                        if path.iter().any(String::is_empty) {
                            return Err(err(key, "empty path segment"));
                        }
                        all.push(Clause::Field {
                            cond: compile_cond(key, cond)?,
                            text: format!("{key}: {cond}"),
                            path,
                        });
                    }
                }
                Ok(When { all })
            }
            Some(_) => Err(err("when", "must be a map of field to condition")),
        }
    }

    /// Whether `alert` (the JSON view built by [`alert_view`]) satisfies the conditions.
    pub fn matches(&self, alert: &Value) -> bool {
        self.all.iter().all(|clause| match clause {
            Clause::Any(options) => options.iter().any(|w| w.matches(alert)),
            Clause::Field { path, cond, .. } => eval(cond, path, resolve(alert, path)),
        })
    }

    /// Why `alert` does not satisfy the conditions (the first clause that fails, with the
    /// value it saw), or `None` when it does.
    pub fn mismatch(&self, alert: &Value) -> Option<String> {
        self.all.iter().find_map(|clause| match clause {
            Clause::Any(options) => (!options.iter().any(|w| w.matches(alert)))
                .then(|| "none of the `any` alternatives holds".to_owned()),
            Clause::Field { path, cond, text } => {
                let value = resolve(alert, path);
                (!eval(cond, path, value)).then(|| match value {
                    Some(v) => format!("`{text}` does not hold for {v}"),
                    None => format!("`{text}` does not hold: the field is absent"),
                })
            }
        })
    }
}

fn compile_cond(key: &str, cond: &Value) -> Result<Cond, WhenError> {
    match cond {
        Value::Array(items) => Ok(Cond::In(items.clone())),
        Value::Object(map) => {
            let mut entries = map.iter();
            let (Some((op, arg)), None) = (entries.next(), entries.next()) else {
                return Err(err(key, "an operator map must hold exactly one operator"));
            };
            match op.as_str() {
                "eq" => Ok(Cond::Eq(arg.clone())),
                "ne" => Ok(Cond::Ne(arg.clone())),
                "in" => match arg {
                    Value::Array(items) => Ok(Cond::In(items.clone())),
                    _ => Err(err(key, "`in` takes a list")),
                },
                "gte" => Ok(Cond::Cmp(Ordering::Greater, true, arg.clone())),
                "gt" => Ok(Cond::Cmp(Ordering::Greater, false, arg.clone())),
                "lte" => Ok(Cond::Cmp(Ordering::Less, true, arg.clone())),
                "lt" => Ok(Cond::Cmp(Ordering::Less, false, arg.clone())),
                "contains" => Ok(Cond::Contains(arg.clone())),
                "matches" => match arg {
                    Value::String(re) => Regex::new(re)
                        .map(|r| Cond::Matches(Box::new(r)))
                        .map_err(|e| err(key, format!("invalid regex: {e}"))),
                    _ => Err(err(key, "`matches` takes a regex string")),
                },
                "exists" => match arg {
                    Value::Bool(b) => Ok(Cond::Exists(*b)),
                    _ => Err(err(key, "`exists` takes true or false")),
                },
                other => Err(err(key, format!("unknown operator {other:?}"))),
            }
        }
        scalar => Ok(Cond::Eq(scalar.clone())),
    }
}

fn resolve<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, seg| match v {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn eval(cond: &Cond, path: &[String], field: Option<&Value>) -> bool {
    let field = field.filter(|v| !v.is_null());
    let is_severity = path.len() == 1 && path[0] == "severity";
    match cond {
        Cond::Exists(want) => field.is_some() == *want,
        Cond::Ne(expected) => {
            !field.is_some_and(|f| any_elem(f, |v| equal(v, expected, is_severity)))
        }
        Cond::Contains(needle) => field.is_some_and(|f| match f {
            Value::Array(items) => items.iter().any(|v| equal(v, needle, is_severity)),
            Value::String(s) => needle.as_str().is_some_and(|n| s.contains(n)),
            _ => false,
        }),
        Cond::Eq(expected) => {
            field.is_some_and(|f| any_elem(f, |v| equal(v, expected, is_severity)))
        }
        Cond::In(options) => {
            field.is_some_and(|f| any_elem(f, |v| options.iter().any(|o| equal(v, o, is_severity))))
        }
        Cond::Cmp(dir, or_equal, bound) => field.is_some_and(|f| {
            any_elem(f, |v| match compare(v, bound, is_severity) {
                Some(Ordering::Equal) => *or_equal,
                Some(ord) => ord == *dir,
                None => false,
            })
        }),
        Cond::Matches(re) => field.is_some_and(|f| {
            any_elem(f, |v| match v {
                Value::String(s) => re.is_match(s),
                Value::Number(n) => re.is_match(&n.to_string()),
                _ => false,
            })
        }),
    }
}

fn any_elem(field: &Value, pred: impl Fn(&Value) -> bool) -> bool {
    match field {
        Value::Array(items) => items.iter().any(pred),
        other => pred(other),
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value, is_severity: bool) -> bool {
    if is_severity && let (Some(x), Some(y)) = (severity(a), severity(b)) {
        return x == y;
    }
    match (a, b) {
        (Value::Number(_), _) | (_, Value::Number(_)) => {
            matches!((as_number(a), as_number(b)), (Some(x), Some(y)) if x == y)
        }
        _ => a == b,
    }
}

fn severity(v: &Value) -> Option<Severity> {
    v.as_str().and_then(|s| s.parse().ok())
}

fn compare(a: &Value, b: &Value, is_severity: bool) -> Option<Ordering> {
    if is_severity {
        return Some(severity(a)?.cmp(&severity(b)?));
    }
    if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// The JSON view of an alert that `when` paths resolve against.
pub fn alert_view(alert: &tocsin_store::alerts::NewAlert) -> Value {
    let mut observables = serde_json::Map::new();
    if let Value::Array(items) = &alert.observables {
        for item in items {
            if let (Some(Value::String(kind)), Some(value)) = (item.get("type"), item.get("value"))
            {
                let entry = observables
                    .entry(kind.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.push(value.clone());
                }
            }
        }
    }
    serde_json::json!({
        "id": alert.id,
        "tenant": alert.tenant,
        "source": alert.source,
        "source_ref": alert.source_ref,
        "title": alert.title,
        "description": alert.description,
        "severity": alert.severity.as_str(),
        "tags": alert.tags,
        "observables": observables,
        "raw": alert.raw,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn alert() -> Value {
        json!({
            "source": "wazuh", "severity": "high", "title": "SSH brute force",
            "tags": ["ssh", "auth"],
            "observables": {"ip": ["10.0.0.5", "8.8.8.8"]},
            "raw": {"rule": {"level": 12, "id": "5712"}},
        })
    }

    fn check(when: Value) -> bool {
        When::compile(Some(&when)).unwrap().matches(&alert())
    }

    #[test]
    fn equality_lists_and_severity_order() {
        assert!(check(json!({})));
        assert!(check(json!({"source": "wazuh"})));
        assert!(!check(json!({"source": "suricata"})));
        assert!(check(json!({"source": ["suricata", "wazuh"]})));
        assert!(check(json!({"severity": {"gte": "high"}})));
        assert!(check(json!({"severity": {"gte": "Medium"}})));
        assert!(!check(json!({"severity": {"gt": "high"}})));
        assert!(check(json!({"severity": {"lt": "critical"}})));
        assert!(check(json!({"severity": "HIGH"})));
        assert!(check(
            json!({"source": "wazuh", "severity": {"gte": "high"}})
        ));
        assert!(!check(
            json!({"source": "wazuh", "severity": {"gte": "critical"}})
        ));
    }

    #[test]
    fn raw_paths_lists_regex_exists_and_any() {
        assert!(check(json!({"raw.rule.level": {"gte": 10}})));
        assert!(!check(json!({"raw.rule.level": {"gt": 12}})));
        assert!(
            check(json!({"raw.rule.id": {"gte": 5000}})),
            "numeric strings compare as numbers"
        );
        assert!(check(json!({"raw.rule.level": 12})));
        assert!(check(json!({"tags": {"contains": "ssh"}})));
        assert!(check(json!({"tags": "auth"})));
        assert!(check(json!({"observables.ip": {"in": ["8.8.8.8"]}})));
        assert!(check(json!({"title": {"matches": "(?i)brute"}})));
        assert!(check(json!({"title": {"contains": "brute"}})));
        assert!(check(json!({"raw.user": {"exists": false}})));
        assert!(!check(json!({"raw.user": {"exists": true}})));
        assert!(check(json!({"raw.user": {"ne": "root"}})));
        assert!(!check(json!({"source": {"ne": "wazuh"}})));
        assert!(check(
            json!({"any": [{"source": "x"}, {"severity": "high"}]})
        ));
        assert!(!check(
            json!({"any": [{"source": "x"}, {"severity": "low"}]})
        ));
    }

    #[test]
    fn invalid_conditions_are_rejected() {
        for bad in [
            json!({"title": {"matches": "("}}),
            json!({"title": {"bogus": 1}}),
            json!({"title": {"eq": 1, "ne": 2}}),
            json!({"title": {"in": "x"}}),
            json!({"title": {"exists": "yes"}}),
            json!({"any": {"a": 1}}),
            json!({"a..b": 1}),
            json!(["x"]),
        ] {
            assert!(When::compile(Some(&bad)).is_err(), "{bad}");
        }
    }
}
