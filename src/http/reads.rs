//! What a page needs to count unread messages: the reader's mark in the room it shows
//! (where the "New messages" line goes), and, on each connect, every room's unread count
//! with the room counters it is relative to (`hub::activity`).
//!
//! Both add the marks the commit writer has not stored yet, so a page loaded right after
//! reading elsewhere starts where the reader left off. Neither keeps a page from loading:
//! a store that fails here costs the counts, logged, not the chat.

use super::AppState;
use crate::domain::{RoomName, UserId};
use crate::render::{self, Html};
use crate::store::Unread;

/// The reader's mark in `room`, if they ever read it.
pub(super) async fn mark_in(state: &AppState, user: &UserId, room: &RoomName) -> Option<u64> {
    let stored = match state.store.read_mark(user, room).await {
        Ok(stored) => stored,
        Err(err) => {
            tracing::warn!(error = %err, "reading a read mark failed");
            None
        }
    };
    let unsaved = state
        .committer
        .unsaved_marks(user)
        .into_iter()
        .find(|(marked, _)| marked == room)
        .map(|(_, mark)| mark);
    stored.max(unsaved)
}

/// Every room the reader has read, with its unread count and its counter now: the
/// fragment a session sends after joining.
pub(super) async fn snapshot(state: &AppState, user: &UserId) -> Option<Html> {
    let counters = state.hub.counters();
    let mut rooms = match state.store.unread(user, counters.upto).await {
        Ok(rooms) => rooms,
        Err(err) => {
            tracing::warn!(error = %err, "counting unread messages failed");
            return None;
        }
    };
    for (room, mark) in state.committer.unsaved_marks(user) {
        let known = rooms.iter().position(|unread| unread.room == room);
        if known.is_some_and(|at| rooms[at].last_read >= mark) {
            continue;
        }
        // The furthest mark is not stored yet: count from it where the room's newest
        // messages are in memory (a room read a moment ago usually is).
        let count = state.hub.unread_after(&room, mark, user);
        match known {
            Some(at) => {
                rooms[at].last_read = mark;
                rooms[at].count = count.unwrap_or(rooms[at].count);
            }
            None => rooms.push(Unread {
                room,
                last_read: mark,
                count: count.unwrap_or(0),
            }),
        }
    }
    let counter = |room: &RoomName| {
        counters
            .counts
            .iter()
            .find(|(counted, _)| counted == room)
            .map_or(0, |(_, count)| *count)
    };
    let shown: Vec<(&RoomName, u32, u64)> = rooms
        .iter()
        .map(|unread| (&unread.room, unread.count, counter(&unread.room)))
        .collect();
    Some(render::unread(&shown, true))
}
