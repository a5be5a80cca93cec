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

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{DisplayName, RoomName, UserId, hex, is_lower_hex};

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
}

/// A node's report does not follow on what is known of it (a report was lost, or the node
/// is new here): read its whole presence and hand it over as [`Heard::Whole`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap;

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

/// What this node last told the others about its own users, room by room.
#[derive(Debug, Default)]
pub struct Published {
    rooms: HashMap<RoomName, HashMap<UserId, DisplayName>>,
}

impl Published {
    /// Everything was just told afresh: these are the seats the others know of now.
    pub fn reset(&mut self, seats: &[Seat]) {
        self.rooms.clear();
        for seat in seats {
            self.rooms
                .entry(seat.room.clone())
                .or_default()
                .insert(seat.user.clone(), seat.name.clone());
        }
    }

    /// `room` now holds `users`: the changes to tell the others, which from now on count as
    /// told.
    pub fn diff(&mut self, room: &RoomName, users: Vec<(UserId, DisplayName)>) -> Vec<Change> {
        let before = self.rooms.remove(room).unwrap_or_default();
        let mut changes = Vec::new();
        let mut now: HashMap<UserId, DisplayName> = HashMap::with_capacity(users.len());
        for (user, name) in users {
            if before.get(&user) != Some(&name) {
                changes.push(Change::Here(Seat {
                    room: room.clone(),
                    user: user.clone(),
                    name: name.clone(),
                }));
            }
            now.insert(user, name);
        }
        let mut gone: Vec<UserId> = before
            .into_keys()
            .filter(|user| !now.contains_key(user))
            .collect();
        gone.sort_unstable();
        changes.extend(gone.into_iter().map(|user| Change::Gone {
            room: room.clone(),
            user,
        }));
        if !now.is_empty() {
            self.rooms.insert(room.clone(), now);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn name(n: &str) -> DisplayName {
        DisplayName::parse(n).unwrap()
    }

    fn seat(r: &str, user: &UserId, n: &str) -> Seat {
        Seat {
            room: room(r),
            user: user.clone(),
            name: name(n),
        }
    }

    const EXPIRY: Duration = Duration::from_secs(30);

    fn whole(node: &NodeId, seq: u64, seats: Vec<Seat>) -> NodePresence {
        NodePresence {
            node: node.clone(),
            seq,
            expiry: EXPIRY,
            seats,
        }
    }

    fn names_in(remote: &Remote, r: &str) -> Vec<String> {
        let mut names: Vec<String> = remote
            .room(&room(r))
            .map(|users| users.values().map(|e| e.name.to_string()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn node_ids_are_sixteen_hex_digits_and_parse_back() {
        let id = NodeId::generate();
        assert_eq!(NodeId::parse(id.as_str()), Some(id.clone()));
        assert_ne!(NodeId::generate(), id);
        for bad in [
            "",
            "0123456789abcdeF",
            "0123456789abcde",
            "0123456789abcdef0",
            "../x",
        ] {
            assert_eq!(NodeId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_union_counts_a_user_on_two_nodes_once_and_keeps_them_until_both_let_go() {
        let now = Instant::now();
        let (a, b) = (NodeId::generate(), NodeId::generate());
        let (alice, bob) = (UserId::generate(), UserId::generate());
        let mut remote = Remote::default();
        let mut touched = BTreeSet::new();
        remote.replace(
            whole(&a, 1, vec![seat("general", &alice, "alice")]),
            now,
            &mut touched,
        );
        remote.replace(
            whole(
                &b,
                7,
                vec![
                    seat("general", &alice, "alice"),
                    seat("design", &bob, "bob"),
                ],
            ),
            now,
            &mut touched,
        );
        assert_eq!(touched, BTreeSet::from([room("general"), room("design")]));
        assert_eq!(names_in(&remote, "general"), ["alice"]);

        touched.clear();
        let gone = Change::Gone {
            room: room("general"),
            user: alice.clone(),
        };
        remote
            .apply(&a, 2, vec![gone.clone()], now, &mut touched)
            .unwrap();
        assert_eq!(names_in(&remote, "general"), ["alice"], "still on b");
        remote.apply(&b, 8, vec![gone], now, &mut touched).unwrap();
        assert_eq!(names_in(&remote, "general"), Vec::<String>::new());
        assert_eq!(remote.rooms().collect::<Vec<_>>(), [&room("design")]);
        assert_eq!(remote.nodes(), 2);
    }

    #[test]
    fn reports_apply_in_order_once_and_a_missing_one_is_a_gap() {
        let now = Instant::now();
        let a = NodeId::generate();
        let alice = UserId::generate();
        let mut remote = Remote::default();
        let mut touched = BTreeSet::new();
        let here = |n: &str| vec![Change::Here(seat("general", &alice, n))];

        assert_eq!(
            remote.apply(&a, 1, here("alice"), now, &mut touched),
            Err(Gap),
            "unknown"
        );
        assert_eq!(remote.alive(&a, 1, EXPIRY, now), Err(Gap));
        remote.replace(whole(&a, 3, Vec::new()), now, &mut touched);
        assert_eq!(remote.apply(&a, 3, here("old"), now, &mut touched), Ok(()));
        assert!(
            remote.room(&room("general")).is_none(),
            "report 3 is in the whole"
        );
        remote
            .apply(&a, 4, here("alice"), now, &mut touched)
            .unwrap();
        remote
            .apply(&a, 5, here("alice2"), now, &mut touched)
            .unwrap();
        assert_eq!(names_in(&remote, "general"), ["alice2"], "a rename");
        assert_eq!(remote.apply(&a, 7, here("x"), now, &mut touched), Err(Gap));
        assert_eq!(
            names_in(&remote, "general"),
            ["alice2"],
            "a gap changes nothing"
        );
        assert_eq!(remote.alive(&a, 5, EXPIRY, now), Ok(()));
        assert_eq!(remote.alive(&a, 6, EXPIRY, now), Err(Gap));

        // The whole, read after the gap, replaces it; an older whole is ignored.
        remote.replace(
            whole(&a, 7, vec![seat("design", &alice, "al")]),
            now,
            &mut touched,
        );
        assert_eq!(names_in(&remote, "general"), Vec::<String>::new());
        assert_eq!(names_in(&remote, "design"), ["al"]);
        remote.replace(whole(&a, 6, Vec::new()), now, &mut touched);
        assert_eq!(names_in(&remote, "design"), ["al"]);
    }

    #[test]
    fn silent_nodes_expire_and_replacing_everyone_forgets_the_unlisted() {
        let start = Instant::now();
        let (a, b) = (NodeId::generate(), NodeId::generate());
        let (alice, bob) = (UserId::generate(), UserId::generate());
        let mut remote = Remote::default();
        let mut touched = BTreeSet::new();
        remote.replace(
            whole(&a, 1, vec![seat("general", &alice, "alice")]),
            start,
            &mut touched,
        );
        remote.replace(
            whole(&b, 1, vec![seat("general", &bob, "bob")]),
            start,
            &mut touched,
        );
        let later = start + Duration::from_secs(20);
        remote.alive(&b, 1, EXPIRY, later).unwrap();
        assert_eq!(
            remote.expire(start + Duration::from_secs(29), &mut touched),
            0
        );
        touched.clear();
        assert_eq!(
            remote.expire(start + Duration::from_secs(30), &mut touched),
            1
        );
        assert_eq!(touched, BTreeSet::from([room("general")]));
        assert_eq!(names_in(&remote, "general"), ["bob"]);

        remote.replace(
            whole(&a, 1, vec![seat("general", &alice, "alice")]),
            later,
            &mut touched,
        );
        remote.replace_all(vec![whole(&a, 2, Vec::new())], later, &mut touched);
        assert_eq!(remote.nodes(), 1);
        assert!(remote.room(&room("general")).is_none());
    }

    #[test]
    fn a_user_on_two_nodes_under_two_names_keeps_the_name_of_the_node_that_still_has_them() {
        let now = Instant::now();
        let (a, b) = (NodeId::generate(), NodeId::generate());
        let alice = UserId::generate();
        let mut remote = Remote::default();
        let mut touched = BTreeSet::new();
        remote.replace(
            whole(&a, 1, vec![seat("general", &alice, "alice")]),
            now,
            &mut touched,
        );
        remote.replace(
            whole(&b, 1, vec![seat("general", &alice, "al")]),
            now,
            &mut touched,
        );
        assert_eq!(names_in(&remote, "general"), ["al"], "the latest report's");
        let gone = Change::Gone {
            room: room("general"),
            user: alice.clone(),
        };
        remote.apply(&b, 2, vec![gone], now, &mut touched).unwrap();
        assert_eq!(
            names_in(&remote, "general"),
            ["alice"],
            "a's, which still has her"
        );
    }

    #[test]
    fn no_more_nodes_than_the_cap_are_kept() {
        let now = Instant::now();
        let mut remote = Remote::default();
        let mut touched = BTreeSet::new();
        for _ in 0..MAX_NODES + 3 {
            let node = NodeId::generate();
            remote.replace(whole(&node, 1, Vec::new()), now, &mut touched);
        }
        assert_eq!(remote.nodes(), MAX_NODES);
    }

    #[test]
    fn a_node_cannot_report_more_users_than_the_cap() {
        let now = Instant::now();
        let a = NodeId::generate();
        let mut remote = Remote::default();
        let mut touched = BTreeSet::new();
        let seats: Vec<Seat> = (0..MAX_SEATS_PER_NODE + 5)
            .map(|_| seat("general", &UserId::generate(), "x"))
            .collect();
        let first = seats[0].clone();
        remote.replace(whole(&a, 1, seats), now, &mut touched);
        assert_eq!(
            remote.room(&room("general")).unwrap().len(),
            MAX_SEATS_PER_NODE
        );
        // Leaving makes room again.
        let gone = Change::Gone {
            room: first.room.clone(),
            user: first.user.clone(),
        };
        let newcomer = seat("design", &UserId::generate(), "new");
        remote
            .apply(&a, 2, vec![gone, Change::Here(newcomer)], now, &mut touched)
            .unwrap();
        assert_eq!(names_in(&remote, "design"), ["new"]);
    }

    #[test]
    fn published_sends_only_the_difference() {
        let (alice, bob, carol) = (UserId::generate(), UserId::generate(), UserId::generate());
        let general = room("general");
        let mut told = Published::default();
        told.reset(&[
            seat("general", &alice, "alice"),
            seat("general", &bob, "bob"),
        ]);

        let changes = told.diff(
            &general,
            vec![
                (alice.clone(), name("alice")),
                (bob.clone(), name("robert")),
                (carol.clone(), name("carol")),
            ],
        );
        assert_eq!(changes.len(), 2);
        assert!(changes.contains(&Change::Here(seat("general", &bob, "robert"))));
        assert!(changes.contains(&Change::Here(seat("general", &carol, "carol"))));

        assert_eq!(
            told.diff(&general, vec![(carol.clone(), name("carol"))])
                .len(),
            2
        );
        assert_eq!(
            told.diff(&general, Vec::new()),
            [Change::Gone {
                room: general.clone(),
                user: carol
            }]
        );
        assert!(told.diff(&general, Vec::new()).is_empty());
    }
}
