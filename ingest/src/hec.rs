//! Splunk HTTP Event Collector (HEC) compatibility, so anything that sends to Splunk HEC
//! (Splunk's logging libraries, Vector, Fluent Bit, the OpenTelemetry collector) feeds
//! Tocsin unchanged.
//!
//! - `POST /services/collector/event` (also `/services/collector` and
//!   `/services/collector/event/1.0`), authenticated with a tenant ingest key sent as
//!   `Authorization: Splunk <key>` (or `Bearer <key>`). Tokens in the query string are
//!   not accepted: URLs end up in logs.
//! - Body: one or more event envelopes `{"time", "host", "source", "sourcetype", "index",
//!   "fields", "event"}`, concatenated with or without whitespace between them. Only
//!   `event` is required; `time` is epoch seconds (number or string, may be fractional).
//!   At most `ingest.max_batch` events (and alerts) and `ingest.max_body_bytes` per
//!   request. All-or-nothing like the other intake routes: one refused event refuses the
//!   request, and nothing is published.
//! - GET `/services/collector/health` (and `/health/1.0`): healthy while NATS is
//!   connected.
//!
//! Mapping: when the `sourcetype` (else the `source`) names a built-in source (a Tocsin
//! source name or alias, or a Splunk add-on sourcetype of [`SOURCETYPE_ALIASES`]) and
//! `event` is an object, the event is normalized by that source's format exactly as
//! `/v1/webhooks/{source}` would (records that are not alerts, such as Suricata `flow`,
//! are dropped); its `raw` is the event with the envelope's other fields under `_hec`. Any
//! other event is mapped by [`map_generic`]. Alerts that carry no time of their own get
//! the envelope's `time`, else the time of receipt.
//!
//! Answers are HEC's own (`{"text", "code"}`, see [`Answer`]); success is
//! `200 {"text":"Success","code":0}`, sent only once JetStream acknowledged every alert.
//! Not supported: compressed bodies (415), `/services/collector/raw`, indexer
//! acknowledgement (`/services/collector/ack`, channels) and Basic authentication.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tocsin_proto::types::Severity;
use tocsin_proto::v1;

use crate::formats::extract::{Kind, Lines, all, first, severity_named, sha256_ref};
use crate::formats::{self, CIM_OBSERVABLES, Draft, EventError, FormatError, truncate};
use crate::generic::{MAX_SOURCE, is_valid_source};
use crate::http::{AcceptError, AppState, Inner, ReadBodyError, accept, read_body};

/// Splunk sourcetypes (as the Splunk add-ons for these products name them) that select a
/// built-in source, beyond the source names and aliases themselves (`suricata`,
/// `wazuh-alerts`, `falco`, `crowdstrike`, ...). Compared case-insensitively.
pub(crate) const SOURCETYPE_ALIASES: [(&str, &str); 7] = [
    ("suricata:eve", "suricata-eve"),
    ("suricata:json", "suricata-eve"),
    ("aws:cloudwatch:guardduty", "aws-guardduty"),
    ("aws:securityhub:finding", "aws-securityhub-asff"),
    ("crowdstrike:event:streams:json", "crowdstrike-falcon"),
    ("oktaim2:log", "okta"),
    ("sentinelone:channel:threats", "sentinelone"),
];

/// Prefix of the `source` of generically mapped events: `splunk-hec.<sourcetype>`.
const GENERIC_PREFIX: &str = "splunk-hec.";
/// Generic titles are cut to this many characters.
const MAX_GENERIC_TITLE_CHARS: usize = 200;
/// Where a generic event's title is looked for, in order.
const TITLE_PATHS: [&str; 7] = [
    "title",
    "name",
    "message",
    "msg",
    "rule",
    "rule/name",
    "signature",
];
/// Where a generic event's severity is looked for, in order.
const SEVERITY_PATHS: [&str; 3] = ["severity", "level", "urgency"];
/// Severity names of logs and alerts (syslog levels included) onto Tocsin's scale.
const SEVERITY_NAMES: [(&str, Severity); 24] = [
    ("debug", Severity::Info),
    ("trace", Severity::Info),
    ("info", Severity::Info),
    ("information", Severity::Info),
    ("informational", Severity::Info),
    ("notice", Severity::Low),
    ("low", Severity::Low),
    ("minor", Severity::Low),
    ("medium", Severity::Medium),
    ("moderate", Severity::Medium),
    ("warn", Severity::Medium),
    ("warning", Severity::Medium),
    ("high", Severity::High),
    ("major", Severity::High),
    ("severe", Severity::High),
    ("err", Severity::High),
    ("error", Severity::High),
    ("critical", Severity::Critical),
    ("crit", Severity::Critical),
    ("fatal", Severity::Critical),
    ("alert", Severity::Critical),
    ("emerg", Severity::Critical),
    ("emergency", Severity::Critical),
    ("panic", Severity::Critical),
];
/// Latest accepted `time` (9999-12-31T23:59:59Z): later ones cannot be stored.
const MAX_EPOCH_SECONDS: f64 = 253_402_300_799.0;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/services/collector", post(post_events))
        .route("/services/collector/event", post(post_events))
        .route("/services/collector/event/1.0", post(post_events))
        .route("/services/collector/health", get(health))
        .route("/services/collector/health/1.0", get(health))
}

