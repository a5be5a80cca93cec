//! What comes in: the [`Decoder`] reassembles the peer's messages and refuses, with a
//! [`ProtocolError`] and its close code, whatever the RFC does not allow.

use bytes::{Buf, BytesMut};

use crate::{MAX_CONTROL_PAYLOAD, apply_mask, opcode};

/// The most buffer reserved at once for a frame still arriving.
const RESERVE_STEP: usize = 16 * 1024;

/// Which end of the connection decodes: a server requires masked frames, a client
/// refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// One whole message from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// The peer's close frame: its status code, if it sent one.
    Close(Option<u16>),
}

/// Why the peer's bytes are not an acceptable WebSocket stream. Each maps to the close
/// code the connection ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message of {0} bytes is over the limit")]
    TooBig(u64),
    #[error("client frames must be masked")]
    Unmasked,
    #[error("server frames must not be masked")]
    Masked,
    #[error("reserved bits set (no extension was negotiated)")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("control frame too long or fragmented")]
    BadControl,
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new message while a fragmented one is unfinished")]
    Interleaved,
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    #[error("malformed close frame")]
    BadClose,
}

impl ProtocolError {
    /// The close code that answers this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::TooBig(_) => 1009,
            ProtocolError::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// Reassembles messages from the peer's bytes.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message: usize,
    /// A fragmented message in progress: its opcode and what has arrived. Boxed, as
    /// fragments are rare and a decoder is held by every idle connection.
    partial: Option<Box<(u8, Vec<u8>)>>,
}

impl Decoder {
    pub fn new(role: Role, max_message: usize) -> Self {
        Self {
            role,
            max_message,
            partial: None,
        }
    }

