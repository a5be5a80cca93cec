//! The accept loop: each TCP connection is served by hyper's HTTP/1.1 server with
//! upgrades enabled, and watched for graceful shutdown.
//!
//! hubbub runs its own loop instead of `axum::serve` for one reason: axum's loop wraps every
//! connection in a type of its own, so an upgraded connection could not be turned back into
//! the `TcpStream` the WebSocket session writes to directly (`crate::outlet`). Here hyper
//! gets a `TokioIo<TcpStream>` and gives the same type back after a 101. Browsers speak
//! HTTP/1.1 to a plain-HTTP origin, so nothing is lost by not offering HTTP/2.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer;

use super::client::Peer;

/// Connections the kernel may hold for us before we accept them (capped by
/// `net.core.somaxconn`). The usual 128 overflows when thousands of clients reconnect at
/// once after a restart, and each overflow costs a client a one-second SYN retry.
const BACKLOG: u32 = 4096;

/// Listens on `addr` with a backlog sized for reconnect storms.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting and waits
/// for the HTTP requests in flight (upgraded connections are no longer HTTP's concern).
/// A connection that has not sent a whole request head within `header_timeout` is closed,
/// so clients trickling headers (or opening connections and sending nothing) cannot hold
/// file descriptors and tasks for long.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    header_timeout: Duration,
) -> io::Result<()> {
    let connections = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors or a connection reset before accept: wait a
                // moment rather than spin, and keep serving everyone else.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Every request on this connection knows its TCP peer (for the limits).
        let service = TowerToHyperService::new(Extension(Peer(peer)).layer(app.clone()));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    // Finish the request in flight, then close instead of keeping alive.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = served {
                tracing::debug!(error = %err, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}
