//! The dispatch outbox: runs waiting to be published to RUNS (`status = 'queued' AND
//! dispatched_at IS NULL`), the wake-ups that put suspended runs back there, and the reaper
//! that re-dispatches runs whose job may have been lost. Postgres is the system of record;
//! NATS only carries the work.

use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::alerts::QueuedRun;
use crate::{Store, StoreError};

/// The channel NOTIFYed whenever something may be ready to dispatch.
pub const DISPATCH_CHANNEL: &str = "tocsin_dispatch";

/// What one wake-up pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Woken {
    /// Approvals that passed their timeout (their default decision applies).
    pub approvals_expired: u64,
    /// Runs put back in the outbox (decided approvals, fired timers).
    pub runs_resumed: u64,
    /// Runs re-dispatched by the reaper.
    pub runs_reaped: u64,
}

/// Which queued runs, published but not claimed, the reaper publishes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Republish {
    /// None (whether their jobs are still queued could not be told).
    Skip,
    /// Those published more than `stale` ago, and before `before` when given. A job still
    /// waiting in RUNS is not lost: the dispatcher passes the time of the oldest job RUNS
    /// holds (less a margin for clock skew), so that a deep queue is not published twice.
    Stale {
        /// How long a published run may stay unclaimed before its job is presumed lost.
        stale: Duration,
        /// Only runs published before this.
        before: Option<time::OffsetDateTime>,
    },
}

impl Store {
    /// Times out expired approvals, and requeues runs whose approvals are all decided and
    /// runs whose timer fired. Also reaps: queued runs whose job `republish` says is lost,
    /// and running runs whose lease expired more than `lease_grace` ago, go back to the
    /// outbox (the epoch fences a late worker).
    pub async fn wake_due_runs(
        &self,
        republish: Republish,
        lease_grace: Duration,
    ) -> Result<Woken, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        let approvals_expired = sqlx::query(
            "UPDATE approvals SET status = 'timed_out', decided_at = now()
             WHERE status = 'pending' AND expires_at <= now()",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let resumed_approvals = sqlx::query(
            "UPDATE runs SET status = 'queued', dispatched_at = NULL, updated_at = now()
             WHERE status = 'waiting_approval'
               AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.run_id = runs.id AND a.status = 'pending')",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let resumed_sleepers = sqlx::query(
            "UPDATE runs SET status = 'queued', dispatched_at = NULL, resume_at = NULL, updated_at = now()
             WHERE status = 'sleeping' AND resume_at <= now()",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let reaped_queued = match republish {
            Republish::Skip => 0,
            Republish::Stale { stale, before } => sqlx::query(
                "UPDATE runs SET dispatched_at = NULL
                 WHERE status = 'queued' AND dispatched_at < now() - make_interval(secs => $1)
                   AND ($2::timestamptz IS NULL OR dispatched_at < $2)",
            )
            .bind(stale.as_secs_f64())
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        let reaped_running = sqlx::query(
            "UPDATE runs SET status = 'queued', dispatched_at = NULL, lease_until = NULL, updated_at = now()
             WHERE status = 'running' AND lease_until < now() - make_interval(secs => $1)",
        )
        .bind(lease_grace.as_secs_f64())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Woken {
            approvals_expired,
            runs_resumed: resumed_approvals + resumed_sleepers,
            runs_reaped: reaped_queued + reaped_running,
        })
    }

    /// Takes up to `limit` runs from the outbox, marking them dispatched (and bumping their
    /// dispatch generation). The caller publishes them, and returns the ones it could not
    /// publish with [`Store::return_to_outbox`].
    pub async fn take_outbox(&self, limit: i64) -> Result<Vec<QueuedRun>, StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        let runs = sqlx::query_as(
            "UPDATE runs SET dispatched_at = now(), dispatch = dispatch + 1
             WHERE id IN (
                SELECT id FROM runs WHERE status = 'queued' AND dispatched_at IS NULL
                ORDER BY queued_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, tenant_id, alert_id, playbook, bundle_hash, priority, dispatch,
                       traceparent",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(runs)
    }

    /// Puts runs whose publish failed back into the outbox.
    pub async fn return_to_outbox(&self, ids: &[uuid::Uuid]) -> Result<(), StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        sqlx::query(
            "UPDATE runs SET dispatched_at = NULL WHERE id = ANY($1) AND status = 'queued'",
        )
        .bind(ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A listener woken by every NOTIFY on [`DISPATCH_CHANNEL`].
    pub async fn dispatch_listener(&self) -> Result<PgListener, StoreError> {
        self.listener(DISPATCH_CHANNEL).await
    }

    /// A listener for NOTIFYs on `channel`.
    pub async fn listener(&self, channel: &str) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen(channel).await?;
        Ok(listener)
    }

    /// Records a message that could not be processed, so it is never silently gone.
    pub async fn record_dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), StoreError> {
        let mut tx = self.begin(crate::Scope::from(letter.tenant)).await?;
        sqlx::query(
            "INSERT INTO dead_letters (tenant_id, stream, subject, payload, reason, deliveries)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(letter.tenant)
        .bind(letter.stream)
        .bind(letter.subject)
        .bind(letter.payload)
        .bind(letter.reason)
        .bind(letter.deliveries)
        .execute(&mut *tx)
        .await?;
        tocsin_core::metrics::registry().inc_by(
            "tocsin_dead_letters_total",
            "Messages set aside after repeated failures, by stream",
            &["stream"],
            &[letter.stream],
            1.0,
        );
        tx.commit().await?;
        Ok(())
    }

    /// Sets a run aside as dead-lettered (unless it already ended).
    pub async fn dead_letter_run(
        &self,
        run_id: uuid::Uuid,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(crate::Scope::System).await?;
        sqlx::query(
            "UPDATE runs SET status = 'dead_lettered', error = $2, finished_at = now(),
                    updated_at = now(), lease_until = NULL
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(run_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A message set aside.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Tenant, when known.
    pub tenant: Option<&'a str>,
    /// Stream it came from.
    pub stream: &'a str,
    /// Its subject.
    pub subject: &'a str,
    /// The raw message.
    pub payload: &'a [u8],
    /// Why it was set aside.
    pub reason: &'a str,
    /// How many times it was delivered.
    pub deliveries: i32,
}
