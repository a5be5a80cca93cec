//! Bans (migration 0011): who may no longer post. Written by a moderator's request, read
//! by every node every couple of seconds (`crate::hub` keeps the set).

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use time::OffsetDateTime;

use super::StoreError;
use super::sql::{Backend, SqlStore};
use crate::domain::{Ban, UserId, unix_micros};

/// What the store keeps of bans. Part of every [`super::Store`].
pub trait BanStore: Send + Sync {
    /// Bans a user; `Ok(false)` when they were banned already.
    fn ban<'a>(&'a self, ban: &'a Ban) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Lifts a ban; `Ok(false)` when there was none.
    fn unban<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Every ban, newest first.
    fn bans(&self) -> BoxFuture<'_, Result<Vec<Ban>, StoreError>>;
}

const BAN: &str = "INSERT INTO bans (user_id, name, banned_by, created_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT DO NOTHING";
const UNBAN: &str = "DELETE FROM bans WHERE user_id = $1";
const BANS: &str = "SELECT user_id, name, banned_by, created_at FROM bans ORDER BY created_at DESC";

impl<B: Backend> BanStore for SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    i64: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    String: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    fn ban<'a>(&'a self, ban: &'a Ban) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let done = sqlx::query(BAN)
                .bind(ban.user.to_string())
                .bind(ban.name.as_str())
                .bind(ban.by.as_str())
                .bind(unix_micros(ban.at))
                .execute(&self.writer)
                .await
                .map_err(B::error)?;
            Ok(B::rows_affected(&done) == 1)
        }
        .boxed()
    }

    fn unban<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let done = sqlx::query(UNBAN)
                .bind(user.to_string())
                .execute(&self.writer)
                .await
                .map_err(B::error)?;
            Ok(B::rows_affected(&done) == 1)
        }
        .boxed()
    }

    fn bans(&self) -> BoxFuture<'_, Result<Vec<Ban>, StoreError>> {
        async move {
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(BANS)
                .fetch_all(&self.readers)
                .await
                .map_err(B::error)?;
            Ok(rows
                .into_iter()
                .filter_map(|(user, name, by, at)| {
                    Some(Ban {
                        user: UserId::parse(&user)?,
                        name,
                        by,
                        at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1000)
                            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    })
                })
                .collect())
        }
        .boxed()
    }
}
