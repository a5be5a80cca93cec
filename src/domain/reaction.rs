//! Reactions: a small fixed set of emoji a reader can put on a message, once each, and
//! take back. Who reacted is kept by user id (to toggle) and shown by name and by the
//! same tag pages use for their own messages.

use super::ids::UserId;
use super::names::DisplayName;

/// One of the reactions hubbub offers. A fixed set keeps the row small and the picker a
/// handful of buttons; anything else is refused at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Emoji {
    ThumbsUp,
    Heart,
    Laugh,
    Party,
    Eyes,
    Done,
}

impl Emoji {
    /// Every reaction, in the order pages show them.
    pub const ALL: [Emoji; 6] = [
        Emoji::ThumbsUp,
        Emoji::Heart,
        Emoji::Laugh,
        Emoji::Party,
        Emoji::Eyes,
        Emoji::Done,
    ];

    /// The emoji itself, as browsers send it and pages show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Emoji::ThumbsUp => "👍",
            Emoji::Heart => "❤️",
            Emoji::Laugh => "😂",
            Emoji::Party => "🎉",
            Emoji::Eyes => "👀",
            Emoji::Done => "✅",
        }
    }

    /// What a screen reader says for it.
    pub fn label(self) -> &'static str {
        match self {
            Emoji::ThumbsUp => "thumbs up",
            Emoji::Heart => "heart",
            Emoji::Laugh => "laughing",
            Emoji::Party => "party",
            Emoji::Eyes => "eyes",
            Emoji::Done => "done",
        }
    }

    /// Exactly one of the offered emoji (a heart with or without its variation selector).
    pub fn parse(raw: &str) -> Option<Self> {
        if raw == "❤" {
            return Some(Emoji::Heart);
        }
        Self::ALL.into_iter().find(|emoji| emoji.as_str() == raw)
    }
}

/// One emoji on a message and who put it there, in the order they did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: Emoji,
    pub by: Vec<Reactor>,
}

/// Someone who reacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reactor {
    pub user: UserId,
    /// Their name when they reacted.
    pub name: DisplayName,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_offered_emoji_parse() {
        for emoji in Emoji::ALL {
            assert_eq!(Emoji::parse(emoji.as_str()), Some(emoji));
        }
        assert_eq!(Emoji::parse("❤"), Some(Emoji::Heart));
        for other in [
            "",
            "👍👍",
            " 👍",
            "🙂",
            "thumbs up",
            "<b>",
            "\u{1F44D}\u{1F3FB}",
        ] {
            assert_eq!(Emoji::parse(other), None, "{other:?}");
        }
    }
}
