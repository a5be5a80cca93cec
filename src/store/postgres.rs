//! The shared backend: PostgreSQL, for several nodes over one history.
//!
//! Inserts take a transaction-scoped advisory lock, so ids are committed in id order even
//! when several nodes write at once: a reader that has seen id N can never later find a
//! smaller id appear. The pool reconnects by itself when the server comes back.

use std::str::FromStr;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    Appended, DatabaseUrl, Row, Store, StoreError, decode_cookie_key, in_order, new_cookie_key,
    oldest_first, room_names, sql_id,
};
use crate::domain::{ChatMessage, NewMessage, RoomName, unix_micros};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock that orders inserts ("hubbub" in ASCII).
const INSERT_LOCK: i64 = 0x6875_6262_7562;

/// How long to wait for a connection before telling the sender the store is down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct PostgresStore {
    /// For the commit writer alone, so paging readers can never make it wait.
    writer: PgPool,
    /// For reads (paging, start-up).
    readers: PgPool,
}

/// Server-side limits on every connection, so a stuck lock or a hung statement turns into an
/// error the sender is told about instead of a writer that waits forever.
const SESSION_OPTIONS: [(&str, &str); 3] = [
    ("statement_timeout", "5s"),
    ("lock_timeout", "5s"),
    ("idle_in_transaction_session_timeout", "10s"),
];

impl PostgresStore {
    pub async fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            url: url.to_string(),
            source,
        };
        let mut options = PgConnectOptions::from_str(url.expose()).map_err(open_error)?;
        // Name our connections in pg_stat_activity, unless the URL already does.
        if options.get_application_name().is_none() {
            options = options.application_name("hubbub");
        }
        let options = options.options(SESSION_OPTIONS);
        let writer = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        MIGRATOR.run(&writer).await?;
        let readers = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        Ok(Self { writer, readers })
    }

    async fn append_batch(&self, batch: &[NewMessage]) -> Result<Appended, StoreError> {
        let rooms: Vec<&str> = batch.iter().map(|m| m.room.as_str()).collect();
        let authors: Vec<&str> = batch.iter().map(|m| m.author.as_str()).collect();
        let bodies: Vec<&str> = batch.iter().map(|m| m.text.as_str()).collect();
        let times: Vec<i64> = batch.iter().map(|m| unix_micros(m.sent_at)).collect();

        let mut tx = self.writer.begin().await.map_err(StoreError::postgres)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(INSERT_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::postgres)?;
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO messages (room, author, body, created_at) \
             SELECT room, author, body, created_at \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) \
                  WITH ORDINALITY AS batch (room, author, body, created_at, position) \
             ORDER BY position \
             RETURNING id",
        )
        .bind(&rooms)
        .bind(&authors)
        .bind(&bodies)
        .bind(&times)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::postgres)?;
        // A room exists from its first message on.
        sqlx::query(
            "INSERT INTO rooms (name, created_at) \
             SELECT room, MIN(created_at) FROM UNNEST($1::text[], $2::bigint[]) AS batch (room, created_at) \
             GROUP BY room ON CONFLICT (name) DO NOTHING",
        )
        .bind(&rooms)
        .bind(&times)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::postgres)?;
        if ids.len() != batch.len() {
            // Dropping the transaction rolls it back: nothing half-stored.
            return Err(StoreError::Inconsistent {
                sent: batch.len(),
                got: ids.len(),
            });
        }
        // The identity is drawn row by row in UNNEST's order; RETURNING's order is not
        // promised, so sort.
        ids.sort_unstable();
        // Under the insert lock, a fresh statement (READ COMMITTED) sees every batch that
        // committed before this one: they released the lock only once committed.
        let prev: i64 = sqlx::query_scalar(super::PREV_POSTGRES)
            .bind(ids.first().copied().unwrap_or(i64::MAX))
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::postgres)?;
        tx.commit().await.map_err(StoreError::postgres)?;
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
             WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
        )
        .bind(sql_id(after))
        .bind(sql_id(upto))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(StoreError::postgres)?;
        Ok(in_order(rows))
    }

    async fn newest(&self) -> Result<u64, StoreError> {
        let newest: i64 = sqlx::query_scalar(super::NEWEST)
            .fetch_one(&self.readers)
            .await
            .map_err(StoreError::postgres)?;
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
             WHERE room = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(room.as_str())
        .bind(i64::try_from(before).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(StoreError::postgres)?;
        Ok(oldest_first(rows))
    }
}

impl PostgresStore {
    async fn room_list(&self) -> Result<Vec<RoomName>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM rooms ORDER BY name")
            .fetch_all(&self.readers)
            .await
            .map_err(StoreError::postgres)?;
        Ok(room_names(names))
    }

    async fn stored_cookie_key(&self) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ('cookie_key', $1) ON CONFLICT (name) DO NOTHING")
            .bind(new_cookie_key()?)
            .execute(&self.writer)
            .await
            .map_err(StoreError::postgres)?;
        let hex: String =
            sqlx::query_scalar("SELECT value FROM settings WHERE name = 'cookie_key'")
                .fetch_one(&self.writer)
                .await
                .map_err(StoreError::postgres)?;
        decode_cookie_key(&hex)
    }
}

impl Store for PostgresStore {
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
        async move { self.newest().await.map(drop) }.boxed()
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
