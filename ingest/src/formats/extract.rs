//! Data-driven helpers the formats share: JSON paths, observables, tags, timestamps,
//! severity scales and content hashes.
//!
//! A path is `/`-separated object keys (keys may contain dots: `output_fields/evt.time`);
//! `[]` stands for every element of an array, a number for one element, and `**` for any
//! depth below (the value itself included). A path that ends on an array yields its
//! elements.

use std::borrow::Cow;
use std::net::IpAddr;

use serde_json::Value;
use sha2::{Digest, Sha256};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};
use tocsin_proto::types::Severity;
use tocsin_proto::v1;

use super::EventError;

const MAX_OBSERVABLE_BYTES: usize = 4_096;
const MAX_TAG_BYTES: usize = 256;
const MAX_USER_CHARS: usize = 256;

/// Every value at `path` below `value`.
pub(crate) fn all<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = Vec::new();
    walk(value, &segments, &mut out);
    let mut flat = Vec::with_capacity(out.len());
    for v in out {
        match v {
            Value::Array(items) => flat.extend(items.iter()),
            other => flat.push(other),
        }
    }
    flat
}

fn walk<'a>(value: &'a Value, segments: &[&str], out: &mut Vec<&'a Value>) {
    let Some((segment, rest)) = segments.split_first() else {
        out.push(value);
        return;
    };
    match (*segment, value) {
        ("**", _) => {
            // Iterative, so a deep document cannot exhaust the stack here.
            let mut stack = vec![value];
            while let Some(node) = stack.pop() {
                walk(node, rest, out);
                match node {
                    Value::Object(map) => stack.extend(map.values().rev()),
                    Value::Array(items) => stack.extend(items.iter().rev()),
                    _ => {}
                }
            }
        }
        ("[]", Value::Array(items)) => items.iter().for_each(|v| walk(v, rest, out)),
        (key, Value::Object(map)) => {
            if let Some(v) = map.get(key) {
                walk(v, rest, out);
            }
        }
        (key, Value::Array(items)) => {
            if let Some(v) = key.parse::<usize>().ok().and_then(|i| items.get(i)) {
                walk(v, rest, out);
            }
        }
        _ => {}
    }
}

/// A scalar as text: strings trimmed, numbers and booleans printed; placeholders such as
/// `"N/A"`, `"null"` or `"-"` count as absent.
pub(crate) fn scalar(value: &Value) -> Option<Cow<'_, str>> {
    let text = match value {
        Value::String(s) => Cow::Borrowed(s.trim()),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        _ => return None,
    };
    (!is_placeholder(&text)).then_some(text)
}

fn is_placeholder(text: &str) -> bool {
    const PLACEHOLDERS: [&str; 9] = [
        "",
        "-",
        "n/a",
        "na",
        "null",
        "none",
        "nil",
        "undefined",
        "unknown",
    ];
    PLACEHOLDERS.iter().any(|p| text.eq_ignore_ascii_case(p))
}

/// Every scalar at `path`, as text.
pub(crate) fn texts<'a>(value: &'a Value, path: &str) -> impl Iterator<Item = Cow<'a, str>> {
    all(value, path).into_iter().filter_map(scalar)
}

/// The first scalar found along `paths`, tried in order.
pub(crate) fn first(value: &Value, paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find_map(|p| texts(value, p).next())
        .map(Cow::into_owned)
}

/// The first scalar found along `paths`, or [`EventError::Missing`] naming the first path.
pub(crate) fn required(value: &Value, paths: &[&'static str]) -> Result<String, EventError> {
    first(value, paths).ok_or(EventError::Missing {
        field: paths.first().copied().unwrap_or_default(),
    })
}

/// The first number (or numeric string) found along `paths`.
pub(crate) fn first_number(value: &Value, paths: &[&str]) -> Option<f64> {
    paths
        .iter()
        .flat_map(|p| all(value, p))
        .find_map(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        })
        .filter(|n| n.is_finite())
}

/// The first timestamp found along `paths`, in Unix milliseconds; 0 when there is none.
pub(crate) fn first_time(value: &Value, paths: &[&str]) -> i64 {
    paths
        .iter()
        .flat_map(|p| all(value, p))
        .find_map(time_ms)
        .unwrap_or(0)
}

