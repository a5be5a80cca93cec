//! Who someone is across tabs and visits, and the hex that ids are written in.
//!
//! Ids are random bytes as lower-case hex; what reads one back ([`is_lower_hex`]) accepts
//! exactly what was written, so an id from a cookie or another node cannot carry anything
//! else into a page or a key.

use time::OffsetDateTime;

/// Who someone is across tabs, visits and restarts: 128 random bits, kept in their signed
/// cookie. Presence counts users, not connections, by this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // Without an OS random source, fall back to the clock: unique enough to tell
            // tabs apart, and the cookie is signed, so it cannot be forged either way.
            let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
            bytes = nanos.to_le_bytes();
        }
        Self(hex(&bytes))
    }

    /// Accepts exactly what [`UserId::generate`] makes.
    pub fn parse(raw: &str) -> Option<Self> {
        is_lower_hex(raw, 32).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Bytes as lower-case hex, two digits each (ids, keys).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        assert_eq!(UserId::parse(id.as_str()), Some(id));
        for junk in ["", "abc", &"g".repeat(32), &"A".repeat(32), &"a".repeat(33)] {
            assert_eq!(UserId::parse(junk), None, "{junk:?}");
        }
    }
}
