//! What goes out: a [`Frame`] is built once and written to every socket as it is; the
//! masked frames are what a client sends (the load tool, and tests that play a browser).

use bytes::{BufMut, Bytes, BytesMut};

use crate::{MAX_CONTROL_PAYLOAD, apply_mask, opcode};

/// One complete frame as it goes on the wire: header and payload in one shared buffer.
/// Cloning it is a reference-count increment, so a broadcast frame is built once and
/// written to every socket as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// An unfragmented, unmasked text frame (server to client).
    pub fn text(payload: &str) -> Self {
        Self::unmasked(opcode::TEXT, payload.as_bytes())
    }

    /// One text frame holding several fragments back to back (htmx swaps each top-level
    /// element of a message), built with a single allocation.
    pub fn text_joined<'a>(parts: impl IntoIterator<Item = &'a str> + Clone) -> Self {
        let len: usize = parts.clone().into_iter().map(str::len).sum();
        let mut buf = BytesMut::with_capacity(header_len(len, false) + len);
        put_header(&mut buf, opcode::TEXT, len, None);
        for part in parts {
            buf.put_slice(part.as_bytes());
        }
        Self(buf.freeze())
    }

    /// A close frame with a status code and a reason (truncated to fit a control frame).
    pub fn close(code: u16, reason: &str) -> Self {
        let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(truncate_utf8(reason, MAX_CONTROL_PAYLOAD - 2).as_bytes());
        Self::unmasked(opcode::CLOSE, &payload)
    }

    /// A close frame without a status code (the answer to a close that had none).
    pub fn close_empty() -> Self {
        Self::unmasked(opcode::CLOSE, &[])
    }

    pub fn ping() -> Self {
        Self::unmasked(opcode::PING, &[])
    }

    /// The answer to a ping: the same payload back.
    pub fn pong(payload: &[u8]) -> Self {
        Self::unmasked(
            opcode::PONG,
            &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)],
        )
    }

    /// The bytes to write.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The payload of an unmasked frame built here (for tests and logs).
    pub fn payload(&self) -> &[u8] {
        unmasked_payload(&self.0)
    }

    fn unmasked(op: u8, payload: &[u8]) -> Self {
        let mut buf = BytesMut::with_capacity(header_len(payload.len(), false) + payload.len());
        put_header(&mut buf, op, payload.len(), None);
        buf.put_slice(payload);
        Self(buf.freeze())
    }
}

/// A masked frame, as a client sends it.
pub fn client_frame(text: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let op = if text { opcode::TEXT } else { opcode::BINARY };
    client_frame_with(op, payload, mask)
}

/// A masked close frame, as a client sends it.
pub fn client_close(code: u16, mask: [u8; 4]) -> Vec<u8> {
    client_frame_with(opcode::CLOSE, &code.to_be_bytes(), mask)
}

/// A masked pong, as a client answers a ping.
pub fn client_pong(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    client_frame_with(opcode::PONG, payload, mask)
}

pub(crate) fn client_frame_with(op: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(header_len(payload.len(), true) + payload.len());
    put_header(&mut buf, op, payload.len(), Some(mask));
    let start = buf.len();
    buf.put_slice(payload);
    apply_mask(&mut buf[start..], mask);
    buf.to_vec()
}

fn header_len(payload: usize, masked: bool) -> usize {
    let extended = match payload {
        0..=125 => 0,
        126..=0xFFFF => 2,
        _ => 8,
    };
    2 + extended + if masked { 4 } else { 0 }
}

pub(crate) fn put_header(buf: &mut BytesMut, op: u8, len: usize, mask: Option<[u8; 4]>) {
    buf.put_u8(0x80 | op); // FIN, no reserved bits
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => buf.put_u8(mask_bit | len as u8),
        126..=0xFFFF => {
            buf.put_u8(mask_bit | 126);
            buf.put_u16(len as u16);
        }
        _ => {
            buf.put_u8(mask_bit | 127);
            buf.put_u64(len as u64);
        }
    }
    if let Some(mask) = mask {
        buf.put_slice(&mask);
    }
}

/// The payload of one whole unmasked frame (as built by [`Frame`]).
pub fn unmasked_payload(frame: &[u8]) -> &[u8] {
    let header = frame.len() - payload_len_of(frame);
    &frame[header..]
}

/// The payload length written in an unmasked frame's header.
fn payload_len_of(frame: &[u8]) -> usize {
    match frame[1] & 0x7F {
        126 => u16::from_be_bytes([frame[2], frame[3]]) as usize,
        127 => {
            let mut len = [0; 8];
            len.copy_from_slice(&frame[2..10]);
            u64::from_be_bytes(len) as usize
        }
        short => short as usize,
    }
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::{MASK, decode_all, server};
    use crate::{Decoder, Incoming, Role};

    #[test]
    fn frames_use_the_shortest_length_encoding() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let text = "x".repeat(len);
            let frame = Frame::text(&text);
            assert_eq!(frame.bytes().len(), header + len, "payload {len}");
            assert_eq!(frame.bytes()[0], 0x81, "FIN + text");
            assert_eq!(frame.payload(), text.as_bytes());
            // A client decodes exactly what was framed.
            let mut client = Decoder::new(Role::Client, 1 << 20);
            let decoded = decode_all(&mut client, frame.bytes()).unwrap();
            assert_eq!(decoded, [Incoming::Text(text)]);
        }
    }

    #[test]
    fn joined_fragments_make_one_frame_in_order() {
        let frame = Frame::text_joined(["<a/>", "", "<b/>"]);
        assert_eq!(frame.payload(), b"<a/><b/>");
        assert_eq!(frame.bytes().len(), 2 + 8);
    }

    #[test]
    fn close_frames_carry_their_code_and_a_truncated_reason() {
        let close = Frame::close(1012, &"é".repeat(200));
        let payload = close.payload();
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        assert_eq!(&payload[..2], &1012u16.to_be_bytes());
        assert!(
            std::str::from_utf8(&payload[2..]).is_ok(),
            "cut on a char boundary"
        );
        let mut client = Decoder::new(Role::Client, 1024);
        assert_eq!(
            decode_all(&mut client, close.bytes()).unwrap(),
            [Incoming::Close(Some(1012))]
        );
        assert_eq!(
            decode_all(&mut server(), &client_close(1000, MASK)).unwrap(),
            [Incoming::Close(Some(1000))]
        );
        assert_eq!(
            decode_all(&mut client, Frame::close_empty().bytes()).unwrap(),
            [Incoming::Close(None)]
        );
    }
}
