//! What the htmx WebSocket extension sends, read once at the edge.
//!
//! One text frame becomes an [`Inbound`] or an [`InboundError`]; the error is what the
//! sender is shown, so it also names what was wrong with the text of a message
//! ([`crate::domain::MessageText`]).

use serde::Deserialize;

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
}
