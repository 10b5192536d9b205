//! Microsoft Defender, three shapes, bare or in a `value` list (also the
//! `responses."200".body` of an Azure REST API example):
//!
//! - Microsoft Graph `security/alerts_v2` alerts (Defender XDR): title `title`;
//!   occurred_at `firstActivityDateTime`, else `createdDateTime`; source_ref `id`;
//!   observables from `evidence[]` (device DNS names and IPs, file and process hashes,
//!   user accounts, IP, URL and mail evidence); tags `mitreTechniques[]`.
//! - Defender for Cloud alerts (`Microsoft.Security/locations/alerts`, fields under
//!   `properties`), shared with Sentinel's SecurityAlert: see [`map_arm_alert`].
//! - Microsoft 365 Defender incidents (`incidentName`, `alerts[]`): see
//!   [`map_m365_incident`]; one alert per incident.
//!
//! Severity everywhere: informational info, low, medium, high (Defender has no critical);
//! `unknown`/absent medium. `alertWebUrl`, `incidentWebUrl`, `alertUri` are console links,
//! not observables.

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{
    COMMON_SEVERITIES, Kind, Lines, first, first_severity, first_time, required, texts,
};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "microsoft-defender",
    aliases: &[
        "defender",
        "microsoft-365-defender",
        "m365-defender",
        "defender-xdr",
        "defender-for-cloud",
        "graph-security",
    ],
    envelopes: AZURE_ENVELOPES,
    expand: None,
    text: None,
    map,
};

/// A `value` list (Graph and ARM list responses) and an Azure REST API example file.
pub(super) const AZURE_ENVELOPES: &[&str] = &["/responses/200/body", "/value"];

fn map(event: &Value) -> Result<Outcome, EventError> {
    if event.get("incidentName").is_some() || event.get("alerts").is_some_and(Value::is_array) {
        map_m365_incident(event)
    } else if event.pointer("/properties/alertDisplayName").is_some() {
        map_arm_alert(event)
    } else {
        map_graph_alert(event)
    }
}

fn severity(value: &Value, paths: &[&str]) -> Severity {
    first_severity(value, paths, &COMMON_SEVERITIES).unwrap_or(Severity::Medium)
}

fn map_graph_alert(alert: &Value) -> Result<Outcome, EventError> {
    let title = required(alert, &["title"])?;
    let reference = required(alert, &["id", "providerAlertId"])?;
    let mut draft = Draft::new(title, severity(alert, &["severity"]), reference);
    draft.occurred_at_ms = first_time(
        alert,
        &[
            "firstActivityDateTime",
            "createdDateTime",
            "lastUpdateDateTime",
        ],
    );
    draft.description = Lines::default()
        .text(alert, &["description"])
        .facts(
            alert,
            &[
                ("Category", "category"),
                ("Service", "serviceSource"),
                ("Detection", "detectionSource"),
                ("Incident", "incidentId"),
                ("Threat", "threatDisplayName"),
            ],
        )
        .join();
    draft.observables.collect(
        alert,
        &[
            (Kind::Host, "evidence/[]/deviceDnsName"),
            (Kind::Ip, "evidence/[]/ipInterfaces"),
            (Kind::Ip, "evidence/[]/ipAddress"),
            (Kind::Ip, "evidence/[]/senderIp"),
            (Kind::Email, "evidence/[]/p1Sender/emailAddress"),
            (Kind::Email, "evidence/[]/p2Sender/emailAddress"),
            (Kind::Url, "evidence/[]/url"),
            (Kind::Url, "evidence/[]/urls"),
            (Kind::Hash, "evidence/[]/**/sha256"),
            (Kind::Hash, "evidence/[]/**/sha1"),
            (Kind::Hash, "evidence/[]/**/md5"),
            (Kind::User, "evidence/[]/**/accountName"),
            (Kind::User, "evidence/[]/**/userPrincipalName"),
            (Kind::User, "evidence/[]/recipientEmailAddress"),
            (Kind::User, "evidence/[]/primaryAddress"),
        ],
    );
    draft.tags.collect(alert, &["mitreTechniques"]);
    draft.alert()
}

/// Entity types of Azure security alerts (`properties.entities[].type`) and the fields
/// that are observables.
const ARM_ENTITIES: [(&str, &str, Kind); 11] = [
    ("ip", "address", Kind::Ip),
    ("host", "hostName", Kind::Host),
    ("host", "netBiosName", Kind::Host),
    ("account", "name", Kind::User),
    ("url", "url", Kind::Url),
    ("dns", "domainName", Kind::Domain),
    ("filehash", "value", Kind::Hash),
    ("mailbox", "mailboxPrimaryAddress", Kind::User),
    ("mailbox", "upn", Kind::User),
    ("mail-message", "p1Sender", Kind::Email),
    ("mail-message", "recipient", Kind::User),
];

