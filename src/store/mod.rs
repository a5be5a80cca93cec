//! Where messages are kept: the `Store` trait and its two backends.
//!
//! The backend is chosen once, at start-up, from the database URL: `sqlite://PATH` (the
//! default, embedded, WAL mode) or `postgres://…` (shared by several nodes). Migrations
//! are embedded in the binary and run on open. This module and its children are the only
//! place in hubbub that knows SQL.
//!
//! Ids come from the store and increase in commit order, so an id is also a cursor: "the
//! 50 messages before id 812" means the same thing however many messages arrive meanwhile.

mod postgres;
mod sqlite;

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;
use crate::domain::{ChatMessage, NewMessage, RoomName};

/// What [`Store::append`] returns: the batch's ids, and where the batch sits in the global
/// order of commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The largest id committed before this batch (0 when there was none), read inside the
    /// batch's own transaction, under its write lock. Every id in `(prev, ids[0])` was
    /// skipped (a rolled-back transaction consumed it) and will never be committed.
    pub prev: u64,
    /// The ids, in the batch's order (increasing).
    pub ids: Vec<u64>,
}

impl Appended {
    /// From the rows' ids (sorted) and the `prev` query.
    fn from_rows(prev: i64, ids: Vec<i64>) -> Self {
        Self {
            prev: prev as u64,
            ids: ids.into_iter().map(|id| id as u64).collect(),
        }
    }
}

