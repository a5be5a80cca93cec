//! The presence channel's messages (JSON, version 1; a node that does not know a kind
//! counts it as malformed and ignores it) and the fields of a node's hash, and
//! their strict reading: node ids, rooms, user ids and names must parse exactly as a node
//! writes them.

use std::time::Duration;

use redis::Value;
use serde::{Deserialize, Serialize};

use crate::cluster::{Change, EXPIRY_RANGE, Heard, NodeId, Read, Seat};
use crate::domain::{DisplayName, RoomName, SessionTag, SignOut, UserId};
use crate::hub::Signals;

/// A message on the presence channel: version 1.
#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    node: String,
    #[serde(flatten)]
    body: Body,
}

/// A message from `node` on the presence channel.
pub(super) fn encode(node: &NodeId, body: Body) -> Vec<u8> {
    let wire = Wire {
        v: 1,
        node: node.as_str().to_owned(),
        body,
    };
    // Plain strings and numbers: serializing cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Rooms, user ids and names as strings: `[room, user, name]`, `[room, user]`, `[user, name]`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Body {
    Alive {
        seq: u64,
        expiry_ms: u64,
    },
    Changes {
        seq: u64,
        here: Vec<(String, String, String)>,
        gone: Vec<(String, String)>,
    },
    Left {},
    Typing {
        seats: Vec<(String, String, String)>,
    },
    Renamed {
        users: Vec<(String, String)>,
    },
    /// `[user, room, unread, mentions]`.
    Read {
        reads: Vec<(String, String, u32, u32)>,
    },
    /// `[user, "one", tag]` (that session) or `[user, "all", tag or ""]` (every session
    /// but that one).
    SignedOut {
        ends: Vec<(String, String, String)>,
    },
}

/// The most unread messages a read may report: far more than a room keeps in memory,
/// which is what a node counts them in.
const MAX_UNREAD: u32 = 100_000;

/// What the hub has to tell as it happens, as messages on the presence channel.
pub(super) fn signal_bodies(signals: Signals) -> Vec<Body> {
    let Signals {
        typing,
        renamed,
        read,
        signed_out,
    } = signals;
    let mut bodies = Vec::new();
    if !typing.is_empty() {
        let seats = typing.iter().map(wire_seat).collect();
        bodies.push(Body::Typing { seats });
    }
    if !renamed.is_empty() {
        let users = renamed
            .iter()
            .map(|(user, name)| (user.to_string(), name.as_str().to_owned()))
            .collect();
        bodies.push(Body::Renamed { users });
    }
    if !read.is_empty() {
        let reads = read
            .iter()
            .map(|read| {
                (
                    read.user.to_string(),
                    read.room.as_str().to_owned(),
                    read.unread,
                    read.mentions,
                )
            })
            .collect();
        bodies.push(Body::Read { reads });
    }
    if !signed_out.is_empty() {
        let ends = signed_out
            .iter()
            .map(|ending| match ending {
                SignOut::One { user, tag } => (user.to_string(), "one".to_owned(), tag.to_string()),
                SignOut::All { user, keep } => (
                    user.to_string(),
                    "all".to_owned(),
                    keep.map(|tag| tag.to_string()).unwrap_or_default(),
                ),
            })
            .collect();
        bodies.push(Body::SignedOut { ends });
    }
    bodies
}

fn sign_out(user: &str, scope: &str, raw_tag: &str) -> Result<SignOut, String> {
    let user = UserId::parse(user).ok_or("not a user id")?;
    let tag = || SessionTag::parse(raw_tag).ok_or("not a session tag");
    match scope {
        "one" => Ok(SignOut::One { user, tag: tag()? }),
        "all" if raw_tag.is_empty() => Ok(SignOut::All { user, keep: None }),
        "all" => Ok(SignOut::All {
            user,
            keep: Some(tag()?),
        }),
        _ => Err("an unknown sign-out".to_owned()),
    }
}

pub(super) fn wire_seat(seat: &Seat) -> (String, String, String) {
    (
        seat.room.as_str().to_owned(),
        seat.user.to_string(),
        seat.name.as_str().to_owned(),
    )
}

