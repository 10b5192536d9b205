//! Cooperative shutdown: one [`CancellationToken`] every long-lived task selects on, and one
//! [`TaskTracker`] every long-lived task is spawned through, so the owner can wait for all of
//! them to finish within the grace period.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Shutdown handle passed to each service's `run`.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh handle that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle whose token is a child of this one (cancelled with it, or on its own), with
    /// its own tracker. Used to give each in-process service its own drain.
    pub fn child(&self) -> Self {
        Self {
            token: self.token.child_token(),
            tracker: TaskTracker::new(),
        }
    }

    /// The token to select on at safe points.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Requests shutdown.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Whether shutdown was requested.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown is requested.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// Spawns a named task on the tracker, inside its own (DEBUG) span: at the default
    /// level the task's spans and events hang under the caller's span, or start a trace.
    pub fn spawn<F>(&self, name: &'static str, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let span = tracing::debug_span!("task", task = name);
        self.tracker.spawn(fut.instrument(span))
    }

    /// Closes the tracker and waits up to `grace` for every tracked task to finish. Returns
    /// whether all of them did.
    pub async fn wait_tasks(&self, grace: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Resolves on the first SIGTERM or SIGINT. A second signal exits the process at once with
/// status 130, for an operator who does not want to wait for the drain.
pub async fn signal() {
    wait_for_signal().await;
    tracing::info!("shutdown signal received; draining (send again to exit immediately)");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second shutdown signal; exiting immediately");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Installing handlers only fails when the runtime has no signal driver; fall back
            // to Ctrl-C so shutdown still works.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_tasks_reports_tasks_that_outlive_the_grace() {
        let shutdown = Shutdown::new();
        let child = shutdown.child();
        let token = child.token().clone();
        child.spawn("cooperative", async move { token.cancelled().await });
        child.spawn("stubborn", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        shutdown.cancel();
        assert!(child.is_cancelled());
        assert!(!child.wait_tasks(Duration::from_millis(50)).await);
    }
}