/// An answer in HEC's wire format: `{"text", "code"}`, plus `invalid-event-number` (from
/// 0, as Splunk counts) when one event is at fault. Codes are Splunk's documented ones;
/// 413 and 415, which Splunk's list lacks, use code 6 (invalid data format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    status: StatusCode,
    code: u16,
    text: &'static str,
    invalid_event: Option<usize>,
    retry_after: Option<u32>,
}

impl Answer {
    const fn new(status: StatusCode, code: u16, text: &'static str) -> Self {
        Self {
            status,
            code,
            text,
            invalid_event: None,
            retry_after: None,
        }
    }

    const SUCCESS: Answer = Answer::new(StatusCode::OK, 0, "Success");
    const TOKEN_REQUIRED: Answer = Answer::new(StatusCode::UNAUTHORIZED, 2, "Token is required");
    const INVALID_AUTHORIZATION: Answer =
        Answer::new(StatusCode::UNAUTHORIZED, 3, "Invalid authorization");
    const INVALID_TOKEN: Answer = Answer::new(StatusCode::FORBIDDEN, 4, "Invalid token");
    const NO_DATA: Answer = Answer::new(StatusCode::BAD_REQUEST, 5, "No data");
    const INVALID_DATA_FORMAT: Answer =
        Answer::new(StatusCode::BAD_REQUEST, 6, "Invalid data format");
    const SERVER_BUSY: Answer = Answer::new(StatusCode::SERVICE_UNAVAILABLE, 9, "Server is busy");
    const EVENT_REQUIRED: Answer =
        Answer::new(StatusCode::BAD_REQUEST, 12, "Event field is required");
    const EVENT_BLANK: Answer =
        Answer::new(StatusCode::BAD_REQUEST, 13, "Event field cannot be blank");
    const INDEXED_FIELDS: Answer = Answer::new(
        StatusCode::BAD_REQUEST,
        15,
        "Error in handling indexed fields",
    );
    const HEALTHY: Answer = Answer::new(StatusCode::OK, 17, "HEC is healthy");
    const UNHEALTHY: Answer = Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        18,
        "HEC is unhealthy, queues are full",
    );
    const TOO_LARGE: Answer =
        Answer::new(StatusCode::PAYLOAD_TOO_LARGE, 6, "Request entity too large");
    const TIMEOUT: Answer = Answer::new(
        StatusCode::REQUEST_TIMEOUT,
        6,
        "Request body did not arrive in time",
    );
    const UNSUPPORTED_ENCODING: Answer = Answer::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        6,
        "Unsupported Content-Encoding: send the data uncompressed",
    );

    fn at_event(self, number: usize) -> Self {
        Self {
            invalid_event: Some(number),
            ..self
        }
    }

    fn retry_after(self, secs: u32) -> Self {
        Self {
            retry_after: Some(secs),
            ..self
        }
    }

    /// The JSON body, fields in Splunk's order (`text`, `code`, `invalid-event-number`).
    fn body(&self) -> String {
        #[derive(serde::Serialize)]
        struct Body {
            text: &'static str,
            code: u16,
            #[serde(
                rename = "invalid-event-number",
                skip_serializing_if = "Option::is_none"
            )]
            invalid_event_number: Option<usize>,
        }
        let body = Body {
            text: self.text,
            code: self.code,
            invalid_event_number: self.invalid_event,
        };
        // A struct of a string and numbers always serializes.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// `POST /services/collector/event`.
