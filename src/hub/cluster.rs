//! The hub's side of shared presence (with a remote broker): what the broker takes to
//! tell the other nodes (rooms whose users changed, typing, renames), and what it hands
//! over of theirs, applied room by room.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::time::Instant;

use super::Hub;
use super::nodes::Signals;
use super::room::{Effects, Room};
use crate::cluster::{Gap, Heard, RoomHere, Seat};
use crate::domain::RoomName;

impl Hub {
    /// Takes what other nodes have to hear about this node's presence: every room whose
    /// users changed since the last call, with everyone in it here now (user and name).
    /// The broker sends the difference from what it told them before. `None`: changes
    /// were lost (rooms forgotten untold), so the broker must tell everything afresh
    /// ([`Hub::all_seats`]).
    pub fn take_presence(&self) -> Option<Vec<RoomHere>> {
        if self.shared.nodes.presence_lost() {
            return None;
        }
        let rooms = self.directory().rooms();
        let untold = rooms
            .into_iter()
            .filter_map(|entry| {
                let mut state = entry.lock();
                state
                    .presence
                    .take_untold()
                    .then(|| (entry.name.clone(), state.presence.users()))
            })
            .collect();
        Some(untold)
    }

    /// Every user here in every room, for telling the other nodes everything afresh
    /// (after the broker reconnected); counts as told.
    pub fn all_seats(&self) -> Vec<Seat> {
        self.shared.nodes.presence_found();
        let mut seats = Vec::new();
        let rooms = self.directory().rooms();
        for entry in rooms {
            let mut state = entry.lock();
            state.presence.take_untold();
            seats.extend(state.presence.seats(&entry.name));
        }
        seats
    }

    /// Takes the typing announcements, renames, reads and sign-outs waiting to be told
    /// to the other nodes.
    pub fn take_signals(&self) -> Signals {
        self.shared.nodes.take_signals()
    }

    /// Waits until there may be something to tell the other nodes (see
    /// [`Hub::take_presence`], [`Hub::take_signals`]); only ever wakes with shared presence.
    pub async fn news(&self) {
        self.shared.nodes.news().await;
    }

    /// What the broker heard from the other nodes. `Err(Gap)`: a report was missed, so the
    /// broker must read that node's whole presence and hand it over as [`Heard::Whole`].
    /// Presence and the room list change at the next tick, typing at once.
    pub fn hear(&self, heard: Heard) -> Result<(), Gap> {
        let now = Instant::now();
        match heard {
            Heard::Renamed(users) => {
                for (user, name) in users {
                    self.rename_here(&user, &name);
                }
                Ok(())
            }
            Heard::Typing(seats) => {
                self.typing_elsewhere(seats, now);
                Ok(())
            }
            Heard::Read(reads) => {
                for read in &reads {
                    self.read_elsewhere(read);
                }
                Ok(())
            }
            Heard::SignedOut(endings) => {
                for ending in &endings {
                    self.sign_out_here(ending);
                }
                Ok(())
            }
            heard => {
                let learned = self.shared.nodes.hear(heard, now);
                self.shared.metrics.cluster_nodes(learned.nodes);
                self.others_changed(learned.touched);
                learned.result
            }
        }
    }

    /// Users typing on other nodes, shown for `typing_expiry` unless renewed. Only users
    /// their node reported present count: a typist nobody reported is ignored, so typing
    /// cannot grow beyond who is in the room.
    fn typing_elsewhere(&self, seats: Vec<Seat>, now: Instant) {
        let until = now + self.shared.settings.typing_expiry;
        let mut touched = Vec::new();
        for Seat { room, user, name } in seats {
            let Ok(entry) = self.room(&room) else {
                continue;
            };
            if !self.shared.nodes.has(&room, &user) {
                continue;
            }
            entry.lock().typing_elsewhere(user, name, until, now);
            if !touched
                .iter()
                .any(|known: &Arc<Room>| Arc::ptr_eq(known, &entry))
            {
                touched.push(entry);
            }
        }
        for entry in touched {
            let mut fx = Effects::default();
            entry.lock().send_typing(Vec::new(), &mut fx);
            self.settle(&entry, fx);
        }
    }

    /// What other nodes reported changed in `touched` rooms: presence and the room list
    /// are sent at the next tick; a typist now in none of the room's nodes stops typing.
    pub(super) fn others_changed(&self, touched: BTreeSet<RoomName>) {
        if touched.is_empty() {
            return;
        }
        self.shared.room_list.mark_dirty();
        for name in touched {
            let Ok(entry) = self.room(&name) else {
                continue;
            };
            let mut fx = Effects::default();
            entry
                .lock()
                .others_changed(&name, &self.shared.nodes, &mut fx);
            self.settle(&entry, fx);
        }
    }
}
