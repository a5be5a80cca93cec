//! The WebSocket endpoints (`/rooms/{room}/ws`, and `/ws` for `general`): check the origin,
//! load the room, size the buffers, hand over to a session.

use axum::Router;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum_extra::extract::SignedCookieJar;

use super::identity::Identity;
use super::{AppState, HttpError, origin};
use crate::domain::RoomName;
use crate::session::{self, Settings};

/// tungstenite reads into a buffer of this size. Its default (128 KiB) would make ten
/// thousand idle connections cost over a gigabyte; chat frames are small.
const READ_BUFFER: usize = 4 * 1024;

/// tungstenite writes once this much is buffered; we flush every frame anyway.
const WRITE_BUFFER: usize = 0;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ws", get(general))
        .route("/rooms/{room}/ws", get(room_socket))
}

async fn general(
    state: State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, HttpError> {
    connect(state, headers, jar, upgrade, RoomName::general()).await
}

async fn room_socket(
    state: State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, HttpError> {
    let room = super::page::parse_room(&room)?;
    connect(state, headers, jar, upgrade, room).await
}

async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: SignedCookieJar,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    room: RoomName,
) -> Result<Response, HttpError> {
    if state.shutdown.is_cancelled() {
        return Err(HttpError::ShuttingDown);
    }
    origin::check(&headers, &state.config.allowed_origins)
        .map_err(|origin| HttpError::ForeignOrigin { origin })?;
    let upgrade = upgrade.map_err(|_| HttpError::NotWebSocket)?;
    // Load the room before upgrading, so a store failure is a plain 503.
    state
        .committer
        .load_room(&room)
        .await
        .map_err(|_| HttpError::StoreUnavailable)?;

    // No cookie (a script, a load tool): a guest for this connection only.
    let identity = Identity::from_jar(&jar).unwrap_or_else(Identity::new_guest);
    let settings = Settings::from_config(&state.config);
    let max_frame = state.config.max_frame_bytes as usize;
    // Held by the session so that shutdown waits for it.
    let tracked = state.sessions.token();
    let room_state = session::Room {
        hub: state.hub.clone(),
        committer: state.committer.clone(),
        room,
    };
    let shutdown = state.shutdown.clone();

    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_frame_size(max_frame)
        .max_message_size(max_frame)
        .on_failed_upgrade(|err| tracing::debug!(error = %err, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let _tracked = tracked;
            session::run(
                socket,
                room_state,
                identity.user,
                identity.name,
                settings,
                shutdown,
            )
            .await;
        }))
}
