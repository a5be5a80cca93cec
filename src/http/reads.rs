//! What a page needs to count unread messages: the reader's mark in the room it shows
//! (where the "New messages" line goes), and, on each connect, every room's unread count
//! with the room counters it is relative to (`hub::activity`).
//!
//! And what a reader asks to be notified of in a room (`POST /rooms/{room}/notify`).
//!
//! Both add the marks the commit writer has not stored yet, so a page loaded right after
//! reading elsewhere starts where the reader left off. Neither keeps a page from loading:
//! a store that fails here costs the counts, logged, not the chat.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use axum_extra::extract::SignedCookieJar;
use serde::Deserialize;

use super::client::Peer;
use super::identity::{changes_limited, notice, visitor};
use super::{AppState, HttpError};
use crate::domain::mentions::mention_key;
use crate::domain::{DisplayName, Notify, RoomName, UserId};
use crate::render::{self, Html, UnreadLine};
use crate::store::Unread;

/// The reader's mark in `room`, if they ever read it.
pub(super) async fn mark_in(state: &AppState, user: &UserId, room: &RoomName) -> Option<u64> {
    // Unsaved marks first: one stored between the two reads is then in the store.
    let unsaved = state
        .committer
        .unsaved_marks(user)
        .into_iter()
        .find(|(marked, _)| marked == room)
        .map(|(_, mark)| mark);
    let stored = match state.store.read_mark(user, room).await {
        Ok(stored) => stored,
        Err(err) => {
            tracing::warn!(error = %err, "reading a read mark failed");
            None
        }
    };
    stored.max(unsaved)
}

/// Every room the reader has read, with its unread count (and mentions of `name`) and its
/// counter now: the fragment a session sends after joining.
pub(super) async fn snapshot(state: &AppState, user: &UserId, name: &DisplayName) -> Option<Html> {
    let key = mention_key(name.as_str());
    let counters = state.hub.counters();
    // Unsaved marks first: one stored between the two reads is then in the store.
    let unsaved = state.committer.unsaved_marks(user);
    let mut rooms = match state.store.unread(user, &key, counters.upto).await {
        Ok(rooms) => rooms,
        Err(err) => {
            tracing::warn!(error = %err, "counting unread messages failed");
            return None;
        }
    };
    for (room, mark) in unsaved {
        let known = rooms.iter().position(|unread| unread.room == room);
        if known.is_some_and(|at| rooms[at].last_read >= mark) {
            continue;
        }
        // The furthest mark is not stored yet: count from it where the room's newest
        // messages are in memory (a room read a moment ago usually is).
        let count = state.hub.unread_after(&room, mark, user, &key);
        match known {
            Some(at) => {
                rooms[at].last_read = mark;
                if let Some((unread, mentions)) = count {
                    rooms[at].count = unread;
                    rooms[at].mentions = mentions;
                }
            }
            None => {
                let (count, mentions) = count.unwrap_or_default();
                rooms.push(Unread {
                    room,
                    last_read: mark,
                    count,
                    mentions,
                    notify: Notify::default(),
                });
            }
        }
    }
    let counter = |room: &RoomName| {
        counters
            .counts
            .iter()
            .find(|(counted, _)| counted == room)
            .map_or(0, |(_, count)| *count)
    };
    let shown: Vec<UnreadLine<'_>> = rooms
        .iter()
        .map(|unread| UnreadLine {
            room: &unread.room,
            unread: unread.count,
            counter: counter(&unread.room),
            mentions: unread.mentions,
            notify: unread.notify.as_str(),
        })
        .collect();
    Some(render::unread(&shown, true))
}

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms/{room}/notify", post(set_notify))
        .route("/rooms/{room}/names", axum::routing::get(names))
}

#[derive(Deserialize)]
struct NamesQuery {
    #[serde(default)]
    q: String,
}

/// The most names the composer offers at once.
const NAMES_OFFERED: usize = 8;

/// `GET /rooms/{room}/names?q=PREFIX`: the people in the room (on every node) whose name,
/// as a mention names it, starts with `PREFIX`, for the composer's `@` list (htmx swaps it
/// in). Empty when nobody matches.
async fn names(
    State(state): State<AppState>,
    Path(room): Path<String>,
    query: Result<axum::extract::Query<NamesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, HttpError> {
    let room = super::page::parse_room(&room)?;
    let prefix = query.map(|q| mention_key(&q.0.q)).unwrap_or_default();
    let present = state.hub.present(&room);
    let offered: Vec<(&DisplayName, String)> = present
        .iter()
        .map(|name| (name, mention_key(name.as_str())))
        .filter(|(_, key)| key.starts_with(&prefix))
        .take(NAMES_OFFERED)
        .collect();
    let html = render::mention_options(&room, &offered);
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::response::Html(html.as_str().to_owned()),
    )
        .into_response())
}

#[derive(Deserialize)]
struct NotifyForm {
    notify: String,
}

/// What the reader's page in `room` notifies them of; `Mentions` when never set or when
/// the store cannot say.
pub(super) async fn notify_in(state: &AppState, user: &UserId, room: &RoomName) -> Notify {
    state.store.notify(user, room).await.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "reading a notification setting failed");
        Notify::default()
    })
}

/// `POST /rooms/{room}/notify` (`notify=all|mentions|none`), from the room's own page:
/// answered with a notice.
async fn set_notify(
    State(state): State<AppState>,
    Path(room): Path<String>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    form: Result<Form<NotifyForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, HttpError> {
    let room = super::page::parse_room(&room)?;
    // A setting is a write: counted with renames (`--renames-per-minute`, per address).
    if let Some(refused) = changes_limited(&state, peer, &headers, |seconds| {
        format!("Not saved: too many changes from your address; try again in {seconds} s.")
    }) {
        return Ok(refused);
    }
    let Some(level) = form.ok().and_then(|Form(form)| Notify::parse(&form.notify)) else {
        return Ok(notice(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not saved: notify is one of all, mentions or none.",
        ));
    };
    let visitor = visitor(&state, &jar).await?;
    if visitor.new_cookie {
        // Nobody to remember it for: a page always sends its cookie.
        return Ok(notice(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not saved: open the room's page first.",
        ));
    }
    state
        .store
        .set_notify(&visitor.identity.user, &room, level)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "saving a notification setting failed");
            HttpError::StoreUnavailable
        })?;
    let said = match level {
        Notify::All => format!("You will be notified of every message in #{room}."),
        Notify::Mentions => format!("You will be notified when someone mentions you in #{room}."),
        Notify::None => format!("You will not be notified of anything in #{room}."),
    };
    Ok(notice(StatusCode::OK, &said))
}
