//! Suricata EVE JSON (`eve.json`, one record per line). Only `event_type: alert` records
//! are alerts; `flow`, `http`, `dns`, `fileinfo`, `stats`, ... are skipped.
//!
//! - title `alert.signature`; description: category, action and the 5-tuple.
//! - severity `alert.severity` (1 highest): 1 high, 2 medium, 3 low, 4 and above info.
//! - occurred_at `timestamp`.
//! - source_ref `flow_id:tx_id:signature_id` (EVE has no event id; `-` for a missing
//!   `tx_id`); without a `flow_id`, a hash of the timestamp, 5-tuple and signature id.
//! - observables `src_ip`/`dest_ip`; `http.hostname`, `tls.sni`, DNS query names (domain);
//!   `http.url` made absolute with the host name; file hashes; SMTP addresses.
//! - tags: the rule's `mitre_*_id` metadata.

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{
    Kind, Lines, first, first_number, first_time, required, severity_banded, source_ref,
};
use super::{Draft, EventError, Format, Outcome, SkipReason};

pub(super) const FORMAT: Format = Format {
    name: "suricata-eve",
    aliases: &["suricata", "eve"],
    envelopes: &[],
    expand: None,
    text: None,
    map,
};

fn map(event: &Value) -> Result<Outcome, EventError> {
    let event_type = first(event, &["event_type"]);
    let is_alert = match &event_type {
        Some(t) => t == "alert",
        None => event.get("alert").is_some_and(Value::is_object),
    };
    if !is_alert {
        return Ok(Outcome::Skip(SkipReason::NotAnAlert {
            event_type: event_type.unwrap_or_default(),
        }));
    }
    let title = required(event, &["alert/signature", "alert/category"])?;
    let severity = first_number(event, &["alert/severity"]).map_or(Severity::Medium, |n| {
        severity_banded(
            n,
            &[
                (2.0, Severity::High),
                (3.0, Severity::Medium),
                (4.0, Severity::Low),
            ],
            Severity::Info,
        )
    });
    let reference = match (
        first(event, &["flow_id"]),
        first(event, &["alert/signature_id"]),
    ) {
        (Some(flow), Some(sid)) => {
            let tx = first(event, &["tx_id"]).unwrap_or_else(|| "-".to_owned());
            format!("{flow}:{tx}:{sid}")
        }
        _ => source_ref(
            event,
            &[],
            &[
                "timestamp",
                "src_ip",
                "src_port",
                "dest_ip",
                "dest_port",
                "proto",
                "alert/signature_id",
            ],
        ),
    };
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(event, &["timestamp"]);
    let mut lines = Lines::default().text(event, &["alert/category"]);
    if let (Some(src), Some(dest)) = (endpoint(event, "src"), endpoint(event, "dest")) {
        let proto = first(event, &["proto"]).unwrap_or_default();
        let action = first(event, &["alert/action"]).unwrap_or_default();
        lines.push(format!("{proto} {src} -> {dest} ({action})"));
    }
    draft.description = lines.join();
    draft.observables.collect(
        event,
        &[
            (Kind::Ip, "src_ip"),
            (Kind::Ip, "dest_ip"),
            (Kind::Domain, "http/hostname"),
            (Kind::Domain, "tls/sni"),
            (Kind::Domain, "dns/rrname"),
            (Kind::Domain, "dns/query/[]/rrname"),
            (Kind::Hash, "fileinfo/md5"),
            (Kind::Hash, "fileinfo/sha1"),
            (Kind::Hash, "fileinfo/sha256"),
            (Kind::Email, "email/from"),
            (Kind::Email, "email/to"),
            (Kind::Email, "smtp/mail_from"),
            (Kind::Email, "smtp/rcpt_to"),
        ],
    );
    if let Some(url) = first(event, &["http/url"]) {
        match (url.starts_with('/'), first(event, &["http/hostname"])) {
            (true, Some(host)) => draft
                .observables
                .add(Kind::Url, &format!("http://{host}{url}")),
            _ => draft.observables.add(Kind::Url, &url),
        }
    }
    draft.tags.collect(
        event,
        &[
            "alert/metadata/mitre_tactic_id",
            "alert/metadata/mitre_technique_id",
        ],
    );
    draft.alert()
}

fn endpoint(event: &Value, side: &str) -> Option<String> {
    let ip = first(event, &[&format!("{side}_ip")])?;
    Some(match first(event, &[&format!("{side}_port")]) {
        Some(port) if ip.contains(':') => format!("[{ip}]:{port}"),
        Some(port) => format!("{ip}:{port}"),
        None => ip,
    })
}
