//! The load tool's WebSocket client: a raw TCP connection, the opening handshake
//! (RFC 6455 §4.1) and frames through [`hubbub_wire`].
//!
//! Why not tungstenite here: with a thousand clients reading every broadcast on one core,
//! the client side's own costs decide what the tool can measure. tungstenite zero-fills
//! its read buffer before every read (a quarter of this tool's CPU in a profile at 1,000
//! clients); this client reads into spare capacity and decodes in place.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::BytesMut;
use hubbub_wire::{self as wire, Decoder, Incoming, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;

/// Room reserved before each read.
const READ_CHUNK: usize = 16 * 1024;

/// The most a server's answer to the handshake may take.
const MAX_HANDSHAKE: usize = 16 * 1024;

/// Frames larger than this from the server end the connection.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The reading half of a client connection.
pub(super) struct Reader {
    half: OwnedReadHalf,
    buf: BytesMut,
    decoder: Decoder,
}

/// The writing half, shared by the sender and the reader (which answers pings).
pub(super) struct Writer {
    half: OwnedWriteHalf,
    /// Drives a fresh mask for every frame (RFC 6455 §5.3); seeded from the OS.
    mask_state: u64,
}

pub(super) type SharedWriter = Arc<Mutex<Writer>>;

impl Reader {
    /// The next whole message; `None` when the connection ended (or broke the protocol).
    pub(super) async fn next(&mut self) -> Option<Incoming> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(message)) => return Some(message),
                Ok(None) => {}
                Err(_) => return None,
            }
            self.buf.reserve(READ_CHUNK);
            match self.half.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

impl Writer {
    pub(super) async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        let frame = wire::client_frame(true, text.as_bytes(), self.next_mask());
        self.half.write_all(&frame).await
    }

    pub(super) async fn pong(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let frame = wire::client_pong(payload, self.next_mask());
        self.half.write_all(&frame).await
    }

    /// xorshift64*: unpredictable enough for masking, which only keeps proxies from
    /// mistaking frames for other traffic; it is not a secret.
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.mask_state = x;
        let bytes = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        [bytes[4], bytes[5], bytes[6], bytes[7]]
    }
}

/// Opens a WebSocket connection to `url` (`ws://host:port/path`) at `target`, from
/// `source` when given.
pub(super) async fn connect(
    url: &str,
    origin: &str,
    target: SocketAddr,
    source: Option<IpAddr>,
) -> Result<(Reader, SharedWriter), String> {
    let (host, path) = host_and_path(url)?;
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(source) = source {
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind {source}: {e}"))?;
    }
    let mut stream = socket
        .connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    let _ = stream.set_nodelay(true);

    let key = wire::client_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send handshake: {e}"))?;

    // Read the answer's head; anything after it is already the first frame.
    let mut buf = BytesMut::with_capacity(4096);
    let head_len = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HANDSHAKE {
            return Err("handshake answer too long".into());
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) => return Err("connection closed during the handshake".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read handshake: {e}")),
        }
    };
    let head = buf.split_to(head_len);
    check_answer(&String::from_utf8_lossy(&head), &key)?;

    let mut seed = [0_u8; 8];
    let _ = getrandom::fill(&mut seed);
    // xorshift must not start at zero.
    let mask_state = u64::from_le_bytes(seed) | 1;
    let (read, write) = stream.into_split();
    let reader = Reader {
        half: read,
        buf,
        decoder: Decoder::new(Role::Client, MAX_MESSAGE),
    };
    let writer = Arc::new(Mutex::new(Writer {
        half: write,
        mask_state,
    }));
    Ok((reader, writer))
}

/// `Host` and path of a `ws://` URL.
fn host_and_path(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: only ws:// URLs can be load-tested (no TLS)"))?;
    Ok(match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    })
}

/// The server must switch protocols and prove it read our key.
fn check_answer(head: &str, key: &str) -> Result<(), String> {
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("101") {
        return Err(format!("handshake refused: {status}"));
    }
    let expected = wire::accept_key(key.as_bytes());
    let accepted = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
        })
    });
    if accepted {
        Ok(())
    } else {
        Err("handshake answer has no matching Sec-WebSocket-Accept".into())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_path() {
        assert_eq!(
            host_and_path("ws://127.0.0.1:3000/rooms/general/ws"),
            Ok(("127.0.0.1:3000", "/rooms/general/ws"))
        );
        assert_eq!(host_and_path("ws://example.org"), Ok(("example.org", "/")));
        assert!(host_and_path("wss://example.org/ws").is_err());
    }

    #[test]
    fn an_answer_must_switch_protocols_with_the_right_accept_key() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check_answer(good, key), Ok(()));
        let wrong_key = good.replace("s3pP", "AAAA");
        assert!(check_answer(&wrong_key, key).is_err());
        let refused = "HTTP/1.1 403 Forbidden\r\n\r\n";
        assert!(check_answer(refused, key).unwrap_err().contains("403"));
    }
}
