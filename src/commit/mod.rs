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
//!
//! - `mod.rs`: the [`Committer`] handle sessions submit through, and what it shares with
//!   the writer (the queue's jobs, the writer's status for `/readyz`).
//! - `writer.rs`: the writer task: batching, storing, delivering, loading rooms.
//! - `feed.rs`: the [`Feed`], the broker's way into the writer's queue.
//! - `reads.rs`: read marks gathered between the writer's flushes (once a second).

mod feed;
mod reads;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::writer::{Writer, write_loop};
use crate::broker::Broker;
use crate::domain::{ChangeRefused, Committed, RoomName, UserId, Write};
use crate::hub::Hub;
use crate::metrics::Rejection;
use crate::sequencer::Sequencer;
use crate::store::{Store, StoreError};

pub use self::feed::Feed;
use self::reads::PendingReads;
pub use self::reads::READ_FLUSH;

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
    /// A change the rules refuse; nothing was stored.
    #[error("{0}")]
    Refused(ChangeRefused),
}

impl CommitError {
    /// Why the message was not sent, for `hubbub_messages_rejected_total`.
    pub fn rejection(&self) -> Rejection {
        match self {
            CommitError::Store(err) => store_rejection(err),
            CommitError::Stopped => Rejection::ShuttingDown,
            CommitError::Busy => Rejection::Busy,
            CommitError::Refused(_) => Rejection::NotAllowed,
        }
    }

    /// One sentence for the sender.
    pub fn user_message(&self) -> String {
        match self {
            CommitError::Store(err) => err.user_message().to_owned(),
            CommitError::Stopped => "the server is restarting; try again in a moment.".to_owned(),
            CommitError::Busy => "the server is busy; try again in a moment.".to_owned(),
            CommitError::Refused(why) => why.to_string(),
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
    write: Write,
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
    reads: Arc<PendingReads>,
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
        let reads = Arc::new(PendingReads::default());
        let writer = Writer {
            store,
            sequencer,
            broker,
            status: Arc::clone(&status),
            reads: Arc::clone(&reads),
        };
        let task = tokio::spawn(write_loop(writer, pending, settings, stop));
        (
            Self {
                queue,
                hub,
                status,
                reads,
            },
            task,
        )
    }

    /// The way in for what other nodes committed, for the broker.
    pub fn feed(&self) -> Feed {
        Feed {
            queue: self.queue.clone(),
        }
    }

    /// Queues a message or a change for the next commit, at once: once this returns `Ok`,
    /// it will be stored (or its sender told why not) whatever happens to the session. The
    /// receiver answers with its position once it is committed and broadcast (a resend of
    /// a stored message: the first one's id).
    ///
    /// A full queue means the store has fallen far behind the room; the sender is told to
    /// try again rather than made to wait without a word.
    pub fn submit(
        &self,
        write: Write,
    ) -> Result<oneshot::Receiver<Result<u64, CommitError>>, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job::Store(Pending { write, reply }))
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

    /// Notes that `user` has read `room` up to message `id`; stored with the next flush
    /// (within [`READ_FLUSH`]). `false`: too many marks wait already; this one was not kept.
    pub fn mark_read(&self, user: &UserId, room: &RoomName, id: u64) -> bool {
        self.reads.mark(user, room, id)
    }

    /// A user's marks not stored yet: what a page must add to what the store says.
    pub fn unsaved_marks(&self, user: &UserId) -> Vec<(RoomName, u64)> {
        self.reads.of_user(user)
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

type Reply = oneshot::Sender<Result<u64, CommitError>>;

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
