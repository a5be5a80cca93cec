//! `hubbub-load`: a load generator that speaks the page's own protocol.
//!
//! It opens `--clients` WebSocket connections the way the page does (it reads the page and
//! follows its `hx-ws:connect` or `ws-connect` attribute), lets `--senders` of them send
//! `--rate` messages per second in total, and checks every frame every client receives.
//! With `--group` it loads several rooms at once, each group of rooms its own size and
//! pace, and reports each group apart (and any message that reached the wrong room).
//! Each message carries a token (run, sender, sequence number, send time), so the tool can
//! tell exactly which messages reached which client, measure end-to-end latency, and count
//! losses and duplicates against what it actually sent. Nothing here knows hubbub's
//! internals, so the same run measures any server of the same protocol (such as the seed
//! design in `shared/bench/seed-go`). It does not depend on the server crate; it shares only
//! the frame codec, [`hubbub_wire`].
//!
//! - `config`: the flags ([`LoadConfig`]) and the groups of rooms ([`Group`]).
//! - `plan`: every room of the run, and where on each node its clients connect.
//! - `page`: from a page URL to the WebSocket URL and the Origin to connect with.
//! - `client`: one WebSocket connection over raw TCP.
//! - `run`: connect everyone, send, measure, drain, add up ([`run`]).
//! - `traffic`: the sender and reader tasks and what they share while the run goes on.
//! - `token`: the mark each message carries ([`Token`]).
//! - `report`: what a run measured ([`Report`]) and its text form.
//! - `procfs`: the server's memory and CPU time, read from `/proc`.

mod client;
mod config;
mod page;
mod plan;
mod procfs;
mod report;
mod run;
mod token;
mod traffic;

pub use self::config::{Group, GroupError, LoadConfig};
pub use self::report::{GroupReport, Latency, Report};
pub use self::run::run;
pub use self::token::Token;

/// Why a run could not even start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the page {url}: {reason}")]
    Page { url: String, reason: String },
    #[error("the page {0} has no hx-ws:connect or ws-connect attribute")]
    NoSocket(String),
    #[error("bad URL {0:?}: give http://host:port/path or ws://host:port/path")]
    BadUrl(String),
    #[error("--senders ({senders}) cannot exceed --clients ({clients})")]
    TooManySenders { senders: usize, clients: usize },
    #[error("--group needs page URLs (http://…) to find each room's socket, not {0}")]
    GroupsNeedPage(String),
}
