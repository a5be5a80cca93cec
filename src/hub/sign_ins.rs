//! The sockets of signed-in browsers on this node, by the session they were opened under,
//! so that signing out (here or on another node) closes them instead of leaving them
//! posting as the account until they reconnect.
//!
//! Only signed-in sockets are kept (a guest's or a load tool's costs nothing here), in a
//! map of its own rather than in the rooms' members: a sign-out is rare, and walking this
//! map once is cheaper than making every member of every room bigger.
//!
//! A sign-out made here is also told to the other nodes (through the broker, with the
//! typing and renames); one heard from them is applied the same way, and not told again.
//!
//! A socket whose session is checked at its upgrade and registered here a moment later
//! (after the room is loaded and the upgrade completes) could miss a sign-out made in
//! between, so sign-outs are kept for [`RECENT`] and a socket registering under one made
//! after its check closes at once. (One heard from another node counts from when it was
//! heard: a session made and checked in the broker's latency after it may close once,
//! and its page reloads still signed in.)

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{Hub, SessionId};
use crate::domain::{SessionTag, SignOut, UserId};
use crate::outlet::{Ending, Outlet};

/// How long a sign-out is remembered for sockets still on their way in: far longer than
/// an upgrade takes.
const RECENT: Duration = Duration::from_secs(30);

/// The most sign-outs remembered at once; past it the oldest go (a flood of sign-outs
/// only shortens how long each is remembered).
const MAX_RECENT: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct SignIns {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    open: HashMap<SessionId, SignedIn>,
    /// Sign-outs of the last [`RECENT`], oldest first.
    recent: VecDeque<(Instant, SignOut)>,
}

#[derive(Debug)]
struct SignedIn {
    user: UserId,
    tag: SessionTag,
    /// The socket's write side, through which it is told to close.
    outlet: Arc<Outlet>,
    /// Its session was signed out: the socket closes for that reason.
    ended: bool,
}

impl SignIns {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Inserts and removes only: a poisoned map is still whole.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn remember(&mut self, ending: &SignOut, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RECENT)
            || self.recent.len() >= MAX_RECENT
        {
            self.recent.pop_front();
        }
        self.recent.push_back((now, ending.clone()));
    }
}

impl Hub {
    /// Session `id` (of `user`, opened under the signed-in session `tag`, which was found
    /// alive at `checked`) is to close when that session is signed out; `outlet` is its
    /// socket's write side.
    pub fn signed_in(
        &self,
        id: SessionId,
        (user, tag): (&UserId, SessionTag),
        checked: Instant,
        outlet: &Arc<Outlet>,
    ) {
        let mut state = self.shared.sign_ins.lock();
        // Signed out while this socket was on its way in.
        let ended = state
            .recent
            .iter()
            .any(|(at, ending)| *at >= checked && ending.ends(user, tag));
        state.open.insert(
            id,
            SignedIn {
                user: user.clone(),
                tag,
                outlet: Arc::clone(outlet),
                ended,
            },
        );
        drop(state);
        if ended {
            outlet.end(Ending::Evicted);
        }
    }

    /// Session `id` is closing: forgets it; whether it closes because it was signed out.
    pub fn signed_in_closing(&self, id: SessionId) -> bool {
        self.shared
            .sign_ins
            .lock()
            .open
            .remove(&id)
            .is_some_and(|signed_in| signed_in.ended)
    }

    /// Sessions were signed out on this node: their sockets here close, and the other
    /// nodes are told to close theirs. Returns how many closed here.
    pub fn sign_out(&self, ending: SignOut) -> usize {
        let closed = self.sign_out_here(&ending);
        self.shared.nodes.signed_out(ending);
        closed
    }

    /// Sessions were signed out on another node: their sockets here close.
    pub(super) fn sign_out_here(&self, ending: &SignOut) -> usize {
        let mut closing = Vec::new();
        {
            let mut state = self.shared.sign_ins.lock();
            state.remember(ending, Instant::now());
            for signed_in in state.open.values_mut() {
                if !signed_in.ended && ending.ends(&signed_in.user, signed_in.tag) {
                    signed_in.ended = true;
                    closing.push(Arc::clone(&signed_in.outlet));
                }
            }
        }
        for outlet in &closing {
            outlet.end(Ending::Evicted);
        }
        closing.len()
    }
}
