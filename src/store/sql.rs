//! What the two backends share: [`SqlStore`], one implementation of [`Store`] over sqlx,
//! generic over a [`Backend`] that supplies only what differs between SQLite and
//! PostgreSQL.
//!
//! Every statement but the batch insert is written once here, in SQL both databases speak:
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
    Change, ChangeKind, ChangeRefused, ChatMessage, DisplayName, Emoji, NewMessage, Quote,
    Reaction, Reactor, RoomName, StoredRow, UserId, Write, unix_micros,
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
    writer: Pool<B::Db>,
    /// For reads (paging, catching up, start-up).
    readers: Pool<B::Db>,
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
         q.id, q.author, q.body, q.edited_at IS NOT NULL, q.deleted_at IS NOT NULL"
    };
}

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
const VERSION: &str = concat!(
    "SELECT m.id, ",
    message_columns!(),
    " FROM messages m LEFT JOIN messages q ON q.id = m.reply_to WHERE m.id = $1"
);

/// The message a reply answers, if it is a message: its room, author, text and state.
const QUOTED: &str = "SELECT room, author, body, edited_at IS NOT NULL, deleted_at IS NOT NULL \
                      FROM messages WHERE id = $1 AND target IS NULL";

/// The message a resend repeats: [`Outcome::Duplicate`].
const FIRST_SENT: &str = "SELECT id FROM messages WHERE author_id = $1 AND client_id = $2";

/// An edit, if the message is in the room, its author's, and not deleted.
const EDIT: &str = "UPDATE messages SET body = $1, edited_at = $2 \
                    WHERE id = $3 AND room = $4 AND author_id = $5 \
                    AND target IS NULL AND deleted_at IS NULL \
                    RETURNING id, room, author";

/// A delete, on the same conditions: the text is gone from the row for good.
const DELETE: &str = "UPDATE messages SET body = '', deleted_at = $1 \
                      WHERE id = $2 AND room = $3 AND author_id = $4 \
                      AND target IS NULL AND deleted_at IS NULL \
                      RETURNING id, room, author";

/// Why a change found nothing to change.
const CHANGEABLE: &str = "SELECT deleted_at IS NOT NULL FROM messages \
                          WHERE id = $1 AND room = $2 AND target IS NULL";

/// Whether a message can take a reaction (in the room, and if so whether deleted), and
/// its author (for the change's entry).
const REACTABLE: &str = "SELECT deleted_at IS NOT NULL, author FROM messages \
                         WHERE id = $1 AND room = $2 AND target IS NULL";

const REACT: &str = "INSERT INTO reactions (message_id, emoji, user_id, name, created_at) \
                     VALUES ($1, $2, $3, $4, $5)";

const UNREACT: &str = "DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3 \
                       RETURNING message_id";

const UNREACT_ALL: &str = "DELETE FROM reactions WHERE message_id = $1";

/// One message's reactions, each reactor in the order they reacted.
const REACTIONS_OF: &str = "SELECT message_id, emoji, user_id, name FROM reactions \
                            WHERE message_id = $1 ORDER BY created_at, user_id";

/// A change's own entry: the next position, naming its message, holding no text.
const CHANGE_ENTRY: &str = "INSERT INTO messages (room, author, body, created_at, author_id, target) \
                            VALUES ($1, $2, '', $3, $4, $5) RETURNING id";

const ROOMS: &str = "SELECT name FROM rooms ORDER BY name";

const KEEP_COOKIE_KEY: &str = "INSERT INTO settings (name, value) VALUES ('cookie_key', $1) \
                               ON CONFLICT (name) DO NOTHING";

const COOKIE_KEY: &str = "SELECT value FROM settings WHERE name = 'cookie_key'";

/// `(seq, id, room, author, author_id, body, created_at, edited, deleted)` and the
/// answered message's `(id, author, body, edited, deleted)` as the queries select them.
type Row = (
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
);

