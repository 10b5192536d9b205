//! The dispatcher's reaper republishes a queued run whose job was lost, and only then: a run
//! published after the oldest job RUNS still holds may still have its job waiting there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tocsin_store::StoreError;
use tocsin_store::dispatch::Republish;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_runs_are_republished_only_when_their_job_cannot_still_be_queued() {
    let store = tocsin_tests::fresh_store().await.unwrap();
    let tenant = tocsin_tests::TENANT;
    tocsin_tests::deploy_manual_playbook(&store).await.unwrap();

    assert!(matches!(
        store.queue_runs_in_bulk(tenant, "absent", 3).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.queue_runs_in_bulk(tenant, "manual", 3).await.unwrap(),
        3
    );
    assert_eq!(store.run_queue_depth(tenant).await.unwrap(), (3, 3));
    let taken = store.take_outbox(10).await.unwrap();
    assert_eq!(taken.len(), 3);
    assert!(
        taken
            .iter()
            .all(|r| r.dispatch == 2 && r.playbook == "manual")
    );
    assert_eq!(store.run_queue_depth(tenant).await.unwrap(), (3, 0));

    // RUNS holds a job older than these runs' publication: theirs may be behind it.
    let an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let stale = Duration::ZERO;
    let woken = store
        .wake_due_runs(
            Republish::Stale {
                stale,
                before: Some(an_hour_ago),
            },
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(woken.runs_reaped, 0);
    // RUNS could not be inspected: nothing is republished either.
    let woken = store
        .wake_due_runs(Republish::Skip, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(woken.runs_reaped, 0);
    assert_eq!(store.run_queue_depth(tenant).await.unwrap(), (3, 0));

    // RUNS is empty: every job of a run still queued is gone; all go back to the outbox and
    // are published again under a new dispatch generation.
    let woken = store
        .wake_due_runs(
            Republish::Stale {
                stale,
                before: None,
            },
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(woken.runs_reaped, 3);
    let again = store.take_outbox(10).await.unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|r| r.dispatch == 3));

    // Not yet stale: published just now, with a five-minute threshold.
    let woken = store
        .wake_due_runs(
            Republish::Stale {
                stale: Duration::from_secs(300),
                before: None,
            },
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(woken.runs_reaped, 0);
}
