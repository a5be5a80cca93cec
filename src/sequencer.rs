//! The one place that hands committed messages to the hub: in global id order, each id at
//! most once, whichever way a batch arrives (this node's own commit, or another node's
//! through the broker, or both). The ids here are positions (`ChatMessage::seq`): a
//! message's own id, or the id of the change (an edit, a delete) that made a version of it.
//!
//! Ids commit in id order across every writer of the store (see `crate::store`), and every
//! batch carries `prev`, the newest id committed before it. So the sequencer only keeps
//! `last`, the newest id delivered on this node, and for each batch:
//!
//! - every id ≤ `last`: a duplicate (the echo of our own batch, a redelivery), dropped;
//! - `prev ≤ last`: the batch follows on; its ids above `last` are delivered, `last` moves
//!   to its newest (a partly known batch delivers only its new messages: every id in
//!   `(prev, newest]` is in the batch, so nothing can fall between);
//! - `prev > last`: a gap. Something committed on another node never reached us (the
//!   broker dropped it, or there is no broker between nodes). The missing messages,
//!   `last < id ≤ prev`, are read from the store, delivered, then the batch.
//!
//! `resync` (after a broker reconnects) reads and delivers everything above `last`.
//!
//! **When the store fails during a catch-up**, nothing is delivered out of order: the batch
//! waits (with every later one behind it) and the writer retries after a backoff (100 ms,
//! doubling, at most 5 s). Memory stays bounded: at most [`WAITING_MESSAGES`] messages wait
//! in batches; beyond that the waiting batches are dropped and only the newest id known to
//! be committed is kept, since every one of them is in the store and the catch-up reads
//! them back. Own messages committed meanwhile are answered as sent (they are stored) and
//! shown once the catch-up succeeds, in order.
//!
//! The sequencer belongs to the commit writer task (`crate::commit`), which also loads
//! rooms; it is owned, not shared, so it holds no lock at all. A room is loaded with its
//! messages up to `last` only (never a newer one the sequencer has not delivered yet), and
//! everything delivered afterwards is above `last`: the two meet with no gap and no overlap.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{ChatMessage, Committed};
use crate::hub::Hub;
use crate::store::{Store, StoreError};

/// The most messages kept in batches waiting for a catch-up (see the module comment).
pub const WAITING_MESSAGES: usize = 10_000;

/// Messages read from the store per query while catching up.
const PAGE: u32 = 500;

/// The longest one catch-up read may take; the writer must never hang on it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// Puts committed batches into the hub in id order. See the module comment.
pub struct Sequencer {
    store: Arc<dyn Store>,
    hub: Hub,
    /// The newest id delivered on this node.
    last: u64,
    /// The newest id known to be committed (from any batch seen, waiting or dropped).
    known: u64,
    /// Batches waiting behind a catch-up that failed, oldest first.
    waiting: VecDeque<Committed>,
    /// Messages in `waiting`.
    waiting_messages: usize,
    /// The bound on `waiting_messages`.
    max_waiting: usize,
    /// A resync (everything above `last`) is owed.
    resync: bool,
    /// After a failure: when to try again, and the backoff that led there.
    retry: Option<(Instant, Duration)>,
}

impl Sequencer {
    /// A sequencer that has delivered everything up to the store's newest id: the history a
    /// room loads from the store and the live deliveries meet there.
    pub async fn start(store: Arc<dyn Store>, hub: Hub) -> Result<Self, StoreError> {
        let last = store.newest_id().await?;
        Ok(Self::at(store, hub, last, WAITING_MESSAGES))
    }

