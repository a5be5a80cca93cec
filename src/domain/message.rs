//! A chat message from sending to storing: its text, the message before the store numbers
//! it, the stored message, and the committed batch every node learns of.

use time::OffsetDateTime;

use super::inbound::InboundError;
use super::names::{DisplayName, RoomName};

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
}

/// A message accepted from a sender, not yet stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub room: RoomName,
    pub author: DisplayName,
    pub sent_at: OffsetDateTime,
    pub text: MessageText,
}

impl NewMessage {
    /// A message sent now.
    pub fn now(room: RoomName, author: DisplayName, text: MessageText) -> Self {
        let now = OffsetDateTime::now_utc();
        // The store keeps microseconds: keep no more, so a message reads the same live and
        // from the store.
        let sent_at = now
            .replace_nanosecond(now.nanosecond() / 1000 * 1000)
            .unwrap_or(now);
        Self {
            room,
            author,
            sent_at,
            text,
        }
    }

    /// The stored message, once the store has given it an id.
    pub fn stored(self, id: u64) -> ChatMessage {
        ChatMessage {
            id,
            room: self.room,
            author: self.author,
            sent_at: self.sent_at,
            text: self.text,
        }
    }
}

/// A stored message: numbered, attributed, timestamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// The store's id: unique and increasing in commit order.
    pub id: u64,
    pub room: RoomName,
    pub author: DisplayName,
    pub sent_at: OffsetDateTime,
    pub text: MessageText,
}

impl ChatMessage {
    /// Rebuilds a message from a stored row. The values were parsed before they were
    /// stored; a row that no longer parses (edited by hand, say) is shown as it is rather
    /// than dropped, since it is escaped on output anyway.
    pub(crate) fn from_row(id: u64, room: &str, author: String, body: String, micros: i64) -> Self {
        let sent_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Self {
            id,
            room: RoomName::parse(room).unwrap_or_else(|_| RoomName::general()),
            author: DisplayName(author),
            sent_at,
            text: MessageText(body),
        }
    }
}

/// One committed batch, as every node learns of it: the messages of one store transaction
/// (in id order) and the newest id committed before them. Because ids commit in id order
/// across all writers, `prev` says exactly what a node must have delivered before these
/// messages: everything up to `prev`, nothing more. Built only from a successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub prev: u64,
    /// In increasing id order, every id above `prev`.
    pub messages: Vec<ChatMessage>,
}

impl Committed {
    /// The newest id of the batch (`prev` for an empty one).
    pub fn newest(&self) -> u64 {
        self.messages.last().map_or(self.prev, |m| m.id)
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
        let row = ChatMessage::from_row(1, "general", "a".into(), "b".into(), unix_micros(at));
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
