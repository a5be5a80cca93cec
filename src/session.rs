//! One WebSocket connection: one task, one `select!` over the socket, the keep-alive timer,
//! commits in flight, eviction and shutdown.
//!
//! The read side decodes what htmx sends ([`crate::wire`]) and submits it for commit (the
//! committer broadcasts it once stored; a failure comes back here as "not sent" with the
//! text put back in the input). The write side is the connection's [`Outlet`], shared with
//! the hub: broadcast frames are written by the hub straight to the socket, and this task
//! only steps in when the socket could not take everything, draining the queue with
//! vectored writes as it becomes writable. An idle connection is this task, its socket and
//! its outlet: no read or write buffer is held while nothing is in flight.
//! Every way a session can end is an [`End`], and each maps to one close code in one
//! place ([`End::close_frame`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::commit::{CommitError, Committer};
use crate::config::Config;
use crate::domain::{
    DisplayName, Inbound, InboundError, MessageText, NewMessage, RoomName, UserId,
};
use crate::hub::{Hub, Membership, NotLoaded};
use crate::limits::{ClientLimits, per_second};
use crate::metrics::Rejection;
use crate::outlet::{Offered, Outlet};
use crate::render;
use crate::wire::{Decoder, Frame, Incoming, ProtocolError, Role};

/// Close codes from RFC 6455 §7.4.1 that hubbub sends.
pub mod close_code {
    /// The server is restarting; htmx reconnects on it.
    pub const SERVICE_RESTART: u16 = 1012;
    /// The client broke a rule (here: it fell too far behind).
    pub const POLICY: u16 = 1008;
    /// The client sent a binary frame; hubbub speaks text only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// The client sent a frame larger than `--max-frame-bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// The client stopped answering pings; it will never see this, but a proxy might.
    pub const GOING_AWAY: u16 = 1001;
    /// The server cannot serve the room right now; htmx reconnects on it.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The client broke the WebSocket protocol (unmasked frame, bad opcode, …).
    pub const PROTOCOL: u16 = 1002;
    /// The client sent text that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
}

/// Refusals in a row (posts over the rate limit, ignored typing events) after which a
/// client is not a person typing fast but a flood, and is disconnected (1008).
const MAX_STRIKES: u32 = 20;

/// Messages one session may have waiting for their commit. When that many are in flight
/// the session stops reading until one is answered.
const MAX_IN_FLIGHT: usize = 16;

/// Room reserved in the read buffer before each read. Chat frames are small; a larger
/// frame takes several reads.
const READ_CHUNK: usize = 2048;

/// How long to wait for the peer's answer to our close frame before dropping the TCP
/// connection. Waiting avoids resetting a connection with data still unread on our side,
/// which could make the peer lose the close frame itself.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// The per-connection settings, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_message_chars: u32,
    pub max_frame_bytes: usize,
    pub send_queue: usize,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
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
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            write_timeout: config.write_timeout,
            shutdown_grace: config.shutdown_grace,
            message_quota: per_second(config.message_rate, config.message_burst),
            typing_quota: per_second(config.typing_rate, config.typing_rate.saturating_mul(2)),
        }
    }
}

/// A connection's rate limits, its address's shared ones, and how many refusals it has
/// had in a row.
struct Limits {
    messages: DefaultDirectRateLimiter,
    typing: DefaultDirectRateLimiter,
    /// `None` for a client exempt from per-address limits.
    address: Option<ClientLimits>,
    strikes: u32,
}

/// What the limits say about one post or typing event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allowed,
    /// Over this connection's own limit.
    Connection,
    /// Over the limit shared by every connection from the client's address.
    Address,
}

impl Limits {
    fn new(settings: &Settings, address: Option<ClientLimits>) -> Self {
        Self {
            messages: DefaultDirectRateLimiter::direct(settings.message_quota),
            typing: DefaultDirectRateLimiter::direct(settings.typing_quota),
            address,
            strikes: 0,
        }
    }

