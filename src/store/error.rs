//! What can go wrong with the store, and how a database error is sorted into it.
//!
//! The owner of the error decides what it means: each backend maps its own codes (SQLite
//! result codes, PostgreSQL SQLSTATEs) to a [`Class`]; this module turns a class into a
//! [`StoreError`] variant, which callers map to a user message and a metric label.

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

    /// Classifies a database error by its code, with the backend's own `classify`.
    pub(super) fn classified(err: sqlx::Error, classify: fn(&str) -> Class) -> Self {
        match database_code(&err).map_or(Class::Other, |code| classify(&code)) {
            Class::Busy => StoreError::Busy(err),
            Class::Rejected => StoreError::Rejected(err),
            Class::Other => StoreError::Unavailable(err),
        }
    }
}

/// What a database error says about trying again.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// Another writer holds a lock: the same thing may work in a moment.
    Busy,
    /// The data itself was refused.
    Rejected,
    /// Anything else: the database is unavailable.
    Other,
}

fn database_code(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Class;
    use crate::store::postgres::Postgres;
    use crate::store::sql::Backend;
    use crate::store::sqlite::Sqlite;

    #[test]
    fn error_codes_are_classified() {
        assert_eq!(Sqlite::classify("5"), Class::Busy);
        assert_eq!(Sqlite::classify("517"), Class::Busy); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(Sqlite::classify("262"), Class::Busy); // SQLITE_LOCKED_SHAREDCACHE
        assert_eq!(Sqlite::classify("1555"), Class::Rejected); // SQLITE_CONSTRAINT_PRIMARYKEY
        assert_eq!(Sqlite::classify("10"), Class::Other); // SQLITE_IOERR
        assert_eq!(Postgres::classify("22021"), Class::Rejected); // invalid byte sequence
        assert_eq!(Postgres::classify("23505"), Class::Rejected); // unique violation
        assert_eq!(Postgres::classify("55P03"), Class::Busy);
        assert_eq!(Postgres::classify("57P01"), Class::Other); // admin shutdown
    }
}
