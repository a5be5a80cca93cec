//! The invariants the fuzz targets check.
//!
//! Each target in `fuzz_targets/` hands the fuzzer's bytes to one function here, which
//! panics when an invariant does not hold. The main crate's `tests/fuzz_regressions.rs`
//! includes this file as a module and replays the saved inputs through the same functions,
//! so a crasher stays a test under plain `cargo test`. Keep this file free of dependencies
//! the main crate's tests do not have (`hubbub`, `hubbub-wire`, `bytes` and `serde_json` only).

use bytes::BytesMut;
use hubbub::domain::{
    ClientId, DisplayName, Emoji, GuestName, Inbound, InboundError, MessageText, RoomName,
    SearchError, SearchTerms, UserId,
};
use hubbub_wire::{self as wire, Decoder, Incoming, ProtocolError, Role};
use serde_json::Value;

/// A target's checks: panics when the input breaks an invariant.
pub type Check = fn(&[u8]);

/// Every target by name (the name of its directories under `fuzz/`) and its checks.
pub const TARGETS: &[(&str, Check)] = &[
    ("wire_decoder", wire_decoder),
    ("inbound", inbound),
    ("domain", domain),
    ("paging_cursor", paging_cursor),
    ("markdown", markdown),
];

/// Reads the fuzzer's bytes front to back; once they run out, every read is zero, so any
/// input describes some case.
struct Source<'a>(&'a [u8]);

impl Source<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    /// Up to 15 characters, mostly ASCII, some from anywhere in Unicode.
    fn string(&mut self) -> String {
        let len = self.byte() % 16;
        (0..len)
            .map(|_| match self.byte() {
                ascii @ 0..0x80 => char::from(ascii),
                high => {
                    let code = u32::from(high & 0x1F) << 16
                        | u32::from(self.byte()) << 8
                        | u32::from(self.byte());
                    char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// wire_decoder

/// Message size limits the decoder is tried with; the first input byte picks one.
const WIRE_LIMITS: [usize; 8] = [0, 1, 7, 16, 125, 126, 200, 4096];

/// What a decoder made of a byte stream: each message in order, then either the error that
/// ends the connection or the number of bytes left waiting for the rest of a frame.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    messages: Vec<Incoming>,
    end: Result<usize, ProtocolError>,
}

/// Input: one control byte (low 3 bits: the size limit; next 3 bits: how many piece
/// lengths follow), the piece lengths, then the stream a client sent.
///
/// Checks: feeding the stream in pieces gives exactly what feeding it whole gives; text
/// messages fit the limit and survive being framed again; pings fit a control frame;
/// close codes are valid; every error is one a server can meet and answers with the close
/// code RFC 6455 §7.4.1 asks for.
pub fn wire_decoder(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limit = WIRE_LIMITS[usize::from(control & 0x7)];
    let (lengths, stream) = rest.split_at(usize::from((control >> 3) & 0x7).min(rest.len()));

    let whole = decode_pieces(limit, [stream]);
    let split = decode_pieces(limit, pieces(stream, lengths));
    assert_eq!(
        whole, split,
        "split at {lengths:?}, the same bytes decode differently"
    );

    for message in &whole.messages {
        match message {
            Incoming::Text(text) => {
                assert!(text.len() <= limit, "{} bytes over {limit}", text.len());
                let again = decode_pieces(
                    limit,
                    [&wire::client_frame(true, text.as_bytes(), [1, 2, 3, 4])[..]],
                );
                assert_eq!(again.messages, [Incoming::Text(text.clone())]);
                assert_eq!(again.end, Ok(0));
            }
            Incoming::Ping(payload) => assert!(payload.len() <= 125, "ping of {}", payload.len()),
            Incoming::Close(Some(code)) => assert!(
                matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999),
                "close code {code} accepted"
            ),
            Incoming::Binary | Incoming::Pong | Incoming::Close(None) => {}
        }
    }
    if let Err(err) = &whole.end {
        let expected = match err {
            ProtocolError::TooBig(len) => {
                assert!(
                    *len > limit as u64,
                    "{len} bytes refused under a limit of {limit}"
                );
                1009
            }
            ProtocolError::InvalidUtf8 => 1007,
            ProtocolError::Masked => panic!("a server decoder asked clients not to mask"),
            _ => 1002,
        };
        assert_eq!(err.close_code(), expected, "{err:?}");
    }
}

/// `stream` cut into pieces of the given lengths, used in turn (a zero length is a read
/// that brought nothing). No lengths, or only zeros: one piece.
fn pieces<'a>(stream: &'a [u8], lengths: &[u8]) -> Vec<&'a [u8]> {
    if lengths.iter().all(|&len| len == 0) {
        return vec![stream];
    }
    let mut out = Vec::new();
    let mut rest = stream;
    for &len in lengths.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(usize::from(len).min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

/// Decodes the pieces as a server session does: after each read, every whole message.
fn decode_pieces<'a>(limit: usize, pieces: impl IntoIterator<Item = &'a [u8]>) -> Decoded {
    let mut decoder = Decoder::new(Role::Server, limit);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(err) => {
                    return Decoded {
                        messages,
                        end: Err(err),
                    };
                }
            }
        }
    }
    Decoded {
        messages,
        end: Ok(buf.len()),
    }
}

