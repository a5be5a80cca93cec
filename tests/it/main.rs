//! hubbub's integration tests: one binary, a real server on port 0 per test, real
//! WebSocket clients, a real browser.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod browser;
mod chat;
mod cluster;
mod cluster_presence;
mod faults;
mod helpers;
mod history;
mod http_edges;
mod inputs;
mod limits;
mod load;
mod observability;
mod rooms;
mod sequencing;
mod shutdown;
mod slow_client;
