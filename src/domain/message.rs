//! A chat message from sending to storing: its text, the message before the store numbers
//! it, the changes its author may make to it, the stored message (one version of it), and
//! the committed batch every node learns of.
//!
//! A message and every change to it take the same road: each is a [`Write`] the commit
//! writer stores, and each stored one takes the next position in the store's one order
//! (its `seq`). A change's entry carries the message's new version whole, so whoever
//! receives it (this node's hub, another node, a catch-up from the store) only replaces
//! what it shows; nothing is patched.

use time::OffsetDateTime;

use super::ids::UserId;
use super::inbound::InboundError;
use super::names::{DisplayName, RoomName};
use super::reaction::{Emoji, Reaction};

/// The text of a chat message: trimmed, not empty, at most the configured length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    /// Trims `raw` and checks its length in characters. `Ok(None)` means there is nothing to
    /// send (empty or only whitespace): not an error, just nothing to do.
    pub fn parse(raw: &str, max_chars: usize) -> Result<Option<Self>, InboundError> {
        let text = raw.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let len = text.chars().count();
        if len > max_chars {
            return Err(InboundError::TooLong {
                len,
                max: max_chars,
            });
        }
        // NUL cannot be stored in PostgreSQL text, and the other control characters have no
        // business in a chat line; tabs and line breaks do.
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        {
            return Err(InboundError::ControlCharacters);
        }
        Ok(Some(Self(text.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text of a deleted message: nothing.
    pub(crate) fn gone() -> Self {
        Self(String::new())
    }
}

/// An id the sender's page drew for one message, so that the same message sent twice (a
/// double submit, a resend after a reconnect) is stored once: 8 to 64 ASCII letters,
/// digits and `-` (a UUID fits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(raw: &str) -> Result<Self, InboundError> {
        let fits = (8..=64).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if fits {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InboundError::Malformed(
                "client_id must be 8 to 64 letters, digits or '-'".into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message accepted from a sender, not yet stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub room: RoomName,
    pub author: DisplayName,
    /// Who wrote it: only they may change it. `None` for messages from before authors
    /// were kept (and in some tests).
    pub author_id: Option<UserId>,
    /// Whether the author is a guest (no claimed name): shown with a tag of their id.
    pub guest: bool,
    /// The page's id for it, when the page sent one.
    pub client_id: Option<ClientId>,
    /// The message it answers (of the same room: the store checks).
    pub reply_to: Option<u64>,
    pub sent_at: OffsetDateTime,
    pub text: MessageText,
}

impl NewMessage {
    /// A message sent now.
    pub fn now(room: RoomName, author: DisplayName, text: MessageText) -> Self {
        Self {
            room,
            author,
            author_id: None,
            guest: false,
            client_id: None,
            reply_to: None,
            sent_at: now(),
            text,
        }
    }

    /// The same message, written by `user`.
    pub fn by(mut self, user: UserId) -> Self {
        self.author_id = Some(user);
        self
    }

    /// The same message, written by a guest (`true`) or under a claimed name.
    pub fn as_guest(mut self, guest: bool) -> Self {
        self.guest = guest;
        self
    }

    /// The same message, answering `id`.
    pub fn replying_to(mut self, id: Option<u64>) -> Self {
        self.reply_to = id;
        self
    }

    /// The same message, with the page's id for it.
    pub fn with_client_id(mut self, id: Option<ClientId>) -> Self {
        self.client_id = id;
        self
    }

    /// The stored message, once the store has given it an id.
    pub fn stored(self, id: u64) -> ChatMessage {
        ChatMessage {
            id,
            seq: id,
            room: self.room,
            author: self.author,
            author_id: self.author_id,
            guest: self.guest,
            sent_at: self.sent_at,
            text: self.text,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
            reply: None,
        }
    }
}

/// Now, to the microsecond the store keeps: a message reads the same live and from the
/// store.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now)
}

/// A change its author asks for to a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The room the change was sent from: a message of another room is not found.
    pub room: RoomName,
    /// The message to change.
    pub id: u64,
    /// Who asks: the message's author, or the change is refused.
    pub by: UserId,
    pub at: OffsetDateTime,
    pub what: ChangeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// New text for the message.
    Edit(MessageText),
    /// The message's text is removed for good; a "message deleted" stays in its place.
    Delete,
    /// Puts the emoji on the message for this user, or takes it off if it is there; the
    /// name is theirs at the time, shown to those who look at who reacted.
    React(Emoji, DisplayName),
}

impl Change {
    pub fn now(room: RoomName, id: u64, by: UserId, what: ChangeKind) -> Self {
        Self {
            room,
            id,
            by,
            at: now(),
            what,
        }
    }
}

/// What a session hands the commit writer: a new message or a change to one.
#[derive(Debug, Clone)]
pub enum Write {
    Post(NewMessage),
    Change(Change),
}

impl Write {
    /// The room it happens in.
    pub fn room(&self) -> &RoomName {
        match self {
            Write::Post(message) => &message.room,
            Write::Change(change) => &change.room,
        }
    }
}

/// Why the store refused a change. Checked inside the change's own transaction, so two
/// nodes cannot both pass the check on a message one of them is deleting. Anyone may
/// react to a message; only its author may edit or delete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    #[error("that message is not in this room (it may never have existed).")]
    NotFound,
    #[error("only its author can change a message.")]
    NotYours,
    #[error("that message was deleted.")]
    Deleted,
    /// A reply to a message that is not in the room (or never was).
    #[error("the message you answer is not in this room.")]
    ReplyNotFound,
    #[error("the message you answer was deleted.")]
    ReplyDeleted,
}

/// One version of a stored message: numbered, attributed, timestamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The store's id for the message: unique and increasing in commit order, the
    /// `msg-{id}` of its element and the cursor for paging back.
    pub id: u64,
    /// Where this version sits in the store's order: `id` for the message as first sent,
    /// the change's own id for a version an edit or a delete made. The sequencer delivers
    /// by it.
    pub seq: u64,
    pub room: RoomName,
    pub author: DisplayName,
    /// Who wrote it (`None` for messages stored before authors were kept).
    pub author_id: Option<UserId>,
    /// Written by a guest: the name is anyone's, so pages show it with a tag of the id.
    pub guest: bool,
    pub sent_at: OffsetDateTime,
    /// Empty once deleted.
    pub text: MessageText,
    pub edited: bool,
    pub deleted: bool,
    /// The emoji on it, in the order of the set, each with who put it there.
    pub reactions: Vec<Reaction>,
    /// The message it answers, as that message is now (boxed: most messages answer none).
    pub reply: Option<Box<Quote>>,
}

