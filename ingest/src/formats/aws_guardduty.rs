//! Amazon GuardDuty findings: bare, as the `detail` of an EventBridge "GuardDuty Finding"
//! event, or as a `findings` list (GetFindings).
//!
//! - title `title`, else `type`; description `description`, then type, account, region.
//! - severity `severity` (1.0-10.0): below 4 low, below 7 medium, below 9 high, else
//!   critical (GuardDuty's own bands; critical exists for attack sequences).
//! - occurred_at `service.eventFirstSeen`, else `createdAt`, `updatedAt`.
//! - source_ref `id`, else `arn`.
//! - observables every `ipAddressV4`/`ipAddressV6` under `service.action` (network,
//!   API-call, port-probe, DNS, Kubernetes actions); the instance's interface addresses
//!   (ip); instance id and DNS names (host); access-key and Kubernetes user names (user);
//!   DNS request domains; malware-scan file hashes.
//! - tags: the finding `type`'s threat purpose (`Recon`, `PenTest`, ...).

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{Kind, Lines, first, first_number, first_time, required, severity_banded};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "aws-guardduty",
    aliases: &["guardduty", "amazon-guardduty"],
    envelopes: &["/detail", "/findings", "/Findings"],
    expand: None,
    text: None,
    map,
};

const NETWORK_INTERFACES: &str = "resource/instanceDetails/networkInterfaces/[]";

fn map(finding: &Value) -> Result<Outcome, EventError> {
    let title = required(finding, &["title", "type"])?;
    let severity = first_number(finding, &["severity"]).map_or(Severity::Medium, |score| {
        severity_banded(
            score,
            &[
                (4.0, Severity::Low),
                (7.0, Severity::Medium),
                (9.0, Severity::High),
            ],
            Severity::Critical,
        )
    });
    let reference = required(finding, &["id", "arn"])?;
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(
        finding,
        &["service/eventFirstSeen", "createdAt", "updatedAt"],
    );
    draft.description = Lines::default()
        .text(finding, &["description"])
        .facts(
            finding,
            &[
                ("Type", "type"),
                ("Account", "accountId"),
                ("Region", "region"),
                ("Resource", "resource/resourceType"),
            ],
        )
        .join();
    draft.observables.collect(
        finding,
        &[
            (Kind::Ip, "service/action/**/ipAddressV4"),
            (Kind::Ip, "service/action/**/ipAddressV6"),
            (Kind::Ip, &format!("{NETWORK_INTERFACES}/privateIpAddress")),
            (
                Kind::Ip,
                &format!("{NETWORK_INTERFACES}/privateIpAddresses/[]/privateIpAddress"),
            ),
            (Kind::Ip, &format!("{NETWORK_INTERFACES}/publicIp")),
            (Kind::Ip, &format!("{NETWORK_INTERFACES}/ipv6Addresses")),
            (Kind::Host, "resource/instanceDetails/instanceId"),
            (Kind::Host, &format!("{NETWORK_INTERFACES}/privateDnsName")),
            (Kind::Host, &format!("{NETWORK_INTERFACES}/publicDnsName")),
            (Kind::User, "resource/accessKeyDetails/userName"),
            (
                Kind::User,
                "resource/kubernetesDetails/kubernetesUserDetails/username",
            ),
            (Kind::Domain, "service/action/dnsRequestAction/domain"),
            (Kind::Hash, "service/ebsVolumeScanDetails/**/hash"),
        ],
    );
    if let Some((purpose, _)) = first(finding, &["type"])
        .as_deref()
        .and_then(|t| t.split_once(':'))
    {
        draft.tags.add(purpose);
    }
    draft.alert()
}
