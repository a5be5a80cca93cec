//! Who is typing in a room: "alice is typing…", throttled, expiring, never shown to the
//! typist themselves.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hubbub_wire::Frame;
use tokio::time::Instant;

use super::fanout::Outgoing;
use crate::domain::{DisplayName, UserId};
use crate::render::{self, Html};

/// A room's typists: its own users and, with shared presence, those on other nodes.
#[derive(Debug, Default)]
pub(super) struct Typing {
    typists: BTreeMap<UserId, Typist>,
}

#[derive(Debug)]
struct Typist {
    name: DisplayName,
    /// When "… is typing" disappears unless renewed.
    until: Instant,
    /// When this typist was last announced (for the throttle).
    announced: Instant,
}

impl Typing {
    /// `user` pressed a key at `now`: the line lasts `expiry` from now. `true` when it is
    /// to be announced (a new typist, or the `throttle` since the last announcement is over).
    pub(super) fn keystroke(
        &mut self,
        user: &UserId,
        name: &DisplayName,
        now: Instant,
        throttle: Duration,
        expiry: Duration,
    ) -> bool {
        let until = now + expiry;
        match self.typists.get_mut(user) {
            Some(typist) => {
                typist.until = until;
                if now < typist.announced + throttle {
                    return false;
                }
                typist.announced = now;
            }
            None => {
                self.typists.insert(
                    user.clone(),
                    Typist {
                        name: name.clone(),
                        until,
                        announced: now,
                    },
                );
            }
        }
        true
    }

    /// Someone on another node types, until `until`.
    pub(super) fn elsewhere(
        &mut self,
        user: UserId,
        name: DisplayName,
        until: Instant,
        now: Instant,
    ) {
        self.typists.insert(
            user,
            Typist {
                name,
                until,
                announced: now,
            },
        );
    }

    /// `true` when `user` was typing.
    pub(super) fn remove(&mut self, user: &UserId) -> bool {
        self.typists.remove(user).is_some()
    }

    /// `true` when `user` was typing (and now types under `name`).
    pub(super) fn rename(&mut self, user: &UserId, name: &DisplayName) -> bool {
        match self.typists.get_mut(user) {
            Some(typist) => {
                typist.name = name.clone();
                true
            }
            None => false,
        }
    }

    /// A message ends its author's typing (matched by name: messages carry no user id).
    /// `true` when someone stopped.
    pub(super) fn end_authors(&mut self, authors: &[&DisplayName]) -> bool {
        let before = self.typists.len();
        self.typists
            .retain(|_, typist| !authors.contains(&&typist.name));
        self.typists.len() != before
    }

    /// Ends typing that lapsed by `now`; `true` when someone stopped.
    pub(super) fn expire(&mut self, now: Instant) -> bool {
        let before = self.typists.len();
        self.typists.retain(|_, typist| typist.until > now);
        self.typists.len() != before
    }

    /// Keeps only the typists `keep` accepts; `true` when someone stopped.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&UserId) -> bool) -> bool {
        let before = self.typists.len();
        self.typists.retain(|user, _| keep(user));
        self.typists.len() != before
    }

    /// The typing line as `viewer` sees it: everyone typing but themselves, in name order
    /// so the line reads the same for all.
    pub(super) fn line(&self, viewer: Option<&UserId>) -> Html {
        let mut names: Vec<&DisplayName> = self
            .typists
            .iter()
            .filter(|(user, _)| Some(*user) != viewer)
            .map(|(_, typist)| &typist.name)
            .collect();
        names.sort_by_cached_key(|name| name.as_str().to_lowercase());
        render::typing(&names)
    }

    /// `before` (already rendered fragments) followed by the typing line: one line for the
    /// room, and one for each typist with a session here (`is_here`), who does not see their
    /// own name.
    pub(super) fn outgoing(
        &self,
        before: Vec<Html>,
        is_here: impl Fn(&UserId) -> bool,
    ) -> Outgoing {
        let own: HashMap<UserId, Frame> = self
            .typists
            .keys()
            .filter(|user| is_here(user))
            .map(|user| {
                let line = self.line(Some(user));
                let parts = before.iter().map(Html::as_str).chain([line.as_str()]);
                (user.clone(), Frame::text_joined(parts))
            })
            .collect();
        let mut shared = before;
        shared.push(self.line(None));
        Outgoing {
            shared,
            own,
            ..Outgoing::default()
        }
    }
}
