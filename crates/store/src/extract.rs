//! Observable extraction: the indicators an alert carries, from its normalized list and
//! from well-known raw fields. Pure functions; [`crate::observables`] stores the result.
//!
//! Raw string values are scanned token by token for IPv4/IPv6 addresses (validated with
//! `std::net`), URLs and e-mail addresses. Extraction is conservative where false positives
//! are likely: domains come only from URLs, e-mail addresses and fields named like
//! `*domain*` / `*hostname*`; hashes (MD5, SHA-1, SHA-256 by hex length) only from fields
//! named like `*hash*` / `*md5*` / `*sha*`; users and hosts only from fields with
//! well-known names (`user`, `username`, `user.name`, `host`, `hostname`, `host.name`, ...).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

/// Longest observable value kept (the unique index bounds the key size).
pub const MAX_VALUE_LEN: usize = 2048;
/// Most observables kept per alert.
pub const MAX_PER_ALERT: usize = 256;
/// Deepest raw nesting scanned.
const MAX_DEPTH: usize = 16;
/// Most raw string values scanned per alert.
const MAX_STRINGS: usize = 2000;
/// Longest prefix of one raw string scanned.
const MAX_SCAN_BYTES: usize = 16 * 1024;

/// Field names (last path segment, lowercase) that hold a user name.
const USER_FIELDS: [&str; 11] = [
    "user",
    "username",
    "user_name",
    "src_user",
    "srcuser",
    "dst_user",
    "dstuser",
    "target_user",
    "account_name",
    "accountname",
    "samaccountname",
];
/// Field names (last path segment, lowercase) that hold a host name.
const HOST_FIELDS: [&str; 7] = [
    "host",
    "hostname",
    "host_name",
    "computer",
    "computer_name",
    "computername",
    "device_name",
];

/// One observable: a kind from [`tocsin_proto::types::OBSERVABLE_TYPES`] and a normalized value.
pub type Observable = (&'static str, String);

/// Normalizes a value of `kind`: trimmed; IPs in canonical form; domains, hosts, e-mail
/// addresses and hashes lowercased. `None` when the value is empty, too long, or not a
/// valid value of its kind (IPs and hashes are checked).
pub fn normalize(kind: &str, value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_VALUE_LEN {
        return None;
    }
    match kind {
        "ip" => value.parse::<IpAddr>().ok().map(|ip| ip.to_string()),
        "hash" => is_hash(value).then(|| value.to_ascii_lowercase()),
        "domain" | "host" | "email" => Some(value.trim_end_matches('.').to_lowercase()),
        "url" | "user" => Some(value.to_owned()),
        _ => None,
    }
}

/// The static name of an observable type.
pub fn kind_name(kind: &str) -> Option<&'static str> {
    tocsin_proto::types::OBSERVABLE_TYPES
        .iter()
        .find(|k| **k == kind)
        .copied()
}

/// Every observable of an alert: its normalized list (`[{"type", "value"}]`) first, then
/// what its raw fields carry. Deduplicated and sorted; at most [`MAX_PER_ALERT`].
pub fn extract(observables: &Value, raw: &Value) -> Vec<Observable> {
    let mut found = Found::default();
    for o in observables.as_array().into_iter().flatten() {
        let kind = o.get("type").and_then(Value::as_str).and_then(kind_name);
        let value = o.get("value").and_then(Value::as_str);
        if let (Some(kind), Some(value)) = (kind, value) {
            found.add(kind, value);
        }
    }
    let mut path = Vec::new();
    let mut strings = 0;
    walk(raw, &mut path, &mut strings, &mut found);
    found.set.into_iter().collect()
}

#[derive(Default)]
struct Found {
    set: BTreeSet<Observable>,
}

impl Found {
    fn add(&mut self, kind: &'static str, value: &str) {
        if self.set.len() >= MAX_PER_ALERT {
            return;
        }
        if let Some(value) = normalize(kind, value) {
            self.set.insert((kind, value));
        }
    }
}

