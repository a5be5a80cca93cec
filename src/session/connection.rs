//! The connection itself: the socket, its write side shared with the hub ([`Outlet`]), and
//! what has been read but not yet decoded; and the closing handshake.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hubbub_wire::{Decoder, Frame, Incoming, ProtocolError, Role};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{End, Settings};
use crate::outlet::{Offered, Outlet};

/// Room reserved in the read buffer before each read. Chat frames are small; a larger
/// frame takes several reads.
const READ_CHUNK: usize = 2048;

/// How long to wait for the peer's answer to our close frame before dropping the TCP
/// connection. Waiting avoids resetting a connection with data still unread on our side,
/// which could make the peer lose the close frame itself.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// The connection itself: the socket, its shared write side and what has been read.
pub(super) struct Connection {
    /// The write side, which owns the socket ([`Outlet::socket`]).
    pub(super) outlet: Arc<Outlet>,
    decoder: Decoder,
    /// Bytes read but not yet decoded; empty (and unallocated) between messages.
    pub(super) pending: BytesMut,
}

/// Lets go of the HTTP connection's task, which served the upgrade request and has ended.
///
/// Its last read of the socket left its waker in the socket's read slot, and a waker holds
/// its task's memory (hyper's connection task, about 1.7 KB) until it is taken out: by the
/// next readiness event, or by another waker put in its place. An idle WebSocket may see no
/// event for a whole ping interval, so every idle connection kept a dead task alive (5.57
/// against 3.84 KiB of RSS per connection at 19,000). Polling both slots once with a no-op
/// waker replaces the stale ones (a direction that is ready already keeps its old waker
/// until the next event in that direction).
fn release_http_task(socket: &TcpStream) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let _ = socket.poll_read_ready(&mut cx);
    let _ = socket.poll_write_ready(&mut cx);
}

/// The outlet's socket; an error only for an outlet made without one (tests of the hub).
fn socket_of(outlet: &Outlet) -> std::io::Result<&TcpStream> {
    outlet
        .socket()
        .ok_or_else(|| std::io::ErrorKind::NotConnected.into())
}

impl Connection {
    /// A connection over `socket`; `leftover` is what the HTTP layer read past the upgrade
    /// request, decoded first.
    pub(super) fn new(socket: TcpStream, leftover: &[u8], settings: &Settings) -> Self {
        release_http_task(&socket);
        Self {
            outlet: Arc::new(Outlet::new(socket, settings.send_queue)),
            decoder: Decoder::new(Role::Server, settings.max_frame_bytes),
            pending: BytesMut::from(leftover),
        }
    }

    /// Reads what the socket has. `Ok(false)` at the end of the stream.
    pub(super) fn read_available(&mut self) -> std::io::Result<bool> {
        self.pending.reserve(READ_CHUNK);
        match socket_of(&self.outlet)?.try_read_buf(&mut self.pending) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
            Err(err) => Err(err),
        }
    }

    /// The socket; an error only for an outlet made without one (tests of the hub).
    pub(super) fn socket(&self) -> std::io::Result<&TcpStream> {
        socket_of(&self.outlet)
    }

    pub(super) fn next_message(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        let next = self.decoder.decode(&mut self.pending);
        if self.pending.is_empty() {
            // Give the buffer back: an idle connection holds none.
            self.pending = BytesMut::new();
        }
        next
    }

    /// Queues or writes a frame for this connection alone.
    pub(super) fn send(&self, frame: &Frame) -> Result<(), End> {
        match self.outlet.offer(frame) {
            Offered::Written | Offered::Queued => Ok(()),
            Offered::Full => Err(End::Evicted),
            Offered::Closed => Err(End::Disconnected),
        }
    }
}

/// Ends the connection. When we close, we send our close frame, let the socket take it
/// and wait briefly for the peer's answer; when the peer closed, we answer with a close
/// frame and drop the connection (the server closes TCP first, RFC 6455 §7.1.1). At
/// shutdown all of it fits in the server's grace period.
pub(super) async fn close(conn: &mut Connection, end: &End, settings: &Settings) {
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
                    let Ok(socket) = conn.socket() else {
                        return false;
                    };
                    if socket.writable().await.is_err() {
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
            let Ok(socket) = conn.socket() else {
                return;
            };
            if socket.readable().await.is_err() {
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