async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Answer, Answer> {
    let state = &state.0;
    let tenant = authenticate(state, &headers).await?;
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING)
        && !encoding
            .to_str()
            .is_ok_and(|e| e.trim().is_empty() || e.trim().eq_ignore_ascii_case("identity"))
    {
        return Err(Answer::UNSUPPORTED_ENCODING);
    }
    let bytes = read_body(state, &headers, body)
        .await
        .map_err(|e| match e {
            ReadBodyError::TooLarge { .. } => Answer::TOO_LARGE,
            ReadBodyError::Timeout { .. } => Answer::TIMEOUT,
            ReadBodyError::Shape(_) => Answer::INVALID_DATA_FORMAT,
        })?;
    let now_ms = i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX);
    let alerts = body_alerts(&bytes, state.max_batch, now_ms).map_err(|error| {
        tracing::info!(%tenant, %error, "hec request refused");
        error.answer()
    })?;
    if !alerts.is_empty() {
        accept(state, &tenant, alerts).await.map_err(|e| match e {
            // Splunk has no rate-limit code: "server busy", with when to come back.
            AcceptError::RateLimited { retry_after_secs } => {
                Answer::SERVER_BUSY.retry_after(retry_after_secs)
            }
            AcceptError::Unavailable(_) => Answer::SERVER_BUSY.retry_after(state.retry_after_secs),
        })?;
    }
    Ok(Answer::SUCCESS)
}

/// `GET /services/collector/health`: whether alerts can be published now.
async fn health(State(state): State<AppState>) -> Answer {
    if state.0.nats.connection_state() == async_nats::connection::State::Connected {
        Answer::HEALTHY
    } else {
        Answer::UNHEALTHY.retry_after(state.0.retry_after_secs)
    }
}

/// The tenant of the request's ingest key.
async fn authenticate(state: &Inner, headers: &HeaderMap) -> Result<String, Answer> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Answer::TOKEN_REQUIRED);
    };
    let token = token(value)?;
    match state.keys.resolve(token).await {
        Ok(Some(tenant)) => Ok(tenant),
        Ok(None) => Err(Answer::INVALID_TOKEN),
        Err(error) => {
            tracing::warn!(%error, "ingest key lookup failed");
            Err(Answer::SERVER_BUSY.retry_after(state.retry_after_secs))
        }
    }
}

/// The token of `Authorization: Splunk <token>` (or `Bearer <token>`; scheme
/// case-insensitive).
fn token(value: &HeaderValue) -> Result<&str, Answer> {
    let value = value
        .to_str()
        .map_err(|_| Answer::INVALID_AUTHORIZATION)?
        .trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("splunk") && !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Answer::INVALID_AUTHORIZATION);
    }
    match token.trim() {
        "" => Err(Answer::TOKEN_REQUIRED),
        token => Ok(token),
    }
}

/// Why a HEC body was refused. Event numbers count from 0, as HEC's
/// `invalid-event-number` does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum HecError {
    /// The body holds no event.
    #[error("the request holds no event")]
    NoData,
    /// An event is not valid HEC data.
    #[error("event {number}: {reason}")]
    InvalidData {
        /// The event's number.
        number: usize,
        /// What is wrong.
        reason: InvalidEvent,
    },
    /// An event has no `event` (or a null one).
    #[error("event {number}: no event field")]
    EventRequired {
        /// The event's number.
        number: usize,
    },
    /// An event's `event` is an empty or blank string, or an empty object or list.
    #[error("event {number}: blank event field")]
    EventBlank {
        /// The event's number.
        number: usize,
    },
    /// An event's `fields` is not an object.
    #[error("event {number}: fields is not an object")]
    IndexedFields {
        /// The event's number.
        number: usize,
    },
    /// More events, or alerts, than one request may carry.
    #[error("more than {max} events or alerts in one request")]
    TooMany {
        /// The limit (`ingest.max_batch`).
        max: usize,
    },
}

/// What makes an event invalid data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum InvalidEvent {
    /// Not JSON.
    #[error("malformed JSON at line {line}, column {column}")]
    Malformed {
        /// 1-based line of the body.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A JSON value other than an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// `time` is not epoch seconds between 1970 and 9999.
    #[error("time is not epoch seconds")]
    Time,
    /// A metadata field that must be a string is something else.
    #[error("{field} is not a string")]
    NotAString {
        /// `host`, `source`, `sourcetype` or `index`.
        field: &'static str,
    },
    /// The built-in source the sourcetype named cannot map the event.
    #[error("not a {format} event: {reason}")]
    Format {
        /// The source's canonical name.
        format: &'static str,
        /// Why.
        reason: EventError,
    },
}

