//! This node's room and who is in it; the fan-out of rendered frames.
//!
//! The hub is the seed design's hub without its goroutine: a small state behind a std
//! `Mutex`, held only for short, synchronous sections (never across `.await`). Delivering a
//! batch of stored messages takes the lock once to render each message, keep it in the
//! history and offer the *same bytes* to every session's bounded outbox with `try_send`.
//! Batches arrive in commit order from one writer (`crate::commit`) and fan-out happens
//! under the lock, so every session sees messages in the same order; because joining takes
//! the same lock, a newcomer's history snapshot and its live feed meet with no gap and no
//! overlap. The history is a cache of the store's newest messages, so a connect never
//! costs a query.
//!
//! The hub never waits for a session. A session whose outbox is full is evicted on the
//! spot: it is removed from the room, its `evicted` token is cancelled (the session then
//! closes the socket with 1008) and the eviction is counted.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::{ChatMessage, RoomName};
use crate::render::{self, Rendered};

/// Identifies one connection for as long as it is in the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(u64);

/// The node's chat room. Cheap to clone: a handle to shared state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    room: RoomName,
    state: Mutex<State>,
    history_limit: usize,
    send_queue: usize,
    next_session: AtomicU64,
    evictions: AtomicU64,
    messages_posted: AtomicU64,
}

struct State {
    /// The last `history_limit` messages, already rendered, oldest first.
    history: VecDeque<Rendered>,
    /// Whether the store holds messages older than `history`: the history frame then
    /// starts with a "load older" element instead of "start of conversation".
    has_older: bool,
    /// The connect frame for the current history, built on the first connect after a change
    /// so a burst of reconnects costs one render, not one each.
    history_frame: Option<Utf8Bytes>,
    members: HashMap<SessionId, Member>,
}

struct Member {
    /// Bounded: when it is full the member is evicted, never waited for.
    outbox: mpsc::Sender<Utf8Bytes>,
    evicted: CancellationToken,
}

/// What a session gets when it joins: its id, its feed and the token that tells it it was
/// evicted. The first frame in `outbox` is always the history, which replaces the page's
/// message list.
pub struct Membership {
    pub id: SessionId,
    pub outbox: mpsc::Receiver<Utf8Bytes>,
    pub evicted: CancellationToken,
}

/// Counters for tests, logs and (later) metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub connected: usize,
    pub messages_posted: u64,
    pub slow_evictions: u64,
}

