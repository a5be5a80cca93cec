//! What the two backends share: [`SqlStore`], one implementation of [`Store`] over sqlx,
//! generic over a [`Backend`] that supplies only what differs between SQLite and
//! PostgreSQL.
//!
//! Every statement but the batch insert is written once, here (and in `changes.rs`, for
//! edits, deletes, reactions and replies), in SQL both databases speak:
//! `$N` parameters (sqlx's SQLite driver numbers `$N` as PostgreSQL does), `COALESCE`,
//! `ON CONFLICT … DO NOTHING`. The rejected alternative, a copy of each method per backend,
//! had the two files differ in little but `?` against `$1`, and drift apart unnoticed.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::migrate::MigrateError;
use sqlx::pool::{Pool, PoolOptions};
use sqlx::{ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::error::Class;
use super::{Appended, DatabaseUrl, Outcome, Store, StoreError};
use crate::domain::{
    ChatMessage, Found, NewMessage, Quote, RoomName, SearchTerms, StoredRow, Write,
};

/// What differs between the SQL backends; everything else is [`SqlStore`].
pub(super) trait Backend: Send + Sync + 'static {
    /// sqlx's driver for this database.
    type Db: Database;

    /// Which backend this is, for logs ([`Store::backend`]).
    const NAME: &'static str;
    /// Connections in the readers' pool. The writer's pool always has one: batches are
    /// committed one at a time anyway, and paging readers never make it wait.
    const READERS: u32;
    /// How long to wait for a pooled connection before the store counts as unavailable.
    const ACQUIRE_TIMEOUT: Duration;
    /// The longest one batch's transaction may take (`None`: the database's own limits).
    const WRITE_TIMEOUT: Option<Duration>;
    /// Whether a writer connection whose batch failed is closed instead of reused.
    const CLOSE_FAILED_WRITER: bool;
    /// The statement that opens a batch's transaction.
    const BEGIN: &'static str;

    /// The connect options of the writer and of the readers, from the URL.
    fn connect_options(url: &str) -> Result<(Options<Self>, Options<Self>), sqlx::Error>;

    /// Runs the embedded migrations for this database.
    fn migrate(writer: &Pool<Self::Db>) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// Takes whatever lock makes positions commit in position order, first thing in a
    /// batch's transaction (held until it ends).
    fn lock(
        conn: &mut <Self::Db as Database>::Connection,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Inserts messages, in their order, skipping any whose `(author_id, client_id)` is
    /// already stored (or comes earlier in the same call), and creates the rooms they are
    /// the first message of, inside the transaction `conn` is in. Returns the inserted
    /// rows, in any order.
    fn insert(
        conn: &mut <Self::Db as Database>::Connection,
        batch: &[&NewMessage],
    ) -> impl Future<Output = Result<Vec<Inserted>, StoreError>> + Send;

    /// What an error code of this database (`sqlx::error::DatabaseError::code`) means.
    fn classify(code: &str) -> Class;

    /// A search of every room: `$1` is [`Backend::match_query`], `$2` the id the results
    /// are below, `$3` how many; rows are [`SearchRow`]s, newest first.
    const SEARCH: &'static str;
    /// The same, in one room: `$4` is the room.
    const SEARCH_ROOM: &'static str;

    /// What this database's full-text search is given for `$1` of [`Backend::SEARCH`]
    /// (and [`Backend::SEARCH_ROOM`], with its room): built from the words alone, never
    /// from what a reader typed.
    fn match_query(terms: &SearchTerms, room: Option<&RoomName>) -> String;

    /// How many rows a statement changed.
    fn rows_affected(done: &<Self::Db as Database>::QueryResult) -> u64;

    /// A database error as a [`StoreError`], classified by [`Backend::classify`].
    fn error(err: sqlx::Error) -> StoreError {
        StoreError::classified(err, Self::classify)
    }
}

/// A row [`Backend::insert`] inserted: `(id, author_id, client_id)`.
pub(super) type Inserted = (i64, Option<String>, Option<String>);

/// A backend's connect options.
pub(super) type Options<B> = <<<B as Backend>::Db as Database>::Connection as Connection>::Options;

/// A [`Store`] on a SQL database.
pub(super) struct SqlStore<B: Backend> {
    /// One connection, for the commit writer alone, so paging readers can never make it
    /// wait for a connection.
    pub(super) writer: Pool<B::Db>,
    /// For reads (paging, catching up, start-up).
    pub(super) readers: Pool<B::Db>,
}

impl<B: Backend> SqlStore<B> {
    /// Connects both pools and migrates the database (on the writer, before any reader
    /// connects).
    pub(super) async fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            url: url.to_string(),
            source,
        };
        let (writer_options, reader_options) =
            B::connect_options(url.expose()).map_err(open_error)?;
        let writer = PoolOptions::<B::Db>::new()
            .max_connections(1)
            .acquire_timeout(B::ACQUIRE_TIMEOUT)
            .connect_with(writer_options)
            .await
            .map_err(open_error)?;
        B::migrate(&writer).await?;
        let readers = PoolOptions::<B::Db>::new()
            .max_connections(B::READERS)
            .acquire_timeout(B::ACQUIRE_TIMEOUT)
            .connect_with(reader_options)
            .await
            .map_err(open_error)?;
        Ok(Self { writer, readers })
    }
}

