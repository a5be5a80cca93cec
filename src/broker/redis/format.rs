//! A committed batch as it travels on the Redis channel: JSON, version 2 (version 1, from
//! before messages could change, is still read). Reading one checks it as strictly as a
//! message from a browser (names, text, positions in order), so a stray or broken payload
//! cannot put invalid values on a page.

use serde::{Deserialize, Serialize};

use crate::domain::{
    ChatMessage, Committed, DisplayName, Emoji, MessageText, Quote, Reaction, Reactor, RoomName,
    UserId, unix_micros,
};

/// The longest text accepted from the channel: the most `--max-message-chars` allows.
const MAX_TEXT_CHARS: usize = 100_000;

/// A batch on the channel.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBatch {
    v: u8,
    prev: u64,
    messages: Vec<WireMessage>,
}

/// One entry: a message, or a message's version after a change.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    /// The message's id.
    id: u64,
    /// The entry's position (version 2; a version 1 entry is the message itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    room: String,
    author: String,
    /// The author's user id, as 32 hex digits (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    /// Written by a guest (version 2; only with `uid`).
    #[serde(default, skip_serializing_if = "is_false")]
    guest: bool,
    /// Unix time in microseconds.
    at: i64,
    /// Empty when deleted.
    text: String,
    #[serde(default, skip_serializing_if = "is_false")]
    edited: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    deleted: bool,
    /// The emoji on it (version 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reactions: Vec<WireReaction>,
    /// The message it answers, as it is now (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply: Option<WireQuote>,
}

/// A reply's quote: the answered message's id, author and text (empty once deleted).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireQuote {
    id: u64,
    author: String,
    text: String,
    #[serde(default, skip_serializing_if = "is_false")]
    edited: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    deleted: bool,
}

/// One emoji on a message: the emoji and who put it there, as `[user id, name]` pairs.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireReaction {
    e: String,
    by: Vec<(String, String)>,
}

/// The most reactors one emoji may list in a payload (a bound on what one batch can make
/// a node hold, far above any room).
const MAX_REACTORS: usize = 100_000;

fn is_false(value: &bool) -> bool {
    !*value
}

