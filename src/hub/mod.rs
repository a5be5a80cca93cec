//! This node's rooms and who is in them; the fan-out of rendered frames.
//!
//! The hub is the seed design's hub without its goroutine, and without one lock for all:
//!
//! - [`directory`]: the rooms by name, behind a short lock (look up, create, drop, list).
//! - [`room`]: each room behind a lock of its own: its members, its newest messages
//!   (rendered, for newcomers), its presence ([`presence`]) and typists ([`typing`]).
//! - [`fanout`]: how a room's frames reach its members' sockets, in one order: at once for
//!   a small room, through the room's queue and a drainer task for a big one, so one big
//!   room's fan-out never holds up another room.
//! - [`drainer`]: the task that writes a big room's queue, and the commit writer's wait for
//!   a room too far behind.
//! - [`room_list`]: the room list with online counts, rendered once per change.
//! - [`nodes`]: what the hub keeps for and from the other nodes (shared presence), and
//!   [`cluster`]: the broker's way in and out of it.
//! - [`upkeep`]: the periodic tick: typing expiry, paced presence and room-list updates.
//! - [`keep_alive`]: one task that pings every member and ends those gone silent.
//! - [`activity`]: each room's message counter, for unread counts on pages elsewhere.
//! - [`readers`]: what a reader hears of other rooms: counts, reads elsewhere, mentions.
//! - [`bans`]: who may no longer post, re-read from the store every couple of seconds.
//! - [`sign_ins`]: the sockets of signed-in browsers, closed when their session is
//!   signed out (here or on another node).
//!
//! Locks are std `Mutex`es held for short synchronous sections, never across `.await`, and
//! always taken in one order: the directory, then a room, then the other nodes' state; an
//! outlet's (a connection's write side) innermost of all. No socket is written under the
//! directory's lock or the nodes' lock; under a room's lock only rooms of at most
//! [`fanout::INLINE_MEMBERS`] members are written to.
//!
//! A room's invariants: its members see its messages in commit order (deliveries come from
//! one task, the commit writer, and a room sends its frames in order); a newcomer's history
//! snapshot and its live feed meet with no gap and no overlap (the snapshot is taken under
//! the room's lock, with the queueing); a member that falls behind is evicted, never waited
//! for. A room's history is a cache of the store's newest messages, loaded by the commit
//! writer between deliveries, so a connect never costs a query.

mod activity;
mod bans;
mod cluster;
mod directory;
mod drainer;
mod fanout;
mod keep_alive;
mod nodes;
mod presence;
mod readers;
mod room;
mod room_list;
mod sign_ins;
mod typing;
mod upkeep;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use self::activity::Activity;
pub use self::activity::Counters;
pub use self::bans::{BAN_REFRESH, refresh_bans};
use self::directory::Directory;
use self::nodes::Nodes;
pub use self::nodes::Signals;
use self::room::{Effects, Joining, Room};
use self::room_list::RoomList;
use crate::domain::{ChatMessage, DisplayName, RoomName, UserId};
use crate::metrics::Metrics;
use crate::outlet::{Ending, Outlet};
use crate::render::{self, RoomCount};

/// Identifies one connection for as long as it is in the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(u64);

/// How the hub behaves; from the configuration.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Messages kept per room for newcomers.
    pub history_limit: usize,
    /// Frames a session may have waiting before it is evicted.
    pub send_queue: usize,
    /// Rooms kept in memory once nobody is in them (their history is in the store).
    pub idle_rooms: usize,
    /// A user's typing is announced at most this often.
    pub typing_throttle: Duration,
    /// "… is typing" disappears this long after the last keystroke.
    pub typing_expiry: Duration,
    /// Whether "alice joined" / "alice left" appear in the message log.
    pub presence_notices: bool,
    /// Whether other nodes share presence (a remote broker): the hub then keeps what it
    /// has to tell them ([`Hub::take_presence`]) and merges what they report ([`Hub::hear`]).
    pub share_presence: bool,
    /// Tasks that may write one big room's frame at once (each a part of its members, at
    /// least 2,048): the cores a fan-out may use. 1 (the default) writes every frame from
    /// one task.
    pub fanout_parts: usize,
    /// How long a big room rests after each frame, on top of the time the frame took,
    /// before its next (the commit window): what is committed meanwhile goes out in one
    /// frame. A room that is always fanning out thus spends at most half the time doing
    /// it, and the bigger it is, the more messages each frame carries: when the commit
    /// writer fanned out itself, it batched the same way, but made every room wait.
    /// Zero (tests) means no rest.
    pub fanout_rest: Duration,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            history_limit: 50,
            send_queue: 256,
            idle_rooms: 1000,
            typing_throttle: Duration::from_secs(2),
            typing_expiry: Duration::from_secs(5),
            presence_notices: false,
            share_presence: false,
            fanout_parts: 1,
            fanout_rest: Duration::from_millis(5),
        }
    }
}

