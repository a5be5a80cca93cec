//! A connection's writes waiting for their commit, answered in the order they were sent.

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

use super::{Attempt, InFlight};
use crate::commit::CommitError;

/// Writes waiting for their commit, answered in order. Kept only while one waits: an
/// empty `FuturesOrdered` still holds two allocations, 152 bytes an idle connection would
/// carry for nothing (BENCHMARKS.md, issue 16).
#[derive(Default)]
pub(super) struct Commits(Option<FuturesOrdered<InFlight>>);

impl Commits {
    pub(super) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, FuturesOrdered::len)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn push(&mut self, write: InFlight) {
        self.0
            .get_or_insert_with(FuturesOrdered::new)
            .push_back(write);
    }

    /// The next answer, in submission order; `None` at once when nothing waits. Cancel
    /// safe, as `FuturesOrdered::next` is.
    pub(super) async fn next(&mut self) -> Option<(Attempt, Result<u64, CommitError>)> {
        let waiting = self.0.as_mut()?;
        let next = waiting.next().await;
        if waiting.is_empty() {
            self.0 = None;
        }
        next
    }
}
