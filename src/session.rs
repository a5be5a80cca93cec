//! One WebSocket connection: one task, one `select!` over the socket, the hub's feed, the
//! keep-alive timer, eviction and shutdown.
//!
//! The read side parses what htmx sends and submits it for commit (the committer
//! broadcasts it once stored; a failure comes back here as "not sent" with the text put
//! back in the input). The write side drains *everything* queued in the outbox into one
//! frame and one flush (htmx swaps every top-level element of a frame), so a burst costs
//! one `write`, not one per message.
//! Every way a session can end is an [`End`], and each maps to one close code in one
//! place ([`End::close_frame`]).
//!
//! The session is generic over any `Stream + Sink` of messages so that tests can drive it
//! without a socket.

use std::error::Error as StdError;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::commit::{CommitError, Committer};
use crate::config::Config;
use crate::domain::{DisplayName, Inbound, MessageText, NewMessage, RoomName, UserId};
use crate::hub::{Hub, Membership, NotLoaded};
use crate::render;

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
}

/// Messages one session may have waiting for their commit. When that many are in flight
/// the session stops reading until one is answered.
const MAX_IN_FLIGHT: usize = 16;

/// The most frames drained into one write. Bounded so one write stays a reasonable size
/// even with a large `--send-queue`.
const MAX_BATCH: usize = 256;

/// How long to wait for the peer's answer to our close frame before dropping the TCP
/// connection. Waiting avoids resetting a connection with data still unread on our side,
/// which could make the peer lose the close frame itself.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// The per-connection settings, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_message_chars: u32,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub write_timeout: Duration,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_message_chars: config.max_message_chars,
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            write_timeout: config.write_timeout,
        }
    }
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The server is shutting down.
    Shutdown,
    /// The hub evicted the session because its outbox was full.
    Evicted,
    /// The peer sent a close frame or the connection ended.
    PeerClosed,
    /// The peer sent a binary frame.
    Binary,
    /// The peer sent a frame over the size limit.
    TooBig,
    /// No pong (or any frame) within the pong timeout.
    Unresponsive,
    /// A write did not finish within the write timeout.
    WriteTimeout,
    /// Reading or writing failed at the transport level.
    Transport(String),
    /// The room could not be loaded (the store is unavailable).
    Unavailable,
}

impl End {
    /// The close frame to send, if the connection can still carry one.
    fn close_frame(&self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::Shutdown => (
                close_code::SERVICE_RESTART,
                "server restarting; reconnect shortly",
            ),
            End::Evicted => (close_code::POLICY, "too slow: fell too far behind the room"),
            End::Binary => (
                close_code::UNSUPPORTED_DATA,
                "binary frames are not supported",
            ),
            End::TooBig => (close_code::TOO_BIG, "frame larger than the server's limit"),
            End::Unresponsive => (close_code::GOING_AWAY, "no pong received"),
            End::Unavailable => (
                close_code::TRY_AGAIN_LATER,
                "the message store is unavailable",
            ),
            End::PeerClosed | End::WriteTimeout | End::Transport(_) => return None,
        };
        Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })
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
}

/// What one text frame asks for.
enum Request {
    Nothing,
    Post(MessageText),
    Typing,
}

