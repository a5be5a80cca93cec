//! This node's room and who is in it; the fan-out of rendered frames.
//!
//! The hub is the seed design's hub without its goroutine: a small state behind a std
//! `Mutex`, held only for short, synchronous sections (never across `.await`). Posting a
//! message takes the lock once to number it, render it, keep it in the history and offer
//! the *same bytes* to every session's bounded outbox with `try_send`. Because numbering and
//! fan-out happen under one lock, every session sees messages in the same order, and because
//! joining takes the same lock, a newcomer's history snapshot and its live feed meet with no
//! gap and no overlap.
//!
//! The hub never waits for a session. A session whose outbox is full is evicted on the
//! spot: it is removed from the room, its `evicted` token is cancelled (the session then
//! closes the socket with 1008) and the eviction is counted.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::{ChatMessage, GuestName, MessageText};
use crate::render::{self, RenderError, Rendered};

/// Identifies one connection for as long as it is in the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(u64);

/// The node's chat room. Cheap to clone: a handle to shared state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    history_limit: usize,
    send_queue: usize,
    next_session: AtomicU64,
    evictions: AtomicU64,
    messages_posted: AtomicU64,
}

struct State {
    next_message_id: u64,
    /// The last `history_limit` messages, already rendered, oldest first.
    history: VecDeque<Rendered>,
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
    pub fn new(history_limit: usize, send_queue: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    next_message_id: 1,
                    history: VecDeque::with_capacity(history_limit),
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
        let history = state.history_frame();
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

    /// Numbers, renders and keeps a message, then offers it to every session.
    pub fn post(&self, author: GuestName, text: MessageText) -> Result<u64, RenderError> {
        let mut state = self.lock();
        let message = ChatMessage {
            id: state.next_message_id,
            author,
            sent_at: OffsetDateTime::now_utc(),
            text,
        };
        let rendered = render::message(&message)?;
        state.next_message_id += 1;

        let mut evicted = 0;
        state.members.retain(|_, member| {
            match member.outbox.try_send(rendered.fragment().clone()) {
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

        if self.inner.history_limit > 0 {
            if state.history.len() == self.inner.history_limit {
                state.history.pop_front();
            }
            state.history.push_back(rendered);
        }
        state.history_frame = None;
        drop(state);

        if evicted > 0 {
            self.inner.evictions.fetch_add(evicted, Ordering::Relaxed);
            tracing::warn!(evicted, "disconnected clients that fell behind");
        }
        self.inner.messages_posted.fetch_add(1, Ordering::Relaxed);
        Ok(message.id)
    }

    /// The message list's contents for a freshly served page.
    pub fn history_html(&self) -> String {
        render::history_inner(&self.lock().history)
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
    fn history_frame(&mut self) -> Utf8Bytes {
        self.history_frame
            .get_or_insert_with(|| render::history_frame(&self.history))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> MessageText {
        MessageText::parse(s, 100).unwrap().unwrap()
    }

    fn name() -> GuestName {
        GuestName::parse("guest-abcd").unwrap()
    }

    #[test]
    fn a_newcomer_gets_the_history_first_then_live_messages() {
        let hub = Hub::new(2, 8);
        for word in ["one", "two", "three"] {
            hub.post(name(), text(word)).unwrap();
        }
        let mut member = hub.join();
        let history = member.outbox.try_recv().unwrap();
        assert!(history.as_str().contains("innerHTML"));
        assert!(
            !history.as_str().contains(">one<"),
            "history is capped at 2"
        );
        assert!(history.as_str().contains(">two<") && history.as_str().contains(">three<"));

        hub.post(name(), text("four")).unwrap();
        let live = member.outbox.try_recv().unwrap();
        assert!(live.as_str().contains("beforeend") && live.as_str().contains(">four<"));
        assert!(member.outbox.try_recv().is_err());
    }

    #[test]
    fn every_member_gets_the_same_bytes() {
        let hub = Hub::new(10, 8);
        let mut a = hub.join();
        let mut b = hub.join();
        let _ = (a.outbox.try_recv(), b.outbox.try_recv());
        hub.post(name(), text("shared")).unwrap();
        let from_a = a.outbox.try_recv().unwrap();
        let from_b = b.outbox.try_recv().unwrap();
        assert_eq!(
            from_a.as_str().as_ptr(),
            from_b.as_str().as_ptr(),
            "one render, shared"
        );
    }

    #[test]
    fn a_full_outbox_evicts_without_blocking_the_others() {
        let hub = Hub::new(10, 2);
        let slow = hub.join(); // holds the history frame: one slot left
        let mut fast = hub.join();
        for i in 0..5 {
            let _ = fast.outbox.try_recv();
            hub.post(name(), text(&format!("m{i}"))).unwrap();
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
