//! What search adds to the SQL store: one query per search, each backend's own
//! (`Backend::SEARCH`, `Backend::SEARCH_ROOM`, `Backend::match_query`), rows read into
//! [`Found`]s. The indexes themselves are kept by the database (migrations 0006 and 0007:
//! SQLite's FTS5 triggers, PostgreSQL's generated column), in the same transaction as the
//! text they index.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::StoreError;
use super::sql::{Backend, SqlStore, message, row_type, sql_id};
use crate::domain::{Found, RoomName, SearchTerms};

/// A message's row and a search's excerpt (its matches between [`Found::MARK_START`] and
/// [`Found::MARK_END`]).
type SearchRow = row_type!(String);

impl<B: Backend> SqlStore<B>
where
    B::Db: sqlx::database::HasStatementCache,
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    i64: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    String: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    bool: Type<B::Db> + for<'r> Decode<'r, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    /// [`super::Store::search`].
    pub(super) async fn find(
        &self,
        terms: &SearchTerms,
        room: Option<&RoomName>,
        before: u64,
        limit: u32,
    ) -> Result<Vec<Found>, StoreError> {
        let query = B::match_query(terms, room);
        let sql = if room.is_some() {
            B::SEARCH_ROOM
        } else {
            B::SEARCH
        };
        // Planned for its own words every time, not prepared once per connection: a plan
        // made for one word (or PostgreSQL's generic plan, after five runs) can be
        // hundreds of times too slow for another (BENCHMARKS.md, search).
        let mut select = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .bind(query)
            .bind(sql_id(before))
            .bind(i64::from(limit));
        if let Some(room) = room {
            select = select.bind(room.as_str());
        }
        let rows: Vec<SearchRow> = select.fetch_all(&self.readers).await.map_err(B::error)?;
        Ok(rows
            .into_iter()
            .map(|row| Found {
                message: message((
                    row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9, row.10,
                    row.11, row.12, row.13, row.14,
                )),
                excerpt: row.15,
            })
            .collect())
    }
}