impl<B: Backend> Store for SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    i64: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    String: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    bool: Type<B::Db> + for<'r> Decode<'r, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    fn append<'a>(&'a self, batch: &'a [Write]) -> BoxFuture<'a, Result<Appended, StoreError>> {
        async move {
            let mut conn = self.writer.acquire().await.map_err(B::error)?;
            let transaction = async {
                let mut tx = conn.begin().await.map_err(B::error)?;
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
            let mut rows: Vec<Row> = sqlx::query_as(BEFORE)
                .bind(room.as_str())
                .bind(sql_id(before))
                .bind(i64::from(limit))
                .fetch_all(&self.readers)
                .await
                .map_err(B::error)?;
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

/// What reads and changes messages beyond the [`Store`] methods themselves, under the same
/// bounds.
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
    /// The messages with their reactions, read in a query per [`REACTION_IDS`] messages.
    async fn with_reactions(
        &self,
        mut messages: Vec<ChatMessage>,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let mut ids: Vec<i64> = messages.iter().map(|m| sql_id(m.id)).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows: Vec<ReactionRow> = Vec::new();
        for chunk in ids.chunks(REACTION_IDS) {
            let sql = sqlx::AssertSqlSafe(reactions_in(chunk.len()));
            let mut query = sqlx::query_as(sql);
            for id in chunk {
                query = query.bind(*id);
            }
            rows.extend(query.fetch_all(&self.readers).await.map_err(B::error)?);
        }
        attach_reactions(&mut messages, rows);
        Ok(messages)
    }

    /// The quote a reply to `id` carries, or why it may not answer it: the message must
    /// be one of the reply's room and not deleted.
    async fn quote(
        tx: &mut <B::Db as Database>::Connection,
        post: &NewMessage,
        id: u64,
    ) -> Result<Result<Quote, ChangeRefused>, StoreError> {
        let found: Option<(String, String, String, bool, bool)> = sqlx::query_as(QUOTED)
            .bind(sql_id(id))
            .fetch_optional(&mut *tx)
            .await
            .map_err(B::error)?;
        Ok(match found {
            Some((room, _, _, _, _)) if room != post.room.as_str() => {
                Err(ChangeRefused::ReplyNotFound)
            }
            None => Err(ChangeRefused::ReplyNotFound),
            Some((_, _, _, _, true)) => Err(ChangeRefused::ReplyDeleted),
            Some((_, author, body, edited, deleted)) => {
                Ok(Quote::of(id, author, &body, edited, deleted))
            }
        })
    }

    /// Applies one change inside the batch's transaction: the message's row gets its new
    /// version (if the rules allow) and the change its own entry, at the next position.
    async fn apply(
        tx: &mut <B::Db as Database>::Connection,
        change: &Change,
    ) -> Result<Outcome, StoreError> {
        let by = change.by.to_string();
        let at = unix_micros(change.at);
        let changed: Option<(i64, String, String)> = match &change.what {
            ChangeKind::Edit(text) => sqlx::query_as(EDIT)
                .bind(text.as_str())
                .bind(at)
                .bind(sql_id(change.id))
                .bind(change.room.as_str())
                .bind(by.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(B::error),
            ChangeKind::Delete => {
                let deleted: Option<(i64, String, String)> = sqlx::query_as(DELETE)
                    .bind(at)
                    .bind(sql_id(change.id))
                    .bind(change.room.as_str())
                    .bind(by.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(B::error)?;
                if deleted.is_some() {
                    // Its reactions go with its text.
                    sqlx::query(UNREACT_ALL)
                        .bind(sql_id(change.id))
                        .execute(&mut *tx)
                        .await
                        .map_err(B::error)?;
                }
                Ok(deleted)
            }
            ChangeKind::React(emoji, name) => {
                let found: Option<(bool, String)> = sqlx::query_as(REACTABLE)
                    .bind(sql_id(change.id))
                    .bind(change.room.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(B::error)?;
                let author = match found {
                    None => return Ok(Outcome::Refused(ChangeRefused::NotFound)),
                    Some((true, _)) => return Ok(Outcome::Refused(ChangeRefused::Deleted)),
                    Some((false, author)) => author,
                };
                // A toggle: the user's emoji comes off if it is there, else it goes on.
                let removed: Option<i64> = sqlx::query_scalar(UNREACT)
                    .bind(sql_id(change.id))
                    .bind(emoji.as_str())
                    .bind(by.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(B::error)?;
                if removed.is_none() {
                    sqlx::query(REACT)
                        .bind(sql_id(change.id))
                        .bind(emoji.as_str())
                        .bind(by.as_str())
                        .bind(name.as_str())
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(B::error)?;
                }
                Ok(Some((
                    sql_id(change.id),
                    change.room.as_str().to_owned(),
                    author,
                )))
            }
        }?;
        let Some((id, room, author)) = changed else {
            let deleted: Option<bool> = sqlx::query_scalar(CHANGEABLE)
                .bind(sql_id(change.id))
                .bind(change.room.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(B::error)?;
            return Ok(Outcome::Refused(match deleted {
                None => ChangeRefused::NotFound,
                Some(true) => ChangeRefused::Deleted,
                Some(false) => ChangeRefused::NotYours,
            }));
        };
        let seq: i64 = sqlx::query_scalar(CHANGE_ENTRY)
            .bind(room.as_str())
            .bind(author.as_str())
            .bind(at)
            .bind(by.as_str())
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(B::error)?;
        let version: Row = sqlx::query_as(VERSION)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(B::error)?;
        let rows: Vec<ReactionRow> = sqlx::query_as(REACTIONS_OF)
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(B::error)?;
        let mut version = [message(version)];
        version[0].seq = seq as u64;
        attach_reactions(&mut version, rows);
        let [version] = version;
        Ok(Outcome::Stored(version))
    }
}

/// An id for a query parameter (ids beyond `i64::MAX` do not exist).
fn sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Rows selected oldest first.
fn in_order(rows: Vec<Row>) -> Vec<ChatMessage> {
    rows.into_iter().map(message).collect()
}

/// `(message_id, emoji, user_id, name)` as the reaction queries select it.
type ReactionRow = (i64, String, String, String);

/// The reactions of every message among `ids` (at most [`REACTION_IDS`] of them), each
/// reactor in the order they reacted.
fn reactions_in(ids: usize) -> String {
    let list: Vec<String> = (1..=ids).map(|n| format!("${n}")).collect();
    format!(
        "SELECT message_id, emoji, user_id, name FROM reactions WHERE message_id IN ({}) \
         ORDER BY message_id, created_at, user_id",
        list.join(", ")
    )
}

/// How many messages one reaction query asks about.
const REACTION_IDS: usize = 100;

/// Puts reaction rows on their messages: the emoji in the set's order, each with its
/// reactors in the order the rows come. A row that no longer parses (an emoji since
/// dropped from the set, a damaged id) is skipped.
fn attach_reactions(messages: &mut [ChatMessage], rows: Vec<ReactionRow>) {
    for (message_id, emoji, user, name) in rows {
        let (Some(emoji), Some(user)) = (Emoji::parse(&emoji), UserId::parse(&user)) else {
            continue;
        };
        let Some(message) = messages.iter_mut().find(|m| m.id == message_id as u64) else {
            continue;
        };
        let reactor = Reactor {
            user,
            name: DisplayName::stored(name),
        };
        match message.reactions.iter_mut().find(|r| r.emoji == emoji) {
            Some(reaction) => reaction.by.push(reactor),
            None => message.reactions.push(Reaction {
                emoji,
                by: vec![reactor],
            }),
        }
    }
    for message in messages {
        message.reactions.sort_by_key(|r| r.emoji);
    }
}

fn message(row: Row) -> ChatMessage {
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
