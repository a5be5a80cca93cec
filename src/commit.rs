//! The way in: group commit, then broadcast.
//!
//! Sessions hand accepted messages to the [`Committer`]; one task stores them in batches
//! (one transaction for everything that arrived within `--commit-window`, at most
//! `--commit-batch` messages) and only after the commit hands them, numbered, to the hub
//! for fan-out. So nothing is broadcast that is not stored, every sender learns whether
//! their message made it, and many senders cost few commits.
//!
//! The same task loads rooms into the hub (their newest messages, from the store). Because
//! it is the only task that delivers messages, a room loaded between two batches can
//! neither miss a committed message nor see one twice.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{ChatMessage, NewMessage, RoomName};
use crate::hub::Hub;
use crate::metrics::{Metrics, Rejection};
use crate::store::{Appended, Store, StoreError};

/// How many accepted messages may wait for the writer. When it is full, senders are told
/// the server is busy (and get their text back) rather than left waiting.
const QUEUE: usize = 8192;

/// Why a message was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("{0}")]
    Store(Arc<StoreError>),
    #[error("the server is shutting down")]
    Stopped,
    #[error("the commit queue is full")]
    Busy,
}

impl CommitError {
    /// One sentence for the sender.
    pub fn user_message(&self) -> &'static str {
        match self {
            CommitError::Store(err) => err.user_message(),
            CommitError::Stopped => "the server is restarting; try again in a moment.",
            CommitError::Busy => "the server is busy; try again in a moment.",
        }
    }
}

/// Batching limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct CommitSettings {
    /// The most messages in one transaction.
    pub max_batch: usize,
    /// How long the first message of a batch waits for company. Zero commits whatever is
    /// queued at once (still in one transaction).
    pub window: Duration,
}

struct Pending {
    message: NewMessage,
    reply: oneshot::Sender<Result<u64, CommitError>>,
}

/// What the writer task does, in the order it was asked.
enum Job {
    Store(Pending),
    /// Put a room into the hub (if it is not there), then answer.
    Load(RoomName, oneshot::Sender<Result<(), CommitError>>),
}

/// A handle for submitting messages. Cheap to clone; the writer stops when every handle
/// is gone and the queue is drained.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Job>,
    hub: Hub,
}

impl Committer {
    /// Starts the writer task.
    /// It stops when every handle is gone, or when `stop` is cancelled, after committing
    /// what is queued at that moment.
    pub fn start(
        store: Arc<dyn Store>,
        hub: Hub,
        settings: CommitSettings,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (queue, pending) = mpsc::channel(QUEUE);
        let task = tokio::spawn(write_loop(store, hub.clone(), pending, settings, stop));
        (Self { queue, hub }, task)
    }

