//! A committed batch as it travels on the Redis channel: JSON, version 1. Reading one
//! checks it as strictly as a message from a browser (names, text, ids in order), so a
//! stray or broken payload cannot put invalid values on a page.

use serde::{Deserialize, Serialize};

use crate::domain::{ChatMessage, Committed, DisplayName, MessageText, RoomName, unix_micros};

/// The longest text accepted from the channel: the most `--max-message-chars` allows.
const MAX_TEXT_CHARS: usize = 100_000;

/// A batch on the channel: version 1.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBatch {
    v: u8,
    prev: u64,
    messages: Vec<WireMessage>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    id: u64,
    room: String,
    author: String,
    /// Unix time in microseconds.
    at: i64,
    text: String,
}

pub(super) fn encode(batch: &Committed) -> Vec<u8> {
    let wire = WireBatch {
        v: 1,
        prev: batch.prev,
        messages: batch
            .messages
            .iter()
            .map(|m| WireMessage {
                id: m.id,
                room: m.room.as_str().to_owned(),
                author: m.author.as_str().to_owned(),
                at: unix_micros(m.sent_at),
                text: m.text.as_str().to_owned(),
            })
            .collect(),
    };
    // Plain strings and numbers: serializing cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Reads a batch, checking it as strictly as a message from a browser.
pub(super) fn decode(payload: &[u8]) -> Result<Committed, String> {
    let wire: WireBatch = serde_json::from_slice(payload).map_err(|err| err.to_string())?;
    if wire.v != 1 {
        return Err(format!("unknown version {}", wire.v));
    }
    let mut newest = wire.prev;
    let mut messages = Vec::with_capacity(wire.messages.len());
    for m in wire.messages {
        if m.id <= newest {
            return Err("ids are not increasing above prev".to_owned());
        }
        newest = m.id;
        let room = RoomName::parse(&m.room).map_err(|err| err.to_string())?;
        let author = DisplayName::parse(&m.author).map_err(|err| err.to_string())?;
        let text = MessageText::parse(&m.text, MAX_TEXT_CHARS)
            .map_err(|err| err.to_string())?
            .ok_or("an empty message")?;
        if text.as_str() != m.text {
            return Err("untrimmed text".to_owned());
        }
        let sent_at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m.at) * 1000)
            .map_err(|_| "a time out of range".to_owned())?;
        messages.push(ChatMessage {
            id: m.id,
            room,
            author,
            sent_at,
            text,
        });
    }
    if messages.is_empty() {
        return Err("an empty batch".to_owned());
    }
    Ok(Committed {
        prev: wire.prev,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Committed {
        let at = time::macros::datetime!(2026-11-28 08:16:22.123456 UTC);
        let message = |id, text: &str| ChatMessage {
            id,
            room: RoomName::general(),
            author: DisplayName::parse("alice").unwrap(),
            sent_at: at,
            text: MessageText::parse(text, 100).unwrap().unwrap(),
        };
        Committed {
            prev: 4,
            messages: vec![message(7, "hi <b>"), message(9, "two\nlines")],
        }
    }

    #[test]
    fn batches_round_trip() {
        let batch = batch();
        assert_eq!(decode(&encode(&batch)).unwrap(), batch);
    }

    #[test]
    fn broken_or_hostile_payloads_are_refused_not_panics() {
        let good = String::from_utf8(encode(&batch())).unwrap();
        let cases = [
            String::new(),
            "null".to_owned(),
            "{".to_owned(),
            "[]".to_owned(),
            good.replace(r#""v":1"#, r#""v":2"#),
            good.replace(r#""prev":4"#, r#""prev":7"#),
            good.replace(r#""id":9"#, r#""id":7"#),
            good.replace(r#""room":"general""#, r#""room":"../x""#),
            good.replace(r#""author":"alice""#, r#""author":"""#),
            good.replace(r#""text":"hi <b>""#, r#""text":"  ""#),
            good.replace(r#""text":"hi <b>""#, r#""text":"bell\u0007""#),
            good.replace(r#""text":"hi <b>""#, r#""text":" hi""#),
            good.replace(r#""at":"#, r#""at":9223372036854775807,"x":"#),
            good.replace(r#""prev":4"#, r#""prev":4,"extra":1"#),
            r#"{"v":1,"prev":0,"messages":[]}"#.to_owned(),
            good.replace(r#""id":7"#, r#""id":-7"#),
        ];
        for payload in cases {
            assert!(decode(payload.as_bytes()).is_err(), "{payload}");
        }
        assert!(decode(&[0xff, 0xfe]).is_err());
    }
}