/// Runs one connection until it ends, then closes it. Returns why it ended.
pub async fn run<S, E>(
    mut socket: S,
    place: Room,
    user: UserId,
    name: DisplayName,
    settings: Settings,
    shutdown: CancellationToken,
) -> End
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError + Send + Sync + 'static,
{
    let Room {
        hub,
        committer,
        room,
    } = place;
    let mut membership = match join(&hub, &committer, &room, &user, &name).await {
        Ok(membership) => membership,
        Err(end) => {
            close(&mut socket, &end, settings.write_timeout).await;
            return end;
        }
    };
    let id = membership.id;
    tracing::debug!(?id, %room, %name, "session started");

    let mut ping = tokio::time::interval_at(
        Instant::now() + settings.ping_interval,
        settings.ping_interval,
    );
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut batch: Vec<Utf8Bytes> = Vec::new();
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();

    let end = loop {
        tokio::select! {
            () = shutdown.cancelled() => break End::Shutdown,
            () = membership.evicted.cancelled() => break End::Evicted,
            received = membership.outbox.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    // The hub dropped our sender: we were evicted (the token says so too).
                    break End::Evicted;
                }
                let frame = join_frames(&mut batch);
                if let Err(end) = write(&mut socket, Message::Text(frame), &settings, &membership.evicted, &shutdown).await {
                    break end;
                }
            }
            Some((text, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                let Err(err) = outcome else { continue };
                let notice = render::not_sent(err.user_message(), text.as_str(), &room, settings.max_message_chars);
                if let Err(end) = write(&mut socket, Message::Text(notice), &settings, &membership.evicted, &shutdown).await {
                    break end;
                }
            }
            frame = socket.next(), if in_flight.len() < MAX_IN_FLIGHT => {
                last_heard = Instant::now();
                let text = match frame {
                    None => break End::PeerClosed,
                    Some(Err(err)) => break classify_read_error(&err),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => break End::Binary,
                    Some(Ok(Message::Close(_))) => break End::PeerClosed,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                };
                let notice = match parse(text.as_str(), &settings) {
                    Ok(Request::Nothing) => continue,
                    Ok(Request::Typing) => {
                        hub.typing(&room, id, Instant::now());
                        continue;
                    }
                    Ok(Request::Post(text)) => {
                        // The name may have changed since the connection opened.
                        let author = hub.name_of(&room, id).unwrap_or_else(|| name.clone());
                        let message = NewMessage::now(room.clone(), author, text.clone());
                        // Queued at once: from here on the message is stored (or its sender
                        // told why not) even if this session ends before the answer comes.
                        match committer.submit(message) {
                            Ok(answer) => {
                                in_flight.push_back(
                                    async move { (text, answer.await.unwrap_or(Err(CommitError::Stopped))) }.boxed(),
                                );
                                continue;
                            }
                            Err(err) => render::not_sent(err.user_message(), text.as_str(), &room, settings.max_message_chars),
                        }
                    }
                    Err(notice) => notice,
                };
                if let Err(end) = write(&mut socket, Message::Text(notice), &settings, &membership.evicted, &shutdown).await {
                    break end;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= settings.pong_timeout {
                    break End::Unresponsive;
                }
                if let Err(end) = write(&mut socket, Message::Ping(Default::default()), &settings, &membership.evicted, &shutdown).await {
                    break end;
                }
            }
        }
    };

    hub.leave(&room, id);
    tracing::debug!(?id, %room, %name, ?end, "session ended");
    close(&mut socket, &end, settings.write_timeout).await;
    end
}

/// Joins the room, loading it again should it have left memory since the upgrade.
async fn join(
    hub: &Hub,
    committer: &Committer,
    room: &RoomName,
    user: &UserId,
    name: &DisplayName,
) -> Result<Membership, End> {
    for _ in 0..3 {
        match hub.join(room, user.clone(), name.clone()) {
            Ok(membership) => return Ok(membership),
            Err(NotLoaded(_)) => committer
                .load_room(room)
                .await
                .map_err(|_| End::Unavailable)?,
        }
    }
    Err(End::Unavailable)
}

/// Parses one text frame into what it asks for, or a notice for the sender alone.
fn parse(frame: &str, settings: &Settings) -> Result<Request, Utf8Bytes> {
    let request = match Inbound::parse(frame) {
        Ok(Inbound::Typing) => Ok(Request::Typing),
        Ok(Inbound::Message { text }) => {
            MessageText::parse(&text, settings.max_message_chars as usize)
                .map(|text| text.map_or(Request::Nothing, Request::Post))
        }
        Err(err) => Err(err),
    };
    request.map_err(|err| {
        tracing::debug!(error = %err, "refused an inbound frame");
        render::notice(&format!("Not sent: {err}"))
    })
}