pub(super) fn encode(batch: &Committed) -> Vec<u8> {
    let wire = WireBatch {
        v: 2,
        prev: batch.prev,
        messages: batch
            .messages
            .iter()
            .map(|m| WireMessage {
                id: m.id,
                seq: (m.seq != m.id).then_some(m.seq),
                room: m.room.as_str().to_owned(),
                author: m.author.as_str().to_owned(),
                uid: m.author_id.as_ref().map(ToString::to_string),
                guest: m.guest && m.author_id.is_some(),
                at: unix_micros(m.sent_at),
                text: m.text.as_str().to_owned(),
                edited: m.edited,
                deleted: m.deleted,
                reactions: m
                    .reactions
                    .iter()
                    .map(|r| WireReaction {
                        e: r.emoji.as_str().to_owned(),
                        by: r
                            .by
                            .iter()
                            .map(|who| (who.user.to_string(), who.name.as_str().to_owned()))
                            .collect(),
                    })
                    .collect(),
                reply: m.reply.as_ref().map(|q| WireQuote {
                    id: q.id,
                    author: q.author.as_str().to_owned(),
                    text: q.excerpt.clone(),
                    edited: q.edited,
                    deleted: q.deleted,
                }),
            })
            .collect(),
    };
    // Plain strings and numbers: serializing cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Reads a batch, checking it as strictly as a message from a browser.
pub(super) fn decode(payload: &[u8]) -> Result<Committed, String> {
    let wire: WireBatch = serde_json::from_slice(payload).map_err(|err| err.to_string())?;
    if wire.v != 1 && wire.v != 2 {
        return Err(format!("unknown version {}", wire.v));
    }
    let mut newest = wire.prev;
    let mut messages = Vec::with_capacity(wire.messages.len());
    for m in wire.messages {
        let v2_fields = m.seq.is_some() || m.uid.is_some() || m.edited || m.deleted || m.guest;
        if wire.v == 1 && (v2_fields || !m.reactions.is_empty() || m.reply.is_some()) {
            return Err("version 2 fields in a version 1 batch".to_owned());
        }
        let seq = m.seq.unwrap_or(m.id);
        if seq <= newest {
            return Err("positions are not increasing above prev".to_owned());
        }
        if m.id > seq || (m.seq.is_some() && m.id == seq) {
            return Err("a change before its message".to_owned());
        }
        if m.deleted && !m.reactions.is_empty() {
            return Err("reactions on a deleted message".to_owned());
        }
        newest = seq;
        let room = RoomName::parse(&m.room).map_err(|err| err.to_string())?;
        let author = DisplayName::parse(&m.author).map_err(|err| err.to_string())?;
        let author_id = match &m.uid {
            Some(uid) => Some(UserId::parse(uid).ok_or("a malformed user id")?),
            None if m.guest => return Err("a guest without a user id".to_owned()),
            None => None,
        };
        let text = if m.deleted {
            if !m.text.is_empty() {
                return Err("text in a deleted message".to_owned());
            }
            MessageText::gone()
        } else {
            let text = MessageText::parse(&m.text, MAX_TEXT_CHARS)
                .map_err(|err| err.to_string())?
                .ok_or("an empty message")?;
            if text.as_str() != m.text {
                return Err("untrimmed text".to_owned());
            }
            text
        };
        let sent_at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m.at) * 1000)
            .map_err(|_| "a time out of range".to_owned())?;
        let reactions = reactions(m.reactions)?;
        let reply = m.reply.map(|q| quote(q, m.id)).transpose()?.map(Box::new);
        messages.push(ChatMessage {
            id: m.id,
            seq,
            room,
            author,
            author_id,
            guest: m.guest,
            sent_at,
            text,
            edited: m.edited,
            deleted: m.deleted,
            reactions,
            reply,
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

/// A reply's quote, checked: an earlier message, a real name, its text no longer than a
/// quote's and empty exactly when deleted.
fn quote(wire: WireQuote, reply: u64) -> Result<Quote, String> {
    if wire.id == 0 || wire.id >= reply {
        return Err("a reply to a message that is not earlier".to_owned());
    }
    let author = DisplayName::parse(&wire.author).map_err(|err| err.to_string())?;
    if wire.deleted != wire.text.is_empty() {
        return Err("a quote's text does not match its state".to_owned());
    }
    // An excerpt is at most so many characters of the text, and an ellipsis.
    if wire.text.chars().count() > Quote::EXCERPT_CHARS + 1
        || wire
            .text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err("a quote that is not an excerpt".to_owned());
    }
    let mut quote = Quote::of(
        wire.id,
        String::new(),
        &wire.text,
        wire.edited,
        wire.deleted,
    );
    quote.author = author;
    Ok(quote)
}

/// A message's reactions, checked: offered emoji, each once, in the set's order; each
/// reactor a real user id and name, once per emoji.
fn reactions(wire: Vec<WireReaction>) -> Result<Vec<Reaction>, String> {
    let mut reactions: Vec<Reaction> = Vec::with_capacity(wire.len());
    for r in wire {
        let emoji = Emoji::parse(&r.e).ok_or("an emoji not offered")?;
        if reactions.last().is_some_and(|last| last.emoji >= emoji) {
            return Err("reactions out of order".to_owned());
        }
        if r.by.is_empty() || r.by.len() > MAX_REACTORS {
            return Err("a reaction with no one or too many behind it".to_owned());
        }
        let mut by: Vec<Reactor> = Vec::with_capacity(r.by.len());
        for (user, name) in r.by {
            let user = UserId::parse(&user).ok_or("a malformed user id")?;
            if by.iter().any(|who| who.user == user) {
                return Err("the same reactor twice".to_owned());
            }
            let name = DisplayName::parse(&name).map_err(|err| err.to_string())?;
            by.push(Reactor { user, name });
        }
        reactions.push(Reaction { emoji, by });
    }
    Ok(reactions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Committed {
        let at = time::macros::datetime!(2026-11-28 08:16:22.123456 UTC);
        let message = |id, text: &str| ChatMessage {
            id,
            seq: id,
            room: RoomName::general(),
            author: DisplayName::parse("alice").unwrap(),
            author_id: None,
            guest: false,
            sent_at: at,
            text: MessageText::parse(text, 100).unwrap().unwrap(),
            edited: false,
            deleted: false,
            reactions: Vec::new(),
            reply: None,
        };
        Committed {
            prev: 4,
            messages: vec![message(7, "hi <b>"), message(9, "two\nlines")],
        }
    }

    /// A message by a known author, then an edit of it and a delete of another.
    fn changes() -> Committed {
        let mut batch = batch();
        let author = Some(UserId::parse("00112233445566778899aabbccddeeff").unwrap());
        batch.messages[0].author_id = author.clone();
        batch.messages[0].guest = true;
        batch.messages[1].reply = Some(Box::new(Quote::of(
            7,
            "alice".into(),
            "hi <b>",
            true,
            false,
        )));
        let mut edited = batch.messages[0].clone();
        edited.seq = 10;
        edited.text = MessageText::parse("fixed", 100).unwrap().unwrap();
        edited.edited = true;
        edited.reactions = vec![
            Reaction {
                emoji: Emoji::ThumbsUp,
                by: vec![Reactor {
                    user: author.clone().unwrap(),
                    name: DisplayName::parse("alice").unwrap(),
                }],
            },
            Reaction {
                emoji: Emoji::Party,
                by: vec![Reactor {
                    user: UserId::parse("ffeeddccbbaa99887766554433221100").unwrap(),
                    name: DisplayName::parse("bob <b>").unwrap(),
                }],
            },
        ];
        let mut deleted = batch.messages[1].clone();
        deleted.seq = 11;
        deleted.author_id = author;
        deleted.text = MessageText::gone();
        deleted.deleted = true;
        batch.messages.extend([edited, deleted]);
        batch
    }

    #[test]
    fn batches_round_trip() {
        let batch = batch();
        assert_eq!(decode(&encode(&batch)).unwrap(), batch);
        let changes = changes();
        assert_eq!(decode(&encode(&changes)).unwrap(), changes);
    }

    #[test]
    fn version_1_batches_from_older_nodes_are_read() {
        let v1 = r#"{"v":1,"prev":4,"messages":[{"id":7,"room":"general","author":"alice","at":1795853782123456,"text":"hi"}]}"#;
        let batch = decode(v1.as_bytes()).unwrap();
        assert_eq!((batch.messages[0].id, batch.messages[0].seq), (7, 7));
        let with_v2_fields = v1.replace(r#""text":"hi""#, r#""text":"hi","edited":true"#);
        assert!(decode(with_v2_fields.as_bytes()).is_err());
        let with_guest = v1.replace(r#""text":"hi""#, r#""text":"hi","guest":true"#);
        assert!(decode(with_guest.as_bytes()).is_err());
    }

    #[test]
    fn hostile_changes_are_refused() {
        let good = String::from_utf8(encode(&changes())).unwrap();
        assert!(
            good.contains(r#""seq":10"#)
                && good.contains(r#""deleted":true"#)
                && good.contains(r#""uid":"00112233445566778899aabbccddeeff","guest":true"#),
            "{good}"
        );
        let cases = [
            // A change numbered before its message, or as the message itself.
            good.replace(r#""seq":10"#, r#""seq":5"#),
            good.replace(r#""seq":10"#, r#""seq":7"#),
            // Positions out of order.
            good.replace(r#""seq":11"#, r#""seq":10"#),
            // An unknown field.
            good.replace(r#""seq":10,"#, r#""seq":10,"x":0,"#),
            // Reactions: an emoji not offered, out of order, nobody behind one, the same
            // reactor twice, a bad name, on a deleted message.
            good.replace("🎉", "🙂"),
            good.replace("🎉", "👀").replace("👍", "🎉").replace("👀", "👍"),
            good.replace(r#""by":[["ffeeddccbbaa99887766554433221100","bob <b>"]]"#, r#""by":[]"#),
            good.replace(
                r#"["ffeeddccbbaa99887766554433221100","bob <b>"]"#,
                r#"["ffeeddccbbaa99887766554433221100","bob <b>"],["ffeeddccbbaa99887766554433221100","x"]"#,
            ),
            good.replace("bob <b>", ""),
            good.replace(r#""deleted":true"#, r#""deleted":true,"reactions":[{"e":"👍","by":[["00112233445566778899aabbccddeeff","a"]]}]"#),
            // A deleted message that still has its text.
            good.replace(
                r#""text":"","deleted":true"#,
                r#""text":"back","deleted":true"#,
            ),
            // A quote of a later message, of nobody, with text though deleted, too long.
            good.replacen(r#""reply":{"id":7"#, r#""reply":{"id":9"#, 1),
            good.replacen(r#""reply":{"id":7,"author":"alice""#, r#""reply":{"id":7,"author":"""#, 1),
            good.replacen(r#""edited":true}"#, r#""deleted":true}"#, 1),
            good.replacen(r#""text":"hi <b>","edited":true}"#, &format!(r#""text":"{}","edited":true}}"#, "x".repeat(102)), 1),
            // A user id that is not one.
            good.replacen("00112233445566778899aabbccddeeff", "0011", 1),
            good.replacen("00112233445566778899aabbccddeeff", "<script>", 1),
            good.replacen(
                r#""uid":"00112233445566778899aabbccddeeff""#,
                r#""uid":7"#,
                1,
            ),
            // A guest with no user id to mark them by, or a flag that is not one.
            good.replacen(
                r#""uid":"00112233445566778899aabbccddeeff","guest":true"#,
                r#""guest":true"#,
                1,
            ),
            good.replacen(r#""guest":true"#, r#""guest":"yes""#, 1),
        ];
        for payload in cases {
            assert_ne!(payload, good);
            assert!(decode(payload.as_bytes()).is_err(), "{payload}");
        }
    }

    #[test]
    fn broken_or_hostile_payloads_are_refused_not_panics() {
        let good = String::from_utf8(encode(&batch())).unwrap();
        let cases = [
            String::new(),
            "null".to_owned(),
            "{".to_owned(),
            "[]".to_owned(),
            good.replace(r#""v":2"#, r#""v":3"#),
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
