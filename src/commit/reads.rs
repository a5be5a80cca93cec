//! Read marks on their way to the store. A reader's page reports how far it has read at
//! most about once a second; sessions put that here, keeping only the furthest mark per
//! user and room, and the writer task stores everything gathered once a second
//! ([`READ_FLUSH`]) in one transaction. So a thousand readers cost one write a second, not
//! one per message per reader.
//!
//! Until it is stored, a mark is read from here too ([`PendingReads::of_user`]), so a page
//! loaded right after reading starts where the reader left off.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::domain::{RoomName, UserId};
use crate::store::ReadMark;

/// How often the writer stores the marks gathered.
pub const READ_FLUSH: Duration = Duration::from_secs(1);

/// Marks held at most between two flushes; past that, marks for new user and room pairs
/// are dropped (the page's next mark, when the reader reads on, carries them forward).
const CAP: usize = 65_536;

#[derive(Debug, Default)]
pub(crate) struct PendingReads {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    marks: HashMap<UserId, HashMap<RoomName, u64>>,
    held: usize,
    /// What the flush under way is storing: still read by [`PendingReads::of_user`] until
    /// it is committed, so a reader that looks here first, then in the store, finds it in
    /// one place or the other.
    storing: Vec<ReadMark>,
}

impl PendingReads {
    /// Keeps `id` as the user's mark in `room` if it is further than the one held.
    /// `false`: full, not kept.
    pub(crate) fn mark(&self, user: &UserId, room: &RoomName, id: u64) -> bool {
        let mut state = self.lock();
        let held = state.held;
        if let Some(rooms) = state.marks.get_mut(user) {
            if let Some(mark) = rooms.get_mut(room) {
                *mark = (*mark).max(id);
                return true;
            }
            if held >= CAP {
                return false;
            }
            rooms.insert(room.clone(), id);
        } else {
            if held >= CAP {
                return false;
            }
            state
                .marks
                .insert(user.clone(), HashMap::from([(room.clone(), id)]));
        }
        state.held += 1;
        true
    }

    /// Everything held, for storing: held as "being stored" until [`PendingReads::stored`]
    /// (or [`PendingReads::restore`]); new marks gather afresh meanwhile.
    pub(crate) fn take(&self) -> Vec<ReadMark> {
        let mut state = self.lock();
        state.held = 0;
        let marks: Vec<ReadMark> = state
            .marks
            .drain()
            .flat_map(|(user, rooms)| {
                rooms.into_iter().map(move |(room, last_read)| ReadMark {
                    user: user.clone(),
                    room,
                    last_read,
                })
            })
            .collect();
        state.storing = marks.clone();
        marks
    }

    /// The flush committed what it took.
    pub(crate) fn stored(&self) {
        self.lock().storing.clear();
    }

    /// Puts back marks a failed flush took (a further mark held meanwhile wins).
    pub(crate) fn restore(&self, marks: Vec<ReadMark>) {
        self.stored();
        for mark in marks {
            self.mark(&mark.user, &mark.room, mark.last_read);
        }
    }

    /// The marks held for one user, not yet stored (or being stored), furthest first.
    pub(crate) fn of_user(&self, user: &UserId) -> Vec<(RoomName, u64)> {
        let state = self.lock();
        let mut marks: Vec<(RoomName, u64)> = state
            .storing
            .iter()
            .filter(|mark| mark.user == *user)
            .map(|mark| (mark.room.clone(), mark.last_read))
            .collect();
        if let Some(rooms) = state.marks.get(user) {
            for (room, id) in rooms {
                match marks.iter_mut().find(|(known, _)| known == room) {
                    Some((_, mark)) => *mark = (*mark).max(*id),
                    None => marks.push((room.clone(), *id)),
                }
            }
        }
        marks
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().held == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_furthest_mark_is_kept_and_taken_once() {
        let pending = PendingReads::default();
        let (ann, bob) = (UserId::generate(), UserId::generate());
        let (general, design) = (RoomName::general(), RoomName::parse("design").unwrap());
        assert!(pending.mark(&ann, &general, 5));
        assert!(pending.mark(&ann, &general, 3), "an older mark is no news");
        assert!(pending.mark(&ann, &design, 7));
        assert!(pending.mark(&bob, &general, 9));
        let mut ann_marks = pending.of_user(&ann);
        ann_marks.sort();
        assert_eq!(ann_marks, [(design.clone(), 7), (general.clone(), 5)]);
        let mut taken = pending.take();
        assert_eq!(
            pending.of_user(&ann).len(),
            2,
            "still read while being stored"
        );
        pending.stored();
        assert!(pending.of_user(&ann).is_empty());
        taken.sort_by_key(|mark| mark.last_read);
        let ids: Vec<u64> = taken.iter().map(|mark| mark.last_read).collect();
        assert_eq!(ids, [5, 7, 9]);
        assert!(pending.is_empty());
        assert!(pending.take().is_empty());
        pending.mark(&ann, &general, 20);
        pending.restore(taken);
        assert_eq!(pending.of_user(&ann).len(), 2);
        assert!(
            pending.of_user(&ann).contains(&(general, 20)),
            "the newer mark wins"
        );
    }

    #[test]
    fn it_holds_a_bounded_number_of_marks() {
        let pending = PendingReads::default();
        let room = RoomName::general();
        for _ in 0..CAP {
            assert!(pending.mark(&UserId::generate(), &room, 1));
        }
        let late = UserId::generate();
        assert!(!pending.mark(&late, &room, 1), "full");
        assert!(pending.of_user(&late).is_empty());
        pending.take();
        assert!(pending.mark(&late, &room, 1), "room again after a flush");
    }
}
