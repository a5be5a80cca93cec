//! One room: its members, the newest messages for newcomers, who is here and who is typing,
//! behind a lock of its own.
//!
//! Everything a room does happens under its lock, in short synchronous sections: a join
//! (register, and offer the newcomer the room's state), a delivery (keep the messages and
//! send them), a departure, a typing event, a tick. Sending goes through [`super::fanout`]:
//! a small room is written to at once, a big one through its queue, which a drainer writes
//! out without the lock. What a section changes beyond the room (evictions to count, the
//! room list to redraw, news for the other nodes, a drainer to start) is gathered in
//! [`Effects`] and acted on by the hub once the lock is released.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hubbub_wire::Frame;
use tokio::time::Instant;

use super::activity::Shown;
use super::fanout::{self, Members, Outgoing, Queue, Target, Written};
use super::nodes::Nodes;
use super::presence::Presence;
use super::typing::Typing;
use super::{HubSettings, NotLoaded, SessionId};
use crate::cluster::Seat;
use crate::domain::{DisplayName, RoomName, UserId};
use crate::outlet::Outlet;
use crate::render::{self, Html, Rendered};

/// Status updates (presence, room list) reach a room at most once per this much time per
/// member (and never more often than the server's upkeep tick): 100 µs × 19,000 members is
/// one update every 1.9 s. At roughly 10 µs of kernel time per write on loopback, that
/// caps status traffic at about a tenth of a core whatever the room's size.
const STATUS_PACE_PER_MEMBER: Duration = Duration::from_micros(100);

/// A room in memory. Shared by the directory, the sessions' lookups and its drainer.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) name: RoomName,
    state: Mutex<RoomState>,
}

/// What a room's lock guards.
#[derive(Debug)]
pub(super) struct RoomState {
    /// The directory dropped the room: a session that looked it up just before finds it
    /// retired and loads it again.
    retired: bool,
    history: History,
    pub(super) members: Members,
    pub(super) presence: Presence,
    pub(super) typing: Typing,
    pub(super) queue: Queue,
    /// When this room may next get a status update; see [`STATUS_PACE_PER_MEMBER`].
    status_due: Instant,
    /// The room list's generation this room's members last got.
    room_list_seen: u64,
    /// The room counters' render (`super::activity`) this room's members last got.
    activity_seen: u64,
}

/// The newest messages, rendered, and the frame a newcomer gets for them.
#[derive(Debug)]
struct History {
    /// The last `history_limit` messages, already rendered, oldest first.
    messages: VecDeque<Rendered>,
    /// Whether the store holds messages older than these: the history frame then starts
    /// with a "load older" element instead of "start of conversation".
    has_older: bool,
    /// The connect frame for the current history, built on the first connect after a
    /// change, so a burst of reconnects costs one render, not one each.
    frame: Option<Html>,
}

/// What a section under a room's lock leaves for the hub to do once it is released.
#[derive(Debug, Default)]
#[must_use]
pub(super) struct Effects {
    /// Members evicted because they fell behind.
    pub(super) evicted: u64,
    /// The room's queue has work and no drainer.
    pub(super) start_drainer: bool,
    /// The room's backlog went over the bound, or came back under it.
    pub(super) backlogged: bool,
    pub(super) relieved: bool,
    /// Members that left the room (leaving, or found gone by a fan-out).
    pub(super) departed: usize,
    /// A user arrived or left for good: the room list's counts changed.
    pub(super) counts_changed: bool,
    /// This node's presence changed: the other nodes are to hear of it.
    pub(super) tell_others: bool,
}

