//! A connection's write side, shared by the hub (fan-out) and the connection's session.
//!
//! Why: profiles of the first design (a queue per session, drained by the session's task)
//! showed that a delivery cost a channel push, a task wake-up, a poll of the session's
//! whole `select!` and then the `write` itself. Here the hub writes a broadcast frame
//! straight to the socket with a non-blocking `write` while it fans out, so a delivery is
//! one system call and no wake-up. Only when the socket cannot take everything (its kernel
//! buffer is full: a slow reader) does the rest go into a bounded queue, which the session
//! task drains with vectored writes as the socket becomes writable. Once something is
//! queued, later frames queue behind it, so every reader sees frames in the order they
//! were offered. A full queue means the reader is too far behind: the offer says so and
//! the hub evicts the session.
//!
//! The lock is a std `Mutex` held only around non-blocking work (a `try_write`, a queue
//! push), never across `.await`. An idle outlet owns no buffer: the queue allocates only
//! while something is waiting.
//!
//! The outlet is also how the rest of the server tells a session to end ([`Ending`]): the
//! hub evicts a member that fell behind, a ban or a sign-out closes its sockets, shutdown
//! closes them all. One waker serves both purposes, so an idle connection waits on its
//! socket and its outlet and nothing else: no cancellation token, no intrusive waiter of
//! its own (BENCHMARKS.md, issue 16).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::Context;

use bytes::{Buf, Bytes};
use futures_util::task::AtomicWaker;
use hubbub_wire::Frame;
use tokio::net::TcpStream;
use tokio::time::{Duration, Instant};

/// Frames written with one vectored `write` when draining the queue.
const MAX_IOVECS: usize = 64;

/// What became of an offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Written to the socket in full.
    Written,
    /// Queued (in whole or in part) for the session to write when the socket is ready.
    Queued,
    /// The queue is full: the reader is too far behind.
    Full,
    /// The connection is closing; nothing more is accepted.
    Closed,
}

/// Why the rest of the server wants a connection to end. The first reason given stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Ending {
    /// Evicted: too far behind, banned or signed out (the session tells which apart).
    Evicted = 1,
    /// The server is shutting down.
    Shutdown = 2,
    /// Nothing heard from the peer for the pong timeout (`hub::keep_alive`).
    Unresponsive = 3,
}

/// The shared write side of one connection.
#[derive(Debug)]
pub struct Outlet {
    /// The connection's socket, owned here (one allocation fewer per connection than
    /// sharing it); the session reads through [`Self::socket`]. `None` only in tests,
    /// where every frame is queued for the test to inspect.
    socket: Option<TcpStream>,
    queue: Mutex<Queue>,
    /// The session's task: woken when its queue goes from empty to not empty, and when
    /// the connection is to end.
    session: AtomicWaker,
    /// An [`Ending`] as its number, or 0 while the connection is to go on.
    ending: AtomicU8,
    /// When a whole message last came from the peer, in milliseconds since [`epoch`],
    /// wrapping (every 49 days): only differences of a few ping intervals are ever read.
    heard: AtomicU32,
    /// The most frames waiting before [`Offered::Full`].
    limit: u32,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// The front frame was partly written: it must be finished before anything else,
    /// even a close frame, or the byte stream would be corrupt.
    front_started: bool,
    closed: bool,
}

impl Outlet {
    pub fn new(socket: TcpStream, limit: usize) -> Self {
        Self::with_socket(Some(socket), limit)
    }

    /// An outlet with no socket: everything offered is queued (for tests of the hub).
    pub fn detached(limit: usize) -> Self {
        Self::with_socket(None, limit)
    }

    fn with_socket(socket: Option<TcpStream>, limit: usize) -> Self {
        Self {
            socket,
            queue: Mutex::new(Queue::default()),
            session: AtomicWaker::new(),
            ending: AtomicU8::new(0),
            heard: AtomicU32::new(since_epoch(Instant::now())),
            limit: u32::try_from(limit).unwrap_or(u32::MAX).max(1),
        }
    }

    /// Writes `frame` now if the socket takes it and nothing is waiting; queues what is
    /// left otherwise. Never waits.
    pub fn offer(&self, frame: &Frame) -> Offered {
        let mut queue = self.lock();
        if queue.closed {
            return Offered::Closed;
        }
        self.offer_locked(&mut queue, frame.bytes())
    }

    /// Offers the last frame this connection will carry (a close frame). Frames still
    /// queued are dropped unless `keep_queued` (a partly written frame is always finished
    /// first); nothing offered after it is accepted.
    pub fn offer_last(&self, frame: &Frame, keep_queued: bool) -> Offered {
        let mut queue = self.lock();
        if queue.closed {
            return Offered::Closed;
        }
        if !keep_queued {
            let keep = usize::from(queue.front_started);
            queue.frames.truncate(keep);
        }
        queue.closed = true;
        // Always room for the close frame.
        queue.frames.reserve(1);
        let bytes = frame.bytes();
        if queue.frames.is_empty() {
            self.offer_locked(&mut queue, bytes)
        } else {
            queue.frames.push_back(bytes.clone());
            Offered::Queued
        }
    }

