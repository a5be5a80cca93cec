//! The node's rooms by name: which are in memory, and which the store knows of.
//!
//! The directory's lock is the outermost of the hub's and the shortest: a lookup, an
//! insert, a removal, a copy of the list. Nothing is rendered or written under it; a room
//! is locked under it only to retire an idle one (nobody in it, so nothing to write).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::room::Room;
use crate::domain::RoomName;

/// Empty rooms kept in memory (beyond `idle_rooms`) until the other nodes hear that they
/// were emptied; past that they are forgotten and the broker tells everything afresh.
pub(super) const UNTOLD_IDLE_ROOMS: usize = 1000;

#[derive(Debug, Default)]
pub(super) struct Directory {
    rooms: HashMap<RoomName, Arc<Room>>,
    /// Every room the store knows of (rooms are created by their first message).
    known: BTreeSet<RoomName>,
}

/// What forgetting idle rooms did.
#[derive(Debug, Default)]
pub(super) struct Forgotten {
    /// Rooms left in memory.
    pub(super) loaded: usize,
    /// Rooms were forgotten before the other nodes heard they were emptied.
    pub(super) untold: bool,
}

impl Directory {
    pub(super) fn get(&self, name: &RoomName) -> Option<Arc<Room>> {
        self.rooms.get(name).cloned()
    }

    pub(super) fn contains(&self, name: &RoomName) -> bool {
        self.rooms.contains_key(name)
    }

    pub(super) fn insert(&mut self, room: Arc<Room>) {
        self.rooms.insert(room.name.clone(), room);
    }

    pub(super) fn loaded(&self) -> usize {
        self.rooms.len()
    }

    /// Every room in memory.
    pub(super) fn rooms(&self) -> Vec<Arc<Room>> {
        self.rooms.values().cloned().collect()
    }

    /// Records rooms the store knows of; `true` when one is new.
    pub(super) fn learn(&mut self, rooms: impl IntoIterator<Item = RoomName>) -> bool {
        let before = self.known.len();
        self.known.extend(rooms);
        self.known.len() != before
    }

    pub(super) fn known(&self) -> BTreeSet<RoomName> {
        self.known.clone()
    }

    /// Drops rooms nobody is in once there are more than `keep` of them (but not one whose
    /// last departure the other nodes have yet to hear of, unless such rooms pile up past
    /// [`UNTOLD_IDLE_ROOMS`]: the broker is stuck or Redis is away, and it will tell
    /// everything afresh instead).
    pub(super) fn forget_idle(&mut self, keep: usize) -> Forgotten {
        let mut forgotten = Forgotten::default();
        if self.rooms.len() > keep {
            self.retire(keep, false);
        }
        if self.rooms.len() > keep + UNTOLD_IDLE_ROOMS {
            forgotten.untold = self.retire(keep, true) > 0;
        }
        forgotten.loaded = self.rooms.len();
        forgotten
    }

    /// Retires idle rooms beyond the first `keep` found; returns how many.
    fn retire(&mut self, keep: usize, untold_too: bool) -> usize {
        let mut idle = 0;
        let mut retired = Vec::new();
        for (name, room) in &self.rooms {
            let mut state = room.lock();
            if !state.members.is_empty() || (!untold_too && state.presence.is_untold()) {
                continue;
            }
            idle += 1;
            if idle > keep && state.retire_if_idle(untold_too) {
                retired.push(name.clone());
            }
        }
        for name in &retired {
            self.rooms.remove(name);
        }
        retired.len()
    }
}
