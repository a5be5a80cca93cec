//! The shared backend: PostgreSQL, for several nodes over one history.
//!
//! Inserts take a transaction-scoped advisory lock, so ids are committed in id order even
//! when several nodes write at once: a reader that has seen id N can never later find a
//! smaller id appear. The pool reconnects by itself when the server comes back.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};

use super::StoreError;
use super::error::Class;
use super::sql::{Backend, Inserted, message_columns};
use crate::domain::{NewMessage, RoomName, SearchTerms, unix_micros};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock that orders inserts ("hubbub" in ASCII).
const INSERT_LOCK: i64 = 0x6875_6262_7562;

/// Server-side limits on every connection, so a stuck lock or a hung statement turns into an
/// error the sender is told about instead of a writer that waits forever.
const SESSION_OPTIONS: [(&str, &str); 3] = [
    ("statement_timeout", "5s"),
    ("lock_timeout", "5s"),
    ("idle_in_transaction_session_timeout", "10s"),
];

/// `ts_headline`'s options: matches between U+0001 and U+0002 (`Found::MARK_START`,
/// `Found::MARK_END`), about as much text around them as SQLite's snippet gives.
macro_rules! headline_options {
    () => {
        "'StartSel=' || chr(1) || ', StopSel=' || chr(2) || \
         ', MaxWords=30, MinWords=12, ShortWord=2'"
    };
}

/// A search, with `$filter` added to its conditions. The GIN index finds the matches (or,
/// for a common word, the planner walks the primary key backwards and stops at the
/// limit); `ts_headline` runs on the results alone.
macro_rules! search {
    ($filter:literal) => {
        concat!(
            "SELECT m.id, ",
            message_columns!(),
            ", ts_headline('english', m.body, query, ",
            headline_options!(),
            ") FROM plainto_tsquery('english', $1) query, messages m \
             LEFT JOIN messages q ON q.id = m.reply_to \
             WHERE m.search @@ query AND m.target IS NULL AND m.id < $2",
            $filter,
            " ORDER BY m.id DESC LIMIT $3"
        )
    };
}

/// What is particular to PostgreSQL.
pub(super) struct Postgres;

impl Backend for Postgres {
    type Db = sqlx::Postgres;

    const NAME: &'static str = "postgres";
    const READERS: u32 = 8;
    /// How long to wait for a connection before telling the sender the store is down.
    const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
    /// The session's `statement_timeout` and `lock_timeout` bound a batch.
    const WRITE_TIMEOUT: Option<Duration> = None;
    /// A failed transaction is rolled back; the connection is fine to reuse.
    const CLOSE_FAILED_WRITER: bool = false;
    /// Inserts are ordered by the advisory lock ([`Backend::lock`]).
    const BEGIN: &'static str = "BEGIN";

    fn rows_affected(done: &sqlx::postgres::PgQueryResult) -> u64 {
        done.rows_affected()
    }

    /// Lock_not_available and deadlock_detected pass; class 22 (data exception) and 23
    /// (integrity constraint violation) are about the data itself.
    fn classify(code: &str) -> Class {
        match code {
            "55P03" | "40P01" => Class::Busy,
            _ if code.starts_with("22") || code.starts_with("23") => Class::Rejected,
            _ => Class::Other,
        }
    }

    /// The GIN index finds the matches (or, for a common word, the planner walks the
    /// primary key backwards and stops at the limit); `ts_headline` runs on the results
    /// alone.
    const SEARCH: &'static str = search!("");
    const SEARCH_ROOM: &'static str = search!(" AND m.room = $4");

    /// The words, for `plainto_tsquery` (which stems them and requires them all).
    fn match_query(terms: &SearchTerms, _room: Option<&RoomName>) -> String {
        terms.text()
    }

    fn connect_options(url: &str) -> Result<(PgConnectOptions, PgConnectOptions), sqlx::Error> {
        let mut options = PgConnectOptions::from_str(url)?;
        // Name our connections in pg_stat_activity, unless the URL already does.
        if options.get_application_name().is_none() {
            options = options.application_name("hubbub");
        }
        let options = options.options(SESSION_OPTIONS);
        Ok((options.clone(), options))
    }

    async fn migrate(writer: &PgPool) -> Result<(), MigrateError> {
        MIGRATOR.run(writer).await
    }

    /// The insert lock: held until the transaction ends, so under it a fresh statement
    /// (READ COMMITTED), such as the read of `prev`, sees every batch that committed
    /// before this one (they released the lock only once committed).
    async fn lock(conn: &mut PgConnection) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(INSERT_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(Self::error)?;
        Ok(())
    }

    async fn insert(
        conn: &mut PgConnection,
        batch: &[&NewMessage],
    ) -> Result<Vec<Inserted>, StoreError> {
        let rooms: Vec<&str> = batch.iter().map(|m| m.room.as_str()).collect();
        let authors: Vec<&str> = batch.iter().map(|m| m.author.as_str()).collect();
        let bodies: Vec<&str> = batch.iter().map(|m| m.text.as_str()).collect();
        let times: Vec<i64> = batch.iter().map(|m| unix_micros(m.sent_at)).collect();
        let author_ids: Vec<Option<String>> = batch
            .iter()
            .map(|m| m.author_id.as_ref().map(ToString::to_string))
            .collect();
        let client_ids: Vec<Option<&str>> = batch
            .iter()
            .map(|m| m.client_id.as_ref().map(|id| id.as_str()))
            .collect();
        let replies: Vec<Option<i64>> = batch
            .iter()
            .map(|m| m.reply_to.map(|id| i64::try_from(id).unwrap_or(i64::MAX)))
            .collect();
        let guests: Vec<bool> = batch.iter().map(|m| m.guest).collect();

        // The identity is drawn row by row in UNNEST's order (a skipped resend uses one
        // up: ids may skip).
        let inserted: Vec<Inserted> = sqlx::query_as(
            "INSERT INTO messages (room, author, body, created_at, author_id, client_id, reply_to, \
                                   author_guest) \
             SELECT room, author, body, created_at, author_id, client_id, reply_to, author_guest \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], \
                         $7::bigint[], $8::boolean[]) \
                  WITH ORDINALITY AS batch (room, author, body, created_at, author_id, client_id, \
                                            reply_to, author_guest, position) \
             ORDER BY position \
             ON CONFLICT (author_id, client_id) WHERE client_id IS NOT NULL DO NOTHING \
             RETURNING id, author_id, client_id",
        )
        .bind(&rooms)
        .bind(&authors)
        .bind(&bodies)
        .bind(&times)
        .bind(&author_ids)
        .bind(&client_ids)
        .bind(&replies)
        .bind(&guests)
        .fetch_all(&mut *conn)
        .await
        .map_err(Self::error)?;
        // A room exists from its first message on.
        sqlx::query(
            "INSERT INTO rooms (name, created_at) \
             SELECT room, MIN(created_at) FROM UNNEST($1::text[], $2::bigint[]) AS batch (room, created_at) \
             GROUP BY room ON CONFLICT (name) DO NOTHING",
        )
        .bind(&rooms)
        .bind(&times)
        .execute(&mut *conn)
        .await
        .map_err(Self::error)?;
        Ok(inserted)
    }
}
