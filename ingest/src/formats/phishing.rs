//! Reported e-mails: a raw RFC 5322 message (`.eml`, parsed by [`super::eml`]) or a
//! Microsoft 365 Defender incident (mapped as in [`map_m365_incident`], one alert per
//! incident, bare or in a `value` list).
//!
//! For a raw message, shaped for the phishing playbook (the sender is the first e-mail
//! observable, the reporting mailboxes are `user`s, `raw.mail` holds the summary):
//! - title the decoded `Subject`; description From, Reply-To, Return-Path, To, Date,
//!   attachment names.
//! - severity medium: a message carries none, and a report is unconfirmed.
//! - occurred_at `Date`, else the newest `Received` date.
//! - source_ref `Message-ID`, else a hash of the headers.
//! - observables: From, Sender, Reply-To, Return-Path and the SPF envelope sender
//!   (email); To, Cc, Delivered-To (user); the `from` part of every `Received` hop and
//!   the SPF `client-ip` (ip, and relay names as domain; a loopback relay is a local
//!   submission and left out); URLs in the text parts;
//!   attachment SHA-256s.
//! - tags the SPF, DKIM and DMARC results (`spf:none`, `dkim:pass`, ...).

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::eml::{self, header_value};
use super::extract::{Kind, Lines, Observables, Tags, first, first_time, sha256_ref, texts};
use super::microsoft_defender::{AZURE_ENVELOPES, map_m365_incident};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "phishing",
    aliases: &["eml", "reported-email"],
    envelopes: AZURE_ENVELOPES,
    expand: None,
    text: Some(eml::parse),
    map,
};

fn map(event: &Value) -> Result<Outcome, EventError> {
    match (event.get("headers"), event.get("mail")) {
        (Some(Value::Array(headers)), Some(mail)) => map_message(event, headers, mail),
        _ => map_m365_incident(event),
    }
}

fn map_message(event: &Value, header_list: &[Value], mail: &Value) -> Result<Outcome, EventError> {
    let headers: Vec<(String, String)> = header_list
        .iter()
        .filter_map(|h| {
            Some((
                first(h, &["name"])?,
                first(h, &["value"]).unwrap_or_default(),
            ))
        })
        .collect();
    let title = first(mail, &["subject"]).unwrap_or_else(|| "(no subject)".to_owned());
    let reference = first(mail, &["message_id"])
        .unwrap_or_else(|| sha256_ref(&[event.get("headers").unwrap_or(&Value::Null)]));
    let mut draft = Draft::new(title, Severity::Medium, reference);
    draft.occurred_at_ms = first_time(mail, &["received_at"]);
    draft.description = Lines::default()
        .facts(
            mail,
            &[
                ("From", "from"),
                ("Reply-To", "reply_to"),
                ("Return-Path", "return_path"),
                ("To", "to"),
                ("Date", "date"),
                ("Attachments", "attachments/[]/filename"),
            ],
        )
        .join();
    let obs = &mut draft.observables;
    for (key, kind) in [
        ("from", Kind::Email),
        ("sender", Kind::Email),
        ("reply_to", Kind::Email),
        ("return_path", Kind::Email),
    ] {
        add_addresses(obs, kind, first(mail, &[key]).as_deref());
    }
    for (name, value) in &headers {
        match name.to_ascii_lowercase().as_str() {
            "authentication-results" => {
                for (key, value) in pairs(value) {
                    match key.as_str() {
                        "smtp.mailfrom" => obs.add(Kind::Email, &value),
                        "spf" | "dkim" | "dmarc" => {
                            draft
                                .tags
                                .add(&format!("{key}:{}", value.to_ascii_lowercase()));
                        }
                        _ => {}
                    }
                }
            }
            "received-spf" => spf(obs, &mut draft.tags, value),
            _ => {}
        }
    }
    for key in ["to", "cc"] {
        add_addresses(obs, Kind::User, first(mail, &[key]).as_deref());
    }
    add_addresses(obs, Kind::User, header_value(&headers, "Delivered-To"));
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("received") {
            received_hop(obs, value);
        }
    }
    for text in texts(event, "parts/[]/text") {
        for url in urls(&text) {
            obs.add(Kind::Url, url);
        }
    }
    obs.collect(mail, &[(Kind::Hash, "attachments/[]/sha256")]);
    draft.alert()
}

