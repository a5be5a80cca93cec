//! A connection's writes waiting for their commit, answered in the order they were sent.

use std::task::{Context, Poll, ready};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;

use super::{Attempt, InFlight};
use crate::commit::CommitError;

/// Writes waiting for their commit, answered in order. Kept only while one waits, and
/// boxed: an empty `FuturesOrdered` still holds two allocations, 152 bytes, and is 64
/// bytes in place, all of which an idle connection would carry for nothing
/// (BENCHMARKS.md, issue 16).
#[derive(Default)]
pub(super) struct Commits(Option<Box<FuturesOrdered<InFlight>>>);

impl Commits {
    pub(super) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |waiting| waiting.len())
    }

    pub(super) fn push(&mut self, write: InFlight) {
        self.0
            .get_or_insert_with(|| Box::new(FuturesOrdered::new()))
            .push_back(write);
    }

    /// The next answer, in submission order; `None` at once when nothing waits.
    pub(super) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(Attempt, Result<u64, CommitError>)>> {
        let Some(waiting) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        let next = ready!(waiting.poll_next_unpin(cx));
        if waiting.is_empty() {
            self.0 = None;
        }
        Poll::Ready(next)
    }
}
