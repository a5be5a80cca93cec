//! Mentions (migration 0010): recorded with each new message, in the batch's transaction,
//! and counted past a reader's mark with their unread messages (`reads.rs`); and what each
//! reader asks to be notified of, per room.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::sql::{Backend, SqlStore, sql_id};
use super::{Outcome, StoreError};
use crate::domain::mentions::mentions;
use crate::domain::{Notify, RoomName, UserId};

const MENTION: &str = "INSERT INTO mentions (name_key, room, message_id) VALUES ($1, $2, $3) \
                       ON CONFLICT DO NOTHING";
const SET_NOTIFY: &str = "INSERT INTO room_notify (user_id, room, notify) VALUES ($1, $2, $3) \
                          ON CONFLICT (user_id, room) DO UPDATE SET notify = excluded.notify";
const DEFAULT_NOTIFY: &str = "DELETE FROM room_notify WHERE user_id = $1 AND room = $2";
const NOTIFY: &str = "SELECT notify FROM room_notify WHERE user_id = $1 AND room = $2";

/// What the store keeps of notification settings. Part of every [`super::Store`].
pub trait NotifyStore: Send + Sync {
    /// Sets what `user` is notified of in `room`.
    fn set_notify<'a>(
        &'a self,
        user: &'a UserId,
        room: &'a RoomName,
        notify: Notify,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// What `user` is notified of in `room`.
    fn notify<'a>(
        &'a self,
        user: &'a UserId,
        room: &'a RoomName,
    ) -> BoxFuture<'a, Result<Notify, StoreError>>;
}

impl<B: Backend> SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    i64: Type<B::Db> + for<'q> Encode<'q, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    /// Records whom each new message of a batch mentions, inside its transaction.
    pub(super) async fn record_mentions(
        tx: &mut <B::Db as Database>::Connection,
        outcomes: &[Outcome],
    ) -> Result<(), StoreError> {
        for outcome in outcomes {
            let Outcome::Stored(message) = outcome else {
                continue;
            };
            if message.is_change() {
                continue;
            }
            for key in mentions(message.text.as_str()) {
                sqlx::query(MENTION)
                    .bind(key.as_str())
                    .bind(message.room.as_str())
                    .bind(sql_id(message.id))
                    .execute(&mut *tx)
                    .await
                    .map_err(B::error)?;
            }
        }
        Ok(())
    }
}

impl<B: Backend> NotifyStore for SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    String: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    fn set_notify<'a>(
        &'a self,
        user: &'a UserId,
        room: &'a RoomName,
        notify: Notify,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let user = user.to_string();
            let query = match notify {
                Notify::Mentions => sqlx::query(DEFAULT_NOTIFY)
                    .bind(user.as_str())
                    .bind(room.as_str()),
                other => sqlx::query(SET_NOTIFY)
                    .bind(user.as_str())
                    .bind(room.as_str())
                    .bind(other.as_str()),
            };
            query.execute(&self.writer).await.map_err(B::error)?;
            Ok(())
        }
        .boxed()
    }

    fn notify<'a>(
        &'a self,
        user: &'a UserId,
        room: &'a RoomName,
    ) -> BoxFuture<'a, Result<Notify, StoreError>> {
        async move {
            let notify: Option<String> = sqlx::query_scalar(NOTIFY)
                .bind(user.to_string())
                .bind(room.as_str())
                .fetch_optional(&self.readers)
                .await
                .map_err(B::error)?;
            Ok(notify
                .as_deref()
                .and_then(Notify::parse)
                .unwrap_or(Notify::Mentions))
        }
        .boxed()
    }
}