impl HecError {
    fn answer(&self) -> Answer {
        match self {
            HecError::NoData => Answer::NO_DATA,
            HecError::InvalidData { number, .. } => Answer::INVALID_DATA_FORMAT.at_event(*number),
            HecError::EventRequired { number } => Answer::EVENT_REQUIRED.at_event(*number),
            HecError::EventBlank { number } => Answer::EVENT_BLANK.at_event(*number),
            HecError::IndexedFields { number } => Answer::INDEXED_FIELDS.at_event(*number),
            HecError::TooMany { .. } => Answer::TOO_LARGE,
        }
    }
}

/// One checked event envelope.
#[derive(Debug, Clone, PartialEq)]
struct HecEvent {
    /// Its 0-based position in the body.
    number: usize,
    /// `time`, in Unix milliseconds.
    time_ms: Option<i64>,
    host: Option<String>,
    source: Option<String>,
    sourcetype: Option<String>,
    /// The envelope as received (`event` included).
    envelope: Value,
}

impl HecEvent {
    fn check(number: usize, envelope: Value) -> Result<Self, HecError> {
        let invalid = |reason| HecError::InvalidData { number, reason };
        let Value::Object(map) = &envelope else {
            return Err(invalid(InvalidEvent::NotAnObject));
        };
        match map.get("event") {
            None | Some(Value::Null) => return Err(HecError::EventRequired { number }),
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(HecError::EventBlank { number });
            }
            Some(Value::Object(o)) if o.is_empty() => return Err(HecError::EventBlank { number }),
            Some(Value::Array(a)) if a.is_empty() => return Err(HecError::EventBlank { number }),
            Some(_) => {}
        }
        if !matches!(
            map.get("fields"),
            None | Some(Value::Null | Value::Object(_))
        ) {
            return Err(HecError::IndexedFields { number });
        }
        let time_ms = match map.get("time") {
            None | Some(Value::Null) => None,
            Some(time) => Some(epoch_seconds_ms(time).ok_or(invalid(InvalidEvent::Time))?),
        };
        let text = |field: &'static str| match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
            Some(_) => Err(invalid(InvalidEvent::NotAString { field })),
        };
        let (host, source, sourcetype) = (text("host")?, text("source")?, text("sourcetype")?);
        text("index")?;
        Ok(Self {
            number,
            time_ms,
            host,
            source,
            sourcetype,
            envelope,
        })
    }

    fn event(&self) -> &Value {
        self.envelope.get("event").unwrap_or(&Value::Null)
    }

    /// The envelope without `event`: what `_hec` holds in a built-in source's `raw`.
    fn metadata(&self) -> Value {
        let mut metadata = match &self.envelope {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        metadata.remove("event");
        Value::Object(metadata)
    }
}

/// Epoch seconds (a number or a numeric string, fractions kept to the millisecond) in
/// Unix milliseconds.
fn epoch_seconds_ms(time: &Value) -> Option<i64> {
    let seconds = match time {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    // Bounded, so the cast below cannot saturate.
    (seconds.is_finite() && (0.0..=MAX_EPOCH_SECONDS).contains(&seconds))
        .then(|| (seconds * 1_000.0).round() as i64)
}

/// The alerts of a HEC body, as `POST /services/collector/event` makes them once the
/// request is authenticated and within the size and shape limits: at most `max_batch`
/// events and alerts, `now_ms` standing in for an absent time.
fn body_alerts(body: &[u8], max_batch: usize, now_ms: i64) -> Result<Vec<v1::Alert>, HecError> {
    parse_body(body, max_batch).and_then(|events| to_alerts(events, max_batch, now_ms))
}

/// [`body_alerts`] with the refusal as its message: the entry point of the `hec` fuzz
/// target (`fuzz/`, see docs/fuzzing.md). Not a stable API.
#[doc(hidden)]
pub fn fuzz_body_alerts(
    body: &[u8],
    max_batch: usize,
    now_ms: i64,
) -> Result<Vec<v1::Alert>, String> {
    body_alerts(body, max_batch, now_ms).map_err(|e| e.to_string())
}

/// Splits a body into checked events: JSON objects, concatenated with or without
/// whitespace between them (a leading byte-order mark is ignored).
fn parse_body(body: &[u8], max_events: usize) -> Result<Vec<HecEvent>, HecError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut events = Vec::new();
    let values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    for (number, value) in values.enumerate() {
        let value = value.map_err(|e| HecError::InvalidData {
            number,
            reason: InvalidEvent::Malformed {
                line: e.line(),
                column: e.column(),
            },
        })?;
        if events.len() == max_events {
            return Err(HecError::TooMany { max: max_events });
        }
        events.push(HecEvent::check(number, value)?);
    }
    if events.is_empty() {
        return Err(HecError::NoData);
    }
    Ok(events)
}

