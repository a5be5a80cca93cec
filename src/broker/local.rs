//! The single-node broker: nothing to tell and nothing to hear.
//!
//! The commit writer hands every batch to this node's sequencer before it publishes, so a
//! single node delivers its own messages exactly as a node of many does, with no task hop
//! or channel added to the path.

use tokio_util::sync::CancellationToken;

use super::{Broker, Feed};
use crate::domain::Committed;
use crate::hub::Hub;

/// In-process: the node is the only one.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn publish(&self, _batch: &Committed) {}

    fn start(&self, feed: Feed, _hub: Hub, _stop: CancellationToken) {
        // No other node: nothing will ever arrive, and presence is all this node's.
        drop(feed);
    }

    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "local"
    }
}