/// Reads a message from the presence channel, checking every value.
pub(super) fn decode(payload: &[u8]) -> Result<(NodeId, Heard), String> {
    let wire: Wire = serde_json::from_slice(payload).map_err(|err| err.to_string())?;
    if wire.v != 1 {
        return Err(format!("unknown version {}", wire.v));
    }
    let node = NodeId::parse(&wire.node).ok_or("not a node id")?;
    let heard = match wire.body {
        Body::Alive { seq, expiry_ms } => Heard::Alive {
            node: node.clone(),
            seq,
            expiry: expiry_of(expiry_ms)?,
        },
        Body::Changes { seq, here, gone } => {
            let mut changes = Vec::with_capacity(here.len() + gone.len());
            for (room, user, name) in here {
                changes.push(Change::Here(seat(&room, &user, &name)?));
            }
            for (room, user) in gone {
                changes.push(Change::Gone {
                    room: canonical_room(&room)?,
                    user: UserId::parse(&user).ok_or("not a user id")?,
                });
            }
            Heard::Changes {
                node: node.clone(),
                seq,
                changes,
            }
        }
        Body::Left {} => Heard::Left { node: node.clone() },
        Body::Typing { seats } => Heard::Typing(
            seats
                .iter()
                .map(|(room, user, name)| seat(room, user, name))
                .collect::<Result<_, _>>()?,
        ),
        Body::Renamed { users } => Heard::Renamed(
            users
                .iter()
                .map(|(user, name)| {
                    Ok((
                        UserId::parse(user).ok_or("not a user id")?,
                        canonical_name(name)?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        ),
        Body::Read { reads } => Heard::Read(
            reads
                .iter()
                .map(|(user, room, unread, mentions)| {
                    if *unread > MAX_UNREAD || mentions > unread {
                        return Err("unread counts out of range".to_owned());
                    }
                    Ok(Read {
                        user: UserId::parse(user).ok_or("not a user id")?,
                        room: canonical_room(room)?,
                        unread: *unread,
                        mentions: *mentions,
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
        Body::SignedOut { ends } => Heard::SignedOut(
            ends.iter()
                .map(|(user, scope, tag)| sign_out(user, scope, tag))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok((node, heard))
}

/// A node's expiry, in the range `--presence-expiry` allows.
pub(super) fn expiry_of(ms: u64) -> Result<Duration, String> {
    let expiry = Duration::from_millis(ms);
    if EXPIRY_RANGE.contains(&expiry) {
        Ok(expiry)
    } else {
        Err(format!("an expiry of {ms} ms"))
    }
}

fn seat(room: &str, user: &str, name: &str) -> Result<Seat, String> {
    Ok(Seat {
        room: canonical_room(room)?,
        user: UserId::parse(user).ok_or("not a user id")?,
        name: canonical_name(name)?,
    })
}

/// A room name exactly as a node writes it (already lower case).
fn canonical_room(raw: &str) -> Result<RoomName, String> {
    let room = RoomName::parse(raw).map_err(|err| err.to_string())?;
    if room.as_str() == raw {
        Ok(room)
    } else {
        Err("a room name not in its canonical form".to_owned())
    }
}

/// A display name exactly as a node writes it (already trimmed).
fn canonical_name(raw: &str) -> Result<DisplayName, String> {
    let name = DisplayName::parse(raw).map_err(|err| err.to_string())?;
    if name.as_str() == raw {
        Ok(name)
    } else {
        Err("an untrimmed name".to_owned())
    }
}

/// A hash field: `ROOM USER` (neither contains a space).
pub(super) fn field(room: &RoomName, user: &UserId) -> String {
    format!("{room} {user}")
}

pub(super) fn parse_field(field: &str, value: &str) -> Option<Seat> {
    let (room, user) = field.split_once(' ')?;
    seat(room, user, value).ok()
}

/// The field/value pairs of a hash as Redis sent it (a RESP3 map, or a flat array); pairs
/// that are not text are left out.
pub(super) fn pairs(value: &Value) -> Vec<(&str, &str)> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|pair| Some((text(&pair[0])?, text(&pair[1])?)))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

pub(super) fn unix_millis() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
