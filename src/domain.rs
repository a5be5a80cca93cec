//! The words of the chat, parsed at the edge.
//!
//! Raw strings from the network become these types once, in the session or the HTTP
//! handler; the hub and the renderer only ever see values that are already valid
//! ("parse, don't validate").

use std::fmt;

use serde::Deserialize;
use time::OffsetDateTime;

/// What the htmx WebSocket extension sends.
///
/// Submitting the form sends `{"text": …, "headers": {…}}` (htmx 4) or
/// `{"text": …, "HEADERS": {…}}` (htmx 2); the typing element sends
/// `{"kind": "typing", …}`. Every other field (headers included) is ignored, so both
/// shapes, and future ones that add fields, are accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A chat message, not yet validated.
    Message { text: String },
    /// The sender is typing.
    Typing,
}

#[derive(Deserialize)]
struct RawInbound {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

impl Inbound {
    /// Parses one text frame.
    pub fn parse(frame: &str) -> Result<Self, InboundError> {
        // serde would read the struct from a JSON array as well (`["typing"]`), field by
        // field; htmx sends objects, and only objects are read. These four characters are
        // all the whitespace JSON allows.
        if !frame
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            return Err(InboundError::Malformed("expected a JSON object".into()));
        }
        let raw: RawInbound =
            serde_json::from_str(frame).map_err(|err| InboundError::Malformed(err.to_string()))?;
        match (raw.kind.as_deref(), raw.text) {
            (Some("typing"), _) => Ok(Inbound::Typing),
            (Some("message") | None, Some(text)) => Ok(Inbound::Message { text }),
            (Some("message") | None, None) => {
                Err(InboundError::Malformed("missing field `text`".into()))
            }
            (Some(other), _) => Err(InboundError::Malformed(format!("unknown kind {other:?}"))),
        }
    }
}

/// Why an inbound frame was not accepted. Each variant becomes an error fragment sent to
/// the sender alone; the connection stays open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InboundError {
    #[error("That message could not be read (expected JSON with a \"text\" field: {0}).")]
    Malformed(String),
    #[error("That message is {len} characters long; the limit is {max}.")]
    TooLong { len: usize, max: usize },
    #[error(
        "That message contains control characters; only text, tabs and line breaks can be sent."
    )]
    ControlCharacters,
}

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