/// `sha256:` and the hex SHA-256 of the canonical (sorted-key) JSON of `parts`: the
/// source_ref of an event whose product gives it no id.
pub(crate) fn sha256_ref(parts: &[&Value]) -> String {
    let mut text = String::new();
    text.push('[');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        canonical_json(part, &mut text);
    }
    text.push(']');
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// The stable id of an event: the first id found along `paths`, else a hash of the
/// values at `hash_paths` (absent ones hash as null).
pub(crate) fn source_ref(value: &Value, paths: &[&str], hash_paths: &[&str]) -> String {
    first(value, paths).unwrap_or_else(|| {
        let parts: Vec<&Value> = hash_paths
            .iter()
            .map(|p| all(value, p).into_iter().next().unwrap_or(&Value::Null))
            .collect();
        sha256_ref(&parts)
    })
}

/// JSON with object keys sorted, whatever map order serde_json was built with.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A severity by the product's own name for it (case-insensitive).
pub(crate) fn severity_named(name: &str, table: &[(&str, Severity)]) -> Option<Severity> {
    let name = name.trim();
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, s)| *s)
}

/// The first severity name found along `paths` that `table` knows.
pub(crate) fn first_severity(
    value: &Value,
    paths: &[&str],
    table: &[(&str, Severity)],
) -> Option<Severity> {
    paths
        .iter()
        .flat_map(|p| texts(value, p))
        .find_map(|name| severity_named(&name, table))
}

/// A severity from a numeric scale: the first band whose bound `score` is below, else
/// `top`.
pub(crate) fn severity_banded(score: f64, bands: &[(f64, Severity)], top: Severity) -> Severity {
    bands
        .iter()
        .find(|(bound, _)| score < *bound)
        .map_or(top, |(_, s)| *s)
}

/// A 1-5 level (1 informational ... 5 critical, as CrowdStrike and OCSF number them; 6
/// and above critical).
pub(crate) fn severity_from_level(level: f64) -> Severity {
    severity_banded(
        level,
        &[
            (2.0, Severity::Info),
            (3.0, Severity::Low),
            (4.0, Severity::Medium),
            (5.0, Severity::High),
        ],
        Severity::Critical,
    )
}

/// The usual names: info(rmational), low, medium, high, critical.
pub(crate) const COMMON_SEVERITIES: [(&str, Severity); 7] = [
    ("informational", Severity::Info),
    ("information", Severity::Info),
    ("info", Severity::Info),
    ("low", Severity::Low),
    ("medium", Severity::Medium),
    ("high", Severity::High),
    ("critical", Severity::Critical),
];

/// A 0-100 risk score as Security Hub, CrowdStrike and Chronicle band it: 0 info, 1-39
/// low, 40-69 medium, 70-89 high, 90-100 critical.
pub(crate) fn severity_from_percent(score: f64) -> Severity {
    severity_banded(
        score,
        &[
            (1.0, Severity::Info),
            (40.0, Severity::Low),
            (70.0, Severity::Medium),
            (90.0, Severity::High),
        ],
        Severity::Critical,
    )
}

/// The kinds of observable (`tocsin_proto::types::OBSERVABLE_TYPES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// IPv4 or IPv6 (std::net syntax), printed canonically; the unspecified address is
    /// dropped.
    Ip,
    /// A DNS name with at least two labels, lowercased; an IP goes to `Ip`.
    Domain,
    /// An absolute http(s)/ftp URL.
    Url,
    /// MD5, SHA-1 or SHA-256 in hex (32, 40 or 64 digits), lowercased.
    Hash,
    /// An e-mail address, lowercased.
    Email,
    /// An account name as the product writes it.
    User,
    /// A machine name (NetBIOS or DNS); an IP goes to `Ip`.
    Host,
}

impl Kind {
    /// The kind named `name` (an `OBSERVABLE_TYPES` entry, case-insensitive).
    pub(crate) fn named(name: &str) -> Option<Kind> {
        const ALL: [Kind; 7] = [
            Kind::Ip,
            Kind::Domain,
            Kind::Url,
            Kind::Hash,
            Kind::Email,
            Kind::User,
            Kind::Host,
        ];
        let name = name.trim();
        ALL.into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Domain => "domain",
            Kind::Url => "url",
            Kind::Hash => "hash",
            Kind::Email => "email",
            Kind::User => "user",
            Kind::Host => "host",
        }
    }
}

/// An alert's observables: validated, canonical and de-duplicated, in the order found.
#[derive(Debug, Default)]
pub(crate) struct Observables(Vec<v1::Observable>);