/// A place to keep messages. Implementations are cheap to share (`Arc<dyn Store>`).
///
/// Ids are committed in id order, across every writer of the store: once a reader has seen
/// id N, no id below N can appear later. (SQLite has one writer; PostgreSQL inserts take an
/// advisory lock held until commit.) The sequencer (`crate::sequencer`) relies on it.
pub trait Store: Send + Sync + 'static {
    /// Stores a batch in one transaction, returning the ids in the batch's order and the
    /// newest id committed before it. Either every message is committed or none is.
    fn append<'a>(&'a self, batch: &'a [NewMessage])
    -> BoxFuture<'a, Result<Appended, StoreError>>;

    /// At most `limit` messages of every room with `after < id <= upto`, oldest first: what
    /// a node missed, read back in commit order.
    fn between(
        &self,
        after: u64,
        upto: u64,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<ChatMessage>, StoreError>>;

    /// The newest committed id (0 for an empty store).
    fn newest_id(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// The newest `limit` messages of a room with an id below `before`, oldest first.
    fn before<'a>(
        &'a self,
        room: &'a RoomName,
        before: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ChatMessage>, StoreError>>;

    /// Every room that has messages, by name.
    fn rooms(&self) -> BoxFuture<'_, Result<Vec<RoomName>, StoreError>>;

    /// The server's cookie-signing key: made (random, 64 bytes) and stored the first time,
    /// the same ever after, so signed cookies survive restarts.
    fn cookie_key(&self) -> BoxFuture<'_, Result<Vec<u8>, StoreError>>;

    /// A cheap query that needs the schema, for readiness checks: it fails when the
    /// database is unreachable and when the messages table cannot be read.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Which backend this is, for logs.
    fn backend(&self) -> &'static str;
}

/// What [`Store::ping`] and [`Store::newest_id`] run on both backends: the newest id, read
/// from the primary key.
const NEWEST: &str = "SELECT COALESCE(MAX(id), 0) FROM messages";

/// The newest id below a batch's first, inside the batch's transaction: [`Appended::prev`].
/// Read after the insert, so SQLite already holds the write lock (a read first would take a
/// read snapshot that the insert could then fail to upgrade) and PostgreSQL the insert lock.
const PREV_SQLITE: &str = "SELECT COALESCE(MAX(id), 0) FROM messages WHERE id < ?";
const PREV_POSTGRES: &str = "SELECT COALESCE(MAX(id), 0) FROM messages WHERE id < $1";

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

/// Opens the store a URL names, creating and migrating it as needed.
pub async fn open(url: &DatabaseUrl) -> Result<Arc<dyn Store>, StoreError> {
    let raw = url.expose();
    if raw.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.is_postgres() {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
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

/// `(id, room, author, body, created_at)` as both backends select it.
type Row = (i64, String, String, String, i64);

/// Rows selected newest first (to apply the limit), turned around.
fn oldest_first(mut rows: Vec<Row>) -> Vec<ChatMessage> {
    rows.reverse();
    in_order(rows)
}

/// A database URL. It may hold a password, so `Debug` and `Display` hide it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether this is a PostgreSQL URL (a database several nodes can share).
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `scheme://user:secret@host` → `scheme://user:***@host`, and `password=` in the
        // query string is hidden too.
        let (url, query) = match self.0.split_once('?') {
            Some((url, query)) => (url, Some(query)),
            None => (self.0.as_str(), None),
        };
        match url.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((user_info, host)) => {
                    let user = user_info
                        .split_once(':')
                        .map_or(user_info, |(user, _)| user);
                    let hidden = if user_info.contains(':') { ":***" } else { "" };
                    write!(f, "{scheme}://{user}{hidden}@{host}")?;
                }
                None => f.write_str(url)?,
            },
            None => f.write_str(url)?,
        }
        if let Some(query) = query {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            write!(f, "?{}", pairs.join("&"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// What can go wrong with the store. The `Display` text is for logs and operators; what a
/// chat user is told comes from [`StoreError::user_message`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot open the database {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database is busy (locked by another writer)")]
    Busy(#[source] sqlx::Error),
    #[error("the database failed: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("the database returned {got} ids for {sent} messages")]
    Inconsistent { sent: usize, got: usize },
    /// The database refused the data itself (a constraint, an invalid value): trying the
    /// same thing again will not help, but the other messages of a batch may go through.
    #[error("the database refused the data: {0}")]
    Rejected(#[source] sqlx::Error),
    #[error("the database did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    #[error("no random numbers for a new cookie key: {0}")]
    NoRandomness(String),
    #[error(
        "the stored cookie key is damaged; delete the `cookie_key` row of `settings` to make a new one (everyone will be signed out)"
    )]
    BadCookieKey,
}

impl StoreError {
    /// One sentence for the person whose message was not sent.
    pub fn user_message(&self) -> &'static str {
        match self {
            StoreError::Busy(_) => "the message store is busy; try again in a moment.",
            StoreError::Rejected(_) => "the message store refused this message.",
            _ => "the message store is unavailable right now; try again in a moment.",
        }
    }

    /// Whether the data itself was refused (as opposed to the database being unreachable).
    pub fn is_rejected(&self) -> bool {
        matches!(self, StoreError::Rejected(_))
    }

    /// Classifies a SQLite error by its result code.
    pub(crate) fn sqlite(err: sqlx::Error) -> Self {
        let class = database_code(&err).map_or(Class::Other, |code| sqlite_class(&code));
        Self::classified(class, err)
    }

    /// Classifies a PostgreSQL error by its SQLSTATE.
    pub(crate) fn postgres(err: sqlx::Error) -> Self {
        let class = database_code(&err).map_or(Class::Other, |code| postgres_class(&code));
        Self::classified(class, err)
    }

    fn classified(class: Class, err: sqlx::Error) -> Self {
        match class {
            Class::Busy => StoreError::Busy(err),
            Class::Rejected => StoreError::Rejected(err),
            Class::Other => StoreError::Unavailable(err),
        }
    }
}

fn database_code(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Busy,
    Rejected,
    Other,
}

/// SQLite reports a number whose low byte is the primary result code (extended codes such
/// as SQLITE_BUSY_SNAPSHOT = 517 share it).
fn sqlite_class(code: &str) -> Class {
    match code.parse::<u32>().map(|number| number & 0xff) {
        Ok(5 | 6) => Class::Busy,                 // SQLITE_BUSY, SQLITE_LOCKED
        Ok(18 | 19 | 20 | 25) => Class::Rejected, // TOOBIG, CONSTRAINT, MISMATCH, RANGE
        _ => Class::Other,
    }
}

/// PostgreSQL: lock_not_available and deadlock_detected pass; class 22 (data exception)
/// and 23 (integrity constraint violation) are about the data itself.
fn postgres_class(code: &str) -> Class {
    match code {
        "55P03" | "40P01" => Class::Busy,
        _ if code.starts_with("22") || code.starts_with("23") => Class::Rejected,
        _ => Class::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_hide_their_passwords() {
        let url = DatabaseUrl::new("postgres://hub:s3cret@db.example:5432/chat");
        assert_eq!(url.to_string(), "postgres://hub:***@db.example:5432/chat");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            DatabaseUrl::new("postgres://hub@db/chat").to_string(),
            "postgres://hub@db/chat"
        );
        assert_eq!(
            DatabaseUrl::new("sqlite://hubbub.db").to_string(),
            "sqlite://hubbub.db"
        );
    }

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(sqlite_class("5"), Class::Busy);
        assert_eq!(sqlite_class("517"), Class::Busy); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(sqlite_class("262"), Class::Busy); // SQLITE_LOCKED_SHAREDCACHE
        assert_eq!(sqlite_class("1555"), Class::Rejected); // SQLITE_CONSTRAINT_PRIMARYKEY
        assert_eq!(sqlite_class("10"), Class::Other); // SQLITE_IOERR
        assert_eq!(postgres_class("22021"), Class::Rejected); // invalid byte sequence
        assert_eq!(postgres_class("23505"), Class::Rejected); // unique violation
        assert_eq!(postgres_class("55P03"), Class::Busy);
        assert_eq!(postgres_class("57P01"), Class::Other); // admin shutdown
    }

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

    #[tokio::test]
    async fn an_unknown_scheme_is_a_clear_error() {
        let err = open(&DatabaseUrl::new("mysql://x")).await.err().unwrap();
        assert!(
            err.to_string().contains("use sqlite://PATH or postgres://"),
            "{err}"
        );
    }
}
