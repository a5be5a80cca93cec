//! Changes to stored messages, for [`SqlStore`]: applying an edit, a delete or a reaction
//! inside a batch's transaction (the rules checked in the same transaction that changes
//! the row), a reply's quote of what it answers, and reading reactions back onto messages.
//!
//! Written once for both databases, like `sql.rs`, whose [`SqlStore`] this extends.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::Outcome;
use super::StoreError;
use super::sql::{Backend, Row, SqlStore, VERSION, message, sql_id};
use crate::domain::{
    Change, ChangeKind, ChangeRefused, ChatMessage, DisplayName, Emoji, NewMessage, Quote,
    Reaction, Reactor, UserId, unix_micros,
};

/// The message a reply answers, if it is a message: its room, author, text and state.
const QUOTED: &str = "SELECT room, author, body, edited_at IS NOT NULL, deleted_at IS NOT NULL \
                      FROM messages WHERE id = $1 AND target IS NULL";

/// An edit, if the message is in the room, its author's, and not deleted.
const EDIT: &str = "UPDATE messages SET body = $1, edited_at = $2 \
                    WHERE id = $3 AND room = $4 AND author_id = $5 \
                    AND target IS NULL AND deleted_at IS NULL \
                    RETURNING id, room, author";

/// A delete, on the same conditions, except that a moderator may delete anyone's message
/// (their right is read here, in the delete's transaction: a grant or a revoke counts at
/// once, on every node): the text is gone from the row for good.
const DELETE: &str = "UPDATE messages SET body = '', deleted_at = $1 \
                      WHERE id = $2 AND room = $3 \
                      AND (author_id = $4 \
                           OR EXISTS (SELECT 1 FROM accounts a WHERE a.id = $4 AND a.moderator)) \
                      AND target IS NULL AND deleted_at IS NULL \
                      RETURNING id, room, author";

/// Why a change found nothing to change.
const CHANGEABLE: &str = "SELECT deleted_at IS NOT NULL FROM messages \
                          WHERE id = $1 AND room = $2 AND target IS NULL";

/// Whether a message can take a reaction (in the room, and if so whether deleted), and
/// its author (for the change's entry).
const REACTABLE: &str = "SELECT deleted_at IS NOT NULL, author FROM messages \
                         WHERE id = $1 AND room = $2 AND target IS NULL";

const REACT: &str = "INSERT INTO reactions (message_id, emoji, user_id, name, created_at) \
                     VALUES ($1, $2, $3, $4, $5)";

const UNREACT: &str = "DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3 \
                       RETURNING message_id";

const UNREACT_ALL: &str = "DELETE FROM reactions WHERE message_id = $1";

/// One message's reactions, each reactor in the order they reacted.
const REACTIONS_OF: &str = "SELECT message_id, emoji, user_id, name FROM reactions \
                            WHERE message_id = $1 ORDER BY created_at, user_id";

/// A change's own entry: the next position, naming its message, holding no text.
const CHANGE_ENTRY: &str = "INSERT INTO messages (room, author, body, created_at, author_id, target) \
                            VALUES ($1, $2, '', $3, $4, $5) RETURNING id";

