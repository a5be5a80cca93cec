//! Claimed names and signed-in sessions (migration 0008): the part of the store that says
//! who someone is. Written on the writer's connection (a sign-up or sign-in is rare next to
//! messages, and SQLite has one writer anyway); read on the readers'.
//!
//! Every statement is SQL both databases speak, as in `sql.rs`. Whatever makes a name
//! unique is the database's `UNIQUE (name_key)`: two sign-ups for one name at once, on two
//! nodes, leave one account.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use time::{Duration, OffsetDateTime};

use super::StoreError;
use super::sql::{Backend, SqlStore};
use crate::domain::{
    Account, DisplayName, NameKey, StoredAccount, TokenDigest, UserId, unix_micros,
};

/// How long a session lasts from sign-in (as long as its cookie).
pub const SESSION_LIFE: Duration = Duration::days(365);

/// What the store keeps of accounts and sessions. Part of every [`super::Store`].
pub trait AccountStore: Send + Sync {
    /// Claims `name` (by `key`) for the user `account.id`. `Ok(false)`: the name, or a name
    /// that looks like it, is someone's already (or the user id has an account).
    fn create_account<'a>(
        &'a self,
        account: &'a StoredAccount,
        key: &'a NameKey,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The account holding the name with this key, with its password hash.
    fn account_by_key<'a>(
        &'a self,
        key: &'a NameKey,
    ) -> BoxFuture<'a, Result<Option<StoredAccount>, StoreError>>;

    /// The account holding a name one with `key` by either of its forms
    /// ([`NameKey::same`]).
    fn holder<'a>(&'a self, key: &'a NameKey)
    -> BoxFuture<'a, Result<Option<Account>, StoreError>>;

    /// The account of a user id, if the user has claimed a name.
    fn account<'a>(&'a self, id: &'a UserId) -> BoxFuture<'a, Result<Option<Account>, StoreError>>;

    /// Starts a session for `account`, found later by its token's digest.
    fn add_session<'a>(
        &'a self,
        digest: &'a TokenDigest,
        account: &'a UserId,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The account signed in with a token of this digest, unless the session ended or
    /// expired.
    fn session<'a>(
        &'a self,
        digest: &'a TokenDigest,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>>;

    /// Ends one session (signing out); ending an unknown one does nothing.
    fn end_session<'a>(&'a self, digest: &'a TokenDigest) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Ends every session of an account but `keep` (if given); returns how many ended.
    fn end_sessions<'a>(
        &'a self,
        account: &'a UserId,
        keep: Option<&'a TokenDigest>,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Replaces an account's password hash.
    fn set_password<'a>(
        &'a self,
        account: &'a UserId,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Renames an account. `Ok(false)`: the new name (by key) is someone else's.
    fn rename_account<'a>(
        &'a self,
        account: &'a UserId,
        name: &'a DisplayName,
        key: &'a NameKey,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Makes the account of a name a moderator, or not. `Ok(None)`: no such account.
    fn set_moderator<'a>(
        &'a self,
        key: &'a NameKey,
        moderator: bool,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>>;
}

const CREATE: &str = "INSERT INTO accounts \
                      (id, name, name_key, look_key, password_hash, moderator, created_at) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING";
const BY_KEY: &str = "SELECT id, name, moderator, password_hash FROM accounts WHERE name_key = $1";
/// Whoever holds a name one with either key (never two rows in practice; the oldest).
const HOLDER: &str = "SELECT id, name, moderator, password_hash FROM accounts \
                      WHERE name_key = $1 OR look_key = $2 ORDER BY created_at LIMIT 1";
const BY_ID: &str = "SELECT id, name, moderator, password_hash FROM accounts WHERE id = $1";
const ADD_SESSION: &str =
    "INSERT INTO sessions (token_digest, account_id, created_at) VALUES ($1, $2, $3)";
const SESSION: &str = "SELECT a.id, a.name, a.moderator, a.password_hash \
                       FROM sessions s JOIN accounts a ON a.id = s.account_id \
                       WHERE s.token_digest = $1 AND s.created_at > $2";
const END_SESSION: &str = "DELETE FROM sessions WHERE token_digest = $1";
const END_SESSIONS: &str = "DELETE FROM sessions WHERE account_id = $1 AND token_digest <> $2";
const SET_PASSWORD: &str = "UPDATE accounts SET password_hash = $2 WHERE id = $1";
const RENAME: &str = "UPDATE accounts SET name = $2, name_key = $3, look_key = $4 WHERE id = $1 \
                      AND NOT EXISTS (SELECT 1 FROM accounts \
                                      WHERE (name_key = $3 OR look_key = $4) AND id <> $1)";
const SET_MODERATOR: &str = "UPDATE accounts SET moderator = $2 WHERE name_key = $1";

/// `(id, name, moderator, password_hash)`.
type AccountRow = (String, String, bool, String);

/// An account row as the domain's, or `None` for a row no longer readable as one (an id
/// or name changed by hand): such an account signs nobody in.
fn stored(row: AccountRow) -> Option<StoredAccount> {
    let (id, name, moderator, password_hash) = row;
    Some(StoredAccount {
        account: Account {
            id: UserId::parse(&id)?,
            name: DisplayName::parse(&name).ok()?,
            moderator,
        },
        password_hash,
    })
}

