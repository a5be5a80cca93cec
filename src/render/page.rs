//! Whole pages: the chat page and the error page.

use askama::Template;

use super::Listed;
use super::status::input;
use super::{RenderError, RoomCount, presence, room_list};
use crate::domain::{Emoji, RoomName};

/// The URLs a page links to for its scripts and styles (the embedded assets' hashed URLs,
/// which the HTTP layer knows).
#[derive(Debug)]
pub struct AssetUrls {
    pub htmx_js: &'static str,
    pub hx_ws_js: &'static str,
    pub app_css: &'static str,
    pub app_js: &'static str,
    pub reads_js: &'static str,
}

#[derive(Template)]
#[template(path = "page.html")]
struct PageTemplate<'a> {
    assets: &'a AssetUrls,
    room: &'a str,
    me: &'a str,
    me_tag: &'a str,
    me_key: &'a str,
    notify: &'a str,
    signed_in: bool,
    moderator: bool,
    read_only: bool,
    banned: bool,
    max_chars: u32,
    /// The reactions the picker offers.
    emoji: [Emoji; 6],
    history: &'a str,
    around: Option<u64>,
    read_mark: Option<u64>,
    input: &'a str,
    room_list: &'a str,
    presence: &'a str,
}

/// Everything the chat page shows.
pub struct Page<'a> {
    /// Where the page's scripts and styles are.
    pub assets: &'a AssetUrls,
    pub room: &'a RoomName,
    pub me: &'a str,
    /// What mentions of the reader say (`domain::mentions::mention_key`): the page marks
    /// the messages that carry it.
    pub me_key: &'a str,
    /// What the reader is notified of in this room: `all`, `mentions` or `none`.
    pub notify: &'a str,
    /// [`crate::domain::UserId::tag`] of the reader: the page offers "Edit" and "Delete"
    /// on the messages that carry it.
    pub me_tag: &'a str,
    /// Whether the reader has claimed their name and signed in.
    pub signed_in: bool,
    /// Whether the reader may delete anyone's message (the page offers "Delete" on all;
    /// the store decides).
    pub moderator: bool,
    /// Whether the reader may only read (a guest under `--guests read-only`).
    pub read_only: bool,
    /// Whether a moderator banned the reader: they read, and are told why they cannot post.
    pub banned: bool,
    pub max_chars: u32,
    /// Already-rendered list contents, from [`history_inner`].
    pub history: &'a str,
    /// The message the room is opened at (`?around=ID`), if any: the page scrolls to it
    /// and marks it.
    pub around: Option<u64>,
    /// The newest message the reader has seen in this room, if they have been here: the
    /// "New messages" line goes after it.
    pub read_mark: Option<u64>,
    pub rooms: &'a [RoomCount],
    /// The presence list's first names and how many are here in all.
    pub present: (&'a [Listed], usize),
}

/// The chat page.
pub fn page(page: &Page<'_>) -> Result<String, RenderError> {
    let rooms = room_list(page.rooms, false);
    let present = presence(page.present.0, page.present.1, false);
    Ok(PageTemplate {
        assets: page.assets,
        room: page.room.as_str(),
        me: page.me,
        me_tag: page.me_tag,
        me_key: page.me_key,
        notify: page.notify,
        signed_in: page.signed_in,
        moderator: page.moderator,
        read_only: page.read_only,
        banned: page.banned,
        max_chars: page.max_chars,
        emoji: Emoji::ALL,
        history: page.history,
        around: page.around,
        read_mark: page.read_mark,
        input: &input(page.room, page.max_chars),
        room_list: rooms.as_str(),
        presence: present.as_str(),
    }
    .render()?)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate<'a> {
    assets: &'a AssetUrls,
    status: &'a str,
    message: &'a str,
}

/// A whole page explaining an HTTP error.
pub fn error_page(assets: &AssetUrls, status: &str, message: &str) -> Result<String, RenderError> {
    Ok(ErrorTemplate {
        assets,
        status,
        message,
    }
    .render()?)
}
