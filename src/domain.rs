//! The words of the chat, parsed at the edge.
//!
//! Raw strings from the network become these types once, in the session or the HTTP
//! handler; the hub and the renderer only ever see values that are already valid
//! ("parse, don't validate").

use std::fmt;

use serde::Deserialize;
use time::OffsetDateTime;

/// What the htmx WebSocket extension sends when the form is submitted.
///
/// htmx 4 sends `{"text": …, "headers": {…}}`, htmx 2 sends `{"text": …, "HEADERS": {…}}`.
/// Only `text` matters to us; every other field (headers included) is ignored, so both
/// shapes, and future ones that add fields, are accepted.
#[derive(Debug, Deserialize)]
pub struct Inbound {
    pub text: String,
}

impl Inbound {
    /// Parses one text frame.
    pub fn parse(frame: &str) -> Result<Self, InboundError> {
        serde_json::from_str(frame).map_err(|err| InboundError::Malformed(err.to_string()))
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
        Ok(Some(Self(text.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
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
        Self(format!("{}{:02x}{:02x}", Self::PREFIX, bytes[0], bytes[1]))
    }

    /// Accepts exactly what [`GuestName::generate`] makes.
    pub fn parse(raw: &str) -> Option<Self> {
        let hex = raw.strip_prefix(Self::PREFIX)?;
        let valid = hex.len() == 4 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Self(raw.to_owned()))
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

/// A message as the hub keeps it: numbered, attributed, timestamped.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    /// Unique and increasing in the order the room saw the messages.
    pub id: u64,
    pub author: GuestName,
    pub sent_at: OffsetDateTime,
    pub text: MessageText,
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
            assert_eq!(Inbound::parse(frame).unwrap().text, "hi", "{frame}");
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