/// An Azure Resource Manager security alert: Defender for Cloud's
/// `Microsoft.Security/locations/alerts` and Sentinel's `SecurityAlert` entity.
///
/// - title `properties.alertDisplayName`; description `properties.description`, then
///   intent, product and the compromised entity.
/// - occurred_at `startTimeUtc`, else `timeGeneratedUtc` / `timeGenerated`.
/// - source_ref `properties.systemAlertId`, else `name`.
/// - observables `properties.entities[]` by type, `compromisedEntity` and the virtual
///   machines named in `resourceIdentifiers[].azureResourceId` (host).
/// - tags `tactics[]`, `techniques[]`, `subTechniques[]`.
pub(super) fn map_arm_alert(alert: &Value) -> Result<Outcome, EventError> {
    let props = alert.get("properties").unwrap_or(alert);
    let title = required(props, &["alertDisplayName", "displayName"])?;
    let reference = first(props, &["systemAlertId"])
        .or_else(|| first(alert, &["name"]))
        .ok_or(EventError::Missing {
            field: "properties/systemAlertId",
        })?;
    let mut draft = Draft::new(title, severity(props, &["severity"]), reference);
    draft.occurred_at_ms = first_time(
        props,
        &["startTimeUtc", "timeGeneratedUtc", "timeGenerated"],
    );
    draft.description = Lines::default()
        .text(props, &["description"])
        .facts(
            props,
            &[
                ("Intent", "intent"),
                ("Product", "productName"),
                ("Compromised entity", "compromisedEntity"),
                ("Remediation", "remediationSteps"),
            ],
        )
        .join();
    let obs = &mut draft.observables;
    obs.collect_typed(props, "entities/[]", "type", &ARM_ENTITIES);
    obs.collect(props, &[(Kind::Host, "compromisedEntity")]);
    for resource in texts(props, "resourceIdentifiers/[]/azureResourceId") {
        if let Some((_, vm)) = resource.rsplit_once("/virtualMachines/") {
            obs.add(Kind::Host, vm);
        }
    }
    draft
        .tags
        .collect(props, &["tactics", "techniques", "subTechniques"]);
    draft.alert()
}

/// A Microsoft 365 Defender incident (`/api/incidents`), one alert per incident.
///
/// - title `incidentName`; description the descriptions of its alerts.
/// - occurred_at the first alert's `firstActivity`, else `createdTime`.
/// - source_ref `incidentId`.
/// - observables from `alerts[].entities[]` and `alerts[].devices[]`: the mail sender
///   first (email), then mailboxes and recipients (user: the reporting or receiving
///   mailboxes), accounts, IPs, URLs, hashes and device names.
/// - tags `tags[]` and `alerts[].mitreTechniques[]`.
pub(super) fn map_m365_incident(incident: &Value) -> Result<Outcome, EventError> {
    let title = required(incident, &["incidentName", "alerts/[]/title"])?;
    let reference = required(incident, &["incidentId"])?;
    let mut draft = Draft::new(title, severity(incident, &["severity"]), reference);
    draft.occurred_at_ms = first_time(incident, &["alerts/[]/firstActivity", "createdTime"]);
    let mut lines = Lines::default();
    for text in texts(incident, "alerts/[]/description") {
        lines.push(text.into_owned());
    }
    draft.description = lines
        .facts(
            incident,
            &[
                ("Classification", "classification"),
                ("Determination", "determination"),
                ("Subject", "alerts/[]/entities/[]/subject"),
            ],
        )
        .join();
    draft.observables.collect(
        incident,
        &[
            (Kind::Email, "alerts/[]/entities/[]/sender"),
            (Kind::User, "alerts/[]/entities/[]/mailboxAddress"),
            (Kind::User, "alerts/[]/entities/[]/recipient"),
            (Kind::User, "alerts/[]/entities/[]/userPrincipalName"),
            (Kind::User, "alerts/[]/entities/[]/accountName"),
            (Kind::Ip, "alerts/[]/entities/[]/ipAddress"),
            (Kind::Url, "alerts/[]/entities/[]/url"),
            (Kind::Hash, "alerts/[]/entities/[]/sha256"),
            (Kind::Hash, "alerts/[]/entities/[]/sha1"),
            (Kind::Host, "alerts/[]/devices/[]/deviceDnsName"),
        ],
    );
    draft
        .tags
        .collect(incident, &["tags", "alerts/[]/mitreTechniques"]);
    draft.alert()
}
