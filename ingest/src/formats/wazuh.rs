//! Wazuh alerts (`alerts.json` records), bare, as an indexer hit or Logstash event (the
//! record under `_source`), or as an OpenSearch search response (`hits.hits`).
//!
//! - title `rule.description`; description `full_log`, then rule id, level, agent, location.
//! - severity `rule.level` (0-15): 0-3 info, 4-6 low, 7-11 medium, 12-14 high, 15+
//!   critical (Wazuh's dashboard bands, with the "system notification / successful
//!   event" levels below 4 as info).
//! - occurred_at `timestamp`, else `@timestamp`.
//! - source_ref the alert `id`, else the indexer `_id`, else a hash of timestamp, rule
//!   and agent.
//! - observables `data.srcip`/`dstip`, `agent.ip` (ip); `agent.name`,
//!   `predecoder.hostname` (host); `data.srcuser`/`dstuser` (user, without PAM's
//!   `(uid=N)` suffix); `data.url` when absolute; syscheck hashes; URLs, e-mail
//!   addresses and IPv4 addresses in `full_log`.
//! - tags: MITRE ids, rule groups, CVE ids (`data.vulnerability.cve`, `rule.info`).

use serde_json::Value;
use tocsin_proto::types::Severity;

use super::extract::{
    Kind, Lines, first, first_number, first_time, required, severity_banded, source_ref,
};
use super::{Draft, EventError, Format, Outcome};

pub(super) const FORMAT: Format = Format {
    name: "wazuh",
    aliases: &["wazuh-alerts", "ossec"],
    envelopes: &["/hits/hits"],
    expand: None,
    text: None,
    map,
};

fn map(record: &Value) -> Result<Outcome, EventError> {
    let alert = record.get("_source").unwrap_or(record);
    let title = required(alert, &["rule/description"])?;
    let severity = first_number(alert, &["rule/level"]).map_or(Severity::Medium, |level| {
        severity_banded(
            level,
            &[
                (4.0, Severity::Info),
                (7.0, Severity::Low),
                (12.0, Severity::Medium),
                (15.0, Severity::High),
            ],
            Severity::Critical,
        )
    });
    let reference = first(alert, &["id"])
        .or_else(|| first(record, &["_id"]))
        .unwrap_or_else(|| source_ref(alert, &[], &["timestamp", "rule/id", "agent/id"]));
    let mut draft = Draft::new(title, severity, reference);
    draft.occurred_at_ms = first_time(alert, &["timestamp", "@timestamp"]);
    draft.description = Lines::default()
        .text(alert, &["full_log", "data/vulnerability/title"])
        .facts(
            alert,
            &[
                ("Rule", "rule/id"),
                ("Level", "rule/level"),
                ("Agent", "agent/name"),
                ("Location", "location"),
            ],
        )
        .join();
    let obs = &mut draft.observables;
    obs.collect(
        alert,
        &[
            (Kind::Ip, "data/srcip"),
            (Kind::Ip, "data/dstip"),
            (Kind::Ip, "agent/ip"),
            (Kind::Host, "agent/name"),
            (Kind::Host, "predecoder/hostname"),
            (Kind::Hash, "syscheck/md5_after"),
            (Kind::Hash, "syscheck/sha1_after"),
            (Kind::Hash, "syscheck/sha256_after"),
            (Kind::Url, "data/url"),
        ],
    );
    for path in ["data/srcuser", "data/dstuser"] {
        if let Some(user) = first(alert, &[path]) {
            // PAM's decoder writes `root(uid=0)`.
            let name = match user.split_once("(uid=") {
                Some((name, _)) => name,
                None => &user,
            };
            obs.add(Kind::User, name);
        }
    }
    obs.scan(alert, &["full_log"]);
    draft.tags.collect(
        alert,
        &["rule/mitre/id", "rule/groups", "data/vulnerability/cve"],
    );
    if let Some(info) = first(alert, &["rule/info"]) {
        for cve in cve_ids(&info) {
            draft.tags.add(cve);
        }
    }
    draft.alert()
}

/// `CVE-yyyy-nnnn...` ids written in free text.
fn cve_ids(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("CVE-").filter_map(|(start, _)| {
        let tail = text.get(start + 4..)?;
        let year = tail
            .get(..4)
            .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))?;
        let number_len = tail
            .get(5..)?
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        (tail.as_bytes().get(4) == Some(&b'-') && year.len() == 4 && number_len >= 4)
            .then(|| text.get(start..start + 9 + number_len))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cve_ids_in_free_text() {
        let ids: Vec<&str> =
            cve_ids("CVE-2014-6271https://x/?name=CVE-2014-6271, CVE-20-1 CVE-2021-44228")
                .collect();
        assert_eq!(ids, ["CVE-2014-6271", "CVE-2014-6271", "CVE-2021-44228"]);
    }
}
