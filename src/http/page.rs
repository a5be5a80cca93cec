//! The chat pages: `/` for `general`, `/rooms/{name}` for any room, and `/rooms?name=` for
//! the "create or join" form.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::SignedCookieJar;
use serde::Deserialize;

use super::identity::{Identity, secure_cookies};
use super::{AppState, HttpError};
use crate::domain::RoomName;
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
    show(state, &headers, jar, RoomName::general()).await
}

async fn room_page(
    state: State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    jar: SignedCookieJar,
) -> Result<Response, HttpError> {
    let room = parse_room(&room)?;
    show(state, &headers, jar, room).await
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
) -> Result<Response, HttpError> {
    let known = Identity::from_jar(&jar);
    let identity = known.clone().unwrap_or_else(Identity::new_guest);
    let history = super::loaded_history(&state, &room).await?;
    let html = render::page(&Page {
        assets: super::assets::urls(),
        room: &room,
        me: identity.name.as_str(),
        me_tag: &identity.user.tag(),
        max_chars: state.config.max_message_chars,
        history: &history,
        rooms: &state.hub.room_counts(),
        present: &state.hub.present(&room),
    })
    .map_err(|err| HttpError::Internal(err.to_string()))?;
    let page = ([(header::CACHE_CONTROL, "no-store")], Html(html));
    Ok(match known {
        Some(_) => page.into_response(),
        None => {
            let cookie = identity.cookie(secure_cookies(&state.config, headers));
            (jar.add(cookie), page).into_response()
        }
    })
}
