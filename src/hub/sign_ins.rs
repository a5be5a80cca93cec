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

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use super::{Hub, SessionId};
use crate::domain::{SessionTag, SignOut, UserId};

#[derive(Debug, Default)]
pub(super) struct SignIns {
    open: Mutex<HashMap<SessionId, SignedIn>>,
}

#[derive(Debug)]
struct SignedIn {
    user: UserId,
    tag: SessionTag,
    evicted: CancellationToken,
    /// Its session was signed out: the socket closes for that reason.
    ended: bool,
}

impl SignIns {
    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, SignedIn>> {
        // Inserts and removes only: a poisoned map is still whole.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Hub {
    /// Session `id` (of `user`, opened under the signed-in session `tag`) is to close when
    /// that session is signed out; `evicted` is its membership's token.
    pub fn signed_in(
        &self,
        id: SessionId,
        user: &UserId,
        tag: SessionTag,
        evicted: &CancellationToken,
    ) {
        self.shared.sign_ins.lock().insert(
            id,
            SignedIn {
                user: user.clone(),
                tag,
                evicted: evicted.clone(),
                ended: false,
            },
        );
    }

    /// Session `id` is closing: forgets it; whether it closes because it was signed out.
    pub fn signed_in_closing(&self, id: SessionId) -> bool {
        self.shared
            .sign_ins
            .lock()
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
            let mut open = self.shared.sign_ins.lock();
            for signed_in in open.values_mut() {
                if !signed_in.ended && ending.ends(&signed_in.user, signed_in.tag) {
                    signed_in.ended = true;
                    closing.push(signed_in.evicted.clone());
                }
            }
        }
        for evicted in &closing {
            evicted.cancel();
        }
        closing.len()
    }
}
