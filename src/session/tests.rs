//! Sessions on real loopback connections, against a hub and a committer over a fresh
//! SQLite file: keep-alive, shutdown, early bytes, closes, bursts and trickles.

use bytes::BytesMut;
use hubbub_wire::{Decoder, Incoming, Role};
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

/// The server's settings, with room for the tests' bursts of posts.
fn settings() -> Settings {
    Settings {
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
            read_only: false,
            unread: None,
            anonymous: false,
            address: None,
            sign_in: None,
        },
        dir,
    )
}

/// A session on a real loopback connection, in a room of its own.
async fn start(
    leftover: Bytes,
    shutdown: CancellationToken,
) -> (tokio::task::JoinHandle<End>, Peer, tempfile::TempDir) {
    start_with(leftover, shutdown, true).await
}

/// [`start`]; without `tell_members`, shutdown only cancels the token (nothing tells the
/// hub's members to end).
async fn start_with(
    leftover: Bytes,
    shutdown: CancellationToken,
    tell_members: bool,
) -> (tokio::task::JoinHandle<End>, Peer, tempfile::TempDir) {
    let (place, dir) = room().await;
    let (socket, peer) = connected().await;
    // Keep-alive as the server runs it: a ping every 100 ms, 300 ms of silence ends.
    tokio::spawn(place.hub.clone().keep_alive(
        Duration::from_millis(100),
        Duration::from_millis(300),
        shutdown.clone(),
    ));
    // Shutdown as the server does it: the token, then every member told to end.
    let (hub, token) = (place.hub.clone(), shutdown.clone());
    if tell_members {
        tokio::spawn(async move {
            token.cancelled().await;
            hub.end_all_sessions();
        });
    }
    let session = tokio::spawn(run(
        socket,
        leftover,
        place,
        UserId::generate(),
        guest(),
        Arc::new(settings()),
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

/// Reads up to the close frame, which must be 1012, answers it, and checks the session
/// ended for shutdown.
async fn closed_for_shutdown(session: tokio::task::JoinHandle<End>, peer: &mut Peer) {
    let closing = async {
        loop {
            match peer.next().await {
                Some(Incoming::Close(code)) => break code,
                Some(_) => {}
                None => panic!("no close frame"),
            }
        }
    };
    let Ok(close) = tokio::time::timeout(Duration::from_secs(5), closing).await else {
        panic!("the session was not closed within 5 s of shutdown");
    };
    assert_eq!(close, Some(close_code::SERVICE_RESTART));
    peer.send(&hubbub_wire::client_close(1000, [9, 9, 9, 9]))
        .await;
    assert_eq!(session.await.unwrap(), End::Shutdown);
}

/// Shutdown tells every member to end; a socket that joins just after that was told
/// nothing, and must see the token itself.
#[tokio::test]
async fn a_socket_that_joins_after_shutdown_began_gets_1012_at_once() {
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    // Nobody tells the members: only the session's own look at the token can end it.
    let (session, mut peer, _dir) = start_with(Bytes::new(), shutdown, false).await;
    closed_for_shutdown(session, &mut peer).await;
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
                peer.send(&hubbub_wire::client_pong(&payload, [1, 2, 3, 4]))
                    .await;
            }
            Some(Incoming::Text(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 6, "a ping every 100 ms ({pings})");

    shutdown.cancel();
    closed_for_shutdown(session, &mut peer).await;
}

#[tokio::test]
async fn bytes_read_past_the_upgrade_are_handled_first() {
    // A message that arrived with the upgrade request, before the session began.
    let leftover = hubbub_wire::client_frame(true, br#"{"text":"early bird"}"#, [7, 7, 7, 7]);
    let (session, mut peer, _dir) = start(Bytes::from(leftover), CancellationToken::new()).await;
    let posted = loop {
        match peer.next().await {
            Some(Incoming::Text(text)) if text.contains("early bird") => break text,
            Some(_) => {}
            None => panic!("the early message never came back"),
        }
    };
    assert!(posted.contains("guest-0001"), "{posted}");
    peer.send(&hubbub_wire::client_close(1000, [1, 1, 1, 1]))
        .await;
    assert_eq!(session.await.unwrap(), End::PeerClosed(Some(1000)));
}

#[tokio::test]
async fn a_client_close_is_answered_with_the_same_code() {
    let (session, mut peer, _dir) = start(Bytes::new(), CancellationToken::new()).await;
    assert!(matches!(peer.next().await, Some(Incoming::Text(_))));
    peer.send(&hubbub_wire::client_close(4000, [3, 1, 4, 1]))
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
        burst.extend(hubbub_wire::client_frame(
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
    peer.send(&hubbub_wire::client_close(1000, [1, 1, 1, 1]))
        .await;
    assert_eq!(session.await.unwrap(), End::PeerClosed(Some(1000)));
}

#[tokio::test]
async fn trickling_a_frame_that_never_ends_does_not_keep_a_connection_alive() {
    let (session, mut peer, _dir) = start(Bytes::new(), CancellationToken::new()).await;
    assert!(matches!(peer.next().await, Some(Incoming::Text(_))));
    // The header of a 1,000-byte text frame, then one byte every 50 ms.
    let frame = hubbub_wire::client_frame(true, &[b'x'; 1000], [1, 2, 3, 4]);
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

/// What one idle connection's parts weigh in place (issue 16's breakdown, in
/// BENCHMARKS.md): printed with `cargo test --lib idle_connection_parts -- --nocapture`.
/// The serving task's future is allocated once per connection for its whole life,
/// whatever state it is in, so it is held to a budget here.
#[tokio::test]
async fn idle_connection_parts() {
    let (place, _dir) = room().await;
    let (socket, _peer) = connected().await;
    let settings = Arc::new(settings());
    let shutdown = CancellationToken::new();
    let who = (UserId::generate(), guest());
    let opening = super::open(socket, Bytes::new(), place, who, settings, &shutdown);
    let opening_size = std::mem::size_of_val(&opening);
    let Ok(joined) = opening.await else {
        panic!("not joined");
    };
    let mut joined = joined;
    let serve_size = std::mem::size_of_val(&joined.0.serve());
    let future = joined.run(());
    let sizes = [
        ("Session::serve future", serve_size),
        ("Event", std::mem::size_of::<super::Event>()),
        ("End", std::mem::size_of::<End>()),
        ("Joined::run future", std::mem::size_of_val(&future)),
        ("session::open future", opening_size),
        ("Session", std::mem::size_of::<super::Session>()),
        (
            "Connection",
            std::mem::size_of::<super::connection::Connection>(),
        ),
        ("Limits", std::mem::size_of::<super::limits::Limits>()),
        ("Commits", std::mem::size_of::<super::commits::Commits>()),
        ("Hub", std::mem::size_of::<crate::hub::Hub>()),
        ("Committer", std::mem::size_of::<crate::commit::Committer>()),
        ("RoomName", std::mem::size_of::<crate::domain::RoomName>()),
        ("UserId", std::mem::size_of::<UserId>()),
        (
            "DisplayName",
            std::mem::size_of::<crate::domain::DisplayName>(),
        ),
        ("Decoder", std::mem::size_of::<hubbub_wire::Decoder>()),
        ("Room", std::mem::size_of::<super::Room>()),
        ("Outlet", std::mem::size_of::<crate::outlet::Outlet>()),
        ("TcpStream", std::mem::size_of::<tokio::net::TcpStream>()),
        (
            "Sleep (write timeout)",
            std::mem::size_of::<tokio::time::Sleep>(),
        ),
    ];
    for (what, bytes) in sizes {
        println!("{what:>28}: {bytes:>5} bytes");
    }
    drop(future);
    // tokio rounds a task to 128 bytes with its header: past 512 here, every open
    // connection's task grows by a step (`tests/idle_memory.rs` counts the whole).
    assert!(
        sizes[3].1 <= 512,
        "the serving task's future grew past its budget: {} bytes",
        sizes[3].1
    );
}

/// A peer that keeps sending but stops reading: once the socket has taken nothing for
/// the write timeout, the session ends, even though the peer is far from silent.
#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_after_the_write_timeout() {
    // Small kernel buffers on both sides (the accepted socket inherits the listener's),
    // so a few hundred messages back up.
    let listening = tokio::net::TcpSocket::new_v4().unwrap();
    listening.set_send_buffer_size(4096).unwrap();
    listening.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = listening.listen(8).unwrap();
    let connecting = tokio::net::TcpSocket::new_v4().unwrap();
    connecting.set_recv_buffer_size(4096).unwrap();
    let client = connecting
        .connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let mut peer = Peer {
        stream: client,
        decoder: Decoder::new(Role::Client, 1 << 20),
        buf: BytesMut::new(),
    };
    let (place, _dir) = room().await;
    let settings = Settings {
        write_timeout: Duration::from_millis(300),
        send_queue: 1_000_000,
        message_quota: per_second(100_000, 100_000),
        ..settings()
    };
    let started = Instant::now();
    let session = tokio::spawn(run(
        server,
        Bytes::new(),
        place,
        UserId::generate(),
        guest(),
        Arc::new(settings),
        CancellationToken::new(),
    ));
    assert!(matches!(peer.next().await, Some(Incoming::Text(_))));
    // Posts whose broadcasts come back to this same peer, which reads none of them.
    let json = format!(r#"{{"text":"{}"}}"#, "x".repeat(1000));
    let post = hubbub_wire::client_frame(true, json.as_bytes(), [5, 6, 7, 8]);
    while !session.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still open after 20 s"
        );
        // The peer's own send buffer may fill too: a write that cannot finish is fine.
        let _ = tokio::time::timeout(Duration::from_millis(20), peer.send(&post)).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(session.await.unwrap(), End::WriteTimeout);
}
