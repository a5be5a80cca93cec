//! How many messages each room has had since this node started, for pages that count
//! unread messages in rooms they do not show.
//!
//! A page learns, when it connects, how many messages each room it has read is past its
//! mark, and each room's counter at that moment (`session` sends it). After that it only
//! needs each room's counter: unread = the count then + how far the counter moved. The
//! counters go out as one shared fragment, rendered once per upkeep tick in which a
//! message arrived anywhere, and sent only to rooms where another room moved: a room's
//! own members see its messages arrive, so a busy room does not make its members a frame
//! per tick.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::domain::RoomName;
use crate::render::{self, Html};

#[derive(Debug, Default)]
pub(super) struct Activity {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Messages (not changes) delivered per room since start.
    counts: BTreeMap<RoomName, u64>,
    /// The newest position delivered: counts cover every message up to it.
    upto: u64,
    /// Rooms counted since the last render.
    moved: Vec<RoomName>,
    /// The render each room last moved in.
    moved_in: BTreeMap<RoomName, u64>,
    shown: Option<Shown>,
}

/// The counters as last rendered, and which rooms moved last: enough for a room to tell
/// whether anything but itself moved since it last sent them.
#[derive(Debug, Clone)]
pub(super) struct Shown {
    pub(super) frame: Html,
    pub(super) generation: u64,
    /// The two most recent renders a room moved in, each with that room (distinct rooms;
    /// generation 0: none).
    latest: [(u64, Option<RoomName>); 2],
}

impl Shown {
    /// Whether a room that last sent render `seen` must send this one: some other room
    /// moved after `seen`.
    pub(super) fn news_for(&self, room: &RoomName, seen: u64) -> bool {
        let [(first, first_room), (second, _)] = &self.latest;
        if first_room.as_ref() != Some(room) {
            *first > seen
        } else {
            *second > seen
        }
    }
}

/// The counters at one moment, with the position they cover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub counts: Vec<(RoomName, u64)>,
    pub upto: u64,
}

impl Activity {
    /// Counts `new` messages delivered to `room`, all at or below position `upto`.
    pub(super) fn count(&self, room: &RoomName, new: u64, upto: u64) {
        let mut state = self.lock();
        state.upto = state.upto.max(upto);
        if new == 0 {
            return;
        }
        *state.counts.entry(room.clone()).or_default() += new;
        if !state.moved.contains(room) {
            state.moved.push(room.clone());
        }
    }

    /// The last render's generation (0 before any).
    pub(super) fn generation(&self) -> u64 {
        self.lock()
            .shown
            .as_ref()
            .map_or(0, |shown| shown.generation)
    }

    pub(super) fn upto(&self) -> u64 {
        self.lock().upto
    }

    /// One room's counter.
    pub(super) fn count_of(&self, room: &RoomName) -> u64 {
        self.lock().counts.get(room).copied().unwrap_or(0)
    }

    pub(super) fn counters(&self) -> Counters {
        let state = self.lock();
        Counters {
            counts: state
                .counts
                .iter()
                .map(|(room, count)| (room.clone(), *count))
                .collect(),
            upto: state.upto,
        }
    }

    /// At the tick: renders the counters if any moved; what the rooms compare against.
    pub(super) fn refresh(&self) -> Option<Shown> {
        let mut state = self.lock();
        if state.moved.is_empty() {
            return state.shown.clone();
        }
        let generation = state.shown.as_ref().map_or(0, |shown| shown.generation) + 1;
        let moved = std::mem::take(&mut state.moved);
        for room in moved {
            state.moved_in.insert(room, generation);
        }
        let mut latest: [(u64, Option<RoomName>); 2] = [(0, None), (0, None)];
        for (room, at) in &state.moved_in {
            if *at > latest[0].0 {
                latest[1] = std::mem::replace(&mut latest[0], (*at, Some(room.clone())));
            } else if *at > latest[1].0 {
                latest[1] = (*at, Some(room.clone()));
            }
        }
        let counts: Vec<(&RoomName, u64)> = state.counts.iter().map(|(r, c)| (r, *c)).collect();
        let shown = Shown {
            frame: render::activity(&counts),
            generation,
            latest,
        };
        state.shown = Some(shown.clone());
        Some(shown)
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

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[test]
    fn a_room_hears_of_other_rooms_moving_not_of_itself() {
        let activity = Activity::default();
        let (a, b, c) = (room("a"), room("b"), room("c"));
        assert!(activity.refresh().is_none(), "nothing moved yet");
        activity.count(&a, 2, 10);
        let shown = activity.refresh().unwrap();
        assert!(!shown.news_for(&a, 0), "a's own messages are no news to a");
        assert!(shown.news_for(&b, 0));
        assert!(!shown.news_for(&b, shown.generation), "b has sent it");
        assert!(
            shown.frame.as_str().contains("a:2"),
            "{}",
            shown.frame.as_str()
        );

        activity.count(&b, 1, 11);
        activity.count(&a, 1, 12);
        let again = activity.refresh().unwrap();
        assert!(again.news_for(&a, shown.generation), "b moved");
        assert!(again.news_for(&c, shown.generation));
        activity.count(&a, 1, 13);
        let third = activity.refresh().unwrap();
        assert!(!third.news_for(&a, again.generation), "only a moved since");
        assert!(third.news_for(&b, again.generation));
        assert_eq!(
            activity.counters(),
            Counters {
                counts: vec![(a, 4), (b, 1)],
                upto: 13
            }
        );
        activity.count(&c, 0, 20);
        assert_eq!(
            activity.counters().upto,
            20,
            "changes alone move the position"
        );
        assert_eq!(activity.refresh().unwrap().generation, third.generation);
    }
}