impl Observables {
    /// Adds `text` as `kind` when it is a valid one (an IP given as a host or domain is
    /// added as an IP).
    pub(crate) fn add(&mut self, kind: Kind, text: &str) {
        let text = text.trim();
        if is_placeholder(text) || text.len() > MAX_OBSERVABLE_BYTES {
            return;
        }
        if let Some((kind, value)) = canonical_observable(kind, text) {
            let kind = kind.as_str();
            if !self.0.iter().any(|o| o.r#type == kind && o.value == value) {
                self.0.push(v1::Observable {
                    r#type: kind.to_owned(),
                    value,
                });
            }
        }
    }

    /// Adds every value at each path as its kind.
    pub(crate) fn collect(&mut self, value: &Value, spec: &[(Kind, &str)]) {
        for (kind, path) in spec {
            for text in texts(value, path) {
                self.add(*kind, &text);
            }
        }
    }

    /// For each object at `list`, adds the fields that `table` names for its type (the
    /// value at `type_field`, compared case-insensitively): `(type, field, kind)` rows.
    pub(crate) fn collect_typed(
        &mut self,
        value: &Value,
        list: &str,
        type_field: &str,
        table: &[(&str, &str, Kind)],
    ) {
        for item in all(value, list) {
            let Some(item_type) = first(item, &[type_field]) else {
                continue;
            };
            for (_, field, kind) in table
                .iter()
                .filter(|(t, _, _)| t.eq_ignore_ascii_case(&item_type))
            {
                for text in texts(item, field) {
                    self.add(*kind, &text);
                }
            }
        }
    }

    /// Adds the URLs, e-mail addresses and IPv4 addresses written in free text.
    pub(crate) fn scan_text(&mut self, text: &str) {
        let is_delimiter = |c: char| c.is_whitespace() || "\"'<>()[]{},;|`".contains(c);
        for token in text.split(is_delimiter) {
            let token = token.trim_end_matches(['.', ':', '!', '?']);
            if has_url_scheme(token) {
                self.add(Kind::Url, token);
            } else if token.contains('@') {
                // `mailto:a@b`, `AROA...:a@b` (an AWS role session): the address is last.
                self.add(Kind::Email, token.rsplit(':').next().unwrap_or(token));
            } else if token.contains('.') && token.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            {
                self.add(Kind::Ip, token);
            }
        }
    }

    /// Scans the free text at each path.
    pub(crate) fn scan(&mut self, value: &Value, paths: &[&str]) {
        for path in paths {
            for text in texts(value, path) {
                self.scan_text(&text);
            }
        }
    }

    pub(crate) fn into_vec(self) -> Vec<v1::Observable> {
        self.0
    }
}

fn canonical_observable(kind: Kind, text: &str) -> Option<(Kind, String)> {
    match kind {
        Kind::Ip => canonical_ip(text).map(|ip| (Kind::Ip, ip)),
        Kind::Host | Kind::Domain => {
            if let Some(ip) = canonical_ip(text) {
                return Some((Kind::Ip, ip));
            }
            let name = text.strip_suffix('.').unwrap_or(text);
            if kind == Kind::Domain {
                is_domain(name).then(|| (kind, name.to_ascii_lowercase()))
            } else {
                let ok = name.len() <= 253
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
                ok.then(|| (kind, name.to_owned()))
            }
        }
        Kind::Url => is_url(text).then(|| (kind, text.to_owned())),
        Kind::Hash => {
            let hex_part = ["md5:", "sha1:", "sha256:"]
                .iter()
                .find_map(|p| {
                    text.get(..p.len())
                        .filter(|head| head.eq_ignore_ascii_case(p))
                        .and_then(|_| text.get(p.len()..))
                })
                .unwrap_or(text);
            let ok = matches!(hex_part.len(), 32 | 40 | 64)
                && hex_part.bytes().all(|b| b.is_ascii_hexdigit())
                && hex_part.bytes().any(|b| b != b'0');
            ok.then(|| (kind, hex_part.to_ascii_lowercase()))
        }
        Kind::Email => {
            // `Name <a@b>` and `<a@b>` give the address.
            let address = match text.rsplit_once('<') {
                Some((_, inner)) => inner.split('>').next().unwrap_or_default(),
                None => text,
            };
            let address = address.trim();
            let (local, domain) = address.rsplit_once('@')?;
            let ok = !local.is_empty()
                && local.len() <= 64
                && !local.starts_with('.')
                && local
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:@\"".contains(&b))
                && is_domain(domain);
            ok.then(|| (kind, address.to_ascii_lowercase()))
        }
        Kind::User => {
            let ok = text.chars().count() <= MAX_USER_CHARS && !text.chars().any(char::is_control);
            ok.then(|| (kind, text.to_owned()))
        }
    }
}

