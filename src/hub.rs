//! This node's rooms and who is in them; the fan-out of rendered frames.
//!
//! The hub is the seed design's hub without its goroutine: a small state behind a std
//! `Mutex`, held only for short, synchronous sections (never across `.await`). Delivering a
//! batch of stored messages takes the lock once to render each message once, keep it in
//! its room's history and offer the *same bytes* to every session of that room with
//! `try_send`. Batches arrive in commit order from one task (`crate::commit`), and fan-out
//! happens under the lock, so every session sees messages in the same order; joining takes
//! the same lock, so a newcomer's history snapshot and its live feed meet with no gap and no
//! overlap. A room's history is a cache of the store's newest messages, loaded by that same
//! task, so a connect never costs a query.
//!
//! Besides messages the hub owns what is only true while people are connected: presence
//! (who is in each room, one entry per user however many tabs), typing, and the room list
//! with its online counts. Those are rendered once per change and fanned out like messages;
//! the room list and typing expiry are refreshed by [`Hub::tick`], which the server calls
//! periodically, so a burst of joins costs one room-list render, not one per join.
//!
//! The hub never waits for a session. A session whose outbox is full is evicted on the
//! spot: it is removed, its `evicted` token is cancelled (the session then closes the socket
//! with 1008) and the eviction is counted.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{ChatMessage, DisplayName, RoomName, UserId};
use crate::metrics::Metrics;
use crate::outlet::{Offered, Outlet};
use crate::presence::{Elsewhere, Gap, Heard, Remote, RoomHere, Seat};
use crate::render::{self, Rendered};
use crate::wire::Frame;

/// Status updates (presence, room list) reach a room at most once per this much time per
/// member (and never more often than the server's upkeep tick): 100 µs × 19,000 members is
/// one update every 1.9 s. At roughly 10 µs of kernel time per write on loopback, that
/// caps status traffic at about a tenth of a core whatever the room's size.
const STATUS_PACE_PER_MEMBER: Duration = Duration::from_micros(100);

/// Typing announcements and renames waiting for the broker to tell the other nodes. Past
/// it the oldest are dropped: a typing line that lapses early, or a tab on another node
/// that posts under the old name until it reconnects, is all that is lost.
const SIGNALS_WAITING: usize = 256;

/// Empty rooms kept in memory (beyond `idle_rooms`) until the other nodes hear that they
/// were emptied; past that they are forgotten and the broker tells everything afresh.
const UNTOLD_IDLE_ROOMS: usize = 1000;

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
        }
    }
}

/// The node's rooms. Cheap to clone: a handle to shared state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    settings: HubSettings,
    next_session: AtomicU64,
    evictions: AtomicU64,
    messages_posted: AtomicU64,
    /// The server's metrics; sessions and the commit writer record through the hub too.
    metrics: Arc<Metrics>,
    /// Wakes the broker when there is something to tell the other nodes (only with
    /// `share_presence`). A permit is kept when nobody waits, so no news is missed.
    news: Notify,
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomName, Room>,
    /// Every room the store knows of (rooms are created by their first message).
    known: BTreeSet<RoomName>,
    /// The room list needs re-rendering and sending (a count or the set of rooms changed).
    room_list_dirty: bool,
    /// The room list as last rendered, for newcomers' first frame (at most one tick old).
    room_list_frame: Option<Utf8Bytes>,
    /// Who is where on the other nodes, as they reported it.
    remote: Remote,
    /// Typing announcements to tell the other nodes; at most [`SIGNALS_WAITING`].
    typing_out: VecDeque<Seat>,
    /// Renames to tell the other nodes; at most [`SIGNALS_WAITING`].
    renamed_out: VecDeque<(UserId, DisplayName)>,
    /// Rooms were forgotten before the other nodes heard they were emptied: the broker
    /// must tell them everything afresh ([`Hub::all_seats`]).
    presence_lost: bool,
}

struct Room {
    name: RoomName,
    /// The last `history_limit` messages, already rendered, oldest first.
    history: VecDeque<Rendered>,
    /// Whether the store holds messages older than `history`: the history frame then
    /// starts with a "load older" element instead of "start of conversation".
    has_older: bool,
    /// The connect frame for the current history, built on the first connect after a change
    /// so a burst of reconnects costs one render, not one each.
    history_frame: Option<Utf8Bytes>,
    members: BTreeMap<SessionId, Member>,
    /// Who is here: one entry per user however many tabs, with their current name.
    users: HashMap<UserId, Present>,
    /// The presence list as last sent (what newcomers get); `None` until the first join.
    presence_frame: Option<Utf8Bytes>,
    /// The names that frame lists. When a change leaves them as they are (in a big room,
    /// most joins are of people not among the first names shown), `tick` sends only the
    /// new count: a few dozen bytes per member instead of the whole list.
    presence_listed: Vec<DisplayName>,
    /// Presence changed since it was last sent; `tick` sends it, so a burst of joins costs
    /// one render and one fan-out, not one per join.
    presence_dirty: bool,
    /// A fan-out removed someone's last session: the room list's count changed.
    counts_changed: bool,
    /// The room list changed since this room's members last got it.
    room_list_stale: bool,
    /// When this room may next get a status update (presence, room list); see
    /// [`STATUS_PACE_PER_MEMBER`].
    status_due: Instant,
    /// Typists here and, with shared presence, on other nodes.
    typing: BTreeMap<UserId, Typist>,
    /// Whether this room's presence is shared with other nodes.
    share: bool,
    /// Its presence changed since the other nodes were last told; such a room stays in
    /// memory until they are, even if empty, so a departure is never left untold.
    untold: bool,
}

struct Present {
    name: DisplayName,
    sessions: usize,
}

struct Member {
    user: UserId,
    /// The connection's write side. Bounded: when its queue is full the member is
    /// evicted, never waited for.
    outlet: Arc<Outlet>,
    evicted: CancellationToken,
}

struct Typist {
    name: DisplayName,
    /// When "… is typing" disappears unless renewed.
    until: Instant,
    /// When this typist was last announced (for the throttle).
    announced: Instant,
}

/// What a session gets when it joins: its id and the token that tells it it was evicted.
/// The first frame offered to its outlet is always the room's state (history, presence,
/// typing, room list); its history replaces the page's message list.
pub struct Membership {
    pub id: SessionId,
    pub room: RoomName,
    pub evicted: CancellationToken,
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

/// One line of the room list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCount {
    pub room: RoomName,
    pub online: usize,
}

impl Hub {
    /// A hub with metrics of its own, registered nowhere (tests, benchmarks).
    pub fn new(settings: HubSettings) -> Self {
        Self::with_metrics(settings, Arc::new(Metrics::new()))
    }