fn walk<'a>(value: &'a Value, path: &mut Vec<&'a str>, strings: &mut usize, found: &mut Found) {
    if path.len() > MAX_DEPTH || *strings >= MAX_STRINGS {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(key);
                walk(child, path, strings, found);
                path.pop();
            }
        }
        // Array elements keep the key of the array.
        Value::Array(items) => {
            for item in items {
                walk(item, path, strings, found);
            }
        }
        Value::String(text) => {
            *strings += 1;
            scan_field(path, text, found);
        }
        _ => {}
    }
}

/// What a field's name says about its value.
fn scan_field(path: &[&str], text: &str, found: &mut Found) {
    let last = path
        .last()
        .map(|k| k.to_ascii_lowercase())
        .unwrap_or_default();
    let parent = path
        .len()
        .checked_sub(2)
        .and_then(|i| path.get(i))
        .map(|k| k.to_ascii_lowercase())
        .unwrap_or_default();
    let text = truncate(text, MAX_SCAN_BYTES);
    let named_hash = ["hash", "md5", "sha"]
        .iter()
        .any(|n| last.contains(n) || parent.contains(n));
    if named_hash {
        for token in tokens(text) {
            // "sha256=<hex>" and "MD5:<hex>" forms too.
            let token = token.rsplit(['=', ':']).next().unwrap_or(token);
            if is_hash(token) {
                found.add("hash", token);
            }
        }
    }
    if (last.contains("domain") || last.contains("hostname")) && is_domain(text.trim()) {
        found.add("domain", text.trim());
    }
    let single_word = !text.trim().is_empty() && !text.trim().contains(char::is_whitespace);
    if single_word && (USER_FIELDS.contains(&last.as_str()) || (parent == "user" && last == "name"))
    {
        found.add("user", text);
    }
    if single_word
        && (HOST_FIELDS.contains(&last.as_str())
            || (parent == "host" && matches!(last.as_str(), "name" | "hostname")))
        && text.trim().parse::<IpAddr>().is_err()
    {
        found.add("host", text);
    }
    scan_text(text, found);
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Splits free text into candidate tokens.
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '<' | '>' | '(' | ')' | '{' | '}' | ',' | ';' | '|' | '`'
            )
    })
    .filter(|t| !t.is_empty())
}

/// Scans free text for IPs, URLs and e-mail addresses (and the domains of the latter two).
fn scan_text(text: &str, found: &mut Found) {
    for token in tokens(text) {
        let lower = token.to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("ftp://")
        {
            let url = token.trim_end_matches(['.', ']', '[']);
            found.add("url", url);
            if let Some(host) = url_host(url) {
                if let Some(ip) = parse_ip(host) {
                    found.add("ip", &ip.to_string());
                } else if is_domain(host) {
                    found.add("domain", host);
                }
            }
            continue;
        }
        if let Some(ip) = parse_ip(token) {
            found.add("ip", &ip.to_string());
            continue;
        }
        let token = token
            .trim_start_matches(['[', ':', '='])
            .trim_end_matches(['.', ':', ']', '=']);
        if let Some(ip) = parse_ip(token) {
            found.add("ip", &ip.to_string());
            continue;
        }
        // key=value forms: "src=10.0.0.1", "from=alice@example.com".
        let token = token.rsplit('=').next().unwrap_or(token);
        if let Some(ip) = parse_ip(token) {
            found.add("ip", &ip.to_string());
        } else if let Some(domain) = email_domain(token) {
            found.add("email", token);
            found.add("domain", domain);
        }
    }
}

/// An IP in a token: `1.2.3.4`, `1.2.3.4:443`, `::1`, `[::1]:443`.
fn parse_ip(token: &str) -> Option<IpAddr> {
    if let Ok(ip) = token.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = token.strip_prefix('[') {
        let (addr, _) = rest.split_once(']')?;
        return addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (addr, port) = token.rsplit_once(':')?;
    if !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) {
        return addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4);
    }
    None
}

/// The host of an absolute URL (without user info, port or brackets).
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    let host = host_port.split(':').next()?;
    (!host.is_empty()).then_some(host)
}

