//! One WebSocket connection: opened in the task that took the upgrade ([`open`]), then
//! served by a task of its own ([`Joined::run`]) with one hand-polled wait over the
//! socket, the outlet (frames queued; eviction, bans, sign-outs, silence and shutdown,
//! which the hub sends through it) and commits in flight. Keep-alive pings come from the
//! hub (`hub::keep_alive`); the session stamps the outlet when a whole message arrives.
//!
//! The read side decodes what htmx sends ([`hubbub_wire`]) and submits it for commit (the
//! committer broadcasts it once stored; a failure comes back here as "not sent" with the
//! text put back in the input). The write side is the connection's [`Outlet`], shared with
//! the hub: broadcast frames are written by the hub straight to the socket, and this task
//! only steps in when the socket could not take everything, draining the queue with
//! vectored writes as it becomes writable. An idle connection is this task, its socket and
//! its outlet: no read or write buffer is held while nothing is in flight.
//!
//! - [`connection`]: the decoder, what was read, and the closing handshake.
//! - [`end`]: every way a session can end, and the close code each sends.
//! - [`limits`]: the connection's rate limits.
//! - [`requests`]: what each frame from the peer asks for, and doing it.
//! - [`commits`]: the connection's writes waiting for their commit.
//!
//! [`Outlet`]: crate::outlet::Outlet

mod commits;
mod connection;
mod end;
mod limits;
mod requests;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use governor::Quota;
use hubbub_wire::Frame;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use self::commits::Commits;
use self::connection::Connection;
pub use self::end::{End, close_code};
use self::limits::Limits;
use crate::commit::{CommitError, Committer};
use crate::config::Config;
use crate::domain::{DisplayName, MessageText, RoomName, SessionTag, UserId};
use crate::hub::{Hub, Membership, NotLoaded, SessionId};
use crate::limits::{ClientLimits, per_second};
use crate::outlet::{Ending, Outlet};
use crate::render::Html;

/// Messages one session may have waiting for their commit. When that many are in flight
/// the session stops reading until one is answered.
const MAX_IN_FLIGHT: usize = 16;

/// The per-connection settings, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_message_chars: u32,
    pub max_frame_bytes: usize,
    pub send_queue: usize,
    pub write_timeout: Duration,
    /// How long shutdown waits for connections: a closing session stays within it.
    pub shutdown_grace: Duration,
    /// Posts allowed per connection (`--message-rate`, `--message-burst`).
    pub message_quota: Quota,
    /// Typing events allowed per connection (`--typing-rate`, burst twice that).
    pub typing_quota: Quota,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_message_chars: config.max_message_chars,
            max_frame_bytes: config.max_frame_bytes as usize,
            send_queue: config.send_queue as usize,
            write_timeout: config.write_timeout,
            shutdown_grace: config.shutdown_grace,
            message_quota: per_second(config.message_rate, config.message_burst),
            typing_quota: per_second(config.typing_rate, config.typing_rate.saturating_mul(2)),
        }
    }
}

/// The room a session is in, and the handles it needs there.
#[derive(Clone)]
pub struct Room {
    pub hub: Hub,
    pub committer: Committer,
    pub room: RoomName,
    /// A guest under `--guests read-only`: every write is refused with a notice.
    pub read_only: bool,
    /// The reader's unread counts (`http::reads::snapshot`), sent right after the room's
    /// first frame.
    pub unread: Option<Html>,
    /// A socket with no cookie (a script, a load tool): a guest for this connection only,
    /// whose read marks nobody could ever use, so none are kept.
    pub anonymous: bool,
    /// The client's address and its shared allowance; `None` when exempt.
    pub address: Option<ClientLimits>,
    /// The signed-in session the socket was opened under, and when it was found alive:
    /// signing it out closes the socket.
    pub sign_in: Option<(SessionTag, Instant)>,
}

/// A submitted write waiting for its commit: what it was (a message's text is put back if
/// it fails) and the outcome.
type InFlight = BoxFuture<'static, (Attempt, Result<u64, CommitError>)>;

/// What woke a session's loop.
enum Event {
    /// The rest of the server wants the connection to end.
    Ending(Ending),
    /// Frames wait in the outlet: the socket could not take them all.
    Queued,
    /// The socket can take more of what waits (or has failed).
    Writable(std::io::Result<()>),
    /// What waits has not moved for the write timeout: a reader that stopped reading.
    /// Its timer exists only while something waits, not in every idle connection.
    WriteTimeout,
    /// A write's commit was answered.
    Committed(Attempt, Result<u64, CommitError>),
    /// The socket has bytes, or the stream ended (or failed).
    Readable(std::io::Result<()>),
}

/// What a session submitted, for telling its sender what went wrong.
enum Attempt {
    Post(MessageText),
    Edit,
    Delete,
    React,
}