    /// A hub that records into the server's `metrics`.
    pub fn with_metrics(settings: HubSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                settings,
                next_session: AtomicU64::new(1),
                evictions: AtomicU64::new(0),
                messages_posted: AtomicU64::new(0),
                metrics,
                news: Notify::new(),
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn settings(&self) -> &HubSettings {
        &self.inner.settings
    }

    /// Records the rooms the store knows of, for the room list.
    pub fn know_rooms(&self, rooms: impl IntoIterator<Item = RoomName>) {
        let mut state = self.lock();
        state.known.extend(rooms);
        state.room_list_dirty = true;
    }

    pub fn is_loaded(&self, room: &RoomName) -> bool {
        self.lock().rooms.contains_key(room)
    }

    /// Puts a room in memory with its newest messages (oldest first); `has_older` says
    /// whether the store holds more before them. Only the commit task calls this, between
    /// deliveries, so nothing committed can fall between the query and the insert.
    pub fn load(&self, room: &RoomName, messages: &[ChatMessage], has_older: bool) {
        let rendered: Vec<Rendered> = messages.iter().map(render::message).collect();
        let limit = self.inner.settings.history_limit;
        let mut state = self.lock();
        if state.rooms.contains_key(room) {
            return;
        }
        // Visiting rooms (even made-up ones) cannot grow memory without bound.
        state.forget_idle_rooms(self.inner.settings.idle_rooms.saturating_sub(1));
        let mut loaded = Room {
            name: room.clone(),
            history: VecDeque::with_capacity(limit),
            has_older,
            history_frame: None,
            members: BTreeMap::new(),
            users: HashMap::new(),
            presence_frame: None,
            presence_listed: Vec::new(),
            presence_dirty: false,
            counts_changed: false,
            room_list_stale: false,
            status_due: Instant::now(),
            typing: BTreeMap::new(),
            share: self.inner.settings.share_presence,
            untold: false,
        };
        for message in rendered {
            loaded.remember(message, limit);
        }
        state.rooms.insert(room.clone(), loaded);
        self.inner.metrics.rooms(state.rooms.len());
    }

    /// Adds a session to a loaded room and offers it the room's state.
    pub fn join(
        &self,
        room: &RoomName,
        user: UserId,
        name: DisplayName,
        outlet: Arc<Outlet>,
    ) -> Result<Membership, NotLoaded> {
        let id = SessionId(self.inner.next_session.fetch_add(1, Ordering::Relaxed));
        let evicted = CancellationToken::new();
        let notices = self.inner.settings.presence_notices;

        let mut state = self.lock();
        let room_list = state.room_list_frame();
        let State { rooms, remote, .. } = &mut *state;
        let entry = rooms.get_mut(room).ok_or_else(|| NotLoaded(room.clone()))?;
        let present = entry.users.entry(user.clone()).or_insert(Present {
            name: name.clone(),
            sessions: 0,
        });
        present.sessions += 1;
        let arrived = present.sessions == 1;
        entry.members.insert(
            id,
            Member {
                user: user.clone(),
                outlet: Arc::clone(&outlet),
                evicted: evicted.clone(),
            },
        );
        if arrived {
            entry.presence_changed();
        }
        let first = Frame::text_joined([
            entry.history_frame().as_str(),
            entry.presence_frame(remote.room(room)).as_str(),
            entry.typing_frame(&user).as_str(),
            room_list.as_str(),
        ]);
        // A fresh outlet always has room for its first frame.
        let _ = outlet.offer(&first);
        let mut evicted_now = 0;
        if arrived && notices {
            let frame = render::event(&format!("{name} joined"));
            evicted_now = entry.fan_out_except(&frame, Some(id));
        }
        if arrived {
            state.room_list_dirty = true;
        }
        drop(state);
        if arrived {
            self.tell_others();
        }
        self.count_evictions(evicted_now);
        Ok(Membership {
            id,
            room: room.clone(),
            evicted,
        })
    }

    /// Removes a session. Calling it for a session that was evicted is harmless.
    pub fn leave(&self, room: &RoomName, id: SessionId) {
        self.remove(room, id);
        // Whether or not that found the session (a fan-out that found it gone removed it
        // already, and changed presence then), there may be a departure to tell.
        self.tell_others();
    }

    fn remove(&self, room: &RoomName, id: SessionId) {
        let notices = self.inner.settings.presence_notices;
        let idle_rooms = self.inner.settings.idle_rooms;
        let mut state = self.lock();
        let Some(entry) = state.rooms.get_mut(room) else {
            return;
        };
        let Some(member) = entry.members.remove(&id) else {
            return;
        };
        let mut evicted = 0;
        if let Some(gone) = entry.user_left(&member.user) {
            if entry.typing.remove(&member.user).is_some() {
                evicted += entry.fan_out_typing();
            }
            if notices {
                evicted += entry.fan_out(&render::event(&format!("{} left", gone.name)));
            }
            state.room_list_dirty = true;
        }
        state.forget_idle_rooms(idle_rooms);
        self.inner.metrics.rooms(state.rooms.len());
        drop(state);
        self.count_evictions(evicted);
    }

    /// The name a session currently posts under.
    pub fn name_of(&self, room: &RoomName, id: SessionId) -> Option<DisplayName> {
        let state = self.lock();
        let entry = state.rooms.get(room)?;
        let user = &entry.members.get(&id)?.user;
        Some(entry.users.get(user)?.name.clone())
    }

    /// Renders stored messages (in commit order), keeps them in their rooms' histories and
    /// offers each room's share to its sessions as one frame.
    pub fn deliver(&self, messages: &[ChatMessage]) {
        if messages.is_empty() {
            return;
        }
        let limit = self.inner.settings.history_limit;
        let mut by_room: Vec<(&RoomName, Vec<&ChatMessage>)> = Vec::new();
        for message in messages {
            match by_room.iter_mut().find(|(room, _)| **room == message.room) {
                Some((_, list)) => list.push(message),
                None => by_room.push((&message.room, vec![message])),
            }
        }

        // Rendering and framing happen before the lock is taken: the lock only covers the
        // fan-out. A room's messages become one frame, built straight from the fragments.
        let rendered: Vec<(&RoomName, Vec<&ChatMessage>, Vec<Rendered>, Frame)> = by_room
            .into_iter()
            .map(|(room, list)| {
                let rendered: Vec<Rendered> = list.iter().map(|m| render::message(m)).collect();
                let frame = Frame::text_joined(rendered.iter().map(|r| r.fragment().as_str()));
                (room, list, rendered, frame)
            })
            .collect();

        let mut evicted = 0;
        // One fan-out time per room, recorded once the lock is released.
        let mut fanouts = Vec::with_capacity(rendered.len());
        let mut state = self.lock();
        for (room, list, rendered, frame) in rendered {
            if state.known.insert(room.clone()) {
                state.room_list_dirty = true;
            }
            // A room nobody here is in is not kept in memory; its messages are in the store.
            let Some(entry) = state.rooms.get_mut(room) else {
                continue;
            };
            let started = std::time::Instant::now();
            // A message ends its author's "is typing" (matched by name: messages carry no
            // user id), in the same frame as the message so the line never lags behind it.
            let before = entry.typing.len();
            entry
                .typing
                .retain(|_, typist| !list.iter().any(|m| m.author == typist.name));
            if entry.typing.len() != before {
                let messages = render::join(rendered.iter().map(Rendered::fragment));
                evicted += entry.fan_out_typing_after(messages.as_str());
            } else {
                evicted += entry.offer_all(&frame, None);
            }
            fanouts.push(started.elapsed());
            for message in rendered {
                entry.remember(message, limit);
            }
        }
        drop(state);
        self.count_evictions(evicted);
        self.inner
            .messages_posted
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let metrics = &self.inner.metrics;
        metrics.broadcast(messages.len());
        for took in fanouts {
            metrics.fanout(took);
        }
    }

    /// A session's user is typing. Announced to the others at most once per throttle
    /// period; the indicator lasts `typing_expiry` after the last call.
    pub fn typing(&self, room: &RoomName, id: SessionId, now: Instant) {
        let HubSettings {
            typing_throttle,
            typing_expiry,
            ..
        } = self.inner.settings;
        let mut state = self.lock();
        let Some(entry) = state.rooms.get_mut(room) else {
            return;
        };
        let Some(member) = entry.members.get(&id) else {
            return;
        };
        let user = member.user.clone();
        let Some(name) = entry.users.get(&user).map(|p| p.name.clone()) else {
            return;
        };
        let until = now + typing_expiry;
        if let Some(typist) = entry.typing.get_mut(&user) {
            typist.until = until;
            if now < typist.announced + typing_throttle {
                return;
            }
            typist.announced = now;
        } else {
            entry.typing.insert(
                user.clone(),
                Typist {
                    name: name.clone(),
                    until,
                    announced: now,
                },
            );
        }
        let evicted = entry.fan_out_typing();
        let share = entry.share;
        if share {
            // Announced here, so announced to the other nodes too (as throttled).
            push_bounded(
                &mut state.typing_out,
                Seat {
                    room: room.clone(),
                    user,
                    name,
                },
            );
        }
        drop(state);
        if share {
            self.tell_others();
        }
        self.count_evictions(evicted);
    }

    /// A user took a new name: their sessions post under it from now on, and presence and
    /// typing show it at once. With shared presence their sessions on the other nodes are
    /// told too.
    pub fn rename(&self, user: &UserId, name: &DisplayName) {
        self.rename_here(user, name);
        if self.inner.settings.share_presence {
            push_bounded(&mut self.lock().renamed_out, (user.clone(), name.clone()));
            self.tell_others();
        }
    }

    /// [`Hub::rename`] for this node's sessions only.
    fn rename_here(&self, user: &UserId, name: &DisplayName) {
        let mut evicted = 0;
        let mut state = self.lock();
        for entry in state.rooms.values_mut() {
            let Some(present) = entry.users.get_mut(user) else {
                continue;
            };
            present.name = name.clone();
            entry.presence_changed();
            if let Some(typist) = entry.typing.get_mut(user) {
                typist.name = name.clone();
                evicted += entry.fan_out_typing();
            }
        }
        drop(state);
        self.tell_others();
        self.count_evictions(evicted);
    }

    /// Periodic upkeep: expires typing indicators, and sends presence and the room list
    /// where they changed. The server calls it twice a second.
    ///
    /// Status updates (presence and the room list, one frame) are paced per room: a room
    /// gets one at most every [`STATUS_PACE_PER_MEMBER`] × its members, so a reconnect
    /// storm into a 19,000-member room costs a bounded number of writes per second
    /// instead of one per member per tick.
    pub fn tick(&self, now: Instant) {
        let mut evicted = 0;
        let mut state = self.lock();
        if self.inner.settings.share_presence {
            // Nodes that fell silent (a crash, a cut from Redis) leave presence.
            let mut touched = BTreeSet::new();
            let expired = state.remote.expire(now, &mut touched);
            if expired > 0 {
                tracing::warn!(
                    nodes = expired,
                    "other nodes silent for too long; their users are no longer shown"
                );
                evicted += state.presence_touched(touched);
                self.inner.metrics.cluster_nodes(state.remote.nodes());
            }
        }
        let mut counts_changed = false;
        for entry in state.rooms.values_mut() {
            counts_changed |= std::mem::take(&mut entry.counts_changed);
        }
        if state.room_list_dirty || counts_changed {
            state.room_list_dirty = false;
            state.room_list_frame = None;
            for entry in state.rooms.values_mut() {
                entry.room_list_stale = true;
            }
        }
        let room_list = state.room_list_frame();
        let State { rooms, remote, .. } = &mut *state;
        for (name, entry) in rooms.iter_mut() {
            let before = entry.typing.len();
            entry.typing.retain(|_, typist| typist.until > now);
            if entry.typing.len() != before {
                evicted += entry.fan_out_typing();
            }
            if now < entry.status_due || !(entry.presence_dirty || entry.room_list_stale) {
                continue;
            }
            let presence = if entry.presence_dirty {
                entry.presence_update(remote.room(name))
            } else {
                Utf8Bytes::from_static("")
            };
            let list = if std::mem::take(&mut entry.room_list_stale) {
                room_list.clone()
            } else {
                Utf8Bytes::from_static("")
            };
            let frame = Frame::text_joined([presence.as_str(), list.as_str()]);
            let members = u32::try_from(entry.members.len()).unwrap_or(u32::MAX);
            entry.status_due = now + STATUS_PACE_PER_MEMBER.saturating_mul(members);
            evicted += entry.offer_all(&frame, None);
        }
        drop(state);
        self.count_evictions(evicted);
    }

    /// The message list's contents for a freshly served page, if the room is loaded.
    pub fn history_html(&self, room: &RoomName) -> Option<String> {
        let state = self.lock();
        let entry = state.rooms.get(room)?;
        Some(render::history_inner(room, &entry.history, entry.has_older))
    }

    /// Who is in a room (on every node), one entry per user, sorted.
    pub fn present(&self, room: &RoomName) -> Vec<DisplayName> {
        let state = self.lock();
        let elsewhere = state.remote.room(room);
        let mut names: Vec<DisplayName> = match state.rooms.get(room) {
            Some(entry) => entry.present(elsewhere),
            None => elsewhere
                .map(|users| users.values().map(|e| e.name.clone()).collect())
                .unwrap_or_default(),
        };
        names.sort_by_cached_key(|name| name.as_str().to_lowercase());
        names
    }

    /// Every known or occupied room with how many users are in it.
    pub fn room_counts(&self) -> Vec<RoomCount> {
        self.lock().room_counts()
    }

    pub fn stats(&self) -> Stats {
        let state = self.lock();
        Stats {
            connected: state.rooms.values().map(|r| r.members.len()).sum(),
            rooms_loaded: state.rooms.len(),
            messages_posted: self.inner.messages_posted.load(Ordering::Relaxed),
            slow_evictions: self.inner.evictions.load(Ordering::Relaxed),
        }
    }

    /// Takes what other nodes have to hear about this node's presence: every room whose
    /// users changed since the last call, with everyone in it here now (user and name).
    /// The broker sends the difference from what it told them before. `None`: changes
    /// were lost (rooms forgotten untold), so the broker must tell everything afresh
    /// ([`Hub::all_seats`]).
    pub fn take_presence(&self) -> Option<Vec<RoomHere>> {
        let mut state = self.lock();
        if state.presence_lost {
            return None;
        }
        let rooms = state
            .rooms
            .iter_mut()
            .filter_map(|(name, entry)| {
                std::mem::take(&mut entry.untold).then(|| (name.clone(), entry.local_users()))
            })
            .collect();
        Some(rooms)
    }

    /// Every user here in every room, for telling the other nodes everything afresh
    /// (after the broker reconnected); counts as told.
    pub fn all_seats(&self) -> Vec<Seat> {
        let mut state = self.lock();
        state.presence_lost = false;
        let mut seats = Vec::new();
        for (room, entry) in &mut state.rooms {
            entry.untold = false;
            seats.extend(entry.users.iter().map(|(user, present)| Seat {
                room: room.clone(),
                user: user.clone(),
                name: present.name.clone(),
            }));
        }
        seats
    }

    /// Takes the typing announcements and renames waiting to be told to the other nodes.
    pub fn take_signals(&self) -> (Vec<Seat>, Vec<(UserId, DisplayName)>) {
        let mut state = self.lock();
        (
            state.typing_out.drain(..).collect(),
            state.renamed_out.drain(..).collect(),
        )
    }

    /// Waits until there may be something to tell the other nodes (see
    /// [`Hub::take_presence`], [`Hub::take_signals`]); only ever wakes with shared presence.
    pub async fn news(&self) {
        self.inner.news.notified().await;
    }

    /// What the broker heard from the other nodes. `Err(Gap)`: a report was missed, so the
    /// broker must read that node's whole presence and hand it over as [`Heard::Whole`].
    /// Presence and the room list change at the next tick, typing at once.
    pub fn hear(&self, heard: Heard) -> Result<(), Gap> {
        let now = Instant::now();
        let mut touched = BTreeSet::new();
        let mut evicted = 0;
        let mut state = self.lock();
        let result = match heard {
            Heard::Whole(whole) => {
                state.remote.replace(whole, now, &mut touched);
                Ok(())
            }
            Heard::Everyone(all) => {
                state.remote.replace_all(all, now, &mut touched);
                Ok(())
            }
            Heard::Changes { node, seq, changes } => {
                state.remote.apply(&node, seq, changes, now, &mut touched)
            }
            Heard::Alive { node, seq, expiry } => state.remote.alive(&node, seq, expiry, now),
            Heard::Left { node } => {
                state.remote.forget(&node, &mut touched);
                Ok(())
            }
            Heard::Typing(seats) => {
                let expiry = self.inner.settings.typing_expiry;
                evicted += state.typing_elsewhere(seats, now + expiry, now);
                Ok(())
            }
            Heard::Renamed(users) => {
                drop(state);
                for (user, name) in users {
                    self.rename_here(&user, &name);
                }
                return Ok(());
            }
        };
        evicted += state.presence_touched(touched);
        self.inner.metrics.cluster_nodes(state.remote.nodes());
        drop(state);
        self.count_evictions(evicted);
        result
    }

    /// Wakes the broker, if it shares presence.
    fn tell_others(&self) {
        if self.inner.settings.share_presence {
            self.inner.news.notify_one();
        }
    }

    fn count_evictions(&self, evicted: u64) {
        if evicted > 0 {
            self.inner.metrics.evicted(evicted);
            self.inner.evictions.fetch_add(evicted, Ordering::Relaxed);
            tracing::warn!(evicted, "disconnected clients that fell behind");
            // Evicted members left presence.
            self.tell_others();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to readers (every update is a push, a pop or an insert), so keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn room_counts(&self) -> Vec<RoomCount> {
        let mut names: BTreeSet<&RoomName> = self.known.iter().collect();
        names.extend(
            self.rooms
                .iter()
                .filter(|(_, r)| !r.members.is_empty())
                .map(|(name, _)| name),
        );
        names.extend(self.remote.rooms());
        let general = RoomName::general();
        let mut counts: Vec<RoomCount> = names
            .into_iter()
            .map(|room| {
                let here = self.rooms.get(room).map(|r| &r.users);
                let elsewhere = self.remote.room(room).map_or(0, |users| {
                    users
                        .keys()
                        .filter(|user| !here.is_some_and(|here| here.contains_key(*user)))
                        .count()
                });
                RoomCount {
                    room: room.clone(),
                    online: here.map_or(0, HashMap::len) + elsewhere,
                }
            })
            .collect();
        // `general` first, the rest by name.
        counts.sort_by_key(|count| (count.room != general, count.room.clone()));
        counts
    }

    fn room_list_frame(&mut self) -> Utf8Bytes {
        if let Some(frame) = &self.room_list_frame {
            return frame.clone();
        }
        let frame = render::room_list(&self.room_counts(), true);
        self.room_list_frame = Some(frame.clone());
        frame
    }

    /// What other nodes reported changed in `touched` rooms: presence and the room list
    /// are sent at the next tick; a typist now in none of the room's nodes stops typing.
    fn presence_touched(&mut self, touched: BTreeSet<RoomName>) -> u64 {
        if touched.is_empty() {
            return 0;
        }
        self.room_list_dirty = true;
        let mut evicted = 0;
        for name in touched {
            let Some(entry) = self.rooms.get_mut(&name) else {
                continue;
            };
            entry.presence_dirty = true;
            let elsewhere = self.remote.room(&name);
            let before = entry.typing.len();
            entry.typing.retain(|user, _| {
                entry.users.contains_key(user) || elsewhere.is_some_and(|e| e.contains_key(user))
            });
            if entry.typing.len() != before {
                evicted += entry.fan_out_typing();
            }
        }
        evicted
    }

    /// Users typing on other nodes, shown until `until` unless renewed. Only users their
    /// node reported present count: a typist nobody reported is ignored, so typing cannot
    /// grow beyond who is in the room.
    fn typing_elsewhere(&mut self, seats: Vec<Seat>, until: Instant, now: Instant) -> u64 {
        let mut rooms = BTreeSet::new();
        for Seat { room, user, name } in seats {
            let Some(entry) = self.rooms.get_mut(&room) else {
                continue;
            };
            if !self
                .remote
                .room(&room)
                .is_some_and(|users| users.contains_key(&user))
            {
                continue;
            }
            entry.typing.insert(
                user,
                Typist {
                    name,
                    until,
                    announced: now,
                },
            );
            rooms.insert(room);
        }
        let mut evicted = 0;
        for room in rooms {
            if let Some(entry) = self.rooms.get_mut(&room) {
                evicted += entry.fan_out_typing();
            }
        }
        evicted
    }

    /// Drops rooms nobody is in once there are more than `keep` of them (but not one whose
    /// last departure the other nodes have yet to hear of).
    fn forget_idle_rooms(&mut self, keep: usize) {
        if self.rooms.len() <= keep {
            return;
        }
        let idle: Vec<RoomName> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.members.is_empty() && !room.untold)
            .map(|(name, _)| name.clone())
            .collect();
        for name in idle.iter().skip(keep) {
            self.rooms.remove(name);
        }
        // Untold rooms pile up only while the broker cannot take them (it is stuck, or
        // Redis is away): past a bound they go too, and the broker is to tell everything
        // afresh instead.
        if self.rooms.len() <= keep + UNTOLD_IDLE_ROOMS {
            return;
        }
        let untold: Vec<RoomName> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.members.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in untold.iter().skip(keep) {
            self.rooms.remove(name);
            self.presence_lost = true;
        }
    }
}

impl Room {
    /// One session of `user` left; returns their entry if it was their last.
    fn user_left(&mut self, user: &UserId) -> Option<Present> {
        let present = self.users.get_mut(user)?;
        present.sessions -= 1;
        if present.sessions > 0 {
            return None;
        }
        let gone = self.users.remove(user);
        self.presence_changed();
        gone
    }

    /// Marks presence for the next tick. The cached frame stays as it is until then:
    /// newcomers get it (at most one tick stale) instead of each join re-rendering a list
    /// that grows with the room, which made connecting O(N) per join.
    /// With shared presence, the other nodes are to be told too.
    fn presence_changed(&mut self) {
        self.presence_dirty = true;
        self.untold |= self.share;
    }

    /// Everyone here and on other nodes (`elsewhere`), one entry per user, unsorted.
    fn present(&self, elsewhere: Option<&HashMap<UserId, Elsewhere>>) -> Vec<DisplayName> {
        let mut names: Vec<DisplayName> = self.users.values().map(|p| p.name.clone()).collect();
        names.extend(self.only_elsewhere(elsewhere).map(|e| e.name.clone()));
        names
    }

    /// Users on other nodes who have no session here (a user here shows under their name
    /// here).
    fn only_elsewhere<'a>(
        &'a self,
        elsewhere: Option<&'a HashMap<UserId, Elsewhere>>,
    ) -> impl Iterator<Item = &'a Elsewhere> {
        elsewhere
            .into_iter()
            .flatten()
            .filter(|(user, _)| !self.users.contains_key(*user))
            .map(|(_, e)| e)
    }

