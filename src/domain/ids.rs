//! Who someone is across tabs and visits, and the hex that ids are written in.
//!
//! Ids are random bytes as lower-case hex; what reads one back ([`is_lower_hex`]) accepts
//! exactly what was written, so an id from a cookie or another node cannot carry anything
//! else into a page or a key.

use time::OffsetDateTime;

/// Who someone is across tabs, visits and restarts: 128 random bits, kept in their signed
/// cookie. Presence counts users, not connections, by this.
///
/// Kept as the bytes, not their hex: every member of a room, presence entry and typist
/// holds one, and 16 bytes in place cost less than a string on the heap (tens of bytes per
/// connection at 19,000 connections). Written and read as 32 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId([u8; 16]);

impl UserId {
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // Without an OS random source, fall back to the clock: unique enough to tell
            // tabs apart, and the cookie is signed, so it cannot be forged either way.
            let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
            bytes = nanos.to_le_bytes();
        }
        Self(bytes)
    }

    /// What pages show of a user: 16 hex digits of a hash of the id, the same on every
    /// node and after every restart. It tells a page which messages are its user's own (to
    /// offer "Edit" and "Delete" on them) without showing anyone the id itself; nothing
    /// is decided by it (the store checks the id).
    pub fn tag(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"hubbub author tag\0")
            .chain_update(self.0)
            .finalize();
        hex(&digest[..8])
    }

    /// What tells guests who share a name apart on a page: the first four digits of
    /// [`UserId::tag`], shown after the name ("guest #3fa2"). A claimed name is unique
    /// and is shown without one.
    pub fn guest_mark(&self) -> String {
        let mut tag = self.tag();
        tag.truncate(4);
        tag
    }

    /// Accepts exactly what [`UserId`]'s `Display` writes: 32 lower-case hex digits.
    pub fn parse(raw: &str) -> Option<Self> {
        if !is_lower_hex(raw, 32) {
            return None;
        }
        let mut bytes = [0_u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(raw.as_bytes().chunks_exact(2)) {
            *byte = (digit(pair[0]) << 4) | digit(pair[1]);
        }
        Some(Self(bytes))
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserId({self})")
    }
}

/// The value of one lower-case hex digit (checked by [`is_lower_hex`] first).
fn digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        _ => b - b'a' + 10,
    }
}

/// Bytes as lower-case hex, two digits each (ids, keys).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Whether `raw` is exactly `digits` lower-case hex digits, as [`hex`] writes them.
pub fn is_lower_hex(raw: &str, digits: usize) -> bool {
    raw.len() == digits && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_round_trip_and_junk_is_refused() {
        let id = UserId::generate();
        assert_eq!(UserId::parse(&id.to_string()), Some(id));
        let written = "00ff10a9".repeat(4);
        assert_eq!(
            UserId::parse(&written).map(|id| id.to_string()),
            Some(written)
        );
        // Hex order is byte order: sorted ids sort like their text.
        let (low, high) = (
            UserId::parse(&"0f".repeat(16)),
            UserId::parse(&"f0".repeat(16)),
        );
        assert!(low < high);
        for junk in ["", "abc", &"g".repeat(32), &"A".repeat(32), &"a".repeat(33)] {
            assert_eq!(UserId::parse(junk), None, "{junk:?}");
        }
    }
}
