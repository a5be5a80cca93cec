//! A room's way to its members' sockets. Every frame a room sends goes through here, in one
//! order per room.
//!
//! Why not simply write to every member under the room's lock? A fan-out to a big room is
//! thousands of `write`s (several µs each on loopback), and whoever does it is held up for
//! all of them: when that was the commit writer, under a lock every room shared, one big
//! room's message made every other room wait (a small room's p99 went to ~70 ms beside a
//! 4,000-member room). Here a frame goes out one of two ways:
//!
//! - **At once**, by the caller, under the room's lock, when the room is small
//!   ([`INLINE_MEMBERS`]) and nothing of the room's is waiting: a few writes, no task hop.
//! - **Through the room's queue** otherwise. One drainer task at a time empties it: it takes
//!   the first job, writes its frame to the members [`CHUNK`] at a time without holding any
//!   lock, and yields to other tasks between chunks, so a small room's message waits at most
//!   one chunk for a big room's fan-out, never all of it. On a machine with several cores, a
//!   very big job is split into parts written by several tasks at once
//!   ([`Settings::fanout_parts`]); the next job starts when every part is written. Messages
//!   that queue up behind a running fan-out are joined into one job (one frame), as the
//!   seed design batched queued fragments. After each frame the room rests as long as the
//!   frame took, plus the commit window ([`Settings::fanout_rest`]), and what is committed
//!   meanwhile queues and is joined: a room under load sends fewer, fuller frames, and
//!   spends at most half the time fanning out.
//!
//! Order and the newcomer's snapshot: each job carries the members it is for ([`Targets`],
//! a shared snapshot of the member list taken when the job was queued, rebuilt only after
//! the list changed). A newcomer's history snapshot is taken under the same lock as the
//! queueing, so it holds exactly the messages queued before it joined, and the newcomer is
//! among the targets of exactly those queued after: no gap, no overlap. The drainer takes
//! jobs in order and finishes each before the next, so every member sees the room's frames
//! in one order.
//!
//! Nobody waits for a member: an offer never blocks ([`Outlet::offer`]); a member whose
//! outlet is full is evicted on the spot (told so through its outlet, the session closes
//! with 1008). The queue itself is bounded in messages ([`MAX_BACKLOG`]): past it the hub tells
//! the commit writer to wait ([`super::Hub::fanout_caught_up`]), which is backpressure to
//! the senders, not a drop.
//!
//! [`Settings::fanout_parts`]: super::HubSettings::fanout_parts
//! [`Settings::fanout_rest`]: super::HubSettings::fanout_rest

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use hubbub_wire::Frame;

use super::SessionId;
use crate::domain::UserId;
use crate::outlet::{Ending, Offered, Outlet};
use crate::render::Html;

/// A room at most this big is written to by the caller when nothing is queued: about a
/// millisecond of writes.
pub(super) const INLINE_MEMBERS: usize = 128;

/// Members written to between two yields of the drainer: how long another room's task
/// may wait for a big room's fan-out. A write to a socket costs several µs (more on a
/// busy machine); beside a 9,000-member room, small rooms' p99 was 22-29 ms with chunks of
/// 128 and 15-18 ms with 32, at the same CPU.
pub(super) const CHUNK: usize = 32;

/// Members per part, at least, before a job is split over several tasks: below it, the
/// cost of starting tasks outweighs what another core saves.
pub(super) const MIN_PART: usize = 2048;

/// Messages a room may have queued before the commit writer waits for its fan-out.
pub(super) const MAX_BACKLOG: usize = 512;

/// One member as the fan-out sees it. Small and cheap to clone (two reference counts), so
/// a job's snapshot holds the members themselves, side by side, not pointers to them.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) id: SessionId,
    pub(super) user: UserId,
    /// The connection's write side. Bounded: when it is full the member is evicted.
    pub(super) outlet: Arc<Outlet>,
}

/// The members a job is for: a snapshot, shared by every job queued until the list changes.
pub(super) type Targets = Arc<[Target]>;

