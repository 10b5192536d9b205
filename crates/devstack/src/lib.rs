//! Private infrastructure for local use: a `nats-server` with JetStream and a PostgreSQL
//! cluster, each started as a child process on a free loopback port with its data under a
//! directory of ours. `tocsin dev`, the test harness and the benchmarks all start them the
//! same way. [`ServiceProcess`] runs a Tocsin service (the `scale-out` benchmark's worker
//! processes) under the same supervisor.
//!
//! Every child runs under a small `sh` supervisor whose stdin is a pipe from us. When we
//! close the pipe (a clean stop) or die (the kernel closes it), the supervisor stops the
//! server, so no server outlives the process that started it.
#![forbid(unsafe_code)]

mod nats;
mod postgres;
mod process;

pub use nats::{NatsServer, find_nats_server};
pub use postgres::{PgCluster, find_pg_bindir};
pub use process::{ServiceProcess, descendants, free_port};

/// Starting or stopping a private server failed.
#[derive(Debug, thiserror::Error)]
pub enum DevStackError {
    /// A required program is not installed.
    #[error("{program} not found: {hint}")]
    NotFound {
        /// Program name.
        program: &'static str,
        /// How to get it.
        hint: &'static str,
    },
    /// Spawning or talking to a child failed.
    #[error("failed to {action}")]
    Io {
        /// What we were doing.
        action: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A server did not become ready in time.
    #[error("{server} did not become ready within {secs} s; see {log}")]
    NotReady {
        /// Which server.
        server: &'static str,
        /// How long we waited.
        secs: u64,
        /// Its log file.
        log: String,
    },
    /// A command failed.
    #[error("{command} failed: {output}")]
    Command {
        /// Command line.
        command: String,
        /// What it printed.
        output: String,
    },
    /// A database statement failed.
    #[error("database setup failed")]
    Sql(#[from] sqlx::Error),
}

impl DevStackError {
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| DevStackError::Io { action, source }
    }
}