fn canonical_ip(text: &str) -> Option<String> {
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse::<IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| ip.to_string())
}

fn is_domain(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let tld_ok = labels.last().is_some_and(|tld| {
        tld.len() >= 2 && (tld.bytes().all(|b| b.is_ascii_alphabetic()) || tld.starts_with("xn--"))
    });
    name.len() <= 253 && labels.len() >= 2 && labels.iter().all(label_ok) && tld_ok
}

fn has_url_scheme(text: &str) -> bool {
    ["http://", "https://", "ftp://"].iter().any(|scheme| {
        text.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
    })
}

fn is_url(text: &str) -> bool {
    if !has_url_scheme(text) || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    canonical_ip(host).is_some()
        || host.parse::<IpAddr>().is_ok()
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')))
}

/// An alert's tags, de-duplicated in the order found.
#[derive(Debug, Default)]
pub(crate) struct Tags(Vec<String>);

impl Tags {
    pub(crate) fn add(&mut self, tag: &str) {
        let tag = tag.trim();
        if !is_placeholder(tag) && tag.len() <= MAX_TAG_BYTES && !self.0.iter().any(|t| t == tag) {
            self.0.push(tag.to_owned());
        }
    }

    /// Adds every value at each path.
    pub(crate) fn collect(&mut self, value: &Value, paths: &[&str]) {
        for path in paths {
            for tag in texts(value, path) {
                self.add(&tag);
            }
        }
    }

    /// Adds `prefix:value` (lowercased) for the first value along `path`: status tags.
    pub(crate) fn labelled(&mut self, value: &Value, prefix: &str, path: &str) {
        if let Some(v) = first(value, &[path]) {
            self.add(&format!("{prefix}:{}", v.to_lowercase()));
        }
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// A description made of lines: free text, then `Label: value` facts.
#[derive(Debug, Default)]
pub(crate) struct Lines(Vec<String>);

impl Lines {
    /// Adds the first text found along `paths`.
    pub(crate) fn text(mut self, value: &Value, paths: &[&str]) -> Self {
        if let Some(text) = first(value, paths) {
            self.push(text);
        }
        self
    }

    /// Adds `Label: value` for each label whose path has a value.
    pub(crate) fn facts(mut self, value: &Value, facts: &[(&str, &str)]) -> Self {
        for (label, path) in facts {
            let values: Vec<Cow<'_, str>> = texts(value, path).collect();
            if !values.is_empty() {
                self.push(format!("{label}: {}", values.join(", ")));
            }
        }
        self
    }

    pub(crate) fn push(&mut self, line: String) {
        if !self.0.contains(&line) {
            self.0.push(line);
        }
    }

    pub(crate) fn join(self) -> String {
        self.0.join("\n")
    }
}

/// A timestamp in Unix milliseconds: epoch numbers (s, ms, µs or ns, told apart by
/// magnitude, also as digit strings), RFC 3339 / ISO 8601 (offset with or without a
/// colon, none meaning UTC, any fraction) and RFC 5322 dates.
pub(crate) fn time_ms(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => epoch_int_ms(i),
            None => n.as_f64().and_then(epoch_float_ms),
        },
        Value::String(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                return epoch_int_ms(i);
            }
            if let Ok(f) = s.parse::<f64>() {
                return epoch_float_ms(f);
            }
            iso8601_ms(s).or_else(|| rfc5322_ms(s))
        }
        _ => None,
    }
}

/// Seconds below 1e11, milliseconds below 1e14, microseconds below 1e17, else
/// nanoseconds; sub-millisecond digits are dropped.
fn epoch_int_ms(n: i64) -> Option<i64> {
    match n {
        n if n <= 0 => None,
        n if n < 100_000_000_000 => Some(n * 1_000),
        n if n < 100_000_000_000_000 => Some(n),
        n if n < 100_000_000_000_000_000 => Some(n / 1_000),
        n => Some(n / 1_000_000),
    }
}

fn epoch_float_ms(n: f64) -> Option<i64> {
    if !n.is_finite() || n <= 0.0 || n >= 9e18 {
        return None;
    }
    let ms = match n {
        n if n < 1e11 => n * 1e3,
        n if n < 1e14 => n,
        n if n < 1e17 => n / 1e3,
        n => n / 1e6,
    };
    // In range (checked above), so the cast cannot saturate.
    Some(ms.round() as i64)
}

