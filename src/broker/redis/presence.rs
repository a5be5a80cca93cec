//! Presence and typing across nodes, over the same Redis connection as the batches.
//!
//! Each node keeps its own users in a Redis hash of its own, `CHANNEL:presence:node:ID`
//! (one field `ROOM USER` = name per user per room; `seq`, the number of the last report;
//! `expiry`, its `--presence-expiry` in milliseconds, after which the others forget it
//! unless it sends a heartbeat), which expires unless the node renews it, and lists itself in the sorted set
//! `CHANNEL:presence:nodes` (scored by when it is due to expire: its last heartbeat plus
//! its expiry, so every node reads the list the same way whatever its own expiry). What changes is
//! also published on `CHANNEL:presence`, in the same transaction as the hash update:
//!
//! - `changes`: report `seq`, who came (or was renamed) and who went, since report
//!   `seq - 1`. Paced: at most one every [`REPORT_PACE`], covering everything meanwhile.
//! - `alive`: the node's heartbeat (every third of `--presence-expiry`) with its last
//!   report's number and its expiry; also sent when the node has just rewritten its whole
//!   hash.
//! - `left`: the node is stopping.
//! - `typing`, `renamed`: passed on as they happen; nothing to keep.
//!
//! A node that hears a report it cannot apply (one was missed: pub/sub drops what it
//! cannot deliver) or hears of a node it does not know reads that node's hash, which is
//! exactly the state of its last report, and carries on from there ([`Gap`]). After every
//! (re)subscribe a node reads every listed node's hash and rewrites its own. A node not
//! heard from for `--presence-expiry` is forgotten by the others (`Hub::tick`), and its
//! hash expires in Redis, so a crashed node's users are gone everywhere within that time.
//!
//! Everything read from Redis is checked as strictly as what a browser sends: node ids,
//! rooms, user ids and names must parse as the node made them; what does not is counted as
//! malformed and ignored.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::cluster::{
    Change, EXPIRY_RANGE, Gap, Heard, MAX_NODES, NodeId, NodePresence, Published, Seat,
};
use crate::domain::{DisplayName, RoomName, UserId};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// At most one presence report per this long: a burst of joins is one report.
pub(super) const REPORT_PACE: Duration = Duration::from_millis(200);

/// This node's side of presence sharing: its id, the keys, what it told the others.
pub(super) struct PresenceLink {
    node: NodeId,
    /// `CHANNEL:presence`.
    channel: String,
    /// `CHANNEL:presence:node:`, followed by a node id.
    hash_prefix: String,
    /// `CHANNEL:presence:nodes`.
    nodes_key: String,
    expiry: Duration,
    /// The number of this node's last report.
    seq: u64,
    published: Published,
    hub: Hub,
    metrics: Arc<Metrics>,
    /// When the next report may go out.
    next_report: Instant,
    /// Presence changed while the pace held the report back.
    pending: bool,
}

impl PresenceLink {
    pub(super) fn new(channel: &str, expiry: Duration, hub: Hub, metrics: Arc<Metrics>) -> Self {
        Self {
            node: NodeId::generate(),
            channel: format!("{channel}:presence"),
            hash_prefix: format!("{channel}:presence:node:"),
            nodes_key: format!("{channel}:presence:nodes"),
            expiry,
            seq: 0,
            published: Published::default(),
            hub,
            metrics,
            next_report: Instant::now(),
            pending: false,
        }
    }

    pub(super) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// While not connected: the whole presence is written afresh on the next connection,
    /// so the hub's news is let go (holding it would hold rooms in memory).
    pub(super) fn discard_news(&mut self) {
        // `None` (changes lost) needs nothing either: all is rewritten on connecting.
        drop(self.hub.take_presence());
        drop(self.hub.take_signals());
        self.pending = false;
    }

    /// The channel to subscribe to besides the batches'.
    pub(super) fn channel(&self) -> &str {
        &self.channel
    }

    /// How often to send a heartbeat: three of them fit in the expiry.
    pub(super) fn beat_every(&self) -> Duration {
        (self.expiry / 3).max(Duration::from_millis(100))
    }

    /// When a report held back by the pace is due, if one is.
    pub(super) fn report_due(&self) -> Option<Instant> {
        self.pending.then_some(self.next_report)
    }