/// The node's rooms. Cheap to clone: a handle to shared state.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    settings: HubSettings,
    directory: Mutex<Directory>,
    room_list: RoomList,
    /// Each room's message counter, for unread counts on pages elsewhere.
    activity: Activity,
    /// Who may no longer post.
    bans: bans::Bans,
    /// The sockets of signed-in browsers, by session, for closing them on sign-out.
    sign_ins: sign_ins::SignIns,
    nodes: Nodes,
    /// The server's metrics; sessions and the commit writer record through the hub too.
    metrics: Arc<Metrics>,
    next_session: AtomicU64,
    connected: AtomicUsize,
    evictions: AtomicU64,
    messages_posted: AtomicU64,
    /// Rooms whose fan-out is more than [`fanout::MAX_BACKLOG`] messages behind, and the
    /// wake-up for the commit writer waiting for them ([`Hub::fanout_caught_up`]).
    backlogged: AtomicUsize,
    relieved: Notify,
}

/// What a session gets when it joins: its id. The first frame offered to its outlet is
/// always the room's state (history, presence, typing, room list); its history replaces
/// the page's message list. The hub tells the session to end through its outlet
/// ([`crate::outlet::Ending`]).
pub struct Membership {
    pub id: SessionId,
    pub room: RoomName,
}

/// The room is not in memory: load it through the committer first.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("room {0} is not loaded")]
pub struct NotLoaded(pub RoomName);

/// Counters for tests and logs (operators read `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub connected: usize,
    pub rooms_loaded: usize,
    pub messages_posted: u64,
    pub slow_evictions: u64,
}

impl Hub {
    /// A hub with metrics of its own, registered nowhere (tests, benchmarks).
    pub fn new(settings: HubSettings) -> Self {
        Self::with_metrics(settings, Arc::new(Metrics::new()))
    }

