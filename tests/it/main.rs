//! hubbub's integration tests: one binary, a real server on port 0 per test, real
//! WebSocket clients, a real browser. One file per capability; what they stand on is in
//! `support/`.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

mod accessibility;
mod accounts;
mod bans;
mod browser;
mod browser_accounts;
mod browser_reads;
mod changes;
mod chat;
mod cluster;
mod cluster_presence;
mod faults;
mod history;
mod http_edges;
mod inputs;
mod limits;
mod load;
mod mentions;
mod moderation;
mod observability;
mod reads;
mod rooms;
mod search;
mod sequencing;
mod shutdown;
mod slow_client;