    /// Queues a message for the next commit, at once: once this returns `Ok`, the message
    /// will be stored (or its sender told why not) whatever happens to the session. The
    /// receiver answers with the message's id once it is committed and broadcast.
    ///
    /// A full queue means the store has fallen far behind the room; the sender is told to
    /// try again rather than made to wait without a word.
    pub fn submit(
        &self,
        message: NewMessage,
    ) -> Result<oneshot::Receiver<Result<u64, CommitError>>, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job::Store(Pending { message, reply }))
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => CommitError::Busy,
                mpsc::error::TrySendError::Closed(_) => CommitError::Stopped,
            })?;
        Ok(answer)
    }

    /// Whether the writer can take messages now, for `/readyz`: `Err` says why not.
    pub fn health(&self) -> Result<(), &'static str> {
        if self.queue.is_closed() {
            Err("the commit writer has stopped")
        } else if self.queue.capacity() == 0 {
            Err("the commit queue is full")
        } else {
            Ok(())
        }
    }

    /// Makes sure a room is in the hub, loading its newest messages if needed. A room
    /// already in memory costs nothing (no trip through the writer).
    pub async fn load_room(&self, room: &RoomName) -> Result<(), CommitError> {
        if self.hub.is_loaded(room) {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Load(room.clone(), reply))
            .await
            .map_err(|_| CommitError::Stopped)?;
        answer.await.unwrap_or(Err(CommitError::Stopped))
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    hub: Hub,
    mut queue: mpsc::Receiver<Job>,
    settings: CommitSettings,
    stop: CancellationToken,
) {
    let max_batch = settings.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let received = tokio::select! {
            received = queue.recv_many(&mut batch, max_batch) => received,
            () = stop.cancelled() => {
                // No new senders will come; commit what is already queued, then stop.
                queue.close();
                while queue.recv_many(&mut batch, max_batch).await > 0 {
                    run_jobs(store.as_ref(), &hub, &mut batch).await;
                }
                break;
            }
        };
        if received == 0 {
            break; // every handle is gone and nothing is left
        }
        if !settings.window.is_zero() {
            let deadline = Instant::now() + settings.window;
            while batch.len() < max_batch {
                let room = max_batch - batch.len();
                match tokio::time::timeout_at(deadline, queue.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        run_jobs(store.as_ref(), &hub, &mut batch).await;
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
    messages: &[NewMessage],
) -> Result<Appended, StoreError> {
    let started = Instant::now();
    let stored = tokio::time::timeout(APPEND_TIMEOUT, store.append(messages))
        .await
        .unwrap_or(Err(StoreError::TimedOut(APPEND_TIMEOUT)));
    metrics.commit(messages.len(), started.elapsed());
    stored
}

/// Runs queued jobs: room loads first (messages not yet committed reach a loaded room
/// live when they are), then every queued message as one batch.
async fn run_jobs(store: &dyn Store, hub: &Hub, jobs: &mut Vec<Job>) {
    let mut pending = Vec::new();
    for job in jobs.drain(..) {
        match job {
            Job::Store(message) => pending.push(message),
            Job::Load(room, reply) => {
                let _ = reply.send(load(store, hub, &room).await);
            }
        }
    }
    if !pending.is_empty() {
        commit(store, hub, pending).await;
    }
}

async fn load(store: &dyn Store, hub: &Hub, room: &RoomName) -> Result<(), CommitError> {
    if hub.is_loaded(room) {
        return Ok(());
    }
    let limit = hub.settings().history_limit;
    // One more than the cache holds tells whether "load older" has anything to load.
    let mut newest = tokio::time::timeout(APPEND_TIMEOUT, store.recent(room, limit as u32 + 1))
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

async fn commit(store: &dyn Store, hub: &Hub, batch: Vec<Pending>) {
    let (messages, replies): (Vec<NewMessage>, Vec<_>) =
        batch.into_iter().map(|p| (p.message, p.reply)).unzip();
    let started = Instant::now();
    match append(store, hub.metrics(), &messages).await {
        Ok(Appended { ids, .. }) => {
            let elapsed = started.elapsed();
            if elapsed >= SLOW_COMMIT {
                // Every message of the room waits behind this one: worth an operator's look
                // (a checkpoint, a slow disk, a busy database).
                tracing::warn!(messages = ids.len(), ?elapsed, "slow commit");
            } else {
                tracing::trace!(messages = ids.len(), ?elapsed, "committed");
            }
            deliver(hub, messages, ids, replies);
        }
        Err(err) if err.is_rejected() && messages.len() > 1 => {
            // The database refused something in this batch. One sender's bad message must
            // not sink everyone else's: store them one by one.
            tracing::warn!(error = %err, messages = messages.len(), "a batch was refused; storing its messages one by one");
            for (message, reply) in messages.into_iter().zip(replies) {
                let one = [message];
                match append(store, hub.metrics(), &one).await {
                    Ok(Appended { ids, .. }) => deliver(hub, one.into(), ids, vec![reply]),
                    Err(err) => refuse(hub, err, vec![reply]),
                }
            }
        }
        Err(err) => refuse(hub, err, replies),
    }
}

type Reply = oneshot::Sender<Result<u64, CommitError>>;

fn deliver(hub: &Hub, messages: Vec<NewMessage>, ids: Vec<u64>, replies: Vec<Reply>) {
    let stored: Vec<ChatMessage> = messages
        .into_iter()
        .zip(&ids)
        .map(|(m, id)| m.stored(*id))
        .collect();
    hub.deliver(&stored);
    for (reply, id) in replies.into_iter().zip(ids) {
        // The sender may have gone; the message is stored and broadcast anyway.
        let _ = reply.send(Ok(id));
    }
}

fn refuse(hub: &Hub, err: StoreError, replies: Vec<Reply>) {
    tracing::error!(error = %err, messages = replies.len(), "storing messages failed; nothing was broadcast");
    hub.metrics()
        .rejected_many(Rejection::store(&err), replies.len());
    let err = CommitError::Store(Arc::new(err));
    for reply in replies {
        let _ = reply.send(Err(err.clone()));
    }
}

/// A hub and a committer over a fresh SQLite file, committing at once: for unit tests.
#[cfg(test)]
pub(crate) async fn for_tests(
    stop: CancellationToken,
) -> (Committer, Hub, JoinHandle<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let url =
        crate::store::DatabaseUrl::new(format!("sqlite://{}", dir.path().join("t.db").display()));
    let store = crate::store::open(&url)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let hub = Hub::new(crate::hub::HubSettings::default());
    let settings = CommitSettings {
        max_batch: 16,
        window: Duration::ZERO,
    };
    let (committer, writer) = Committer::start(store, hub.clone(), settings, stop);
    (committer, hub, writer, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_reports_a_stopped_writer() {
        let stop = CancellationToken::new();
        let (committer, _hub, writer, _dir) = for_tests(stop.clone()).await;
        assert_eq!(committer.health(), Ok(()));

        stop.cancel();
        writer.await.unwrap();
        assert_eq!(committer.health(), Err("the commit writer has stopped"));
    }
}
