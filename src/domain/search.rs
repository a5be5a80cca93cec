//! What a reader searches for, and what a search finds.
//!
//! A query is reduced to its words before any store sees it: letters and digits, split at
//! everything else, lower-cased, at most [`SearchTerms::MAX_WORDS`]. Each store builds its
//! own query from the words alone (SQLite FTS5 quotes each one; PostgreSQL hands them to
//! `plainto_tsquery`), so no operator, quote or bracket a reader types reaches either
//! query language, and the two stores mean the same thing: every word must occur, in any
//! form the stemmer maps to the same stem ("deploys" finds "deployed").

use super::ChatMessage;

/// The words of a search, ready for a store: non-empty, at most
/// [`SearchTerms::MAX_WORDS`], each of letters and digits only, lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerms {
    words: Vec<String>,
}

/// Why a query cannot be searched for; the text says what to type instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("Type a word to search for: letters or digits.")]
    NoWords,
    #[error("A search can have at most {max} words.", max = SearchTerms::MAX_WORDS)]
    TooManyWords,
    #[error("A search is at most {max} characters.", max = SearchTerms::MAX_QUERY_CHARS)]
    TooLong,
}

impl SearchTerms {
    /// More words than this is a sentence, not a search (and each one costs the store).
    pub const MAX_WORDS: usize = 8;
    /// The longest query taken at all, in characters.
    pub const MAX_QUERY_CHARS: usize = 200;

    /// The words of what a reader typed.
    pub fn parse(raw: &str) -> Result<Self, SearchError> {
        if raw.chars().count() > Self::MAX_QUERY_CHARS {
            return Err(SearchError::TooLong);
        }
        let mut words: Vec<String> = Vec::new();
        for word in raw.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() {
                continue;
            }
            let word: String = word.chars().flat_map(char::to_lowercase).collect();
            if !words.contains(&word) {
                words.push(word);
            }
        }
        match words.len() {
            0 => Err(SearchError::NoWords),
            n if n > Self::MAX_WORDS => Err(SearchError::TooManyWords),
            _ => Ok(Self { words }),
        }
    }

    /// The words, in the order typed, each once.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The words joined by spaces: what the query means, for a page to show.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// A message a search found, with an excerpt of its text that marks the words that
/// matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The message as it is now.
    pub message: ChatMessage,
    /// Plain text (not yet escaped) around the matches: each match starts at
    /// [`Found::MARK_START`] and ends at [`Found::MARK_END`], characters a message cannot
    /// contain (control characters are refused), so they cannot be confused with it.
    pub excerpt: String,
}

impl Found {
    /// Where a match starts in [`Found::excerpt`] (U+0001).
    pub const MARK_START: char = '\u{1}';
    /// Where a match ends in [`Found::excerpt`] (U+0002).
    pub const MARK_END: char = '\u{2}';
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_words_and_nothing_else() {
        let terms = SearchTerms::parse(r#"  Deploy "NEAR" (rollback) OR -x* ü "#).unwrap();
        assert_eq!(
            terms.words(),
            ["deploy", "near", "rollback", "or", "x", "ü"]
        );
        assert_eq!(terms.text(), "deploy near rollback or x ü");
        // Repeated words count once.
        assert_eq!(SearchTerms::parse("a A a").unwrap().words(), ["a"]);
        // Query syntax of either store is only punctuation here.
        for hostile in [
            "\"", "*", "NEAR(", "body:", "^x", "a\"b", "'); DROP", "&|!", "x:*",
        ] {
            if let Ok(terms) = SearchTerms::parse(hostile) {
                assert!(
                    terms
                        .words()
                        .iter()
                        .all(|w| w.chars().all(char::is_alphanumeric)),
                    "{hostile}: {terms:?}"
                );
            }
        }
        // A long word is searched whole (it is indexed whole).
        let long = "x".repeat(150);
        assert_eq!(SearchTerms::parse(&long).unwrap().words(), [long]);
    }

    #[test]
    fn empty_long_and_wordy_queries_say_what_to_do() {
        for empty in ["", "   ", "!!! ---", "\u{1}\u{2}"] {
            assert_eq!(
                SearchTerms::parse(empty),
                Err(SearchError::NoWords),
                "{empty:?}"
            );
        }
        assert_eq!(
            SearchTerms::parse("a b c d e f g h i"),
            Err(SearchError::TooManyWords)
        );
        assert_eq!(
            SearchTerms::parse(&"a ".repeat(101)),
            Err(SearchError::TooLong)
        );
        assert!(SearchError::NoWords.to_string().contains("Type a word"));
    }
}