/// The domain of an e-mail address, when `token` is one.
fn email_domain(token: &str) -> Option<&str> {
    let token = token.strip_prefix("mailto:").unwrap_or(token);
    let (local, domain) = token.split_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.');
    (local_ok && is_domain(domain)).then_some(domain)
}

/// A DNS name with at least two labels and an alphabetic top-level label.
fn is_domain(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.len() > 253 || !text.contains('.') {
        return false;
    }
    let labels: Vec<&str> = text.split('.').collect();
    let tld_ok = labels
        .last()
        .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    tld_ok
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Hex of an MD5, SHA-1 or SHA-256 length.
fn is_hash(text: &str) -> bool {
    matches!(text.len(), 32 | 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn of(kind: &str, found: &[Observable]) -> Vec<String> {
        found
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }

    #[test]
    fn extracts_from_the_normalized_list_and_raw_fields_conservatively() {
        let md5 = "D41D8CD98F00B204E9800998ECF8427E";
        let sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let found = extract(
            &json!([{"type": "ip", "value": " 10.0.0.5 "}, {"type": "host", "value": "WEB-1"},
                    {"type": "ip", "value": "not an ip"}, {"type": "car", "value": "x"}]),
            &json!({
                "src_ip": "203.0.113.7",
                "full_log": "GET http://Evil.example.com:8080/x.sh from [2001:db8::1]:443 \
                             and 198.51.100.2:22, mail bob@Corp.example.org; version 1.2.3",
                "rule": {"description": "see example.net and 000.111.222.10 and 1.2.3.4.5"},
                "file": {"hash": {"md5": md5, "sha256": format!("sha256={sha256}")}},
                "not_a_checksum": "d41d8cd98f00b204e9800998ecf8427e",
                "dns": {"query_domain": "Login.Example.COM."},
                "user": {"name": "alice"},
                "data": {"dstuser": "root", "hostname": "db-1"},
                "host": {"name": "web-2", "ip": ["::ffff:10.1.2.3"]},
                "nested": [[{"deep": "fe80::1"}]],
                "count": 3,
            }),
        );
        assert_eq!(
            of("ip", &found),
            [
                "10.0.0.5",
                "198.51.100.2",
                "2001:db8::1",
                "203.0.113.7",
                "::ffff:10.1.2.3",
                "fe80::1"
            ]
        );
        assert_eq!(of("url", &found), ["http://Evil.example.com:8080/x.sh"]);
        assert_eq!(
            of("domain", &found),
            ["corp.example.org", "evil.example.com", "login.example.com"],
            "domains only from URLs, e-mail addresses and domain-named fields"
        );
        assert_eq!(of("email", &found), ["bob@corp.example.org"]);
        assert_eq!(
            of("hash", &found),
            [md5.to_ascii_lowercase(), sha256.to_owned()],
            "hex in fields not named like a hash is not a hash"
        );
        assert_eq!(of("user", &found), ["alice", "root"]);
        assert_eq!(of("host", &found), ["db-1", "web-1", "web-2"]);
    }

    #[test]
    fn parses_ips_with_ports_and_rejects_lookalikes() {
        assert_eq!(parse_ip("10.0.0.1:443"), "10.0.0.1".parse().ok());
        assert_eq!(parse_ip("[::1]:8080"), "::1".parse().ok());
        assert_eq!(parse_ip("1.2.3"), None);
        assert_eq!(parse_ip("256.1.1.1"), None);
        assert_eq!(parse_ip("12:30"), None);
        assert_eq!(
            normalize("ip", "2001:DB8:0::1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(normalize("hash", "abc"), None);
        assert_eq!(normalize("url", &"x".repeat(MAX_VALUE_LEN + 1)), None);
        assert!(is_domain("a-b.example.co.uk") && !is_domain("localhost") && !is_domain("1.2.3.4"));
    }

    #[test]
    fn extraction_is_bounded() {
        let many: Vec<String> = (0..2000)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250))
            .collect();
        let found = extract(&json!([]), &json!({ "ips": many }));
        assert_eq!(found.len(), MAX_PER_ALERT);
    }
}
