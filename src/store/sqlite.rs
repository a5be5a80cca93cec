//! The embedded backend: one SQLite file in WAL mode.
//!
//! Durability: `synchronous=FULL`, so a commit is on disk before hubbub broadcasts it,
//! even across a power cut. Group commit (one transaction per batch, in `crate::commit`)
//! keeps the cost of that fsync shared by many messages.

use std::str::FromStr;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use super::{
    Appended, DatabaseUrl, Row, Store, StoreError, decode_cookie_key, in_order, new_cookie_key,
    oldest_first, room_names, sql_id,
};
use crate::domain::{ChatMessage, NewMessage, RoomName, unix_micros};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    /// One connection, for the commit writer alone: SQLite has one writer at a time anyway,
    /// and paging readers can never make it wait for a connection.
    writer: SqlitePool,
    /// For reads (paging, start-up); WAL lets them run beside the writer.
    readers: SqlitePool,
}

/// The longest one batch's transaction may take; below the commit writer's own bound
/// (10 s, `crate::commit`), so the store is the one that gives up and closes the
/// connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(8);

impl SqliteStore {
    pub async fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            url: url.to_string(),
            source,
        };
        let options = SqliteConnectOptions::from_str(url.expose())
            .map_err(open_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        MIGRATOR.run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options.read_only(true))
            .await
            .map_err(open_error)?;
        Ok(Self { writer, readers })
    }

    async fn append_batch(&self, batch: &[NewMessage]) -> Result<Appended, StoreError> {
        let mut conn = self.writer.acquire().await.map_err(StoreError::sqlite)?;
        // Timed out here, not only by the commit writer's longer bound, so that a write
        // stuck mid-transaction also ends with the connection closed below.
        let stored = tokio::time::timeout(WRITE_TIMEOUT, Self::insert(&mut conn, batch))
            .await
            .unwrap_or(Err(StoreError::TimedOut(WRITE_TIMEOUT)));
        if stored.is_err() {
            // After some failures (SQLITE_FULL, I/O errors) SQLite may or may not roll the
            // transaction back by itself, and the connection can be left inside one that
            // sqlx no longer tracks. Seen with a full disk (tests/it/faults.rs): every later
            // batch on that connection reported success and was broadcast, yet no other
            // connection ever saw it, so a restart would have lost it. A connection that
            // failed a write is closed (dropping whatever it holds) and the next batch gets a
            // fresh one.
            conn.close_on_drop();
        }
        stored
    }

    async fn insert(
        conn: &mut SqliteConnection,
        batch: &[NewMessage],
    ) -> Result<Appended, StoreError> {
        // One statement for the whole batch: the rows travel as one JSON array and SQLite
        // inserts them in array order, numbering them in that order.
        let rows: Vec<(&str, &str, &str, i64)> = batch
            .iter()
            .map(|m| {
                (
                    m.room.as_str(),
                    m.author.as_str(),
                    m.text.as_str(),
                    unix_micros(m.sent_at),
                )
            })
            .collect();
        let json = serde_json::to_string(&rows)
            .map_err(|err| StoreError::Unavailable(sqlx::Error::Encode(err.into())))?;
        let mut tx = conn.begin().await.map_err(StoreError::sqlite)?;
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO messages (room, author, body, created_at) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?) ORDER BY key \
             RETURNING id",
        )
        .bind(&json)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::sqlite)?;
        // A room exists from its first message on.
        sqlx::query(
            "INSERT INTO rooms (name, created_at) \
             SELECT value ->> 0, MIN(value ->> 3) FROM json_each(?) GROUP BY value ->> 0 \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&json)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::sqlite)?;
        if ids.len() != batch.len() {
            // Dropping the transaction rolls it back: nothing half-stored.
            return Err(StoreError::Inconsistent {
                sent: batch.len(),
                got: ids.len(),
            });
        }
        // RETURNING does not promise an order; the ids were assigned in array order.
        ids.sort_unstable();
        let prev: i64 = sqlx::query_scalar(super::PREV_SQLITE)
            .bind(ids.first().copied().unwrap_or(i64::MAX))
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::sqlite)?;
        tx.commit().await.map_err(StoreError::sqlite)?;
        Ok(Appended::from_rows(prev, ids))
    }

    async fn between_rows(
        &self,
        after: u64,
        upto: u64,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, room, author, body, created_at FROM messages \
             WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
        )
        .bind(sql_id(after))
        .bind(sql_id(upto))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(StoreError::sqlite)?;
        Ok(in_order(rows))
    }

    async fn newest(&self) -> Result<u64, StoreError> {
        let newest: i64 = sqlx::query_scalar(super::NEWEST)
            .fetch_one(&self.readers)
            .await
            .map_err(StoreError::sqlite)?;
        Ok(newest as u64)
    }

    async fn before_rows(
        &self,
        room: &RoomName,
        before: u64,
        limit: u32,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, room, author, body, created_at FROM messages \
             WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(room.as_str())
        .bind(i64::try_from(before).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(StoreError::sqlite)?;
        Ok(oldest_first(rows))
    }
}

impl SqliteStore {
    async fn room_list(&self) -> Result<Vec<RoomName>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM rooms ORDER BY name")
            .fetch_all(&self.readers)
            .await
            .map_err(StoreError::sqlite)?;
        Ok(room_names(names))
    }

    async fn stored_cookie_key(&self) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ('cookie_key', ?) ON CONFLICT (name) DO NOTHING")
            .bind(new_cookie_key()?)
            .execute(&self.writer)
            .await
            .map_err(StoreError::sqlite)?;
        let hex: String =
            sqlx::query_scalar("SELECT value FROM settings WHERE name = 'cookie_key'")
                .fetch_one(&self.writer)
                .await
                .map_err(StoreError::sqlite)?;
        decode_cookie_key(&hex)
    }
}

impl Store for SqliteStore {
    fn rooms(&self) -> BoxFuture<'_, Result<Vec<RoomName>, StoreError>> {
        self.room_list().boxed()
    }

    fn cookie_key(&self) -> BoxFuture<'_, Result<Vec<u8>, StoreError>> {
        self.stored_cookie_key().boxed()
    }

    fn append<'a>(
        &'a self,
        batch: &'a [NewMessage],
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        self.append_batch(batch).boxed()
    }

    fn between(
        &self,
        after: u64,
        upto: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<ChatMessage>, StoreError>> {
        self.between_rows(after, upto, limit).boxed()
    }

    fn newest_id(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.newest().boxed()
    }

    fn before<'a>(
        &'a self,
        room: &'a RoomName,
        before: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>> {
        self.before_rows(room, before, limit).boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            // Reads the messages table (its newest id, from the primary key), so a
            // damaged or missing schema fails the check, not just a dead connection.
            self.newest().await.map(drop)
        }
        .boxed()
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