// ---------------------------------------------------------------------------------------
// inbound

/// Input: one mode byte, then either a frame as it is (even mode byte) or a description of
/// a JSON object that the checks write out and know the right answer for (odd).
pub fn inbound(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(frame) = std::str::from_utf8(rest) {
            inbound_frame(frame);
        }
    } else {
        inbound_structured(&mut Source(rest));
    }
}

/// Any frame: only `Malformed` errors; what is accepted is a JSON object whose `kind` and
/// `text` say so; accepted text goes through the message rules.
fn inbound_frame(frame: &str) {
    let inbound = match Inbound::parse(frame) {
        Ok(inbound) => inbound,
        Err(InboundError::Malformed(_)) => return,
        Err(InboundError::UnknownReaction) => {
            let value: Option<Value> = serde_json::from_str(frame).ok();
            let kind = value
                .as_ref()
                .and_then(|v| v.get("kind"))
                .and_then(Value::as_str);
            assert_eq!(
                kind,
                Some("react"),
                "{frame:?}: only a reaction names an emoji"
            );
            return;
        }
        Err(other) => panic!("{frame:?}: {other:?}, but parsing only knows malformed"),
    };
    let value: Option<Value> = serde_json::from_str(frame).ok();
    let Some(object) = value.as_ref().and_then(Value::as_object) else {
        panic!("{frame:?} is not a JSON object, yet it was read as {inbound:?}");
    };
    let kind = object.get("kind").filter(|kind| !kind.is_null());
    match inbound {
        Inbound::Typing => assert_eq!(kind, Some(&Value::from("typing")), "{frame:?}"),
        Inbound::Message {
            text,
            client_id,
            reply_to,
        } => {
            assert!(reply_to.is_none_or(|id| id > 0), "{frame:?}");
            assert!(
                kind.is_none() || kind == Some(&Value::from("message")),
                "{frame:?} read as a message"
            );
            assert_eq!(
                object.get("text"),
                Some(&Value::from(text.as_str())),
                "{frame:?}"
            );
            if let Some(id) = client_id {
                assert_eq!(object.get("client_id"), Some(&Value::from(id.as_str())));
                assert!(
                    id.as_str()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                );
            }
            for max_chars in [1, 16, 2000] {
                message_text(&text, max_chars);
            }
        }
        Inbound::Edit { id, text } => {
            assert_eq!(kind, Some(&Value::from("edit")), "{frame:?}");
            assert!(id > 0, "{frame:?}");
            assert_eq!(object.get("text"), Some(&Value::from(text.as_str())));
        }
        Inbound::Delete { id } => {
            assert_eq!(kind, Some(&Value::from("delete")), "{frame:?}");
            assert!(id > 0, "{frame:?}");
        }
        Inbound::Read { id } => {
            assert_eq!(kind, Some(&Value::from("read")), "{frame:?}");
            assert!(id > 0, "{frame:?}");
        }
        Inbound::React { id, emoji } => {
            assert_eq!(kind, Some(&Value::from("react")), "{frame:?}");
            assert!(id > 0, "{frame:?}");
            let sent = object
                .get("emoji")
                .and_then(Value::as_str)
                .unwrap_or_default();
            assert!(sent == emoji.as_str() || (sent == "❤" && emoji == Emoji::Heart));
        }
    }
}

