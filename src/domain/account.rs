//! Claimed names: the key that makes a name someone's, the password that proves it, and
//! the session token a signed-in browser carries.
//!
//! A name is claimed by its [`NameKey`], not its spelling: "Alice", "ALICE" and "Аlice"
//! (with a Cyrillic А) are one key, so nobody can post as a look-alike of a claimed name.
//! A session token is 256 random bits; only its SHA-256 digest is stored, so a copy of the
//! database signs nobody in.

use std::fmt;
use std::num::NonZeroU64;

use sha2::{Digest, Sha256};

use super::ids::{UserId, hex, is_lower_hex};
use super::names::DisplayName;

/// What makes two names the same name, in two forms, because case and look-alikes do not
/// compose: the confusable skeleton (UTS #39) maps a capital I to l, so "ALICE" and
/// "alice" have different skeletons, while case-folding alone keeps "AIice" (capital i)
/// apart from "alice".
///
/// Spaces do not count ("Ada Lovelace" is "AdaLovelace", as a mention names her).
///
/// - [`NameKey::as_str`] is the skeleton of the name case-folded: what signing in looks a
///   name up by ("ALICE", "alice" and "\u{430}lice", with a Cyrillic а, are one).
/// - [`NameKey::look`] is the skeleton case-folded: "AIice" and "alice" are one.
///
/// Two names are one when either form is the same; the store keeps both unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NameKey {
    folded: String,
    look: String,
}

impl NameKey {
    pub fn of(name: &DisplayName) -> Self {
        use unicode_security::skeleton;
        // Without its spaces, as a mention names it (`super::mentions::mention_key`):
        // "AdaLovelace" is "Ada Lovelace", or a guest could take her mentions.
        let compact: String = name
            .as_str()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let folded = skeleton(&compact.to_lowercase()).collect();
        let look = skeleton(&compact).collect::<String>().to_lowercase();
        Self { folded, look }
    }

    pub fn as_str(&self) -> &str {
        &self.folded
    }

    pub fn look(&self) -> &str {
        &self.look
    }

    /// Whether two names are one.
    pub fn same(&self, other: &Self) -> bool {
        self.folded == other.folded || self.look == other.look
    }
}

/// A password as typed: 8 to 1,024 characters. Nothing else is asked of it (NIST SP
/// 800-63B): length is what makes a password hard to guess, and the cap only keeps a
/// megabyte of "password" from reaching the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, PasswordError> {
        let len = raw.chars().count();
        if len < Self::MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        if len > Self::MAX_CHARS {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Never printed, not even in debug output.
impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("A password is at least 8 characters.")]
    TooShort,
    #[error("A password is at most 1,024 characters.")]
    TooLong,
}

/// What a signed-in browser carries (in its signed cookie): 32 random bytes as hex.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken([u8; 32]);

