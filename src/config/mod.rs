//! Everything an operator can set, in one struct.
//!
//! Each flag has a `HUBBUB_*` environment variable of the same name; `hubbub --help` lists
//! both. The struct is built once in `main` (or by a test) and passed down explicitly: there
//! is no global configuration.
//!
//! Config sits at the bottom with `domain`, `wire`, `render` and `metrics`: it imports
//! none of the modules above it. The values it parses for them live here too (`urls.rs`:
//! database and Redis URLs, origins; the `--presence-expiry` bounds), and those modules
//! import them from here.

mod urls;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use clap::Parser;

pub use self::urls::{DatabaseUrl, RedisUrl, normalize_origin};

/// hubbub: a real-time chat server that speaks hypermedia (htmx over WebSockets).
#[derive(Debug, Clone, Parser)]
#[command(name = "hubbub", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HUBBUB_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Where history is kept: `sqlite://PATH` (created if missing) or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    #[arg(
        long,
        env = "HUBBUB_DATABASE_URL",
        default_value = "sqlite://hubbub.db",
        value_name = "URL"
    )]
    pub database: DatabaseUrl,

    /// Several nodes: the Redis server that carries each committed batch to every node,
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`. Needs a PostgreSQL `--database` shared
    /// by the nodes (SQLite is one node's file: refused). Without it the node is alone.
    #[arg(
        long,
        env = "HUBBUB_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis: Option<RedisUrl>,

    /// The Redis pub/sub channel the nodes of one chat share (and the name their Redis
    /// connections carry): give each cluster sharing a Redis server a channel of its own.
    /// 1 to 100 characters of `A-Z a-z 0-9 . _ : -`.
    #[arg(long, env = "HUBBUB_REDIS_CHANNEL", default_value = "hubbub", value_name = "NAME",
          value_parser = parse_channel)]
    pub redis_channel: String,

    /// The most messages stored in one transaction.
    #[arg(long, env = "HUBBUB_COMMIT_BATCH", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub commit_batch: u32,

    /// How long a message waits for others to share its transaction (`0s`: commit what is
    /// queued at once).
    #[arg(long, env = "HUBBUB_COMMIT_WINDOW", default_value = "5ms", value_parser = humantime::parse_duration)]
    pub commit_window: Duration,

    /// An extra origin allowed to open WebSockets, e.g. `http://localhost:5173`.
    /// Repeatable; comma-separated in the environment variable. The page's own origin
    /// (the request's Host) is always allowed.
    #[arg(
        long = "allowed-origin",
        env = "HUBBUB_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Longest message accepted, in characters (after trimming).
    #[arg(long, env = "HUBBUB_MAX_MESSAGE_CHARS", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_message_chars: u32,

    /// Largest inbound WebSocket frame (and message), in bytes. It counts the JSON
    /// envelope and the headers htmx adds, not just the text.
    #[arg(long, env = "HUBBUB_MAX_FRAME_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u32).range(256..=16 * 1024 * 1024))]
    pub max_frame_bytes: u32,

    /// How many recent messages a newcomer is shown.
    #[arg(long, env = "HUBBUB_HISTORY_LIMIT", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub history_limit: u32,

    /// Fragments a connection may have waiting to be written. A client that falls this far
    /// behind is disconnected (close code 1008) so it never slows the room.
    #[arg(long, env = "HUBBUB_SEND_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub send_queue: u32,

    /// Tasks that write one message to a very big room at once (each takes at least 2,048
    /// members); 0 means one per core. The default, 1, writes every room from one task:
    /// on two cores, splitting made both big and small rooms slower (BENCHMARKS.md).
    #[arg(long, env = "HUBBUB_FANOUT_PARTS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(0..=64))]
    pub fanout_parts: u32,

    /// Messages one connection may post per second, sustained. Over it the sender is told
    /// to slow down (the message is not sent and goes back into the input).
    #[arg(long, env = "HUBBUB_MESSAGE_RATE", default_value_t = 5, value_parser = positive())]
    pub message_rate: u32,

    /// Messages one connection may post at once before `--message-rate` applies.
    #[arg(long, env = "HUBBUB_MESSAGE_BURST", default_value_t = 10, value_parser = positive())]
    pub message_burst: u32,

    /// Typing events one connection may send per second (burst: twice as many); more are
    /// ignored. The page sends at most one every two seconds.
    #[arg(long, env = "HUBBUB_TYPING_RATE", default_value_t = 2, value_parser = positive())]
    pub typing_rate: u32,

    /// Messages all connections from one client address may post per second together,
    /// sustained (loopback peers are exempt unless `--trust-proxy` is set). It stops one
    /// client from multiplying `--message-rate` by opening more connections; keep it above
    /// `--message-rate` so a person with a few tabs open, or a household behind one
    /// address, is not slowed down.
    #[arg(long, env = "HUBBUB_IP_MESSAGE_RATE", default_value_t = 10, value_parser = positive())]
    pub ip_message_rate: u32,

    /// Messages one client address may post at once before `--ip-message-rate` applies.
    #[arg(long, env = "HUBBUB_IP_MESSAGE_BURST", default_value_t = 20, value_parser = positive())]
    pub ip_message_burst: u32,

    /// Renames (`POST /name`) one client address may make per minute (also its burst);
    /// more are answered 429 with `Retry-After`. Loopback peers are exempt unless
    /// `--trust-proxy` is set.
    #[arg(long, env = "HUBBUB_RENAMES_PER_MINUTE", default_value_t = 10, value_parser = positive())]
    pub renames_per_minute: u32,

    /// Searches (`/search`, `/rooms/{name}/search`) one client address may make per
    /// minute (also its burst); more are answered 429 with `Retry-After`. Loopback peers
    /// are exempt unless `--trust-proxy` is set.
    #[arg(long, env = "HUBBUB_SEARCHES_PER_MINUTE", default_value_t = 60, value_parser = positive())]
    pub searches_per_minute: u32,

    /// Sign-in and sign-up attempts one client address may make per minute (also its
    /// burst); more are answered 429 with `Retry-After`. Loopback peers are exempt unless
    /// `--trust-proxy` is set.
    #[arg(long, env = "HUBBUB_SIGN_INS_PER_MINUTE", default_value_t = 10, value_parser = positive())]
    pub sign_ins_per_minute: u32,

    /// Sign-in attempts for one name per minute (also its burst), from every address
    /// together, loopback included: what slows guessing one person's password from many
    /// addresses. More are answered 429 with `Retry-After`.
    #[arg(long, env = "HUBBUB_SIGN_INS_PER_NAME_PER_MINUTE", default_value_t = 5, value_parser = positive())]
    pub sign_ins_per_name_per_minute: u32,

    /// What people who have not signed in may do: `allow` (read and post under a guest
    /// name), `read-only` (read; posting, reacting and renaming need a claimed name) or
    /// `off` (every page but sign-in and sign-up needs a claimed name).
    #[arg(long, env = "HUBBUB_GUESTS", value_enum, default_value_t = Guests::Allow)]
    pub guests: Guests,

    /// WebSocket connections the server holds at most; more are refused (503) before any
    /// memory is spent on them. Keep it below the process's open-file limit.
    #[arg(long, env = "HUBBUB_MAX_CONNECTIONS", default_value_t = 15_000, value_parser = positive())]
    pub max_connections: u32,

    /// WebSocket connections one client address may hold (loopback peers are exempt
    /// unless `--trust-proxy` is set).
    #[arg(long, env = "HUBBUB_MAX_CONNECTIONS_PER_IP", default_value_t = 50, value_parser = positive())]
    pub max_connections_per_ip: u32,

    /// hubbub runs behind a reverse proxy: take the client's address from the last entry
    /// of `X-Forwarded-For` (never set this when clients can reach hubbub directly).
    #[arg(long, env = "HUBBUB_TRUST_PROXY")]
    pub trust_proxy: bool,

    /// Mark the identity cookie `Secure` (sent over HTTPS only). Set it when users reach
    /// hubbub through HTTPS; with `--trust-proxy`, a request the proxy marks
    /// `X-Forwarded-Proto: https` gets a secure cookie without it.
    #[arg(long, env = "HUBBUB_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// A client must send a request's headers within this time, or the connection is
    /// closed (slow-header attacks hold connections open by trickling them). It also
    /// closes keep-alive connections that stay idle this long.
    #[arg(long, env = "HUBBUB_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// How often the server pings each client.
    #[arg(long, env = "HUBBUB_PING_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A client that has not answered (pong or any frame) for this long is disconnected.
    #[arg(long, env = "HUBBUB_PONG_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub pong_timeout: Duration,

    /// A single write to a client that takes longer than this disconnects the client.
    #[arg(long, env = "HUBBUB_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// On SIGTERM / Ctrl-C, how long to wait for connections to close before exiting.
    #[arg(long, env = "HUBBUB_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// The secret that signs identity cookies (at least 32 characters). Without it, a
    /// random key is made once and kept in the database, so cookies survive restarts; set
    /// it to share one key between nodes that do not share a database.
    #[arg(
        long,
        env = "HUBBUB_COOKIE_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub cookie_secret: Option<Secret>,

    /// How long "… is typing" stays after the last keystroke.
    #[arg(long, env = "HUBBUB_TYPING_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub typing_timeout: Duration,

    /// Show "alice joined" / "alice left" in the message log.
    #[arg(long, env = "HUBBUB_PRESENCE_NOTICES")]
    pub presence_notices: bool,

    /// With `--redis`: how long the other nodes go on showing this node's users after its
    /// last heartbeat (it sends one every third of this), so the users of a node that
    /// crashed or lost Redis leave presence within this time. 1 second to 1 hour.
    #[arg(long, env = "HUBBUB_PRESENCE_EXPIRY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub presence_expiry: Duration,

    /// Log filter, in `tracing` syntax (e.g. `info`, `hubbub=debug`). `RUST_LOG` wins if set.
    #[arg(long, env = "HUBBUB_LOG", default_value = "info")]
    pub log: String,

    /// Log lines as `text` (for people) or `json` (one object per line, for collectors).
    #[arg(long, env = "HUBBUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The shortest and longest `--presence-expiry`, which is also the expiry any node may ask
