//! The WebSocket endpoints (`/rooms/{room}/ws`, and `/ws` for `general`): check the origin
//! and the handshake, load the room, answer 101 and hand the plain TCP stream to a session.
//!
//! The upgrade is done here rather than through a WebSocket library so the session gets
//! the `TcpStream` itself (hyper hands it back after the 101), with no per-connection
//! framing buffers: see [`hubbub_wire`] and [`crate::outlet`].

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::SignedCookieJar;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::client::{ClientAddr, Peer};
use super::identity::visitor;
use super::{AppState, HttpError, origin};
use crate::config::Guests;
use crate::domain::RoomName;
use crate::limits::ClientLimits;
use crate::session;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ws", get(general))
        .route("/rooms/{room}/ws", get(room_socket))
}

async fn general(
    state: State<AppState>,
    jar: SignedCookieJar,
    request: Request,
) -> Result<Response, HttpError> {
    connect(state, jar, request, RoomName::general()).await
}

async fn room_socket(
    state: State<AppState>,
    Path(room): Path<String>,
    jar: SignedCookieJar,
    request: Request,
) -> Result<Response, HttpError> {
    let room = super::page::parse_room(&room)?;
    connect(state, jar, request, room).await
}

async fn connect(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    mut request: Request,
    room: RoomName,
) -> Result<Response, HttpError> {
    if state.shutdown.is_cancelled() {
        return Err(HttpError::ShuttingDown);
    }
    origin::check(request.headers(), &state.config.allowed_origins)
        .map_err(|origin| HttpError::ForeignOrigin { origin })?;
    let accept = handshake(request.method(), request.headers())?;
    // Counted before anything else is spent on the connection; held for its life.
    let peer = request.extensions().get::<Peer>().map(|peer| peer.0);
    let client = ClientAddr::of_request(peer, request.headers(), state.config.trust_proxy);
    let permit = state.connections.acquire(client).map_err(|refused| {
        state.hub.metrics().refused(refused.refusal());
        HttpError::TooManyConnections(refused)
    })?;
    // Load the room before upgrading, so a store failure is a plain 503.
    state
        .committer
        .load_room(&room)
        .await
        .map_err(|_| HttpError::StoreUnavailable)?;

    // No cookie (a script, a load tool): a guest for this connection only.
    // Under `--guests off` a guest never gets here (`identity::members_only`).
    let checked = tokio::time::Instant::now();
    let visitor = visitor(&state, &jar).await?;
    let read_only = !visitor.signed_in() && state.config.guests == Guests::ReadOnly;
    // A new guest has read nothing: no store read for a first visit or a load tool.
    let visitor_was_new = visitor.new_cookie && jar.get("hubbub_id").is_none();
    let unread = if visitor.new_cookie {
        None
    } else {
        super::reads::snapshot(&state, &visitor.identity.user, &visitor.identity.name).await
    };
    let sign_in = visitor
        .account
        .as_ref()
        .map(|(_, token)| (token.tag(), checked));
    let identity = visitor.identity;
    let settings = Arc::clone(&state.session_settings);
    // Held by the session so that shutdown waits for it.
    let tracked = state.sessions.token();
    let place = session::Room {
        hub: state.hub.clone(),
        committer: state.committer.clone(),
        room,
        read_only,
        unread,
        anonymous: visitor_was_new,
        sign_in,
        address: (!client.exempt).then(|| ClientLimits {
            ip: client.ip,
            limits: Arc::clone(&state.address_limits),
        }),
    };
    let shutdown = state.shutdown.clone();
    let hub = state.hub.clone();
    let upgrade = hyper::upgrade::on(&mut request);

    // Two tasks: this one takes the upgrade and opens the session, which needs far more
    // state than serving it; the session is then served in a task of its own, so an open
    // connection's task holds only what serving needs (`session::Joined`).
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "WebSocket upgrade failed");
                return;
            }
        };
        // hubbub's own accept loop serves plain TCP connections (`super::serve`).
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            tracing::error!("upgraded connection is not a TCP stream; dropping it");
            return;
        };
        let socket = parts.io.into_inner();
        let who = (identity.user, identity.name);
        let opened = session::open(socket, parts.read_buf, place, who, settings, &shutdown);
        match opened.await {
            Ok(joined) => drop(tokio::spawn(joined.run((tracked, permit)))),
            Err(end) => hub.metrics().session_started().ended(end.disconnect()),
        }
    });

    let headers = [
        (header::UPGRADE, HeaderValue::from_static("websocket")),
        (header::CONNECTION, HeaderValue::from_static("upgrade")),
        (header::SEC_WEBSOCKET_ACCEPT, accept),
    ];
    Ok((StatusCode::SWITCHING_PROTOCOLS, headers).into_response())
}

/// Checks an opening handshake (RFC 6455 §4.2.1) and returns the `Sec-WebSocket-Accept`
/// value to answer it with.
fn handshake(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, HttpError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let version_13 = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| key.len() == 24);
    match key {
        Some(key)
            if method == Method::GET
                && has_token(header::UPGRADE, "websocket")
                && has_token(header::CONNECTION, "upgrade")
                && version_13 =>
        {
            HeaderValue::from_str(&hubbub_wire::accept_key(key.as_bytes()))
                .map_err(|_| HttpError::NotWebSocket)
        }
        _ => Err(HttpError::NotWebSocket),
    }
}