    /// A sequencer that has delivered everything up to `last`, keeping at most
    /// `max_waiting` messages waiting.
    pub fn at(store: Arc<dyn Store>, hub: Hub, last: u64, max_waiting: usize) -> Self {
        Self {
            store,
            hub,
            last,
            known: last,
            waiting: VecDeque::new(),
            waiting_messages: 0,
            max_waiting,
            resync: false,
            retry: None,
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The newest id delivered on this node.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Whether something committed is known and not yet delivered (a catch-up is owed).
    pub fn is_behind(&self) -> bool {
        self.known > self.last || self.resync || !self.waiting.is_empty()
    }

    /// When a failed catch-up should be tried again ([`Sequencer::retry`]), if one failed.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry.map(|(at, _)| at)
    }

    /// Delivers a committed batch, and whatever must come before it, as far as it can now.
    /// The common case (the batch follows on, nothing owed) needs no store query and no
    /// copy.
    pub async fn accept(&mut self, batch: &Committed) {
        let behind = self.is_behind();
        self.known = self.known.max(batch.newest());
        if !behind && batch.prev <= self.last {
            self.deliver(&batch.messages).await;
            return;
        }
        if batch.newest() <= self.last {
            self.deliver(&batch.messages).await; // all duplicates: counts them, delivers nothing
            return;
        }
        self.hold(batch.clone());
        if self.retry.is_none() {
            self.catch_up().await;
        }
    }

    /// Reads and delivers everything committed above `last`: for a broker that may have
    /// missed batches (after it reconnects).
    pub async fn resync(&mut self) {
        self.resync = true;
        if self.retry.is_none() {
            self.catch_up().await;
        }
    }

    /// Tries a failed catch-up again (the writer calls it at [`Sequencer::retry_at`]).
    pub async fn retry(&mut self) {
        self.catch_up().await;
    }

    /// Keeps a batch until what precedes it is delivered, within the memory bound.
    fn hold(&mut self, batch: Committed) {
        if self.waiting_messages + batch.messages.len() > self.max_waiting {
            // All of them are in the store; `known` remembers how far to read.
            tracing::warn!(
                dropped = self.waiting_messages + batch.messages.len(),
                "too many committed messages waiting for a catch-up; they will be read back from the store"
            );
            self.waiting.clear();
            self.waiting_messages = 0;
            return;
        }
        self.waiting_messages += batch.messages.len();
        self.waiting.push_back(batch);
    }

    /// Delivers the waiting batches, each after whatever precedes it, then anything else
    /// owed. Stops at the first store failure and schedules a retry.
    async fn catch_up(&mut self) {
        while let Some(prev) = self.waiting.front().map(|batch| batch.prev) {
            if prev > self.last
                && let Err(err) = self.fill(prev).await
            {
                return self.failed(&err);
            }
            if let Some(batch) = self.waiting.pop_front() {
                self.waiting_messages -= batch.messages.len();
                self.deliver(&batch.messages).await;
            }
        }
        let upto = if self.resync { u64::MAX } else { self.known };
        if upto > self.last
            && let Err(err) = self.fill(upto).await
        {
            return self.failed(&err);
        }
        self.resync = false;
        self.retry = None;
    }

    /// Reads `last < id ≤ upto` from the store, page by page, and delivers it. Every id up
    /// to `upto` is committed (it came from a batch's `prev` or newest id), so once the
    /// read comes up short `last` is `upto`, even when the last ids were skipped.
    async fn fill(&mut self, upto: u64) -> Result<(), StoreError> {
        loop {
            let page =
                tokio::time::timeout(READ_TIMEOUT, self.store.between(self.last, upto, PAGE))
                    .await
                    .unwrap_or(Err(StoreError::TimedOut(READ_TIMEOUT)))?;
            let short = page.len() < PAGE as usize;
            self.hub.metrics().caught_up(page.len());
            self.deliver(&page).await;
            if short {
                if upto != u64::MAX {
                    self.last = self.last.max(upto);
                }
                return Ok(());
            }
        }
    }

    fn failed(&mut self, err: &StoreError) {
        let backoff = self
            .retry
            .map_or(FIRST_RETRY, |(_, backoff)| (backoff * 2).min(LAST_RETRY));
        tracing::warn!(error = %err, last = self.last, known = self.known, ?backoff,
            "catching up from the store failed; committed messages wait, in order");
        self.retry = Some((Instant::now() + backoff, backoff));
    }

    /// Hands the messages above `last` (in id order) to the hub; drops the rest. Then
    /// [`Hub::fanout_caught_up`]: a wait while a room is too far behind, so the writer
    /// commits no faster than the slowest room can send.
    async fn deliver(&mut self, messages: &[ChatMessage]) {
        let known = messages.partition_point(|m| m.seq <= self.last);
        if known > 0 {
            self.hub.metrics().duplicates(known);
        }
        let Some(newest) = messages.last().filter(|m| m.seq > self.last) else {
            return;
        };
        self.last = newest.seq;
        self.known = self.known.max(newest.seq);
        self.hub.deliver(&messages[known..]);
        self.hub.fanout_caught_up().await;
    }
}

#[cfg(test)]
mod tests;