/// Runs one upgraded connection until it ends, then closes it, in the calling task:
/// [`open`], then [`Joined::run`]. The server runs the two in two tasks instead.
pub async fn run(
    socket: TcpStream,
    leftover: Bytes,
    place: Room,
    user: UserId,
    name: DisplayName,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) -> End {
    match open(socket, leftover, place, (user, name), settings, &shutdown).await {
        Ok(joined) => joined.run(()).await,
        Err(end) => end,
    }
}

/// A session that has joined its room, to be served until it ends ([`Joined::run`]).
///
/// Why two steps: opening (joining, which may load the room; the first frames) needs far
/// more state than serving, and a task's memory is the largest its future ever is, for
/// its whole life. The server opens a session in the task that took the upgrade and
/// serves it in a task of its own, whose future holds only what an open connection needs
/// (BENCHMARKS.md, issue 16).
pub struct Joined(Session);

/// Opens a session on an upgraded connection: joins the room (loading it if it left
/// memory since the upgrade) and sends the first frames. `leftover` is what the HTTP
/// layer read past the upgrade request. On failure the connection is closed already, and
/// the error says why.
pub async fn open(
    socket: TcpStream,
    leftover: Bytes,
    place: Room,
    (user, name): (UserId, DisplayName),
    settings: Arc<Settings>,
    shutdown: &CancellationToken,
) -> Result<Joined, End> {
    let mut conn = Connection::new(socket, &leftover, &settings);
    // `leftover` may be a view into hyper's whole read buffer: let it go now, not when
    // the session ends.
    drop(leftover);
    let Room {
        hub,
        committer,
        room,
        read_only,
        unread,
        anonymous,
        address,
        sign_in,
    } = place;
    let membership = match join(&hub, &committer, &room, &user, &name, &conn.outlet).await {
        Ok(membership) => membership,
        Err(end) => {
            connection::close(&mut conn, &end, &settings).await;
            return Err(end);
        }
    };
    let early_end = if shutdown.is_cancelled() {
        // Shutdown told every member to end; this socket may have joined just after.
        Some(End::Shutdown)
    } else if let Some(unread) = unread {
        // After the room's first frame, which replaces what the page shows.
        conn.send(&Frame::text(unread.as_str())).err()
    } else {
        None
    };
    if let Some(end) = early_end {
        hub.leave(&room, membership.id);
        connection::close(&mut conn, &end, &settings).await;
        return Err(end);
    }
    if let Some((tag, checked)) = sign_in {
        hub.signed_in(membership.id, (&user, tag), checked, &conn.outlet);
    }
    let session = Session {
        limits: Limits::new(address),
        conn,
        hub,
        committer,
        room: membership.room,
        user,
        name,
        id: membership.id,
        settings,
        in_flight: Commits::default(),
        read_only,
        anonymous,
        guest: sign_in.is_none(),
    };
    tracing::debug!(id = ?session.id, room = %session.room, name = %session.name, "session started");
    Ok(Joined(session))
}

impl Joined {
    /// Serves the session until the first reason to end, leaves the room and closes the
    /// connection; counts it in the metrics while open. `held` (the connection's permit,
    /// shutdown's tracker) is kept until then. Returns why it ended. Spawn the future as
    /// it is: awaiting it inside another future would keep it twice.
    ///
    /// Not an `async fn`: one would keep its argument twice in its future (moved in, then
    /// bound again inside), a whole `Session` more in every connection's task.
    pub fn run<H: Send + 'static>(self, held: H) -> impl Future<Output = End> + Send + 'static {
        let mut session = self.0;
        async move {
            let hub = session.hub.clone();
            let open = hub.metrics().session_started();
            let mut end = session.serve().await;
            if !session.guest && session.hub.signed_in_closing(session.id) && end == End::Evicted {
                end = End::SignedOut;
            }
            session.hub.leave(&session.room, session.id);
            tracing::debug!(id = ?session.id, room = %session.room, name = %session.name, ?end, "session ended");
            // Boxed: closing happens once, and kept inline its future would make every
            // connection's task bigger for its whole life.
            Box::pin(connection::close(
                &mut session.conn,
                &end,
                &session.settings,
            ))
            .await;
            open.ended(end.disconnect());
            drop(held);
            end
        }
    }
}

/// A session in its room: the connection and everything its loop needs.
struct Session {
    conn: Connection,
    hub: Hub,
    committer: Committer,
    room: RoomName,
    /// Who this is: the author of what it posts, and the only one who may change it.
    user: UserId,
    /// The name the session connected under; it posts under the hub's current one.
    name: DisplayName,
    id: SessionId,
    settings: Arc<Settings>,
    limits: Limits,
    /// Posts waiting for their commit, answered in order.
    in_flight: Commits,
    /// A guest who may only read (`--guests read-only`).
    read_only: bool,
    /// A guest for this connection only: read marks are not kept.
    anonymous: bool,
    /// Not signed in: what it posts is shown as a guest's.
    guest: bool,
}

