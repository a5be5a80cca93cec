//! What this node last told the others about its own users, so that a change in a room
//! goes out as the difference (who came, who went, who was renamed), not the whole room.

use std::collections::HashMap;

use super::{Change, Seat};
use crate::domain::{DisplayName, RoomName, UserId};

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
