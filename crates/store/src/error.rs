//! The store's error type and the one place SQLSTATEs are mapped to domain variants.

use std::time::Duration;

use tocsin_core::ErrorClass;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the connection broke; worth retrying.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint was violated (SQLSTATE 23505).
    #[error("conflict on {constraint}")]
    Conflict {
        /// Name of the violated constraint.
        constraint: String,
    },
    /// A referenced row does not exist (SQLSTATE 23503).
    #[error("missing reference for {constraint}")]
    MissingReference {
        /// Name of the violated constraint.
        constraint: String,
    },
    /// The row asked for does not exist (or belongs to another tenant).
    #[error("{entity} not found")]
    NotFound {
        /// What was looked up.
        entity: &'static str,
    },
    /// A stored value does not decode (corrupt or written by a newer version).
    #[error("invalid stored value in {what}")]
    Corrupt {
        /// Which value.
        what: &'static str,
    },
    /// The request breaks a rule the store enforces (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// Migrations failed.
    #[error("migration failed")]
    Migrate(#[source] Box<sqlx::migrate::MigrateError>),
    /// Any other database error; not retried.
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// Maps a sqlx error onto a domain variant. The only place SQLSTATEs are interpreted.
    pub fn from_sqlx(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) => {
                let constraint = db.constraint().unwrap_or("unknown").to_owned();
                match db.code().as_deref() {
                    Some("23505") => StoreError::Conflict { constraint },
                    Some("23503") => StoreError::MissingReference { constraint },
                    // Serialization failure, deadlock, too many connections, admin shutdown,
                    // cannot connect now: transient by definition.
                    Some("40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03") => {
                        StoreError::Unavailable(err)
                    }
                    _ => StoreError::Database(err),
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(err),
            sqlx::Error::RowNotFound => StoreError::NotFound { entity: "row" },
            _ => StoreError::Database(err),
        }
    }

    /// How a message consumer should treat this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Unavailable(_) => ErrorClass::Retryable {
                delay: Duration::from_secs(2),
            },
            // A conflict inside a consumer transaction is a race with a concurrent delivery:
            // retrying re-reads the state the other delivery committed.
            StoreError::Conflict { .. } => ErrorClass::RETRY_SOON,
            StoreError::MissingReference { .. }
            | StoreError::NotFound { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Invalid(_)
            | StoreError::Migrate(_)
            | StoreError::Database(_) => ErrorClass::Permanent,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from_sqlx(err)
    }
}
