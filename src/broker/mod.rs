//! The seam between nodes: "tell every node about a batch I committed" and "give me what
//! the others committed"; and, for the hub, "tell the others who is here, and who is there".
//!
//! A [`Broker`] carries [`Committed`] batches between nodes; it decides nothing about
//! order or duplicates. Every batch, from whichever side, goes to the node's sequencer
//! (`crate::sequencer`), which delivers in global id order, drops what it has already
//! delivered and reads whatever it missed back from the store. So a broker may drop, repeat
//! or delay batches without harm to what clients see, only to how soon they see it.
//!
//! - [`LocalBroker`] (`local.rs`): in-process, a single node. There is no other node to tell,
//!   so publishing does nothing and nothing arrives.
//! - [`RedisBroker`] (`redis/`, the only module that knows Redis) publishes each batch
//!   once; it hands every batch it receives (this node's echo included, dropped as a
//!   duplicate) to [`Feed::remote`], and calls [`Feed::resync`] after every (re)subscribe,
//!   since pub/sub drops what it could not deliver. It also shares presence, typing and
//!   renames: what the hub has to tell ([`Hub::take_presence`], [`Hub::take_signals`]) goes
//!   out, what other nodes tell goes to [`Hub::hear`] (`redis/presence/`).

mod local;
mod redis;

pub use self::local::LocalBroker;
pub use self::redis::RedisBroker;
pub use crate::commit::Feed;
use crate::domain::Committed;
use crate::hub::Hub;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How a node tells the others what it committed, and hears what they did.
pub trait Broker: Send + Sync + 'static {
    /// Tells the other nodes about a batch this node committed (and has already delivered
    /// to its own sessions). Called by the commit writer on its hot path, so it must not
    /// wait: a remote broker queues the batch for its own task, and a batch it cannot send
    /// is caught up by the other nodes from the store (on their next batch, or on resync).
    fn publish(&self, batch: &Committed);

    /// Starts hearing from the other nodes: every batch goes to `feed`, and presence and
    /// typing to `hub` (which also has this node's own to tell), until `stop`. Called
    /// once, when the server starts.
    fn start(&self, feed: Feed, hub: Hub, stop: CancellationToken);

    /// Whether the broker is connected, for `/readyz`: `Err` is one line of why not (no
    /// hosts, no passwords: it is shown to whoever can reach the endpoint).
    fn health(&self) -> Result<(), String>;

    /// Which broker this is, for logs.
    fn name(&self) -> &'static str;

    /// How long a node may go without a batch before it looks in the store for batches it
    /// missed: a node that died after committing and before publishing leaves messages
    /// nobody announces, which the others would otherwise show only with their next batch.
    /// `None` for a single node, where every batch is this node's own.
    fn idle_resync(&self) -> Option<Duration> {
        None
    }
}