    fn hash(&self, node: &NodeId) -> String {
        format!("{}{node}", self.hash_prefix)
    }

    /// Just subscribed (again): reads every other node's presence, replacing what was known,
    /// and writes this node's afresh, since reports were missed meanwhile either way.
    pub(super) async fn subscribed(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let listed: Vec<Value> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.nodes_key)
            .arg(unix_millis())
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(MAX_NODES)
            .query_async(conn)
            .await?;
        let others: Vec<NodeId> = listed
            .iter()
            .filter_map(|value| {
                let node = text(value).and_then(NodeId::parse);
                if node.is_none() {
                    self.malformed("a node id that is not one");
                }
                node
            })
            .filter(|node| *node != self.node)
            .collect();
        let mut reads = redis::pipe();
        for node in &others {
            reads.cmd("HGETALL").arg(self.hash(node));
        }
        let hashes: Vec<Value> = if others.is_empty() {
            Vec::new()
        } else {
            reads.query_async(conn).await?
        };
        let everyone: Vec<NodePresence> = others
            .into_iter()
            .zip(hashes)
            .filter_map(|(node, hash)| self.whole(node, &hash))
            .collect();
        self.metrics.presence_read(everyone.len());
        tracing::info!(nodes = everyone.len(), "read the other nodes' presence");
        // A fresh picture: nothing to apply a gap to, so the result is always `Ok`.
        let _ = self.hub.hear(Heard::Everyone(everyone));
        self.rewrite(conn).await
    }

    /// Writes this node's whole presence (its hash replaced in one transaction) and tells
    /// the others to read it.
    async fn rewrite(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let seats = self.hub.all_seats();
        self.published.reset(&seats);
        self.seq += 1;
        self.pending = false;
        let key = self.hash(&self.node);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("DEL").arg(&key).ignore();
        let mut hset = redis::cmd("HSET");
        hset.arg(&key)
            .arg("seq")
            .arg(self.seq)
            .arg("expiry")
            .arg(millis(self.expiry));
        for seat in &seats {
            hset.arg(field(&seat.room, &seat.user))
                .arg(seat.name.as_str());
        }
        pipe.add_command(hset).ignore();
        self.renew(&mut pipe);
        pipe.cmd("PUBLISH")
            .arg(&self.channel)
            .arg(self.alive())
            .ignore();
        pipe.query_async::<()>(conn).await?;
        self.metrics.presence_published();
        Ok(())
    }

    /// Keeps this node's hash and its place in the node list alive for another expiry, and
    /// drops nodes from the list whose own expiry has run out.
    fn renew(&self, pipe: &mut redis::Pipeline) {
        let now = unix_millis();
        let expiry = millis(self.expiry);
        pipe.cmd("PEXPIRE")
            .arg(self.hash(&self.node))
            .arg(expiry)
            .ignore();
        pipe.cmd("ZADD")
            .arg(&self.nodes_key)
            .arg(now.saturating_add(expiry))
            .arg(self.node.as_str())
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&self.nodes_key)
            .arg("-inf")
            .arg(format!("({now}"))
            .ignore();
        // The list outlives its nodes by the longest expiry there is, then goes too (every
        // heartbeat of any node renews it).
        pipe.cmd("PEXPIRE")
            .arg(&self.nodes_key)
            .arg(millis(*EXPIRY_RANGE.end()).saturating_mul(2))
            .ignore();
    }

    /// The hub has news: typing and renames go out at once, presence changes as the pace
    /// allows.
    pub(super) async fn news(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let (typing, renamed) = self.hub.take_signals();
        if !typing.is_empty() || !renamed.is_empty() {
            let mut pipe = redis::pipe();
            if !typing.is_empty() {
                let seats = typing.iter().map(wire_seat).collect();
                pipe.cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(self.encode(Body::Typing { seats }))
                    .ignore();
            }
            if !renamed.is_empty() {
                let users = renamed
                    .iter()
                    .map(|(user, name)| (user.as_str().to_owned(), name.as_str().to_owned()))
                    .collect();
                pipe.cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(self.encode(Body::Renamed { users }))
                    .ignore();
            }
            pipe.query_async::<()>(conn).await?;
        }
        if Instant::now() >= self.next_report {
            self.report(conn).await
        } else {
            self.pending = true;
            Ok(())
        }
    }

    /// Publishes what changed in this node's presence since the last report, if anything.
    pub(super) async fn report(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        self.pending = false;
        let Some(rooms) = self.hub.take_presence() else {
            // The hub lost track of some changes: tell everything afresh.
            return self.rewrite(conn).await;
        };
        let mut changes = Vec::new();
        for (room, users) in rooms {
            changes.extend(self.published.diff(&room, users));
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.seq += 1;
        self.next_report = Instant::now() + REPORT_PACE;
        let key = self.hash(&self.node);
        let mut here = Vec::new();
        let mut gone = Vec::new();
        let mut hset = redis::cmd("HSET");
        hset.arg(&key).arg("seq").arg(self.seq);
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(&key);
        for change in &changes {
            match change {
                Change::Here(seat) => {
                    hset.arg(field(&seat.room, &seat.user))
                        .arg(seat.name.as_str());
                    here.push(wire_seat(seat));
                }
                Change::Gone { room, user } => {
                    hdel.arg(field(room, user));
                    gone.push((room.as_str().to_owned(), user.as_str().to_owned()));
                }
            }
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        // Whether the hash was there before this report: if it had expired (this node
        // stalled, or Redis evicted it), the report just made a hash of the changed users
        // only, so it is rewritten whole at once.
        pipe.cmd("EXISTS").arg(&key);
        pipe.add_command(hset).ignore();
        if !gone.is_empty() {
            pipe.add_command(hdel).ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(millis(self.expiry))
            .ignore();
        let body = Body::Changes {
            seq: self.seq,
            here,
            gone,
        };
        pipe.cmd("PUBLISH")
            .arg(&self.channel)
            .arg(self.encode(body))
            .ignore();
        let (existed,): (bool,) = pipe.query_async(conn).await?;
        self.metrics.presence_published();
        if !existed {
            tracing::warn!("this node's presence was gone from Redis; writing it again");
            return self.rewrite(conn).await;
        }
        Ok(())
    }

    /// The heartbeat: renews this node's hash and tells the others it is alive. If the
    /// hash is gone (it expired while this node was slow, or Redis lost it), writes it
    /// again.
    pub(super) async fn beat(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        // A hash without its expiry is not one this node wrote whole.
        let exists: bool = redis::cmd("HEXISTS")
            .arg(self.hash(&self.node))
            .arg("expiry")
            .query_async(conn)
            .await?;
        if !exists {
            tracing::warn!("this node's presence was gone from Redis; writing it again");
            return self.rewrite(conn).await;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.renew(&mut pipe);
        pipe.cmd("PUBLISH")
            .arg(&self.channel)
            .arg(self.alive())
            .ignore();
        pipe.query_async::<()>(conn).await
    }

    /// The node is stopping: its users are gone from it at once, not after the expiry.
    pub(super) async fn bye(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("DEL").arg(self.hash(&self.node)).ignore();
        pipe.cmd("ZREM")
            .arg(&self.nodes_key)
            .arg(self.node.as_str())
            .ignore();
        pipe.cmd("PUBLISH")
            .arg(&self.channel)
            .arg(self.encode(Body::Left {}))
            .ignore();
        pipe.query_async::<()>(conn).await
    }

    /// A payload on the presence channel.
    pub(super) async fn received(
        &mut self,
        conn: &mut MultiplexedConnection,
        payload: &[u8],
    ) -> redis::RedisResult<()> {
        let (node, heard) = match decode(payload) {
            Ok(decoded) => decoded,
            Err(why) => {
                self.malformed(&why);
                return Ok(());
            }
        };
        if node == self.node {
            return Ok(());
        }
        if self.hub.hear(heard) == Err(Gap) {
            self.read(conn, node).await?;
        }
        Ok(())
    }

    /// Reads one node's whole presence after a gap; a node whose hash is gone has left.
    async fn read(
        &mut self,
        conn: &mut MultiplexedConnection,
        node: NodeId,
    ) -> redis::RedisResult<()> {
        let hash: Value = redis::cmd("HGETALL")
            .arg(self.hash(&node))
            .query_async(conn)
            .await?;
        self.metrics.presence_read(1);
        let heard = match self.whole(node.clone(), &hash) {
            Some(whole) => Heard::Whole(whole),
            None => Heard::Left { node },
        };
        let _ = self.hub.hear(heard);
        Ok(())
    }

    /// `node`'s hash as its whole presence; `None` when it is empty (gone) or lacks a valid
    /// report number or expiry. Fields that do not parse are skipped and counted.
    fn whole(&self, node: NodeId, hash: &Value) -> Option<NodePresence> {
        let pairs = pairs(hash);
        if pairs.is_empty() {
            return None;
        }
        let mut seq = None;
        let mut expiry = None;
        let mut seats = Vec::with_capacity(pairs.len());
        let mut bad = 0;
        for (field, value) in pairs {
            match field {
                "seq" => seq = value.parse::<u64>().ok(),
                "expiry" => expiry = value.parse::<u64>().ok().and_then(|ms| expiry_of(ms).ok()),
                _ => match parse_field(field, value) {
                    Some(seat) => seats.push(seat),
                    None => bad += 1,
                },
            }
        }
        if bad > 0 {
            self.malformed(&format!("{bad} presence entries that do not parse"));
        }
        match (seq, expiry) {
            (Some(seq), Some(expiry)) => Some(NodePresence {
                node,
                seq,
                expiry,
                seats,
            }),
            _ => {
                self.malformed("a node's presence without a valid report number and expiry");
                None
            }
        }
    }

    fn alive(&self) -> Vec<u8> {
        self.encode(Body::Alive {
            seq: self.seq,
            expiry_ms: u64::try_from(self.expiry.as_millis()).unwrap_or(u64::MAX),
        })
    }

    fn encode(&self, body: Body) -> Vec<u8> {
        let wire = Wire {
            v: 1,
            node: self.node.as_str().to_owned(),
            body,
        };
        // Plain strings and numbers: serializing cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    fn malformed(&self, why: &str) {
        self.metrics.broker_malformed();
        tracing::warn!(%why, "ignored presence from Redis that is not what a node writes");
    }
}

/// A message on the presence channel: version 1.
#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    node: String,
    #[serde(flatten)]
    body: Body,
}

/// Rooms, user ids and names as strings: `[room, user, name]`, `[room, user]`, `[user, name]`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Body {
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
}

fn wire_seat(seat: &Seat) -> (String, String, String) {
    (
        seat.room.as_str().to_owned(),
        seat.user.as_str().to_owned(),
        seat.name.as_str().to_owned(),
    )
}

/// Reads a message from the presence channel, checking every value.
fn decode(payload: &[u8]) -> Result<(NodeId, Heard), String> {
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
    };
    Ok((node, heard))
}

