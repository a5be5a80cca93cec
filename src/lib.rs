//! hubbub: a real-time chat server that speaks hypermedia.
//!
//! The browser runs htmx with its WebSocket extension; the server keeps the state, renders
//! every change as a small HTML fragment carrying `hx-swap-oob` and pushes it down the
//! socket. A message travels one way through these modules:
//!
//! - [`http`]: the page, the `/ws` upgrade (origin check, buffer sizes), assets, health.
//! - [`session`]: one connection; parses what htmx sends, writes what the hub queues.
//! - [`domain`]: the types raw input is parsed into at the edge.
//! - [`hub`]: the room; numbers each message, renders it once, fans the bytes out.
//! - [`render`]: templates to bytes, no I/O.
//! - [`config`]: every setting, from flags or `HUBBUB_*` variables.
//!
//! [`Server`] ties them together; `main.rs` only parses the config, binds and waits for a
//! signal.

pub mod config;
pub mod domain;
pub mod http;
pub mod hub;
pub mod render;
pub mod session;

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::{Config, ConfigError};
use crate::http::AppState;
use crate::hub::Hub;

/// A configured server, ready to serve on a listener.
pub struct Server {
    config: Arc<Config>,
    hub: Hub,
}

impl Server {
    /// Checks the configuration and builds the node's state.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let hub = Hub::new(config.history_limit as usize, config.send_queue as usize);
        Ok(Self {
            config: Arc::new(config),
            hub,
        })
    }

    /// A handle to the room, for tests and introspection.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// Serves until `shutdown` is cancelled, then closes every WebSocket with 1012 and waits
    /// (at most `--shutdown-grace`) for the sessions to end.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
        let sessions = TaskTracker::new();
        let state = AppState {
            config: Arc::clone(&self.config),
            hub: self.hub,
            shutdown: shutdown.clone(),
            sessions: sessions.clone(),
        };
        let app = http::router(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;

        sessions.close();
        let open = sessions.len();
        if tokio::time::timeout(self.config.shutdown_grace, sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = sessions.len(),
                "shutdown grace period over; dropping the remaining connections"
            );
        } else {
            tracing::info!(closed = open, "all connections closed");
        }
        Ok(())
    }
}

/// Builds a [`Server`] from `config` and serves on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Server::new(config)?.serve(listener, shutdown).await?;
    Ok(())
}
