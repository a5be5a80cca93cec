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
use super::{Appended, DatabaseUrl, Store, StoreError};
use crate::domain::{ChatMessage, NewMessage, RoomName};

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

    /// Inserts a batch, in its order, and creates the rooms it is the first message of,
    /// inside the transaction `conn` is in. Returns the new ids, in any order.
    fn insert(
        conn: &mut <Self::Db as Database>::Connection,
        batch: &[NewMessage],
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;

    /// What an error code of this database (`sqlx::error::DatabaseError::code`) means.
    fn classify(code: &str) -> Class;

    /// A database error as a [`StoreError`], classified by [`Backend::classify`].
    fn error(err: sqlx::Error) -> StoreError {
        StoreError::classified(err, Self::classify)
    }
}

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

const BETWEEN: &str = "SELECT id, room, author, body, created_at FROM messages \
                       WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3";

const BEFORE: &str = "SELECT id, room, author, body, created_at FROM messages \
                      WHERE room = $1 AND id < $2 ORDER BY id DESC LIMIT $3";

const ROOMS: &str = "SELECT name FROM rooms ORDER BY name";

const KEEP_COOKIE_KEY: &str = "INSERT INTO settings (name, value) VALUES ('cookie_key', $1) \
                               ON CONFLICT (name) DO NOTHING";

const COOKIE_KEY: &str = "SELECT value FROM settings WHERE name = 'cookie_key'";

/// `(id, room, author, body, created_at)` as the queries select it.
type Row = (i64, String, String, String, i64);

impl<B: Backend> Store for SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    i64: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    String: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    fn append<'a>(
        &'a self,
        batch: &'a [NewMessage],
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        async move {
            let mut conn = self.writer.acquire().await.map_err(B::error)?;
            let transaction = async {
                let mut tx = conn.begin().await.map_err(B::error)?;
                let mut ids = B::insert(&mut tx, batch).await?;
                if ids.len() != batch.len() {
                    // Dropping the transaction rolls it back: nothing half-stored.
                    return Err(StoreError::Inconsistent {
                        sent: batch.len(),
                        got: ids.len(),
                    });
                }
                // RETURNING does not promise an order; the ids were drawn in the batch's.
                ids.sort_unstable();
                let prev: i64 = sqlx::query_scalar(PREV)
                    .bind(ids.first().copied().unwrap_or(i64::MAX))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(B::error)?;
                tx.commit().await.map_err(B::error)?;
                Ok(Appended::from_rows(prev, ids))
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
            Ok(in_order(rows))
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
            Ok(in_order(rows))
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

/// An id for a query parameter (ids beyond `i64::MAX` do not exist).
fn sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Rows selected oldest first.
fn in_order(rows: Vec<Row>) -> Vec<ChatMessage> {
    rows.into_iter()
        .map(|(id, room, author, body, at)| {
            ChatMessage::from_row(id as u64, &room, author, body, at)
        })
        .collect()
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
