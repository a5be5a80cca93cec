//! How a broker hands the commit writer what other nodes committed.

use tokio::sync::mpsc;

use super::{CommitError, Job};
use crate::domain::Committed;

/// Where a broker hands what other nodes committed: into the commit writer's queue, so
/// that those batches, this node's own and room loads are all handled by one task.
#[derive(Clone)]
pub struct Feed {
    pub(super) queue: mpsc::Sender<Job>,
}

impl Feed {
    /// A batch another node committed (or this node's own echo: dropped as a duplicate).
    /// Waits while the writer's queue is full; `Err` once the writer has stopped.
    pub async fn remote(&self, batch: Committed) -> Result<(), CommitError> {
        self.queue
            .send(Job::Remote(batch))
            .await
            .map_err(|_| CommitError::Stopped)
    }

    /// Catch up from the store everything committed above what this node has delivered:
    /// for a broker that may have missed batches (after a reconnect).
    pub async fn resync(&self) -> Result<(), CommitError> {
        self.queue
            .send(Job::Resync)
            .await
            .map_err(|_| CommitError::Stopped)
    }
}