    /// A hub that records into the server's `metrics`.
    pub fn with_metrics(settings: HubSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            shared: Arc::new(Shared {
                nodes: Nodes::new(settings.share_presence),
                settings,
                directory: Mutex::new(Directory::default()),
                room_list: RoomList::default(),
                activity: Activity::default(),
                bans: bans::Bans::default(),
                sign_ins: sign_ins::SignIns::default(),
                metrics,
                next_session: AtomicU64::new(1),
                connected: AtomicUsize::new(0),
                evictions: AtomicU64::new(0),
                messages_posted: AtomicU64::new(0),
                backlogged: AtomicUsize::new(0),
                relieved: Notify::new(),
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn settings(&self) -> &HubSettings {
        &self.shared.settings
    }

    /// Records the rooms the store knows of, for the room list.
    pub fn know_rooms(&self, rooms: impl IntoIterator<Item = RoomName>) {
        self.directory().learn(rooms);
        self.shared.room_list.mark_dirty();
    }

    pub fn is_loaded(&self, room: &RoomName) -> bool {
        self.directory().contains(room)
    }

    /// Puts a room in memory with its newest messages (oldest first); `has_older` says
    /// whether the store holds more before them. Only the commit task calls this, between
    /// deliveries, so nothing committed can fall between the query and the insert.
    pub fn load(&self, room: &RoomName, messages: &[ChatMessage], has_older: bool) {
        let rendered = messages.iter().map(render::message).collect();
        let settings = &self.shared.settings;
        let seen = (
            self.shared.room_list.generation(),
            self.shared.activity.generation(),
        );
        let loaded = Arc::new(Room::new(room.clone(), rendered, has_older, settings, seen));
        let mut directory = self.directory();
        if directory.contains(room) {
            return;
        }
        // Visiting rooms (even made-up ones) cannot grow memory without bound.
        let forgotten = directory.forget_idle(settings.idle_rooms.saturating_sub(1));
        directory.insert(loaded);
        let rooms = directory.loaded();
        drop(directory);
        if forgotten.untold {
            self.shared.nodes.lose_presence();
        }
        self.shared.metrics.rooms(rooms);
    }

    /// Adds a session to a loaded room and offers it the room's state.
    pub fn join(
        &self,
        room: &RoomName,
        user: UserId,
        name: DisplayName,
        outlet: Arc<Outlet>,
    ) -> Result<Membership, NotLoaded> {
        let id = SessionId(self.shared.next_session.fetch_add(1, Ordering::Relaxed));
        let entry = self.room(room)?;
        let (room_list, _) = self.shared.room_list.current(self);
        let joining = Joining {
            id,
            user,
            name,
            outlet,
            room_list: &room_list,
            notices: self.shared.settings.presence_notices,
        };
        let mut fx = Effects::default();
        entry
            .lock()
            .join(room, &self.shared.nodes, joining, &mut fx)?;
        self.shared.connected.fetch_add(1, Ordering::Relaxed);
        self.settle(&entry, fx);
        Ok(Membership {
            id,
            // The room's own name, shared: not one more copy per connection.
            room: entry.name.clone(),
        })
    }

    /// Tells every session on this node to end, for shutdown (each closes with 1012). A
    /// session that joins after this looks at the shutdown token itself.
    pub fn end_all_sessions(&self) {
        let mut outlets = Vec::new();
        // A statement of its own: the directory's lock is not held over the rooms'.
        let rooms = self.directory().rooms();
        for entry in rooms {
            outlets.extend(entry.lock().members.outlets());
        }
        for outlet in outlets {
            outlet.end(Ending::Shutdown);
        }
    }

    /// Removes a session. Calling it for a session that was evicted is harmless.
    pub fn leave(&self, room: &RoomName, id: SessionId) {
        if let Ok(entry) = self.room(room) {
            let mut fx = Effects::default();
            let left = entry
                .lock()
                .leave(id, self.shared.settings.presence_notices, &mut fx);
            self.settle(&entry, fx);
            if left {
                self.forget_idle_rooms();
            }
        }
        // Whether or not that found the session (a fan-out that found it gone removed it
        // already, and changed presence then), there may be a departure to tell.
        self.shared.nodes.tell();
    }

    /// The name a session currently posts under.
    pub fn name_of(&self, room: &RoomName, id: SessionId) -> Option<DisplayName> {
        self.room(room).ok()?.lock().name_of(id)
    }

    /// Renders stored messages (in commit order), keeps them in their rooms' histories and
    /// sends each room's share to its sessions as one frame. Never waits: a big room's
    /// fan-out is queued for its drainer (see [`Hub::fanout_caught_up`]).
    pub fn deliver(&self, messages: &[ChatMessage]) {
        if messages.is_empty() {
            return;
        }
        let mut by_room: Vec<(&RoomName, Vec<&ChatMessage>)> = Vec::new();
        for message in messages {
            match by_room.iter_mut().find(|(room, _)| **room == message.room) {
                Some((_, list)) => list.push(message),
                None => by_room.push((&message.room, vec![message])),
            }
        }
        // Rendering happens before any lock is taken.
        let rendered: Vec<_> = by_room
            .into_iter()
            .map(|(room, list)| {
                let rendered: Vec<_> = list.iter().map(|m| render::message(m)).collect();
                (room, list, rendered)
            })
            .collect();
        let (rooms, learned) = {
            let mut directory = self.directory();
            let learned = directory.learn(rendered.iter().map(|(room, _, _)| (*room).clone()));
            let rooms: Vec<_> = rendered
                .iter()
                .map(|(room, _, _)| directory.get(room))
                .collect();
            (rooms, learned)
        };
        if learned {
            self.shared.room_list.mark_dirty();
        }
        let upto = messages.iter().map(|m| m.seq).max().unwrap_or(0);
        self.tell_readers(&rendered, upto);
        let limit = self.shared.settings.history_limit;
        for ((_, list, rendered), entry) in rendered.into_iter().zip(rooms) {
            // A room nobody here is in is not kept in memory; its messages are in the store.
            let Some(entry) = entry else {
                continue;
            };
            // Sending a message ends its author's typing; editing one does not.
            let authors: Vec<&DisplayName> = list
                .iter()
                .filter(|m| !m.is_change())
                .map(|m| &m.author)
                .collect();
            let started = std::time::Instant::now();
            let mut fx = Effects::default();
            let inline = entry.lock().deliver(rendered, &authors, limit, &mut fx);
            if inline {
                self.shared.metrics.fanout(started.elapsed());
            }
            self.settle(&entry, fx);
        }
        self.shared
            .messages_posted
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        self.shared.metrics.broadcast(messages.len());
    }

    /// A session's user is typing. Announced to the others at most once per throttle
    /// period; the indicator lasts `typing_expiry` after the last call.
    pub fn typing(&self, room: &RoomName, id: SessionId, now: Instant) {
        let Ok(entry) = self.room(room) else {
            return;
        };
        let mut fx = Effects::default();
        let seat = entry
            .lock()
            .typing(room, id, now, &self.shared.settings, &mut fx);
        self.settle(&entry, fx);
        if let Some(seat) = seat.filter(|_| self.shared.nodes.share()) {
            // Announced here, so announced to the other nodes too (as throttled).
            self.shared.nodes.typed(seat);
        }
    }

    /// A user took a new name: their sessions post under it from now on, and presence and
    /// typing show it at once. With shared presence their sessions on the other nodes are
    /// told too.
    pub fn rename(&self, user: &UserId, name: &DisplayName) {
        self.rename_here(user, name);
        if self.shared.nodes.share() {
            self.shared.nodes.renamed(user.clone(), name.clone());
        }
    }

    /// [`Hub::rename`] for this node's sessions only.
    fn rename_here(&self, user: &UserId, name: &DisplayName) {
        let rooms = self.directory().rooms();
        for entry in rooms {
            let mut fx = Effects::default();
            entry.lock().rename(user, name, &mut fx);
            self.settle(&entry, fx);
        }
        self.shared.nodes.tell();
    }

    /// The message list's contents for a freshly served page, if the room is loaded.
    pub fn history_html(&self, room: &RoomName) -> Option<String> {
        Some(self.room(room).ok()?.lock().history_html(room))
    }

    /// Every known or occupied room with how many users are in it.
    pub fn room_counts(&self) -> Vec<RoomCount> {
        room_list::counts(self)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            connected: self.shared.connected.load(Ordering::Relaxed),
            rooms_loaded: self.directory().loaded(),
            messages_posted: self.shared.messages_posted.load(Ordering::Relaxed),
            slow_evictions: self.shared.evictions.load(Ordering::Relaxed),
        }
    }

    /// Acts on what a room's section left to do, once its lock is released.
    fn settle(&self, room: &Arc<Room>, fx: Effects) {
        let shared = &self.shared;
        if fx.backlogged {
            shared.backlogged.fetch_add(1, Ordering::AcqRel);
        }
        if fx.relieved {
            shared.backlogged.fetch_sub(1, Ordering::AcqRel);
            shared.relieved.notify_waiters();
        }
        if fx.departed > 0 {
            shared.connected.fetch_sub(fx.departed, Ordering::Relaxed);
        }
        if fx.counts_changed {
            shared.room_list.mark_dirty();
        }
        if fx.evicted > 0 {
            self.count_evictions(fx.evicted);
        }
        if fx.tell_others {
            shared.nodes.tell();
        }
        if fx.start_drainer {
            self.drain(Arc::clone(room));
        }
    }

    /// Members evicted for falling behind: counted, and logged.
    fn count_evictions(&self, evicted: u64) {
        self.shared.metrics.evicted(evicted);
        self.shared.evictions.fetch_add(evicted, Ordering::Relaxed);
        tracing::warn!(evicted, "disconnected clients that fell behind");
    }

    fn forget_idle_rooms(&self) {
        let keep = self.shared.settings.idle_rooms;
        let forgotten = self.directory().forget_idle(keep);
        if forgotten.untold {
            self.shared.nodes.lose_presence();
        }
        self.shared.metrics.rooms(forgotten.loaded);
    }

    fn room(&self, room: &RoomName) -> Result<Arc<Room>, NotLoaded> {
        self.directory()
            .get(room)
            .ok_or_else(|| NotLoaded(room.clone()))
    }

    fn directory(&self) -> MutexGuard<'_, Directory> {
        // A panic while holding the lock cannot leave the directory half-updated in a way
        // that matters (every update is an insert or a removal), so keep serving.
        self.shared
            .directory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn nodes(&self) -> &Nodes {
        &self.shared.nodes
    }
}
