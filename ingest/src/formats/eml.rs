//! A raw RFC 5322 message (`.eml`) as one JSON event, for the phishing source:
//!
//! ```json
//! {"headers": [{"name": "Received", "value": "..."}],
//!  "mail": {"from", "sender", "reply_to", "return_path", "to", "cc", "subject", "date",
//!           "received_at", "message_id", "attachments": [{"filename", "content_type",
//!           "size", "sha256"}]},
//!  "parts": [{"content_type", "filename", "size", "sha256" | "text"}]}
//! ```
//!
//! Header values are unfolded; those under `mail` are also RFC 2047-decoded. MIME is
//! walked just enough to decode text parts (quoted-printable, base64) and to hash
//! attachments; attachment content is not kept.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::EventError;
use super::extract::time_ms;

/// Multipart nesting followed at most.
const MAX_MIME_DEPTH: usize = 8;

type Headers = Vec<(String, String)>;

/// Parses a message; fails when the text does not start with a header section.
pub(super) fn parse(message: &[u8]) -> Result<Value, EventError> {
    let (headers, body) = split_headers(message).ok_or(EventError::NotAMessage)?;
    let known = [
        "from",
        "to",
        "subject",
        "date",
        "received",
        "message-id",
        "return-path",
    ];
    if !headers
        .iter()
        .any(|(name, _)| known.iter().any(|k| name.eq_ignore_ascii_case(k)))
    {
        return Err(EventError::NotAMessage);
    }
    let mut parts = Vec::new();
    walk_mime(&headers, body, 0, &mut parts);
    let attachments: Vec<Value> = parts
        .iter()
        .filter(|p| p.get("sha256").is_some())
        .cloned()
        .collect();
    let mut mail = Map::new();
    for (key, header) in [
        ("from", "From"),
        ("sender", "Sender"),
        ("reply_to", "Reply-To"),
        ("return_path", "Return-Path"),
        ("to", "To"),
        ("cc", "Cc"),
        ("subject", "Subject"),
        ("date", "Date"),
    ] {
        if let Some(value) = header_value(&headers, header) {
            // Unfolding leaves the fold's tabs and runs of blanks: one space reads better.
            let decoded = decode_words(value);
            let text = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
            mail.insert(key.to_owned(), Value::String(text));
        }
    }
    if let Some(id) = header_value(&headers, "Message-ID") {
        let id = id.trim().trim_start_matches('<').trim_end_matches('>');
        mail.insert("message_id".to_owned(), Value::String(id.to_owned()));
    }
    let received_at = header_value(&headers, "Date")
        .or_else(|| {
            header_value(&headers, "Received").and_then(|r| r.rsplit_once(';').map(|(_, d)| d))
        })
        .and_then(|date| time_ms(&Value::String(date.to_owned())))
        .and_then(rfc3339_utc);
    if let Some(at) = received_at {
        mail.insert("received_at".to_owned(), Value::String(at));
    }
    mail.insert("attachments".to_owned(), Value::Array(attachments));
    let headers: Vec<Value> = headers
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    Ok(json!({"headers": headers, "mail": mail, "parts": parts}))
}

/// The first value of a header (case-insensitive name).
pub(super) fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Splits the header section (unfolded) from the body.
fn split_headers(message: &[u8]) -> Option<(Headers, &[u8])> {
    let mut headers: Headers = Vec::new();
    let mut offset = 0;
    while offset < message.len() {
        let line_end = message
            .get(offset..)?
            .iter()
            .position(|b| *b == b'\n')
            .map_or(message.len(), |p| offset + p);
        let raw = message.get(offset..line_end)?;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        offset = (line_end + 1).min(message.len());
        if line.is_empty() {
            return Some((headers, message.get(offset..).unwrap_or_default()));
        }
        let text = String::from_utf8_lossy(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            let (_, value) = headers.last_mut()?;
            value.push_str(&text);
            continue;
        }
        let (name, value) = text.split_once(':')?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        headers.push((name.to_owned(), value.trim_start().to_owned()));
    }
    (!headers.is_empty()).then_some((headers, &[]))
}

