//! What the htmx WebSocket extension sends, read once at the edge.
//!
//! One text frame becomes an [`Inbound`] or an [`InboundError`]; the error is what the
//! sender is shown, so it also names what was wrong with the text of a message
//! ([`crate::domain::MessageText`]).

use serde::Deserialize;

use super::message::ClientId;
use super::reaction::Emoji;

/// What the htmx WebSocket extension sends.
///
/// Submitting the form sends `{"text": …, "client_id": …, "headers": {…}}` (htmx 4) or
/// `{"text": …, "HEADERS": {…}}` (htmx 2); the typing element sends
/// `{"kind": "typing", …}`; an edit `{"kind": "edit", "id": "12", "text": …}`, a delete
/// `{"kind": "delete", "id": "12"}`, a reaction `{"kind": "react", "id": "12", "emoji": "👍"}`,
/// how far the reader has read `{"kind": "read", "id": "12"}`.
/// Every other field (headers included) is ignored, so
/// both shapes, and future ones that add fields, are accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A chat message, not yet validated, with the page's id for it if it sent one.
    Message {
        text: String,
        client_id: Option<ClientId>,
        /// The message it answers (`reply_to`), if any.
        reply_to: Option<u64>,
    },
    /// The sender is typing.
    Typing,
    /// New text for one of the sender's messages, not yet validated.
    Edit { id: u64, text: String },
    /// Delete one of the sender's messages.
    Delete { id: u64 },
    /// Put an emoji on a message, or take the sender's off.
    React { id: u64, emoji: Emoji },
    /// The reader has seen the room's messages up to this one.
    Read { id: u64 },
}

#[derive(Deserialize)]
struct RawInbound {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    /// Form values arrive as strings; a number is taken too.
    #[serde(default)]
    id: Option<IdValue>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    emoji: Option<String>,
    #[serde(default)]
    reply_to: Option<IdValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    Number(u64),
    Text(String),
}

impl RawInbound {
    /// The message a change names: a positive whole number.
    fn id(&self) -> Result<u64, InboundError> {
        match &self.id {
            None => Err(InboundError::Malformed("missing field `id`".into())),
            Some(id) => id.message_id("id"),
        }
    }

    /// The message a message answers: none when absent or empty (the composer's field
    /// when not replying).
    fn reply_to(&self) -> Result<Option<u64>, InboundError> {
        match &self.reply_to {
            None => Ok(None),
            Some(IdValue::Text(text)) if text.is_empty() => Ok(None),
            Some(id) => id.message_id("reply_to").map(Some),
        }
    }
}