impl Hub {
    /// `history_limit` messages are kept for newcomers; each session may have `send_queue`
    /// frames waiting before it is evicted.
    pub fn new(room: RoomName, history_limit: usize, send_queue: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                room,
                state: Mutex::new(State {
                    history: VecDeque::with_capacity(history_limit),
                    has_older: false,
                    history_frame: None,
                    members: HashMap::new(),
                }),
                history_limit,
                send_queue: send_queue.max(1),
                next_session: AtomicU64::new(1),
                evictions: AtomicU64::new(0),
                messages_posted: AtomicU64::new(0),
            }),
        }
    }

    /// Adds a session to the room. Its outbox already holds the history frame.
    pub fn join(&self) -> Membership {
        let id = SessionId(self.inner.next_session.fetch_add(1, Ordering::Relaxed));
        let (outbox, feed) = mpsc::channel(self.inner.send_queue);
        let evicted = CancellationToken::new();
        let mut state = self.lock();
        let history = state.history_frame(&self.inner.room);
        // A fresh channel with capacity >= 1 always has room for its first frame.
        let _ = outbox.try_send(history);
        state.members.insert(
            id,
            Member {
                outbox,
                evicted: evicted.clone(),
            },
        );
        drop(state);
        Membership {
            id,
            outbox: feed,
            evicted,
        }
    }

    /// Removes a session. Calling it for a session that was evicted is harmless.
    pub fn leave(&self, id: SessionId) {
        self.lock().members.remove(&id);
    }

    pub fn room(&self) -> &RoomName {
        &self.inner.room
    }

    /// Fills the history from the store at start-up. `messages` are the newest, oldest
    /// first; `has_older` says whether the store holds more before them.
    pub fn preload(&self, messages: &[ChatMessage], has_older: bool) {
        let rendered: Vec<Rendered> = messages.iter().map(render::message).collect();
        let mut state = self.lock();
        for message in rendered {
            state.remember(message, self.inner.history_limit);
        }
        state.has_older |= has_older;
        state.history_frame = None;
    }

    /// Renders stored messages (in commit order), keeps them in the history and offers
    /// them to every session as one frame.
    pub fn deliver(&self, messages: &[ChatMessage]) {
        if messages.is_empty() {
            return;
        }
        let rendered: Vec<Rendered> = messages.iter().map(render::message).collect();
        let frame = render::join(rendered.iter().map(Rendered::fragment));

        let mut state = self.lock();
        let mut evicted = 0;
        state.members.retain(|_, member| {
            match member.outbox.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    member.evicted.cancel();
                    evicted += 1;
                    false
                }
                // The session is already gone; it will call `leave` too.
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });

        for message in rendered {
            state.remember(message, self.inner.history_limit);
        }
        state.history_frame = None;
        drop(state);

        if evicted > 0 {
            self.inner.evictions.fetch_add(evicted, Ordering::Relaxed);
            tracing::warn!(evicted, "disconnected clients that fell behind");
        }
        self.inner
            .messages_posted
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
    }

    /// The message list's contents for a freshly served page.
    pub fn history_html(&self) -> String {
        let state = self.lock();
        render::history_inner(&self.inner.room, &state.history, state.has_older)
    }

    pub fn stats(&self) -> Stats {
        let connected = self.lock().members.len();
        Stats {
            connected,
            messages_posted: self.inner.messages_posted.load(Ordering::Relaxed),
            slow_evictions: self.inner.evictions.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to readers (every update is a push, a pop or an insert), so keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn history_frame(&mut self, room: &RoomName) -> Utf8Bytes {
        self.history_frame
            .get_or_insert_with(|| render::history_frame(room, &self.history, self.has_older))
            .clone()
    }

    fn remember(&mut self, message: Rendered, limit: usize) {
        if self.history.len() >= limit {
            self.history.pop_front();
            self.has_older = true;
        }
        if limit > 0 {
            self.history.push_back(message);
        } else {
            self.has_older = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::domain::{DisplayName, MessageText};

    fn stored(id: u64, text: &str) -> ChatMessage {
        ChatMessage {
            id,
            room: RoomName::general(),
            author: DisplayName::parse("alice").unwrap(),
            sent_at: OffsetDateTime::now_utc(),
            text: MessageText::parse(text, 100).unwrap().unwrap(),
        }
    }

    fn hub(history: usize, queue: usize) -> Hub {
        Hub::new(RoomName::general(), history, queue)
    }

    #[test]
    fn a_newcomer_gets_the_history_first_then_live_messages() {
        let hub = hub(2, 8);
        hub.deliver(&[stored(1, "one"), stored(2, "two"), stored(3, "three")]);
        let mut member = hub.join();
        let history = member.outbox.try_recv().unwrap();
        assert!(history.as_str().contains("innerHTML"));
        assert!(
            !history.as_str().contains(">one<"),
            "history is capped at 2"
        );
        assert!(history.as_str().contains(">two<") && history.as_str().contains(">three<"));
        assert!(
            history.as_str().contains("before=2"),
            "older messages can be loaded"
        );

        hub.deliver(&[stored(4, "four")]);
        let live = member.outbox.try_recv().unwrap();
        assert!(live.as_str().contains("beforeend") && live.as_str().contains(">four<"));
        assert!(member.outbox.try_recv().is_err());
    }

    #[test]
    fn preloaded_history_knows_whether_there_is_more() {
        let complete = hub(5, 8);
        complete.preload(&[stored(1, "a")], false);
        assert!(complete.history_html().contains("Start of conversation"));

        let partial = hub(5, 8);
        partial.preload(&[stored(7, "a")], true);
        assert!(partial.history_html().contains("before=7"));
    }

    #[test]
    fn every_member_gets_the_same_bytes_and_a_batch_is_one_frame() {
        let hub = hub(10, 8);
        let mut a = hub.join();
        let mut b = hub.join();
        let _ = (a.outbox.try_recv(), b.outbox.try_recv());
        hub.deliver(&[stored(1, "first"), stored(2, "second")]);
        let from_a = a.outbox.try_recv().unwrap();
        let from_b = b.outbox.try_recv().unwrap();
        assert_eq!(
            from_a.as_str().as_ptr(),
            from_b.as_str().as_ptr(),
            "one render, shared"
        );
        assert!(from_a.as_str().find("first").unwrap() < from_a.as_str().find("second").unwrap());
        assert!(a.outbox.try_recv().is_err(), "one frame for the batch");
    }

    #[test]
    fn a_full_outbox_evicts_without_blocking_the_others() {
        let hub = hub(10, 2);
        let slow = hub.join(); // holds the history frame: one slot left
        let mut fast = hub.join();
        for i in 0..5 {
            let _ = fast.outbox.try_recv();
            hub.deliver(&[stored(i, &format!("m{i}"))]);
        }
        assert!(slow.evicted.is_cancelled());
        assert!(!fast.evicted.is_cancelled());
        let stats = hub.stats();
        assert_eq!(
            (stats.connected, stats.slow_evictions, stats.messages_posted),
            (1, 1, 5)
        );
    }
}