fn to_ms(date: Date, time: Time, offset: UtcOffset) -> Option<i64> {
    let at: OffsetDateTime = PrimitiveDateTime::new(date, time).assume_offset(offset);
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Reads a fixed-width run of ASCII digits.
fn digits(s: &str, range: std::ops::Range<usize>) -> Option<u32> {
    let part = s.get(range)?;
    part.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| part.parse().ok())?
}

fn iso8601_ms(s: &str) -> Option<i64> {
    let year = i32::try_from(digits(s, 0..4)?).ok()?;
    let sep = |i: usize, allowed: &[u8]| s.as_bytes().get(i).is_some_and(|b| allowed.contains(b));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":")) {
        return None;
    }
    let month = Month::try_from(u8::try_from(digits(s, 5..7)?).ok()?).ok()?;
    let date = Date::from_calendar_date(year, month, u8::try_from(digits(s, 8..10)?).ok()?).ok()?;
    let (hour, minute) = (digits(s, 11..13)?, digits(s, 14..16)?);
    let mut rest = s.get(16..)?;
    let mut second = 0;
    if let Some(after) = rest.strip_prefix(':') {
        second = digits(after, 0..2)?;
        rest = after.get(2..)?;
    }
    let mut nanos = 0u32;
    if let Some(after) = rest.strip_prefix(['.', ',']) {
        let count = after.bytes().take_while(u8::is_ascii_digit).count();
        let fraction = after.get(..count.min(9))?;
        nanos = format!("{fraction:0<9}").parse().ok()?;
        rest = after.get(count..)?;
    }
    let time = Time::from_hms_nano(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    let offset = match rest {
        "" | "Z" | "z" => UtcOffset::UTC,
        zone => numeric_offset(zone)?,
    };
    to_ms(date, time, offset)
}

