//! Read marks (migration 0009): how far each user has read each room, and how many
//! messages each room has past that mark.
//!
//! Marks arrive in batches (`crate::commit` gathers them), written 256 to a statement as
//! upserts that only move a mark forward, so batches from several nodes, in any order, leave the
//! furthest mark. Counting is capped ([`UNREAD_CAP`]): a room left for a year costs a
//! bounded walk of its index, and shows "999+".

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::StoreError;
use super::sql::{Backend, SqlStore, sql_id};
use crate::domain::{Notify, RoomName, UserId};

/// Unread messages counted at most, per room.
pub const UNREAD_CAP: u32 = 1000;

/// One user's mark in one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMark {
    pub user: UserId,
    pub room: RoomName,
    /// The newest message id the user has seen in the room.
    pub last_read: u64,
}

/// A room's unread count for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    pub room: RoomName,
    pub last_read: u64,
    /// Messages after the mark, up to the position asked for, not the user's own and not
    /// deleted; at most [`UNREAD_CAP`].
    pub count: u32,
    /// Those of them that mention the user (by the key of their name now).
    pub mentions: u32,
    /// What the user asked to be notified of in the room.
    pub notify: Notify,
}

/// What the store keeps of read marks. Part of every [`super::Store`].
pub trait ReadStore: Send + Sync {
    /// Moves each mark forward (never back), in one transaction.
    fn save_marks<'a>(&'a self, marks: &'a [ReadMark]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// A user's mark in one room, if they ever read it.
    fn read_mark<'a>(
        &'a self,
        user: &'a UserId,
        room: &'a RoomName,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>>;

    /// Every room a user has a mark in, with what is unread there among the messages up to
    /// position `upto`, and how many of those mention `mention_key`.
    fn unread<'a>(
        &'a self,
        user: &'a UserId,
        mention_key: &'a str,
        upto: u64,
    ) -> BoxFuture<'a, Result<Vec<Unread>, StoreError>>;
}

/// Marks stored per statement: one round trip each, so a thousand readers' marks cost a
/// few statements a second (each holds distinct user and room pairs: one flush's marks).
const SAVE_CHUNK: usize = 256;

/// An upsert of `rows` marks, which only moves each mark forward.
fn save_statement(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO read_marks (user_id, room, last_read) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let first = row * 3 + 1;
        sql.push_str(&format!("(${}, ${}, ${})", first, first + 1, first + 2));
    }
    sql.push_str(
        " ON CONFLICT (user_id, room) DO UPDATE SET last_read = excluded.last_read \
         WHERE excluded.last_read > read_marks.last_read",
    );
    sql
}
const MARK: &str = "SELECT last_read FROM read_marks WHERE user_id = $1 AND room = $2";
/// Each room's count walks the room's own index (`messages_room_posts`) from the mark,
/// and stops at the cap.
const UNREAD: &str = "SELECT r.room, r.last_read, \
                      (SELECT COUNT(*) FROM (SELECT 1 FROM messages m \
                        WHERE m.room = r.room AND m.target IS NULL \
                          AND m.id > r.last_read AND m.id <= $2 \
                          AND m.deleted_at IS NULL \
                          AND (m.author_id IS NULL OR m.author_id <> $1) \
                        LIMIT $3) AS counted), \
                      (SELECT COUNT(*) FROM (SELECT 1 FROM mentions x \
                        JOIN messages m ON m.id = x.message_id \
                        WHERE x.name_key = $4 AND x.room = r.room \
                          AND x.message_id > r.last_read AND x.message_id <= $2 \
                          AND m.deleted_at IS NULL \
                          AND (m.author_id IS NULL OR m.author_id <> $1) \
                        LIMIT $3) AS named), \
                      n.notify \
                      FROM read_marks r LEFT JOIN room_notify n \
                        ON n.user_id = r.user_id AND n.room = r.room \
                      WHERE r.user_id = $1";

impl<B: Backend> ReadStore for SqlStore<B>
where
    B::Db: sqlx::database::HasStatementCache,
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    i64: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    String: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    Option<String>: for<'r> Decode<'r, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    fn save_marks<'a>(&'a self, marks: &'a [ReadMark]) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            if marks.is_empty() {
                return Ok(());
            }
            let mut conn = self.writer.acquire().await.map_err(B::error)?;
            let mut tx = conn.begin_with(B::BEGIN).await.map_err(B::error)?;
            for chunk in marks.chunks(SAVE_CHUNK) {
                let sql = save_statement(chunk.len());
                // One shape per chunk size: not worth a cached statement each.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
                for mark in chunk {
                    query = query
                        .bind(mark.user.to_string())
                        .bind(mark.room.as_str())
                        .bind(sql_id(mark.last_read));
                }
                query.execute(&mut *tx).await.map_err(B::error)?;
            }
            tx.commit().await.map_err(B::error)
        }
        .boxed()
    }

    fn read_mark<'a>(
        &'a self,
        user: &'a UserId,
        room: &'a RoomName,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        async move {
            let mark: Option<i64> = sqlx::query_scalar(MARK)
                .bind(user.to_string())
                .bind(room.as_str())
                .fetch_optional(&self.readers)
                .await
                .map_err(B::error)?;
            Ok(mark.map(|id| id.max(0) as u64))
        }
        .boxed()
    }

    fn unread<'a>(
        &'a self,
        user: &'a UserId,
        mention_key: &'a str,
        upto: u64,
    ) -> BoxFuture<'a, Result<Vec<Unread>, StoreError>> {
        async move {
            let rows: Vec<(String, i64, i64, i64, Option<String>)> = sqlx::query_as(UNREAD)
                .bind(user.to_string())
                .bind(sql_id(upto))
                .bind(i64::from(UNREAD_CAP))
                .bind(mention_key)
                .fetch_all(&self.readers)
                .await
                .map_err(B::error)?;
            let count = |n: i64| u32::try_from(n).unwrap_or(UNREAD_CAP);
            Ok(rows
                .into_iter()
                .filter_map(|(room, last_read, unread, named, notify)| {
                    Some(Unread {
                        room: RoomName::parse(&room).ok()?,
                        last_read: last_read.max(0) as u64,
                        count: count(unread),
                        mentions: count(named),
                        notify: notify
                            .as_deref()
                            .and_then(Notify::parse)
                            .unwrap_or_default(),
                    })
                })
                .collect())
        }
        .boxed()
    }
}
