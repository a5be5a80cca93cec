//! What readers hear of rooms they are not looking at: each room's counter (for unread
//! counts), a room read on another page, and a message that mentions them. Each goes to
//! the reader's own sessions only, found through the rooms' members, and is written with
//! no lock held.

use std::sync::Arc;

use hubbub_wire::Frame;

use super::activity::Counters;
use super::{Hub, SessionId};
use crate::cluster::Read;
use crate::domain::{ChatMessage, RoomName, UserId};
use crate::outlet::{Ending, Offered, Outlet};
use crate::render::{self, Rendered, UnreadLine};

impl Hub {
    /// Each room's message counter now, and the newest position they cover: what a page's
    /// unread counts start from.
    pub fn counters(&self) -> Counters {
        self.shared.activity.counters()
    }

    /// A user has read `room` up to message `mark` (through session `reader`): the user's
    /// other pages hear how many messages are unread there now, so a room read on one tab
    /// or device stops counting on the others: at once on this node, through the broker
    /// on the others (which may not have the room in memory, so they are told the counts).
    pub fn read(
        &self,
        (user, key): (&UserId, &str),
        room: &RoomName,
        reader: SessionId,
        mark: u64,
    ) {
        let Some(counts) = self.unread_after(room, mark, user, key) else {
            return;
        };
        self.tell_read(user, room, Some(reader), counts);
        self.shared.nodes.read(Read {
            user: user.clone(),
            room: room.clone(),
            unread: counts.0,
            mentions: counts.1,
        });
    }

    /// A user read a room on another node: their pages here hear of it.
    pub(super) fn read_elsewhere(&self, read: &Read) {
        self.tell_read(&read.user, &read.room, None, (read.unread, read.mentions));
    }

    /// Tells `user`'s sessions on this node but `reader` that `room` has `unread` messages
    /// for them now, `mentions` of them mentioning them.
    fn tell_read(
        &self,
        user: &UserId,
        room: &RoomName,
        reader: Option<SessionId>,
        (unread, mentions): (u32, u32),
    ) {
        let mut outlets = Vec::new();
        // A statement of its own: the directory's lock is not held over the rooms'.
        let rooms = self.directory().rooms();
        for entry in rooms {
            let state = entry.lock();
            // Presence counts the user's sessions in each room: only where there is one
            // besides the reader are the members walked (a big room's are many, and every
            // reader in it reads about once a second).
            let here = state.presence.sessions_of(user);
            let others = if entry.name == *room && reader.is_some() {
                here.saturating_sub(1)
            } else {
                here
            };
            if others == 0 {
                continue;
            }
            outlets.extend(
                state
                    .members
                    .of_user(user)
                    .filter(|target| Some(target.id) != reader)
                    .map(|target| Arc::clone(&target.outlet)),
            );
        }
        if outlets.is_empty() {
            return;
        }
        let line = UnreadLine {
            room,
            unread,
            counter: self.shared.activity.count_of(room),
            mentions,
            // Unchanged: the page keeps what it was told.
            notify: "",
        };
        let frame = Frame::text(render::unread(&[line], false).as_str());
        offer_all(outlets, &frame);
    }

    /// What a delivered batch (by room: its messages and their renders, all at or below
    /// position `upto`) changes for readers elsewhere: the rooms' counters, and the
    /// mentions its new messages make.
    pub(super) fn tell_readers(
        &self,
        batch: &[(&RoomName, Vec<&ChatMessage>, Vec<Rendered>)],
        upto: u64,
    ) {
        for (room, messages, rendered) in batch {
            let new = messages.iter().filter(|m| !m.is_change()).count() as u64;
            self.shared.activity.count(room, new, upto);
            for (message, rendered) in messages.iter().zip(rendered) {
                if !rendered.mentions.is_empty() && !message.is_change() {
                    self.mentioned(room, message, &rendered.mentions);
                }
            }
        }
    }

    /// A message in `room` mentions `keys`: the users on this node they name, but its
    /// author, hear of it on their pages in other rooms (where they do not see it arrive).
    fn mentioned(&self, room: &RoomName, message: &ChatMessage, keys: &[String]) {
        let mut outlets = Vec::new();
        // A statement of its own: the directory's lock is not held over the rooms'.
        let rooms = self.directory().rooms();
        for entry in rooms {
            if entry.name == *room {
                continue;
            }
            let state = entry.lock();
            let mut named: Vec<&UserId> = keys
                .iter()
                .flat_map(|key| state.presence.named_by(key))
                .filter(|user| message.author_id.as_ref() != Some(*user))
                .collect();
            named.sort_unstable();
            named.dedup();
            for user in named {
                outlets.extend(
                    state
                        .members
                        .of_user(user)
                        .map(|target| Arc::clone(&target.outlet)),
                );
            }
        }
        if outlets.is_empty() {
            return;
        }
        let news = render::mention_news(room, message.id, &message.author, message.text.as_str());
        offer_all(outlets, &Frame::text(news.as_str()));
    }

    /// How many kept messages of a loaded room after `mark` are unread for `user`, and how
    /// many of those mention `key`; `None` when the room is not in memory.
    pub fn unread_after(
        &self,
        room: &RoomName,
        mark: u64,
        user: &UserId,
        key: &str,
    ) -> Option<(u32, u32)> {
        Some(self.room(room).ok()?.lock().unread_after(mark, user, key))
    }

    /// The newest position delivered on this node.
    pub fn delivered_upto(&self) -> u64 {
        self.shared.activity.upto()
    }
}

/// Offers one frame to each outlet; a full one means its session is too far behind, as
/// anywhere else.
fn offer_all(outlets: Vec<Arc<Outlet>>, frame: &Frame) {
    for outlet in outlets {
        if matches!(outlet.offer(frame), Offered::Full) {
            outlet.end(Ending::Evicted);
        }
    }
}
