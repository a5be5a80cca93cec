//! `@name` in a message: who it names, the same way wherever it is read.
//!
//! A mention is `@` (at the start or after a character that is not a letter, digit or
//! `_`, so `me@example.com` is no mention) followed by letters, digits, `-`, `_` and `.`;
//! a final `.`, `-` or `_` is punctuation. It names everyone whose display name, without
//! its spaces and case-folded, is the same ([`mention_key`]): "@ada" reaches "Ada", and
//! "@AdaLovelace" reaches "Ada Lovelace". Matching is exact, not by look-alike: a mention
//! is a convenience for the reader, not a claim.

use std::ops::Range;

/// What a reader is notified of in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Notify {
    /// Every message.
    All,
    /// Messages that mention them (the default).
    #[default]
    Mentions,
    /// Nothing.
    None,
}

impl Notify {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "all" => Some(Self::All),
            "mentions" => Some(Self::Mentions),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Mentions => "mentions",
            Self::None => "none",
        }
    }
}

/// Mentions counted in one message at most (more are text).
pub const MAX_MENTIONS: usize = 20;

/// What a name is mentioned by: without whitespace, lower-cased.
pub fn mention_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Each mention in a piece of text: where it is (`@` included) and its key. Text only:
/// the caller leaves out code.
pub fn scan(text: &str) -> Vec<(Range<usize>, String)> {
    let mut found = Vec::new();
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let starts = c == '@' && !previous.is_some_and(|p| p.is_alphanumeric() || p == '_');
        previous = Some(c);
        if !starts {
            continue;
        }
        let name_start = at + 1;
        let mut end = name_start;
        while let Some(&(i, next)) = chars.peek() {
            if !is_name_char(next) {
                break;
            }
            end = i + next.len_utf8();
            previous = Some(next);
            chars.next();
        }
        let name = text[name_start..end].trim_end_matches(['.', '-', '_']);
        if name.is_empty() || name.chars().count() > 32 {
            continue;
        }
        found.push((at..name_start + name.len(), mention_key(name)));
        if found.len() == MAX_MENTIONS {
            break;
        }
    }
    found
}

/// The keys a message's text mentions, each once, leaving out code (`` `spans` `` and
/// fenced blocks): what the store records and whom the hub tells.
pub fn mentions(text: &str) -> Vec<String> {
    if !text.contains('@') {
        return Vec::new();
    }
    let mut keys: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Outside backtick spans: the even pieces of a split on backticks.
        for (i, piece) in line.split('`').enumerate() {
            if i % 2 == 1 {
                continue;
            }
            for (_, key) in scan(piece) {
                if !keys.contains(&key) && keys.len() < MAX_MENTIONS {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_where_a_reader_sees_them() {
        assert_eq!(mentions("hi @Ada, and @bob."), ["ada", "bob"]);
        assert_eq!(mentions("@ada @ADA @Ada"), ["ada"], "once each");
        assert_eq!(mentions("mail me@example.com"), Vec::<String>::new());
        assert_eq!(mentions("@ @. @_ (@zoë)"), ["zoë"]);
        assert_eq!(mentions("`@code` and @text"), ["text"]);
        assert_eq!(mentions("```\n@fenced\n```\n@after"), ["after"]);
        assert_eq!(mentions("@guest-7f3a: hi"), ["guest-7f3a"]);
        assert_eq!(mentions(&"@x ".repeat(30)), ["x"]);
        let many: String = (0..30).map(|i| format!("@u{i} ")).collect();
        assert_eq!(mentions(&many).len(), MAX_MENTIONS);
        assert_eq!(
            mentions(&format!("@{}", "a".repeat(33))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_name_is_mentioned_without_its_spaces_or_case() {
        assert_eq!(mention_key("Ada Lovelace"), "adalovelace");
        assert_eq!(mention_key("ZOË"), "zoë");
        let found = scan("ping @AdaLovelace!");
        assert_eq!(found, [(5..17, "adalovelace".to_owned())]);
        assert_eq!(&"ping @AdaLovelace!"[found[0].0.clone()], "@AdaLovelace");
    }
}