    fn offer_locked(&self, queue: &mut Queue, bytes: &Bytes) -> Offered {
        if !queue.frames.is_empty() {
            if queue.frames.len() >= self.limit as usize && !queue.closed {
                return Offered::Full;
            }
            queue.frames.push_back(bytes.clone());
            return Offered::Queued;
        }
        let written = match &self.socket {
            Some(socket) => match socket.try_write(bytes) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
                // The socket is broken; the session finds out when it reads. Queue the
                // frame so the session's own write reports the error.
                Err(_) => 0,
            },
            None => 0,
        };
        if written == bytes.len() {
            return Offered::Written;
        }
        queue.front_started = written > 0;
        queue.frames.push_back(bytes.slice(written..));
        self.session.wake();
        Offered::Queued
    }

    /// Writes as much of the queue as the socket takes, with one vectored `write` per
    /// round. `Ok(true)` when the queue is empty, `Ok(false)` when the socket would block
    /// (wait for it to be writable and call again).
    pub fn flush(&self) -> io::Result<bool> {
        let Some(socket) = &self.socket else {
            return Ok(self.lock().frames.is_empty());
        };
        let mut queue = self.lock();
        while !queue.frames.is_empty() {
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (slot, frame) in slices.iter_mut().zip(&queue.frames) {
                    *slot = IoSlice::new(frame);
                    count += 1;
                }
                match socket.try_write_vectored(&slices[..count]) {
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(err) => return Err(err),
                }
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            queue.consume(written);
        }
        Ok(true)
    }

    /// The socket, for the session's reads and readiness (`None` when detached).
    pub fn socket(&self) -> Option<&TcpStream> {
        self.socket.as_ref()
    }

    /// Registers the session's task to be woken when something is queued or the connection
    /// is to end. Register first, then look ([`Self::has_queued`], [`Self::ending`]): a
    /// change after the look wakes the task again.
    pub fn register(&self, cx: &Context<'_>) {
        self.session.register(cx.waker());
    }

    /// Whether frames are waiting to be written.
    pub fn has_queued(&self) -> bool {
        !self.lock().frames.is_empty()
    }

    /// Asks the session to end, for `why`, and wakes it. `true` for the first asking;
    /// later ones change nothing.
    pub fn end(&self, why: Ending) -> bool {
        let first = self
            .ending
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            self.session.wake();
        }
        first
    }

    /// Why the connection is to end, once it is.
    pub fn ending(&self) -> Option<Ending> {
        match self.ending.load(Ordering::Acquire) {
            0 => None,
            1 => Some(Ending::Evicted),
            2 => Some(Ending::Shutdown),
            _ => Some(Ending::Unresponsive),
        }
    }

    /// A whole message (a pong included) came from the peer just now.
    pub fn heard(&self) {
        self.heard
            .store(since_epoch(Instant::now()), Ordering::Relaxed);
    }

    /// How long the peer has been silent, at `now`.
    pub fn silent_for(&self, now: Instant) -> Duration {
        let heard = self.heard.load(Ordering::Relaxed);
        let silent = since_epoch(now).wrapping_sub(heard);
        // Heard after `now` (the session stamped it while the caller was looking): a
        // "negative" difference, which wrapping makes huge.
        if silent > u32::MAX / 2 {
            return Duration::ZERO;
        }
        Duration::from_millis(u64::from(silent))
    }

    /// Stops accepting frames (the connection is ending without a close frame).
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Takes every queued frame (for tests and benchmarks of the hub, with a detached
    /// outlet).
    pub fn take_queued(&self) -> Vec<Bytes> {
        let mut queue = self.lock();
        queue.front_started = false;
        queue.frames.drain(..).collect()
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves the queue consistent (every step is a
        // single push or pop), so a poisoned lock is still usable.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The instant [`Outlet::heard`] counts from: the first time it is asked for.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds from [`epoch`] to `at`, wrapping.
fn since_epoch(at: Instant) -> u32 {
    // Truncation is the wrapping: only differences are read.
    at.saturating_duration_since(epoch()).as_millis() as u32
}

impl Queue {
    /// Drops `written` bytes from the front of the queue.
    fn consume(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.frames.front_mut() else {
                return;
            };
            if written >= front.len() {
                written -= front.len();
                self.frames.pop_front();
                self.front_started = false;
            } else {
                front.advance(written);
                self.front_started = true;
                written = 0;
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            // A burst is over: give the memory back (idle connections hold nothing).
            self.frames = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use hubbub_wire::{Decoder, Incoming, Role};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    /// Offers numbered 64 KiB frames to a reader that does not read, until the socket
    /// stops taking them; returns how many were offered.
    async fn fill(outlet: &Outlet) -> usize {
        let socket = outlet.socket().unwrap();
        let mut n = 0;
        // Let tokio learn the socket is writable, so direct writes are tried.
        socket.writable().await.unwrap();
        loop {
            let frame = Frame::text(&format!("{n:08}{}", "x".repeat(64 * 1024)));
            n += 1;
            if outlet.offer(&frame) == Offered::Queued {
                return n;
            }
            assert!(n < 10_000, "the socket never filled up");
        }
    }

    async fn read_all(client: &mut TcpStream, frames: usize) -> Vec<String> {
        let mut decoder = Decoder::new(Role::Client, 1 << 20);
        let mut buf = BytesMut::new();
        let mut texts = Vec::new();
        while texts.len() < frames {
            match decoder.decode(&mut buf).unwrap() {
                Some(Incoming::Text(text)) => texts.push(text[..8].to_owned()),
                Some(other) => texts.push(format!("{other:?}")),
                None => {
                    assert_ne!(client.read_buf(&mut buf).await.unwrap(), 0, "ended early");
                }
            }
        }
        texts
    }

    #[tokio::test]
    async fn frames_go_straight_to_the_socket_then_queue_in_order_when_it_is_full() {
        let (socket, mut client) = pair().await;
        let outlet = Outlet::new(socket, 1000);
        let offered = fill(&outlet).await;
        assert!(outlet.has_queued());
        // Later frames queue behind, whatever the socket could take now.
        for n in offered..offered + 3 {
            let frame = Frame::text(&format!("{n:08}{}", "x".repeat(64 * 1024)));
            assert_eq!(outlet.offer(&frame), Offered::Queued);
        }
        let total = offered + 3;

        // The session's part: write the queue as the socket drains.
        let flusher = tokio::spawn(async move {
            loop {
                if outlet.flush().unwrap() {
                    return outlet;
                }
                outlet.socket().unwrap().writable().await.unwrap();
            }
        });
        let texts = read_all(&mut client, total).await;
        let expected: Vec<String> = (0..total).map(|n| format!("{n:08}")).collect();
        assert_eq!(texts, expected, "every frame once, in order, none torn");
        let outlet = flusher.await.unwrap();
        assert!(!outlet.has_queued());
    }

    #[tokio::test]
    async fn a_full_queue_is_reported_and_nothing_is_queued_past_it() {
        let (socket, _client) = pair().await;
        let outlet = Outlet::new(socket, 3);
        fill(&outlet).await; // one frame queued
        let frame = Frame::text("more");
        assert_eq!(outlet.offer(&frame), Offered::Queued);
        assert_eq!(outlet.offer(&frame), Offered::Queued);
        assert_eq!(outlet.offer(&frame), Offered::Full);
        assert_eq!(outlet.lock().frames.len(), 3);
    }

    #[tokio::test]
    async fn the_last_frame_follows_a_partly_written_one_and_ends_the_outlet() {
        let (socket, mut client) = pair().await;
        let outlet = Outlet::new(socket, 1000);
        let offered = fill(&outlet).await;
        for _ in 0..5 {
            outlet.offer(&Frame::text("dropped"));
        }
        // Eviction: the queue is dropped but a frame already started is finished first.
        let started = outlet.lock().front_started;
        assert_eq!(
            outlet.offer_last(&Frame::close(1008, "too slow"), false),
            Offered::Queued
        );
        assert_eq!(outlet.offer(&Frame::text("late")), Offered::Closed);
        let flusher = tokio::spawn(async move {
            while !outlet.flush().unwrap() {
                outlet.socket().unwrap().writable().await.unwrap();
            }
        });
        let expected = offered - usize::from(!started) + 1;
        let texts = read_all(&mut client, expected).await;
        assert_eq!(texts.last().map(String::as_str), Some("Close(Some(1008))"));
        assert!(!texts.iter().any(|t| t.starts_with("dropped")));
        flusher.await.unwrap();
    }

    #[test]
    fn silence_is_counted_from_the_last_message_and_a_later_stamp_is_not_silence() {
        let outlet = Outlet::detached(2);
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        outlet.heard();
        // Stamped after `before`: the peer was heard since, not 49 days ago.
        assert_eq!(outlet.silent_for(before), Duration::ZERO);
        let later = Instant::now() + Duration::from_secs(90);
        let silent = outlet.silent_for(later);
        assert!(
            silent >= Duration::from_secs(89) && silent <= Duration::from_secs(90),
            "{silent:?}"
        );
    }

    #[test]
    fn a_detached_outlet_queues_everything_for_the_test_to_take() {
        let outlet = Outlet::detached(2);
        assert_eq!(outlet.offer(&Frame::text("a")), Offered::Queued);
        assert_eq!(outlet.offer(&Frame::text("b")), Offered::Queued);
        assert_eq!(outlet.offer(&Frame::text("c")), Offered::Full);
        assert_eq!(outlet.take_queued().len(), 2);
        outlet.close();
        assert_eq!(outlet.offer(&Frame::text("d")), Offered::Closed);
    }
}