/// The message a reply answers, as the reply shows it: who wrote it and the start of what
/// it says now (nothing once it is deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub id: u64,
    pub author: DisplayName,
    /// At most [`Quote::EXCERPT_CHARS`] characters of its text, as written.
    pub excerpt: String,
    pub edited: bool,
    pub deleted: bool,
}

impl Quote {
    /// How much of the original a reply shows.
    pub const EXCERPT_CHARS: usize = 100;

    /// A quote of a message as it stands (the values the store keeps for it).
    pub(crate) fn of(id: u64, author: String, text: &str, edited: bool, deleted: bool) -> Self {
        let excerpt = if deleted {
            String::new()
        } else {
            match text.char_indices().nth(Self::EXCERPT_CHARS) {
                Some((cut, _)) => format!("{}…", text[..cut].trim_end()),
                None => text.to_owned(),
            }
        };
        Self {
            id,
            author: DisplayName(author.into()),
            excerpt,
            edited: edited && !deleted,
            deleted,
        }
    }

    /// The quote a version of a message makes for the replies to it.
    pub fn of_message(message: &ChatMessage) -> Self {
        Self::of(
            message.id,
            message.author.as_str().to_owned(),
            message.text.as_str(),
            message.edited,
            message.deleted,
        )
    }
}

