//! The chat pages: `/` for `general`, `/rooms/{name}` for any room, and `/rooms?name=` for
//! the "create or join" form.

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::SignedCookieJar;
use serde::Deserialize;

use super::identity::{secure_cookies, visitor};
use super::{AppState, HttpError};
use crate::config::Guests;
use crate::domain::mentions::mention_key;
use crate::domain::{Notify, RoomName};
use crate::render::{self, Page};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(general))
        .route("/rooms", get(join_form))
        .route("/rooms/{room}", get(room_page))
}

async fn general(
    state: State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
) -> Result<Response, HttpError> {
    show(state, &headers, jar, RoomName::general(), None).await
}

/// `/rooms/{room}`, or `/rooms/{room}?around=ID`: the room opened at one of its messages
/// (where a search result leads).
async fn room_page(
    state: State<AppState>,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    jar: SignedCookieJar,
) -> Result<Response, HttpError> {
    let room = parse_room(&room)?;
    let query = query.as_deref();
    let around = match super::history::names(query).any(|name| name == "around") {
        true => Some(super::history::named_cursor(query, "around").map_err(HttpError::BadRequest)?),
        false => None,
    };
    show(state, &headers, jar, room, around).await
}

#[derive(Deserialize)]
struct JoinForm {
    #[serde(default)]
    name: String,
}

/// The sidebar's "create or join" form: off to the room's own address.
async fn join_form(Query(form): Query<JoinForm>) -> Result<Redirect, HttpError> {
    let room = parse_room(form.name.trim())?;
    Ok(Redirect::to(&format!("/rooms/{room}")))
}

pub(super) fn parse_room(raw: &str) -> Result<RoomName, HttpError> {
    RoomName::parse(raw)
        .map_err(|err| HttpError::BadRequest(format!("{err} \"{raw}\" is not one.")))
}

async fn show(
    State(state): State<AppState>,
    headers: &HeaderMap,
    jar: SignedCookieJar,
    room: RoomName,
    around: Option<u64>,
) -> Result<Response, HttpError> {
    // Under `--guests off` a guest never gets here (`identity::members_only`).
    let visitor = visitor(&state, &jar).await?;
    let identity = &visitor.identity;
    // A new guest has read nothing.
    let (read_mark, notify) = match visitor.new_cookie {
        true => (None, Notify::default()),
        false => (
            super::reads::mark_in(&state, &identity.user, &room).await,
            super::reads::notify_in(&state, &identity.user, &room).await,
        ),
    };
    let history = match around {
        None => super::loaded_history(&state, &room).await?,
        Some(id) => around_message(&state, &room, id).await?,
    };
    let present = state.hub.presence_list(&room);
    let html = render::page(&Page {
        assets: super::assets::urls(),
        room: &room,
        me: identity.name.as_str(),
        me_key: &mention_key(identity.name.as_str()),
        notify: notify.as_str(),
        signed_in: visitor.signed_in(),
        moderator: visitor
            .account
            .as_ref()
            .is_some_and(|(account, _)| account.moderator),
        read_only: !visitor.signed_in() && state.config.guests != Guests::Allow,
        banned: state.hub.is_banned(&identity.user),
        me_tag: &identity.user.tag(),
        max_chars: state.config.max_message_chars,
        history: &history,
        around,
        read_mark,
        rooms: &state.hub.room_counts(),
        present: (&present.0, present.1),
    })
    .map_err(|err| HttpError::Internal(err.to_string()))?;
    let page = ([(header::CACHE_CONTROL, "no-store")], Html(html));
    let jar = visitor.cookies(jar, secure_cookies(&state.config, headers));
    Ok((jar, page).into_response())
}

/// Messages shown on each side of the one a room is opened at.
const CONTEXT: u32 = 25;

/// The log of a room opened at message `id`: the messages around it and, unless they
/// reach the room's newest, a "load newer" element and the room's newest messages (as many
/// as a page starts with), so live messages still arrive below. When those overlap the
/// window, they simply continue it. The page's script keeps the two parts apart until
/// "load newer" joins them. A message not in the room is not found.
async fn around_message(state: &AppState, room: &RoomName, id: u64) -> Result<String, HttpError> {
    let unavailable = |err: crate::store::StoreError| {
        tracing::error!(error = %err, "reading a message's context failed");
        HttpError::StoreUnavailable
    };
    if state
        .store
        .message(room, id)
        .await
        .map_err(unavailable)?
        .is_none()
    {
        return Err(HttpError::NotFound);
    }
    // One more on each side tells whether there is more beyond.
    let mut before = state
        .store
        .before(room, id.saturating_add(1), CONTEXT + 2)
        .await
        .map_err(unavailable)?;
    let has_older = before.len() > CONTEXT as usize + 1;
    if has_older {
        before.remove(0);
    }
    let mut after = state
        .store
        .after(room, id, CONTEXT + 1)
        .await
        .map_err(unavailable)?;
    // The first message past the window, if any: where the recent ones must start for the
    // two to be one.
    let next = after.get(CONTEXT as usize).map(|m| m.id);
    after.truncate(CONTEXT as usize);
    let mut has_newer = next.is_some();
    let mut recent = Vec::new();
    if let Some(next) = next {
        let last = after.last().map_or(id, |m| m.id);
        // Oldest first; what the window already shows is left out, and when the two meet
        // there is nothing between them to load.
        recent = state
            .store
            .before(room, u64::MAX, state.config.history_limit)
            .await
            .map_err(unavailable)?;
        has_newer = recent.first().is_some_and(|m| m.id > next);
        recent.retain(|m| m.id > last);
    }
    Ok(render::window(
        room, &before, has_older, &after, has_newer, &recent,
    ))
}
