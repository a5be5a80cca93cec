//! Who is banned, as this node last heard from the store (and at once for a ban made
//! here): sessions of a banned user are closed, and their writes refused. Every node
//! re-reads the store's list every [`BAN_REFRESH`], so a ban made on one node reaches the
//! others within that, with no message between nodes to lose.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::Hub;
use crate::domain::UserId;
use crate::outlet::Ending;

/// How often each node re-reads the store's bans.
pub const BAN_REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub(super) struct Bans {
    users: RwLock<HashSet<UserId>>,
}

impl Bans {
    fn is_banned(&self, user: &UserId) -> bool {
        self.users
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(user)
    }

    /// Replaces the set; returns who is banned now and was not before.
    fn replace(&self, now: HashSet<UserId>) -> Vec<UserId> {
        let mut users = self
            .users
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let new = now.difference(&users).cloned().collect();
        *users = now;
        new
    }

    fn insert(&self, user: UserId) -> bool {
        self.users
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(user)
    }

    fn remove(&self, user: &UserId) {
        self.users
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(user);
    }
}

impl Hub {
    /// Whether `user` may no longer post.
    pub fn is_banned(&self, user: &UserId) -> bool {
        self.shared.bans.is_banned(user)
    }

    /// The store's list of bans, re-read: the sessions of anyone newly banned are closed.
    pub fn set_bans(&self, users: impl IntoIterator<Item = UserId>) {
        for user in self.shared.bans.replace(users.into_iter().collect()) {
            self.close_sessions_of(&user);
        }
    }

    /// A ban made on this node: at once, before the next re-read.
    pub fn ban(&self, user: &UserId) {
        if self.shared.bans.insert(user.clone()) {
            self.close_sessions_of(user);
        }
    }

    /// A ban lifted on this node.
    pub fn unban(&self, user: &UserId) {
        self.shared.bans.remove(user);
    }

    /// The users present under exactly `name` (guests, for a ban by name): here, and on
    /// the other nodes as they last reported.
    pub fn users_named(&self, name: &crate::domain::DisplayName) -> Vec<UserId> {
        let mut users = Vec::new();
        // A statement of its own: the directory's lock is not held over the rooms'.
        let rooms = self.directory().rooms();
        for entry in rooms {
            users.extend(entry.lock().presence.named(name));
        }
        users.extend(self.shared.nodes.users_named(name));
        users.sort_unstable();
        users.dedup();
        users
    }

    /// Ends every session of `user` on this node (each closes with 1008, "banned").
    fn close_sessions_of(&self, user: &UserId) {
        let mut closing = Vec::new();
        // A statement of its own: the directory's lock is not held over the rooms'.
        let rooms = self.directory().rooms();
        for entry in rooms {
            let state = entry.lock();
            if state.presence.sessions_of(user) == 0 {
                continue;
            }
            closing.extend(state.members.of_user(user).map(|t| Arc::clone(&t.outlet)));
        }
        for outlet in closing {
            outlet.end(Ending::Evicted);
        }
    }
}

/// Keeps this node's bans as the store has them until `stop`.
pub async fn refresh_bans(
    hub: Hub,
    store: Arc<dyn crate::store::Store>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(BAN_REFRESH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        match store.bans().await {
            Ok(bans) => hub.set_bans(bans.into_iter().map(|ban| ban.user)),
            Err(err) => {
                tracing::warn!(error = %err, "re-reading the bans failed; kept the last list")
            }
        }
    }
}