/// A room's name: 1 to 64 characters of `a-z 0-9 - _`, case-folded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    pub const MAX_CHARS: usize = 64;

    /// The room everyone is in until they pick another.
    pub fn general() -> Self {
        Self("general".to_owned())
    }

    pub fn parse(raw: &str) -> Result<Self, RoomNameError> {
        let name = raw.to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_CHARS
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'));
        if valid {
            Ok(Self(name))
        } else {
            Err(RoomNameError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("A room name is 1 to 64 characters of a-z, 0-9, '-' and '_'.")]
pub struct RoomNameError;

/// The name shown on someone's messages: 1 to 32 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, DisplayNameError> {
        let name = raw.trim();
        let len = name.chars().count();
        if len == 0
            || len > Self::MAX_CHARS
            || name.chars().any(|c| c.is_control() || is_invisible(c))
        {
            return Err(DisplayNameError);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<GuestName> for DisplayName {
    fn from(guest: GuestName) -> Self {
        Self(guest.0)
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("A name is 1 to 32 characters, without control or invisible characters.")]
pub struct DisplayNameError;

/// Characters that change how a name looks without showing: direction overrides (which
/// could make "alice" of "ecila"), zero-width characters, the byte-order mark.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

/// Who someone is across tabs, visits and restarts: 128 random bits, kept in their signed
/// cookie. Presence counts users, not connections, by this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // Without an OS random source, fall back to the clock: unique enough to tell
            // tabs apart, and the cookie is signed, so it cannot be forged either way.
            let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
            bytes = nanos.to_le_bytes();
        }
        Self(hex(&bytes))
    }

    /// Accepts exactly what [`UserId::generate`] makes.
    pub fn parse(raw: &str) -> Option<Self> {
        is_lower_hex(raw, 32).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl DisplayName {
    /// A fresh guest name, until the user picks one.
    pub fn guest() -> Self {
        GuestName::generate().into()
    }
}

/// A guest's display name, `guest-` and four hex digits, kept in a cookie until real names
/// exist. Anything else found in the cookie is ignored and a new name is made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GuestName(String);

impl GuestName {
    const PREFIX: &'static str = "guest-";

    /// A fresh random guest name.
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 2];
        // The OS random source failing is not something a chat can recover from, but a
        // predictable name is harmless: fall back to the clock.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = OffsetDateTime::now_utc().nanosecond();
            bytes = [(nanos >> 8) as u8, nanos as u8];
        }
        Self(format!("{}{}", Self::PREFIX, hex(&bytes)))
    }

    /// Accepts exactly what [`GuestName::generate`] makes.
    pub fn parse(raw: &str) -> Option<Self> {
        let hex = raw.strip_prefix(Self::PREFIX)?;
        is_lower_hex(hex, 4).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GuestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bytes as lower-case hex, two digits each (ids, keys).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `raw` is exactly `digits` lower-case hex digits, as [`hex`] writes them.
pub fn is_lower_hex(raw: &str, digits: usize) -> bool {
    raw.len() == digits && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
    fn both_htmx_shapes_parse_and_unknown_fields_are_ignored() {
        let v4 = r#"{"text":"hi","headers":{"HX-Request":"true","HX-Source":"form#composer"}}"#;
        let v2 = r#"{"text":"hi","HEADERS":{"HX-Request":"true","HX-Trigger":"composer"}}"#;
        let extra = r#"{"text":"hi","other":[1,2],"headers":null,"HEADERS":7}"#;
        for frame in [v4, v2, extra] {
            assert_eq!(
                Inbound::parse(frame).unwrap(),
                Inbound::Message { text: "hi".into() },
                "{frame}"
            );
        }
        let typing = r#"{"kind":"typing","headers":{"HX-Request":"true"}}"#;
        assert_eq!(Inbound::parse(typing).unwrap(), Inbound::Typing);
    }

    #[test]
    fn only_json_objects_are_read() {
        // serde reads a struct from a JSON array too, field by field: these were a typing
        // notice and a message. htmx only ever sends objects.
        for frame in [
            r#"["typing"]"#,
            r#"[null,"hi"]"#,
            r#" ["message","hi"]"#,
            "[]",
        ] {
            assert!(
                matches!(Inbound::parse(frame), Err(InboundError::Malformed(_))),
                "{frame:?} should be malformed"
            );
        }
        let spaced = " \t\r\n{\"text\":\"hi\"}";
        assert_eq!(
            Inbound::parse(spaced).unwrap(),
            Inbound::Message { text: "hi".into() }
        );
    }

    #[test]
    fn user_ids_round_trip_and_junk_is_refused() {
        let id = UserId::generate();
        assert_eq!(UserId::parse(id.as_str()), Some(id));
        for junk in ["", "abc", &"g".repeat(32), &"A".repeat(32), &"a".repeat(33)] {
            assert_eq!(UserId::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn broken_frames_are_errors_not_panics() {
        for frame in [
            "",
            "not json",
            "{",
            "[]",
            "null",
            r#"{"headers":{}}"#,
            r#"{"text":null}"#,
            r#"{"text":42}"#,
            r#"{"text":["a","b"]}"#,
            r#"{"kind":"dance","text":"x"}"#,
            r#"{"kind":7,"text":"x"}"#,
            r#"{"text":"\ud800"}"#,
        ] {
            assert!(
                matches!(Inbound::parse(frame), Err(InboundError::Malformed(_))),
                "{frame:?} should be malformed"
            );
        }
    }

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
    fn room_names_are_case_folded_and_limited() {
        assert_eq!(
            RoomName::parse("Design-2_x").unwrap().as_str(),
            "design-2_x"
        );
        assert!(RoomName::parse(&"a".repeat(64)).is_ok());
        for bad in ["", " ", "a b", "a/b", "ä", "../x", "a.b", &"a".repeat(65)] {
            assert_eq!(RoomName::parse(bad), Err(RoomNameError), "{bad:?}");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_limited() {
        assert_eq!(DisplayName::parse("  alice ").unwrap().as_str(), "alice");
        assert!(DisplayName::parse(&"é".repeat(32)).is_ok());
        for bad in [
            "",
            "   ",
            "a\u{0}b",
            "tab\there",
            &"x".repeat(33),
            "\u{202E}ecila",
            "al\u{200B}ice",
        ] {
            assert_eq!(DisplayName::parse(bad), Err(DisplayNameError), "{bad:?}");
        }
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

    #[test]
    fn guest_names_round_trip_and_junk_is_refused() {
        let name = GuestName::generate();
        assert_eq!(GuestName::parse(name.as_str()), Some(name));
        for junk in [
            "",
            "guest-",
            "guest-12345",
            "guest-ABCD",
            "admin",
            "guest-<b>1",
            "guest-12 3",
        ] {
            assert_eq!(GuestName::parse(junk), None, "{junk:?}");
        }
    }
}