impl Room {
    /// A room with its newest messages (oldest first); `has_older` says whether the store
    /// holds more before them.
    pub(super) fn new(
        name: RoomName,
        messages: Vec<Rendered>,
        has_older: bool,
        settings: &HubSettings,
        (room_list_seen, activity_seen): (u64, u64),
    ) -> Self {
        let mut history = History {
            messages: VecDeque::with_capacity(settings.history_limit),
            has_older,
            frame: None,
        };
        for message in messages {
            history.remember(message, settings.history_limit);
        }
        Self {
            name,
            state: Mutex::new(RoomState {
                retired: false,
                history,
                members: Members::default(),
                presence: Presence::new(settings.share_presence),
                typing: Typing::default(),
                queue: Queue::default(),
                status_due: Instant::now(),
                room_list_seen,
                activity_seen,
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, RoomState> {
        // Every update is a push, a pop or an insert: a panic while holding the lock cannot
        // leave the room half-updated in a way that matters to readers, so keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A newcomer, as [`RoomState::join`] takes it.
pub(super) struct Joining<'a> {
    pub(super) id: SessionId,
    pub(super) user: UserId,
    pub(super) name: DisplayName,
    pub(super) outlet: Arc<Outlet>,
    /// The room list, for the first frame.
    pub(super) room_list: &'a Html,
    /// Whether "alice joined" goes into the log.
    pub(super) notices: bool,
}

impl RoomState {
    /// Adds a session and offers it the room's state as its first frame: the history
    /// (which replaces the page's message list), presence, typing and the room list.
    pub(super) fn join(
        &mut self,
        room: &RoomName,
        nodes: &Nodes,
        joining: Joining<'_>,
        fx: &mut Effects,
    ) -> Result<(), NotLoaded> {
        if self.retired {
            return Err(NotLoaded(room.clone()));
        }
        let Joining {
            id,
            user,
            name,
            outlet,
            room_list,
            notices,
        } = joining;
        let arrived = self.presence.arrive(&user, &name);
        let presence = nodes.with_room(room, |others| self.presence.frame(others));
        let first = Frame::text_joined([
            self.history.frame(room).as_str(),
            presence.as_str(),
            self.typing.line(Some(&user)).as_str(),
            room_list.as_str(),
        ]);
        // A fresh outlet always has room for its first frame.
        let _ = outlet.offer(&first);
        self.members.insert(Target { id, user, outlet });
        if arrived {
            fx.counts_changed = true;
            fx.tell_others = true;
            if notices {
                let mut out = Outgoing::shared(vec![render::event(&format!("{name} joined"))]);
                out.skip = Some(id);
                self.send(out, fx);
            }
        }
        Ok(())
    }

    /// Removes a session; `false` if it was not here (already evicted, or never joined).
    pub(super) fn leave(&mut self, id: SessionId, notices: bool, fx: &mut Effects) -> bool {
        let Some(member) = self.members.remove(id) else {
            return false;
        };
        fx.departed += 1;
        if let Some(name) = self.presence.depart(&member.user) {
            if self.typing.remove(&member.user) {
                self.send_typing(Vec::new(), fx);
            }
            if notices {
                self.send(
                    Outgoing::shared(vec![render::event(&format!("{name} left"))]),
                    fx,
                );
            }
            fx.counts_changed = true;
            fx.tell_others = true;
        }
        true
    }

    /// The name a session currently posts under.
    pub(super) fn name_of(&self, id: SessionId) -> Option<DisplayName> {
        let member = self.members.get(id)?;
        self.presence.name_of(&member.user).cloned()
    }

    /// Keeps stored messages (in commit order) in the history and sends them; a message
    /// ends its author's "is typing" in the same frame, so the line never lags behind it.
    /// `true` when they were written at once (not queued for the drainer).
    pub(super) fn deliver(
        &mut self,
        messages: Vec<Rendered>,
        authors: &[&DisplayName],
        limit: usize,
        fx: &mut Effects,
    ) -> bool {
        let fragments: Vec<Html> = messages.iter().map(|m| m.fragment().clone()).collect();
        let mut out = if self.typing.end_authors(authors) {
            let presence = &self.presence;
            self.typing
                .outgoing(fragments, |user| presence.is_here(user))
        } else {
            Outgoing::shared(fragments)
        };
        out.messages = messages.len();
        let inline = !self.queue.is_busy() && self.members.len() <= fanout::INLINE_MEMBERS;
        self.send(out, fx);
        for message in messages {
            if message.replaces {
                self.history.replace(message);
            } else {
                self.history.remember(message, limit);
            }
        }
        inline
    }

    /// A session's user is typing; the seat to tell other nodes of when it is announced.
    pub(super) fn typing(
        &mut self,
        room: &RoomName,
        id: SessionId,
        now: Instant,
        settings: &HubSettings,
        fx: &mut Effects,
    ) -> Option<Seat> {
        let user = self.members.get(id)?.user.clone();
        let name = self.presence.name_of(&user)?.clone();
        let announce = self.typing.keystroke(
            &user,
            &name,
            now,
            settings.typing_throttle,
            settings.typing_expiry,
        );
        if !announce {
            return None;
        }
        self.send_typing(Vec::new(), fx);
        Some(Seat {
            room: room.clone(),
            user,
            name,
        })
    }

    /// `user` took a new name: presence and typing show it at once.
    pub(super) fn rename(&mut self, user: &UserId, name: &DisplayName, fx: &mut Effects) {
        if !self.presence.rename(user, name) {
            return;
        }
        fx.tell_others = true;
        if self.typing.rename(user, name) {
            self.send_typing(Vec::new(), fx);
        }
    }

    /// Someone on another node types here (their node reported them present: checked by
    /// the caller).
    pub(super) fn typing_elsewhere(
        &mut self,
        user: UserId,
        name: DisplayName,
        until: Instant,
        now: Instant,
    ) {
        self.typing.elsewhere(user, name, until, now);
    }

    /// Other nodes' users here changed: presence is sent at the next tick, and a typist now
    /// on no node stops typing.
    pub(super) fn others_changed(&mut self, room: &RoomName, nodes: &Nodes, fx: &mut Effects) {
        self.presence.others_changed();
        let presence = &self.presence;
        let stopped = nodes.with_room(room, |others| {
            self.typing.retain(|user| {
                presence.is_here(user) || others.is_some_and(|o| o.contains_key(user))
            })
        });
        if stopped {
            self.send_typing(Vec::new(), fx);
        }
    }

    /// Upkeep: expires typing, and sends presence, the room list and the other rooms'
    /// counters where they changed, paced by the room's size.
    pub(super) fn tick(
        &mut self,
        room: &RoomName,
        now: Instant,
        (room_list, activity): (&(Html, u64), Option<&Shown>),
        nodes: &Nodes,
        fx: &mut Effects,
    ) {
        if self.typing.expire(now) {
            self.send_typing(Vec::new(), fx);
        }
        let (list, generation) = room_list;
        let list_stale = self.room_list_seen != *generation;
        let activity = activity.filter(|shown| shown.news_for(room, self.activity_seen));
        if now < self.status_due || !(self.presence.is_dirty() || list_stale || activity.is_some())
        {
            return;
        }
        let mut parts = Vec::with_capacity(3);
        if let Some(shown) = activity {
            self.activity_seen = shown.generation;
            parts.push(shown.frame.clone());
        }
        if self.presence.is_dirty() {
            parts.push(nodes.with_room(room, |others| self.presence.update(others)));
        }
        if list_stale {
            self.room_list_seen = *generation;
            parts.push(list.clone());
        }
        let members = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        self.status_due = now + STATUS_PACE_PER_MEMBER.saturating_mul(members);
        self.send(Outgoing::shared(parts), fx);
    }

    /// The drainer wrote a job: members it found gone leave.
    pub(super) fn written(&mut self, written: Written, fx: &mut Effects) {
        fx.evicted += written.evicted;
        fx.relieved |= self.queue.done(written.messages);
        self.forget(written.gone, fx);
    }

    /// Retires the room if nobody is in it (and, unless `untold_too`, the other nodes
    /// know it emptied): a session that looked it up must load it afresh.
    pub(super) fn retire_if_idle(&mut self, untold_too: bool) -> bool {
        if !self.members.is_empty() || (self.presence.is_untold() && !untold_too) {
            return false;
        }
        self.retired = true;
        true
    }

    /// How many of the kept messages after `mark` are unread for `user` (not theirs, not
    /// deleted), and how many of those mention `key`: exact when the mark is among them,
    /// a lower bound when it is older.
    pub(super) fn unread_after(&self, mark: u64, user: &UserId, key: &str) -> (u32, u32) {
        let (mut unread, mut named) = (0_u32, 0_u32);
        for m in &self.history.messages {
            if m.id > mark && !m.deleted && m.author_id.as_ref() != Some(user) {
                unread = unread.saturating_add(1);
                named = named.saturating_add(u32::from(m.mentions.iter().any(|k| k == key)));
            }
        }
        (unread, named)
    }

    /// The message list's contents for a freshly served page.
    pub(super) fn history_html(&self, room: &RoomName) -> String {
        render::history_inner(room, &self.history.messages, self.history.has_older)
    }

    /// Sends `before` followed by the typing line (a line of their own for typists here).
    pub(super) fn send_typing(&mut self, before: Vec<Html>, fx: &mut Effects) {
        let presence = &self.presence;
        let typing_only = before.is_empty();
        let mut out = self.typing.outgoing(before, |user| presence.is_here(user));
        out.typing_only = typing_only;
        self.send(out, fx);
    }

    fn send(&mut self, out: Outgoing, fx: &mut Effects) {
        let sent = self.queue.send(&mut self.members, out);
        fx.evicted += sent.evicted;
        fx.start_drainer |= sent.start_drainer;
        fx.backlogged |= sent.backlogged;
        self.forget(sent.gone, fx);
    }

    /// Members a fan-out found gone (evicted, or already closing) leave presence at once:
    /// their sessions' own `leave` finds nothing to do.
    fn forget(&mut self, gone: Vec<Target>, fx: &mut Effects) {
        let mut typist_gone = false;
        for target in fanout::forget_gone(&mut self.members, gone) {
            fx.departed += 1;
            if self.presence.depart(&target.user).is_some() {
                typist_gone |= self.typing.remove(&target.user);
                fx.counts_changed = true;
                fx.tell_others = true;
            }
        }
        // As when they leave: nobody is left reading that they are typing.
        if typist_gone {
            self.send_typing(Vec::new(), fx);
        }
    }
}

impl History {
    fn remember(&mut self, message: Rendered, limit: usize) {
        if self.messages.len() >= limit {
            self.messages.pop_front();
            self.has_older = true;
        }
        if limit > 0 {
            self.messages.push_back(message);
        } else {
            self.has_older = true;
        }
        self.frame = None;
    }

    /// A later version of a message: it takes the earlier one's place, if that is among
    /// the newest kept (an older message is read from the store as it is now).
    fn replace(&mut self, message: Rendered) {
        // The replies to it that are kept show its new quote.
        if let Some(quote) = &message.quote {
            for reply in self
                .messages
                .iter_mut()
                .filter(|m| m.quote_of == Some(message.id))
            {
                *reply = reply.with_quote(quote);
                self.frame = None;
            }
        }
        if let Some(kept) = self.messages.iter_mut().rev().find(|m| m.id == message.id) {
            *kept = message;
            self.frame = None;
        }
    }

    fn frame(&mut self, room: &RoomName) -> Html {
        let (messages, has_older) = (&self.messages, self.has_older);
        self.frame
            .get_or_insert_with(|| render::history_frame(room, messages, has_older))
            .clone()
    }
}