/// What [`Store::ping`] and [`Store::newest_id`] run: the newest id, read from the primary
/// key.
const NEWEST: &str = "SELECT COALESCE(MAX(id), 0) FROM messages";

/// The newest id below a batch's first, inside the batch's transaction: [`Appended::prev`].
/// Read after the insert, so SQLite already holds the write lock (a read first would take a
/// read snapshot that the insert could then fail to upgrade) and PostgreSQL the insert lock.
const PREV: &str = "SELECT COALESCE(MAX(id), 0) FROM messages WHERE id < $1";

/// Every entry in a range, a change's with its message as it is now.
/// A message's columns as [`Row`] reads them after the entry's position: the message `m`
/// and the one it answers, `q` (NULL when it answers none).
macro_rules! message_columns {
    () => {
        "m.id, m.room, m.author, m.author_id, m.body, m.created_at, \
         m.edited_at IS NOT NULL, m.deleted_at IS NOT NULL, \
         q.id, q.author, q.body, q.edited_at IS NOT NULL, q.deleted_at IS NOT NULL, \
         m.author_guest"
    };
}
pub(super) use message_columns;

/// Every entry in a range, a change's with its message as it is now.
const BETWEEN: &str = concat!(
    "SELECT e.id, ",
    message_columns!(),
    " FROM messages e JOIN messages m ON m.id = COALESCE(e.target, e.id) \
     LEFT JOIN messages q ON q.id = m.reply_to \
     WHERE e.id > $1 AND e.id <= $2 ORDER BY e.id LIMIT $3"
);

const BEFORE: &str = concat!(
    "SELECT m.id, ",
    message_columns!(),
    " FROM messages m LEFT JOIN messages q ON q.id = m.reply_to \
     WHERE m.room = $1 AND m.id < $2 AND m.target IS NULL ORDER BY m.id DESC LIMIT $3"
);

const MESSAGE: &str = concat!(
    "SELECT m.id, ",
    message_columns!(),
    " FROM messages m LEFT JOIN messages q ON q.id = m.reply_to \
     WHERE m.room = $1 AND m.id = $2 AND m.target IS NULL"
);

/// A message as a change left it (its entry's position is set afterwards).
pub(super) const VERSION: &str = concat!(
    "SELECT m.id, ",
    message_columns!(),
    " FROM messages m LEFT JOIN messages q ON q.id = m.reply_to WHERE m.id = $1"
);

/// A room's messages after an id, oldest first (the window's "load newer").
const AFTER: &str = concat!(
    "SELECT m.id, ",
    message_columns!(),
    " FROM messages m LEFT JOIN messages q ON q.id = m.reply_to \
     WHERE m.room = $1 AND m.id > $2 AND m.target IS NULL ORDER BY m.id LIMIT $3"
);

