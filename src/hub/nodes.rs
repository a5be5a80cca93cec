//! What the hub keeps for and from the other nodes (only with shared presence, that is a
//! remote broker): who is where on them ([`Remote`]), and what the broker is still to tell
//! them of this node (typing, renames, rooms forgotten untold), with the [`Notify`] that
//! wakes the broker.
//!
//! Its lock is the innermost of the hub's: a room's section may take it to read the other
//! nodes' users in that room, never the other way round, and no socket is written under it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::presence::Others;
use crate::cluster::{Gap, Heard, Read, Remote, Seat};
use crate::domain::{DisplayName, RoomName, SignOut, UserId};

/// Signals of each kind waiting for the broker to tell the other nodes. Past it the oldest
/// are dropped: a typing line that lapses early, a tab on another node that posts under
/// the old name until it reconnects, an unread count there that stays until its next
/// connect, or a socket there that outlives its sign-out until it reconnects, is all that
/// is lost.
const SIGNALS_WAITING: usize = 256;

/// What the broker is to tell the other nodes as it happens ([`Nodes::take_signals`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Signals {
    /// Typists here, for the rooms' typing lines there.
    pub typing: Vec<Seat>,
    /// Users here who took a new name (their sessions there post under it too).
    pub renamed: Vec<(UserId, DisplayName)>,
    /// Rooms read here: the user's pages there hear how many are unread now.
    pub read: Vec<Read>,
    /// Sessions signed out here: their sockets there close.
    pub signed_out: Vec<SignOut>,
}

impl Signals {
    pub fn is_empty(&self) -> bool {
        self.typing.is_empty()
            && self.renamed.is_empty()
            && self.read.is_empty()
            && self.signed_out.is_empty()
    }
}

#[derive(Debug)]
pub(super) struct Nodes {
    /// Whether presence is shared at all; without it nothing here is ever locked.
    share: bool,
    state: Mutex<State>,
    /// Wakes the broker when there is something to tell the other nodes. A permit is kept
    /// when nobody waits, so no news is missed.
    news: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Who is where on the other nodes, as they reported it.
    remote: Remote,
    /// Typing announcements to tell the other nodes; at most [`SIGNALS_WAITING`].
    typing_out: VecDeque<Seat>,
    /// Renames to tell the other nodes; at most [`SIGNALS_WAITING`].
    renamed_out: VecDeque<(UserId, DisplayName)>,
    /// Reads to tell the other nodes; at most [`SIGNALS_WAITING`].
    read_out: VecDeque<Read>,
    /// Sign-outs to tell the other nodes; at most [`SIGNALS_WAITING`].
    signed_out: VecDeque<SignOut>,
    /// Rooms were forgotten before the other nodes heard they were emptied: the broker must
    /// tell them everything afresh.
    presence_lost: bool,
}

/// What hearing from the other nodes changed.
#[derive(Debug)]
pub(super) struct Learned {
    /// Rooms whose users on other nodes changed.
    pub(super) touched: BTreeSet<RoomName>,
    pub(super) result: Result<(), Gap>,
    /// How many other nodes are known now.
    pub(super) nodes: usize,
}

impl Nodes {
    pub(super) fn new(share: bool) -> Self {
        Self {
            share,
            state: Mutex::new(State::default()),
            news: Notify::new(),
        }
    }

    pub(super) fn share(&self) -> bool {
        self.share
    }

