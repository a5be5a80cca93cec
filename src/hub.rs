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
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{ChatMessage, DisplayName, RoomName, UserId};
use crate::metrics::Metrics;
use crate::outlet::{Offered, Outlet};
use crate::render::{self, Rendered};
use crate::wire::Frame;

/// Status updates (presence, room list) reach a room at most once per this much time per
/// member (and never more often than the server's upkeep tick): 100 µs × 19,000 members is
/// one update every 1.9 s. At roughly 10 µs of kernel time per write on loopback, that
/// caps status traffic at about a tenth of a core whatever the room's size.
const STATUS_PACE_PER_MEMBER: Duration = Duration::from_micros(100);

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
    typing: BTreeMap<UserId, Typist>,
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
        let entry = state
            .rooms
            .get_mut(room)
            .ok_or_else(|| NotLoaded(room.clone()))?;
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
            entry.presence_frame().as_str(),
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
        self.count_evictions(evicted_now);
        Ok(Membership {
            id,
            room: room.clone(),
            evicted,
        })
    }

    /// Removes a session. Calling it for a session that was evicted is harmless.
    pub fn leave(&self, room: &RoomName, id: SessionId) {
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
                user,
                Typist {
                    name,
                    until,
                    announced: now,
                },
            );
        }
        let evicted = entry.fan_out_typing();
        drop(state);
        self.count_evictions(evicted);
    }

    /// A user took a new name: their sessions post under it from now on, and presence and
    /// typing show it at once.
    pub fn rename(&self, user: &UserId, name: &DisplayName) {
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
        for entry in state.rooms.values_mut() {
            let before = entry.typing.len();
            entry.typing.retain(|_, typist| typist.until > now);
            if entry.typing.len() != before {
                evicted += entry.fan_out_typing();
            }
            if now < entry.status_due || !(entry.presence_dirty || entry.room_list_stale) {
                continue;
            }
            let presence = if entry.presence_dirty {
                entry.presence_update()
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

    /// Who is in a room, one entry per user, sorted.
    pub fn present(&self, room: &RoomName) -> Vec<DisplayName> {
        self.lock()
            .rooms
            .get(room)
            .map(Room::present)
            .unwrap_or_default()
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

    fn count_evictions(&self, evicted: u64) {
        if evicted > 0 {
            self.inner.metrics.evicted(evicted);
            self.inner.evictions.fetch_add(evicted, Ordering::Relaxed);
            tracing::warn!(evicted, "disconnected clients that fell behind");
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
        let general = RoomName::general();
        let mut counts: Vec<RoomCount> = names
            .into_iter()
            .map(|room| RoomCount {
                room: room.clone(),
                online: self.rooms.get(room).map_or(0, |r| r.users.len()),
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

    /// Drops rooms nobody is in once there are more than `keep` of them.
    fn forget_idle_rooms(&mut self, keep: usize) {
        if self.rooms.len() <= keep {
            return;
        }
        let idle: Vec<RoomName> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.members.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in idle.iter().skip(keep) {
            self.rooms.remove(name);
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
    fn presence_changed(&mut self) {
        self.presence_dirty = true;
    }

    fn present(&self) -> Vec<DisplayName> {
        let mut names: Vec<DisplayName> = self.users.values().map(|p| p.name.clone()).collect();
        names.sort_by_cached_key(|name| name.as_str().to_lowercase());
        names
    }

    /// What members need to bring presence up to date: only the count when the names shown
    /// are the same, the whole list otherwise. Newcomers get the whole list from then on.
    fn presence_update(&mut self) -> Utf8Bytes {
        self.presence_dirty = false;
        let (listed, total) = self.listed();
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

    /// The first [`render::PRESENCE_SHOWN`] names in list order, and how many are here.
    /// Selecting them is linear in the room's size; only those few are sorted.
    fn listed(&self) -> (Vec<DisplayName>, usize) {
        let mut keyed: Vec<(String, &DisplayName)> = self
            .users
            .values()
            .map(|p| (p.name.as_str().to_lowercase(), &p.name))
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
    fn presence_frame(&mut self) -> Utf8Bytes {
        if let Some(frame) = &self.presence_frame {
            return frame.clone();
        }
        let (listed, total) = self.listed();
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
        let own: HashMap<UserId, Frame> = self
            .typing
            .keys()
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