impl ChatMessage {
    /// Rebuilds a message from a stored row. The values were parsed before they were
    /// stored; a row that no longer parses (edited by hand, say) is shown as it is rather
    /// than dropped, since it is escaped on output anyway.
    pub(crate) fn from_row(row: StoredRow) -> Self {
        let sent_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.at) * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let deleted = row.deleted;
        Self {
            id: row.id,
            seq: row.seq,
            room: RoomName::parse(&row.room).unwrap_or_else(|_| RoomName::general()),
            author: DisplayName(row.author.into()),
            author_id: row.author_id.as_deref().and_then(UserId::parse),
            guest: row.guest,
            sent_at,
            text: if deleted {
                MessageText::gone()
            } else {
                MessageText(row.body)
            },
            edited: row.edited,
            deleted,
            reactions: Vec::new(),
            reply: row.reply.map(Box::new),
        }
    }

    /// Whether this is a later version of a message (after an edit or a delete), rather
    /// than the message as first sent.
    pub fn is_change(&self) -> bool {
        self.seq != self.id
    }
}

/// A message's row as the store reads it, before it is checked into a [`ChatMessage`].
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    pub seq: u64,
    pub id: u64,
    pub room: String,
    pub author: String,
    pub author_id: Option<String>,
    pub guest: bool,
    pub body: String,
    /// Unix time in microseconds.
    pub at: i64,
    pub edited: bool,
    pub deleted: bool,
    /// The message it answers, as it is now.
    pub reply: Option<Quote>,
}

/// One committed batch, as every node learns of it: the entries of one store transaction
/// (messages and changes, in `seq` order) and the newest position committed before them.
/// Because positions commit in order across all writers, `prev` says exactly what a node
/// must have delivered before these: everything up to `prev`, nothing more. Built only
/// from a successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub prev: u64,
    /// In increasing `seq` order, every position above `prev`.
    pub messages: Vec<ChatMessage>,
}

impl Committed {
    /// The newest position of the batch (`prev` for an empty one).
    pub fn newest(&self) -> u64 {
        self.messages.last().map_or(self.prev, |m| m.seq)
    }
}

/// Unix time in microseconds, as the store keeps it.
pub(crate) fn unix_micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_limited_in_characters() {
        assert_eq!(MessageText::parse("   \n\t ", 10), Ok(None));
        assert_eq!(
            MessageText::parse("  hi  ", 10).unwrap().unwrap().as_str(),
            "hi"
        );
        // Ten characters, thirty bytes: the limit is in characters.
        assert!(MessageText::parse(&"é€😀".repeat(3), 10).unwrap().is_some());
        assert_eq!(
            MessageText::parse(&"x".repeat(11), 10),
            Err(InboundError::TooLong { len: 11, max: 10 })
        );
    }

    #[test]
    fn stored_times_round_trip_to_the_microsecond() {
        let at = time::macros::datetime!(2026-11-28 08:16:22.123456 UTC);
        let row = ChatMessage::from_row(StoredRow {
            seq: 1,
            id: 1,
            room: "general".into(),
            author: "a".into(),
            author_id: None,
            guest: false,
            body: "b".into(),
            at: unix_micros(at),
            edited: false,
            deleted: false,
            reply: None,
        });
        assert_eq!(row.sent_at, at);
    }

    #[test]
    fn control_characters_are_refused_but_lines_and_tabs_kept() {
        assert!(MessageText::parse("a\nb\tc\r\nd", 100).unwrap().is_some());
        for bad in [
            "evil\0byte",
            "bell\u{7}",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}x",
        ] {
            assert_eq!(
                MessageText::parse(bad, 100),
                Err(InboundError::ControlCharacters),
                "{bad:?}"
            );
        }
    }
}
