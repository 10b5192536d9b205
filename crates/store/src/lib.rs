//! `tocsin-store` is the only crate that speaks SQL. It owns the migrations and every query,
//! and scopes every tenant-owned read and write by tenant id. Services hold a cloneable
//! [`Store`] and call one function per operation; multi-statement operations run in one
//! transaction inside the function that owns them.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod approvals;
pub mod audit;
pub mod bundles;
pub mod cases;
pub mod dispatch;
mod error;
pub mod extract;
pub mod grouping;
pub mod keys;
pub mod observables;
pub mod operator;
pub mod page;
pub mod runs;
pub mod secrets;
pub mod system;
pub mod tenants;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tocsin_core::config::PostgresConfig;

pub use error::StoreError;

/// Embedded migrations (`crates/store/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Opens a pool. Fails when the database cannot be reached within the acquire timeout.
    pub async fn connect(config: &PostgresConfig) -> Result<Self, StoreError> {
        let options: PgConnectOptions = config
            .url
            .expose()
            .parse::<PgConnectOptions>()
            .map_err(StoreError::from_sqlx)?
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool (tests).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies pending migrations. Safe to run concurrently: sqlx takes an advisory lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migrate(Box::new(e)))
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Closes the pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}
