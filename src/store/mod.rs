//! Where messages are kept: the `Store` trait and its two backends.
//!
//! The backend is chosen once, at start-up, from the database URL: `sqlite://PATH` (the
//! default, embedded, WAL mode) or `postgres://…` (shared by several nodes). Migrations
//! are embedded in the binary and run on open. This module and its children are the only
//! place in hubbub that knows SQL.
//!
//! `sql.rs` implements [`Store`] once, over sqlx, as `SqlStore<B>`; `sqlite.rs` and
//! `postgres.rs` each hold only what is particular to their database (a `Backend`: connect
//! options and pool size, migrations, the batch insert, error codes); `error.rs` holds
//! [`StoreError`].
//!
//! Ids come from the store and increase in commit order, so an id is also a cursor: "the
//! 50 messages before id 812" means the same thing however many messages arrive meanwhile.

mod error;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use self::error::StoreError;
use self::postgres::Postgres;
use self::sql::SqlStore;
use self::sqlite::Sqlite;
pub use crate::config::DatabaseUrl;
use crate::domain::{ChatMessage, NewMessage, RoomName};

/// What [`Store::append`] returns: the batch's ids, and where the batch sits in the global
/// order of commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The largest id committed before this batch (0 when there was none), read inside the
    /// batch's own transaction, under its write lock. Every id in `(prev, ids[0])` was
    /// skipped (a rolled-back transaction consumed it) and will never be committed.
    pub prev: u64,
    /// The ids, in the batch's order (increasing).
    pub ids: Vec<u64>,
}

impl Appended {
    /// From the rows' ids (sorted) and the `prev` query.
    fn from_rows(prev: i64, ids: Vec<i64>) -> Self {
        Self {
            prev: prev as u64,
            ids: ids.into_iter().map(|id| id as u64).collect(),
        }
    }
}

/// A place to keep messages. Implementations are cheap to share (`Arc<dyn Store>`).
///
/// Ids are committed in id order, across every writer of the store: once a reader has seen
/// id N, no id below N can appear later. (SQLite has one writer; PostgreSQL inserts take an
/// advisory lock held until commit.) The sequencer (`crate::sequencer`) relies on it.
pub trait Store: Send + Sync + 'static {
    /// Stores a batch in one transaction, returning the ids in the batch's order and the
    /// newest id committed before it. Either every message is committed or none is.
    fn append<'a>(&'a self, batch: &'a [NewMessage])
    -> BoxFuture<'a, Result<Appended, StoreError>>;

    /// At most `limit` messages of every room with `after < id <= upto`, oldest first: what
    /// a node missed, read back in commit order.
    fn between(
        &self,
        after: u64,
        upto: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<ChatMessage>, StoreError>>;

    /// The newest committed id (0 for an empty store).
    fn newest_id(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// The newest `limit` messages of a room with an id below `before`, oldest first.
    fn before<'a>(
        &'a self,
        room: &'a RoomName,
        before: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>>;

    /// Every room that has messages, by name.
    fn rooms(&self) -> BoxFuture<'_, Result<Vec<RoomName>, StoreError>>;

    /// The server's cookie-signing key: made (random, 64 bytes) and stored the first time,
    /// the same ever after, so signed cookies survive restarts.
    fn cookie_key(&self) -> BoxFuture<'_, Result<Vec<u8>, StoreError>>;

    /// A cheap query that needs the schema, for readiness checks: it fails when the
    /// database is unreachable and when the messages table cannot be read.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Which backend this is, for logs.
    fn backend(&self) -> &'static str;
}

/// Opens the store a URL names, creating and migrating it as needed.
pub async fn open(url: &DatabaseUrl) -> Result<Arc<dyn Store>, StoreError> {
    let raw = url.expose();
    if raw.starts_with("sqlite:") {
        Ok(Arc::new(SqlStore::<Sqlite>::open(url).await?))
    } else if url.is_postgres() {
        Ok(Arc::new(SqlStore::<Postgres>::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unknown_scheme_is_a_clear_error() {
        let err = open(&DatabaseUrl::new("mysql://x")).await.err().unwrap();
        assert!(
            err.to_string().contains("use sqlite://PATH or postgres://"),
            "{err}"
        );
    }
}
