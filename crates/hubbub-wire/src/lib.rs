//! WebSocket framing (RFC 6455), only as much as a chat needs, shaped for fan-out.
//!
//! Why not tungstenite on the server: it formats every outgoing message into a
//! per-connection buffer that keeps the capacity of the largest frame ever sent, and it
//! zero-fills its read buffer before each read. A broadcast to 10,000 sockets would then be
//! framed 10,000 times and every idle connection would hold two buffers. Here a message
//! is framed **once** into a [`Frame`] (shared bytes: header and payload together) and the
//! same bytes are written to every socket; reading needs no buffer while a connection is
//! idle (see hubbub's `session` module).
//!
//! The [`Decoder`] checks everything the RFC asks of a server: frames from clients must be
//! masked, reserved bits clear, control frames short and unfragmented, text valid UTF-8,
//! and no message larger than the configured limit (checked against the header, before
//! any payload is buffered). The load tool (`hubbub-load`) uses the same crate as a client
//! ([`Role::Client`]): it sends masked frames and expects unmasked ones.
//!
//! - `frame`: what goes out: [`Frame`] (server to client) and the masked client frames.
//! - `decode`: what comes in: the [`Decoder`] and the [`ProtocolError`]s it refuses with.
//!
//! It is a crate of its own so that the server and the load tool share one codec without
//! the load tool depending on the server.

mod decode;
mod frame;

pub use self::decode::{Decoder, Incoming, ProtocolError, Role};
pub use self::frame::{Frame, client_close, client_frame, client_pong, unmasked_payload};

/// Frame opcodes (RFC 6455 §5.2).
pub(crate) mod opcode {
    pub(crate) const CONTINUATION: u8 = 0x0;
    pub(crate) const TEXT: u8 = 0x1;
    pub(crate) const BINARY: u8 = 0x2;
    pub(crate) const CLOSE: u8 = 0x8;
    pub(crate) const PING: u8 = 0x9;
    pub(crate) const PONG: u8 = 0xA;
}

/// Control frames carry at most this many payload bytes (§5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key` (§4.2.2).
pub fn accept_key(client_key: &[u8]) -> String {
    tungstenite::handshake::derive_accept_key(client_key)
}

/// A fresh `Sec-WebSocket-Key` for a client's opening handshake (§4.1).
pub fn client_key() -> String {
    tungstenite::handshake::client::generate_key()
}

pub(crate) fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_matches_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn client_keys_are_fresh_base64_nonces() {
        let (a, b) = (client_key(), client_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24, "16 bytes in base64: {a}");
    }
}
