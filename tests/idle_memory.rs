//! What an idle WebSocket connection costs the server, in heap bytes, held to a budget.
//!
//! A binary of its own, because it counts every allocation of the process: its global
//! allocator (`cap`) keeps a running total of live bytes. The server runs in this process on port
//! 0 over a SQLite file; the clients are plain blocking `std` sockets, which allocate
//! nothing, so what grows while they connect and sit idle is the server's. Idle means what
//! the issue means: connected, in a room, presence on, nothing sent.
//!
//! Bytes counted here are what was asked of the allocator; RSS (measured with the load
//! tool, BENCHMARKS.md) adds the allocator's own overhead. The budget is set just above
//! today's figure so that a change that makes every idle connection bigger fails here, as
//! keeping hyper's finished connection task alive did (about 1.7 KB more per connection).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::time::Duration;

use cap::Cap;
use hubbub::{Config, Server};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Counts live heap bytes for the whole process (no limit is set).
#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// Live heap bytes now.
fn live() -> isize {
    ALLOCATOR.allocated() as isize
}

/// Connections held while measuring: enough that per-room and per-process costs (the
/// directory, maps growing in steps) are spread thin.
const CLIENTS: usize = 1000;

/// Heap bytes one idle connection may cost the server.
const BUDGET: isize = 1250;

/// Opens a WebSocket to `/ws` with a plain socket and reads the 101; nothing else.
fn connect(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    // The response head is small; read it byte by byte so nothing past it is taken.
    let mut head = [0u8; 1024];
    let mut len = 0;
    while !head[..len].ends_with(b"\r\n\r\n") {
        assert!(len < head.len(), "response head too long");
        assert_ne!(socket.read(&mut head[len..=len]).unwrap(), 0, "closed");
        len += 1;
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "not upgraded: {}",
        String::from_utf8_lossy(&head[..len])
    );
    socket
}

/// Live bytes once they stop moving (the hub's tick and the store settle).
async fn settled() -> isize {
    let mut last = live();
    loop {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let now = live();
        if (now - last).abs() < 16 * 1024 {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_costs_the_server_little_heap() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.database = format!("sqlite://{}", dir.path().join("idle.db").display())
        .parse()
        .unwrap();
    config.max_connections = CLIENTS as u32 + 10;
    config.max_connections_per_ip = CLIENTS as u32 + 10;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(config).await.unwrap();
    let hub = server.hub();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(server.serve(listener, shutdown.clone()));

    // The room is loaded and every per-process cost paid by a first connection.
    let first = tokio::task::spawn_blocking(move || connect(addr))
        .await
        .unwrap();
    let before = settled().await;
    let clients = tokio::task::spawn_blocking(move || {
        (0..CLIENTS).map(|_| connect(addr)).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    while hub.stats().connected < CLIENTS + 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = settled().await;
    let per_connection = (after - before) / CLIENTS as isize;
    println!("heap per idle connection: {per_connection} bytes ({CLIENTS} connections)");

    drop(clients);
    drop(first);
    shutdown.cancel();
    serving.await.unwrap().unwrap();
    assert!(
        per_connection <= BUDGET,
        "an idle connection costs the server {per_connection} heap bytes, over its budget \
         of {BUDGET}"
    );
}
