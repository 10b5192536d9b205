//! Stream and subject names, defined once for every service.
//!
//! | stream   | subjects                          | retention  | what flows                          |
//! |----------|-----------------------------------|------------|-------------------------------------|
//! | `ALERTS` | `tocsin.alerts.<tenant>`          | limits     | normalized [`Alert`](crate::v1::Alert)s, the replayable log |
//! | `RUNS`   | `tocsin.runs.<tenant>.<lane>`     | work queue | [`RunJob`](crate::v1::RunJob)s for workers |
//! | `INGEST` | `tocsin.ingest.<tenant>.<source>` | limits     | raw events SIEMs publish (JSON, as to `/v1/webhooks/<source>`) |

/// Name of the stream holding normalized alerts.
pub const ALERTS_STREAM: &str = "ALERTS";
/// Subject filter covering every tenant's alerts.
pub const ALERTS_SUBJECTS: &str = "tocsin.alerts.>";
/// Name of the work-queue stream holding run jobs.
pub const RUNS_STREAM: &str = "RUNS";
/// Subject filter covering every tenant's run jobs.
pub const RUNS_SUBJECTS: &str = "tocsin.runs.>";
/// Name of the stream raw events are published to by SIEMs (NATS intake).
pub const INGEST_STREAM: &str = "INGEST";
/// Subject filter covering every tenant's raw events.
pub const INGEST_SUBJECTS: &str = "tocsin.ingest.>";
/// Durable consumer name ingest uses on [`INGEST_STREAM`].
pub const INGEST_CONSUMER: &str = "ingest";
/// Durable consumer name the scheduler uses on [`ALERTS_STREAM`].
pub const SCHEDULER_CONSUMER: &str = "scheduler";
/// Durable consumer name of the default worker pool on [`RUNS_STREAM`].
pub const WORKER_CONSUMER: &str = "workers";
/// Header carrying the broker-side dedup id of a publish.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Subject an alert of `tenant` is published on.
pub fn alert_subject(tenant: &str) -> String {
    format!("tocsin.alerts.{tenant}")
}

/// Subject a run job of `tenant` in `lane` (the playbook priority) is published on.
pub fn run_subject(tenant: &str, lane: &str) -> String {
    format!("tocsin.runs.{tenant}.{lane}")
}

/// Subject a SIEM publishes raw events of `tenant` in format `source` on.
pub fn ingest_subject(tenant: &str, source: &str) -> String {
    format!("tocsin.ingest.{tenant}.{source}")
}

/// The tenant and source of an ingest subject (`tocsin.ingest.<tenant>.<source>`).
pub fn parse_ingest_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix("tocsin.ingest.")?;
    let (tenant, source) = rest.split_once('.')?;
    (!tenant.is_empty() && !source.is_empty() && !source.contains('.')).then_some((tenant, source))
}

/// Broker dedup id of a run job dispatch.
pub fn run_msg_id(run_id: &str, dispatch: u32) -> String {
    format!("run.{run_id}.{dispatch}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fall_under_their_stream_filters() {
        assert!(alert_subject("acme").starts_with(ALERTS_SUBJECTS.trim_end_matches('>')));
        assert!(run_subject("acme", "high").starts_with(RUNS_SUBJECTS.trim_end_matches('>')));
        assert_eq!(run_msg_id("r1", 2), "run.r1.2");
        let subject = ingest_subject("acme", "suricata-eve");
        assert!(subject.starts_with(INGEST_SUBJECTS.trim_end_matches('>')));
        assert_eq!(
            parse_ingest_subject(&subject),
            Some(("acme", "suricata-eve"))
        );
        assert_eq!(parse_ingest_subject("tocsin.ingest.acme"), None);
        assert_eq!(parse_ingest_subject("tocsin.ingest.acme.a.b"), None);
    }
}