/// A JSON value in an inbound object, as the structured mode writes it.
#[derive(Debug)]
enum Json {
    Null,
    Number(i16),
    Bool,
    Strings(Vec<String>),
    Object,
    String(String),
}

/// Writes a JSON object from the fuzzer's description (keys `kind`, `text`, htmx's headers
/// or anything; any kind of value; optional `\u` escapes and whitespace) and checks that
/// `Inbound::parse` answers what the htmx contract says it should.
fn inbound_structured(src: &mut Source<'_>) {
    let mut entries = Vec::new();
    for _ in 0..src.byte() % 6 {
        let key = match src.byte() % 8 {
            0 | 1 => "kind".to_owned(),
            2 | 3 => "text".to_owned(),
            4 => "HEADERS".to_owned(),
            5 => "id".to_owned(),
            6 => ["client_id", "emoji", "reply_to"][usize::from(src.byte() % 3)].to_owned(),
            _ => src.string(),
        };
        let value = match src.byte() % 15 {
            0 => Json::Null,
            1 => Json::Number(i16::from_le_bytes([src.byte(), src.byte()])),
            2 => Json::Bool,
            3 => Json::Strings((0..src.byte() % 3).map(|_| src.string()).collect()),
            4 => Json::Object,
            5 => Json::String("typing".to_owned()),
            6 => Json::String("message".to_owned()),
            7 => Json::String("edit".to_owned()),
            8 => Json::String("delete".to_owned()),
            9 => Json::String(u16::from_le_bytes([src.byte(), src.byte()]).to_string()),
            10 => Json::String("0f3a9c2e-7b1d-4e5f-a6b7-c8d9e0f1a2b3".to_owned()),
            11 => Json::String("react".to_owned()),
            12 => {
                Json::String(["👍", "❤️", "❤", "🙂", "✅"][usize::from(src.byte() % 5)].to_owned())
            }
            13 => Json::String("read".to_owned()),
            _ => Json::String(src.string()),
        };
        entries.push((key, value));
    }

    let mut frame = String::new();
    let space = |frame: &mut String, src: &mut Source<'_>| {
        frame.push_str(["", " ", "\n", "\t", "\r\n  "][usize::from(src.byte() % 5)]);
    };
    space(&mut frame, src);
    frame.push('{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            frame.push(',');
        }
        space(&mut frame, src);
        push_json_string(&mut frame, key, src.byte() & 1 == 1);
        space(&mut frame, src);
        frame.push(':');
        space(&mut frame, src);
        match value {
            Json::Null => frame.push_str("null"),
            Json::Number(n) => frame.push_str(&n.to_string()),
            Json::Bool => frame.push_str("true"),
            Json::Strings(strings) => {
                frame.push('[');
                for (i, s) in strings.iter().enumerate() {
                    if i > 0 {
                        frame.push(',');
                    }
                    push_json_string(&mut frame, s, false);
                }
                frame.push(']');
            }
            Json::Object => frame.push_str(r#"{"HX-Request":"true"}"#),
            Json::String(s) => push_json_string(&mut frame, s, src.byte() & 1 == 1),
        }
        space(&mut frame, src);
    }
    frame.push('}');
    space(&mut frame, src);

    let expected = expected_inbound(&entries);
    match (Inbound::parse(&frame), expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "{frame:?}"),
        (Err(InboundError::Malformed(_)), Err(Refused::Malformed)) => {}
        (Err(InboundError::UnknownReaction), Err(Refused::UnknownReaction)) => {}
        (got, want) => panic!("{frame:?}: got {got:?}, expected {want:?} (None: malformed)"),
    }
    inbound_frame(&frame);
}

