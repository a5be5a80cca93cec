//! The search page: a form, and what a search found, newest first, each with its room,
//! author, time and an excerpt whose matching words are in `<mark>`.
//!
//! An excerpt shows the words, not the formatting: Markdown's marks are taken out
//! ([`plain_text`]). Stores mark matches with two control characters a message cannot contain
//! ([`Found::MARK_START`], [`Found::MARK_END`]); [`excerpt`] escapes the text and turns
//! only those into elements, so nothing in a message can open or close a `<mark>`.

use askama::Template;

use super::markdown::{escape, plain_text};
use super::page::AssetUrls;
use super::{RenderError, colour, datetime};
use crate::domain::{Found, RoomName};

/// Everything the search page shows.
pub struct SearchPage<'a> {
    pub assets: &'a AssetUrls,
    /// The room searched, or `None` for every room.
    pub room: Option<&'a RoomName>,
    /// The room the page leads back to (the searched one, or `general`).
    pub back: &'a RoomName,
    /// The query as typed, for the form.
    pub query: &'a str,
    /// What the query meant (its words, space-separated), if it was searched.
    pub words: Option<&'a str>,
    /// Why the query was not searched, said to the reader.
    pub refused: Option<&'a str>,
    pub found: &'a [Found],
    /// Whether this page continues an earlier one ("older results").
    pub paged: bool,
    /// The id "older results" starts below, when there are more.
    pub older: Option<u64>,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchTemplate<'a> {
    assets: &'a AssetUrls,
    room: Option<&'a str>,
    back: &'a str,
    scope: String,
    action: String,
    query: &'a str,
    words: &'a str,
    /// The words for a link's query string (they are letters and digits: spaces become
    /// `+`, nothing else needs encoding).
    words_param: String,
    refused: Option<&'a str>,
    results: Vec<Line>,
    paged: bool,
    older: Option<u64>,
}

/// One result.
struct Line {
    id: u64,
    room: String,
    author: String,
    colour: u8,
    datetime: String,
    date: String,
    edited: bool,
    excerpt: String,
}

/// The search page.
pub fn search_page(page: &SearchPage<'_>) -> Result<String, RenderError> {
    let words = page.words.unwrap_or("");
    let results = page
        .found
        .iter()
        .map(|found| {
            let m = &found.message;
            Line {
                id: m.id,
                room: m.room.to_string(),
                author: m.author.as_str().to_owned(),
                colour: colour(m.author.as_str()),
                datetime: datetime(m.sent_at),
                date: m
                    .sent_at
                    .format(time::macros::format_description!(
                        "[year]-[month]-[day] [hour]:[minute] UTC"
                    ))
                    .unwrap_or_default(),
                edited: m.edited,
                excerpt: excerpt(&words_of(&found.excerpt)),
            }
        })
        .collect();
    Ok(SearchTemplate {
        assets: page.assets,
        room: page.room.map(RoomName::as_str),
        back: page.back.as_str(),
        scope: match page.room {
            Some(room) => format!("in #{room}"),
            None => "in all rooms".to_owned(),
        },
        action: match page.room {
            Some(room) => format!("/rooms/{room}/search"),
            None => "/search".to_owned(),
        },
        query: page.query,
        words,
        words_param: words.replace(' ', "+"),
        refused: page.refused,
        results,
        paged: page.paged,
        older: page.older,
    }
    .render()?)
}

/// An excerpt's words without Markdown's marks, unless that would lose or add a match
/// mark (a match inside a link's address, or a character reference such as `&#1;` that
/// decodes to a mark): then the text as written, whose marks are the store's own.
fn words_of(excerpt: &str) -> String {
    let marks = |text: &str| {
        text.chars()
            .filter(|c| matches!(*c, Found::MARK_START | Found::MARK_END))
            .count()
    };
    let plain = plain_text(excerpt);
    if marks(&plain) == marks(excerpt) {
        plain
    } else {
        excerpt.to_owned()
    }
}

/// An excerpt as HTML: escaped text, matches in `<mark>`. Marks that do not pair up (a
/// start inside a match, an end outside one) are dropped, and an open match is closed.
pub fn excerpt(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut open = false;
    let mut rest = text;
    while let Some(at) = rest.find([Found::MARK_START, Found::MARK_END]) {
        escape(&mut out, &rest[..at]);
        let start = rest[at..].starts_with(Found::MARK_START);
        if start && !open {
            out.push_str("<mark>");
            open = true;
        } else if !start && open {
            out.push_str("</mark>");
            open = false;
        }
        rest = &rest[at + 1..];
    }
    escape(&mut out, rest);
    if open {
        out.push_str("</mark>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_escape_everything_and_mark_only_matches() {
        assert_eq!(
            excerpt("we \u{1}deployed\u{2} <b>it</b> & \u{1}rolled\u{2} back"),
            "we <mark>deployed</mark> &lt;b&gt;it&lt;/b&gt; &amp; <mark>rolled</mark> back"
        );
        // Unpaired marks never leave an element open or close one that is not.
        assert_eq!(excerpt("\u{2}a\u{1}\u{1}b"), "a<mark>b</mark>");
        assert_eq!(excerpt("<mark>x</mark>"), "&lt;mark&gt;x&lt;/mark&gt;");
        assert_eq!(excerpt(""), "");
    }

    #[test]
    fn excerpts_lose_markdown_but_never_a_mark() {
        assert_eq!(
            words_of("the **\u{1}plan\u{2}** in [notes](https://x.example/n)"),
            "the \u{1}plan\u{2} in notes"
        );
        // A match in a link's address: the text as written keeps it.
        let in_address = "see [notes](https://\u{1}example\u{2}.com/n)";
        assert_eq!(words_of(in_address), in_address);
        // A reference that decodes to a mark cannot make one.
        let forged = "&#1;password&#2; is \u{1}hunter2\u{2}";
        assert_eq!(words_of(forged), forged);
        assert_eq!(
            excerpt(&words_of(forged)),
            "&amp;#1;password&amp;#2; is <mark>hunter2</mark>"
        );
    }
}
