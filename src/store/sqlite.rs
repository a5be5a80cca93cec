//! The embedded backend: one SQLite file in WAL mode.
//!
//! Durability: `synchronous=FULL`, so a commit is on disk before hubbub broadcasts it,
//! even across a power cut. Group commit (one transaction per batch, in `crate::commit`)
//! keeps the cost of that fsync shared by many messages.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};

use super::StoreError;
use super::error::Class;
use super::sql::{Backend, Inserted, message_columns};
use crate::domain::{NewMessage, RoomName, SearchTerms, hex, unix_micros};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A search, with `$filter` added to its conditions. FTS5 walks its index newest first
/// and stops at the limit; the row and the quote are read for the results alone.
macro_rules! search {
    ($filter:literal) => {
        concat!(
            "SELECT m.id, ",
            message_columns!(),
            ", snippet(messages_search, 0, char(1), char(2), '…', 24) \
             FROM messages_search JOIN messages m ON m.id = messages_search.rowid \
             LEFT JOIN messages q ON q.id = m.reply_to \
             WHERE messages_search MATCH $1 AND messages_search.rowid < $2",
            $filter,
            " ORDER BY messages_search.rowid DESC LIMIT $3"
        )
    };
}

/// What is particular to SQLite.
pub(super) struct Sqlite;

impl Backend for Sqlite {
    type Db = sqlx::Sqlite;

    const NAME: &'static str = "sqlite";
    /// WAL lets readers run beside the one writer.
    const READERS: u32 = 4;
    const ACQUIRE_TIMEOUT: Duration = BUSY_TIMEOUT;
    /// Below the commit writer's own bound (10 s, `crate::commit`), so the store is the one
    /// that gives up and closes the connection: a write stuck mid-transaction also ends with
    /// the connection closed.
    const WRITE_TIMEOUT: Option<Duration> = Some(Duration::from_secs(8));
    /// After some failures (SQLITE_FULL, I/O errors) SQLite may or may not roll the
    /// transaction back by itself, and the connection can be left inside one that sqlx no
    /// longer tracks. Seen with a full disk (tests/it/faults.rs): every later batch on that
    /// connection reported success and was broadcast, yet no other connection ever saw it,
    /// so a restart would have lost it. A connection that failed a write is closed
    /// (dropping whatever it holds) and the next batch gets a fresh one.
    const CLOSE_FAILED_WRITER: bool = true;
    /// The write lock first, waiting (`busy_timeout`) while another process's writer holds
    /// it. A deferred transaction starts as a reader and takes the lock at its first write;
    /// if another writer committed in between, SQLite refuses at once ("database is
    /// locked", no wait). The search index's triggers made that common with two writers
    /// on one file (tests/it/sequencing.rs).
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    fn rows_affected(done: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    /// SQLite reports a number whose low byte is the primary result code (extended codes
    /// such as SQLITE_BUSY_SNAPSHOT = 517 share it).
    fn classify(code: &str) -> Class {
        match code.parse::<u32>().map(|number| number & 0xff) {
            Ok(5 | 6) => Class::Busy,                 // SQLITE_BUSY, SQLITE_LOCKED
            Ok(18 | 19 | 20 | 25) => Class::Rejected, // TOOBIG, CONSTRAINT, MISMATCH, RANGE
            _ => Class::Other,
        }
    }

    /// FTS5 walks its index newest first and stops at the limit; the row and the quote are
    /// read for the results alone.
    const SEARCH: &'static str = search!("");
    /// The index finds the room's matches itself (the room is a column of it, see
    /// [`Sqlite::match_query`]); the row's room is checked too (`+`: without using the
    /// room's own index, which would test each of its messages against the search).
    const SEARCH_ROOM: &'static str = search!(" AND +m.room = $4");

    /// Each word as an FTS5 string in the `body` column (so no word is read as an
    /// operator or a column), all of them required, and in one room also its name (in
    /// hex, as migration 0007 indexes it) in the `room` column. Words hold only letters and
    /// digits: nothing to escape.
    fn match_query(terms: &SearchTerms, room: Option<&RoomName>) -> String {
        let mut parts: Vec<String> = terms
            .words()
            .iter()
            .map(|w| format!("body : \"{w}\""))
            .collect();
        if let Some(room) = room {
            parts.push(format!("room : \"{}\"", hex(room.as_str().as_bytes())));
        }
        parts.join(" AND ")
    }

    fn connect_options(
        url: &str,
    ) -> Result<(SqliteConnectOptions, SqliteConnectOptions), sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        Ok((options.clone(), options.read_only(true)))
    }

    async fn migrate(writer: &SqlitePool) -> Result<(), MigrateError> {
        MIGRATOR.run(writer).await
    }

    /// The write lock was taken by `BEGIN IMMEDIATE` ([`Sqlite::BEGIN`]).
    async fn lock(_conn: &mut SqliteConnection) -> Result<(), StoreError> {
        Ok(())
    }

    async fn insert(
        conn: &mut SqliteConnection,
        batch: &[&NewMessage],
    ) -> Result<Vec<Inserted>, StoreError> {
        // One statement for the whole batch: the rows travel as one JSON array and SQLite
        // inserts them in array order, numbering them in that order.
        type Json<'a> = (
            &'a str,
            &'a str,
            &'a str,
            i64,
            Option<String>,
            Option<&'a str>,
            Option<u64>,
            bool,
        );
        let rows: Vec<Json> = batch
            .iter()
            .map(|m| {
                (
                    m.room.as_str(),
                    m.author.as_str(),
                    m.text.as_str(),
                    unix_micros(m.sent_at),
                    m.author_id.as_ref().map(ToString::to_string),
                    m.client_id.as_ref().map(|id| id.as_str()),
                    m.reply_to,
                    m.guest,
                )
            })
            .collect();
        let json = serde_json::to_string(&rows)
            .map_err(|err| StoreError::Unavailable(sqlx::Error::Encode(err.into())))?;
        // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT.
        let inserted: Vec<Inserted> = sqlx::query_as(
            "INSERT INTO messages (room, author, body, created_at, author_id, client_id, reply_to, \
                                   author_guest) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
                    value ->> 6, value ->> 7 \
             FROM json_each(?) WHERE true ORDER BY key \
             ON CONFLICT (author_id, client_id) WHERE client_id IS NOT NULL DO NOTHING \
             RETURNING id, author_id, client_id",
        )
        .bind(&json)
        .fetch_all(&mut *conn)
        .await
        .map_err(Self::error)?;
        // A room exists from its first message on.
        sqlx::query(
            "INSERT INTO rooms (name, created_at) \
             SELECT value ->> 0, MIN(value ->> 3) FROM json_each(?) GROUP BY value ->> 0 \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&json)
        .execute(&mut *conn)
        .await
        .map_err(Self::error)?;
        Ok(inserted)
    }
}