/// Joins queued fragments into one frame. One fragment is sent as it is (shared bytes,
/// no copy); several are concatenated once for this session's write.
fn join_frames(batch: &mut Vec<Utf8Bytes>) -> Utf8Bytes {
    let frame = render::join(batch.iter());
    batch.clear();
    frame
}

/// Writes and flushes one message, giving up on timeout, eviction or shutdown.
async fn write<S, E>(
    socket: &mut S,
    message: Message,
    settings: &Settings,
    evicted: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), End>
where
    S: Sink<Message, Error = E> + Unpin,
    E: StdError,
{
    tokio::select! {
        written = tokio::time::timeout(settings.write_timeout, socket.send(message)) => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(End::Transport(err.to_string())),
            Err(_elapsed) => Err(End::WriteTimeout),
        },
        () = evicted.cancelled() => Err(End::Evicted),
        () = shutdown.cancelled() => Err(End::Shutdown),
    }
}

/// Ends the closing handshake. When we close, we send our close frame and wait briefly
/// for the peer's answer; when the peer closed, tungstenite has queued our answer and
/// only needs a flush, without which the peer sees an unclean close (1006).
async fn close<S, E>(socket: &mut S, end: &End, write_timeout: Duration)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message, Error = E> + Unpin,
    E: StdError,
{
    let Some(frame) = end.close_frame() else {
        if *end == End::PeerClosed {
            let _ = tokio::time::timeout(write_timeout.min(CLOSE_HANDSHAKE), socket.close()).await;
        }
        return;
    };
    let sent = tokio::time::timeout(write_timeout, socket.send(Message::Close(Some(frame)))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    // Read (and discard) until the peer's close frame ends the stream.
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}

/// A read error is either the peer breaking the size limit or the transport failing.
fn classify_read_error<E>(err: &E) -> End
where
    E: StdError + 'static,
{
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(tungstenite::Error::Capacity(_)) = current.downcast_ref::<tungstenite::Error>()
        {
            return End::TooBig;
        }
        source = current.source();
    }
    End::Transport(err.to_string())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures::channel::mpsc;

    use super::*;

    /// A socket made of two channels, so a session can run under paused time.
    struct FakeSocket {
        incoming: mpsc::Receiver<Message>,
        outgoing: mpsc::Sender<Message>,
    }

    impl Stream for FakeSocket {
        type Item = Result<Message, mpsc::SendError>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_next_unpin(cx).map(|next| next.map(Ok))
        }
    }

    impl Sink<Message> for FakeSocket {
        type Error = mpsc::SendError;
        fn poll_ready(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outgoing.poll_ready(cx)
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.outgoing.start_send(item)
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outgoing).poll_flush(cx)
        }
        fn poll_close(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.outgoing).poll_close(cx)
        }
    }

    /// The client's ends of a fake socket.
    struct FakePeer {
        to_server: mpsc::Sender<Message>,
        from_server: mpsc::Receiver<Message>,
    }

    fn fake_socket() -> (FakeSocket, FakePeer) {
        let (to_server, incoming) = mpsc::channel(16);
        let (outgoing, from_server) = mpsc::channel(16);
        (
            FakeSocket { incoming, outgoing },
            FakePeer {
                to_server,
                from_server,
            },
        )
    }

    fn settings() -> Settings {
        Settings::from_config(&Config::defaults())
    }

    fn guest() -> DisplayName {
        DisplayName::parse("guest-0001").unwrap()
    }

    /// A hub and a committer over a store in a fresh SQLite file.
    async fn room() -> (Room, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::store::DatabaseUrl::new(format!(
            "sqlite://{}",
            dir.path().join("t.db").display()
        ));
        let store = crate::store::open(&url).await.unwrap();
        let hub = Hub::new(crate::hub::HubSettings::default());
        let settings = crate::commit::CommitSettings {
            max_batch: 16,
            window: Duration::ZERO,
        };
        let (committer, _task) =
            Committer::start(store, hub.clone(), settings, CancellationToken::new());
        let room = RoomName::general();
        committer.load_room(&room).await.unwrap();
        (
            Room {
                hub,
                committer,
                room,
            },
            dir,
        )
    }

    // The store is opened before time is paused: these tests send no messages, so the
    // paused clock never meets real I/O.
    #[tokio::test]
    async fn a_peer_that_never_answers_pings_is_dropped_after_the_pong_timeout() {
        let (place, _dir) = room().await;
        tokio::time::pause();
        let (socket, mut peer) = fake_socket();
        let started = Instant::now();
        let session = tokio::spawn(run(
            socket,
            place,
            UserId::generate(),
            guest(),
            settings(),
            CancellationToken::new(),
        ));

        let mut pings = 0;
        let close = loop {
            match peer.from_server.next().await {
                Some(Message::Ping(_)) => pings += 1,
                Some(Message::Close(frame)) => break frame,
                Some(_) => {}
                None => panic!("no close frame"),
            }
        };
        assert_eq!(close.map(|f| f.code), Some(close_code::GOING_AWAY));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(60) && waited < Duration::from_secs(91),
            "{waited:?}"
        );
        assert_eq!(
            pings, 1,
            "one ping at 30 s went unanswered; at 60 s the session gave up"
        );
        drop(peer.to_server);
        assert_eq!(session.await.unwrap(), End::Unresponsive);
    }

    #[tokio::test]
    async fn a_peer_that_answers_pings_stays_until_shutdown_and_gets_1012() {
        let (place, _dir) = room().await;
        tokio::time::pause();
        let (socket, mut peer) = fake_socket();
        let shutdown = CancellationToken::new();
        let session = tokio::spawn(run(
            socket,
            place,
            UserId::generate(),
            guest(),
            settings(),
            shutdown.clone(),
        ));

        let ten_minutes = Instant::now() + Duration::from_secs(615);
        let mut pings = 0;
        while let Ok(next) = tokio::time::timeout_at(ten_minutes, peer.from_server.next()).await {
            match next {
                Some(Message::Ping(payload)) => {
                    pings += 1;
                    peer.to_server.send(Message::Pong(payload)).await.unwrap();
                }
                Some(Message::Text(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(pings, 20, "a ping every 30 s for ten minutes");

        shutdown.cancel();
        let close = loop {
            if let Some(Message::Close(frame)) = peer.from_server.next().await {
                break frame;
            }
        };
        assert_eq!(close.map(|f| f.code), Some(close_code::SERVICE_RESTART));
        drop(peer.to_server);
        assert_eq!(session.await.unwrap(), End::Shutdown);
    }

    #[test]
    fn one_frame_is_sent_as_is_and_many_are_joined_in_order() {
        let shared = Utf8Bytes::from("<a/>".to_owned());
        let mut one = vec![shared.clone()];
        let joined = join_frames(&mut one);
        assert_eq!(joined.as_str().as_ptr(), shared.as_str().as_ptr());

        let mut many = vec![
            Utf8Bytes::from("<a/>"),
            Utf8Bytes::from("<b/>"),
            Utf8Bytes::from("<c/>"),
        ];
        assert_eq!(join_frames(&mut many).as_str(), "<a/><b/><c/>");
        assert!(many.is_empty());
    }

    #[test]
    fn every_end_that_can_carry_a_close_frame_has_the_documented_code() {
        let code = |end: End| end.close_frame().map(|frame| frame.code);
        assert_eq!(code(End::Shutdown), Some(1012));
        assert_eq!(code(End::Evicted), Some(1008));
        assert_eq!(code(End::Binary), Some(1003));
        assert_eq!(code(End::TooBig), Some(1009));
        assert_eq!(code(End::PeerClosed), None);
    }
}
