//! The way in: group commit, then broadcast.
//!
//! Sessions hand accepted messages to the [`Committer`]; one task stores them in batches
//! (one transaction for everything that arrived within `--commit-window`, at most
//! `--commit-batch` messages) and only after the commit hands them, numbered, to this
//! node's sequencer (which puts them into the hub), publishes them through the broker for
//! the other nodes, and answers each sender. So nothing is broadcast that is not stored,
//! every sender learns whether their message made it, and many senders cost few commits.
//!
//! The same task loads rooms into the hub (their newest messages, from the store), and
//! runs the sequencer for batches other nodes committed ([`Feed`]). Because it is the only
//! task that delivers messages, a room loaded between two batches can neither miss a
//! committed message nor see one twice: it is loaded with its messages up to the
//! sequencer's `last` (the newest id delivered on this node), read while nothing is being
//! delivered, and every later delivery is above `last`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::domain::{ChatMessage, Committed, NewMessage, RoomName};
use crate::hub::Hub;
use crate::metrics::{Metrics, Rejection};
use crate::sequencer::Sequencer;
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
    /// Why the message was not sent, for `hubbub_messages_rejected_total`.
    pub fn rejection(&self) -> Rejection {
        match self {
            CommitError::Store(err) => store_rejection(err),
            CommitError::Stopped => Rejection::ShuttingDown,
            CommitError::Busy => Rejection::Busy,
        }
    }

    /// One sentence for the sender.
    pub fn user_message(&self) -> &'static str {
        match self {
            CommitError::Store(err) => err.user_message(),
            CommitError::Stopped => "the server is restarting; try again in a moment.",
            CommitError::Busy => "the server is busy; try again in a moment.",
        }
    }
}

/// A store failure as a rejection: the data refused, or the store unavailable.
fn store_rejection(err: &StoreError) -> Rejection {
    if err.is_rejected() {
        Rejection::StoreRefused
    } else {
        Rejection::StoreUnavailable
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
    /// A batch another node committed, from the broker.
    Remote(Committed),
    /// Catch up everything committed above what this node delivered (the broker may have
    /// missed batches).
    Resync,
}

/// A handle for submitting messages. Cheap to clone; the writer stops when every handle
/// is gone and the queue is drained.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Job>,
    hub: Hub,
    status: Arc<WriterStatus>,
}

/// What the writer last found, for `/readyz`: written by the writer task, read by probes.
#[derive(Debug)]
struct WriterStatus {
    /// When the writer started; `failed_at` counts from here.
    started: Instant,
    /// When the last commit failed for want of the store (not a refusal of the data
    /// itself), in milliseconds since `started` plus one; 0 when the last commit went
    /// through. A message sent now would likely be refused too.
    failed_at: AtomicU64,
    /// A catch-up from the store failed and waits for its retry: committed messages are
    /// not being shown on this node.
    stalled: AtomicBool,
}

/// How long a failed commit keeps the writer "not ready". A node that is not ready gets no
/// traffic, so no commit would come to clear it: after this long it reports ready again
/// and the next commit tells (a store that is still failing fails it again at once).
const FAILED_COMMIT_UNREADY: Duration = Duration::from_secs(10);

impl WriterStatus {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            failed_at: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
        }
    }

    fn commit_failed(&self, failed: bool) {
        let at = if failed {
            self.started.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        self.failed_at.store(at, Ordering::Relaxed);
    }

    /// A commit failed within the last [`FAILED_COMMIT_UNREADY`] and none succeeded since.
    fn recently_failed(&self) -> bool {
        match self.failed_at.load(Ordering::Relaxed) {
            0 => false,
            at => {
                let now = self.started.elapsed().as_millis() as u64 + 1;
                now.saturating_sub(at) < FAILED_COMMIT_UNREADY.as_millis() as u64
            }
        }
    }
}

impl Committer {
    /// Starts the writer task, which owns `sequencer` (and through it the hub) and
    /// publishes through `broker`. It stops when every handle is gone, or when `stop` is
    /// cancelled, after committing what is queued at that moment.
    pub fn start(
        store: Arc<dyn Store>,
        sequencer: Sequencer,
        broker: Arc<dyn Broker>,
        settings: CommitSettings,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let hub = sequencer.hub().clone();
        let (queue, pending) = mpsc::channel(QUEUE);
        let status = Arc::new(WriterStatus::new());
        let writer = Writer {
            store,
            sequencer,
            broker,
            status: Arc::clone(&status),
        };
        let task = tokio::spawn(write_loop(writer, pending, settings, stop));
        (Self { queue, hub, status }, task)
    }