/// The message a resend repeats: [`Outcome::Duplicate`].
const FIRST_SENT: &str = "SELECT id FROM messages WHERE author_id = $1 AND client_id = $2";

const ROOMS: &str = "SELECT name FROM rooms ORDER BY name";

const KEEP_COOKIE_KEY: &str = "INSERT INTO settings (name, value) VALUES ('cookie_key', $1) \
                               ON CONFLICT (name) DO NOTHING";

const COOKIE_KEY: &str = "SELECT value FROM settings WHERE name = 'cookie_key'";

/// The Rust types of [`message_columns!`] after the entry's position, and of any columns a
/// query adds after them.
macro_rules! row_type {
    ($($extra:ty),*) => {
        (
            i64,
            i64,
            String,
            String,
            Option<String>,
            String,
            i64,
            bool,
            bool,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<bool>,
            Option<bool>,
            bool,
            $($extra),*
        )
    };
}

pub(super) use row_type;

/// `(seq, id, room, author, author_id, body, created_at, edited, deleted)`, the answered
/// message's `(id, author, body, edited, deleted)`, and whether a guest wrote it, as the
/// queries select them.
pub(super) type Row = row_type!();

impl<B: Backend> SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    i64: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    String: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    bool: Type<B::Db> + for<'r> Decode<'r, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    /// One room's messages on one side of a cursor, as `sql` ([`BEFORE`], [`AFTER`])
    /// selects them: `$1` the room, `$2` the cursor, `$3` how many.
    async fn page(
        &self,
        sql: &'static str,
        room: &RoomName,
        cursor: u64,
        limit: u32,
    ) -> Result<Vec<Row>, StoreError> {
        sqlx::query_as(sql)
            .bind(room.as_str())
            .bind(sql_id(cursor))
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await
            .map_err(B::error)
    }
}

