//! Who is here on the other nodes, and what this node last told them about its own users.
//!
//! With several nodes a room's presence is the union of every node's users in it. Each node
//! tells the others about its own users only (the broker carries that: `crate::broker`) and
//! keeps what the others told it in a [`Remote`]: per node, the users it reported in each
//! room and the number of its last report; per room, the union over the other nodes, which
//! the hub merges with its own members when it renders presence and the room list.
//!
//! Reports are numbered per node, so a lost one shows: a change report that does not follow
//! on the last one heard is a [`Gap`], and the broker then reads that node's whole presence
//! (which it keeps in Redis) and replaces what is here. A node not heard from for the expiry
//! (it sends a heartbeat well within it) is forgotten, so a crashed node's users leave
//! within a bounded time, and a restarted node is a new node.
//!
//! [`Published`] is the other side: what this node last told the others, so that a change
//! in a room is sent as the difference (who came, who went, who was renamed), not the room.
//!
//! No I/O: the hub holds a [`Remote`] under its lock, the broker's link owns a
//! [`Published`].
//!
//! Named for the cluster, not for presence: a room's own presence (who is in it on this
//! node, rendered) is `hub/presence.rs`.
//!
//! - `mod.rs`: what nodes say to each other: node ids, seats, changes, reports.
//! - `remote.rs`: [`Remote`], what the other nodes reported, and its union per room.
//! - `published.rs`: [`Published`], what this node last told them.

mod published;
mod remote;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use crate::domain::{DisplayName, RoomName, SignOut, UserId, hex, is_lower_hex};

pub use self::published::Published;
pub use self::remote::{Elsewhere, Remote};

/// The most users one other node may report; the rest are ignored (and logged). Far more
/// than the connections one node holds (`--max-connections`), so it only stops a broken
/// or hostile peer from filling this node's memory.
pub const MAX_SEATS_PER_NODE: usize = 200_000;

/// The most other nodes known at once; reports from more are ignored (and logged). A
/// cluster is a handful of nodes; this only bounds what a broken peer could make of it.
pub const MAX_NODES: usize = 1024;

/// One node, for as long as its process runs: a restarted node is a new node, so what a
/// crashed one reported can never be mistaken for what its successor reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// 64 random bits as 16 lower-case hex digits.
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            // Unique enough to tell nodes apart; nothing is secret about a node's id.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos());
            bytes = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
        }
        Self(hex(&bytes))
    }

    /// Accepts exactly what [`NodeId::generate`] makes.
    pub fn parse(raw: &str) -> Option<Self> {
        is_lower_hex(raw, 16).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One user present in one room, under the name they have there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub room: RoomName,
    pub user: UserId,
    pub name: DisplayName,
}

/// A room and everyone in it on this node (user and name): what the hub hands the broker
/// when the room's presence changed.
pub type RoomHere = (RoomName, Vec<(UserId, DisplayName)>);

/// One change in what a node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The user is in the room under this name (new, or renamed).
    Here(Seat),
    /// The user is no longer in the room on that node.
    Gone { room: RoomName, user: UserId },
}

/// The shortest and longest expiry a node may ask for (as `--presence-expiry` allows).
pub use crate::config::PRESENCE_EXPIRY_RANGE as EXPIRY_RANGE;

/// One node's whole presence, as it keeps it in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePresence {
    pub node: NodeId,
    /// The number of its last report.
    pub seq: u64,
    /// How long after its last heartbeat it is to be forgotten: its own
    /// `--presence-expiry`, since it sends its heartbeats by it.
    pub expiry: Duration,
    pub seats: Vec<Seat>,
}

/// What the broker heard about other nodes, for [`crate::hub::Hub::hear`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A node's whole presence, replacing whatever was known of it.
    Whole(NodePresence),
    /// Every other node's whole presence (read after this node (re)subscribed): a node not
    /// listed is forgotten.
    Everyone(Vec<NodePresence>),
    /// Report `seq`: the changes since report `seq - 1`.
    Changes {
        node: NodeId,
        seq: u64,
        changes: Vec<Change>,
    },
    /// The node is alive, its last report is `seq` and it is to be forgotten `expiry`
    /// after this (a heartbeat, or "I have just replaced my whole presence: read it").
    Alive {
        node: NodeId,
        seq: u64,
        expiry: Duration,
    },
    /// The node is stopping: its users are gone from it.
    Left { node: NodeId },
    /// Users typing on another node.
    Typing(Vec<Seat>),
    /// Users who took a new name on another node (their sessions here post under it too).
    Renamed(Vec<(UserId, DisplayName)>),
    /// Rooms read on another node.
    Read(Vec<Read>),
    /// Sessions signed out on another node: their sockets here close.
    SignedOut(Vec<SignOut>),
}

/// A user read a room on some node: their pages on the others hear how much of it is
/// unread for them now (the others may not have the room in memory to count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub user: UserId,
    pub room: RoomName,
    pub unread: u32,
    /// How many of the unread mention them.
    pub mentions: u32,
}

/// A node's report does not follow on what is known of it (a report was lost, or the node
/// is new here): read its whole presence and hand it over as [`Heard::Whole`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap;
