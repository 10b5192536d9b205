//! Okta System Log events (`LogEvent`), bare, as a list (System Log API), or inside an
//! Event Hook delivery (`data.events`).
//!
//! - title `displayMessage`, with `outcome.reason` after a colon when there is one;
//!   else `eventType`. Description: event type, outcome, client, request URI.
//! - severity `severity`: DEBUG and INFO info, WARN medium, ERROR high; absent info.
//! - occurred_at `published`.
//! - source_ref `uuid`.
//! - observables `client.ipAddress`, the `ipChain[].ip` of request and client (ip); the actor's and the
//!   targets' `alternateId` when they are users (user); addresses, URLs and IPs written in
//!   `outcome.reason`.
//! - tags `eventType` (Okta's own event category, e.g. `user.session.start`).

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{Kind, Lines, all, first, first_severity, first_time, required};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "okta",
    aliases: &["okta-systemlog", "okta-eventhook"],
    envelopes: &["/data/events"],
    expand: None,
    text: None,
    map,
};

const SEVERITIES: [(&str, Severity); 4] = [
    ("debug", Severity::Info),
    ("info", Severity::Info),
    ("warn", Severity::Medium),
    ("error", Severity::High),
];

fn map(event: &Value) -> Result<Outcome, EventError> {
    let reason = first(event, &["outcome/reason"]);
    let title = match (first(event, &["displayMessage"]), &reason) {
        (Some(message), Some(reason)) => format!("{message}: {reason}"),
        (Some(message), None) => message,
        (None, _) => required(event, &["eventType"])?,
    };
    let severity = first_severity(event, &["severity"], &SEVERITIES).unwrap_or(Severity::Info);
    let reference = required(event, &["uuid"])?;
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(event, &["published"]);
    draft.description = Lines::default()
        .facts(
            event,
            &[
                ("Event", "eventType"),
                ("Outcome", "outcome/result"),
                ("Actor", "actor/alternateId"),
                ("Client", "client/userAgent/rawUserAgent"),
                ("Request", "debugContext/debugData/requestUri"),
            ],
        )
        .join();
    let obs = &mut draft.observables;
    obs.collect(
        event,
        &[
            (Kind::Ip, "client/ipAddress"),
            (Kind::Ip, "request/ipChain/[]/ip"),
            (Kind::Ip, "client/ipChain/[]/ip"),
        ],
    );
    for party in all(event, "actor").into_iter().chain(all(event, "target")) {
        if first(party, &["type"]).is_some_and(|t| t.eq_ignore_ascii_case("user")) {
            obs.collect(party, &[(Kind::User, "alternateId")]);
        }
    }
    obs.scan(event, &["outcome/reason"]);
    draft.tags.collect(event, &["eventType"]);
    draft.alert()
}
