//! Everything a run can be told, as flags.

use std::time::Duration;

/// Everything a run can be told.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "hubbub-load",
    version,
    about = "Load-test a hubbub (or any htmx WebSocket chat) server."
)]
pub struct LoadConfig {
    /// The chat page (`http://host:port/`, `/rooms/NAME`) or its WebSocket URL (`ws://…`).
    #[arg(long, default_value = "http://127.0.0.1:3000/")]
    pub url: String,
    /// Another node of the same chat (repeatable). Clients are spread over `--url` and
    /// these in turn (client i on node i mod n, senders included), so most deliveries
    /// cross from one node to another.
    #[arg(long = "also-url", value_name = "URL")]
    pub also_urls: Vec<String>,
    /// Connections to open.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// How many of the clients send.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Sending before measuring (not counted).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// After the last message, how long to wait for deliveries still in flight.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Use this room's page (`/rooms/NAME`) instead of the URL's path.
    #[arg(long)]
    pub room: Option<String>,
    /// Only connect and hold the connections for `--duration`; send nothing.
    #[arg(long)]
    pub idle: bool,
    /// Read this process's resident memory before and after connecting.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Fail (exit 1) when more than this fraction of deliveries is lost.
    #[arg(long, default_value_t = 0.0)]
    pub max_loss: f64,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Do not spread connections over source addresses 127.0.x.y (only used for loopback
    /// targets, where it lifts the ephemeral-port limit).
    #[arg(long)]
    pub no_spread: bool,
}