/// What an object with these entries means (`None`: malformed). `kind`, `text` and
/// `client_id` are strings or null (null is the same as absent), `id` a string or a
/// number that is not negative, each at most once; every other field is ignored. An edit
/// and a delete name a message by a positive whole number (digits only, as a string); a
/// client id is 8 to 64 letters, digits or `-` (empty: none).
fn expected_inbound(entries: &[(String, Json)]) -> Result<Inbound, Refused> {
    expected_or_malformed(entries).unwrap_or(Err(Refused::Malformed))
}

/// How the structured mode expects a frame to be refused.
#[derive(Debug)]
enum Refused {
    Malformed,
    UnknownReaction,
}

/// [`expected_inbound`], with `None` for malformed.
fn expected_or_malformed(entries: &[(String, Json)]) -> Option<Result<Inbound, Refused>> {
    let one = |name: &str| -> Option<Option<&Json>> {
        let mut found = entries.iter().filter(|(key, _)| key == name);
        let first = found.next();
        if found.next().is_some() {
            return None;
        }
        Some(
            first
                .map(|(_, value)| value)
                .filter(|v| !matches!(v, Json::Null)),
        )
    };
    let string = |name: &str| -> Option<Option<&str>> {
        match one(name)? {
            None => Some(None),
            Some(Json::String(s)) => Some(Some(s.as_str())),
            Some(_) => None,
        }
    };
    let (kind, text, client_id) = (string("kind")?, string("text")?, string("client_id")?);
    let emoji = string("emoji")?;
    // An id field: absent (None), or Some(the id if it is a valid one).
    let id_field = |name: &str| -> Option<Option<Option<u64>>> {
        Some(match one(name)? {
            None => None,
            Some(Json::Number(n)) if *n >= 0 => Some(Some(*n as u64).filter(|n| *n > 0)),
            Some(Json::String(s)) => Some(
                s.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| s.parse::<u64>().ok())
                    .flatten()
                    .filter(|n| *n > 0),
            ),
            Some(_) => return None,
        })
    };
    let id = id_field("id")?;
    let reply_to = id_field("reply_to")?;
    let empty_reply = matches!(one("reply_to")?, Some(Json::String(s)) if s.is_empty());
    let inbound = match kind {
        Some("typing") => Inbound::Typing,
        None | Some("message") => {
            let client_id = match client_id {
                None | Some("") => None,
                Some(raw) => Some(ClientId::parse(raw).ok()?),
            };
            let reply_to = match reply_to {
                None => None,
                Some(_) if empty_reply => None,
                Some(valid) => Some(valid?),
            };
            Inbound::Message {
                text: text?.to_owned(),
                client_id,
                reply_to,
            }
        }
        Some("edit") => Inbound::Edit {
            id: id??,
            text: text?.to_owned(),
        },
        Some("delete") => Inbound::Delete { id: id?? },
        Some("read") => Inbound::Read { id: id?? },
        Some("react") => {
            let id = id??;
            let Some(emoji) = Emoji::parse(emoji?) else {
                return Some(Err(Refused::UnknownReaction));
            };
            Inbound::React { id, emoji }
        }
        _ => return None,
    };
    Some(Ok(inbound))
}

