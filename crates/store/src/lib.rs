//! `tocsin-store` is the only crate that speaks SQL. It owns the migrations and every query,
//! and scopes every tenant-owned read and write by tenant id. Services hold a cloneable
//! [`Store`] and call one function per operation; multi-statement operations run in one
//! transaction inside the function that owns them.
//!
//! Tenant isolation is enforced twice: every query filters by tenant id, and PostgreSQL's
//! row-level security does it again underneath. The pool's connections act as the role
//! [`APP_ROLE`] (`SET ROLE` at connect), which owns no table and has no `BYPASSRLS`; every
//! statement runs in a transaction that first sets `tocsin.tenant` with
//! `set_config(.., true)` (transaction-local, so a pooled connection cannot carry it over).
//! A tenant's transactions see only its rows; the system scope (`*`, for cross-tenant
//! machinery: key lookup before the tenant is known, the dispatcher's outbox, timers) sees
//! all; a transaction that sets nothing sees nothing.
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
pub mod mappings;
pub mod observables;
pub mod operator;
pub mod page;
pub mod rejected;
pub mod runs;
pub mod secrets;
pub mod system;
pub mod tenants;
pub mod webhooks;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool, Postgres, Transaction};
use tocsin_core::config::PostgresConfig;

pub use error::StoreError;

/// Embedded migrations (`crates/store/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The role the services' connections act as: owns no table, no `BYPASSRLS`, and holds only
/// data privileges (created by the migrations).
pub const APP_ROLE: &str = "tocsin_app";

/// Which rows a transaction may see under row-level security.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// One tenant's rows.
    Tenant(&'a str),
    /// Every tenant's (the platform's own cross-tenant machinery).
    System,
}

impl<'a> From<Option<&'a str>> for Scope<'a> {
    fn from(tenant: Option<&'a str>) -> Self {
        tenant.map_or(Scope::System, Scope::Tenant)
    }
}

/// When a transaction's commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Once the commit is on disk (the server's `synchronous_commit` setting).
    Durable,
    /// Before the commit is on disk (`synchronous_commit = off` for this transaction): a
    /// server crash may lose it, unless a later durable commit has been acknowledged, which
    /// flushes everything committed before it (the WAL is written in order). Only for
    /// records whose loss that later commit covers, as a step's outcome (see
    /// [`Store::record_step_outcome`]).
    Deferred,
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// For migrations, which run as the connecting (owner) role, not as [`APP_ROLE`].
    owner: Option<PgConnectOptions>,
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
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // A role that does not exist yet means the migrations have not run.
                    conn.execute(format!("SET ROLE {APP_ROLE}").as_str())
                        .await
                        .map(|_| ())
                })
            })
            .connect_lazy_with(options.clone());
        // Connect now (as the connecting role), so that an unreachable database fails here;
        // the pool's own connections come lazily, as APP_ROLE, which the migrations create.
        let mut conn = tokio::time::timeout(
            config.acquire_timeout,
            sqlx::PgConnection::connect_with(&options),
        )
        .await
        .map_err(|_| StoreError::from_sqlx(sqlx::Error::PoolTimedOut))?
        .map_err(StoreError::from_sqlx)?;
        let role: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(APP_ROLE)
            .fetch_optional(&mut conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        let _ = conn.close().await;
        if role.is_none() {
            // Normal right before `tocsin migrate`; a service started without migrating
            // fails its queries until the migrations have created the role.
            tracing::info!(
                role = APP_ROLE,
                "the database has no application role yet (`tocsin migrate` creates it)"
            );
        }
        Ok(Self {
            pool,
            owner: Some(options),
        })
    }

    /// Wraps an existing pool (tests of the API's routing, which never reach the database).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool, owner: None }
    }

    /// Applies pending migrations as the connecting role (the tables' owner). Safe to run
    /// concurrently: sqlx takes an advisory lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let Some(owner) = &self.owner else {
            return MIGRATOR
                .run(&self.pool)
                .await
                .map_err(|e| StoreError::Migrate(Box::new(e)));
        };
        let mut conn = sqlx::PgConnection::connect_with(owner)
            .await
            .map_err(StoreError::from_sqlx)?;
        let result = MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| StoreError::Migrate(Box::new(e)));
        let _ = conn.close().await;
        result
    }

    /// Begins a transaction that sees the rows of `scope` only (see the crate docs).
    ///
    /// `BEGIN` and the `set_config` go to the server as one simple query, one round trip
    /// instead of two. That is the one place a value is written into SQL text rather than
    /// bound, so only `*` and tenant ids of the strict grammar
    /// (`[a-z0-9][a-z0-9-]{0,62}`, [`tocsin_proto::types::is_valid_tenant_id`], which no
    /// quote or backslash can pass) get there; any other tenant id is refused as unknown.
    pub(crate) async fn begin(
        &self,
        scope: Scope<'_>,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.begin_with(scope, Commit::Durable).await
    }

    /// [`Store::begin`], with the commit's durability chosen by `commit`.
    pub(crate) async fn begin_with(
        &self,
        scope: Scope<'_>,
        commit: Commit,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let value = match scope {
            Scope::Tenant(tenant) if tocsin_proto::types::is_valid_tenant_id(tenant) => tenant,
            Scope::Tenant(_) => return Err(StoreError::NotFound { entity: "tenant" }),
            Scope::System => "*",
        };
        debug_assert!(value.bytes().all(|b| b != b'\'' && b != b'\\'));
        Ok(self
            .pool
            .begin_with(format!(
                "BEGIN; SELECT set_config('tocsin.tenant', '{value}', true){}",
                match commit {
                    Commit::Durable => "",
                    Commit::Deferred => "; SET LOCAL synchronous_commit = off",
                }
            ))
            .await?)
    }

    /// The role the pool's sessions act as (`SELECT current_user`): [`APP_ROLE`].
    pub async fn session_role(&self) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Sets the connection-pool gauges (`tocsin_pg_pool_connections{state}`) for `service`.
    pub fn record_pool_metrics(&self, service: &'static str) {
        let size = f64::from(self.pool.size());
        #[allow(clippy::cast_precision_loss)]
        let idle = self.pool.num_idle() as f64;
        let r = tocsin_core::metrics::registry();
        let help = "PostgreSQL pool connections by state";
        let labels: &'static [&'static str] = &["service", "state"];
        r.set(
            "tocsin_pg_pool_connections",
            help,
            labels,
            &[service, "idle"],
            idle,
        );
        r.set(
            "tocsin_pg_pool_connections",
            help,
            labels,
            &[service, "busy"],
            (size - idle).max(0.0),
        );
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
