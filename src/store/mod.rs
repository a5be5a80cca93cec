//! Where messages are kept: the `Store` trait and its two backends.
//!
//! The backend is chosen once, at start-up, from the database URL: `sqlite://PATH` (the
//! default, embedded, WAL mode) or `postgres://…` (shared by several nodes). Migrations
//! are embedded in the binary and run on open. This module and its children are the only
//! place in hubbub that knows SQL.
//!
//! `sql.rs` implements [`Store`] once, over sqlx, as `SqlStore<B>` (`changes.rs` adds what
//! edits, deletes, reactions and replies need to it, `search.rs` what search needs); `sqlite.rs` and
//! `postgres.rs` each hold only what is particular to their database (a `Backend`: connect
//! options and pool size, migrations, the batch insert, error codes); `error.rs` holds
//! [`StoreError`].
//!
//! Ids come from the store and increase in commit order, so an id is also a cursor: "the
//! 50 messages before id 812" means the same thing however many messages arrive meanwhile.
//! A change to a message (an edit, a delete) is a row of its own with the next id (its
//! `seq`), naming the message it changed; the message's row holds its current version.

mod accounts;
mod bans;
mod changes;
mod error;
mod mentions;
mod postgres;
mod reads;
mod search;
mod sql;
mod sqlite;

use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use self::accounts::{AccountStore, SESSION_LIFE};
pub use self::bans::BanStore;
pub use self::error::StoreError;
pub use self::mentions::NotifyStore;
use self::postgres::Postgres;
pub use self::reads::{ReadMark, ReadStore, UNREAD_CAP, Unread};
use self::sql::SqlStore;
use self::sqlite::Sqlite;
pub use crate::config::DatabaseUrl;
use crate::domain::{ChangeRefused, ChatMessage, Found, RoomName, SearchTerms, Write};

/// What [`Store::append`] returns: what became of each write, and where the batch sits in
/// the global order of commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The largest position committed before this batch (0 when there was none), read
    /// inside the batch's own transaction, under its write lock. Every position between it
    /// and the batch's first was skipped (a rolled-back transaction, or a resend that was
    /// not stored, consumed it) and will never be committed.
    pub prev: u64,
    /// One for each write, in the batch's order.
    pub outcomes: Vec<Outcome>,
}

impl Appended {
    /// The positions of what was stored, in order.
    pub fn ids(&self) -> Vec<u64> {
        self.outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Outcome::Stored(message) => Some(message.seq),
                _ => None,
            })
            .collect()
    }

    /// What was stored, in position order: the batch as every node delivers it.
    pub fn committed(&self) -> Vec<ChatMessage> {
        self.outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Outcome::Stored(message) => Some(message.clone()),
                _ => None,
            })
            .collect()
    }
}

/// What became of one write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored, at `seq`: the new message, or the message's version after the change.
    Stored(ChatMessage),
    /// A message whose client id its author had already used: not stored again. The id
    /// is the first one's.
    Duplicate(u64),
    /// A change the rules refuse (someone else's message, a deleted one, …): nothing
    /// stored.
    Refused(ChangeRefused),
}

/// A place to keep messages. Implementations are cheap to share (`Arc<dyn Store>`).
///
/// Ids are committed in id order, across every writer of the store: once a reader has seen
/// id N, no id below N can appear later. (SQLite has one writer; PostgreSQL inserts take an
/// advisory lock held until commit.) The sequencer (`crate::sequencer`) relies on it.
pub trait Store: AccountStore + BanStore + ReadStore + NotifyStore + Send + Sync + 'static {
    /// Stores a batch in one transaction: new messages (each once per client id) and
    /// changes (each checked against the message's author and state inside the same
    /// transaction). Returns what became of each write and the newest position committed
    /// before the batch. Either everything the batch stores is committed or nothing is.
    fn append<'a>(&'a self, batch: &'a [Write]) -> BoxFuture<'a, Result<Appended, StoreError>>;

    /// At most `limit` entries of every room with `after < seq <= upto`, oldest first: what
    /// a node missed, read back in commit order. A change's entry carries its message as
    /// it is now (a later change may have changed it again: delivering the newer version
    /// early is harmless, the later entry brings the same).
    fn between(
        &self,
        after: u64,
        upto: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<ChatMessage>, StoreError>>;

    /// The newest committed id (0 for an empty store).
    fn newest_id(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// The newest `limit` messages of a room with an id below `before`, oldest first, each
    /// as it is now.
    fn before<'a>(
        &'a self,
        room: &'a RoomName,
        before: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>>;

    /// One message of a room as it is now, if there is one with that id.
    fn message<'a>(
        &'a self,
        room: &'a RoomName,
        id: u64,
    ) -> BoxFuture<'a, Result<Option<ChatMessage>, StoreError>>;

    /// The oldest `limit` messages of a room with an id above `after`, oldest first, each as
    /// it is now: reading forward from a message opened in context.
    fn after<'a>(
        &'a self,
        room: &'a RoomName,
        after: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>>;

    /// At most `limit` messages with an id below `before` that contain every word of
    /// `terms` (as the store stems them), newest first, in one room or in all. Only what
    /// messages say now is found: never an edited-away or deleted text. The messages come
    /// without their reactions.
    fn search<'a>(
        &'a self,
        terms: &'a SearchTerms,
        room: Option<&'a RoomName>,
        before: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Found>, StoreError>>;

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