/// The built-in source a sourcetype (or source) selects.
fn builtin_source(name: &str) -> Option<&'static str> {
    let name = name.trim();
    SOURCETYPE_ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map(|(_, source)| *source)
        .or_else(|| formats::canonical_source(name))
}

/// Maps events to alerts (tenant, ids and receipt left to [`accept`]), at most
/// `max_alerts` of them. `now_ms` stands in for an absent time.
fn to_alerts(
    events: Vec<HecEvent>,
    max_alerts: usize,
    now_ms: i64,
) -> Result<Vec<v1::Alert>, HecError> {
    let mut alerts = Vec::with_capacity(events.len());
    for event in events {
        let builtin = [&event.sourcetype, &event.source]
            .into_iter()
            .flatten()
            .find_map(|name| builtin_source(name))
            .filter(|_| event.event().is_object());
        match builtin {
            Some(format) => alerts.extend(map_builtin(&event, format, max_alerts, now_ms)?),
            None => alerts.push(map_generic(&event, now_ms)),
        }
        if alerts.len() > max_alerts {
            return Err(HecError::TooMany { max: max_alerts });
        }
    }
    Ok(alerts)
}

/// Normalizes the event with the built-in source `format`, as its webhook would; records
/// that are not alerts yield none.
fn map_builtin(
    event: &HecEvent,
    format: &'static str,
    max_alerts: usize,
    now_ms: i64,
) -> Result<Vec<v1::Alert>, HecError> {
    let number = event.number;
    let normalized = formats::normalize_record(format, event.event().clone(), max_alerts).map_err(
        |e| match e {
            FormatError::TooMany { max, .. } => HecError::TooMany { max },
            FormatError::InvalidEvent { reason, .. } => HecError::InvalidData {
                number,
                reason: InvalidEvent::Format { format, reason },
            },
            // A parsed object is never empty, malformed or of an unknown source.
            FormatError::Empty
            | FormatError::Malformed { .. }
            | FormatError::UnknownSource { .. } => HecError::InvalidData {
                number,
                reason: InvalidEvent::NotAnObject,
            },
        },
    )?;
    let metadata = event.metadata();
    let mut alerts = normalized.alerts;
    for alert in &mut alerts {
        if alert.occurred_at_ms == 0 {
            alert.occurred_at_ms = event.time_ms.unwrap_or(now_ms);
        }
        // The format's raw is the (unwrapped) event, an object: the envelope goes beside
        // its fields so that playbooks read `raw.<field>` as they do for the webhook.
        if let Ok(Value::Object(mut raw)) = serde_json::from_str::<Value>(&alert.raw_json) {
            raw.insert("_hec".to_owned(), metadata.clone());
            alert.raw_json = Value::Object(raw).to_string();
        }
    }
    Ok(alerts)
}