    /// The way in for what other nodes committed, for the broker.
    pub fn feed(&self) -> Feed {
        Feed {
            queue: self.queue.clone(),
        }
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

    /// Whether the writer can take messages now, for `/readyz`: `Err` says why not. The
    /// store's own probe only reads, so a store that can be read but not written (a full
    /// disk, a read-only file) shows here, as a failing last commit (for at most
    /// [`FAILED_COMMIT_UNREADY`] after it, or until a commit succeeds).
    pub fn health(&self) -> Result<(), &'static str> {
        if self.queue.is_closed() {
            Err("the commit writer has stopped")
        } else if self.queue.capacity() == 0 {
            Err("the commit queue is full")
        } else if self.status.recently_failed() {
            Err("the last commit failed")
        } else if self.status.stalled.load(Ordering::Relaxed) {
            Err("catching up from the store failed; retrying")
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

/// What the writer task owns.
struct Writer {
    store: Arc<dyn Store>,
    sequencer: Sequencer,
    broker: Arc<dyn Broker>,
    status: Arc<WriterStatus>,
}

async fn write_loop(
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
            () = stop.cancelled() => {
                // No new senders will come; commit what is already queued, then stop.
                queue.close();
                while queue.recv_many(&mut batch, max_batch).await > 0 {
                    writer.run_jobs(&mut batch).await;
                }
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
    messages: &[NewMessage],
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
    async fn append(&self, messages: &[NewMessage]) -> Result<Appended, StoreError> {
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
        let (messages, replies): (Vec<NewMessage>, Vec<_>) =
            batch.into_iter().map(|p| (p.message, p.reply)).unzip();
        let started = Instant::now();
        match self.append(&messages).await {
            Ok(appended) => {
                let elapsed = started.elapsed();
                if elapsed >= SLOW_COMMIT {
                    // Every message of the room waits behind this one: worth an operator's
                    // look (a checkpoint, a slow disk, a busy database).
                    tracing::warn!(messages = appended.ids.len(), ?elapsed, "slow commit");
                } else {
                    tracing::trace!(messages = appended.ids.len(), ?elapsed, "committed");
                }
                self.deliver(messages, appended, replies).await;
            }
            Err(err) if err.is_rejected() && messages.len() > 1 => {
                // The database refused something in this batch. One sender's bad message
                // must not sink everyone else's: store them one by one.
                tracing::warn!(error = %err, messages = messages.len(), "a batch was refused; storing its messages one by one");
                for (message, reply) in messages.into_iter().zip(replies) {
                    let one = [message];
                    match self.append(&one).await {
                        Ok(appended) => self.deliver(one.into(), appended, vec![reply]).await,
                        Err(err) => refuse(self.hub(), err, vec![reply]),
                    }
                }
            }
            Err(err) => refuse(self.hub(), err, replies),
        }
    }

    /// A committed batch: to this node's sessions first (through the sequencer, so they
    /// are served whatever the broker's state), then to the other nodes, then the answers.
    async fn deliver(
        &mut self,
        messages: Vec<NewMessage>,
        appended: Appended,
        replies: Vec<Reply>,
    ) {
        let Appended { prev, ids } = appended;
        let committed = Committed {
            prev,
            messages: messages
                .into_iter()
                .zip(&ids)
                .map(|(m, id)| m.stored(*id))
                .collect::<Vec<ChatMessage>>(),
        };
        self.sequencer.accept(&committed).await;
        self.broker.publish(&committed);
        for (reply, id) in replies.into_iter().zip(ids) {
            // The sender may have gone; the message is stored and broadcast anyway.
            let _ = reply.send(Ok(id));
        }
    }
}

type Reply = oneshot::Sender<Result<u64, CommitError>>;

/// Where a broker hands what other nodes committed: into the commit writer's queue, so
/// that those batches, this node's own and room loads are all handled by one task.
#[derive(Clone)]
pub struct Feed {
    queue: mpsc::Sender<Job>,
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

fn refuse(hub: &Hub, err: StoreError, replies: Vec<Reply>) {
    tracing::error!(error = %err, messages = replies.len(), "storing messages failed; nothing was broadcast");
    hub.metrics()
        .rejected_many(store_rejection(&err), replies.len());
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
    let sequencer = Sequencer::start(Arc::clone(&store), hub.clone())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let broker = Arc::new(crate::broker::LocalBroker);
    let (committer, writer) = Committer::start(store, sequencer, broker, settings, stop);
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

    fn ids_shown(hub: &Hub) -> Vec<u64> {
        let html = hub.history_html(&RoomName::general()).unwrap_or_default();
        html.split("id=\"msg-")
            .skip(1)
            .filter_map(|rest| rest[..rest.find('"').unwrap_or(0)].parse().ok())
            .collect()
    }

    /// Another node's batch arrives (through the feed a broker uses) while the store cannot
    /// be read: the catch-up before it fails, and the writer tries again by itself, later,
    /// delivering everything in order; its own commits go on meanwhile and follow.
    #[tokio::test]
    async fn the_writer_retries_a_failed_catch_up_by_itself() {
        let stop = CancellationToken::new();
        let (committer, hub, _writer, dir) = for_tests(stop.clone()).await;
        committer.load_room(&RoomName::general()).await.unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        // "Another node": its own connections to the same database.
        let other = crate::store::open(&crate::store::DatabaseUrl::new(url.clone()))
            .await
            .unwrap();
        let say = |text: &str| {
            NewMessage::now(
                RoomName::general(),
                crate::domain::DisplayName::parse("other").unwrap(),
                crate::domain::MessageText::parse(text, 100)
                    .unwrap()
                    .unwrap(),
            )
        };
        other.append(&[say("a"), say("b")]).await.unwrap(); // never published
        let batch = [say("c")];
        let appended = other.append(&batch).await.unwrap();
        let published = Committed {
            prev: appended.prev,
            messages: vec![batch[0].clone().stored(appended.ids[0])],
        };

        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::raw_sql("ALTER TABLE messages RENAME TO messages_away")
            .execute(&pool)
            .await
            .unwrap();
        committer.feed().remote(published).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(ids_shown(&hub).is_empty());
        sqlx::raw_sql("ALTER TABLE messages_away RENAME TO messages")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        let deadline = Instant::now() + Duration::from_secs(5);
        while ids_shown(&hub) != [1, 2, 3] {
            assert!(Instant::now() < deadline, "{:?}", ids_shown(&hub));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let answer = committer.submit(say("own")).unwrap();
        assert_eq!(answer.await.unwrap().unwrap(), 4);
        assert_eq!(ids_shown(&hub), [1, 2, 3, 4]);
    }
}