/// A JSON string literal; `escape_all` writes every character as `\u` escapes (surrogate
/// pairs beyond the BMP), which must read the same.
fn push_json_string(out: &mut String, s: &str, escape_all: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            _ if escape_all => {
                let mut units = [0; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------
// domain

/// Input: one byte, the message length limit, then text (lossily decoded as UTF-8) given
/// to every domain parser.
pub fn domain(data: &[u8]) {
    let Some((&max_chars, rest)) = data.split_first() else {
        return;
    };
    let raw = String::from_utf8_lossy(rest);
    message_text(&raw, usize::from(max_chars));
    room_name(&raw);
    display_name(&raw);
    user_id(&raw);
    guest_name(&raw);
    search_terms(&raw);
    search_excerpt(&raw);
}

/// A search is its words and nothing else: at most 8, none empty or repeated, with no
/// whitespace, punctuation or control characters (so no store's query syntax), and no
/// query over 200 characters is taken; words come in the order typed.
fn search_terms(raw: &str) {
    match SearchTerms::parse(raw) {
        Ok(terms) => {
            let words = terms.words();
            assert!(raw.chars().count() <= SearchTerms::MAX_QUERY_CHARS);
            assert!(!words.is_empty() && words.len() <= SearchTerms::MAX_WORDS);
            for (i, word) in words.iter().enumerate() {
                assert!(!word.is_empty());
                assert!(!words[..i].contains(word), "{word:?} twice");
                assert!(
                    !word
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_ascii_punctuation() || c.is_control()),
                    "{word:?} from {raw:?}"
                );
            }
            assert_eq!(terms.text(), words.join(" "));
        }
        Err(SearchError::TooLong) => {
            assert!(raw.chars().count() > SearchTerms::MAX_QUERY_CHARS);
        }
        Err(SearchError::NoWords) => assert!(!raw.chars().any(char::is_alphanumeric)),
        Err(SearchError::TooManyWords) => {}
    }
}

/// An excerpt's HTML has no element but `<mark>`, never nested and always closed, and
/// reads back (tags dropped, entities decoded) as the text without its match markers.
fn search_excerpt(raw: &str) {
    let html = hubbub::render::excerpt(raw);
    let mut open = false;
    let mut text = String::new();
    let mut rest = html.as_str();
    while let Some(at) = rest.find(['<', '&']) {
        text.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("<mark>") {
            assert!(!open, "nested mark in {html:?}");
            open = true;
            rest = after;
        } else if let Some(after) = rest.strip_prefix("</mark>") {
            assert!(open, "closing an unopened mark in {html:?}");
            open = false;
            rest = after;
        } else {
            let entity = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                .into_iter()
                .find(|e| rest.starts_with(e))
                .unwrap_or_else(|| panic!("markup in {html:?}"));
            text.push(match entity {
                "&amp;" => '&',
                "&lt;" => '<',
                "&gt;" => '>',
                "&quot;" => '"',
                _ => '\'',
            });
            rest = &rest[entity.len()..];
        }
    }
    text.push_str(rest);
    assert!(!open, "unclosed mark in {html:?}");
    let plain: String = raw
        .chars()
        .filter(|c| !matches!(c, '\u{1}' | '\u{2}'))
        .collect();
    assert_eq!(text, plain);
}

/// Tabs and line breaks are the only control characters a message may hold.
fn is_forbidden_in_text(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\t' | '\r')
}

/// Trimmed, not empty, at most `max_chars` characters, no control characters but tabs and
/// line breaks; whitespace-only is nothing to send; errors say why; parsing the accepted
/// text again gives the same value.
fn message_text(raw: &str, max_chars: usize) {
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    match MessageText::parse(raw, max_chars) {
        Ok(None) => assert!(trimmed.is_empty(), "{raw:?} is not blank"),
        Ok(Some(text)) => {
            assert_eq!(text.as_str(), trimmed);
            assert!(!trimmed.is_empty());
            assert!(len <= max_chars, "{len} characters over {max_chars}");
            assert!(!trimmed.chars().any(is_forbidden_in_text), "{raw:?}");
            assert_eq!(
                MessageText::parse(text.as_str(), max_chars),
                Ok(Some(text.clone()))
            );
        }
        Err(InboundError::TooLong { len: said, max }) => {
            assert_eq!((said, max), (len, max_chars));
            assert!(len > max_chars);
        }
        Err(InboundError::ControlCharacters) => {
            assert!(
                len <= max_chars && trimmed.chars().any(is_forbidden_in_text),
                "{raw:?}"
            );
        }
        Err(
            InboundError::Malformed(_) | InboundError::EmptyEdit | InboundError::UnknownReaction,
        ) => {
            panic!("{raw:?}: text alone is never malformed, an edit or a reaction")
        }
    }
}

/// Accepted exactly when it is 1 to 64 of `a-z A-Z 0-9 - _`; the name is the input in
/// lower case; parsing it again gives the same name.
fn room_name(raw: &str) {
    let valid = (1..=RoomName::MAX_CHARS).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match RoomName::parse(raw) {
        Ok(room) => {
            assert!(valid, "{raw:?} accepted");
            assert_eq!(room.as_str(), raw.to_ascii_lowercase());
            assert_eq!(room.to_string(), room.as_str());
            assert_eq!(RoomName::parse(room.as_str()).as_ref(), Ok(&room));
        }
        Err(_) => assert!(!valid, "{raw:?} refused"),
    }
}

/// Characters the display-name rules call invisible (domain.rs lists them by range).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

/// Trimmed, 1 to 32 characters, no control or invisible characters; accepted exactly when
/// the trimmed input is so; parsing it again gives the same name.
fn display_name(raw: &str) {
    let trimmed = raw.trim();
    let valid = (1..=DisplayName::MAX_CHARS).contains(&trimmed.chars().count())
        && !trimmed.chars().any(|c| c.is_control() || is_invisible(c));
    match DisplayName::parse(raw) {
        Ok(name) => {
            assert!(valid, "{raw:?} accepted");
            assert_eq!(name.as_str(), trimmed);
            assert_eq!(name.to_string(), trimmed);
            assert_eq!(DisplayName::parse(name.as_str()).as_ref(), Ok(&name));
        }
        Err(_) => assert!(!valid, "{raw:?} refused"),
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Exactly 32 lower-case hex digits, written back the same.
fn user_id(raw: &str) {
    let valid = raw.len() == 32 && is_lower_hex(raw);
    match UserId::parse(raw) {
        Some(id) => {
            assert!(valid, "{raw:?} accepted");
            assert_eq!(id.to_string(), raw);
            assert_eq!(UserId::parse(&id.to_string()), Some(id.clone()));
        }
        None => assert!(!valid, "{raw:?} refused"),
    }
}

/// Exactly `guest-` and 4 lower-case hex digits, kept as they are; a guest's display name
/// is the same text.
fn guest_name(raw: &str) {
    let valid = raw
        .strip_prefix("guest-")
        .is_some_and(|hex| hex.len() == 4 && is_lower_hex(hex));
    match GuestName::parse(raw) {
        Some(name) => {
            assert!(valid, "{raw:?} accepted");
            assert_eq!(name.as_str(), raw);
            assert_eq!(GuestName::parse(name.as_str()), Some(name.clone()));
            assert_eq!(DisplayName::from(name).as_str(), raw);
        }
        None => assert!(!valid, "{raw:?} refused"),
    }
}

// ---------------------------------------------------------------------------------------
// paging_cursor

/// Input: a query string (lossily decoded as UTF-8).
///
/// The query is read as `application/x-www-form-urlencoded` pairs (split on `&`, empty
/// pieces skipped, a name without `=` has an empty value; nothing is percent-decoded). The
/// cursor is accepted exactly when `before` is named once and its value is a decimal
/// number (ASCII digits only) from 1 to `u64::MAX`; the id then prints back as that value
/// without leading zeros, and other parameters around it change nothing.
pub fn paging_cursor(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    let befores: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .filter(|(name, _)| *name == "before")
        .map(|(_, value)| value)
        .collect();
    let expected = match befores[..] {
        [value] if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
            value.parse::<u64>().ok().filter(|&id| id > 0)
        }
        _ => None,
    };
    match (hubbub::http::parse_cursor(Some(&query)), expected) {
        (Ok(id), Some(want)) => {
            assert_eq!(id, want, "{query:?}");
            assert_eq!(id.to_string(), befores[0].trim_start_matches('0'));
            let again = format!("x=1&&before={id}&y");
            assert_eq!(hubbub::http::parse_cursor(Some(&again)), Ok(id));
        }
        (Err(message), None) => assert!(message.contains("expected ?before=ID"), "{message}"),
        (got, want) => panic!("{query:?}: got {got:?}, expected {want:?}"),
    }
    assert!(hubbub::http::parse_cursor(None).is_err());
}

// ---------------------------------------------------------------------------------------
// markdown

/// Input: message text (lossily decoded as UTF-8). Its HTML holds only the allow-listed
/// elements (`hubbub::render::ALLOWED_IN_MESSAGES`); the only attributes are a link's
/// `href` (`http://` or `https://`), `rel` and `target`, a list's `start` (digits), and a
/// mention's `class` and `data-mention` (no quote or angle bracket in it);
/// outside the tags there is no `<`, `>` or `"`; an inline body has no block elements;
/// elements open and close in order.
pub fn markdown(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let body = hubbub::render::message_body(&text);
    let html = body.html.as_str();
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    loop {
        let Some(at) = rest.find('<') else {
            assert!(!rest.contains(['>', '"']), "{html:?}");
            break;
        };
        assert!(
            !rest[..at].contains(['>', '"']),
            "text with markup characters: {html:?}"
        );
        let end = at
            + rest[at..]
                .find('>')
                .unwrap_or_else(|| panic!("unclosed tag: {html:?}"));
        let tag = &rest[at + 1..end];
        assert!(!tag.contains('<'), "{html:?}");
        let closing = tag.starts_with('/');
        let inside = tag.trim_start_matches('/');
        let name: String = inside
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        assert!(
            hubbub::render::ALLOWED_IN_MESSAGES.contains(&name.as_str()),
            "<{tag}> is not allowed: {html:?}"
        );
        let attributes = &inside[name.len()..];
        if closing {
            assert!(attributes.is_empty(), "{html:?}");
            assert_eq!(
                open.pop().as_deref(),
                Some(name.as_str()),
                "out of order: {html:?}"
            );
        } else {
            match name.as_str() {
                "a" => {
                    let href = attributes
                        .strip_prefix(" href=\"")
                        .and_then(|a| {
                            a.strip_suffix("\" rel=\"noopener nofollow ugc\" target=\"_blank\"")
                        })
                        .unwrap_or_else(|| panic!("a link's attributes: <{tag}> in {html:?}"));
                    let lower = href.to_ascii_lowercase();
                    assert!(
                        lower.starts_with("http://") || lower.starts_with("https://"),
                        "a link to {href:?}: {html:?}"
                    );
                    assert!(!href.contains(['"', '<', '>']), "{html:?}");
                }
                "ol" => {
                    assert!(
                        attributes.is_empty()
                            || attributes
                                .strip_prefix(" start=\"")
                                .and_then(|n| n.strip_suffix('"'))
                                .is_some_and(
                                    |n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                                ),
                        "{html:?}"
                    )
                }
                "span" => {
                    let key = attributes
                        .strip_prefix(" class=\"mention\" data-mention=\"")
                        .and_then(|a| a.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("a span's attributes: <{tag}> in {html:?}"));
                    assert!(!key.contains(['"', '<', '>']), "{html:?}");
                }
                _ => assert!(attributes.is_empty(), "attributes on <{tag}>: {html:?}"),
            }
            if body.inline {
                assert!(
                    !matches!(
                        name.as_str(),
                        "p" | "pre" | "blockquote" | "ul" | "ol" | "li"
                    ),
                    "a block in an inline body: {html:?}"
                );
            }
            if name != "br" {
                open.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "left open {open:?}: {html:?}");
}
