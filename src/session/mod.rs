//! One WebSocket connection: one task, one hand-polled wait over the socket, the outlet
//! (frames queued; eviction, bans, sign-outs, silence and shutdown, which the hub sends
//! through it) and commits in flight. Keep-alive pings come from the hub
//! (`hub::keep_alive`); the session stamps the outlet when a whole message arrives.
//!
//! The read side decodes what htmx sends ([`hubbub_wire`]) and submits it for commit (the
//! committer broadcasts it once stored; a failure comes back here as "not sent" with the
//! text put back in the input). The write side is the connection's [`Outlet`], shared with
//! the hub: broadcast frames are written by the hub straight to the socket, and this task
//! only steps in when the socket could not take everything, draining the queue with
//! vectored writes as it becomes writable. An idle connection is this task, its socket and
//! its outlet: no read or write buffer is held while nothing is in flight.
//!
//! - [`connection`]: the socket, the decoder, and the closing handshake.
//! - [`end`]: every way a session can end, and the close code each sends.
//! - [`limits`]: the connection's rate limits.
//! - [`commits`]: the connection's writes waiting for their commit.
//!
//! [`Outlet`]: crate::outlet::Outlet

mod commits;
mod connection;
mod end;
mod limits;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use governor::Quota;
use hubbub_wire::{Frame, Incoming};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use self::commits::Commits;
use self::connection::Connection;
pub use self::end::{End, close_code};
use self::limits::{Limits, Verdict};
use crate::commit::{CommitError, Committer};
use crate::config::Config;
use crate::domain::mentions::mention_key;
use crate::domain::{
    Change, ChangeKind, ClientId, DisplayName, Emoji, Inbound, InboundError, MessageText,
    NewMessage, RoomName, SessionTag, UserId, Write,
};
use crate::hub::{Hub, Membership, NotLoaded, SessionId};
use crate::limits::{ClientLimits, per_second};
use crate::metrics::Rejection;
use crate::outlet::{Ending, Outlet};
use crate::render::{self, Html};

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

/// What one text frame asks for.
enum Request {
    Nothing,
    Post(MessageText, Option<ClientId>, Option<u64>),
    Change(u64, ChangeKind),
    /// The reader has seen the room up to this message.
    Read(u64),
    /// Reacting needs the name the user has now, which the session looks up.
    React(u64, Emoji),
    Typing,
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

    /// Decodes and handles the whole messages read so far, stopping while `MAX_IN_FLIGHT`
    /// messages wait for their commit (the rest stay buffered). Only a whole message (a
    /// pong included) counts as hearing from the peer, so trickling bytes of a frame that
    /// never ends does not keep a connection alive.
    fn handle_input(&mut self) -> Result<(), End> {
        while self.in_flight.len() < MAX_IN_FLIGHT {
            let next = self.conn.next_message().map_err(End::Protocol)?;
            let Some(message) = next else {
                return Ok(());
            };
            self.conn.outlet.heard();
            let text = match message {
                Incoming::Text(text) => text,
                Incoming::Binary => return Err(End::Binary),
                Incoming::Close(code) => return Err(End::PeerClosed(code)),
                Incoming::Ping(payload) => {
                    self.conn.send(&Frame::pong(&payload))?;
                    continue;
                }
                Incoming::Pong => continue,
            };
            match parse(&text, &self.settings) {
                Ok(Request::Typing) => self.typing()?,
                Ok(Request::Read(id)) => self.read(id)?,
                Ok(Request::Nothing) => self.hub.metrics().received(),
                Ok(Request::Post(text, client_id, reply_to)) => {
                    self.hub.metrics().received();
                    self.post(text, client_id, reply_to)?;
                }
                Ok(Request::Change(id, what)) => {
                    self.hub.metrics().received();
                    self.change(id, what)?;
                }
                Ok(Request::React(id, emoji)) => {
                    self.hub.metrics().received();
                    let name = self.current_name();
                    self.change(id, ChangeKind::React(emoji, name))?;
                }
                Err(err) => {
                    self.hub.metrics().received();
                    self.hub.metrics().rejected(inbound_rejection(&err));
                    tracing::debug!(error = %err, "refused an inbound frame");
                    self.notice(&render::notice(&format!("Not sent: {err}")))?;
                }
            }
        }
        Ok(())
    }

    /// A typing event: announced unless over the typing rate (then simply not announced).
    fn typing(&mut self) -> Result<(), End> {
        if self.read_only || self.hub.is_banned(&self.user) {
            return Ok(());
        }
        if self.limits.allow(true, &self.settings)? == Verdict::Allowed {
            self.hub.typing(&self.room, self.id, Instant::now());
        } else {
            self.hub.metrics().typing_dropped();
        }
        Ok(())
    }

    /// The reader has seen this room up to message `id`: the mark is stored with the
    /// commit writer's next flush, and the user's other pages hear of it at once. Marks
    /// share typing's allowance (a page sends one a second at most); over it they are
    /// ignored. A mark past the newest message delivered here is taken as that one.
    fn read(&mut self, id: u64) -> Result<(), End> {
        if self.limits.allow(true, &self.settings)? != Verdict::Allowed {
            return Ok(());
        }
        let mark = id.min(self.hub.delivered_upto());
        if mark == 0 || self.anonymous {
            return Ok(());
        }
        if !self.committer.mark_read(&self.user, &self.room, mark) {
            tracing::debug!("too many read marks waiting; this one is dropped");
        }
        let key = mention_key(self.current_name().as_str());
        self.hub.read((&self.user, &key), &self.room, self.id, mark);
        Ok(())
    }