impl<B: Backend> Store for SqlStore<B>
where
    B::Db: sqlx::database::HasStatementCache,
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    i64: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    String: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    bool: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    fn append<'a>(&'a self, batch: &'a [Write]) -> BoxFuture<'a, Result<Appended, StoreError>> {
        async move {
            let mut conn = self.writer.acquire().await.map_err(B::error)?;
            let transaction = async {
                let mut tx = conn.begin_with(B::BEGIN).await.map_err(B::error)?;
                B::lock(&mut tx).await?;
                let mut outcomes = Vec::with_capacity(batch.len());
                let mut rest = batch;
                while let Some(first) = rest.first() {
                    if let Write::Change(change) = first {
                        outcomes.push(Self::apply(&mut tx, change).await?);
                        rest = &rest[1..];
                        continue;
                    }
                    // A run of messages goes in as one statement.
                    let run = rest
                        .iter()
                        .position(|write| matches!(write, Write::Change(_)))
                        .unwrap_or(rest.len());
                    let run_posts: Vec<&NewMessage> = rest[..run]
                        .iter()
                        .filter_map(|write| match write {
                            Write::Post(message) => Some(message),
                            Write::Change(_) => None,
                        })
                        .collect();
                    // A reply goes in only if what it answers is a message of its room.
                    let mut quotes = Vec::with_capacity(run_posts.len());
                    for post in &run_posts {
                        quotes.push(match post.reply_to {
                            None => Ok(None),
                            Some(id) => Self::quote(&mut tx, post, id).await?.map(Some),
                        });
                    }
                    let posts: Vec<&NewMessage> = run_posts
                        .iter()
                        .zip(&quotes)
                        .filter(|(_, quote)| quote.is_ok())
                        .map(|(post, _)| *post)
                        .collect();
                    let mut inserted = if posts.is_empty() {
                        Vec::new()
                    } else {
                        B::insert(&mut tx, &posts).await?
                    };
                    // RETURNING does not promise an order; the ids were drawn in the run's.
                    inserted.sort_unstable_by_key(|row| row.0);
                    let mut rows = inserted.into_iter().peekable();
                    for (post, quote) in run_posts.into_iter().zip(quotes) {
                        let quote = match quote {
                            Ok(quote) => quote,
                            Err(why) => {
                                outcomes.push(Outcome::Refused(why));
                                continue;
                            }
                        };
                        let author = post.author_id.as_ref().map(ToString::to_string);
                        let client = post.client_id.as_ref().map(|id| id.as_str().to_owned());
                        let mine = rows.peek().is_some_and(|(_, a, c)| {
                            client.is_none() || (a.as_ref() == author.as_ref() && *c == client)
                        });
                        if mine && let Some((id, _, _)) = rows.next() {
                            let mut stored = post.clone().stored(id as u64);
                            stored.reply = quote.map(Box::new);
                            outcomes.push(Outcome::Stored(stored));
                            continue;
                        }
                        let (Some(author), Some(client)) = (author, client) else {
                            // Only a message with a client id can be skipped.
                            return Err(StoreError::Inconsistent {
                                sent: batch.len(),
                                got: outcomes.len(),
                            });
                        };
                        let first: i64 = sqlx::query_scalar(FIRST_SENT)
                            .bind(author.as_str())
                            .bind(client.as_str())
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(B::error)?;
                        outcomes.push(Outcome::Duplicate(first as u64));
                    }
                    if rows.next().is_some() {
                        // Dropping the transaction rolls it back: nothing half-stored.
                        return Err(StoreError::Inconsistent {
                            sent: batch.len(),
                            got: outcomes.len() + 1,
                        });
                    }
                    rest = &rest[run..];
                }
                Self::record_mentions(&mut tx, &outcomes).await?;
                let first = outcomes.iter().find_map(|outcome| match outcome {
                    Outcome::Stored(message) => Some(message.seq),
                    _ => None,
                });
                let prev: i64 = match first {
                    Some(first) => sqlx::query_scalar(PREV)
                        .bind(sql_id(first))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(B::error)?,
                    None => 0,
                };
                tx.commit().await.map_err(B::error)?;
                Ok(Appended {
                    prev: prev as u64,
                    outcomes,
                })
            };
            let stored = match B::WRITE_TIMEOUT {
                Some(limit) => tokio::time::timeout(limit, transaction)
                    .await
                    .unwrap_or(Err(StoreError::TimedOut(limit))),
                None => transaction.await,
            };
            if stored.is_err() && B::CLOSE_FAILED_WRITER {
                conn.close_on_drop();
            }
            stored
        }
        .boxed()
    }

    fn between(
        &self,
        after: u64,
        upto: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<ChatMessage>, StoreError>> {
        async move {
            let rows: Vec<Row> = sqlx::query_as(BETWEEN)
                .bind(sql_id(after))
                .bind(sql_id(upto))
                .bind(i64::from(limit))
                .fetch_all(&self.readers)
                .await
                .map_err(B::error)?;
            self.with_reactions(in_order(rows)).await
        }
        .boxed()
    }

    fn newest_id(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let newest: i64 = sqlx::query_scalar(NEWEST)
                .fetch_one(&self.readers)
                .await
                .map_err(B::error)?;
            Ok(newest as u64)
        }
        .boxed()
    }

    fn before<'a>(
        &'a self,
        room: &'a RoomName,
        before: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>> {
        async move {
            let mut rows = self.page(BEFORE, room, before, limit).await?;
            // Selected newest first (to apply the limit), turned around.
            rows.reverse();
            self.with_reactions(in_order(rows)).await
        }
        .boxed()
    }

    fn message<'a>(
        &'a self,
        room: &'a RoomName,
        id: u64,
    ) -> BoxFuture<'a, Result<Option<ChatMessage>, StoreError>> {
        async move {
            let row: Option<Row> = sqlx::query_as(MESSAGE)
                .bind(room.as_str())
                .bind(sql_id(id))
                .fetch_optional(&self.readers)
                .await
                .map_err(B::error)?;
            let found = self.with_reactions(row.map(message).into_iter().collect());
            Ok(found.await?.pop())
        }
        .boxed()
    }

    fn after<'a>(
        &'a self,
        room: &'a RoomName,
        after: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>> {
        async move {
            let rows = self.page(AFTER, room, after, limit).await?;
            self.with_reactions(in_order(rows)).await
        }
        .boxed()
    }

    fn search<'a>(
        &'a self,
        terms: &'a SearchTerms,
        room: Option<&'a RoomName>,
        before: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Found>, StoreError>> {
        self.find(terms, room, before, limit).boxed()
    }

    fn rooms(&self) -> BoxFuture<'_, Result<Vec<RoomName>, StoreError>> {
        async move {
            let names: Vec<String> = sqlx::query_scalar(ROOMS)
                .fetch_all(&self.readers)
                .await
                .map_err(B::error)?;
            Ok(room_names(names))
        }
        .boxed()
    }

    fn cookie_key(&self) -> BoxFuture<'_, Result<Vec<u8>, StoreError>> {
        async move {
            sqlx::query(KEEP_COOKIE_KEY)
                .bind(new_cookie_key()?)
                .execute(&self.writer)
                .await
                .map_err(B::error)?;
            let hex: String = sqlx::query_scalar(COOKIE_KEY)
                .fetch_one(&self.writer)
                .await
                .map_err(B::error)?;
            decode_cookie_key(&hex)
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // Reads the messages table (its newest id, from the primary key), so a damaged or
        // missing schema fails the check, not just a dead connection.
        self.newest_id().map(|newest| newest.map(drop)).boxed()
    }

    fn backend(&self) -> &'static str {
        B::NAME
    }
}