    /// This node's users, with their names.
    fn local_users(&self) -> Vec<(UserId, DisplayName)> {
        self.users
            .iter()
            .map(|(user, present)| (user.clone(), present.name.clone()))
            .collect()
    }

    /// What members need to bring presence up to date: only the count when the names shown
    /// are the same, the whole list otherwise. Newcomers get the whole list from then on.
    fn presence_update(&mut self, elsewhere: Option<&HashMap<UserId, Elsewhere>>) -> Utf8Bytes {
        self.presence_dirty = false;
        let (listed, total) = self.listed(elsewhere);
        let unchanged = listed == self.presence_listed && self.presence_frame.is_some();
        let full = render::presence(&listed, total, true);
        let update = if unchanged {
            render::presence_count(total, listed.len())
        } else {
            full.clone()
        };
        self.presence_frame = Some(full);
        self.presence_listed = listed;
        update
    }

    /// The first [`render::PRESENCE_SHOWN`] names in list order, and how many are here
    /// (on every node). Selecting them is linear in the room's size; only those few are
    /// sorted.
    fn listed(&self, elsewhere: Option<&HashMap<UserId, Elsewhere>>) -> (Vec<DisplayName>, usize) {
        let mut keyed: Vec<(String, &DisplayName)> = self
            .users
            .values()
            .map(|p| &p.name)
            .chain(self.only_elsewhere(elsewhere).map(|e| &e.name))
            .map(|name| (name.as_str().to_lowercase(), name))
            .collect();
        let total = keyed.len();
        let order = |a: &(String, &DisplayName), b: &(String, &DisplayName)| {
            (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str()))
        };
        if keyed.len() > render::PRESENCE_SHOWN {
            keyed.select_nth_unstable_by(render::PRESENCE_SHOWN - 1, order);
            keyed.truncate(render::PRESENCE_SHOWN);
        }
        keyed.sort_by(order);
        (
            keyed.into_iter().map(|(_, name)| name.clone()).collect(),
            total,
        )
    }

    /// The presence frame newcomers get: the last one sent (at most one tick old), or, for
    /// a room's first member, a fresh one.
    fn presence_frame(&mut self, elsewhere: Option<&HashMap<UserId, Elsewhere>>) -> Utf8Bytes {
        if let Some(frame) = &self.presence_frame {
            return frame.clone();
        }
        let (listed, total) = self.listed(elsewhere);
        let frame = render::presence(&listed, total, true);
        self.presence_frame = Some(frame.clone());
        self.presence_listed = listed;
        frame
    }

    fn history_frame(&mut self) -> Utf8Bytes {
        let (name, history, has_older) = (&self.name, &self.history, self.has_older);
        self.history_frame
            .get_or_insert_with(|| render::history_frame(name, history, has_older))
            .clone()
    }

    /// The typing line as `viewer` should see it: everyone typing but themselves.
    fn typing_frame(&self, viewer: &UserId) -> Utf8Bytes {
        self.typing_line(Some(viewer))
    }

    fn typing_frame_for_all(&self) -> Utf8Bytes {
        self.typing_line(None)
    }

    /// Everyone typing (but `viewer`), in name order so the line reads the same for all.
    fn typing_line(&self, viewer: Option<&UserId>) -> Utf8Bytes {
        let mut names: Vec<&DisplayName> = self
            .typing
            .iter()
            .filter(|(user, _)| Some(*user) != viewer)
            .map(|(_, typist)| &typist.name)
            .collect();
        names.sort_by_cached_key(|name| name.as_str().to_lowercase());
        render::typing(&names)
    }

    /// Sends the typing line: one render for the room, plus one for each typist (who does
    /// not see their own name).
    fn fan_out_typing(&mut self) -> u64 {
        self.fan_out_typing_after("")
    }

    /// Sends `before` (already rendered fragments) followed by the typing line, as one
    /// frame per distinct line.
    fn fan_out_typing_after(&mut self, before: &str) -> u64 {
        let everyone = Frame::text_joined([before, self.typing_frame_for_all().as_str()]);
        // A line of their own only for typists with sessions here (not those typing on
        // other nodes).
        let own: HashMap<UserId, Frame> = self
            .typing
            .keys()
            .filter(|user| self.users.contains_key(*user))
            .map(|user| {
                let line = self.typing_frame(user);
                (user.clone(), Frame::text_joined([before, line.as_str()]))
            })
            .collect();
        let mut evicted = 0;
        let mut gone = Vec::new();
        self.members.retain(|_, member| {
            let frame = own.get(&member.user).unwrap_or(&everyone);
            let keep = offer(member, frame, &mut evicted);
            if !keep {
                gone.push(member.user.clone());
            }
            keep
        });
        self.forget_members(gone);
        evicted
    }

    fn remember(&mut self, message: Rendered, limit: usize) {
        if self.history.len() >= limit {
            self.history.pop_front();
            self.has_older = true;
        }
        if limit > 0 {
            self.history.push_back(message);
        } else {
            self.has_older = true;
        }
        self.history_frame = None;
    }

    fn fan_out(&mut self, frame: &Utf8Bytes) -> u64 {
        self.fan_out_except(frame, None)
    }

    /// Frames `html` once and offers the same bytes to every member (but `except`); evicts
    /// those whose queue is full.
    fn fan_out_except(&mut self, html: &Utf8Bytes, except: Option<SessionId>) -> u64 {
        self.offer_all(&Frame::text(html.as_str()), except)
    }

    /// Offers one frame to every member (but `except`); evicts those whose queue is full.
    fn offer_all(&mut self, frame: &Frame, except: Option<SessionId>) -> u64 {
        let mut evicted = 0;
        let mut gone = Vec::new();
        self.members.retain(|id, member| {
            let keep = Some(*id) == except || offer(member, frame, &mut evicted);
            if !keep {
                gone.push(member.user.clone());
            }
            keep
        });
        self.forget_members(gone);
        evicted
    }

    /// Members removed by a fan-out (evicted, or already gone) leave presence at once: their
    /// sessions' own `leave` will find nothing to do.
    fn forget_members(&mut self, users: Vec<UserId>) {
        for user in users {
            if self.user_left(&user).is_some() {
                self.typing.remove(&user);
                self.counts_changed = true;
            }
        }
    }
}