/// `+hh:mm`, `+hhmm` or `+hh`.
fn numeric_offset(zone: &str) -> Option<UtcOffset> {
    let sign: i8 = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = zone.get(1..)?.replace(':', "");
    let hours = i8::try_from(digits(&body, 0..2)?).ok()?;
    let minutes = match body.len() {
        2 => 0,
        4 => i8::try_from(digits(&body, 2..4)?).ok()?,
        _ => return None,
    };
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

/// `[Mon, ]10 Oct 2022 20:11:32 +0000 (comment)`, with obsolete zone names.
fn rfc5322_ms(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let s = s.split_once(',').map_or(s, |(_, rest)| rest);
    let mut parts = s.split_whitespace();
    let day = u8::try_from(parts.next()?.parse::<u32>().ok()?).ok()?;
    let month_name = parts.next()?.to_ascii_lowercase();
    let month_index = MONTHS.iter().position(|m| month_name.starts_with(m))?;
    let month = Month::try_from(u8::try_from(month_index + 1).ok()?).ok()?;
    let year = i32::try_from(parts.next()?.parse::<u32>().ok()?).ok()?;
    let year = match year {
        y if y < 50 => y + 2000,
        y if y < 1000 => y + 1900,
        y => y,
    };
    let mut clock = parts.next()?.split(':');
    let mut next_u8 = || clock.next().and_then(|p| p.parse::<u8>().ok());
    let (hour, minute) = (next_u8()?, next_u8()?);
    let second = next_u8().unwrap_or(0);
    let offset = match parts.next().unwrap_or("+0000") {
        zone if zone.starts_with(['+', '-']) => numeric_offset(zone)?,
        zone => {
            let hours = match zone.to_ascii_uppercase().as_str() {
                "EDT" => -4,
                "EST" | "CDT" => -5,
                "CST" | "MDT" => -6,
                "MST" | "PDT" => -7,
                "PST" => -8,
                _ => 0,
            };
            UtcOffset::from_hms(hours, 0, 0).ok()?
        }
    };
    let date = Date::from_calendar_date(year, month, day).ok()?;
    to_ms(date, Time::from_hms(hour, minute, second).ok()?, offset)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_fan_out_over_arrays_and_any_depth() {
        let v = json!({"a": {"b": [{"ip": "1.1.1.1"}, {"ip": ["2.2.2.2", 3]}]}, "x.y": "dot"});
        let found: Vec<String> = texts(&v, "a/b/[]/ip").map(Cow::into_owned).collect();
        assert_eq!(found, ["1.1.1.1", "2.2.2.2", "3"]);
        assert_eq!(texts(&v, "**/ip").count(), 3);
        assert_eq!(first(&v, &["missing", "x.y"]).as_deref(), Some("dot"));
        assert_eq!(first(&v, &["a/b/1/ip"]).as_deref(), Some("2.2.2.2"));
        assert_eq!(first(&json!({"f": "N/A"}), &["f"]), None);
    }

    #[test]
    fn observables_are_validated_canonical_and_unique() {
        let mut o = Observables::default();
        for (kind, text) in [
            (Kind::Ip, "10.0.0.1"),
            (Kind::Ip, "000.111.222.10"),
            (Kind::Ip, "0.0.0.0"),
            (Kind::Ip, ":::519f:96a4:e108"),
            (Kind::Ip, "FE80::0:1"),
            (Kind::Host, "10.0.0.1"),
            (Kind::Host, "WS-01"),
            (Kind::Host, "bad host"),
            (Kind::Domain, "Deb.Debian.org."),
            (Kind::Domain, "localhost"),
            (Kind::Hash, "N/A"),
            (Kind::Hash, "463B5477FF96AB86A01BA49BCC02B539"),
            (Kind::Hash, "0000000000000000000000000000000000000000"),
            (Kind::Email, "<A.B@Example.com>"),
            (Kind::Email, "www-data@localhost"),
            (Kind::Url, "https://{yourOktaDomain}"),
            (Kind::Url, "http://deb.debian.org/x y"),
            (Kind::Url, "http://[::1]:8080/a"),
            (Kind::User, "root"),
        ] {
            o.add(kind, text);
        }
        let got: Vec<(String, String)> = o
            .into_vec()
            .into_iter()
            .map(|o| (o.r#type, o.value))
            .collect();
        let want = [
            ("ip", "10.0.0.1"),
            ("ip", "fe80::1"),
            ("host", "WS-01"),
            ("domain", "deb.debian.org"),
            ("hash", "463b5477ff96ab86a01ba49bcc02b539"),
            ("email", "a.b@example.com"),
            ("url", "http://[::1]:8080/a"),
            ("user", "root"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn free_text_yields_urls_emails_and_ipv4() {
        let mut o = Observables::default();
        o.scan_text("wget http://1.2.3.4/x.sh; from 192.168.83.175 port 22 (mailto:A@b.co). v1.2");
        let got: Vec<String> = o.into_vec().into_iter().map(|o| o.value).collect();
        assert_eq!(got, ["http://1.2.3.4/x.sh", "192.168.83.175", "a@b.co"]);
    }

    #[test]
    fn timestamps_in_every_shape_the_samples_use() {
        let ms = |v: Value| time_ms(&v);
        let base = Some(1_485_789_156_066);
        assert_eq!(ms(json!("2017-01-30T16:12:36.066011+0100")), base);
        assert_eq!(ms(json!("2017-01-30T15:12:36.066Z")), base);
        assert_eq!(ms(json!("2017-01-30T15:12:36.0660000")), base);
        assert_eq!(ms(json!("2017-01-30 13:12:36.066-02:00")), base);
        assert_eq!(ms(json!(1_485_789_156_066i64)), base);
        assert_eq!(ms(json!(1_485_789_156.066)), base);
        assert_eq!(ms(json!("1485789156")), Some(1_485_789_156_000));
        assert_eq!(ms(json!(1_485_789_156_066_000_000i64)), base);
        assert_eq!(
            ms(json!("Mon, 30 Jan 2017 15:12:36 +0000")),
            Some(1_485_789_156_000)
        );
        assert_eq!(
            ms(json!("30 Jan 2017 10:12:36 EST")),
            Some(1_485_789_156_000)
        );
        assert_eq!(ms(json!("yesterday")), None);
        assert_eq!(ms(json!("2017-13-30T15:12:36Z")), None);
        assert_eq!(ms(json!(-5)), None);
    }

    #[test]
    fn hash_refs_ignore_key_order() {
        let a = sha256_ref(&[&json!({"a": 1, "b": [1, {"y": 2, "x": 1}]})]);
        let b = sha256_ref(&[&json!({"b": [1, {"x": 1, "y": 2}], "a": 1})]);
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:") && a.len() == 71);
    }

    #[test]
    fn severity_scales() {
        assert_eq!(severity_from_percent(0.0), Severity::Info);
        assert_eq!(severity_from_percent(30.0), Severity::Low);
        assert_eq!(severity_from_percent(70.0), Severity::High);
        assert_eq!(severity_from_percent(100.0), Severity::Critical);
        assert_eq!(
            severity_named(" HIGH ", &COMMON_SEVERITIES),
            Some(Severity::High)
        );
    }
}
