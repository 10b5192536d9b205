//! Keyset pagination shared by the list queries.
//!
//! Lists are ordered newest first by `(time, id)`, both immutable, so a page boundary never
//! moves: a row inserted while a client pages appears on the first page (or not at all),
//! never twice, and no row is skipped. The API turns a [`Cursor`] into an opaque token.

use time::OffsetDateTime;
use uuid::Uuid;

/// The position after the last row of a page: that row's sort time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Sort time of the last row returned.
    pub at: OffsetDateTime,
    /// Id of the last row returned (breaks ties).
    pub id: Uuid,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows, newest first.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// A row that can be paged through.
pub trait Keyed {
    /// The row's position.
    fn cursor(&self) -> Cursor;
}

/// Largest page the store returns.
pub const MAX_LIMIT: i64 = 500;

impl<T: Keyed> Page<T> {
    /// Builds a page from rows fetched with `LIMIT limit + 1`: the extra row only tells
    /// that another page follows.
    pub(crate) fn from_rows(mut rows: Vec<T>, limit: i64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(Keyed::cursor)
        } else {
            None
        };
        Self { items: rows, next }
    }
}

/// Clamps a requested page size to 1..=[`MAX_LIMIT`].
pub(crate) fn clamp_limit(limit: i64) -> i64 {
    limit.clamp(1, MAX_LIMIT)
}

/// The cursor's parts as bind values: `(at, id)`, both `None` for the first page.
pub(crate) fn binds(cursor: Option<Cursor>) -> (Option<OffsetDateTime>, Option<Uuid>) {
    (cursor.map(|c| c.at), cursor.map(|c| c.id))
}