impl Session {
    /// The session's loop, from joining the room until the first reason to end.
    async fn serve(&mut self) -> End {
        // Set while frames wait in the outlet: the write timeout, counted from when the
        // socket last took something. Made only then (see `Event::WriteTimeout`).
        let mut flushing: Option<Pin<Box<Sleep>>> = None;
        let write_timeout = self.settings.write_timeout;
        // What the hyper layer read past the upgrade request is decoded first.
        let mut decode_now = !self.conn.pending.is_empty();

        loop {
            if decode_now {
                decode_now = false;
                if let Err(end) = self.handle_input() {
                    return end;
                }
            }
            let event = std::future::poll_fn(|cx| self.poll_event(cx, flushing.as_mut())).await;
            match event {
                Event::Ending(Ending::Shutdown) => return End::Shutdown,
                Event::Ending(Ending::Unresponsive) => return End::Unresponsive,
                Event::Ending(Ending::Evicted) => {
                    // Evicted for being too slow, or closed by a ban or a sign-out.
                    return if self.hub.is_banned(&self.user) {
                        End::Banned
                    } else {
                        End::Evicted
                    };
                }
                Event::Queued => match self.conn.outlet.flush() {
                    Ok(true) => {}
                    Ok(false) => {
                        let deadline = Instant::now() + write_timeout;
                        flushing = Some(Box::pin(tokio::time::sleep_until(deadline)));
                    }
                    Err(err) => return End::Transport(err.to_string()),
                },
                Event::Writable(ready) => {
                    if let Err(err) = ready {
                        return End::Transport(err.to_string());
                    }
                    match self.conn.outlet.flush() {
                        Ok(true) => flushing = None,
                        Ok(false) => {
                            if let Some(timer) = flushing.as_mut() {
                                timer.as_mut().reset(Instant::now() + write_timeout);
                            }
                        }
                        Err(err) => return End::Transport(err.to_string()),
                    }
                }
                Event::WriteTimeout => return End::WriteTimeout,
                Event::Committed(attempt, outcome) => {
                    // Messages left undecoded while too many were in flight go next.
                    decode_now = !self.conn.pending.is_empty();
                    if let Err(err) = outcome
                        && let Err(end) = self.failed(&attempt, &err.user_message())
                    {
                        return end;
                    }
                }
                Event::Readable(ready) => {
                    if let Err(err) = ready {
                        return End::Transport(err.to_string());
                    }
                    match self.conn.read_available() {
                        Ok(true) => {}
                        Ok(false) => return End::Disconnected,
                        Err(err) => return End::Transport(err.to_string()),
                    }
                    decode_now = true;
                }
            }
        }
    }

    /// What the loop waits for, polled by hand rather than with `select!`: `select!` keeps
    /// a future for every branch in the task, and those were most of an idle connection's
    /// memory. Here the socket's readiness and the outlet keep a waker each and the task
    /// keeps nothing more. Earlier checks win a tie: an ending first, then writing, then
    /// answers to commits before reading more.
    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
        flushing: Option<&mut Pin<Box<Sleep>>>,
    ) -> Poll<Event> {
        let outlet = &self.conn.outlet;
        let socket = match self.conn.socket() {
            Ok(socket) => socket,
            Err(err) => return Poll::Ready(Event::Readable(Err(err))),
        };
        outlet.register(cx);
        if let Some(why) = outlet.ending() {
            return Poll::Ready(Event::Ending(why));
        }
        match flushing {
            None => {
                if outlet.has_queued() {
                    return Poll::Ready(Event::Queued);
                }
            }
            Some(timer) => {
                if let Poll::Ready(ready) = socket.poll_write_ready(cx) {
                    return Poll::Ready(Event::Writable(ready));
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::WriteTimeout);
                }
            }
        }
        if let Poll::Ready(Some((attempt, outcome))) = self.in_flight.poll_next(cx) {
            return Poll::Ready(Event::Committed(attempt, outcome));
        }
        if self.in_flight.len() < MAX_IN_FLIGHT
            && let Poll::Ready(ready) = socket.poll_read_ready(cx)
        {
            return Poll::Ready(Event::Readable(ready));
        }
        Poll::Pending
    }
}

/// Joins the room, loading it again should it have left memory since the upgrade.
async fn join(
    hub: &Hub,
    committer: &Committer,
    room: &RoomName,
    user: &UserId,
    name: &DisplayName,
    outlet: &Arc<Outlet>,
) -> Result<Membership, End> {
    for _ in 0..3 {
        match hub.join(room, user.clone(), name.clone(), Arc::clone(outlet)) {
            Ok(membership) => return Ok(membership),
            Err(NotLoaded(_)) => committer
                .load_room(room)
                .await
                .map_err(|_| End::Unavailable)?,
        }
    }
    Err(End::Unavailable)
}