/// the others for (`crate::presence` checks what it hears against it).
pub const PRESENCE_EXPIRY_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);

/// What guests (people who have not signed in) may do: `--guests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Guests {
    Allow,
    ReadOnly,
    Off,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A secret from the command line or the environment; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 32 {
            return Err("a cookie secret needs at least 32 characters".to_owned());
        }
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A channel name that is also safe in a Redis client name (no spaces).
/// A count that must be at least 1 (rates, bursts, limits).
fn positive() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..)
}

fn parse_channel(raw: &str) -> Result<String, String> {
    let valid = (1..=100).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if valid {
        Ok(raw.to_owned())
    } else {
        Err("a channel is 1 to 100 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'".to_owned())
    }
}

impl Config {
    /// The defaults, as if `hubbub` had been started with no flags and no environment.
    /// Tests start from this and change what they need.
    pub fn defaults() -> Self {
        // Parsing an empty command line cannot fail: every field has a default.
        Self::try_parse_from(["hubbub"]).unwrap_or_else(|err| panic!("default config: {err}"))
    }

    /// Checks the relations between fields that clap cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ping_interval.is_zero() {
            return Err(ConfigError::ZeroPingInterval);
        }
        if self.pong_timeout <= self.ping_interval {
            return Err(ConfigError::PongTimeoutTooShort {
                pong_timeout: self.pong_timeout,
                ping_interval: self.ping_interval,
            });
        }
        if self.typing_timeout.is_zero() {
            return Err(ConfigError::ZeroTypingTimeout);
        }
        if self.header_timeout.is_zero() {
            return Err(ConfigError::ZeroHeaderTimeout);
        }
        if self.commit_window >= Duration::from_secs(1) {
            return Err(ConfigError::CommitWindowTooLong(self.commit_window));
        }
        if !PRESENCE_EXPIRY_RANGE.contains(&self.presence_expiry) {
            return Err(ConfigError::PresenceExpiryOutOfRange(self.presence_expiry));
        }
        for origin in &self.allowed_origins {
            normalize_origin(origin).ok_or_else(|| ConfigError::BadOrigin(origin.clone()))?;
        }
        // Nodes share their history through PostgreSQL; over SQLite files each node would
        // number its own messages, and the ids Redis carries would mean nothing elsewhere.
        if self.redis.is_some() && !self.database.is_postgres() {
            return Err(ConfigError::RedisNeedsPostgres);
        }
        Ok(())
    }
}

/// A configuration that parses but makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--ping-interval must be greater than zero")]
    ZeroPingInterval,
    #[error(
        "--pong-timeout ({pong_timeout:?}) must be longer than --ping-interval ({ping_interval:?}), \
         or every client would be dropped"
    )]
    PongTimeoutTooShort {
        pong_timeout: Duration,
        ping_interval: Duration,
    },
    #[error(
        "--allowed-origin {0:?} is not an origin; write it as scheme://host[:port], e.g. http://localhost:5173"
    )]
    BadOrigin(String),
    #[error("--typing-timeout must be greater than zero")]
    ZeroTypingTimeout,
    #[error("--header-timeout must be greater than zero")]
    ZeroHeaderTimeout,
    #[error("--commit-window ({0:?}) is too long; keep it under a second")]
    CommitWindowTooLong(Duration),
    #[error("--presence-expiry ({0:?}) must be from 1s to 1h")]
    PresenceExpiryOutOfRange(Duration),
    #[error(
        "--redis needs a PostgreSQL --database shared by the nodes; an SQLite file belongs to one node"
    )]
    RedisNeedsPostgres,
}

#[cfg(test)]
mod tests;