impl IdValue {
    /// A positive whole number (digits only, when a string).
    fn message_id(&self, field: &str) -> Result<u64, InboundError> {
        let id = match self {
            IdValue::Number(id) => Some(*id),
            IdValue::Text(text) if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
            IdValue::Text(_) => None,
        };
        id.filter(|id| *id > 0)
            .ok_or_else(|| InboundError::Malformed(format!("`{field}` must be a message id")))
    }
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
        let missing_text = || InboundError::Malformed("missing field `text`".into());
        match raw.kind.as_deref() {
            Some("typing") => Ok(Inbound::Typing),
            Some("message") | None => {
                // A page without the script that draws ids sends none, or an empty one.
                let client_id = match raw.client_id.as_deref() {
                    None | Some("") => None,
                    Some(id) => Some(ClientId::parse(id)?),
                };
                let reply_to = raw.reply_to()?;
                let text = raw.text.ok_or_else(missing_text)?;
                Ok(Inbound::Message {
                    text,
                    client_id,
                    reply_to,
                })
            }
            Some("edit") => {
                let id = raw.id()?;
                let text = raw.text.ok_or_else(missing_text)?;
                Ok(Inbound::Edit { id, text })
            }
            Some("delete") => Ok(Inbound::Delete { id: raw.id()? }),
            Some("read") => Ok(Inbound::Read { id: raw.id()? }),
            Some("react") => {
                let id = raw.id()?;
                let raw_emoji = raw
                    .emoji
                    .ok_or_else(|| InboundError::Malformed("missing field `emoji`".into()))?;
                let emoji = Emoji::parse(&raw_emoji).ok_or(InboundError::UnknownReaction)?;
                Ok(Inbound::React { id, emoji })
            }
            Some(other) => Err(InboundError::Malformed(format!("unknown kind {other:?}"))),
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
    #[error("An edit cannot leave a message empty; delete it instead.")]
    EmptyEdit,
    #[error("That reaction is not one of 👍 ❤️ 😂 🎉 👀 ✅.")]
    UnknownReaction,
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
                Inbound::Message {
                    text: "hi".into(),
                    client_id: None,
                    reply_to: None
                },
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
            Inbound::Message {
                text: "hi".into(),
                client_id: None,
                reply_to: None
            }
        );
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
            r#"{"kind":"edit","text":"x"}"#,
            r#"{"kind":"edit","id":"12"}"#,
            r#"{"kind":"edit","id":"1e3","text":"x"}"#,
            r#"{"kind":"edit","id":"-4","text":"x"}"#,
            r#"{"kind":"edit","id":0,"text":"x"}"#,
            r#"{"kind":"edit","id":" 12","text":"x"}"#,
            r#"{"kind":"delete","id":"99999999999999999999999"}"#,
            r#"{"kind":"delete","id":[1]}"#,
            r#"{"kind":"delete"}"#,
            r#"{"text":"hi","client_id":"short"}"#,
            r#"{"text":"hi","client_id":"has spaces in it"}"#,
            r#"{"text":"hi","client_id":"<script>alert(1)</script>"}"#,
            r#"{"text":"hi","client_id":7}"#,
        ] {
            assert!(
                matches!(Inbound::parse(frame), Err(InboundError::Malformed(_))),
                "{frame:?} should be malformed"
            );
        }
    }

    #[test]
    fn edits_deletes_and_client_ids_parse() {
        assert_eq!(
            Inbound::parse(r#"{"kind":"edit","id":"12","text":"fixed","headers":{}}"#).unwrap(),
            Inbound::Edit {
                id: 12,
                text: "fixed".into()
            }
        );
        assert_eq!(
            Inbound::parse(r#"{"kind":"delete","id":7}"#).unwrap(),
            Inbound::Delete { id: 7 }
        );
        assert_eq!(
            Inbound::parse(r#"{"kind":"react","id":"7","emoji":"🎉"}"#).unwrap(),
            Inbound::React {
                id: 7,
                emoji: Emoji::Party
            }
        );
        for emoji in [r#""🙂""#, r#""""#, r#""<img src=x>""#] {
            let frame = format!(r#"{{"kind":"react","id":"7","emoji":{emoji}}}"#);
            assert_eq!(
                Inbound::parse(&frame),
                Err(InboundError::UnknownReaction),
                "{frame}"
            );
        }
        assert_eq!(
            Inbound::parse(r#"{"text":"yes","reply_to":"12","client_id":""}"#).unwrap(),
            Inbound::Message {
                text: "yes".into(),
                client_id: None,
                reply_to: Some(12)
            }
        );
        for frame in [
            r#"{"text":"x","reply_to":"0"}"#,
            r#"{"text":"x","reply_to":"a1"}"#,
            r#"{"text":"x","reply_to":true}"#,
            r#"{"kind":"react","id":"7"}"#,
            r#"{"kind":"react","emoji":"👍"}"#,
            r#"{"kind":"react","id":"7","emoji":7}"#,
        ] {
            assert!(
                matches!(Inbound::parse(frame), Err(InboundError::Malformed(_))),
                "{frame}"
            );
        }
        let uuid = "6f1c2a4e-9b7d-4c3a-8e2f-0a1b2c3d4e5f";
        assert_eq!(
            Inbound::parse(&format!(r#"{{"text":"hi","client_id":"{uuid}"}}"#)).unwrap(),
            Inbound::Message {
                text: "hi".into(),
                client_id: Some(ClientId::parse(uuid).unwrap()),
                reply_to: None
            }
        );
        assert_eq!(
            Inbound::parse(r#"{"text":"hi","client_id":""}"#).unwrap(),
            Inbound::Message {
                text: "hi".into(),
                client_id: None,
                reply_to: None
            }
        );
    }
}