/// What reads and changes messages beyond the [`Store`] methods themselves, under the same
/// bounds.
impl<B: Backend> SqlStore<B>
where
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
    usize: ColumnIndex<<B::Db as Database>::Row>,
    i64: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    String: Type<B::Db> + for<'q> Encode<'q, B::Db> + for<'r> Decode<'r, B::Db>,
    bool: Type<B::Db> + for<'r> Decode<'r, B::Db>,
    for<'q> &'q str: Type<B::Db> + Encode<'q, B::Db>,
{
    /// The messages with their reactions, read in a query per [`REACTION_IDS`] messages.
    pub(super) async fn with_reactions(
        &self,
        mut messages: Vec<ChatMessage>,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let mut ids: Vec<i64> = messages.iter().map(|m| sql_id(m.id)).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows: Vec<ReactionRow> = Vec::new();
        for chunk in ids.chunks(REACTION_IDS) {
            let sql = sqlx::AssertSqlSafe(reactions_in(chunk.len()));
            let mut query = sqlx::query_as(sql);
            for id in chunk {
                query = query.bind(*id);
            }
            rows.extend(query.fetch_all(&self.readers).await.map_err(B::error)?);
        }
        attach_reactions(&mut messages, rows);
        Ok(messages)
    }

    /// The quote a reply to `id` carries, or why it may not answer it: the message must
    /// be one of the reply's room and not deleted.
    pub(super) async fn quote(
        tx: &mut <B::Db as Database>::Connection,
        post: &NewMessage,
        id: u64,
    ) -> Result<Result<Quote, ChangeRefused>, StoreError> {
        let found: Option<(String, String, String, bool, bool)> = sqlx::query_as(QUOTED)
            .bind(sql_id(id))
            .fetch_optional(&mut *tx)
            .await
            .map_err(B::error)?;
        Ok(match found {
            Some((room, _, _, _, _)) if room != post.room.as_str() => {
                Err(ChangeRefused::ReplyNotFound)
            }
            None => Err(ChangeRefused::ReplyNotFound),
            Some((_, _, _, _, true)) => Err(ChangeRefused::ReplyDeleted),
            Some((_, author, body, edited, deleted)) => {
                Ok(Quote::of(id, author, &body, edited, deleted))
            }
        })
    }

    /// Applies one change inside the batch's transaction: the message's row gets its new
    /// version (if the rules allow) and the change its own entry, at the next position.
    pub(super) async fn apply(
        tx: &mut <B::Db as Database>::Connection,
        change: &Change,
    ) -> Result<Outcome, StoreError> {
        let by = change.by.to_string();
        let at = unix_micros(change.at);
        let changed: Option<(i64, String, String)> = match &change.what {
            ChangeKind::Edit(text) => sqlx::query_as(EDIT)
                .bind(text.as_str())
                .bind(at)
                .bind(sql_id(change.id))
                .bind(change.room.as_str())
                .bind(by.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(B::error),
            ChangeKind::Delete => {
                let deleted: Option<(i64, String, String)> = sqlx::query_as(DELETE)
                    .bind(at)
                    .bind(sql_id(change.id))
                    .bind(change.room.as_str())
                    .bind(by.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(B::error)?;
                if deleted.is_some() {
                    // Its reactions go with its text.
                    sqlx::query(UNREACT_ALL)
                        .bind(sql_id(change.id))
                        .execute(&mut *tx)
                        .await
                        .map_err(B::error)?;
                }
                Ok(deleted)
            }
            ChangeKind::React(emoji, name) => {
                let found: Option<(bool, String)> = sqlx::query_as(REACTABLE)
                    .bind(sql_id(change.id))
                    .bind(change.room.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(B::error)?;
                let author = match found {
                    None => return Ok(Outcome::Refused(ChangeRefused::NotFound)),
                    Some((true, _)) => return Ok(Outcome::Refused(ChangeRefused::Deleted)),
                    Some((false, author)) => author,
                };
                // A toggle: the user's emoji comes off if it is there, else it goes on.
                let removed: Option<i64> = sqlx::query_scalar(UNREACT)
                    .bind(sql_id(change.id))
                    .bind(emoji.as_str())
                    .bind(by.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(B::error)?;
                if removed.is_none() {
                    sqlx::query(REACT)
                        .bind(sql_id(change.id))
                        .bind(emoji.as_str())
                        .bind(by.as_str())
                        .bind(name.as_str())
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(B::error)?;
                }
                Ok(Some((
                    sql_id(change.id),
                    change.room.as_str().to_owned(),
                    author,
                )))
            }
        }?;
        let Some((id, room, author)) = changed else {
            let deleted: Option<bool> = sqlx::query_scalar(CHANGEABLE)
                .bind(sql_id(change.id))
                .bind(change.room.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(B::error)?;
            return Ok(Outcome::Refused(match deleted {
                None => ChangeRefused::NotFound,
                Some(true) => ChangeRefused::Deleted,
                Some(false) => ChangeRefused::NotYours,
            }));
        };
        let seq: i64 = sqlx::query_scalar(CHANGE_ENTRY)
            .bind(room.as_str())
            .bind(author.as_str())
            .bind(at)
            .bind(by.as_str())
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(B::error)?;
        let version: Row = sqlx::query_as(VERSION)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(B::error)?;
        let rows: Vec<ReactionRow> = sqlx::query_as(REACTIONS_OF)
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(B::error)?;
        let mut version = [message(version)];
        version[0].seq = seq as u64;
        attach_reactions(&mut version, rows);
        let [version] = version;
        Ok(Outcome::Stored(version))
    }
}

/// `(message_id, emoji, user_id, name)` as the reaction queries select it.
type ReactionRow = (i64, String, String, String);

/// The reactions of every message among `ids` (at most [`REACTION_IDS`] of them), each
/// reactor in the order they reacted.
fn reactions_in(ids: usize) -> String {
    let list: Vec<String> = (1..=ids).map(|n| format!("${n}")).collect();
    format!(
        "SELECT message_id, emoji, user_id, name FROM reactions WHERE message_id IN ({}) \
         ORDER BY message_id, created_at, user_id",
        list.join(", ")
    )
}

/// How many messages one reaction query asks about.
const REACTION_IDS: usize = 100;

/// Puts reaction rows on their messages: the emoji in the set's order, each with its
/// reactors in the order the rows come. A row that no longer parses (an emoji since
/// dropped from the set, a damaged id) is skipped.
fn attach_reactions(messages: &mut [ChatMessage], rows: Vec<ReactionRow>) {
    for (message_id, emoji, user, name) in rows {
        let (Some(emoji), Some(user)) = (Emoji::parse(&emoji), UserId::parse(&user)) else {
            continue;
        };
        let Some(message) = messages.iter_mut().find(|m| m.id == message_id as u64) else {
            continue;
        };
        let reactor = Reactor {
            user,
            name: DisplayName::stored(name),
        };
        match message.reactions.iter_mut().find(|r| r.emoji == emoji) {
            Some(reaction) => reaction.by.push(reactor),
            None => message.reactions.push(Reaction {
                emoji,
                by: vec![reactor],
            }),
        }
    }
    for message in messages {
        message.reactions.sort_by_key(|r| r.emoji);
    }
}