    /// A post: submitted for commit if the limits allow, "not sent" with the text put back
    /// otherwise.
    fn post(
        &mut self,
        text: MessageText,
        client_id: Option<ClientId>,
        reply_to: Option<u64>,
    ) -> Result<(), End> {
        let author = self.current_name();
        let message = NewMessage::now(self.room.clone(), author, text.clone())
            .by(self.user.clone())
            .as_guest(self.guest)
            .with_client_id(client_id)
            .replying_to(reply_to);
        self.submit(Write::Post(message), Attempt::Post(text))
    }

    /// The name the user has now: it may have changed since the connection opened.
    fn current_name(&self) -> DisplayName {
        self.hub
            .name_of(&self.room, self.id)
            .unwrap_or_else(|| self.name.clone())
    }

    /// An edit or a delete of one of this user's messages: the same road, and the same
    /// limits, as a post. Whether the message is theirs is the store's to check, inside
    /// the change's transaction.
    fn change(&mut self, id: u64, what: ChangeKind) -> Result<(), End> {
        let attempt = match what {
            ChangeKind::Edit(_) => Attempt::Edit,
            ChangeKind::Delete => Attempt::Delete,
            ChangeKind::React(..) => Attempt::React,
        };
        let change = Change::now(self.room.clone(), id, self.user.clone(), what);
        self.submit(Write::Change(change), attempt)
    }

    /// Submits a write for commit if the limits allow; tells the sender why not otherwise.
    fn submit(&mut self, write: Write, attempt: Attempt) -> Result<(), End> {
        if self.read_only {
            self.hub.metrics().rejected(Rejection::NotAllowed);
            return self.failed(&attempt, "guests can only read here; sign in to post.");
        }
        if self.hub.is_banned(&self.user) {
            self.hub.metrics().rejected(Rejection::NotAllowed);
            return self.failed(&attempt, "you have been banned from posting here.");
        }
        let (rejection, reason) = match self.limits.allow(false, &self.settings)? {
            // Queued at once: from here on the write is stored (or its sender told why not)
            // even if this session ends before the answer comes.
            Verdict::Allowed => match self.committer.submit(write) {
                Ok(answer) => {
                    self.in_flight.push(
                        async move {
                            let outcome = answer.await.unwrap_or(Err(CommitError::Stopped));
                            (attempt, outcome)
                        }
                        .boxed(),
                    );
                    return Ok(());
                }
                Err(err) => (err.rejection(), err.user_message()),
            },
            Verdict::Connection => (
                Rejection::RateLimited,
                "you are sending too fast; wait a moment.".to_owned(),
            ),
            Verdict::Address => (
                Rejection::AddressRateLimited,
                "too many messages from your address; wait a moment.".to_owned(),
            ),
        };
        self.hub.metrics().rejected(rejection);
        self.failed(&attempt, &reason)
    }

    /// Tells the sender that what they sent did not go through, and why: a message's text
    /// is put back in the input.
    fn failed(&self, attempt: &Attempt, reason: &str) -> Result<(), End> {
        let notice = match attempt {
            Attempt::Post(text) => self.not_sent(reason, text),
            Attempt::Edit => render::notice(&format!("Not saved: {reason}")),
            Attempt::Delete => render::notice(&format!("Not deleted: {reason}")),
            Attempt::React => render::notice(&format!("Not reacted: {reason}")),
        };
        self.notice(&notice)
    }

    /// "Not sent: …" with the text put back in the input.
    fn not_sent(&self, reason: &str, text: &MessageText) -> Html {
        render::not_sent(
            reason,
            text.as_str(),
            &self.room,
            self.settings.max_message_chars,
        )
    }

    /// A fragment for this connection alone.
    fn notice(&self, html: &Html) -> Result<(), End> {
        self.conn.send(&Frame::text(html.as_str()))
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

/// Parses one text frame into what it asks for, or why it cannot be sent.
fn parse(frame: &str, settings: &Settings) -> Result<Request, InboundError> {
    let max = settings.max_message_chars as usize;
    match Inbound::parse(frame)? {
        Inbound::Typing => Ok(Request::Typing),
        Inbound::Message {
            text,
            client_id,
            reply_to,
        } => MessageText::parse(&text, max).map(|text| {
            text.map_or(Request::Nothing, |text| {
                Request::Post(text, client_id, reply_to)
            })
        }),
        Inbound::Edit { id, text } => match MessageText::parse(&text, max)? {
            Some(text) => Ok(Request::Change(id, ChangeKind::Edit(text))),
            None => Err(InboundError::EmptyEdit),
        },
        Inbound::Delete { id } => Ok(Request::Change(id, ChangeKind::Delete)),
        Inbound::React { id, emoji } => Ok(Request::React(id, emoji)),
        Inbound::Read { id } => Ok(Request::Read(id)),
    }
}

/// Why an unreadable frame was not sent, for `hubbub_messages_rejected_total`.
fn inbound_rejection(err: &InboundError) -> Rejection {
    match err {
        InboundError::TooLong { .. } => Rejection::TooLong,
        InboundError::Malformed(_)
        | InboundError::ControlCharacters
        | InboundError::EmptyEdit
        | InboundError::UnknownReaction => Rejection::Invalid,
    }
}