/// The parameters of a structured header value (`type/sub; key="value"`), keys lowercase.
fn parameters(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = value.split(';');
    let main = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let params = pieces
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.trim().to_ascii_lowercase(), v.to_owned())
        })
        .collect();
    (main, params)
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn walk_mime(headers: &[(String, String)], body: &[u8], depth: usize, out: &mut Vec<Value>) {
    let (content_type, type_params) =
        parameters(header_value(headers, "Content-Type").unwrap_or("text/plain"));
    if let (true, Some(boundary)) = (
        content_type.starts_with("multipart/") && depth < MAX_MIME_DEPTH,
        param(&type_params, "boundary"),
    ) {
        for part in multipart(body, boundary) {
            if let Some((part_headers, part_body)) = split_headers(part) {
                walk_mime(&part_headers, part_body, depth + 1, out);
            }
        }
        return;
    }
    let (disposition, disposition_params) =
        parameters(header_value(headers, "Content-Disposition").unwrap_or_default());
    let filename = param(&disposition_params, "filename")
        .or_else(|| param(&type_params, "name"))
        .map(decode_words);
    let encoding = header_value(headers, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let content = match encoding.as_str() {
        "base64" => decode_base64(body),
        "quoted-printable" => decode_quoted_printable(body),
        _ => body.to_vec(),
    };
    let mut part = Map::new();
    part.insert(
        "content_type".to_owned(),
        Value::String(content_type.clone()),
    );
    if let Some(name) = &filename {
        part.insert("filename".to_owned(), Value::String(name.clone()));
    }
    part.insert("size".to_owned(), Value::from(content.len()));
    let attachment =
        disposition == "attachment" || (filename.is_some() && !content_type.starts_with("text/"));
    if attachment {
        let digest = hex::encode(Sha256::digest(&content));
        part.insert("sha256".to_owned(), Value::String(digest));
    } else if content_type.starts_with("text/") {
        let charset = param(&type_params, "charset").unwrap_or("utf-8");
        part.insert(
            "text".to_owned(),
            Value::String(decode_charset(&content, charset)),
        );
    }
    out.push(Value::Object(part));
}

/// The parts between `--boundary` delimiter lines, up to `--boundary--`.
fn multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0;
    while offset < body.len() {
        let line_end = body
            .get(offset..)
            .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
            .map_or(body.len(), |p| offset + p);
        let line = body.get(offset..line_end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line).trim_ascii_end();
        if let Some(rest) = line.strip_prefix(delimiter.as_bytes()) {
            if let Some(begin) = start {
                parts.push(body.get(begin..offset).unwrap_or_default());
            }
            if rest.starts_with(b"--") {
                return parts;
            }
            start = Some((line_end + 1).min(body.len()));
        }
        offset = line_end + 1;
    }
    if let Some(begin) = start {
        parts.push(body.get(begin..).unwrap_or_default());
    }
    parts
}

fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        match (input.get(i + 1), input.get(i + 2)) {
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(b'\n'), _) => i += 2,
            (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                let hex = [h, l];
                let byte = std::str::from_utf8(&hex)
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok());
                out.push(byte.unwrap_or(b'='));
                i += 3;
            }
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

fn decode_base64(input: &[u8]) -> Vec<u8> {
    let sextet = |b: u8| -> Option<u32> {
        match b {
            b'A'..=b'Z' => Some(u32::from(b - b'A')),
            b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for value in input
        .iter()
        .take_while(|b| **b != b'=')
        .filter_map(|b| sextet(*b))
    {
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Masked to one byte, so the conversion cannot fail.
            out.push(u8::try_from((buffer >> bits) & 0xFF).unwrap_or_default());
        }
    }
    out
}

fn decode_charset(bytes: &[u8], charset: &str) -> String {
    let latin = ["iso-8859-1", "latin1", "windows-1252", "us-ascii", "ascii"];
    if latin.iter().any(|c| charset.eq_ignore_ascii_case(c)) && std::str::from_utf8(bytes).is_err()
    {
        bytes.iter().map(|b| char::from(*b)).collect()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`); whitespace between two
/// encoded words is dropped, as the RFC says.
pub(super) fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        let decoded = encoded_word(candidate);
        if !(after_word && before.trim().is_empty() && decoded.is_some()) {
            out.push_str(before);
        }
        match decoded {
            Some((text, used)) => {
                out.push_str(&text);
                rest = candidate.get(used..).unwrap_or_default();
                after_word = true;
            }
            None => {
                out.push_str("=?");
                rest = candidate.get(2..).unwrap_or_default();
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One encoded word at the start of `text`: its decoded text and its length.
fn encoded_word(text: &str) -> Option<(String, usize)> {
    let inner = text.strip_prefix("=?")?;
    let (charset, rest) = inner.split_once('?')?;
    let (encoding, rest) = rest.split_once('?')?;
    let end = rest.find("?=")?;
    let payload = rest.get(..end)?;
    if payload.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => decode_base64(payload.as_bytes()),
        "Q" | "q" => decode_quoted_printable(payload.replace('_', " ").as_bytes()),
        _ => return None,
    };
    let used = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    Some((decode_charset(&bytes, charset), used))
}

fn rfc3339_utc(ms: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_encoded_words_quoted_printable_and_base64() {
        assert_eq!(
            decode_words("=?UTF-8?B?TMOtbmVh?= =?utf-8?Q?_caf=C3=A9?= x =?x?Z?y?="),
            "Línea café x =?x?Z?y?="
        );
        assert_eq!(decode_quoted_printable(b"a=3Db=\r\nc="), b"a=bc=");
        assert_eq!(decode_base64(b"SGVs\r\nbG8="), b"Hello");
    }

    #[test]
    fn walks_multipart_and_hashes_attachments() {
        let message = b"From: a@b.co\r\nContent-Type: multipart/mixed;\r\n\tboundary=\"XX\"\r\n\r\n\
            preamble\r\n--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
            see http://x.example/=\r\na\r\n--XX\r\nContent-Type: application/zip; name=\"a.zip\"\r\n\
            Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8=\r\n--XX--\r\n";
        let event = parse(message).unwrap();
        assert_eq!(event["parts"][0]["text"], "see http://x.example/a\r\n");
        let attachment = &event["mail"]["attachments"][0];
        assert_eq!(attachment["filename"], "a.zip");
        assert_eq!(attachment["size"], 5);
        assert_eq!(
            attachment["sha256"],
            "185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969"
        );
        assert_eq!(parse(b"not a message"), Err(EventError::NotAMessage));
        assert_eq!(
            parse(b"X-Only: 1\r\n\r\nbody"),
            Err(EventError::NotAMessage)
        );
    }
}