/// An id for a query parameter (ids beyond `i64::MAX` do not exist).
pub(super) fn sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Rows selected oldest first.
fn in_order(rows: Vec<Row>) -> Vec<ChatMessage> {
    rows.into_iter().map(message).collect()
}

pub(super) fn message(row: Row) -> ChatMessage {
    let (seq, id, room, author, author_id, body, at, edited, deleted) = (
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8,
    );
    let reply = match (row.9, row.10, row.11) {
        (Some(id), Some(author), Some(body)) => Some(Quote::of(
            id as u64,
            author,
            &body,
            row.12.unwrap_or(false),
            row.13.unwrap_or(false),
        )),
        _ => None,
    };
    ChatMessage::from_row(StoredRow {
        seq: seq as u64,
        id: id as u64,
        room,
        author,
        author_id,
        guest: row.14,
        body,
        at,
        edited,
        deleted,
        reply,
    })
}

/// Parses room names from the store, skipping (and logging) any that no longer parse.
fn room_names(names: Vec<String>) -> Vec<RoomName> {
    names
        .into_iter()
        .filter_map(|name| match RoomName::parse(&name) {
            Ok(room) => Some(room),
            Err(_) => {
                tracing::warn!(%name, "ignoring a stored room with an invalid name");
                None
            }
        })
        .collect()
}

/// A fresh random cookie key, hex-encoded for the `settings` table.
fn new_cookie_key() -> Result<String, StoreError> {
    let mut key = [0_u8; 64];
    getrandom::fill(&mut key).map_err(|err| StoreError::NoRandomness(err.to_string()))?;
    Ok(crate::domain::hex(&key))
}

/// Decodes the stored key; a key that is not 64 hex-encoded bytes is an error, never
/// silently replaced (that would sign everyone out).
fn decode_cookie_key(hex: &str) -> Result<Vec<u8>, StoreError> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect();
    match bytes {
        Some(bytes) if bytes.len() >= 64 => Ok(bytes),
        _ => Err(StoreError::BadCookieKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_keys_round_trip_and_damage_is_an_error() {
        let hex = new_cookie_key().unwrap();
        assert_eq!(decode_cookie_key(&hex).unwrap().len(), 64);
        for damaged in ["", "zz", &hex[..100], &hex.replacen('a', "g", 1)] {
            assert!(
                decode_cookie_key(damaged).is_err() || damaged == hex,
                "{damaged}"
            );
        }
    }
}