/// Maps an event no built-in source takes:
///
/// - source `splunk-hec.<sourcetype>` ([`generic_source`]; `splunk-hec.unknown` without
///   one).
/// - title: a string event's first line, else the first of `title`, `name`, `message`,
///   `msg`, `rule`, `rule.name`, `signature`, else the event's JSON; cut to 200
///   characters. Description: `description` or `details`, the whole string event when
///   longer than its title, then host, source, sourcetype and index.
/// - severity: the first of `severity`, `level`, `urgency` that reads as one: a name of
///   [`SEVERITY_NAMES`] (info, low, medium, high, critical and their common synonyms and
///   syslog levels: debug info, notice low, warning medium, error high, alert and
///   emergency critical), or a 0-10 score (<1 info, <4 low, <7 medium, <9 high, else
///   critical, as the generic format reads numbers); otherwise medium.
/// - occurred_at: `time`, else now.
/// - source_ref: the event's `id`, `_cd` or `event_id`, else `sha256:` of the whole
///   envelope (so a retried request deduplicates, while the same text sent at another
///   time is another alert).
/// - observables: the envelope's `host` (host); the event's CIM fields (those the Splunk
///   webhook format reads: `src_ip`, `dest`, `user`, `url`, hashes, ...); an
///   `observables` list in the generic format's shape (`[{"type", "value"}]`); URLs,
///   e-mail addresses and IPv4 addresses written in a string event or in `message`,
///   `msg`, `_raw`.
/// - tags: the event's `tags` list. raw: the whole envelope.
fn map_generic(event: &HecEvent, now_ms: i64) -> v1::Alert {
    let body = event.event();
    let text = body.as_str();
    let title = match text {
        Some(text) => text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or(text)
            .to_owned(),
        None => first(body, &TITLE_PATHS).unwrap_or_else(|| body.to_string()),
    };
    let title = truncate(&title, MAX_GENERIC_TITLE_CHARS);
    let source_ref =
        first(body, &["id", "_cd", "event_id"]).unwrap_or_else(|| sha256_ref(&[&event.envelope]));
    let mut draft = Draft::new(title, generic_severity(body), source_ref);
    draft.occurred_at_ms = event.time_ms.unwrap_or(now_ms);
    let mut lines = Lines::default().text(body, &["description", "details"]);
    if let Some(text) = text.map(str::trim).filter(|t| *t != draft.title) {
        lines.push(text.to_owned());
    }
    draft.description = lines
        .facts(
            &event.envelope,
            &[
                ("Host", "host"),
                ("Source", "source"),
                ("Sourcetype", "sourcetype"),
                ("Index", "index"),
            ],
        )
        .join();
    let observables = &mut draft.observables;
    if let Some(host) = &event.host {
        observables.add(Kind::Host, host);
    }
    observables.collect(body, &CIM_OBSERVABLES);
    for item in all(body, "observables") {
        if let (Some(kind), Some(value)) = (
            first(item, &["type"]).and_then(|k| Kind::named(&k)),
            first(item, &["value"]),
        ) {
            observables.add(kind, &value);
        }
    }
    match text {
        Some(text) => observables.scan_text(text),
        None => observables.scan(body, &["message", "msg", "_raw"]),
    }
    draft.tags.collect(body, &["tags"]);
    draft.finish(
        &generic_source(event.sourcetype.as_deref()),
        &event.envelope,
    )
}

/// The first of [`SEVERITY_PATHS`] that reads as a severity; medium otherwise.
fn generic_severity(event: &Value) -> Severity {
    SEVERITY_PATHS
        .iter()
        .filter_map(|path| first(event, &[path]))
        .find_map(|value| {
            severity_named(&value, &SEVERITY_NAMES)
                .or_else(|| value.parse::<f64>().ok().and_then(Severity::from_score))
        })
        .unwrap_or(Severity::Medium)
}

