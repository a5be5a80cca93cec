//! The room list with its online counts: rendered once per change (at the upkeep tick, so
//! a burst of joins costs one render) and shared by every room's status update and every
//! newcomer's first frame.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::Hub;
use crate::domain::RoomName;
use crate::render::{self, Html, RoomCount};

#[derive(Debug, Default)]
pub(super) struct RoomList {
    /// A count or the set of rooms changed since the list was last rendered.
    dirty: AtomicBool,
    /// Never held while counting (which locks rooms): only to read or store the frame.
    rendered: Mutex<Rendered>,
}

#[derive(Debug, Default)]
struct Rendered {
    /// The list as last rendered, for newcomers' first frame (at most one tick old).
    frame: Option<Html>,
    /// Counts up with every render, so each room can tell whether its members have it.
    generation: u64,
}

impl RoomList {
    pub(super) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// The current list and its generation, rendered now if it never was.
    pub(super) fn current(&self, hub: &Hub) -> (Html, u64) {
        {
            let rendered = self.lock();
            if let Some(frame) = &rendered.frame {
                return (frame.clone(), rendered.generation);
            }
        }
        let frame = render::room_list(&counts(hub), true);
        let mut rendered = self.lock();
        let frame = rendered.frame.get_or_insert(frame).clone();
        (frame, rendered.generation)
    }

    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Renders the list afresh if it changed; the list to send either way.
    pub(super) fn refresh(&self, hub: &Hub) -> (Html, u64) {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return self.current(hub);
        }
        let frame = render::room_list(&counts(hub), true);
        let mut rendered = self.lock();
        rendered.generation += 1;
        rendered.frame = Some(frame.clone());
        (frame, rendered.generation)
    }

    fn lock(&self) -> MutexGuard<'_, Rendered> {
        self.rendered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Every known or occupied room with how many users are in it (on every node): `general`
/// first, the rest by name.
pub(super) fn counts(hub: &Hub) -> Vec<RoomCount> {
    let (known, rooms) = {
        let directory = hub.directory();
        (directory.known(), directory.rooms())
    };
    let nodes = hub.nodes();
    let mut online: BTreeMap<RoomName, usize> = known.into_iter().map(|room| (room, 0)).collect();
    let mut here = HashSet::with_capacity(rooms.len());
    for room in rooms {
        let state = room.lock();
        let count = nodes.with_room(&room.name, |others| state.presence.online(others));
        if count > 0 || online.contains_key(&room.name) {
            online.insert(room.name.clone(), count);
        }
        here.insert(room.name.clone());
    }
    for (room, users) in nodes.counts() {
        if !here.contains(&room) {
            online.insert(room, users);
        }
    }
    let general = RoomName::general();
    let mut counts: Vec<RoomCount> = online
        .into_iter()
        .map(|(room, online)| RoomCount { room, online })
        .collect();
    counts.sort_by_key(|count| (count.room != general, count.room.clone()));
    counts
}
