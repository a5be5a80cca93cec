//! Messages: the fragment that appends one to every open page (or, for a version an edit
//! or a delete made, replaces it where it is shown), and the `<article>` the lists of
//! messages (`history.rs`) are made of.

use std::borrow::Cow;
use std::ops::Range;

use askama::Template;

use super::{Html, clock, colour, datetime, fragment, markdown};
use crate::domain::{ChatMessage, Quote, Reaction};

/// One message, rendered once: the frame that appends it to every open page (or replaces
/// its earlier version), and the `<article>` inside it that the history is made of.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub id: u64,
    /// Who wrote it, and whether it is deleted: what an unread count leaves out.
    pub author_id: Option<crate::domain::UserId>,
    pub deleted: bool,
    /// The mention keys it names (`domain::mentions`), for counting a reader's mentions.
    pub mentions: Vec<String>,
    /// Whether this replaces a version already shown (an edit, a delete) rather than
    /// adding a message.
    pub replaces: bool,
    /// The message this one answers: its quote here is brought up to date when that
    /// message changes ([`Rendered::with_quote`]).
    pub quote_of: Option<u64>,
    /// For a later version: the quote that replies to this message now show.
    pub quote: Option<String>,
    /// `<div id="messages" hx-swap-oob="beforeend"><article …>…</article></div>`, or for a
    /// later version `<hx-partial hx-target="#msg-{id}" hx-swap="outerHTML">…`: htmx puts
    /// it in place of the article with that id, on pages that show it, and nowhere else.
    fragment: Html,
    /// Where the `<article>` sits inside `fragment`.
    article: Range<usize>,
}

impl Rendered {
    /// The bytes sent to every session: cloning shares them, it does not copy.
    pub fn fragment(&self) -> &Html {
        &self.fragment
    }

    /// The bare `<article>`, for the history list.
    pub fn article(&self) -> &str {
        &self.fragment.as_str()[self.article.clone()]
    }

    /// This reply with `quote` in place of the quote it shows (the message it answers has
    /// changed). Only the history keeps it afterwards, so only the article matters.
    pub fn with_quote(&self, quote: &str) -> Self {
        let article = self.article();
        let Some(start) = article.find(r#"<a class="quote quote-of-"#) else {
            return self.clone();
        };
        let Some(end) = article[start..]
            .find("</a>")
            .map(|end| start + end + "</a>".len())
        else {
            return self.clone();
        };
        let mut fragment = String::with_capacity(APPEND_OPEN.len() + article.len() + CLOSE.len());
        fragment.push_str(APPEND_OPEN);
        fragment.push_str(&article[..start]);
        fragment.push_str(quote);
        fragment.push_str(&article[end..]);
        let article_end = fragment.len();
        fragment.push_str(CLOSE);
        Self {
            id: self.id,
            author_id: self.author_id.clone(),
            deleted: self.deleted,
            mentions: self.mentions.clone(),
            replaces: false,
            quote_of: self.quote_of,
            quote: None,
            fragment: Html::from(fragment),
            article: APPEND_OPEN.len()..article_end,
        }
    }
}

#[derive(Template)]
#[template(path = "quote.html")]
struct QuoteTemplate<'a> {
    id: u64,
    author: &'a str,
    excerpt: &'a str,
    edited: bool,
    deleted: bool,
}

/// How a reply shows the message it answers.
fn quote(quote: &Quote) -> String {
    fragment(&QuoteTemplate {
        id: quote.id,
        author: quote.author.as_str(),
        excerpt: &quote.excerpt,
        edited: quote.edited,
        deleted: quote.deleted,
    })
    .trim_end()
    .to_owned()
}

const APPEND_OPEN: &str = r#"<div id="messages" hx-swap-oob="beforeend">"#;
pub(super) const CLOSE: &str = "</div>";
const PARTIAL_CLOSE: &str = "</hx-partial>";