/// `splunk-hec.<sourcetype>`, made a valid source name (see
/// [`is_valid_source`](crate::generic::is_valid_source)): lowercased, `:` (Splunk's
/// separator) as `.`, any other character outside a-z, 0-9, `-`, `_`, `.` as `_`, and cut
/// to 64 bytes; `splunk-hec.unknown` without a sourcetype.
fn generic_source(sourcetype: Option<&str>) -> String {
    let room = MAX_SOURCE - GENERIC_PREFIX.len();
    let name: String = sourcetype
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            ':' => '.',
            _ => '_',
        })
        .take(room)
        .collect();
    let name = if name.is_empty() { "unknown" } else { &name };
    let source = format!("{GENERIC_PREFIX}{name}");
    debug_assert!(is_valid_source(&source), "{source}");
    source
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: &str) -> Result<Vec<HecEvent>, HecError> {
        parse_body(body.as_bytes(), 10)
    }

    fn alerts(body: &str) -> Vec<v1::Alert> {
        to_alerts(parse(body).unwrap(), 10, 1_000).unwrap()
    }

    #[test]
    fn splits_concatenated_events_and_numbers_the_faulty_one_from_zero() {
        let body = "\u{feff}{\"event\":\"a\",\"time\":1426279439.5}{\"event\":{\"b\":1}}\n\n  \
                    {\"event\":\"c\",\"time\":\"1426279439\"}\r\n";
        let events = parse(body).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].time_ms, Some(1_426_279_439_500));
        assert_eq!(events[1].time_ms, None);
        assert_eq!(events[2].time_ms, Some(1_426_279_439_000));
        assert_eq!(events[2].number, 2);

        let number = |body: &str| match parse(body) {
            Err(e) => (e.answer().code, e.answer().invalid_event),
            Ok(_) => panic!("{body} parsed"),
        };
        assert_eq!(parse(" \n "), Err(HecError::NoData));
        assert_eq!(number(""), (5, None));
        assert_eq!(number("{\"event\":\"a\"}{\"event\":"), (6, Some(1)));
        assert_eq!(number("{\"event\":\"a\"} [1]"), (6, Some(1)));
        assert_eq!(number("{\"event\":\"a\"}{\"host\":\"h\"}"), (12, Some(1)));
        assert_eq!(number("{\"event\":null}"), (12, Some(0)));
        assert_eq!(number("{\"event\":\"  \"}"), (13, Some(0)));
        assert_eq!(number("{\"event\":{}}"), (13, Some(0)));
        assert_eq!(number("{\"event\":\"a\",\"fields\":[1]}"), (15, Some(0)));
        assert_eq!(number("{\"event\":\"a\",\"time\":\"soon\"}"), (6, Some(0)));
        assert_eq!(number("{\"event\":\"a\",\"time\":-1}"), (6, Some(0)));
        assert_eq!(number("{\"event\":\"a\",\"time\":1e13}"), (6, Some(0)));
        assert_eq!(number("{\"event\":\"a\",\"host\":7}"), (6, Some(0)));
        assert_eq!(
            parse_body(b"{\"event\":1}{\"event\":2}{\"event\":3}", 2),
            Err(HecError::TooMany { max: 2 })
        );
    }

    #[test]
    fn answers_in_hec_wire_format() {
        assert_eq!(Answer::SUCCESS.body(), r#"{"text":"Success","code":0}"#);
        assert_eq!(
            Answer::INVALID_DATA_FORMAT.at_event(3).body(),
            r#"{"text":"Invalid data format","code":6,"invalid-event-number":3}"#
        );
        let response = Answer::SERVER_BUSY.retry_after(2).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");

        let header = |v: &'static str| HeaderValue::from_static(v);
        assert_eq!(token(&header("Splunk abc")), Ok("abc"));
        assert_eq!(token(&header("bearer  abc ")), Ok("abc"));
        assert_eq!(token(&header("Splunk")), Err(Answer::TOKEN_REQUIRED));
        assert_eq!(
            token(&header("Basic eDp5")),
            Err(Answer::INVALID_AUTHORIZATION)
        );
    }

    #[test]
    fn maps_generic_events_with_title_severity_time_and_observables() {
        let body = r#"{"time":1700000000.25,"host":"web-01","sourcetype":"Acme:WAF/v2",
            "index":"main","fields":{"env":"prod"},
            "event":{"message":"blocked 203.0.113.9 see https://acme.example/x","level":"ERROR",
                     "src_ip":"198.51.100.7","user":"alice","tags":["waf"],
                     "observables":[{"type":"domain","value":"evil.example"}]}}"#;
        let alert = &alerts(body)[0];
        assert_eq!(alert.source, "splunk-hec.acme.waf_v2");
        assert_eq!(
            alert.title,
            "blocked 203.0.113.9 see https://acme.example/x"
        );
        assert_eq!(alert.severity(), v1::Severity::High);
        assert_eq!(alert.occurred_at_ms, 1_700_000_000_250);
        assert!(alert.source_ref.starts_with("sha256:"));
        let observables: Vec<(&str, &str)> = alert
            .observables
            .iter()
            .map(|o| (o.r#type.as_str(), o.value.as_str()))
            .collect();
        for expected in [
            ("host", "web-01"),
            ("ip", "198.51.100.7"),
            ("user", "alice"),
            ("domain", "evil.example"),
            ("ip", "203.0.113.9"),
            ("url", "https://acme.example/x"),
        ] {
            assert!(
                observables.contains(&expected),
                "{expected:?}: {observables:?}"
            );
        }
        assert_eq!(alert.tags, vec!["waf"]);
        assert!(
            alert.description.contains("Index: main"),
            "{}",
            alert.description
        );
        let raw: Value = serde_json::from_str(&alert.raw_json).unwrap();
        assert_eq!(raw["fields"]["env"], "prod");
        assert_eq!(raw["host"], "web-01");

        // A string event, no sourcetype, no time; an id makes the source_ref.
        let alert = &alerts(&format!(
            "{{\"event\":\"{}\\nsecond line\"}}",
            "x".repeat(300)
        ))[0];
        assert_eq!(alert.source, "splunk-hec.unknown");
        assert_eq!(alert.title.chars().count(), 200);
        assert!(alert.description.ends_with("second line"));
        assert_eq!(alert.severity(), v1::Severity::Medium);
        assert_eq!(alert.occurred_at_ms, 1_000);
        let alert =
            &alerts(r#"{"event":{"id":"e-1","name":"n","severity":9.5,"urgency":"low"}}"#)[0];
        assert_eq!(alert.source_ref, "e-1");
        assert_eq!(alert.severity(), v1::Severity::Critical);
        for (value, expected) in [
            (json!({"severity": "notice"}), Severity::Low),
            (json!({"level": "warning"}), Severity::Medium),
            (json!({"urgency": "Informational"}), Severity::Info),
            (
                json!({"severity": "bogus", "level": "emerg"}),
                Severity::Critical,
            ),
            (json!({"severity": 42}), Severity::Medium),
            (json!({}), Severity::Medium),
        ] {
            assert_eq!(generic_severity(&value), expected, "{value}");
        }
    }

    #[test]
    fn generic_source_hashes_are_stable_and_sources_valid() {
        let a = alerts(r#"{"event":"same","time":1}"#);
        let b = alerts(r#"{"time":1,"event":"same"}"#);
        let c = alerts(r#"{"event":"same","time":2}"#);
        assert_eq!(
            a[0].source_ref, b[0].source_ref,
            "key order must not matter"
        );
        assert_ne!(a[0].source_ref, c[0].source_ref);
        for sourcetype in [
            None,
            Some(""),
            Some("_json"),
            Some("aws:cloudtrail"),
            Some("ÜBER type/ü"),
            Some(&*"long:".repeat(40)),
        ] {
            let source = generic_source(sourcetype);
            assert!(is_valid_source(&source), "{source}");
        }
        assert_eq!(
            generic_source(Some("aws:cloudtrail")),
            "splunk-hec.aws.cloudtrail"
        );
    }

    #[test]
    fn builtin_sourcetypes_use_their_format() {
        for (alias, source) in SOURCETYPE_ALIASES {
            assert_eq!(formats::canonical_source(source), Some(source), "{alias}");
            assert_eq!(builtin_source(&alias.to_uppercase()), Some(source));
        }
        assert_eq!(builtin_source("suricata"), Some("suricata-eve"));
        assert_eq!(builtin_source("wazuh-alerts"), Some("wazuh"));
        assert_eq!(builtin_source("syslog"), None);

        let eve = r#"{"timestamp":"2024-05-01T10:00:00.000000+0000","flow_id":42,
            "event_type":"alert","src_ip":"10.0.0.5","src_port":1234,"dest_ip":"203.0.113.9",
            "dest_port":80,"proto":"TCP","alert":{"signature_id":2001,"signature":"ET SCAN x",
            "category":"Attempted Recon","severity":2,"action":"allowed"}}"#;
        let body = format!(
            r#"{{"sourcetype":"suricata","host":"ids-1","time":1,"event":{eve}}}
               {{"sourcetype":"suricata:eve","event":{{"event_type":"flow","flow_id":1}}}}"#
        );
        let hec = alerts(&body);
        let webhook = formats::normalize("suricata-eve", eve.as_bytes(), 10)
            .unwrap()
            .alerts;
        assert_eq!(hec.len(), 1, "the flow record is not an alert");
        let (hec, webhook) = (&hec[0], &webhook[0]);
        assert_eq!(hec.source, "suricata-eve");
        assert_eq!(
            (
                &hec.title,
                hec.severity,
                &hec.source_ref,
                &hec.observables,
                hec.occurred_at_ms
            ),
            (
                &webhook.title,
                webhook.severity,
                &webhook.source_ref,
                &webhook.observables,
                webhook.occurred_at_ms
            )
        );
        let raw: Value = serde_json::from_str(&hec.raw_json).unwrap();
        assert_eq!(raw["alert"]["signature_id"], 2001);
        assert_eq!(
            raw["_hec"],
            json!({"sourcetype": "suricata", "host": "ids-1", "time": 1})
        );

        // An event the source cannot map is invalid data; a string event of a built-in
        // sourcetype is mapped generically.
        match parse(r#"{"event":"ok"}{"sourcetype":"wazuh","event":{"rule":{}}}"#)
            .and_then(|e| to_alerts(e, 10, 0))
        {
            Err(HecError::InvalidData {
                number: 1,
                reason:
                    InvalidEvent::Format {
                        format: "wazuh", ..
                    },
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            alerts(r#"{"sourcetype":"wazuh","event":"text"}"#)[0].source,
            "splunk-hec.wazuh"
        );
        let two = r#"{"event":"a"}{"event":"b"}"#;
        assert_eq!(
            to_alerts(parse(two).unwrap(), 1, 0),
            Err(HecError::TooMany { max: 1 })
        );
    }
}