impl SessionToken {
    /// A fresh token, or `None` when the OS has no random numbers to give (no session is
    /// better than a guessable one).
    pub fn generate() -> Option<Self> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// Accepts exactly what `Display` writes: 64 lower-case hex digits.
    pub fn parse(raw: &str) -> Option<Self> {
        if !is_lower_hex(raw, 64) {
            return None;
        }
        let mut bytes = [0_u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(raw.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// What the store keeps and looks the token up by.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest(hex(&Sha256::digest(self.0)))
    }

    /// What open sockets are known by, on every node, so that signing this session out
    /// closes them: 64 bits of a hash of the token, made apart from the digest (so it
    /// says nothing about the stored row, and nothing about the token).
    pub fn tag(&self) -> SessionTag {
        let digest = Sha256::new()
            .chain_update(b"hubbub session tag\0")
            .chain_update(self.0)
            .finalize();
        let mut bytes = [0_u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        // Zero is left out so that an absent tag costs no room (`Option<SessionTag>`).
        SessionTag(NonZeroU64::new(u64::from_le_bytes(bytes)).unwrap_or(NonZeroU64::MIN))
    }
}

/// One signed-in browser's session, as open sockets and the other nodes know it
/// ([`SessionToken::tag`]): it signs nobody in. Written as 16 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionTag(NonZeroU64);

impl SessionTag {
    /// Accepts exactly what `Display` writes.
    pub fn parse(raw: &str) -> Option<Self> {
        if !is_lower_hex(raw, 16) {
            return None;
        }
        u64::from_str_radix(raw, 16)
            .ok()
            .and_then(NonZeroU64::new)
            .map(Self)
    }
}

impl fmt::Display for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Sessions that ended while sockets may still be open under them, on any node: those
/// sockets close, and their pages start again as whoever the browser is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignOut {
    /// One browser signed out.
    One { user: UserId, tag: SessionTag },
    /// Every session of the account but `keep` (signed out everywhere: none; a password
    /// change keeps the browser that made it).
    All {
        user: UserId,
        keep: Option<SessionTag>,
    },
}

impl SignOut {
    pub fn user(&self) -> &UserId {
        match self {
            Self::One { user, .. } | Self::All { user, .. } => user,
        }
    }

    /// Whether a socket of this signed-in session is to close.
    pub fn ends(&self, user: &UserId, tag: SessionTag) -> bool {
        match self {
            Self::One {
                user: who,
                tag: which,
            } => who == user && *which == tag,
            Self::All { user: who, keep } => who == user && *keep != Some(tag),
        }
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Never printed whole: a token in a log would sign its reader in.
impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(…)")
    }
}

/// The SHA-256 of a [`SessionToken`], as 64 hex digits: a token's row in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDigest(String);

impl TokenDigest {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A claimed name and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user id the name was claimed with: the guest's own, so the messages they wrote
    /// before stay theirs to edit.
    pub id: UserId,
    pub name: DisplayName,
    /// May delete any message and ban (`hubbub admin grant NAME`).
    pub moderator: bool,
}

/// A user who may no longer post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub user: UserId,
    /// Their name when banned, for the list.
    pub name: String,
    /// The moderator who banned them.
    pub by: String,
    pub at: time::OffsetDateTime,
}

/// An account and the hash of its password, as the store keeps them.
#[derive(Clone)]
pub struct StoredAccount {
    pub account: Account,
    /// A PHC string (`$argon2id$v=19$m=…`), parameters included.
    pub password_hash: String,
}

/// The hash is left out: debug output goes to logs.
impl fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAccount")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_tag_round_trips_and_tells_nothing_of_the_digest() {
        let token = SessionToken::generate().unwrap();
        let tag = token.tag();
        assert_eq!(SessionTag::parse(&tag.to_string()), Some(tag));
        assert_eq!(tag, SessionToken::parse(&token.to_string()).unwrap().tag());
        assert!(!token.digest().as_str().contains(&tag.to_string()));
        for bad in [
            "",
            "0000000000000000",
            "ABCDEF0123456789",
            "abc",
            "g123456789abcdef",
        ] {
            assert_eq!(SessionTag::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_sign_out_ends_what_it_names() {
        let (alice, bob) = (UserId::generate(), UserId::generate());
        let here = SessionToken::generate().unwrap().tag();
        let there = SessionToken::generate().unwrap().tag();
        let one = SignOut::One {
            user: alice.clone(),
            tag: here,
        };
        assert!(one.ends(&alice, here));
        assert!(!one.ends(&alice, there));
        assert!(!one.ends(&bob, here));
        let all_but = SignOut::All {
            user: alice.clone(),
            keep: Some(here),
        };
        assert!(!all_but.ends(&alice, here));
        assert!(all_but.ends(&alice, there));
        assert!(!all_but.ends(&bob, there));
        let all = SignOut::All {
            user: alice.clone(),
            keep: None,
        };
        assert!(all.ends(&alice, here) && all.ends(&alice, there));
    }

    fn key(name: &str) -> NameKey {
        NameKey::of(&DisplayName::parse(name).unwrap())
    }

    #[test]
    fn look_alike_names_are_one_name() {
        let alice = key("alice");
        for same in [
            "Alice",
            "ALICE",
            "AIice",
            "\u{0430}lice",
            "\u{0410}LICE",
            "al\u{0456}ce",
        ] {
            assert!(alice.same(&key(same)), "{same:?}");
        }
        assert_eq!(alice.as_str(), key("ALICE").as_str(), "signs in as alice");
        assert!(key("paypal").same(&key("p\u{0430}yp\u{0430}l")));
        assert!(key("bob").same(&key("b\u{043E}b")), "Cyrillic o");
        assert!(key("rn").same(&key("m")), "r and n side by side");
        assert!(
            key("Ada Lovelace").same(&key("AdaLovelace")),
            "as a mention names her"
        );
        assert!(key("a lice").same(&alice));
        for other in ["alicia", "bob", "alice2"] {
            assert!(!alice.same(&key(other)), "{other:?}");
        }
    }

    #[test]
    fn passwords_are_limited_by_length_only() {
        assert_eq!(Password::parse("short"), Err(PasswordError::TooShort));
        assert_eq!(Password::parse("1234567"), Err(PasswordError::TooShort));
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse("ünïcödé pass phrase").is_ok());
        assert!(Password::parse(&"x".repeat(1024)).is_ok());
        assert_eq!(
            Password::parse(&"x".repeat(1025)),
            Err(PasswordError::TooLong)
        );
        assert_eq!(
            format!("{:?}", Password::parse("secret123").unwrap()),
            "Password(…)"
        );
    }

    #[test]
    fn tokens_round_trip_and_junk_is_refused() {
        let token = SessionToken::generate().unwrap();
        let text = token.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(SessionToken::parse(&text), Some(token.clone()));
        assert_eq!(SessionToken::parse(&text).unwrap().digest(), token.digest());
        assert_ne!(token.digest().as_str(), text, "the digest is not the token");
        for junk in [
            "",
            "00",
            &text.to_uppercase(),
            &format!("{text}0"),
            &"g".repeat(64),
        ] {
            assert_eq!(SessionToken::parse(junk), None, "{junk:?}");
        }
        assert!(!format!("{token:?}").contains(&text[..8]));
    }
}