    /// Counts one post (or, with `typing`, one typing event). `Err` once refusals in a row
    /// show a flood.
    fn allow(&mut self, typing: bool) -> Result<Verdict, End> {
        let verdict = if typing {
            if self.typing.check().is_ok() {
                Verdict::Allowed
            } else {
                Verdict::Connection
            }
        } else if self.messages.check().is_err() {
            Verdict::Connection
        } else if self
            .address
            .as_ref()
            .is_some_and(|address| !address.allow_message())
        {
            Verdict::Address
        } else {
            Verdict::Allowed
        };
        if verdict == Verdict::Allowed {
            self.strikes = 0;
            return Ok(verdict);
        }
        self.strikes += 1;
        if self.strikes >= MAX_STRIKES {
            return Err(End::Flooding);
        }
        Ok(verdict)
    }
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The server is shutting down.
    Shutdown,
    /// The hub evicted the session because its outbox was full.
    Evicted,
    /// The peer sent a close frame (with this code, if any).
    PeerClosed(Option<u16>),
    /// The connection ended without a close frame.
    Disconnected,
    /// The peer sent a binary frame.
    Binary,
    /// The peer kept sending over its rate limit.
    Flooding,
    /// The peer broke the protocol, or sent a message over the size limit.
    Protocol(ProtocolError),
    /// No pong (or any frame) within the pong timeout.
    Unresponsive,
    /// The socket took nothing for the whole write timeout.
    WriteTimeout,
    /// Reading or writing failed at the transport level.
    Transport(String),
    /// The room could not be loaded (the store is unavailable).
    Unavailable,
}

impl End {
    /// The close frame to send, if the connection can still carry one.
    fn close_frame(&self) -> Option<Frame> {
        let (code, reason) = match self {
            End::Shutdown => (
                close_code::SERVICE_RESTART,
                "server restarting; reconnect shortly",
            ),
            End::Evicted => (close_code::POLICY, "too slow: fell too far behind the room"),
            End::Flooding => (close_code::POLICY, "too many messages: slow down"),
            End::Binary => (
                close_code::UNSUPPORTED_DATA,
                "binary frames are not supported",
            ),
            End::Protocol(ProtocolError::TooBig(_)) => {
                (close_code::TOO_BIG, "frame larger than the server's limit")
            }
            End::Protocol(err) => (err.close_code(), "protocol error"),
            End::Unresponsive => (close_code::GOING_AWAY, "no pong received"),
            End::Unavailable => (
                close_code::TRY_AGAIN_LATER,
                "the message store is unavailable",
            ),
            // Answer the peer's close with its own code (RFC 6455 §5.5.1).
            End::PeerClosed(Some(code)) => (*code, ""),
            End::PeerClosed(None) => return Some(Frame::close_empty()),
            End::Disconnected | End::WriteTimeout | End::Transport(_) => return None,
        };
        Some(Frame::close(code, reason))
    }

    /// Whether we started the closing handshake (and so wait for the peer's answer).
    fn we_close(&self) -> bool {
        !matches!(
            self,
            End::PeerClosed(_) | End::Disconnected | End::WriteTimeout | End::Transport(_)
        )
    }
}

/// A submitted message waiting for its commit: the text (to put back if it fails) and
/// the outcome.
type InFlight = BoxFuture<'static, (MessageText, Result<u64, CommitError>)>;

/// The room a session is in, and the handles it needs there.
#[derive(Clone)]
pub struct Room {
    pub hub: Hub,
    pub committer: Committer,
    pub room: RoomName,
    /// The client's address and its shared allowance; `None` when exempt.
    pub address: Option<ClientLimits>,
}

/// What one text frame asks for.
enum Request {
    Nothing,
    Post(MessageText),
    Typing,
}

/// The connection itself: the socket, its shared write side and what has been read.
struct Connection {
    socket: Arc<TcpStream>,
    outlet: Arc<Outlet>,
    decoder: Decoder,
    /// Bytes read but not yet decoded; empty (and unallocated) between messages.
    pending: BytesMut,
}

impl Connection {
    /// Reads what the socket has. `Ok(false)` at the end of the stream.
    fn read_available(&mut self) -> std::io::Result<bool> {
        self.pending.reserve(READ_CHUNK);
        match self.socket.try_read_buf(&mut self.pending) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
            Err(err) => Err(err),
        }
    }

    fn next_message(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        let next = self.decoder.decode(&mut self.pending);
        if self.pending.is_empty() {
            // Give the buffer back: an idle connection holds none.
            self.pending = BytesMut::new();
        }
        next
    }

    /// Queues or writes a frame for this connection alone.
    fn send(&self, frame: &Frame) -> Result<(), End> {
        match self.outlet.offer(frame) {
            Offered::Written | Offered::Queued => Ok(()),
            Offered::Full => Err(End::Evicted),
            Offered::Closed => Err(End::Disconnected),
        }
    }
}

