//! The WebSocket endpoint: checks the origin, sizes the buffers, hands over to a session.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;

use super::{AppState, HttpError, identity, origin};
use crate::domain::{DisplayName, GuestName};
use crate::session::{self, Settings};

/// tungstenite reads into a buffer of this size. Its default (128 KiB) would make ten
/// thousand idle connections cost over a gigabyte; chat frames are small.
const READ_BUFFER: usize = 4 * 1024;

/// tungstenite writes once this much is buffered; we flush every frame anyway.
const WRITE_BUFFER: usize = 0;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, HttpError> {
    if state.shutdown.is_cancelled() {
        return Err(HttpError::ShuttingDown);
    }
    origin::check(&headers, &state.config.allowed_origins)
        .map_err(|origin| HttpError::ForeignOrigin { origin })?;
    let upgrade = upgrade.map_err(|_| HttpError::NotWebSocket)?;

    let name =
        DisplayName::from(identity::guest_from(&headers).unwrap_or_else(GuestName::generate));
    let settings = Settings::from_config(&state.config);
    let max_frame = state.config.max_frame_bytes as usize;
    // Held by the session so that shutdown waits for it.
    let tracked = state.sessions.token();
    let hub = state.hub.clone();
    let committer = state.committer.clone();
    let shutdown = state.shutdown.clone();

    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_frame_size(max_frame)
        .max_message_size(max_frame)
        .on_failed_upgrade(|err| tracing::debug!(error = %err, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            let _tracked = tracked;
            session::run(socket, hub, committer, name, settings, shutdown).await;
        }))
}
