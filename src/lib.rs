//! hubbub: a real-time chat server that speaks hypermedia.
//!
//! The browser runs htmx with its WebSocket extension; the server keeps the state, renders
//! every change as a small HTML fragment carrying `hx-swap-oob` and pushes it down the
//! socket. A message travels one way through these modules:
//!
//! - [`http`]: the page, the `/ws` upgrade (origin check, buffer sizes), assets, health.
//! - [`session`]: one connection; parses what htmx sends, writes what the hub queues.
//! - [`domain`]: the types raw input is parsed into at the edge.
//! - [`commit`]: group commit: stores accepted messages in batches, then hands them on.
//! - [`sequencer`]: delivers committed batches to the hub in global id order, each once,
//!   reading back from the store whatever this node missed.
//! - [`broker`]: tells the other nodes what this node committed (and hears what they did).
//! - [`store`]: the `Store` trait, SQLite and PostgreSQL; the only place that knows SQL.
//! - [`hub`]: a directory of rooms, each behind its own lock; renders each stored message
//!   once, fans the bytes out (big rooms through a queue and a drainer task), keeps the
//!   newest messages for newcomers, and who is here.
//! - [`outlet`]: a connection's write side, shared by the hub (which offers frames) and
//!   the session (which drains what the socket could not take at once).
//! - [`cluster`]: who is on the other nodes, and what this node told them of its own.
//! - [`render`]: templates to bytes, no I/O.
//! - [`config`]: every setting, from flags or `HUBBUB_*` variables.
//! - [`metrics`]: counters, gauges and histograms, one registry per server (`/metrics`).
//! - [`limits`]: rate limits shared by everything from one client address.
//! - [`accounts`]: claimed names, passwords (Argon2id) and sessions.
//! - [`admin`]: `hubbub admin grant|revoke NAME`, operator commands on the store.
//!
//! WebSocket framing is the crate [`hubbub_wire`] (`crates/hubbub-wire`), shared with the
//! load tool (`crates/hubbub-load`).
//!
//! `domain`, `render`, `metrics` and `config` are the bottom layer: they import nothing of
//! the modules above them.
//!
//! [`Server`] ties them together; `main.rs` only parses the config, binds and waits for a
//! signal.

pub mod accounts;
pub mod admin;
pub mod broker;
pub mod cluster;
pub mod commit;
pub mod config;
pub mod domain;
pub mod http;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod outlet;
pub mod render;
pub mod sequencer;
pub mod session;
pub mod store;

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, LocalBroker, RedisBroker};
use crate::commit::{CommitSettings, Committer};
pub use crate::config::{Config, ConfigError};
use axum_extra::extract::cookie::Key;

use crate::http::AppState;
use crate::hub::{Hub, HubSettings};
use crate::metrics::Metrics;
use crate::sequencer::Sequencer;
use crate::store::{Store, StoreError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Broker(String),
}

/// A configured server with its store open, ready to serve on a listener.
pub struct Server {
    config: Arc<Config>,
    hub: Hub,
    store: Arc<dyn Store>,
    committer: Committer,
    broker: Arc<dyn Broker>,
    cookie_key: Key,
    accounts: Arc<accounts::Accounts>,
    writer: JoinHandle<()>,
    /// Tells the writer to finish once the sessions are gone.
    writer_stop: CancellationToken,
}