/// Runs one upgraded connection until it ends, then closes it. `leftover` is what the
/// HTTP layer read past the upgrade request. Returns why it ended.
pub async fn run(
    socket: TcpStream,
    leftover: Bytes,
    place: Room,
    user: UserId,
    name: DisplayName,
    settings: Settings,
    shutdown: CancellationToken,
) -> End {
    let socket = Arc::new(socket);
    let outlet = Arc::new(Outlet::new(Arc::clone(&socket), settings.send_queue));
    let mut conn = Connection {
        socket,
        outlet: Arc::clone(&outlet),
        decoder: Decoder::new(Role::Server, settings.max_frame_bytes),
        pending: BytesMut::from(&leftover[..]),
    };
    // `leftover` may be a view into hyper's whole read buffer: let it go now, not when
    // the session ends.
    drop(leftover);
    let Room {
        hub,
        committer,
        room,
        address,
    } = place;
    let membership = match join(&hub, &committer, &room, &user, &name, &outlet).await {
        Ok(membership) => membership,
        Err(end) => {
            close(&mut conn, &end, &settings).await;
            return end;
        }
    };
    let limits = Limits::new(&settings, address);
    let end = serve(
        &mut conn,
        limits,
        &membership,
        &hub,
        &committer,
        &room,
        &name,
        &settings,
        &shutdown,
    )
    .await;
    hub.leave(&room, membership.id);
    tracing::debug!(id = ?membership.id, %room, %name, ?end, "session ended");
    close(&mut conn, &end, &settings).await;
    end
}

