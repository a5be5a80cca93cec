//! Who is in a room: one entry per user however many tabs, with their current name, merged
//! with the users other nodes report (with shared presence); and the presence list as last
//! sent, so that a join in a big room costs no render; and the hub's presence queries
//! for pages.

use std::collections::HashMap;

use super::Hub;
use crate::cluster::{Elsewhere, Seat};
use crate::domain::{DisplayName, RoomName, UserId};
use crate::render::{self, Html, Listed};

/// The users other nodes have in a room, if any.
pub(super) type Others<'a> = Option<&'a HashMap<UserId, Elsewhere>>;

/// A room's users on this node, and the presence list as its members last got it.
#[derive(Debug)]
pub(super) struct Presence {
    users: HashMap<UserId, Present>,
    /// The presence list as last sent (what newcomers get); `None` until the first join.
    frame: Option<Html>,
    /// The names that frame lists. When a change leaves them as they are (in a big room,
    /// most joins are of people not among the first names shown), the update carries only
    /// the new count: a few dozen bytes per member instead of the whole list.
    listed: Vec<Listed>,
    /// Changed since it was last sent; the upkeep tick sends it, so a burst of joins costs
    /// one render and one fan-out, not one per join.
    dirty: bool,
    /// Whether the other nodes are told of this room's users.
    share: bool,
    /// Changed since the other nodes were last told; such a room stays in memory until they
    /// are, even if empty, so a departure is never left untold.
    untold: bool,
}

#[derive(Debug)]
struct Present {
    name: DisplayName,
    sessions: usize,
}

impl Presence {
    pub(super) fn new(share: bool) -> Self {
        Self {
            users: HashMap::new(),
            frame: None,
            listed: Vec::new(),
            dirty: false,
            share,
            untold: false,
        }
    }

    /// One more session of `user`; `true` when it is their first here.
    pub(super) fn arrive(&mut self, user: &UserId, name: &DisplayName) -> bool {
        let present = self.users.entry(user.clone()).or_insert(Present {
            name: name.clone(),
            sessions: 0,
        });
        present.sessions += 1;
        let arrived = present.sessions == 1;
        if arrived {
            self.changed();
        }
        arrived
    }

    /// One session of `user` left; their name if it was their last.
    pub(super) fn depart(&mut self, user: &UserId) -> Option<DisplayName> {
        let present = self.users.get_mut(user)?;
        present.sessions -= 1;
        if present.sessions > 0 {
            return None;
        }
        let gone = self.users.remove(user)?;
        self.changed();
        Some(gone.name)
    }

    /// `user` took a new name; `true` when they are here.
    pub(super) fn rename(&mut self, user: &UserId, name: &DisplayName) -> bool {
        let Some(present) = self.users.get_mut(user) else {
            return false;
        };
        present.name = name.clone();
        self.changed();
        true
    }

    pub(super) fn name_of(&self, user: &UserId) -> Option<&DisplayName> {
        self.users.get(user).map(|present| &present.name)
    }

    /// The users here under exactly this name.
    pub(super) fn named(&self, name: &DisplayName) -> Vec<UserId> {
        self.users
            .iter()
            .filter(|(_, present)| present.name == *name)
            .map(|(user, _)| user.clone())
            .collect()
    }

    /// How many of `user`'s sessions are here.
    pub(super) fn sessions_of(&self, user: &UserId) -> usize {
        self.users.get(user).map_or(0, |present| present.sessions)
    }

    pub(super) fn is_here(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    /// Marks presence for the next tick. The cached frame stays as it is until then:
    /// newcomers get it (at most one tick stale) instead of each join re-rendering a list
    /// that grows with the room. With shared presence, the other nodes are to be told too.
    pub(super) fn changed(&mut self) {
        self.dirty = true;
        self.untold |= self.share;
    }

    /// Other nodes' users changed here: send the list at the next tick.
    pub(super) fn others_changed(&mut self) {
        self.dirty = true;
    }

    pub(super) fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub(super) fn is_untold(&self) -> bool {
        self.untold
    }

    /// Whether the other nodes are to hear of a change; counts as told.
    pub(super) fn take_untold(&mut self) -> bool {
        std::mem::take(&mut self.untold)
    }

    /// This node's users, with their names.
    pub(super) fn users(&self) -> Vec<(UserId, DisplayName)> {
        self.users
            .iter()
            .map(|(user, present)| (user.clone(), present.name.clone()))
            .collect()
    }

    /// This node's users here whose name a mention `key` names.
    pub(super) fn named_by<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a UserId> + 'a {
        self.users
            .iter()
            .filter(move |(_, present)| is_named(present.name.as_str(), key))
            .map(|(user, _)| user)
    }

    /// This node's users as seats in `room`.
    pub(super) fn seats<'a>(&'a self, room: &'a RoomName) -> impl Iterator<Item = Seat> + 'a {
        self.users.iter().map(|(user, present)| Seat {
            room: room.clone(),
            user: user.clone(),
            name: present.name.clone(),
        })
    }

    /// Everyone here and on other nodes, one entry per user, unsorted.
    pub(super) fn names(&self, others: Others<'_>) -> Vec<DisplayName> {
        let mut names: Vec<DisplayName> = self.users.values().map(|p| p.name.clone()).collect();
        names.extend(self.only_elsewhere(others).map(|e| e.name.clone()));
        names
    }

