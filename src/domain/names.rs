//! The names people see: rooms' and people's, checked so that no name can break a page or
//! pass for another.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

use super::ids::{hex, is_lower_hex};

/// A room's name: 1 to 64 characters of `a-z 0-9 - _`, case-folded. Shared, not copied,
/// when cloned: every connection in a room holds the room's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl RoomName {
    pub const MAX_CHARS: usize = 64;

    /// The room everyone is in until they pick another.
    pub fn general() -> Self {
        Self(Arc::from("general"))
    }

    pub fn parse(raw: &str) -> Result<Self, RoomNameError> {
        let name = raw.to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_CHARS
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'));
        if valid {
            Ok(Self(name.into()))
        } else {
            Err(RoomNameError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("A room name is 1 to 64 characters of a-z, 0-9, '-' and '_'.")]
pub struct RoomNameError;

/// The name shown on someone's messages: 1 to 32 characters, trimmed, no control characters.
///
/// The field is open to the rest of `domain` for [`super::ChatMessage::from_row`] alone,
/// which shows a stored name as it is. Shared, not copied, when cloned: a connection and
/// its room's presence list hold the same name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(pub(super) Arc<str>);

impl DisplayName {
    pub const MAX_CHARS: usize = 32;

    /// A name read back from the store, shown as it is: it was parsed before it was
    /// stored, and it is escaped on output anyway.
    pub(crate) fn stored(name: String) -> Self {
        Self(name.into())
    }

    pub fn parse(raw: &str) -> Result<Self, DisplayNameError> {
        let name = raw.trim();
        let len = name.chars().count();
        if len == 0
            || len > Self::MAX_CHARS
            || name.chars().any(|c| c.is_control() || is_invisible(c))
        {
            return Err(DisplayNameError);
        }
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<GuestName> for DisplayName {
    fn from(guest: GuestName) -> Self {
        Self(guest.0.into())
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("A name is 1 to 32 characters, without control or invisible characters.")]
pub struct DisplayNameError;

/// Characters that change how a name looks without showing: direction overrides (which
/// could make "alice" of "ecila"), zero-width characters, the byte-order mark.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

impl DisplayName {
    /// A fresh guest name, until the user picks one.
    pub fn guest() -> Self {
        GuestName::generate().into()
    }
}

/// A guest's display name, `guest-` and four hex digits, kept in a cookie until real names
/// exist. Anything else found in the cookie is ignored and a new name is made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GuestName(String);

impl GuestName {
    const PREFIX: &'static str = "guest-";

    /// A fresh random guest name.
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 2];
        // The OS random source failing is not something a chat can recover from, but a
        // predictable name is harmless: fall back to the clock.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = OffsetDateTime::now_utc().nanosecond();
            bytes = [(nanos >> 8) as u8, nanos as u8];
        }
        Self(format!("{}{}", Self::PREFIX, hex(&bytes)))
    }

    /// Accepts exactly what [`GuestName::generate`] makes.
    pub fn parse(raw: &str) -> Option<Self> {
        let hex = raw.strip_prefix(Self::PREFIX)?;
        is_lower_hex(hex, 4).then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GuestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_case_folded_and_limited() {
        assert_eq!(
            RoomName::parse("Design-2_x").unwrap().as_str(),
            "design-2_x"
        );
        assert!(RoomName::parse(&"a".repeat(64)).is_ok());
        for bad in ["", " ", "a b", "a/b", "ä", "../x", "a.b", &"a".repeat(65)] {
            assert_eq!(RoomName::parse(bad), Err(RoomNameError), "{bad:?}");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_limited() {
        assert_eq!(DisplayName::parse("  alice ").unwrap().as_str(), "alice");
        assert!(DisplayName::parse(&"é".repeat(32)).is_ok());
        for bad in [
            "",
            "   ",
            "a\u{0}b",
            "tab\there",
            &"x".repeat(33),
            "\u{202E}ecila",
            "al\u{200B}ice",
        ] {
            assert_eq!(DisplayName::parse(bad), Err(DisplayNameError), "{bad:?}");
        }
    }

    #[test]
    fn guest_names_round_trip_and_junk_is_refused() {
        let name = GuestName::generate();
        assert_eq!(GuestName::parse(name.as_str()), Some(name));
        for junk in [
            "",
            "guest-",
            "guest-12345",
            "guest-ABCD",
            "admin",
            "guest-<b>1",
            "guest-12 3",
        ] {
            assert_eq!(GuestName::parse(junk), None, "{junk:?}");
        }
    }
}