/// A room's members, in session order, and the snapshot of them for queued jobs.
#[derive(Debug, Default)]
pub(super) struct Members {
    by_id: BTreeMap<SessionId, Target>,
    snapshot: Option<Targets>,
}

impl Members {
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(super) fn get(&self, id: SessionId) -> Option<&Target> {
        self.by_id.get(&id)
    }

    /// The outlets of the members whose session id is `slot` modulo `slots` (keep-alive).
    pub(super) fn in_slot(&self, slot: u64, slots: u64) -> impl Iterator<Item = Arc<Outlet>> + '_ {
        self.by_id
            .values()
            .filter(move |target| target.id.0 % slots == slot)
            .map(|target| Arc::clone(&target.outlet))
    }

    /// Every member's outlet (for shutdown).
    pub(super) fn outlets(&self) -> impl Iterator<Item = Arc<Outlet>> + '_ {
        self.by_id.values().map(|target| Arc::clone(&target.outlet))
    }

    /// The members that are `user`'s sessions (a walk of the room: only for rare events).
    pub(super) fn of_user<'a>(&'a self, user: &'a UserId) -> impl Iterator<Item = &'a Target> {
        self.by_id
            .values()
            .filter(move |target| target.user == *user)
    }

    pub(super) fn insert(&mut self, target: Target) {
        self.snapshot = None;
        self.by_id.insert(target.id, target);
    }

    pub(super) fn remove(&mut self, id: SessionId) -> Option<Target> {
        let removed = self.by_id.remove(&id)?;
        self.snapshot = None;
        Some(removed)
    }

    /// Removes a member that a fan-out found gone, if it is still this one (the same
    /// connection: its outlet).
    fn remove_target(&mut self, target: &Target) -> bool {
        match self.by_id.get(&target.id) {
            Some(known) if Arc::ptr_eq(&known.outlet, &target.outlet) => {
                self.remove(target.id).is_some()
            }
            _ => false,
        }
    }

    fn snapshot(&mut self) -> Targets {
        let by_id = &self.by_id;
        Arc::clone(
            self.snapshot
                .get_or_insert_with(|| by_id.values().cloned().collect()),
        )
    }
}

/// What one job sends.
#[derive(Debug)]
pub(super) struct Job {
    /// Fragments for every target, sent as one frame.
    shared: Vec<Html>,
    /// Users who get a frame of their own instead (typists: a typing line without their
    /// name). Empty for most jobs.
    own: Arc<HashMap<UserId, Frame>>,
    /// A session that gets nothing of this job (the newcomer a "joined" line is about).
    skip: Option<SessionId>,
    /// Chat messages in the job, for the backlog bound.
    messages: usize,
    /// Only a typing line: a newer one replaces it while it waits.
    typing_only: bool,
    targets: Targets,
}

/// What to send: built by the room, handed to [`Queue::send`].
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    pub(super) shared: Vec<Html>,
    pub(super) own: HashMap<UserId, Frame>,
    pub(super) skip: Option<SessionId>,
    pub(super) messages: usize,
    /// Only a typing line, which says who is typing *now*: a queued one that nobody has
    /// been sent yet is replaced by the next instead of queueing behind it, so typing in a
    /// big room cannot pile up jobs (they count for no backlog, being no messages).
    pub(super) typing_only: bool,
}

impl Outgoing {
    /// The same fragments for everyone.
    pub(super) fn shared(shared: Vec<Html>) -> Self {
        Self {
            shared,
            ..Self::default()
        }
    }
}

/// A room's jobs waiting for the drainer.
#[derive(Debug, Default)]
pub(super) struct Queue {
    jobs: VecDeque<Job>,
    /// A drainer is at work on this room (the job it writes is no longer in `jobs`).
    draining: bool,
    /// Chat messages queued or being written.
    backlog: usize,
}

