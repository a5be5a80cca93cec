//! Lists of messages: the history a page or a reconnecting socket starts from, the pages
//! "load older" and "load newer" fetch, and the window a room opened at one of its
//! messages shows. Each is made of the articles [`message`] rendered once.

use askama::Template;

use super::message::{CLOSE, Rendered, message};
use super::{Html, fragment};
use crate::domain::{ChatMessage, RoomName};

const REPLACE_OPEN: &str = r#"<div id="messages" hx-swap-oob="innerHTML">"#;
const EMPTY_HISTORY: &str = r#"<p class="empty">No messages yet. Say hello!</p>"#;

#[derive(Template)]
#[template(path = "older.html")]
struct OlderTemplate<'a> {
    room: &'a str,
    /// `Some(id)`: a "load older" element fetching the messages before `id`;
    /// `None`: "start of conversation".
    before: Option<u64>,
}

/// The inside of the message list: "load older" or "start of conversation", then the
/// messages; or a friendly empty state.
pub fn history_inner<'a>(
    room: &RoomName,
    messages: impl IntoIterator<Item = &'a Rendered>,
    has_older: bool,
) -> String {
    let mut messages = messages.into_iter().peekable();
    let Some(oldest) = messages.peek().map(|m| m.id) else {
        return EMPTY_HISTORY.to_owned();
    };
    let mut html = fragment(&OlderTemplate {
        room: room.as_str(),
        before: has_older.then_some(oldest),
    });
    for message in messages {
        html.push_str(message.article());
    }
    html
}

/// A page of older messages, answering a "load older" element: it replaces that element
/// with the next one (or "start of conversation") followed by the messages.
pub fn older_page(room: &RoomName, messages: &[ChatMessage], has_more: bool) -> String {
    let rendered: Vec<Rendered> = messages.iter().map(message).collect();
    if rendered.is_empty() {
        return fragment(&OlderTemplate {
            room: room.as_str(),
            before: None,
        });
    }
    history_inner(room, &rendered, has_more)
}

#[derive(Template)]
#[template(path = "newer.html")]
struct NewerTemplate<'a> {
    room: &'a str,
    /// The newest message above the element: it fetches the ones after it.
    after: u64,
}

/// A page of newer messages, answering a "load newer" element (in a room opened at an
/// older message): the messages, followed by the next such element when there are more.
/// Without one, the page has reached the room's present.
pub fn newer_page(room: &RoomName, messages: &[ChatMessage], has_more: bool) -> String {
    let mut html = String::new();
    for message in messages {
        html.push_str(self::message(message).article());
    }
    if let (true, Some(last)) = (has_more, messages.last()) {
        html.push_str(&fragment(&NewerTemplate {
            room: room.as_str(),
            after: last.id,
        }));
    }
    html
}

/// A room opened at one of its messages: the messages around it (`before` ends with it,
/// oldest first; `after` follows it), led by "load older"; then, when they do not reach the
/// `recent` messages, a "load newer" element; then the recent ones.
pub fn window(
    room: &RoomName,
    before: &[ChatMessage],
    has_older: bool,
    after: &[ChatMessage],
    has_newer: bool,
    recent: &[ChatMessage],
) -> String {
    let rendered: Vec<Rendered> = before.iter().chain(after).map(message).collect();
    let mut html = history_inner(room, &rendered, has_older);
    if let (true, Some(last)) = (has_newer, rendered.last()) {
        html.push_str(&fragment(&NewerTemplate {
            room: room.as_str(),
            after: last.id,
        }));
    }
    for message in recent {
        html.push_str(self::message(message).article());
    }
    html
}

/// The frame a client gets on every (re)connect: it *replaces* the whole list, so a
/// reconnect can never duplicate what the page already shows.
pub fn history_frame<'a>(
    room: &RoomName,
    messages: impl IntoIterator<Item = &'a Rendered>,
    has_older: bool,
) -> Html {
    let inner = history_inner(room, messages, has_older);
    let mut frame = String::with_capacity(REPLACE_OPEN.len() + inner.len() + CLOSE.len());
    frame.push_str(REPLACE_OPEN);
    frame.push_str(&inner);
    frame.push_str(CLOSE);
    Html::from(frame)
}