    /// How many users are here, on every node.
    pub(super) fn online(&self, others: Others<'_>) -> usize {
        self.users.len() + self.only_elsewhere(others).count()
    }

    /// What members need to bring presence up to date: only the count when the names shown
    /// are the same, the whole list otherwise. Newcomers get the whole list from then on.
    pub(super) fn update(&mut self, others: Others<'_>) -> Html {
        self.dirty = false;
        let (listed, total) = self.listed(others);
        let unchanged = listed == self.listed && self.frame.is_some();
        let full = render::presence(&listed, total, true);
        let update = if unchanged {
            render::presence_count(total, listed.len())
        } else {
            full.clone()
        };
        self.frame = Some(full);
        self.listed = listed;
        update
    }

    /// The presence frame newcomers get: the last one sent (at most one tick old), or, for
    /// a room's first member, a fresh one.
    pub(super) fn frame(&mut self, others: Others<'_>) -> Html {
        if let Some(frame) = &self.frame {
            return frame.clone();
        }
        let (listed, total) = self.listed(others);
        let frame = render::presence(&listed, total, true);
        self.frame = Some(frame.clone());
        self.listed = listed;
        frame
    }

    /// Users on other nodes who have no session here (a user here shows under their name
    /// here).
    fn only_elsewhere<'a>(&'a self, others: Others<'a>) -> impl Iterator<Item = &'a Elsewhere> {
        self.elsewhere_by_id(others).map(|(_, e)| e)
    }

    fn elsewhere_by_id<'a>(
        &'a self,
        others: Others<'a>,
    ) -> impl Iterator<Item = (&'a UserId, &'a Elsewhere)> {
        others
            .into_iter()
            .flatten()
            .filter(|(user, _)| !self.users.contains_key(*user))
    }

    /// The first [`render::PRESENCE_SHOWN`] names in list order, and how many are here
    /// (on every node). Selecting them is linear in the room's size; only those few are
    /// sorted. Guests who share a name with someone else here are listed with their
    /// guest mark, so two of them are told apart.
    pub(super) fn listed(&self, others: Others<'_>) -> (Vec<Listed>, usize) {
        type Keyed<'a> = (String, &'a DisplayName, &'a UserId);
        let mut keyed: Vec<Keyed<'_>> = self
            .users
            .iter()
            .map(|(user, p)| (&p.name, user))
            .chain(
                self.elsewhere_by_id(others)
                    .map(|(user, e)| (&e.name, user)),
            )
            .map(|(name, user)| (name.as_str().to_lowercase(), name, user))
            .collect();
        let total = keyed.len();
        // The same name sorts by user id, so the list does not reorder between updates.
        let order = |a: &Keyed<'_>, b: &Keyed<'_>| {
            (&a.0, a.1.as_str(), a.2).cmp(&(&b.0, b.1.as_str(), b.2))
        };
        let shown = keyed.len().min(render::PRESENCE_SHOWN);
        if keyed.len() > shown {
            keyed.select_nth_unstable_by(shown - 1, order);
        }
        let (listed, rest) = keyed.split_at_mut(shown);
        listed.sort_by(order);
        // Equal names sit side by side in the list; the last one's twin may be unlisted.
        let shared = |i: usize| {
            let name = listed[i].1;
            (i > 0 && listed[i - 1].1 == name)
                || listed.get(i + 1).is_some_and(|next| next.1 == name)
                || (i + 1 == shown && rest.iter().any(|other| other.1 == name))
        };
        let names = (0..shown)
            .map(|i| Listed {
                name: listed[i].1.clone(),
                guest_mark: shared(i).then(|| listed[i].2.guest_mark()),
            })
            .collect();
        (names, total)
    }
}

impl Hub {
    /// The presence list as a page shows it: its first names (guests who share a name
    /// marked apart) and how many are here in all, on every node.
    pub fn presence_list(&self, room: &RoomName) -> (Vec<Listed>, usize) {
        let nodes = &self.shared.nodes;
        if let Ok(entry) = self.room(room) {
            let state = entry.lock();
            return nodes.with_room(room, |others| state.presence.listed(others));
        }
        let names: Vec<Listed> = self
            .present(room)
            .into_iter()
            .map(|name| Listed {
                name,
                guest_mark: None,
            })
            .collect();
        let total = names.len();
        (names, total)
    }

    /// Who is in a room (on every node), one entry per user, sorted.
    pub fn present(&self, room: &RoomName) -> Vec<DisplayName> {
        let nodes = &self.shared.nodes;
        let mut names = match self.room(room) {
            Ok(entry) => {
                let state = entry.lock();
                nodes.with_room(room, |others| state.presence.names(others))
            }
            Err(_) => nodes.with_room(room, |others| {
                others
                    .map(|users| users.values().map(|e| e.name.clone()).collect())
                    .unwrap_or_default()
            }),
        };
        names.sort_by_cached_key(|name| name.as_str().to_lowercase());
        names
    }
}

/// Whether a mention `key` names `name` (`domain::mentions::mention_key`, compared as it
/// is made, without making it: this runs over every user on the node for each mention).
fn is_named(name: &str, key: &str) -> bool {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .eq(key.chars())
}