    /// Takes the next whole message from the front of `buf`, if one is there. Control
    /// frames come out as soon as they arrive, even in the middle of a fragmented message.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            let Some((header, payload)) = self.next_frame(buf)? else {
                return Ok(None);
            };
            if let Some(message) = self.assemble(header, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// One frame's header and unmasked payload, once the whole frame is in `buf`.
    fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<(Header, BytesMut)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (first, second) = (buf[0], buf[1]);
        let header = Header {
            fin: first & 0x80 != 0,
            op: first & 0x0F,
        };
        if first & 0x70 != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let masked = second & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(ProtocolError::Unmasked),
            (Role::Client, true) => return Err(ProtocolError::Masked),
            _ => {}
        }
        let (len, mut at) = match second & 0x7F {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => {
                let mut len = [0; 8];
                len.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(len), 10)
            }
            126 | 127 => return Ok(None),
            short => (u64::from(short), 2),
        };
        let control = header.op & 0x8 != 0;
        if control && (len > MAX_CONTROL_PAYLOAD as u64 || !header.fin) {
            return Err(ProtocolError::BadControl);
        }
        // Checked against the header, before anything is buffered.
        let so_far = self
            .partial
            .as_ref()
            .map_or(0, |partial| partial.1.len() as u64);
        if !control && so_far.saturating_add(len) > self.max_message as u64 {
            return Err(ProtocolError::TooBig(so_far.saturating_add(len)));
        }
        let mask = if masked {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
            at += 4;
            Some(mask)
        } else {
            None
        };
        let len = len as usize; // bounded by max_message or by 125 above
        if buf.len() < at + len {
            // Grow with what arrives, not with what the header promises: a peer that
            // announces a large frame and sends it slowly (or never) costs little.
            buf.reserve((at + len - buf.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        buf.advance(at);
        let mut payload = buf.split_to(len);
        if let Some(mask) = mask {
            apply_mask(&mut payload, mask);
        }
        Ok(Some((header, payload)))
    }

    fn assemble(
        &mut self,
        header: Header,
        payload: BytesMut,
    ) -> Result<Option<Incoming>, ProtocolError> {
        match header.op {
            opcode::PING => Ok(Some(Incoming::Ping(payload.to_vec()))),
            opcode::PONG => Ok(Some(Incoming::Pong)),
            opcode::CLOSE => parse_close(&payload).map(|code| Some(Incoming::Close(code))),
            opcode::TEXT | opcode::BINARY => {
                if self.partial.is_some() {
                    return Err(ProtocolError::Interleaved);
                }
                if header.fin {
                    return finish(header.op, payload.to_vec()).map(Some);
                }
                self.partial = Some(Box::new((header.op, payload.to_vec())));
                Ok(None)
            }
            opcode::CONTINUATION => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                partial.1.extend_from_slice(&payload);
                if !header.fin {
                    return Ok(None);
                }
                match self.partial.take() {
                    Some(partial) => {
                        let (op, data) = *partial;
                        finish(op, data).map(Some)
                    }
                    None => Err(ProtocolError::UnexpectedContinuation),
                }
            }
            other => Err(ProtocolError::UnknownOpcode(other)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    op: u8,
}

fn finish(op: u8, data: Vec<u8>) -> Result<Incoming, ProtocolError> {
    if op == opcode::BINARY {
        return Ok(Incoming::Binary);
    }
    String::from_utf8(data)
        .map(Incoming::Text)
        .map_err(|_| ProtocolError::InvalidUtf8)
}

fn parse_close(payload: &[u8]) -> Result<Option<u16>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::BadClose),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid_code = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid_code || std::str::from_utf8(&payload[2..]).is_err() {
                return Err(ProtocolError::BadClose);
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Frame;
    use crate::frame::{client_close, client_frame, client_frame_with, put_header};

    pub(crate) const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    pub(crate) fn server() -> Decoder {
        Decoder::new(Role::Server, 1024)
    }

    pub(crate) fn decode_all(
        decoder: &mut Decoder,
        bytes: &[u8],
    ) -> Result<Vec<Incoming>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(message) = decoder.decode(&mut buf)? {
            out.push(message);
        }
        Ok(out)
    }

    #[test]
    fn a_masked_client_frame_is_unmasked() {
        let bytes = client_frame(true, "héllo".as_bytes(), MASK);
        assert_ne!(&bytes[6..], "héllo".as_bytes(), "masked on the wire");
        let decoded = decode_all(&mut server(), &bytes).unwrap();
        assert_eq!(decoded, [Incoming::Text("héllo".into())]);
    }

    #[test]
    fn a_frame_split_across_reads_waits_for_the_rest() {
        let bytes = client_frame(true, b"split me", MASK);
        let mut decoder = server();
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(decoder.decode(&mut buf), Ok(None), "cut at {cut}");
            buf.extend_from_slice(&bytes[cut..]);
            assert_eq!(
                decoder.decode(&mut buf),
                Ok(Some(Incoming::Text("split me".into())))
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn fragments_are_reassembled_with_a_ping_in_between() {
        let mut bytes = Vec::new();
        let mut first = client_frame(true, b"hel", MASK);
        first[0] &= 0x7F; // not FIN
        bytes.extend(first);
        bytes.extend(client_frame_with(opcode::PING, b"p", MASK));
        bytes.extend(client_frame_with(opcode::CONTINUATION, b"lo", MASK));
        let decoded = decode_all(&mut server(), &bytes).unwrap();
        assert_eq!(
            decoded,
            [
                Incoming::Ping(b"p".to_vec()),
                Incoming::Text("hello".into())
            ]
        );
    }

    #[test]
    fn hostile_frames_are_refused_with_the_right_close_code() {
        let unmasked = Frame::text("hi").bytes().to_vec();
        let mut reserved = client_frame(true, b"x", MASK);
        reserved[0] |= 0x40;
        let mut long_control = client_frame_with(opcode::PING, &[0; 126], MASK);
        long_control[0] |= 0x80;
        let mut fragmented_ping = client_frame_with(opcode::PING, b"x", MASK);
        fragmented_ping[0] &= 0x7F;
        let lone_continuation = client_frame_with(opcode::CONTINUATION, b"x", MASK);
        let unknown = client_frame_with(0x3, b"x", MASK);
        let bad_utf8 = client_frame(true, &[0xff, 0xfe], MASK);
        let one_byte_close = client_frame_with(opcode::CLOSE, &[3], MASK);
        let bad_close_code = client_close(999, MASK);
        let mut interleaved = client_frame(true, b"a", MASK);
        interleaved[0] &= 0x7F;
        interleaved.extend(client_frame(true, b"b", MASK));

        let cases: [(&[u8], ProtocolError, u16); 10] = [
            (&unmasked, ProtocolError::Unmasked, 1002),
            (&reserved, ProtocolError::ReservedBits, 1002),
            (&long_control, ProtocolError::BadControl, 1002),
            (&fragmented_ping, ProtocolError::BadControl, 1002),
            (
                &lone_continuation,
                ProtocolError::UnexpectedContinuation,
                1002,
            ),
            (&unknown, ProtocolError::UnknownOpcode(3), 1002),
            (&bad_utf8, ProtocolError::InvalidUtf8, 1007),
            (&one_byte_close, ProtocolError::BadClose, 1002),
            (&bad_close_code, ProtocolError::BadClose, 1002),
            (&interleaved, ProtocolError::Interleaved, 1002),
        ];
        for (bytes, expected, code) in cases {
            let err = decode_all(&mut server(), bytes).unwrap_err();
            assert_eq!(err, expected);
            assert_eq!(err.close_code(), code, "{expected}");
        }
        let err = decode_all(
            &mut Decoder::new(Role::Client, 1024),
            &client_frame(true, b"x", MASK),
        )
        .unwrap_err();
        assert_eq!(err, ProtocolError::Masked);
    }

    #[test]
    fn an_oversized_message_is_refused_from_its_header_alone() {
        // Only the header of a 1 GiB frame: refused before any payload arrives.
        let mut header = BytesMut::new();
        put_header(&mut header, opcode::TEXT, 1 << 30, Some(MASK));
        let mut decoder = server();
        assert_eq!(
            decoder.decode(&mut header),
            Err(ProtocolError::TooBig(1 << 30))
        );
        assert_eq!(ProtocolError::TooBig(1).close_code(), 1009);

        // Fragments that only add up to too much are refused too.
        let mut bytes = client_frame(true, &[b'a'; 600], MASK);
        bytes[0] &= 0x7F;
        bytes.extend(client_frame_with(opcode::CONTINUATION, &[b'b'; 600], MASK));
        assert_eq!(
            decode_all(&mut server(), &bytes),
            Err(ProtocolError::TooBig(1200))
        );
        // Exactly the limit is fine.
        let at_limit = client_frame(true, &[b'c'; 1024], MASK);
        assert_eq!(decode_all(&mut server(), &at_limit).unwrap().len(), 1);
    }

    #[test]
    fn a_promised_large_frame_reserves_only_a_step_at_a_time() {
        let mut decoder = Decoder::new(Role::Server, 1 << 20);
        let mut buf = BytesMut::new();
        put_header(&mut buf, opcode::TEXT, 1 << 20, Some(MASK));
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.capacity() <= 2 * RESERVE_STEP, "{}", buf.capacity());
    }
}