    /// Runs `f` with the users other nodes have in `room` (none without shared presence).
    pub(super) fn with_room<R>(&self, room: &RoomName, f: impl FnOnce(Others<'_>) -> R) -> R {
        if !self.share {
            return f(None);
        }
        let state = self.lock();
        f(state.remote.room(room))
    }

    /// How many users other nodes have in each room they reported.
    pub(super) fn counts(&self) -> HashMap<RoomName, usize> {
        if !self.share {
            return HashMap::new();
        }
        let state = self.lock();
        state
            .remote
            .rooms()
            .map(|room| {
                (
                    room.clone(),
                    state.remote.room(room).map_or(0, HashMap::len),
                )
            })
            .collect()
    }

    /// The users other nodes reported under exactly `name`, in any room.
    pub(super) fn users_named(&self, name: &DisplayName) -> Vec<UserId> {
        if !self.share {
            return Vec::new();
        }
        let state = self.lock();
        let mut users = Vec::new();
        for room in state.remote.rooms() {
            let Some(there) = state.remote.room(room) else {
                continue;
            };
            users.extend(
                there
                    .iter()
                    .filter(|(_, elsewhere)| elsewhere.name == *name)
                    .map(|(user, _)| user.clone()),
            );
        }
        users
    }

    /// Whether another node reported `user` in `room`.
    pub(super) fn has(&self, room: &RoomName, user: &UserId) -> bool {
        self.with_room(room, |others| others.is_some_and(|o| o.contains_key(user)))
    }

    /// Applies what the broker heard (all but typing and renames, which concern rooms).
    pub(super) fn hear(&self, heard: Heard, now: Instant) -> Learned {
        let mut touched = BTreeSet::new();
        let mut state = self.lock();
        let remote = &mut state.remote;
        let result = match heard {
            Heard::Whole(whole) => {
                remote.replace(whole, now, &mut touched);
                Ok(())
            }
            Heard::Everyone(all) => {
                remote.replace_all(all, now, &mut touched);
                Ok(())
            }
            Heard::Changes { node, seq, changes } => {
                remote.apply(&node, seq, changes, now, &mut touched)
            }
            Heard::Alive { node, seq, expiry } => remote.alive(&node, seq, expiry, now),
            Heard::Left { node } => {
                remote.forget(&node, &mut touched);
                Ok(())
            }
            // Handled by the hub, room by room or session by session.
            Heard::Typing(_) | Heard::Renamed(_) | Heard::Read(_) | Heard::SignedOut(_) => Ok(()),
        };
        Learned {
            touched,
            result,
            nodes: remote.nodes(),
        }
    }

    /// Forgets nodes silent for their expiry: how many, and the rooms they were in.
    pub(super) fn expire(&self, now: Instant) -> (usize, BTreeSet<RoomName>, usize) {
        let mut touched = BTreeSet::new();
        let mut state = self.lock();
        let expired = state.remote.expire(now, &mut touched);
        (expired, touched, state.remote.nodes())
    }

    /// A local typist was announced: the other nodes are to see it too.
    pub(super) fn typed(&self, seat: Seat) {
        push_bounded(&mut self.lock().typing_out, seat);
        self.tell();
    }

    /// A local user took a new name.
    pub(super) fn renamed(&self, user: UserId, name: DisplayName) {
        push_bounded(&mut self.lock().renamed_out, (user, name));
        self.tell();
    }

    /// A local user read a room: their pages on other nodes are to hear. Only told while
    /// other nodes are known (no one else could have a page).
    pub(super) fn read(&self, read: Read) {
        if !self.share {
            return;
        }
        let mut state = self.lock();
        if state.remote.nodes() == 0 {
            return;
        }
        push_bounded(&mut state.read_out, read);
        drop(state);
        self.tell();
    }

    /// Sessions were signed out here: the other nodes are to close their sockets.
    pub(super) fn signed_out(&self, ending: SignOut) {
        if !self.share {
            return;
        }
        push_bounded(&mut self.lock().signed_out, ending);
        self.tell();
    }

    /// Everything waiting to be told as it happens.
    pub(super) fn take_signals(&self) -> Signals {
        let mut state = self.lock();
        Signals {
            typing: state.typing_out.drain(..).collect(),
            renamed: state.renamed_out.drain(..).collect(),
            read: state.read_out.drain(..).collect(),
            signed_out: state.signed_out.drain(..).collect(),
        }
    }

    /// Rooms were forgotten untold: the broker must tell everything afresh.
    pub(super) fn lose_presence(&self) {
        self.lock().presence_lost = true;
    }

    pub(super) fn presence_lost(&self) -> bool {
        self.share && self.lock().presence_lost
    }

    /// Everything is being told afresh.
    pub(super) fn presence_found(&self) {
        self.lock().presence_lost = false;
    }

    /// Wakes the broker, if it shares presence.
    pub(super) fn tell(&self) {
        if self.share {
            self.news.notify_one();
        }
    }

    pub(super) async fn news(&self) {
        self.news.notified().await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a push, a pop or an insert; a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Appends to a bounded queue of signals, dropping the oldest when full.
fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() >= SIGNALS_WAITING {
        queue.pop_front();
    }
    queue.push_back(item);
}