impl Server {
    /// Checks the configuration, opens (and migrates) the store and fills the history.
    pub async fn new(config: Config) -> Result<Self, StartError> {
        config.validate()?;
        let store = store::open(&config.database).await?;
        let settings = hub_settings(&config);
        // A registry of this server's own: two servers in one process count apart.
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::with_metrics(settings, Arc::clone(&metrics));
        let rooms = store.rooms().await?;
        tracing::info!(
            backend = store.backend(),
            database = %config.database,
            rooms = rooms.len(),
            "store opened"
        );
        hub.know_rooms(rooms);
        // Bans count from the first connection on.
        hub.set_bans(store.bans().await?.into_iter().map(|ban| ban.user));
        let cookie_key = match &config.cookie_secret {
            Some(secret) => Key::derive_from(secret.expose().as_bytes()),
            None => Key::try_from(store.cookie_key().await?.as_slice())
                .map_err(|_| StoreError::BadCookieKey)?,
        };
        let settings = CommitSettings {
            max_batch: config.commit_batch as usize,
            window: config.commit_window,
        };
        // Everything committed so far counts as delivered: rooms load their history from
        // the store up to this id, and live delivery continues above it.
        let sequencer = Sequencer::start(Arc::clone(&store), hub.clone()).await?;
        // Alone, nobody else to tell; with Redis, every node (this one too) hears every
        // batch. Either way the writer delivers to this node's sessions first.
        let broker: Arc<dyn Broker> = match &config.redis {
            Some(url) => {
                tracing::info!(redis = %url, channel = %config.redis_channel, "using Redis to reach the other nodes");
                Arc::new(
                    RedisBroker::new(url, &config.redis_channel, config.presence_expiry, metrics)
                        .map_err(StartError::Broker)?,
                )
            }
            None => Arc::new(LocalBroker),
        };
        let writer_stop = CancellationToken::new();
        let (committer, writer) = Committer::start(
            Arc::clone(&store),
            sequencer,
            Arc::clone(&broker),
            settings,
            writer_stop.clone(),
        );
        broker.start(committer.feed(), hub.clone(), writer_stop.clone());
        tracing::info!(broker = broker.name(), "broker started");
        let accounts = Arc::new(accounts::Accounts::new(Arc::clone(&store)));
        Ok(Self {
            accounts,
            config: Arc::new(config),
            hub,
            store,
            committer,
            broker,
            cookie_key,
            writer,
            writer_stop,
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
        let state = AppState::new(http::Shared {
            config: Arc::clone(&self.config),
            hub: self.hub.clone(),
            store: self.store,
            committer: self.committer,
            broker: self.broker,
            cookie_key: self.cookie_key,
            shutdown: shutdown.clone(),
            sessions: sessions.clone(),
            connections: http::client::Connections::new(
                self.config.max_connections as usize,
                self.config.max_connections_per_ip as usize,
            ),
            address_limits: Arc::new(limits::AddressLimits::from_config(&self.config)),
            session_settings: Arc::new(session::Settings::from_config(&self.config)),
            searches: Arc::new(tokio::sync::Semaphore::new(http::SEARCHES_AT_ONCE)),
            accounts: Arc::clone(&self.accounts),
        });
        tokio::spawn(upkeep(
            self.hub.clone(),
            Arc::clone(&state.address_limits),
            shutdown.clone(),
        ));
        tokio::spawn(self.hub.clone().keep_alive(
            self.config.ping_interval,
            self.config.pong_timeout,
            shutdown.clone(),
        ));
        tokio::spawn(hub::refresh_bans(
            self.hub.clone(),
            Arc::clone(&state.store),
            shutdown.clone(),
        ));
        let app = http::router(state);
        let serving =
            http::serve::serve(listener, app, shutdown.clone(), self.config.header_timeout);
        tokio::pin!(serving);
        // The accept loop ends on shutdown too, often in the same instant as the token: only
        // an end *without* shutdown is an early return; otherwise the sessions are still
        // to be waited for below.
        let mut served = None;
        tokio::select! {
            result = &mut serving => served = Some(result),
            () = shutdown.cancelled() => {}
        }
        if !shutdown.is_cancelled() {
            return served.unwrap_or(Ok(()));
        }
        // Every session closes with 1012; one still joining sees the token itself.
        self.hub.end_all_sessions();

        // One deadline for everything: HTTP requests in flight, WebSocket sessions and the
        // commit writer. A client that stalls mid-request cannot hold the process past it.
        let deadline = Instant::now() + self.config.shutdown_grace;
        if served.is_none()
            && tokio::time::timeout_at(deadline, &mut serving)
                .await
                .is_err()
        {
            tracing::warn!(
                "HTTP requests still open at the end of the grace period; dropping them"
            );
        }
        sessions.close();
        let open = sessions.len();
        if tokio::time::timeout_at(deadline, sessions.wait())
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
        // Sessions are done: the writer commits what is queued and stops. It gets a moment
        // even if the sessions used up the grace period, so nothing accepted is dropped.
        self.writer_stop.cancel();
        let writer_deadline = deadline.max(Instant::now() + WRITER_GRACE);
        if tokio::time::timeout_at(writer_deadline, self.writer)
            .await
            .is_err()
        {
            tracing::warn!("the commit writer did not finish in time");
        }
        Ok(())
    }
}

/// The hub's settings from the configuration.
fn hub_settings(config: &Config) -> HubSettings {
    HubSettings {
        history_limit: config.history_limit as usize,
        send_queue: config.send_queue as usize,
        typing_expiry: config.typing_timeout,
        presence_notices: config.presence_notices,
        // With Redis, every node's users are shown on every node.
        share_presence: config.redis.is_some(),
        fanout_rest: config.commit_window,
        fanout_parts: match config.fanout_parts {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            parts => parts as usize,
        },
        ..HubSettings::default()
    }
}

/// Typing expiry and room-list updates twice a second, and forgetting idle client
/// addresses once a minute, until shutdown.
async fn upkeep(hub: Hub, address_limits: Arc<limits::AddressLimits>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => hub.tick(Instant::now()),
            () = shutdown.cancelled() => break,
        }
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(FORGET_ADDRESSES_EVERY) {
            address_limits.forget_idle();
        }
    }
}

/// Upkeep ticks between sweeps of idle client addresses (a minute).
const FORGET_ADDRESSES_EVERY: u32 = 120;

const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The least time the commit writer gets to finish at shutdown.
const WRITER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Builds a [`Server`] from `config` and serves on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Server::new(config).await?.serve(listener, shutdown).await?;
    Ok(())
}
#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn fanout_parts_default_to_one_and_zero_means_every_core() {
        let config = Config::try_parse_from(["hubbub"]).unwrap();
        assert_eq!(hub_settings(&config).fanout_parts, 1);
        let config = Config::try_parse_from(["hubbub", "--fanout-parts", "0"]).unwrap();
        assert_eq!(
            hub_settings(&config).fanout_parts,
            std::thread::available_parallelism().map_or(1, usize::from)
        );
        let config = Config::try_parse_from(["hubbub", "--fanout-parts", "3"]).unwrap();
        assert_eq!(hub_settings(&config).fanout_parts, 3);
        for bad in ["65", "many"] {
            let error = Config::try_parse_from(["hubbub", "--fanout-parts", bad]).unwrap_err();
            assert!(error.to_string().contains("--fanout-parts"), "{error}");
        }
    }
}