/// Appends to a bounded queue of signals, dropping the oldest when full.
fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() >= SIGNALS_WAITING {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// Offers a frame to a member; `false` (remove it) when it is gone or too far behind.
fn offer(member: &Member, frame: &Frame, evicted: &mut u64) -> bool {
    match member.outlet.offer(frame) {
        Offered::Written | Offered::Queued => true,
        Offered::Full => {
            member.evicted.cancel();
            *evicted += 1;
            false
        }
        // The session is already ending; it will call `leave` too.
        Offered::Closed => false,
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::domain::MessageText;
    use crate::presence::{NodeId, NodePresence};

    fn stored(id: u64, room: &str, author: &str, text: &str) -> ChatMessage {
        ChatMessage {
            id,
            room: RoomName::parse(room).unwrap(),
            author: DisplayName::parse(author).unwrap(),
            sent_at: OffsetDateTime::now_utc(),
            text: MessageText::parse(text, 100).unwrap().unwrap(),
        }
    }

    fn name(n: &str) -> DisplayName {
        DisplayName::parse(n).unwrap()
    }

    fn hub_with(settings: HubSettings) -> (Hub, RoomName) {
        let hub = Hub::new(settings);
        let room = RoomName::general();
        hub.load(&room, &[], false);
        (hub, room)
    }

    /// A frame as the hub offered it, read back from a detached outlet.
    struct Received(bytes::Bytes);

    impl Received {
        fn as_str(&self) -> &str {
            std::str::from_utf8(crate::wire::unmasked_payload(&self.0)).unwrap()
        }
    }

    /// What the tests get back from joining: the membership and its outlet's queue.
    struct Joined {
        id: SessionId,
        evicted: CancellationToken,
        outbox: Outbox,
    }

    struct Outbox {
        outlet: Arc<Outlet>,
        received: VecDeque<bytes::Bytes>,
    }

    impl Outbox {
        fn try_recv(&mut self) -> Result<Received, ()> {
            self.received.extend(self.outlet.take_queued());
            self.received.pop_front().map(Received).ok_or(())
        }
    }

    fn join(
        hub: &Hub,
        room: &RoomName,
        user: UserId,
        name: DisplayName,
    ) -> Result<Joined, NotLoaded> {
        let outlet = Arc::new(Outlet::detached(hub.settings().send_queue));
        let membership = hub.join(room, user, name, Arc::clone(&outlet))?;
        Ok(Joined {
            id: membership.id,
            evicted: membership.evicted,
            outbox: Outbox {
                outlet,
                received: VecDeque::new(),
            },
        })
    }

    fn drain(joined: &mut Joined) -> String {
        let mut all = String::new();
        while let Ok(frame) = joined.outbox.try_recv() {
            all.push_str(frame.as_str());
        }
        all
    }

    #[test]
    fn joining_an_unloaded_room_is_refused() {
        let hub = Hub::new(HubSettings::default());
        let design = RoomName::parse("design").unwrap();
        assert_eq!(
            join(&hub, &design, UserId::generate(), name("a")).err(),
            Some(NotLoaded(design))
        );
    }

    #[test]
    fn a_newcomer_gets_history_presence_and_rooms_in_one_frame_then_live_messages() {
        let (hub, room) = hub_with(HubSettings {
            history_limit: 2,
            ..HubSettings::default()
        });
        hub.deliver(&[
            stored(1, "general", "a", "one"),
            stored(2, "general", "a", "two"),
            stored(3, "general", "a", "three"),
        ]);
        let mut member = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
        let first = member.outbox.try_recv().unwrap();
        let first = first.as_str();
        assert!(first.contains(r#"hx-swap-oob="innerHTML""#) && !first.contains(">one<"));
        assert!(first.contains("before=2"), "older messages can be loaded");
        assert!(
            first.contains(r#"<section id="presence""#) && first.contains(r#"<nav id="rooms""#)
        );
        assert!(member.outbox.try_recv().is_err(), "one frame");

        hub.deliver(&[
            stored(4, "general", "a", "four"),
            stored(5, "design", "a", "elsewhere"),
        ]);
        let live = drain(&mut member);
        assert!(live.contains(">four<") && !live.contains("elsewhere"));
    }

    #[test]
    fn every_member_gets_the_same_bytes() {
        let (hub, room) = hub_with(HubSettings::default());
        let mut a = join(&hub, &room, UserId::generate(), name("a")).unwrap();
        let mut b = join(&hub, &room, UserId::generate(), name("b")).unwrap();
        drain(&mut a);
        drain(&mut b);
        hub.deliver(&[stored(1, "general", "a", "shared")]);
        let from_a = a.outbox.try_recv().unwrap();
        let from_b = b.outbox.try_recv().unwrap();
        assert_eq!(
            from_a.as_str().as_ptr(),
            from_b.as_str().as_ptr(),
            "one render, shared"
        );
    }

    #[test]
    fn presence_is_per_user_and_tabs_count_once() {
        let (hub, room) = hub_with(HubSettings::default());
        let alice = UserId::generate();
        let one = join(&hub, &room, alice.clone(), name("alice")).unwrap();
        let two = join(&hub, &room, alice.clone(), name("alice")).unwrap();
        let _bob = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
        assert_eq!(hub.present(&room), [name("alice"), name("bob")]);
        assert_eq!(hub.room_counts()[0].online, 2);
        hub.leave(&room, one.id);
        assert_eq!(hub.present(&room).len(), 2, "alice still has a tab open");
        hub.leave(&room, two.id);
        assert_eq!(hub.present(&room), [name("bob")]);
        hub.rename(&UserId::generate(), &name("nobody"));
        assert_eq!(hub.present(&room), [name("bob")]);
    }

    #[tokio::test]
    async fn typing_is_throttled_hidden_from_the_typist_and_expires() {
        tokio::time::pause();
        let settings = HubSettings {
            typing_throttle: Duration::from_secs(2),
            typing_expiry: Duration::from_secs(5),
            ..HubSettings::default()
        };
        let (hub, room) = hub_with(settings);
        let mut alice = join(&hub, &room, UserId::generate(), name("alice")).unwrap();
        let mut bob = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
        drain(&mut alice);
        drain(&mut bob);

        let start = Instant::now();
        hub.typing(&room, alice.id, start);
        assert!(drain(&mut bob).contains(">alice is typing…<"));
        assert!(
            !drain(&mut alice).contains("alice is typing"),
            "not to herself"
        );

        hub.typing(&room, alice.id, start + Duration::from_secs(1));
        assert_eq!(drain(&mut bob), "", "throttled");
        hub.typing(&room, alice.id, start + Duration::from_secs(3));
        assert!(
            drain(&mut bob).contains("alice is typing"),
            "announced again after the throttle"
        );

        hub.tick(start + Duration::from_secs(7));
        assert!(
            !drain(&mut bob).contains(r#"id="typing""#),
            "renewed at 3 s, so nothing expires at 7 s"
        );
        hub.tick(start + Duration::from_secs(8) + Duration::from_millis(1));
        let expired = drain(&mut bob);
        assert!(
            expired.contains(r#"<p id="typing" class="typing" hx-swap-oob="true"></p>"#),
            "{expired}"
        );
    }

    #[test]
    fn a_full_outbox_evicts_without_blocking_the_others() {
        let (hub, room) = hub_with(HubSettings {
            send_queue: 2,
            ..HubSettings::default()
        });
        let slow = join(&hub, &room, UserId::generate(), name("slow")).unwrap(); // holds its first frame
        let mut fast = join(&hub, &room, UserId::generate(), name("fast")).unwrap();
        for i in 0..5 {
            drain(&mut fast);
            hub.deliver(&[stored(i, "general", "a", &format!("m{i}"))]);
        }
        assert!(slow.evicted.is_cancelled());
        assert!(!fast.evicted.is_cancelled());
        let stats = hub.stats();
        assert_eq!(
            (stats.connected, stats.slow_evictions, stats.messages_posted),
            (1, 1, 5)
        );
    }

    #[test]
    fn an_evicted_user_leaves_presence_and_the_counts_at_once() {
        let (hub, room) = hub_with(HubSettings {
            send_queue: 2,
            ..HubSettings::default()
        });
        let _slow = join(&hub, &room, UserId::generate(), name("slow")).unwrap();
        let mut fast = join(&hub, &room, UserId::generate(), name("fast")).unwrap();
        for i in 0..3 {
            drain(&mut fast);
            hub.deliver(&[stored(i, "general", "a", "m")]);
        }
        assert_eq!(hub.stats().slow_evictions, 1);
        assert_eq!(hub.present(&room), [name("fast")]);
        assert_eq!(hub.room_counts()[0].online, 1);
        hub.tick(Instant::now());
        let sent = drain(&mut fast);
        assert!(
            sent.contains(r#"<section id="presence""#) && !sent.contains(">slow<"),
            "{sent}"
        );
    }

    #[tokio::test]
    async fn no_typist_ever_sees_their_own_name() {
        tokio::time::pause();
        let (hub, room) = hub_with(HubSettings::default());
        let mut alice = join(&hub, &room, UserId::generate(), name("alice")).unwrap();
        let mut bob = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
        let mut carol = join(&hub, &room, UserId::generate(), name("carol")).unwrap();
        let now = Instant::now();
        hub.typing(&room, alice.id, now);
        hub.typing(&room, bob.id, now);
        assert!(drain(&mut carol).contains(">alice and bob are typing…<"));
        assert!(!drain(&mut alice).contains("alice and") && !drain(&mut bob).contains("and bob"));

        // Bob's message ends his typing; Alice, still typing, must not see herself.
        hub.deliver(&[stored(1, "general", "bob", "hi")]);
        let to_alice = drain(&mut alice);
        assert!(
            to_alice.contains(r#"<p id="typing" class="typing" hx-swap-oob="true"></p>"#),
            "{to_alice}"
        );
        assert!(drain(&mut carol).contains(">alice is typing…<"));
        assert!(drain(&mut bob).contains(">alice is typing…<"));
    }

    #[test]
    fn loading_many_rooms_nobody_joins_stays_bounded() {
        let hub = Hub::new(HubSettings {
            idle_rooms: 5,
            ..HubSettings::default()
        });
        for i in 0..50 {
            hub.load(
                &RoomName::parse(&format!("visited-{i}")).unwrap(),
                &[],
                false,
            );
        }
        assert!(hub.stats().rooms_loaded <= 5, "{:?}", hub.stats());
    }

    #[test]
    fn idle_rooms_leave_memory_beyond_the_limit() {
        let hub = Hub::new(HubSettings {
            idle_rooms: 1,
            ..HubSettings::default()
        });
        for room in ["a", "b", "c"] {
            let room = RoomName::parse(room).unwrap();
            hub.load(&room, &[], false);
            let member = join(&hub, &room, UserId::generate(), name("x")).unwrap();
            hub.leave(&room, member.id);
        }
        assert_eq!(hub.stats().rooms_loaded, 1);
    }

    #[test]
    fn a_join_that_leaves_the_listed_names_as_they_are_sends_only_the_count() {
        let (hub, room) = hub_with(HubSettings::default());
        // Far enough apart for the status pace of a 100-member room (10 ms).
        let mut clock = Instant::now();
        let mut later = || {
            clock += Duration::from_secs(1);
            clock
        };
        let mut first = join(&hub, &room, UserId::generate(), name("a000")).unwrap();
        let _others: Vec<Joined> = (1..render::PRESENCE_SHOWN)
            .map(|i| join(&hub, &room, UserId::generate(), name(&format!("a{i:03}"))).unwrap())
            .collect();
        hub.tick(later());
        assert!(drain(&mut first).contains(r#"<section id="presence""#));

        // Sorts after the hundred names shown: only the count changes.
        let _late = join(&hub, &room, UserId::generate(), name("zed")).unwrap();
        hub.tick(later());
        let update = drain(&mut first);
        assert!(!update.contains("<section"), "{update}");
        assert!(
            update.contains(
                r#"<span id="presence-count" class="count" hx-swap-oob="true">101</span>"#
            ) && update.contains(">and 1 more<"),
            "{update}"
        );

        // Sorts among them: the whole list again.
        let _early = join(&hub, &room, UserId::generate(), name("a")).unwrap();
        hub.tick(later());
        let update = drain(&mut first);
        assert!(update.contains(r#"<section id="presence""#), "{update}");
        assert!(
            update.contains(">a</span>") && !update.contains(">a099<"),
            "{update}"
        );
        assert!(update.contains(">and 2 more<"), "{update}");
    }

    const EXPIRY: Duration = Duration::from_secs(30);

    fn shared() -> (Hub, RoomName) {
        hub_with(HubSettings {
            share_presence: true,
            ..HubSettings::default()
        })
    }

    fn seat(room: &str, user: &UserId, n: &str) -> Seat {
        Seat {
            room: RoomName::parse(room).unwrap(),
            user: user.clone(),
            name: name(n),
        }
    }

    #[test]
    fn presence_and_the_room_list_are_the_union_over_nodes() {
        let (hub, room) = shared();
        let alice = UserId::generate();
        let mut here = join(&hub, &room, alice.clone(), name("alice")).unwrap();
        drain(&mut here);
        let other = NodeId::generate();
        hub.hear(Heard::Whole(NodePresence {
            node: other.clone(),
            seq: 1,
            expiry: EXPIRY,
            seats: vec![
                seat("general", &UserId::generate(), "bob"),
                // Alice has a tab there too: she counts once, under her name here.
                seat("general", &alice, "alice-there"),
                seat("design", &UserId::generate(), "carol"),
            ],
        }))
        .unwrap();
        assert_eq!(hub.present(&room), [name("alice"), name("bob")]);
        let counts: Vec<(String, usize)> = hub
            .room_counts()
            .into_iter()
            .map(|c| (c.room.to_string(), c.online))
            .collect();
        assert_eq!(counts, [("general".into(), 2), ("design".into(), 1)]);
        hub.tick(Instant::now() + Duration::from_secs(1));
        let update = drain(&mut here);
        assert!(
            update.contains(">bob<") && !update.contains("alice-there"),
            "{update}"
        );
        assert!(update.contains(r#"<nav id="rooms""#), "{update}");

        // The other node stops: its users go at once.
        hub.hear(Heard::Left { node: other }).unwrap();
        assert_eq!(hub.present(&room), [name("alice")]);
        assert_eq!(
            hub.room_counts().len(),
            1,
            "design is no room of the store's"
        );
    }

    #[test]
    fn local_presence_changes_are_taken_once_per_room() {
        let (hub, room) = shared();
        let alice = UserId::generate();
        let one = join(&hub, &room, alice.clone(), name("alice")).unwrap();
        let _two = join(&hub, &room, alice.clone(), name("alice")).unwrap();
        assert_eq!(
            hub.take_presence().unwrap(),
            [(room.clone(), vec![(alice.clone(), name("alice"))])]
        );
        assert!(hub.take_presence().unwrap().is_empty(), "taken");
        hub.leave(&room, one.id);
        assert!(
            hub.take_presence().unwrap().is_empty(),
            "a second tab leaving changes nothing"
        );
        hub.rename(&alice, &name("al"));
        assert_eq!(
            hub.take_presence().unwrap(),
            [(room.clone(), vec![(alice.clone(), name("al"))])]
        );
        assert_eq!(hub.take_signals().1, [(alice, name("al"))]);
        assert_eq!(hub.all_seats().len(), 1);

        // Without shared presence, nothing is kept for other nodes.
        let (alone, room) = hub_with(HubSettings::default());
        let _bob = join(&alone, &room, UserId::generate(), name("bob")).unwrap();
        alone.rename(&UserId::generate(), &name("x"));
        assert!(alone.take_presence().unwrap().is_empty());
        assert_eq!(alone.take_signals(), (Vec::new(), Vec::new()));
    }

    #[test]
    fn an_empty_room_is_kept_until_the_other_nodes_heard_it_emptied() {
        let hub = Hub::new(HubSettings {
            share_presence: true,
            idle_rooms: 0,
            ..HubSettings::default()
        });
        let design = RoomName::parse("design").unwrap();
        hub.load(&design, &[], false);
        let bob = UserId::generate();
        let member = join(&hub, &design, bob, name("bob")).unwrap();
        drop(hub.take_presence());
        hub.leave(&design, member.id);
        assert!(hub.is_loaded(&design), "its departure is untold");
        assert_eq!(hub.take_presence().unwrap(), [(design.clone(), Vec::new())]);
        hub.load(&RoomName::parse("other").unwrap(), &[], false);
        assert!(
            !hub.is_loaded(&design),
            "told: forgotten like any idle room"
        );
    }

    #[test]
    fn empty_rooms_waiting_to_be_told_are_bounded_and_then_everything_is_told_afresh() {
        let hub = Hub::new(HubSettings {
            share_presence: true,
            idle_rooms: 2,
            ..HubSettings::default()
        });
        // Visitors come and go through many rooms while nobody takes the news.
        for i in 0..UNTOLD_IDLE_ROOMS + 10 {
            let room = RoomName::parse(&format!("r{i}")).unwrap();
            hub.load(&room, &[], false);
            let member = join(&hub, &room, UserId::generate(), name("x")).unwrap();
            hub.leave(&room, member.id);
        }
        assert!(hub.stats().rooms_loaded <= 2 + UNTOLD_IDLE_ROOMS + 1);
        assert_eq!(hub.take_presence(), None, "lost: tell everything");
        assert!(hub.all_seats().is_empty());
        assert_eq!(
            hub.take_presence(),
            Some(Vec::new()),
            "told afresh, nothing untold"
        );
    }

    #[tokio::test]
    async fn typing_on_another_node_is_shown_here_and_ends_with_its_typist() {
        tokio::time::pause();
        let (hub, room) = shared();
        let mut bob = join(&hub, &room, UserId::generate(), name("bob")).unwrap();
        drain(&mut bob);
        let (other, carol) = (NodeId::generate(), UserId::generate());
        hub.hear(Heard::Whole(NodePresence {
            node: other.clone(),
            seq: 1,
            expiry: EXPIRY,
            seats: vec![seat("general", &carol, "carol")],
        }))
        .unwrap();
        // Someone no node reported present does not type here.
        let ghost = seat("general", &UserId::generate(), "ghost");
        hub.hear(Heard::Typing(vec![ghost])).unwrap();
        assert!(!drain(&mut bob).contains("ghost"));
        hub.hear(Heard::Typing(vec![seat("general", &carol, "carol")]))
            .unwrap();
        assert!(drain(&mut bob).contains(">carol is typing…<"));
        // Her node reports her gone: her typing goes with her.
        hub.hear(Heard::Changes {
            node: other.clone(),
            seq: 2,
            changes: vec![crate::presence::Change::Gone {
                room: room.clone(),
                user: carol.clone(),
            }],
        })
        .unwrap();
        assert!(
            drain(&mut bob).contains(r#"<p id="typing" class="typing" hx-swap-oob="true"></p>"#)
        );

        // Typing elsewhere also expires here, and is not told back to the others.
        hub.hear(Heard::Changes {
            node: other,
            seq: 3,
            changes: vec![crate::presence::Change::Here(seat(
                "general", &carol, "carol",
            ))],
        })
        .unwrap();
        hub.hear(Heard::Typing(vec![seat("general", &carol, "carol")]))
            .unwrap();
        assert!(drain(&mut bob).contains(">carol is typing…<"));
        hub.tick(Instant::now() + hub.settings().typing_expiry);
        assert!(
            drain(&mut bob).contains(r#"<p id="typing" class="typing" hx-swap-oob="true"></p>"#)
        );
        assert!(hub.take_signals().0.is_empty());
    }

    #[tokio::test]
    async fn local_typing_is_told_to_the_other_nodes_as_throttled() {
        tokio::time::pause();
        let (hub, room) = shared();
        let alice = join(&hub, &room, UserId::generate(), name("alice")).unwrap();
        let now = Instant::now();
        hub.typing(&room, alice.id, now);
        hub.typing(&room, alice.id, now + Duration::from_millis(500));
        let (typing, _) = hub.take_signals();
        assert_eq!(typing.len(), 1, "throttled");
        assert_eq!(typing[0].name, name("alice"));
    }

    /// Whether the broker would wake up now.
    async fn has_news(hub: &Hub) -> bool {
        tokio::time::timeout(Duration::ZERO, hub.news())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn every_local_presence_change_wakes_the_broker() {
        let (hub, room) = shared();
        assert!(!has_news(&hub).await);
        let alice = UserId::generate();
        let member = join(&hub, &room, alice.clone(), name("alice")).unwrap();
        assert!(has_news(&hub).await, "a join");
        assert!(!has_news(&hub).await, "one wake-up per news");
        hub.rename(&alice, &name("al"));
        assert!(has_news(&hub).await, "a rename");
        hub.hear(Heard::Renamed(vec![(alice.clone(), name("al2"))]))
            .unwrap();
        assert!(
            has_news(&hub).await,
            "a rename from another node changes presence here"
        );
        hub.typing(&room, member.id, Instant::now());
        assert!(has_news(&hub).await, "typing");
        hub.leave(&room, member.id);
        assert!(has_news(&hub).await, "a departure");

        let (alone, room) = hub_with(HubSettings::default());
        let member = join(&alone, &room, UserId::generate(), name("bob")).unwrap();
        alone.leave(&room, member.id);
        assert!(!has_news(&alone).await, "alone, nobody to tell");
    }

    #[test]
    fn a_rename_on_another_node_renames_the_sessions_here() {
        let (hub, room) = shared();
        let alice = UserId::generate();
        let member = join(&hub, &room, alice.clone(), name("alice")).unwrap();
        drop(hub.take_presence());
        hub.hear(Heard::Renamed(vec![(alice.clone(), name("al"))]))
            .unwrap();
        assert_eq!(hub.name_of(&room, member.id), Some(name("al")));
        assert_eq!(
            hub.take_presence().unwrap(),
            [(room, vec![(alice, name("al"))])]
        );
        assert!(hub.take_signals().1.is_empty(), "not told back");
    }

    #[tokio::test]
    async fn a_silent_nodes_users_leave_at_the_tick_after_the_expiry() {
        tokio::time::pause();
        let (hub, room) = shared();
        let start = Instant::now();
        let other = NodeId::generate();
        hub.hear(Heard::Whole(NodePresence {
            node: other.clone(),
            seq: 4,
            expiry: EXPIRY,
            seats: vec![seat("general", &UserId::generate(), "bob")],
        }))
        .unwrap();
        assert_eq!(
            hub.hear(Heard::Alive {
                node: other.clone(),
                seq: 5,
                expiry: EXPIRY / 2,
            }),
            Err(Gap),
            "a report was missed: read the whole again"
        );
        // The heartbeat renewed the node, under the expiry it asks for now.
        let expiry = EXPIRY / 2;
        hub.tick(start + expiry - Duration::from_millis(1));
        assert_eq!(hub.present(&room), [name("bob")]);
        hub.tick(start + expiry);
        assert!(hub.present(&room).is_empty());
        assert!(
            hub.metrics().encode().contains("hubbub_cluster_nodes 0"),
            "{}",
            hub.metrics().encode()
        );
    }

    #[test]
    fn status_updates_are_paced_by_room_size() {
        let (hub, room) = hub_with(HubSettings::default());
        let mut watcher = join(&hub, &room, UserId::generate(), name("watcher")).unwrap();
        let _crowd: Vec<Joined> = (0..999)
            .map(|i| join(&hub, &room, UserId::generate(), name(&format!("u{i:03}"))).unwrap())
            .collect();
        let start = Instant::now();
        hub.tick(start);
        drain(&mut watcher);

        // 1,000 members: at most one status update per 100 ms.
        let _late = join(&hub, &room, UserId::generate(), name("late")).unwrap();
        hub.tick(start + Duration::from_millis(50));
        assert_eq!(drain(&mut watcher), "", "too soon after the last update");
        hub.tick(start + Duration::from_millis(101));
        let update = drain(&mut watcher);
        assert!(update.contains(">1001<"), "{update}");
        // The room list's count rode along in the same update.
        assert!(update.contains(r#"<nav id="rooms""#), "{update}");
    }
}
