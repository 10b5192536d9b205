//! AWS Security Hub findings in ASFF: bare, as `Findings` (BatchImportFindings /
//! GetFindings), or inside an EventBridge "Security Hub Findings - Imported" event
//! (`detail.findings`).
//!
//! - title `Title`; description `Description`, then control id, resources, account,
//!   region.
//! - severity `Severity.Label` (INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL), else
//!   `FindingProviderFields.Severity.Label`, else `Severity.Normalized` (0-100): 0 info,
//!   1-39 low, 40-69 medium, 70-89 high, 90-100 critical (ASFF's own bands).
//! - occurred_at `FirstObservedAt`, else `CreatedAt`, `UpdatedAt`.
//! - source_ref `ProductArn/Id` (Security Hub's `aws/securityhub/FindingId`: `Id` is only
//!   unique within its product), else `Id`.
//! - observables network and action addresses (ip), domains, EC2 instance ids (host), IAM
//!   user and access-key user names (user), threat-intel indicators by type, file and
//!   process hashes.
//! - tags control id, `compliance:<status>`, `workflow:<status>`, `record:<state>`.
//!   PASSED findings are kept as alerts (Security Hub sends them as INFORMATIONAL updates
//!   that close an earlier FAILED finding); the tags let playbooks tell them apart.

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{
    COMMON_SEVERITIES, Kind, Lines, first, first_number, first_severity, first_time, required,
    severity_from_percent, texts,
};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "aws-securityhub-asff",
    aliases: &["securityhub", "aws-securityhub", "asff"],
    envelopes: &["/detail", "/findings", "/Findings"],
    expand: None,
    text: None,
    map,
};

/// ASFF `ThreatIntelIndicators[].Type` values and the observable each one is.
const INDICATORS: [(&str, &str, Kind); 7] = [
    ("IPV4_ADDRESS", "Value", Kind::Ip),
    ("IPV6_ADDRESS", "Value", Kind::Ip),
    ("DOMAIN", "Value", Kind::Domain),
    ("URL", "Value", Kind::Url),
    ("EMAIL_ADDRESS", "Value", Kind::Email),
    ("HASH_MD5", "Value", Kind::Hash),
    ("HASH_SHA256", "Value", Kind::Hash),
];

fn map(finding: &Value) -> Result<Outcome, EventError> {
    let title = required(finding, &["Title"])?;
    let severity = first_severity(
        finding,
        &["Severity/Label", "FindingProviderFields/Severity/Label"],
        &COMMON_SEVERITIES,
    )
    .or_else(|| first_number(finding, &["Severity/Normalized"]).map(severity_from_percent))
    .unwrap_or(Severity::Medium);
    let id = required(finding, &["Id"])?;
    let reference = match first(finding, &["ProductArn"]) {
        Some(product) => format!("{product}/{id}"),
        None => id,
    };
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(finding, &["FirstObservedAt", "CreatedAt", "UpdatedAt"]);
    draft.description = Lines::default()
        .text(finding, &["Description"])
        .facts(
            finding,
            &[
                ("Control", "ProductFields/ControlId"),
                ("Resources", "Resources/[]/Id"),
                ("Account", "AwsAccountId"),
                ("Region", "Region"),
            ],
        )
        .join();
    let obs = &mut draft.observables;
    obs.collect(
        finding,
        &[
            (Kind::Ip, "Network/SourceIpV4"),
            (Kind::Ip, "Network/SourceIpV6"),
            (Kind::Ip, "Network/DestinationIpV4"),
            (Kind::Ip, "Network/DestinationIpV6"),
            (Kind::Ip, "Action/**/IpAddressV4"),
            (
                Kind::Ip,
                "Resources/[]/Details/AwsEc2Instance/IpV4Addresses",
            ),
            (
                Kind::Ip,
                "Resources/[]/Details/AwsEc2Instance/IpV6Addresses",
            ),
            (Kind::Domain, "Network/SourceDomain"),
            (Kind::Domain, "Network/DestinationDomain"),
            (Kind::Domain, "Action/DnsRequestAction/Domain"),
            (Kind::User, "Resources/[]/Details/AwsIamUser/UserName"),
            (Kind::User, "Resources/[]/Details/AwsIamAccessKey/UserName"),
            (
                Kind::User,
                "Resources/[]/Details/AwsIamAccessKey/PrincipalName",
            ),
            (Kind::Hash, "Malware/[]/Hash"),
            (Kind::Hash, "Threats/[]/FilePaths/[]/Hash"),
        ],
    );
    for resource in texts(finding, "Resources/[]/Id") {
        // arn:aws:ec2:<region>:<account>:instance/i-...
        if let Some(instance) = resource.split_once(":instance/").map(|(_, id)| id) {
            obs.add(Kind::Host, instance);
        }
    }
    obs.collect_typed(finding, "ThreatIntelIndicators/[]", "Type", &INDICATORS);
    let tags = &mut draft.tags;
    tags.collect(finding, &["ProductFields/ControlId"]);
    tags.labelled(finding, "compliance", "Compliance/Status");
    tags.labelled(finding, "workflow", "Workflow/Status");
    tags.labelled(finding, "record", "RecordState");
    draft.alert()
}
