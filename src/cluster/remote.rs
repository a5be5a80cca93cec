//! What the other nodes reported: per node, its users in each room and the number of its
//! last report; per room, the union over the nodes, which the hub merges with its own
//! members. Reports apply in order, once; one that does not follow is a [`Gap`].

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::{Change, Gap, MAX_NODES, MAX_SEATS_PER_NODE, NodeId, NodePresence, Seat};
use crate::domain::{DisplayName, RoomName, UserId};

/// A user present in a room on at least one other node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elsewhere {
    /// The name of the latest report that placed them here.
    pub name: DisplayName,
    /// On how many other nodes.
    nodes: u32,
}

/// What the other nodes reported, per node and per room.
#[derive(Debug, Default)]
pub struct Remote {
    nodes: HashMap<NodeId, Node>,
    /// The union over `nodes`, per room: what presence and the room list merge in.
    rooms: HashMap<RoomName, HashMap<UserId, Elsewhere>>,
}

#[derive(Debug)]
struct Node {
    seq: u64,
    heard: Instant,
    expiry: Duration,
    rooms: HashMap<RoomName, HashMap<UserId, DisplayName>>,
    seats: usize,
    /// Whether the cap on its seats was logged already.
    capped: bool,
}

impl Remote {
    /// The users other nodes have in `room`.
    pub fn room(&self, room: &RoomName) -> Option<&HashMap<UserId, Elsewhere>> {
        self.rooms.get(room)
    }

