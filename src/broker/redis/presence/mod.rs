//! Presence and typing across nodes, over the same Redis connection as the batches.
//!
//! Each node keeps its own users in a Redis hash of its own, `CHANNEL:presence:node:ID`
//! (one field `ROOM USER` = name per user per room; `seq`, the number of the last report;
//! `expiry`, its `--presence-expiry` in milliseconds, after which the others forget it
//! unless it sends a heartbeat), which expires unless the node renews it, and lists itself in the sorted set
//! `CHANNEL:presence:nodes` (scored by when it is due to expire: its last heartbeat plus
//! its expiry, so every node reads the list the same way whatever its own expiry). What changes is
//! also published on `CHANNEL:presence`, in the same transaction as the hash update:
//!
//! - `changes`: report `seq`, who came (or was renamed) and who went, since report
//!   `seq - 1`. Paced: at most one every [`REPORT_PACE`], covering everything meanwhile.
//! - `alive`: the node's heartbeat (every third of `--presence-expiry`) with its last
//!   report's number and its expiry; also sent when the node has just rewritten its whole
//!   hash.
//! - `left`: the node is stopping.
//! - `typing`, `renamed`, `read` (a room read, with the user's counts there now),
//!   `signed_out` (sessions whose sockets are to close): passed on as they happen;
//!   nothing to keep.
//!
//! A node that hears a report it cannot apply (one was missed: pub/sub drops what it
//! cannot deliver) or hears of a node it does not know reads that node's hash, which is
//! exactly the state of its last report, and carries on from there ([`Gap`]). After every
//! (re)subscribe a node reads every listed node's hash and rewrites its own. A node not
//! heard from for `--presence-expiry` is forgotten by the others (`Hub::tick`), and its
//! hash expires in Redis, so a crashed node's users are gone everywhere within that time.
//!
//! Everything read from Redis is checked as strictly as what a browser sends: node ids,
//! rooms, user ids and names must parse as the node made them; what does not is counted as
//! malformed and ignored.
//!
//! - `mod.rs`: [`PresenceLink`], this node's side of it: its id, the keys, the pace.
//! - `tell.rs`: what this node tells the others: its hash, reports, heartbeats, goodbye.
//! - `hear.rs`: what it hears from them: their hashes and what they publish, for the hub.
//! - `format.rs`: the messages on the presence channel and the hash fields, read strictly.

mod format;
mod hear;
mod tell;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::{NodeId, Published};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// At most one presence report per this long: a burst of joins is one report.
const REPORT_PACE: Duration = Duration::from_millis(200);

/// This node's side of presence sharing: its id, the keys, what it told the others.
pub(super) struct PresenceLink {
    node: NodeId,
    /// `CHANNEL:presence`.
    channel: String,
    /// `CHANNEL:presence:node:`, followed by a node id.
    hash_prefix: String,
    /// `CHANNEL:presence:nodes`.
    nodes_key: String,
    expiry: Duration,
    /// The number of this node's last report.
    seq: u64,
    published: Published,
    hub: Hub,
    metrics: Arc<Metrics>,
    /// When the next report may go out.
    next_report: Instant,
    /// Presence changed while the pace held the report back.
    pending: bool,
}

impl PresenceLink {
    pub(super) fn new(channel: &str, expiry: Duration, hub: Hub, metrics: Arc<Metrics>) -> Self {
        Self {
            node: NodeId::generate(),
            channel: format!("{channel}:presence"),
            hash_prefix: format!("{channel}:presence:node:"),
            nodes_key: format!("{channel}:presence:nodes"),
            expiry,
            seq: 0,
            published: Published::default(),
            hub,
            metrics,
            next_report: Instant::now(),
            pending: false,
        }
    }

    pub(super) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// While not connected: the whole presence is written afresh on the next connection,
    /// so the hub's news is let go (holding it would hold rooms in memory).
    pub(super) fn discard_news(&mut self) {
        // `None` (changes lost) needs nothing either: all is rewritten on connecting.
        drop(self.hub.take_presence());
        drop(self.hub.take_signals());
        self.pending = false;
    }

    /// The channel to subscribe to besides the batches'.
    pub(super) fn channel(&self) -> &str {
        &self.channel
    }

    /// How often to send a heartbeat: three of them fit in the expiry.
    pub(super) fn beat_every(&self) -> Duration {
        (self.expiry / 3).max(Duration::from_millis(100))
    }

    /// When a report held back by the pace is due, if one is.
    pub(super) fn report_due(&self) -> Option<Instant> {
        self.pending.then_some(self.next_report)
    }

    fn hash(&self, node: &NodeId) -> String {
        format!("{}{node}", self.hash_prefix)
    }
}