impl<B: Backend> AccountStore for SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    i64: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    String: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    bool: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    fn create_account<'a>(
        &'a self,
        account: &'a StoredAccount,
        key: &'a NameKey,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let done = sqlx::query(CREATE)
                .bind(account.account.id.to_string())
                .bind(account.account.name.as_str())
                .bind(key.as_str())
                .bind(key.look())
                .bind(account.password_hash.as_str())
                .bind(account.account.moderator)
                .bind(unix_micros(OffsetDateTime::now_utc()))
                .execute(&self.writer)
                .await
                .map_err(B::error)?;
            Ok(B::rows_affected(&done) == 1)
        }
        .boxed()
    }

    fn account_by_key<'a>(
        &'a self,
        key: &'a NameKey,
    ) -> BoxFuture<'a, Result<Option<StoredAccount>, StoreError>> {
        async move {
            let row: Option<AccountRow> = sqlx::query_as(BY_KEY)
                .bind(key.as_str())
                .fetch_optional(&self.readers)
                .await
                .map_err(B::error)?;
            Ok(row.and_then(stored))
        }
        .boxed()
    }

    fn holder<'a>(
        &'a self,
        key: &'a NameKey,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        async move {
            let row: Option<AccountRow> = sqlx::query_as(HOLDER)
                .bind(key.as_str())
                .bind(key.look())
                .fetch_optional(&self.readers)
                .await
                .map_err(B::error)?;
            Ok(row.and_then(stored).map(|stored| stored.account))
        }
        .boxed()
    }

    fn account<'a>(&'a self, id: &'a UserId) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        async move {
            let row: Option<AccountRow> = sqlx::query_as(BY_ID)
                .bind(id.to_string())
                .fetch_optional(&self.readers)
                .await
                .map_err(B::error)?;
            Ok(row.and_then(stored).map(|stored| stored.account))
        }
        .boxed()
    }

    fn add_session<'a>(
        &'a self,
        digest: &'a TokenDigest,
        account: &'a UserId,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            sqlx::query(ADD_SESSION)
                .bind(digest.as_str())
                .bind(account.to_string())
                .bind(unix_micros(OffsetDateTime::now_utc()))
                .execute(&self.writer)
                .await
                .map_err(B::error)?;
            Ok(())
        }
        .boxed()
    }

    fn session<'a>(
        &'a self,
        digest: &'a TokenDigest,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        async move {
            let row: Option<AccountRow> = sqlx::query_as(SESSION)
                .bind(digest.as_str())
                .bind(unix_micros(OffsetDateTime::now_utc() - SESSION_LIFE))
                .fetch_optional(&self.readers)
                .await
                .map_err(B::error)?;
            Ok(row.and_then(stored).map(|stored| stored.account))
        }
        .boxed()
    }

    fn end_session<'a>(&'a self, digest: &'a TokenDigest) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            sqlx::query(END_SESSION)
                .bind(digest.as_str())
                .execute(&self.writer)
                .await
                .map_err(B::error)?;
            Ok(())
        }
        .boxed()
    }

    fn end_sessions<'a>(
        &'a self,
        account: &'a UserId,
        keep: Option<&'a TokenDigest>,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            let done = sqlx::query(END_SESSIONS)
                .bind(account.to_string())
                .bind(keep.map_or("", TokenDigest::as_str))
                .execute(&self.writer)
                .await
                .map_err(B::error)?;
            Ok(B::rows_affected(&done))
        }
        .boxed()
    }

    fn set_password<'a>(
        &'a self,
        account: &'a UserId,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            sqlx::query(SET_PASSWORD)
                .bind(account.to_string())
                .bind(hash)
                .execute(&self.writer)
                .await
                .map_err(B::error)?;
            Ok(())
        }
        .boxed()
    }

    fn rename_account<'a>(
        &'a self,
        account: &'a UserId,
        name: &'a DisplayName,
        key: &'a NameKey,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let done = sqlx::query(RENAME)
                .bind(account.to_string())
                .bind(name.as_str())
                .bind(key.as_str())
                .bind(key.look())
                .execute(&self.writer)
                .await;
            match done {
                Ok(done) => Ok(B::rows_affected(&done) == 1),
                // Claimed by someone else between the check and the update.
                Err(err) => match B::error(err) {
                    StoreError::Rejected(_) => Ok(false),
                    err => Err(err),
                },
            }
        }
        .boxed()
    }

    fn set_moderator<'a>(
        &'a self,
        key: &'a NameKey,
        moderator: bool,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        async move {
            sqlx::query(SET_MODERATOR)
                .bind(key.as_str())
                .bind(moderator)
                .execute(&self.writer)
                .await
                .map_err(B::error)?;
            let row: Option<AccountRow> = sqlx::query_as(BY_KEY)
                .bind(key.as_str())
                .fetch_optional(&self.writer)
                .await
                .map_err(B::error)?;
            Ok(row.and_then(stored).map(|stored| stored.account))
        }
        .boxed()
    }
}