/// A node's expiry, in the range `--presence-expiry` allows.
fn expiry_of(ms: u64) -> Result<Duration, String> {
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
fn field(room: &RoomName, user: &UserId) -> String {
    format!("{room} {}", user.as_str())
}

fn parse_field(field: &str, value: &str) -> Option<Seat> {
    let (room, user) = field.split_once(' ')?;
    seat(room, user, value).ok()
}

/// The field/value pairs of a hash as Redis sent it (a RESP3 map, or a flat array); pairs
/// that are not text are left out.
fn pairs(value: &Value) -> Vec<(&str, &str)> {
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

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

fn unix_millis() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> PresenceLink {
        PresenceLink::new(
            "test",
            Duration::from_secs(30),
            Hub::new(crate::hub::HubSettings::default()),
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn every_kind_round_trips() {
        let link = link();
        let alice = UserId::generate();
        let general = RoomName::general();
        let cases = [
            (
                Body::Alive {
                    seq: 3,
                    expiry_ms: 2500,
                },
                Heard::Alive {
                    node: link.node.clone(),
                    seq: 3,
                    expiry: Duration::from_millis(2500),
                },
            ),
            (
                Body::Changes {
                    seq: 4,
                    here: vec![("general".into(), alice.as_str().into(), "alice <b>".into())],
                    gone: vec![("general".into(), alice.as_str().into())],
                },
                Heard::Changes {
                    node: link.node.clone(),
                    seq: 4,
                    changes: vec![
                        Change::Here(Seat {
                            room: general.clone(),
                            user: alice.clone(),
                            name: DisplayName::parse("alice <b>").unwrap(),
                        }),
                        Change::Gone {
                            room: general.clone(),
                            user: alice.clone(),
                        },
                    ],
                },
            ),
            (
                Body::Left {},
                Heard::Left {
                    node: link.node.clone(),
                },
            ),
            (
                Body::Renamed {
                    users: vec![(alice.as_str().into(), "al".into())],
                },
                Heard::Renamed(vec![(alice.clone(), DisplayName::parse("al").unwrap())]),
            ),
        ];
        for (body, heard) in cases {
            let (node, decoded) = decode(&link.encode(body)).unwrap();
            assert_eq!(node, link.node);
            assert_eq!(decoded, heard);
        }
    }

    #[test]
    fn broken_or_hostile_reports_are_refused_not_panics() {
        let link = link();
        let alice = UserId::generate();
        let good = String::from_utf8(link.encode(Body::Typing {
            seats: vec![("general".into(), alice.as_str().into(), "alice".into())],
        }))
        .unwrap();
        assert!(decode(good.as_bytes()).is_ok(), "{good}");
        let node = link.node.as_str();
        let cases = [
            String::new(),
            "null".to_owned(),
            "[]".to_owned(),
            good.replace(r#""v":1"#, r#""v":2"#),
            good.replace(node, "../../etc"),
            good.replace(r#""kind":"typing""#, r#""kind":"shout""#),
            good.replace(r#""general""#, r#""General""#),
            good.replace(r#""general""#, r#""a b""#),
            good.replace(alice.as_str(), "not-a-user"),
            good.replace(r#""alice""#, r#""""#),
            good.replace(r#""alice""#, r#"" alice""#),
            good.replace(r#""alice""#, r#""ali\u202ece""#),
            good.replace(r#""alice""#, &format!("\"{}\"", "x".repeat(33))),
            format!(r#"{{"v":1,"node":"{node}","kind":"changes","seq":-1,"here":[],"gone":[]}}"#),
            format!(
                r#"{{"v":1,"node":"{node}","kind":"changes","seq":1,"here":[["general"]],"gone":[]}}"#
            ),
            format!(r#"{{"v":1,"node":"{node}","kind":"alive"}}"#),
        ];
        for payload in cases {
            assert!(decode(payload.as_bytes()).is_err(), "{payload}");
        }
        assert!(decode(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn a_hash_is_read_as_a_node_writes_it_and_bad_fields_are_skipped() {
        let link = link();
        let node = NodeId::generate();
        let alice = UserId::generate();
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let good = [
            (bulk("seq"), bulk("12")),
            (bulk("expiry"), bulk("30000")),
            (bulk(&format!("general {}", alice.as_str())), bulk("alice")),
        ];
        let mut entries = good.to_vec();
        entries.extend([
            (bulk("general"), bulk("no user")),
            (bulk(&format!("General {}", alice.as_str())), bulk("alice")),
            (bulk(&format!("design {}", alice.as_str())), bulk("")),
            (Value::BulkString(vec![0xff]), bulk("x")),
        ]);
        let whole = link.whole(node.clone(), &Value::Map(entries)).unwrap();
        assert_eq!(
            whole,
            NodePresence {
                node: node.clone(),
                seq: 12,
                expiry: Duration::from_secs(30),
                seats: vec![Seat {
                    room: RoomName::general(),
                    user: alice.clone(),
                    name: DisplayName::parse("alice").unwrap(),
                }],
            }
        );
        // Three bad fields (the one that is not text is not even a pair), counted once.
        assert!(
            link.metrics
                .encode()
                .contains("hubbub_broker_payloads_malformed_total 1")
        );

        assert_eq!(
            link.whole(node.clone(), &Value::Map(Vec::new())),
            None,
            "gone"
        );
        // The same as a flat array (RESP2), and without its number or with a bad expiry.
        let flat: Vec<Value> = good
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect();
        assert!(
            link.whole(node.clone(), &Value::Array(flat.clone()))
                .is_some()
        );
        assert_eq!(
            link.whole(node.clone(), &Value::Array(flat[2..].to_vec())),
            None
        );
        let mut short = flat;
        short[3] = bulk("10");
        assert_eq!(link.whole(node, &Value::Array(short)), None, "10 ms");
    }
}