    /// Rooms someone is in on another node.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomName> {
        self.rooms.keys()
    }

    /// How many other nodes are known.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Replaces what is known of a node with its whole presence. An older report than the
    /// one known is ignored (a read that lost a race with a newer one).
    pub fn replace(&mut self, whole: NodePresence, now: Instant, touched: &mut BTreeSet<RoomName>) {
        let NodePresence {
            node,
            seq,
            expiry,
            seats,
        } = whole;
        if self.nodes.get(&node).is_some_and(|known| known.seq > seq) {
            return;
        }
        if !self.nodes.contains_key(&node) && self.nodes.len() >= MAX_NODES {
            tracing::warn!(
                limit = MAX_NODES,
                "more nodes report presence than a cluster has; ignoring the newcomer"
            );
            return;
        }
        self.forget(&node, touched);
        let mut fresh = Node {
            seq,
            heard: now,
            expiry,
            rooms: HashMap::new(),
            seats: 0,
            capped: false,
        };
        for seat in seats {
            self.seat(&mut fresh, seat, touched);
        }
        self.nodes.insert(node, fresh);
    }

    /// Replaces everything with `all`: nodes not in it are forgotten.
    pub fn replace_all(
        &mut self,
        all: Vec<NodePresence>,
        now: Instant,
        touched: &mut BTreeSet<RoomName>,
    ) {
        let listed: BTreeSet<&NodeId> = all.iter().map(|whole| &whole.node).collect();
        let gone: Vec<NodeId> = self
            .nodes
            .keys()
            .filter(|node| !listed.contains(node))
            .cloned()
            .collect();
        for node in gone {
            self.forget(&node, touched);
        }
        for whole in all {
            // A fresh read of everything: even a node known at a later report is replaced,
            // since this node may have been cut off while that report was superseded.
            self.forget(&whole.node, touched);
            self.replace(whole, now, touched);
        }
    }

    /// Applies report `seq` of `node`. Reports already applied are ignored; one that does
    /// not follow on the last (or comes from a node not known here) is a [`Gap`].
    pub fn apply(
        &mut self,
        node: &NodeId,
        seq: u64,
        changes: Vec<Change>,
        now: Instant,
        touched: &mut BTreeSet<RoomName>,
    ) -> Result<(), Gap> {
        let Some(mut known) = self.nodes.remove(node) else {
            return Err(Gap);
        };
        known.heard = now;
        let result = if seq <= known.seq {
            Ok(())
        } else if seq == known.seq + 1 {
            known.seq = seq;
            for change in changes {
                match change {
                    Change::Here(seat) => self.seat(&mut known, seat, touched),
                    Change::Gone { room, user } => self.unseat(&mut known, &room, &user, touched),
                }
            }
            Ok(())
        } else {
            Err(Gap)
        };
        self.nodes.insert(node.clone(), known);
        result
    }

    /// `node` is alive at report `seq`, to be forgotten `expiry` from now: a [`Gap`] when
    /// `seq` is a report not applied here.
    pub fn alive(
        &mut self,
        node: &NodeId,
        seq: u64,
        expiry: Duration,
        now: Instant,
    ) -> Result<(), Gap> {
        let known = self.nodes.get_mut(node).ok_or(Gap)?;
        known.heard = now;
        known.expiry = expiry;
        if seq > known.seq { Err(Gap) } else { Ok(()) }
    }

    /// Forgets `node` and its users.
    pub fn forget(&mut self, node: &NodeId, touched: &mut BTreeSet<RoomName>) {
        let Some(mut known) = self.nodes.remove(node) else {
            return;
        };
        let seats: Vec<(RoomName, UserId)> = known
            .rooms
            .iter()
            .flat_map(|(room, users)| users.keys().map(move |user| (room.clone(), user.clone())))
            .collect();
        for (room, user) in seats {
            self.unseat(&mut known, &room, &user, touched);
        }
    }

    /// Forgets every node not heard from for its expiry; returns how many.
    pub fn expire(&mut self, now: Instant, touched: &mut BTreeSet<RoomName>) -> usize {
        let quiet: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, known)| now.saturating_duration_since(known.heard) >= known.expiry)
            .map(|(node, _)| node.clone())
            .collect();
        for node in &quiet {
            self.forget(node, touched);
        }
        quiet.len()
    }

    /// Places `seat` on `node` (a new user there, or a new name).
    fn seat(&mut self, node: &mut Node, seat: Seat, touched: &mut BTreeSet<RoomName>) {
        let Seat { room, user, name } = seat;
        let users = node.rooms.entry(room.clone()).or_default();
        let is_new = !users.contains_key(&user);
        if is_new && node.seats >= MAX_SEATS_PER_NODE {
            if !std::mem::replace(&mut node.capped, true) {
                tracing::warn!(
                    limit = MAX_SEATS_PER_NODE,
                    "another node reported more users than any node holds; ignoring the rest"
                );
            }
            if users.is_empty() {
                node.rooms.remove(&room);
            }
            return;
        }
        if users.get(&user) == Some(&name) {
            return;
        }
        users.insert(user.clone(), name.clone());
        if is_new {
            node.seats += 1;
        }
        let union = self.rooms.entry(room.clone()).or_default();
        match union.get_mut(&user) {
            Some(elsewhere) => {
                elsewhere.name = name;
                if is_new {
                    elsewhere.nodes += 1;
                }
            }
            None => {
                union.insert(user, Elsewhere { name, nodes: 1 });
            }
        }
        touched.insert(room);
    }

    /// Takes `user` out of `room` on `node`.
    fn unseat(
        &mut self,
        node: &mut Node,
        room: &RoomName,
        user: &UserId,
        touched: &mut BTreeSet<RoomName>,
    ) {
        let Some(users) = node.rooms.get_mut(room) else {
            return;
        };
        if users.remove(user).is_none() {
            return;
        }
        node.seats -= 1;
        if users.is_empty() {
            node.rooms.remove(room);
        }
        if let Some(union) = self.rooms.get_mut(room) {
            if let Some(elsewhere) = union.get_mut(user) {
                elsewhere.nodes -= 1;
                if elsewhere.nodes == 0 {
                    union.remove(user);
                } else if let Some(name) = self
                    .nodes
                    .values()
                    .find_map(|other| other.rooms.get(room)?.get(user))
                {
                    // Still on another node (`node` is out of `self.nodes` while it
                    // changes): show the name that node has, which may not be the one
                    // the node letting go of them reported.
                    elsewhere.name = name.clone();
                }
            }
            if union.is_empty() {
                self.rooms.remove(room);
            }
        }
        touched.insert(room.clone());
    }
}
