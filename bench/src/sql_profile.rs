//! `--profile-sql`: where the database time went, from `pg_stat_statements` in the private
//! PostgreSQL (loaded at its start, reset just before the load, read once it settled).

use anyhow::Context;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

/// Statements reported, by total execution time.
const TOP: i64 = 15;
/// Characters of each statement's normalized text kept in the report.
const TEXT_CHARS: usize = 160;

/// The server settings that load `pg_stat_statements`.
pub(crate) fn server_settings() -> Vec<String> {
    vec![
        "shared_preload_libraries=pg_stat_statements".to_owned(),
        "pg_stat_statements.max=2000".to_owned(),
    ]
}

/// One normalized statement's share of the database's execution time.
#[derive(Debug, Clone, Serialize)]
pub struct SqlStat {
    /// The statement as `pg_stat_statements` normalizes it (constants as `$n`), whitespace
    /// collapsed, cut to 160 characters.
    pub query: String,
    /// Executions.
    pub calls: i64,
    /// Executions per measured operation (the report's `count`).
    pub calls_per_op: f64,
    /// Total execution time, milliseconds (planning excluded).
    pub total_ms: f64,
    /// Mean execution time, milliseconds.
    pub mean_ms: f64,
    /// Share of all statements' execution time, 0-1.
    pub share: f64,
}

/// Installs the extension (idempotent) and zeroes its counters.
pub(crate) async fn reset(database_url: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(database_url)
        .await
        .context("profile-sql: connect")?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut conn)
        .await
        .context("profile-sql: pg_stat_statements is not loaded")?;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// The top statements since [`reset`], and the number of statements and transactions seen.
pub(crate) async fn read(database_url: &str, ops: usize) -> anyhow::Result<(Vec<SqlStat>, i64)> {
    let mut conn = PgConnection::connect(database_url)
        .await
        .context("profile-sql: connect")?;
    // Only this database's statements, and not the profiler's own.
    let (total_ms, calls): (f64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(total_exec_time), 0)::float8, coalesce(sum(calls), 0)::int8
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT LIKE '%pg_stat_statements%'",
    )
    .fetch_one(&mut conn)
    .await?;
    let rows: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT query, calls, total_exec_time, mean_exec_time
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT LIKE '%pg_stat_statements%'
         ORDER BY total_exec_time DESC LIMIT $1",
    )
    .bind(TOP)
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    #[allow(clippy::cast_precision_loss)]
    let stats = rows
        .into_iter()
        .map(|(query, calls, total, mean)| SqlStat {
            query: query
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(TEXT_CHARS)
                .collect(),
            calls,
            calls_per_op: calls as f64 / ops.max(1) as f64,
            total_ms: total,
            mean_ms: mean,
            share: if total_ms > 0.0 {
                total / total_ms
            } else {
                0.0
            },
        })
        .collect();
    Ok((stats, calls))
}
