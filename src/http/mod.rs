//! The HTTP surface: the page, the socket, the assets, health, readiness and metrics.
//!
//! Each resource lives in its own file with its own `router()`; [`router`] merges them and
//! adds the 404 page. Handlers turn raw requests into domain values and hand them on;
//! everything that can go wrong is an [`HttpError`].

mod account;
pub mod assets;
pub mod client;
mod error;
pub mod headers;
mod history;
pub mod identity;
mod moderation;
mod ops;
pub mod origin;
mod page;
mod reads;
mod search;
pub mod serve;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use axum_extra::extract::cookie::Key;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::error::HttpError;
pub use self::history::parse_cursor;
pub use self::search::AT_ONCE as SEARCHES_AT_ONCE;
use crate::broker::Broker;
use crate::commit::Committer;
use crate::config::Config;
use crate::domain::RoomName;
use crate::hub::Hub;
use crate::limits::AddressLimits;
use crate::store::Store;

/// What every handler can reach, behind one `Arc`: axum clones the state for every
/// extractor and middleware layer of every request, and a clone of the fields themselves
/// (a dozen reference counts up, then down) was about 6% of the CPU a WebSocket connect
/// costs (issue 16).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub config: Arc<Config>,
    pub hub: Hub,
    /// For reading history; writes go through the committer.
    pub store: Arc<dyn Store>,
    pub committer: Committer,
    /// Carries committed batches between nodes; here for its health.
    pub broker: Arc<dyn Broker>,
    /// Signs the identity cookie.
    pub cookie_key: Key,
    /// Cancelled when the server starts shutting down; sessions watch it.
    pub shutdown: CancellationToken,
    /// Tracks WebSocket sessions, which axum's graceful shutdown does not wait for.
    pub sessions: TaskTracker,
    /// Open WebSocket connections, counted against `--max-connections(-per-ip)`.
    pub connections: client::Connections,
    /// Posts and renames counted per client address (`--ip-message-rate`,
    /// `--renames-per-minute`).
    pub address_limits: Arc<AddressLimits>,
    /// What every WebSocket session obeys, made once from the config and shared: a copy
    /// per connection would cost each idle connection a few hundred bytes.
    pub session_settings: Arc<crate::session::Settings>,
    /// Claimed names and sessions.
    pub accounts: Arc<crate::accounts::Accounts>,
    /// Searches running at once, at most [`search::AT_ONCE`]: however many addresses ask,
    /// searching never takes every reader connection from page loads and paging.
    pub searches: Arc<tokio::sync::Semaphore>,
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(page::router())
        .merge(ws::router())
        .merge(history::router())
        .merge(search::router())
        .merge(identity::router())
        .merge(account::router())
        .merge(reads::router())
        .merge(moderation::router())
        .merge(assets::router())
        .merge(ops::router())
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            identity::members_only,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.config),
            origin::same_origin_posts,
        ))
        .layer(axum::middleware::map_response(headers::secure))
        .with_state(state)
}

/// Liveness: the process is up and serving HTTP. It never looks at the store: readiness
/// (`/readyz`, in `ops.rs`) does.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found() -> HttpError {
    HttpError::NotFound
}

/// A room's history for a page, loading the room if it is not in memory.
async fn loaded_history(state: &AppState, room: &RoomName) -> Result<String, HttpError> {
    // The room could be dropped from memory again between loading and reading (when many
    // rooms are idle); a few tries settle it.
    for _ in 0..3 {
        state
            .committer
            .load_room(room)
            .await
            .map_err(|_| HttpError::StoreUnavailable)?;
        if let Some(history) = state.hub.history_html(room) {
            return Ok(history);
        }
    }
    Err(HttpError::StoreUnavailable)
}
