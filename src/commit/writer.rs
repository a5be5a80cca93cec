//! The writer task: the one task that stores messages, delivers batches and loads rooms,
//! in the order they were asked for (see the module above for why one task).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::reads::{PendingReads, READ_FLUSH};
use super::{CommitError, CommitSettings, Job, Pending, Reply, WriterStatus, store_rejection};
use crate::broker::Broker;
use crate::domain::{Committed, RoomName, Write};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::sequencer::Sequencer;
use crate::store::{Appended, Outcome, Store, StoreError};

/// What the writer task owns.
pub(super) struct Writer {
    pub(super) store: Arc<dyn Store>,
    pub(super) sequencer: Sequencer,
    pub(super) broker: Arc<dyn Broker>,
    pub(super) status: Arc<WriterStatus>,
    pub(super) reads: Arc<PendingReads>,
}

pub(super) async fn write_loop(
    mut writer: Writer,
    mut queue: mpsc::Receiver<Job>,
    settings: CommitSettings,
    stop: CancellationToken,
) {
    let max_batch = settings.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    let idle_resync = writer.broker.idle_resync();
    // When the writer last had something to do; after `idle_resync` of nothing, it looks
    // in the store for batches no node announced.
    let mut busy_at = Instant::now();
    // The store's newest id when the last quiet look found it ahead of this node. Caught
    // up only if the next look finds it still undelivered: a batch the broker is carrying
    // right now gets a whole period to arrive first.
    let mut unannounced: Option<u64> = None;
    let mut flush = tokio::time::interval(READ_FLUSH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A catch-up that failed is tried again at its time, between batches.
        let retry_at = writer.sequencer.retry_at();
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let quiet = async {
            match idle_resync {
                Some(every) => tokio::time::sleep_until(busy_at + every).await,
                None => std::future::pending().await,
            }
        };
        let received = tokio::select! {
            received = queue.recv_many(&mut batch, max_batch) => received,
            () = retry => {
                writer.sequencer.retry().await;
                writer.note_catch_up();
                continue;
            }
            () = quiet => {
                unannounced = writer.look_for_unannounced(unannounced).await;
                busy_at = Instant::now();
                continue;
            }
            // Not guarded by "anything to store": a guard is read when the select starts,
            // and marks arriving while the writer waits would wait for its next job.
            _ = flush.tick() => {
                writer.flush_reads().await;
                continue;
            }
            () = stop.cancelled() => {
                // No new senders will come; commit what is already queued, then stop.
                queue.close();
                while queue.recv_many(&mut batch, max_batch).await > 0 {
                    writer.run_jobs(&mut batch).await;
                }
                writer.flush_reads().await;
                break;
            }
        };
        if received == 0 {
            break; // every handle is gone and nothing is left
        }
        // Only messages to store wait for company: another node's batch or a room load is
        // handled at once (the window would add its length to every cross-node delivery).
        let storing = batch.iter().any(|job| matches!(job, Job::Store(_)));
        if storing && !settings.window.is_zero() {
            let deadline = Instant::now() + settings.window;
            while batch.len() < max_batch {
                let room = max_batch - batch.len();
                match tokio::time::timeout_at(deadline, queue.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        writer.run_jobs(&mut batch).await;
        writer.note_catch_up();
        busy_at = Instant::now();
    }
    if writer.sequencer.is_behind() {
        tracing::warn!(
            delivered = writer.sequencer.last(),
            "the commit writer stopped with committed messages not yet delivered here"
        );
    }
    tracing::debug!("commit writer stopped");
}

/// A commit that takes this long is logged as a warning.
const SLOW_COMMIT: Duration = Duration::from_millis(100);

/// The longest one batch may take to store. PostgreSQL also has server-side timeouts
/// (see `store::postgres`); this bounds everything else, so the writer never hangs.
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Stores one batch, timed (failures too) for `hubbub_commit_duration_seconds`.
async fn append(
    store: &dyn Store,
    metrics: &Metrics,
    messages: &[Write],
) -> Result<Appended, StoreError> {
    let started = Instant::now();
    let stored = tokio::time::timeout(APPEND_TIMEOUT, store.append(messages))
        .await
        .unwrap_or(Err(StoreError::TimedOut(APPEND_TIMEOUT)));
    metrics.commit(messages.len(), started.elapsed());
    stored
}

impl Writer {
    fn hub(&self) -> &Hub {
        self.sequencer.hub()
    }

    /// Stores the read marks gathered since the last flush, in one transaction; on failure
    /// they are kept for the next.
    async fn flush_reads(&self) {
        let marks = self.reads.take();
        if marks.is_empty() {
            return;
        }
        let saved = tokio::time::timeout(APPEND_TIMEOUT, self.store.save_marks(&marks))
            .await
            .unwrap_or(Err(StoreError::TimedOut(APPEND_TIMEOUT)));
        match saved {
            Ok(()) => self.reads.stored(),
            Err(err) => {
                tracing::warn!(error = %err, marks = marks.len(), "storing read marks failed; kept for the next try");
                self.reads.restore(marks);
            }
        }
    }

    /// One quiet look at the store (see `write_loop`): catches up if `suspected` (the
    /// newest id a previous look saw) is still not delivered, otherwise returns the newest
    /// id if it is ahead of this node.
    async fn look_for_unannounced(&mut self, suspected: Option<u64>) -> Option<u64> {
        if suspected.is_some_and(|newest| self.sequencer.last() < newest) {
            tracing::info!(
                delivered = self.sequencer.last(),
                "messages committed on another node were never announced; reading them from the store"
            );
            self.sequencer.resync().await;
            self.note_catch_up();
            return None;
        }
        let newest = tokio::time::timeout(APPEND_TIMEOUT, self.store.newest_id()).await;
        match newest {
            Ok(Ok(newest)) if newest > self.sequencer.last() => Some(newest),
            _ => None,
        }
    }

    /// Records whether a failed catch-up is waiting for its retry.
    fn note_catch_up(&self) {
        let stalled = self.sequencer.retry_at().is_some();
        self.status.stalled.store(stalled, Ordering::Relaxed);
    }

    /// Stores one batch and records whether the store took it.
    async fn append(&self, messages: &[Write]) -> Result<Appended, StoreError> {
        let stored = append(self.store.as_ref(), self.hub().metrics(), messages).await;
        // A refusal of the data itself says nothing about the store's health.
        self.status
            .commit_failed(matches!(&stored, Err(err) if !err.is_rejected()));
        stored
    }

    /// Runs queued jobs: room loads and other nodes' batches in the order they came
    /// (messages not yet committed reach a loaded room live when they are), then every
    /// queued message as one batch.
    async fn run_jobs(&mut self, jobs: &mut Vec<Job>) {
        let mut pending = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Store(message) => pending.push(message),
                Job::Load(room, reply) => {
                    let _ = reply.send(self.load(&room).await);
                }
                Job::Remote(batch) => self.sequencer.accept(&batch).await,
                Job::Resync => self.sequencer.resync().await,
            }
        }
        if !pending.is_empty() {
            self.commit(pending).await;
        }
    }

    /// Loads a room with its newest messages up to the sequencer's `last`: a message
    /// committed above it (on another node, not yet delivered here) reaches the room when
    /// the sequencer delivers it, not twice.
    async fn load(&self, room: &RoomName) -> Result<(), CommitError> {
        let hub = self.hub();
        if hub.is_loaded(room) {
            return Ok(());
        }
        let limit = hub.settings().history_limit;
        let upto = self.sequencer.last();
        // One more than the cache holds tells whether "load older" has anything to load.
        let read = self
            .store
            .before(room, upto.saturating_add(1), limit as u32 + 1);
        let mut newest = tokio::time::timeout(APPEND_TIMEOUT, read)
            .await
            .unwrap_or(Err(StoreError::TimedOut(APPEND_TIMEOUT)))
            .map_err(|err| {
                tracing::error!(error = %err, %room, "loading a room failed");
                CommitError::Store(Arc::new(err))
            })?;
        let has_older = newest.len() > limit;
        if has_older {
            newest.remove(0);
        }
        hub.load(room, &newest, has_older);
        Ok(())
    }

    async fn commit(&mut self, batch: Vec<Pending>) {
        let (writes, replies): (Vec<Write>, Vec<_>) =
            batch.into_iter().map(|p| (p.write, p.reply)).unzip();
        let started = Instant::now();
        match self.append(&writes).await {
            Ok(appended) => {
                let elapsed = started.elapsed();
                if elapsed >= SLOW_COMMIT {
                    // Every message of the room waits behind this one: worth an operator's
                    // look (a checkpoint, a slow disk, a busy database).
                    tracing::warn!(writes = writes.len(), ?elapsed, "slow commit");
                } else {
                    tracing::trace!(writes = writes.len(), ?elapsed, "committed");
                }
                self.deliver(appended, replies).await;
            }
            Err(err) if err.is_rejected() && writes.len() > 1 => {
                // The database refused something in this batch. One sender's bad message
                // must not sink everyone else's: store them one by one.
                tracing::warn!(error = %err, writes = writes.len(), "a batch was refused; storing its writes one by one");
                for (write, reply) in writes.into_iter().zip(replies) {
                    let one = [write];
                    match self.append(&one).await {
                        Ok(appended) => self.deliver(appended, vec![reply]).await,
                        Err(err) => refuse(self.hub(), err, vec![reply]),
                    }
                }
            }
            Err(err) => refuse(self.hub(), err, replies),
        }
    }

    /// A committed batch: to this node's sessions first (through the sequencer, so they
    /// are served whatever the broker's state), then to the other nodes, then the answers.
    /// A resend stored before is answered as sent and not shown again; a refused change is
    /// answered with why.
    async fn deliver(&mut self, appended: Appended, replies: Vec<Reply>) {
        let Appended { prev, outcomes } = appended;
        let mut answers = Vec::with_capacity(outcomes.len());
        let mut messages = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            answers.push(match outcome {
                Outcome::Stored(message) => {
                    let seq = message.seq;
                    messages.push(message);
                    Ok(seq)
                }
                Outcome::Duplicate(id) => Ok(id),
                Outcome::Refused(why) => Err(CommitError::Refused(why)),
            });
        }
        if !messages.is_empty() {
            let committed = Committed { prev, messages };
            self.sequencer.accept(&committed).await;
            self.broker.publish(&committed);
        }
        for (reply, answer) in replies.into_iter().zip(answers) {
            if let Err(err) = &answer {
                self.hub().metrics().rejected(err.rejection());
            }
            // The sender may have gone; the message is stored and broadcast anyway.
            let _ = reply.send(answer);
        }
    }
}

fn refuse(hub: &Hub, err: StoreError, replies: Vec<Reply>) {
    tracing::error!(error = %err, messages = replies.len(), "storing messages failed; nothing was broadcast");
    hub.metrics()
        .rejected_many(store_rejection(&err), replies.len());
    let err = CommitError::Store(Arc::new(err));
    for reply in replies {
        let _ = reply.send(Err(err.clone()));
    }
}