#[derive(Template)]
#[template(path = "message.html")]
struct MessageTemplate<'a> {
    id: u64,
    author: &'a str,
    /// [`crate::domain::UserId::tag`]: a page shows "Edit" and "Delete" on its user's own.
    author_tag: Option<String>,
    /// [`crate::domain::UserId::guest_mark`] of a guest author: their name is not theirs
    /// alone, so this tells them apart.
    guest_mark: Option<String>,
    edited: bool,
    deleted: bool,
    colour: u8,
    datetime: String,
    clock: String,
    /// The quote of the message it answers, rendered (or empty).
    quote: String,
    /// The text as HTML ([`markdown::render`]): escaped, only allow-listed elements.
    body: String,
    /// One paragraph of inline content (in a `<p>`), or blocks (in a `<div>`).
    inline: bool,
    reactions: Vec<ReactionView>,
}

/// One emoji on a message as the page shows it: a button with the count that toggles the
/// reader's own (the page marks it pressed by the tags), and who put it there.
struct ReactionView {
    emoji: &'static str,
    label: &'static str,
    count: usize,
    /// Who reacted, by name, in the order they did.
    names: String,
    /// Their tags ([`crate::domain::UserId::tag`]), space-separated.
    tags: String,
}

fn reaction_views(reactions: &[Reaction]) -> Vec<ReactionView> {
    reactions
        .iter()
        .map(|r| ReactionView {
            emoji: r.emoji.as_str(),
            label: r.emoji.label(),
            count: r.by.len(),
            names: r
                .by
                .iter()
                .map(|who| who.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            tags: r
                .by
                .iter()
                .map(|who| who.user.tag())
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect()
}

/// A piece of message text: plain text, or a web address shown as a link.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Part<'a> {
    Text(&'a str),
    Link(&'a str),
}

/// Splits text into plain runs and `http(s)://` addresses. Only those two schemes become
/// links, so `javascript:` and friends stay text; trailing punctuation stays outside.
pub(super) fn linkify(text: &str) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = find_link_start(rest) {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(tail.len());
        let mut link = &tail[..end];
        while let Some(last) = link.chars().last() {
            let unbalanced_paren =
                last == ')' && link.matches('(').count() < link.matches(')').count();
            if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'' | ']' | '}')
                || unbalanced_paren
            {
                link = &link[..link.len() - last.len_utf8()];
            } else {
                break;
            }
        }
        let scheme_len = if link.starts_with("https://") { 8 } else { 7 };
        if link.len() <= scheme_len {
            // "http://" alone is not a link.
            parts.push(Part::Text(&rest[..start + end]));
            rest = &rest[start + end..];
            continue;
        }
        if start > 0 {
            parts.push(Part::Text(&rest[..start]));
        }
        parts.push(Part::Link(link));
        rest = &rest[start + link.len()..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    parts
}

/// Where the next `http://` or `https://` starts, at a word boundary.
fn find_link_start(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find("http") {
        let at = from + found;
        let tail = &text[at..];
        let boundary = text[..at]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric());
        if boundary && (tail.starts_with("http://") || tail.starts_with("https://")) {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Renders a message into the fragment that appends it to the list, or, for a version
/// after a change, the one that replaces it where it is shown.
pub fn message(message: &ChatMessage) -> Rendered {
    let body = markdown::render(message.text.as_str());
    let article = fragment(&MessageTemplate {
        id: message.id,
        author: message.author.as_str(),
        author_tag: message.author_id.as_ref().map(|user| user.tag()),
        guest_mark: message
            .author_id
            .as_ref()
            .filter(|_| message.guest)
            .map(|user| user.guest_mark()),
        edited: message.edited,
        deleted: message.deleted,
        colour: colour(message.author.as_str()),
        datetime: datetime(message.sent_at),
        clock: clock(message.sent_at),
        quote: message.reply.as_deref().map(quote).unwrap_or_default(),
        body: body.html,
        inline: body.inline,
        reactions: reaction_views(&message.reactions),
    });
    let replaces = message.is_change();
    let (open, close): (Cow<str>, _) = if replaces {
        let open = format!(
            r##"<hx-partial hx-target="#msg-{}" hx-swap="outerHTML">"##,
            message.id
        );
        (open.into(), PARTIAL_CLOSE)
    } else {
        (APPEND_OPEN.into(), CLOSE)
    };
    let mut fragment = String::with_capacity(open.len() + article.len() + close.len());
    fragment.push_str(&open);
    fragment.push_str(article.trim_end());
    let end = fragment.len();
    fragment.push_str(close);
    // A later version also brings the quotes of the replies to it up to date, on every
    // page that shows one (a page that shows none ignores it).
    let new_quote = replaces.then(|| quote(&Quote::of_message(message)));
    if let Some(new_quote) = &new_quote {
        fragment.push_str(&format!(
            r#"<hx-partial hx-target=".quote-of-{}" hx-swap="outerHTML">{new_quote}</hx-partial>"#,
            message.id
        ));
    }
    Rendered {
        id: message.id,
        author_id: message.author_id.clone(),
        deleted: message.deleted,
        mentions: crate::domain::mentions::mentions(message.text.as_str()),
        replaces,
        quote_of: message.reply.as_ref().map(|q| q.id),
        quote: new_quote,
        fragment: Html::from(fragment),
        article: open.len()..end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RoomName;
    use crate::domain::{DisplayName, MessageText};
    use crate::render::history::{history_frame, older_page};

    fn chat(id: u64, text: &str) -> ChatMessage {
        ChatMessage {
            id,
            seq: id,
            room: RoomName::general(),
            author: DisplayName::parse("guest-00ff").unwrap(),
            author_id: None,
            guest: false,
            sent_at: time::macros::datetime!(2026-11-28 08:16:22 UTC),
            text: MessageText::parse(text, 10_000).unwrap().unwrap(),
            edited: false,
            deleted: false,
            reactions: Vec::new(),
            reply: None,
        }
    }

    #[test]
    fn a_guest_is_marked_by_their_id_and_a_claimed_name_is_not() {
        let sam = crate::domain::UserId::generate();
        let mut by_guest = chat(1, "hi");
        by_guest.author_id = Some(sam.clone());
        by_guest.guest = true;
        let html = message(&by_guest).article().to_owned();
        let mark = sam.guest_mark();
        assert_eq!(mark.len(), 4);
        assert!(
            html.contains(&format!(
                r#"</span> <span class="guest">guest #{mark}</span> <time"#
            )),
            "{html}"
        );
        let mut claimed = by_guest.clone();
        claimed.guest = false;
        assert!(!message(&claimed).article().contains("class=\"guest\""));
        // A guest flag with no id to mark (a message from before authors were kept).
        let mut old = by_guest;
        old.author_id = None;
        assert!(!message(&old).article().contains("class=\"guest\""));
    }

    #[test]
    fn a_message_fragment_appends_out_of_band_with_id_author_and_time() {
        let rendered = message(&chat(7, "hello"));
        let html = rendered.fragment().as_str();
        assert!(
            html.starts_with(r#"<div id="messages" hx-swap-oob="beforeend">"#),
            "{html}"
        );
        assert!(html.contains(r#"id="msg-7""#), "{html}");
        assert!(html.contains("guest-00ff"), "{html}");
        assert!(
            html.contains(r#"<time datetime="2026-11-28T08:16:22Z">08:16</time>"#),
            "{html}"
        );
        assert!(
            rendered.article().starts_with("<article")
                && rendered.article().ends_with("</article>")
        );
    }

    #[test]
    fn user_text_is_escaped() {
        for payload in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "\"><svg onload=alert(1)>",
            "<div hx-get=\"/steal\" hx-trigger=\"load\">x</div>",
            "<b hx-on:click=\"alert(1)\">x</b>",
        ] {
            let rendered = message(&chat(1, payload));
            let text = rendered.article();
            let inside =
                &text[text.find("<p class=\"text\">").unwrap() + 16..text.rfind("</p>").unwrap()];
            assert!(!inside.contains(['<', '>', '"']), "{inside}");
        }
    }

    #[test]
    fn web_addresses_become_safe_links_and_nothing_else_does() {
        assert_eq!(
            linkify("see https://example.com/a?b=1&c=2."),
            [
                Part::Text("see "),
                Part::Link("https://example.com/a?b=1&c=2"),
                Part::Text(".")
            ]
        );
        assert_eq!(
            linkify("(http://x.example/wiki/Foo_(bar)) ok"),
            [
                Part::Text("("),
                Part::Link("http://x.example/wiki/Foo_(bar)"),
                Part::Text(") ok")
            ]
        );
        for text in [
            "javascript:alert(1)",
            "data:text/html,x",
            "nothttp://x",
            "http://",
            "ftp://x",
        ] {
            assert!(
                linkify(text).iter().all(|p| matches!(p, Part::Text(_))),
                "{text}"
            );
        }
        let html = message(&chat(
            1,
            "go to https://e.example/\"onmouseover=alert(1) now",
        ));
        let article = html.article();
        assert!(
            article.contains(
                r#"<a href="https://e.example/" rel="noopener nofollow ugc" target="_blank">"#
            ),
            "{article}"
        );
        assert!(!article.contains("\"onmouseover"), "{article}");
    }

    #[test]
    fn a_later_version_replaces_its_article_and_a_deleted_one_shows_no_text() {
        let user = crate::domain::UserId::generate();
        let mut edited = chat(7, "fixed <b>");
        edited.seq = 9;
        edited.edited = true;
        edited.author_id = Some(user.clone());
        let rendered = message(&edited);
        assert!(rendered.replaces);
        let html = rendered.fragment().as_str();
        // The article in place, then the quote every reply to it shows.
        assert!(
            html.starts_with(r##"<hx-partial hx-target="#msg-7" hx-swap="outerHTML"><article"##),
            "{html}"
        );
        assert!(
            html.contains(r##"</article></hx-partial><hx-partial hx-target=".quote-of-7" hx-swap="outerHTML"><a class="quote quote-of-7" href="#msg-7">"##)
                && html.ends_with("</a></hx-partial>"),
            "{html}"
        );
        assert_eq!(
            rendered
                .quote
                .as_deref()
                .map(|q| q.contains("fixed &#60;b&#62;")),
            Some(true)
        );
        let article = rendered.article();
        assert!(
            article.contains(r#"<span class="edited">(edited)</span>"#),
            "{article}"
        );
        assert!(article.contains(&format!(r#"data-author="{}""#, user.tag())));
        assert!(
            !article.contains(&user.to_string()),
            "the id itself is never shown"
        );
        assert!(article.contains("fixed &#60;b&#62;") || article.contains("fixed &lt;b&gt;"));

        let mut deleted = chat(8, "secret");
        deleted.seq = 10;
        deleted.deleted = true;
        deleted.text = MessageText::gone();
        let article = message(&deleted).article().to_owned();
        assert!(
            article.contains(r#"<p class="text gone">message deleted</p>"#),
            "{article}"
        );
        assert!(
            article.starts_with(r#"<article class="msg deleted""#),
            "{article}"
        );
        assert!(!message(&chat(8, "new")).replaces);
    }

    #[test]
    fn names_keep_their_colour() {
        assert_eq!(colour("alice"), colour("alice"));
        assert!((0..12).contains(&colour("bob")));
        let html = message(&chat(1, "hi"));
        assert!(
            html.article()
                .contains(&format!(r#"class="author c{}""#, colour("guest-00ff")))
        );
    }

    #[test]
    fn history_replaces_the_list_and_is_never_empty() {
        let general = RoomName::general();
        let empty = history_frame(&general, [], false);
        assert!(empty.as_str().contains(r#"hx-swap-oob="innerHTML""#));
        assert!(empty.as_str().contains("No messages yet"));

        let one = message(&chat(1, "a"));
        let two = message(&chat(2, "b"));
        let frame = history_frame(&general, [&one, &two], false);
        let html = frame.as_str();
        assert!(html.find("msg-1").unwrap() < html.find("msg-2").unwrap());
        assert!(!html.contains("beforeend") && !html.contains("No messages yet"));
        assert!(html.contains("Start of conversation"));

        let partial = history_frame(&general, [&two], true);
        assert!(
            partial
                .as_str()
                .contains(r#"hx-get="/rooms/general/history?before=2""#)
        );
        assert!(partial.as_str().contains(r#"hx-trigger="revealed""#));
    }

    #[test]
    fn an_older_page_leads_with_the_next_loader_or_the_start() {
        let general = RoomName::general();
        let page = older_page(&general, &[chat(3, "c"), chat(4, "d")], true);
        assert!(
            page.starts_with(r#"<div id="older""#) && page.contains("before=3"),
            "{page}"
        );
        let last = older_page(&general, &[chat(1, "a")], false);
        assert!(
            last.starts_with(r#"<p id="older""#) && last.contains("msg-1"),
            "{last}"
        );
        let none = older_page(&general, &[], false);
        assert!(none.contains("Start of conversation") && !none.contains("<article"));
    }
}