/// What became of a send; the caller acts on it once the room's lock is released.
#[derive(Debug, Default)]
#[must_use]
pub(super) struct Sent {
    /// Written (or queued in the outlets) already; these members were found gone.
    pub(super) gone: Vec<Target>,
    /// Members evicted because their outlet was full.
    pub(super) evicted: u64,
    /// Queued, and nobody drains the room: start a drainer.
    pub(super) start_drainer: bool,
    /// The room's backlog went over [`MAX_BACKLOG`].
    pub(super) backlogged: bool,
}

impl Queue {
    /// Sends `out` to every member: at once when the room is small and nothing waits,
    /// otherwise through the queue.
    pub(super) fn send(&mut self, members: &mut Members, out: Outgoing) -> Sent {
        let mut sent = Sent::default();
        if out.shared.is_empty() && out.own.is_empty() || members.is_empty() {
            return sent;
        }
        if !self.draining && self.jobs.is_empty() && members.len() <= INLINE_MEMBERS {
            let everyone = Frame::text_joined(out.shared.iter().map(Html::as_str));
            for target in members.by_id.values() {
                if Some(target.id) == out.skip {
                    continue;
                }
                let frame = out.own.get(&target.user).unwrap_or(&everyone);
                if !offer(target, frame, &mut sent.evicted) {
                    sent.gone.push(target.clone());
                }
            }
            return sent;
        }
        let targets = members.snapshot();
        let was_over = self.backlog > MAX_BACKLOG;
        self.backlog += out.messages;
        sent.backlogged = !was_over && self.backlog > MAX_BACKLOG;
        if out.typing_only
            && let Some(last) = self.jobs.back_mut()
            && last.typing_only
            && Arc::ptr_eq(&last.targets, &targets)
        {
            last.shared = out.shared;
            last.own = Arc::new(out.own);
            return sent;
        }
        let joinable = |job: &Job| {
            job.own.is_empty()
                && !job.typing_only
                && !out.typing_only
                && job.skip.is_none()
                && out.own.is_empty()
                && out.skip.is_none()
                && Arc::ptr_eq(&job.targets, &targets)
        };
        match self.jobs.back_mut() {
            Some(last) if joinable(last) => {
                last.shared.extend(out.shared);
                last.messages += out.messages;
            }
            _ => self.jobs.push_back(Job {
                shared: out.shared,
                own: Arc::new(out.own),
                skip: out.skip,
                messages: out.messages,
                typing_only: out.typing_only,
                targets,
            }),
        }
        if !self.draining {
            self.draining = true;
            sent.start_drainer = true;
        }
        sent
    }

    /// The next job for the drainer; `None` (and the room is no longer drained) when there
    /// is none.
    pub(super) fn next_job(&mut self) -> Option<Job> {
        let job = self.jobs.pop_front();
        if job.is_none() {
            self.draining = false;
        }
        job
    }

    /// The drainer stopped without finishing (it panicked, or the runtime is shutting
    /// down): what was queued is dropped, so the room can be drained again and the commit
    /// writer never waits for it.
    pub(super) fn abandon(&mut self) -> Abandoned {
        let relieved = self.backlog > MAX_BACKLOG;
        let jobs = self.jobs.len();
        self.jobs.clear();
        self.draining = false;
        self.backlog = 0;
        Abandoned { jobs, relieved }
    }

    /// A job of `messages` was written: `true` when that brought the backlog back under
    /// [`MAX_BACKLOG`].
    pub(super) fn done(&mut self, messages: usize) -> bool {
        let was_over = self.backlog > MAX_BACKLOG;
        self.backlog = self.backlog.saturating_sub(messages);
        was_over && self.backlog <= MAX_BACKLOG
    }

    pub(super) fn is_busy(&self) -> bool {
        self.draining || !self.jobs.is_empty()
    }
}

/// What [`Queue::abandon`] dropped.
#[derive(Debug)]
pub(super) struct Abandoned {
    /// Jobs that were waiting (the one being written is not counted).
    pub(super) jobs: usize,
    /// The backlog was over [`MAX_BACKLOG`]: the commit writer may go on.
    pub(super) relieved: bool,
}