/// Adds the addresses of an address-list header (`"A, B" <a@x>, b@y`).
fn add_addresses(obs: &mut Observables, kind: Kind, list: Option<&str>) {
    let Some(list) = list else { return };
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    let mut items = Vec::new();
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' => angle = true,
            '>' => angle = false,
            ',' if !quoted && !angle => {
                items.push(list.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(list.get(start..).unwrap_or_default());
    for item in items {
        let address = match item.rsplit_once('<') {
            Some((_, inner)) => inner.split('>').next().unwrap_or_default(),
            None => item,
        };
        if address.contains('@') {
            obs.add(kind, address.trim());
        }
    }
}

/// `key=value` pairs of an authentication header, keys lowercase, values unquoted.
fn pairs(value: &str) -> impl Iterator<Item = (String, String)> + '_ {
    value
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter_map(|token| token.split_once('='))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim_matches('"').to_owned()))
}

/// `Received-SPF: <result> (comment) client-ip=...; envelope-from=...`.
fn spf(obs: &mut Observables, tags: &mut Tags, value: &str) {
    if let Some(result) = value.split_whitespace().next() {
        tags.add(&format!("spf:{}", result.to_ascii_lowercase()));
    }
    for (key, value) in pairs(value) {
        match key.as_str() {
            "client-ip" => obs.add(Kind::Ip, &value),
            "envelope-from" => obs.add(Kind::Email, &value),
            _ => {}
        }
    }
}

/// The sending side of a `Received` hop: `from <helo> (<rdns> [<ip>]) by ...`.
fn received_hop(obs: &mut Observables, value: &str) {
    let trimmed = value.trim_start();
    let Some(from) = trimmed
        .get(..5)
        .filter(|head| head.eq_ignore_ascii_case("from "))
        .and_then(|_| trimmed.get(5..))
    else {
        return;
    };
    for word in from.split_whitespace() {
        if word.eq_ignore_ascii_case("by") {
            break;
        }
        let (word, last) = match word.split_once(';') {
            Some((word, _)) => (word, true),
            None => (word, false),
        };
        for token in word.split(['(', ')', '[', ']']) {
            // `(localhost [127.0.0.1])` is a local submission, not a network hop.
            let loopback = token
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
            if !token.contains('@') && !token.contains('=') && !loopback {
                // Added as domain; an address literal becomes an ip.
                obs.add(Kind::Domain, token);
            }
        }
        if last {
            break;
        }
    }
}

/// `http(s)://` URLs in text, up to the first character that cannot be part of one.
fn urls(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("http").filter_map(|(start, _)| {
        let rest = text.get(start..)?;
        let end = rest
            .find(|c: char| c.is_whitespace() || "\"'<>()[]{}`|\\^".contains(c))
            .unwrap_or(rest.len());
        let url = rest
            .get(..end)?
            .trim_end_matches(['.', ',', ';', ':', '!', '?']);
        (url.starts_with("http://") || url.starts_with("https://")).then_some(url)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_urls_in_text_and_html() {
        let found: Vec<&str> =
            urls("see <a href=\"https://x.example/a?b=1\">here</a>, or http://y.example/.")
                .collect();
        assert_eq!(found, ["https://x.example/a?b=1", "http://y.example/"]);
    }

    #[test]
    fn reads_the_sending_side_of_received_hops() {
        let mut obs = Observables::default();
        received_hop(
            &mut obs,
            "from mx.evil.example (rdns.evil.example [203.0.113.9]) by mx.corp.example (10.0.0.1); Mon, 1 Jan 2024",
        );
        received_hop(&mut obs, "(qmail 1 invoked from network); 1 Jan 2024");
        let got: Vec<String> = obs.into_vec().into_iter().map(|o| o.value).collect();
        assert_eq!(got, ["mx.evil.example", "rdns.evil.example", "203.0.113.9"]);
    }
}