/// The session's loop, from joining the room until the first reason to end.
#[allow(clippy::too_many_arguments)]
async fn serve(
    conn: &mut Connection,
    mut limits: Limits,
    membership: &Membership,
    hub: &Hub,
    committer: &Committer,
    room: &RoomName,
    name: &DisplayName,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> End {
    let id = membership.id;
    tracing::debug!(?id, %room, %name, "session started");
    let outlet = Arc::clone(&conn.outlet);
    let socket = Arc::clone(&conn.socket);
    let mut ping = tokio::time::interval_at(
        Instant::now() + settings.ping_interval,
        settings.ping_interval,
    );
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    // Set while frames wait in the outlet: when the socket last took something.
    let mut flushing: Option<Instant> = None;
    // What the hyper layer read past the upgrade request is decoded first.
    let mut decode_now = !conn.pending.is_empty();

    loop {
        if decode_now {
            decode_now = false;
            match handle_input(
                conn,
                hub,
                committer,
                room,
                name,
                settings,
                id,
                &mut in_flight,
                &mut limits,
            ) {
                Ok(true) => last_heard = Instant::now(),
                Ok(false) => {}
                Err(end) => return end,
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return End::Shutdown,
            () = membership.evicted.cancelled() => return End::Evicted,
            () = outlet.queued(), if flushing.is_none() => {
                flushing = Some(Instant::now());
                match outlet.flush() {
                    Ok(true) => flushing = None,
                    Ok(false) => {}
                    Err(err) => return End::Transport(err.to_string()),
                }
            }
            ready = socket.writable(), if flushing.is_some() => {
                if let Err(err) = ready {
                    return End::Transport(err.to_string());
                }
                match outlet.flush() {
                    Ok(true) => flushing = None,
                    Ok(false) => flushing = Some(Instant::now()),
                    Err(err) => return End::Transport(err.to_string()),
                }
            }
            () = tokio::time::sleep_until(flushing.unwrap_or_else(Instant::now) + settings.write_timeout), if flushing.is_some() => {
                return End::WriteTimeout;
            }
            Some((text, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                // Messages left undecoded while too many were in flight go next.
                decode_now = !conn.pending.is_empty();
                let Err(err) = outcome else { continue };
                let notice = render::not_sent(err.user_message(), text.as_str(), room, settings.max_message_chars);
                if let Err(end) = conn.send(&Frame::text(notice.as_str())) {
                    return end;
                }
            }
            ready = socket.readable(), if in_flight.len() < MAX_IN_FLIGHT => {
                if let Err(err) = ready {
                    return End::Transport(err.to_string());
                }
                match conn.read_available() {
                    Ok(true) => {}
                    Ok(false) => return End::Disconnected,
                    Err(err) => return End::Transport(err.to_string()),
                }
                decode_now = true;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= settings.pong_timeout {
                    return End::Unresponsive;
                }
                if let Err(end) = conn.send(&Frame::ping()) {
                    return end;
                }
            }
        }
    }
}

/// Decodes and handles the whole messages read so far, stopping while `MAX_IN_FLIGHT`
/// messages wait for their commit (the rest stay buffered). `Ok(true)` when at least one
/// whole message (a pong included) arrived: only that counts as hearing from the peer, so
/// trickling bytes of a frame that never ends does not keep a connection alive.
#[allow(clippy::too_many_arguments)]
fn handle_input(
    conn: &mut Connection,
    hub: &Hub,
    committer: &Committer,
    room: &RoomName,
    name: &DisplayName,
    settings: &Settings,
    id: crate::hub::SessionId,
    in_flight: &mut FuturesOrdered<InFlight>,
    limits: &mut Limits,
) -> Result<bool, End> {
    let mut heard = false;
    loop {
        if in_flight.len() >= MAX_IN_FLIGHT {
            return Ok(heard);
        }
        let next = conn.next_message();
        heard |= matches!(next, Ok(Some(_)));
        let text = match next {
            Ok(None) => return Ok(heard),
            Err(err) => return Err(End::Protocol(err)),
            Ok(Some(Incoming::Text(text))) => text,
            Ok(Some(Incoming::Binary)) => return Err(End::Binary),
            Ok(Some(Incoming::Close(code))) => return Err(End::PeerClosed(code)),
            Ok(Some(Incoming::Ping(payload))) => {
                conn.send(&Frame::pong(&payload))?;
                continue;
            }
            Ok(Some(Incoming::Pong)) => continue,
        };
        let request = parse(&text, settings);
        if !matches!(request, Ok(Request::Typing)) {
            hub.metrics().received();
        }
        let notice = match request {
            Ok(Request::Nothing) => continue,
            Ok(Request::Typing) => {
                // Over the limit, typing is simply not announced.
                if limits.allow(true)? == Verdict::Allowed {
                    hub.typing(room, id, Instant::now());
                } else {
                    hub.metrics().typing_dropped();
                }
                continue;
            }
            Ok(Request::Post(text)) => match limits.allow(false)? {
                Verdict::Allowed => {
                    // The name may have changed since the connection opened.
                    let author = hub.name_of(room, id).unwrap_or_else(|| name.clone());
                    let message = NewMessage::now(room.clone(), author, text.clone());
                    // Queued at once: from here on the message is stored (or its sender told
                    // why not) even if this session ends before the answer comes.
                    match committer.submit(message) {
                        Ok(answer) => {
                            in_flight.push_back(
                                async move {
                                    (text, answer.await.unwrap_or(Err(CommitError::Stopped)))
                                }
                                .boxed(),
                            );
                            continue;
                        }
                        Err(err) => {
                            hub.metrics().rejected(Rejection::commit(&err));
                            render::not_sent(
                                err.user_message(),
                                text.as_str(),
                                room,
                                settings.max_message_chars,
                            )
                        }
                    }
                }
                Verdict::Connection => {
                    hub.metrics().rejected(Rejection::RateLimited);
                    render::not_sent(
                        "you are sending too fast; wait a moment.",
                        text.as_str(),
                        room,
                        settings.max_message_chars,
                    )
                }
                Verdict::Address => {
                    hub.metrics().rejected(Rejection::AddressRateLimited);
                    render::not_sent(
                        "too many messages from your address; wait a moment.",
                        text.as_str(),
                        room,
                        settings.max_message_chars,
                    )
                }
            },
            Err(err) => {
                hub.metrics().rejected(Rejection::inbound(&err));
                tracing::debug!(error = %err, "refused an inbound frame");
                render::notice(&format!("Not sent: {err}"))
            }
        };
        conn.send(&Frame::text(notice.as_str()))?;
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
    match Inbound::parse(frame)? {
        Inbound::Typing => Ok(Request::Typing),
        Inbound::Message { text } => MessageText::parse(&text, settings.max_message_chars as usize)
            .map(|text| text.map_or(Request::Nothing, Request::Post)),
    }
}

/// Ends the connection. When we close, we send our close frame, let the socket take it
/// and wait briefly for the peer's answer; when the peer closed, we answer with a close
/// frame and drop the connection (the server closes TCP first, RFC 6455 §7.1.1). At
/// shutdown all of it fits in the server's grace period.
async fn close(conn: &mut Connection, end: &End, settings: &Settings) {
    let Some(frame) = end.close_frame() else {
        conn.outlet.close();
        return;
    };
    let budget = match end {
        End::Shutdown => settings.write_timeout.min(settings.shutdown_grace / 2),
        _ => settings.write_timeout,
    };
    let deadline = Instant::now() + budget;
    // An evicted reader is too far behind for what is queued to matter; otherwise
    // everything queued still goes out before the close frame.
    let keep_queued = !matches!(end, End::Evicted);
    conn.outlet.offer_last(&frame, keep_queued);
    let flushed = tokio::time::timeout_at(deadline, async {
        loop {
            match conn.outlet.flush() {
                Ok(true) => return true,
                Ok(false) => {
                    if conn.socket.writable().await.is_err() {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    })
    .await;
    if !matches!(flushed, Ok(true)) || !end.we_close() {
        return;
    }
    // Read until the peer's close frame or the end of the stream, so the connection is not
    // reset with data unread (which could destroy our close frame in flight). After a
    // protocol error the bytes are discarded without decoding.
    let mut decode = !matches!(end, End::Protocol(_));
    let wait = deadline.min(Instant::now() + CLOSE_HANDSHAKE);
    let _ = tokio::time::timeout_at(wait, async {
        loop {
            if !decode {
                conn.pending.clear();
            }
            if conn.socket.readable().await.is_err() {
                return;
            }
            match conn.read_available() {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
            while decode {
                match conn.next_message() {
                    Ok(Some(Incoming::Close(_))) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => decode = false,
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// The client's end of a real loopback connection, speaking frames.
    struct Peer {
        stream: TcpStream,
        decoder: Decoder,
        buf: BytesMut,
    }

    impl Peer {
        async fn next(&mut self) -> Option<Incoming> {
            loop {
                if let Some(message) = self.decoder.decode(&mut self.buf).unwrap() {
                    return Some(message);
                }
                if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                    return None;
                }
            }
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.unwrap();
        }
    }

    /// A server end for the session and a client end for the test.
    async fn connected() -> (TcpStream, Peer) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let peer = Peer {
            stream: client,
            decoder: Decoder::new(Role::Client, 1 << 20),
            buf: BytesMut::new(),
        };
        (server, peer)
    }

    #[test]
    fn posts_count_against_the_connection_then_its_address_and_refusals_add_up_to_a_flood() {
        let address = ClientLimits {
            ip: "203.0.113.7".parse().unwrap(),
            limits: Arc::new(crate::limits::AddressLimits::new(
                per_second(1, 2),
                per_second(1, 1),
            )),
        };
        let settings = Settings {
            message_quota: per_second(1, 3),
            ..settings()
        };
        let mut first = Limits::new(&settings, Some(address.clone()));
        let mut second = Limits::new(&settings, Some(address));
        assert_eq!(first.allow(false), Ok(Verdict::Allowed));
        assert_eq!(second.allow(false), Ok(Verdict::Allowed));
        // The address's burst of two is spent, though each connection has room left.
        assert_eq!(first.allow(false), Ok(Verdict::Address));
        // Typing is not counted against the address.
        assert_eq!(first.allow(true), Ok(Verdict::Allowed));
        // A post refused for its address still spends the connection's own allowance
        // (checked first, so that a connection over its own limit spends nothing of its
        // address's, which its siblings share).
        assert_eq!(second.allow(false), Ok(Verdict::Address));
        assert_eq!(second.allow(false), Ok(Verdict::Address));
        assert_eq!(second.allow(false), Ok(Verdict::Connection));
        // An exempt client has only its own limit; refusals in a row end in a flood.
        let mut exempt = Limits::new(&settings, None);
        for _ in 0..3 {
            assert_eq!(exempt.allow(false), Ok(Verdict::Allowed));
        }
        for _ in 1..MAX_STRIKES {
            assert_eq!(exempt.allow(false), Ok(Verdict::Connection));
        }
        assert_eq!(exempt.allow(false), Err(End::Flooding));
    }

    /// Short keep-alive periods, so the tests run in real time.
    fn settings() -> Settings {
        Settings {
            ping_interval: Duration::from_millis(100),
            pong_timeout: Duration::from_millis(300),
            message_quota: per_second(1000, 1000),
            ..Settings::from_config(&Config::defaults())
        }
    }

    fn guest() -> DisplayName {
        DisplayName::parse("guest-0001").unwrap()
    }

    /// A hub and a committer over a store in a fresh SQLite file.
    async fn room() -> (Room, tempfile::TempDir) {
        let (committer, hub, _task, dir) = crate::commit::for_tests(CancellationToken::new()).await;
        let room = RoomName::general();
        committer.load_room(&room).await.unwrap();
        (
            Room {
                hub,
                committer,
                room,
                address: None,
            },
            dir,
        )
    }

    /// A session on a real loopback connection, in a room of its own.
    async fn start(
        leftover: Bytes,
        shutdown: CancellationToken,
    ) -> (tokio::task::JoinHandle<End>, Peer, tempfile::TempDir) {
        let (place, dir) = room().await;
        let (socket, peer) = connected().await;
        let session = tokio::spawn(run(
            socket,
            leftover,
            place,
            UserId::generate(),
            guest(),
            settings(),
            shutdown,
        ));
        (session, peer, dir)
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_pings_is_dropped_after_the_pong_timeout() {
        let started = Instant::now();
        let (session, mut peer, _dir) = start(Bytes::new(), CancellationToken::new()).await;

        let mut pings = 0;
        let close = loop {
            match peer.next().await {
                Some(Incoming::Ping(_)) => pings += 1,
                Some(Incoming::Close(code)) => break code,
                Some(_) => {}
                None => panic!("no close frame"),
            }
        };
        assert_eq!(close, Some(close_code::GOING_AWAY));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300),
            "closed after {waited:?}, before the pong timeout"
        );
        assert!(pings >= 2, "pings every 100 ms went unanswered ({pings})");
        drop(peer);
        assert_eq!(session.await.unwrap(), End::Unresponsive);
    }

    #[tokio::test]
    async fn a_peer_that_answers_pings_stays_until_shutdown_and_gets_1012() {
        let shutdown = CancellationToken::new();
        let (session, mut peer, _dir) = start(Bytes::new(), shutdown.clone()).await;

        // Three pong timeouts' worth of answered pings.
        let until = Instant::now() + Duration::from_millis(900);
        let mut pings = 0;
        while let Ok(next) = tokio::time::timeout_at(until, peer.next()).await {
            match next {
                Some(Incoming::Ping(payload)) => {
                    pings += 1;
                    peer.send(&crate::wire::client_pong(&payload, [1, 2, 3, 4]))
                        .await;
                }
                Some(Incoming::Text(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(pings >= 6, "a ping every 100 ms ({pings})");

        shutdown.cancel();
        let close = loop {
            match peer.next().await {
                Some(Incoming::Close(code)) => break code,
                Some(_) => {}
                None => panic!("no close frame"),
            }
        };
        assert_eq!(close, Some(close_code::SERVICE_RESTART));
        peer.send(&crate::wire::client_close(1000, [9, 9, 9, 9]))
            .await;
        assert_eq!(session.await.unwrap(), End::Shutdown);
    }

    #[tokio::test]
    async fn bytes_read_past_the_upgrade_are_handled_first() {
        // A message that arrived with the upgrade request, before the session began.
        let leftover = crate::wire::client_frame(true, br#"{"text":"early bird"}"#, [7, 7, 7, 7]);
        let (session, mut peer, _dir) =
            start(Bytes::from(leftover), CancellationToken::new()).await;
        let posted = loop {
            match peer.next().await {
                Some(Incoming::Text(text)) if text.contains("early bird") => break text,
                Some(_) => {}
                None => panic!("the early message never came back"),
            }
        };
        assert!(posted.contains("guest-0001"), "{posted}");
        peer.send(&crate::wire::client_close(1000, [1, 1, 1, 1]))
            .await;
        assert_eq!(session.await.unwrap(), End::PeerClosed(Some(1000)));
    }

    #[tokio::test]
    async fn a_client_close_is_answered_with_the_same_code() {
        let (session, mut peer, _dir) = start(Bytes::new(), CancellationToken::new()).await;
        assert!(matches!(peer.next().await, Some(Incoming::Text(_))));
        peer.send(&crate::wire::client_close(4000, [3, 1, 4, 1]))
            .await;
        let answer = loop {
            match peer.next().await {
                Some(Incoming::Close(code)) => break code,
                Some(_) => {}
                None => panic!("no close frame"),
            }
        };
        assert_eq!(answer, Some(4000));
        assert_eq!(session.await.unwrap(), End::PeerClosed(Some(4000)));
        assert_eq!(
            peer.next().await,
            None,
            "the server closed the TCP connection"
        );
    }

    #[tokio::test]
    async fn a_burst_larger_than_the_in_flight_limit_is_posted_in_full_and_in_order() {
        let (session, mut peer, _dir) = start(Bytes::new(), CancellationToken::new()).await;
        assert!(matches!(peer.next().await, Some(Incoming::Text(_))));
        // Forty posts in one write: more than may wait for their commit at once.
        let mut burst = Vec::new();
        for i in 0..40 {
            let json = format!(r#"{{"text":"burst {i:02}"}}"#);
            burst.extend(crate::wire::client_frame(
                true,
                json.as_bytes(),
                [5, 6, 7, 8],
            ));
        }
        peer.send(&burst).await;
        let mut seen = Vec::new();
        while seen.len() < 40 {
            match tokio::time::timeout(Duration::from_secs(10), peer.next()).await {
                Ok(Some(Incoming::Text(text))) => {
                    for part in text.split("burst ").skip(1) {
                        seen.push(part[..2].parse::<u32>().unwrap());
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("only {} of 40 came back: {seen:?}", seen.len()),
            }
        }
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
        peer.send(&crate::wire::client_close(1000, [1, 1, 1, 1]))
            .await;
        assert_eq!(session.await.unwrap(), End::PeerClosed(Some(1000)));
    }

    #[tokio::test]
    async fn trickling_a_frame_that_never_ends_does_not_keep_a_connection_alive() {
        let (session, mut peer, _dir) = start(Bytes::new(), CancellationToken::new()).await;
        assert!(matches!(peer.next().await, Some(Incoming::Text(_))));
        // The header of a 1,000-byte text frame, then one byte every 50 ms.
        let frame = crate::wire::client_frame(true, &[b'x'; 1000], [1, 2, 3, 4]);
        let trickle = async {
            for byte in &frame {
                if peer
                    .stream
                    .write_all(std::slice::from_ref(byte))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let end = tokio::select! {
            end = session => end.unwrap(),
            () = trickle => panic!("the whole frame went through"),
        };
        assert_eq!(end, End::Unresponsive);
    }

    #[test]
    fn every_end_that_can_carry_a_close_frame_has_the_documented_code() {
        let code = |end: End| {
            end.close_frame()
                .map(|frame| u16::from_be_bytes([frame.payload()[0], frame.payload()[1]]))
        };
        assert_eq!(code(End::Shutdown), Some(1012));
        assert_eq!(code(End::Evicted), Some(1008));
        assert_eq!(code(End::Binary), Some(1003));
        assert_eq!(code(End::Flooding), Some(1008));
        assert_eq!(
            code(End::Protocol(ProtocolError::TooBig(1 << 20))),
            Some(1009)
        );
        assert_eq!(code(End::Protocol(ProtocolError::InvalidUtf8)), Some(1007));
        assert_eq!(code(End::Protocol(ProtocolError::Unmasked)), Some(1002));
        assert_eq!(code(End::Unresponsive), Some(1001));
        assert_eq!(code(End::Unavailable), Some(1013));
        assert_eq!(code(End::PeerClosed(Some(1000))), Some(1000));
        assert_eq!(End::PeerClosed(None).close_frame().unwrap().payload(), b"");
        assert_eq!(End::Disconnected.close_frame(), None);
    }
}