/// What a written job found.
#[derive(Debug, Default)]
pub(super) struct Written {
    pub(super) gone: Vec<Target>,
    pub(super) evicted: u64,
    pub(super) messages: usize,
}

impl Written {
    fn add(&mut self, other: Written) {
        self.gone.extend(other.gone);
        self.evicted += other.evicted;
    }
}

impl Job {
    /// Writes the job to its targets, yielding between chunks; split over `parts` tasks
    /// when it is big enough.
    pub(super) async fn write(self, parts: usize) -> Written {
        let messages = self.messages;
        let skip = self.skip;
        let frame = Frame::text_joined(self.shared.iter().map(Html::as_str));
        let parts = parts.min(self.targets.len() / MIN_PART).max(1);
        let len = self.targets.len();
        let mut written = Written::default();
        let mut helpers = Vec::with_capacity(parts - 1);
        // The first part is ours; the others go to tasks of their own, which other worker
        // threads may take.
        let per_part = len.div_ceil(parts);
        for part in 1..parts {
            let range = part * per_part..((part + 1) * per_part).min(len);
            let (frame, own, targets) = (
                frame.clone(),
                Arc::clone(&self.own),
                Arc::clone(&self.targets),
            );
            helpers.push(tokio::spawn(async move {
                write_chunks(&frame, &own, skip, &targets[range]).await
            }));
        }
        written
            .add(write_chunks(&frame, &self.own, skip, &self.targets[..per_part.min(len)]).await);
        for helper in helpers {
            // A part that panicked wrote what it wrote; its members stay until they leave.
            if let Ok(part) = helper.await {
                written.add(part);
            }
        }
        written.messages = messages;
        written
    }

    /// Writes the job here and now, without yielding (no runtime to yield to: tests and
    /// benchmarks that drive the hub directly).
    pub(super) fn write_now(self) -> Written {
        let frame = Frame::text_joined(self.shared.iter().map(Html::as_str));
        let mut written = Written {
            messages: self.messages,
            ..Written::default()
        };
        write_chunk(&frame, &self.own, self.skip, &self.targets, &mut written);
        written
    }
}

/// Removes the members a fan-out found gone, if they are still members. Returns those
/// removed.
pub(super) fn forget_gone(members: &mut Members, gone: Vec<Target>) -> Vec<Target> {
    gone.into_iter()
        .filter(|target| members.remove_target(target))
        .collect()
}

async fn write_chunks(
    frame: &Frame,
    own: &HashMap<UserId, Frame>,
    skip: Option<SessionId>,
    targets: &[Target],
) -> Written {
    let mut written = Written::default();
    for (i, chunk) in targets.chunks(CHUNK).enumerate() {
        if i > 0 {
            tokio::task::yield_now().await;
        }
        write_chunk(frame, own, skip, chunk, &mut written);
    }
    written
}

fn write_chunk(
    frame: &Frame,
    own: &HashMap<UserId, Frame>,
    skip: Option<SessionId>,
    targets: &[Target],
    written: &mut Written,
) {
    for target in targets {
        if Some(target.id) == skip {
            continue;
        }
        let frame = own.get(&target.user).unwrap_or(frame);
        if !offer(target, frame, &mut written.evicted) {
            written.gone.push(target.clone());
        }
    }
}

/// Offers a frame to a member; `false` (remove it) when it is gone or too far behind.
fn offer(target: &Target, frame: &Frame, evicted: &mut u64) -> bool {
    match target.outlet.offer(frame) {
        Offered::Written | Offered::Queued => true,
        Offered::Full => {
            // Counted once: later jobs queued for it find it full too until it closes.
            if target.outlet.end(Ending::Evicted) {
                *evicted += 1;
            }
            false
        }
        // The session is already ending; it will leave the room itself too.
        Offered::Closed => false,
    }
}
