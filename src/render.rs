//! Turns chat state into HTML: askama templates in, shared bytes out. No I/O.
//!
//! Every fragment sent down a socket carries `hx-swap-oob`, because htmx 4 swaps anything
//! else into the connecting element and would wipe the page. A message is rendered once, by
//! [`message`], into a [`Rendered`] whose bytes every session sends as they are.

use std::ops::Range;

use askama::Template;
use axum::extract::ws::Utf8Bytes;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::domain::{ChatMessage, DisplayName, RoomName};
use crate::http::assets::AssetUrls;
use crate::hub::RoomCount;

/// What rendering can fail with. Askama only fails on a broken template or a failing
/// `Display` impl, so this is a bug, never the user's fault.
#[derive(Debug, thiserror::Error)]
#[error("rendering a template failed: {0}")]
pub struct RenderError(#[from] askama::Error);

/// Renders a fragment. Our fragment templates only display strings and numbers, which
/// cannot fail; should one ever fail, the fragment is left out and the bug logged, rather
/// than taking the connection down.
fn fragment(template: &impl Template) -> String {
    template.render().unwrap_or_else(|err| {
        tracing::error!(error = %err, "rendering a fragment failed");
        String::new()
    })
}

/// One message, rendered once: the frame that appends it to every open page, and the
/// `<article>` inside it that the history is made of.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub id: u64,
    /// `<div id="messages" hx-swap-oob="beforeend"><article …>…</article></div>`
    fragment: Utf8Bytes,
    /// Where the `<article>` sits inside `fragment`.
    article: Range<usize>,
}

impl Rendered {
    /// The bytes sent to every session: cloning shares them, it does not copy.
    pub fn fragment(&self) -> &Utf8Bytes {
        &self.fragment
    }

    /// The bare `<article>`, for the history list.
    pub fn article(&self) -> &str {
        &self.fragment.as_str()[self.article.clone()]
    }
}

const APPEND_OPEN: &str = r#"<div id="messages" hx-swap-oob="beforeend">"#;
const REPLACE_OPEN: &str = r#"<div id="messages" hx-swap-oob="innerHTML">"#;
const CLOSE: &str = "</div>";
const EMPTY_HISTORY: &str = r#"<p class="empty">No messages yet. Say hello!</p>"#;

#[derive(Template)]
#[template(path = "message.html")]
struct MessageTemplate<'a> {
    id: u64,
    author: &'a str,
    colour: u8,
    datetime: String,
    clock: String,
    parts: Vec<Part<'a>>,
}

/// A piece of message text: plain text, or a web address shown as a link.
#[derive(Debug, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    Link(&'a str),
}

/// Splits text into plain runs and `http(s)://` addresses. Only those two schemes become
/// links, so `javascript:` and friends stay text; trailing punctuation stays outside.
fn linkify(text: &str) -> Vec<Part<'_>> {
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

/// A stable colour (one of twelve CSS classes) for a name.
fn colour(name: &str) -> u8 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    (hash % 12) as u8
}

/// Renders a message into the fragment that appends it to the list.
pub fn message(message: &ChatMessage) -> Rendered {
    let article = fragment(&MessageTemplate {
        id: message.id,
        author: message.author.as_str(),
        colour: colour(message.author.as_str()),
        datetime: datetime(message.sent_at),
        clock: clock(message.sent_at),
        parts: linkify(message.text.as_str()),
    });
    let mut fragment = String::with_capacity(APPEND_OPEN.len() + article.len() + CLOSE.len());
    fragment.push_str(APPEND_OPEN);
    fragment.push_str(article.trim_end());
    let end = fragment.len();
    fragment.push_str(CLOSE);
    Rendered {
        id: message.id,
        fragment: Utf8Bytes::from(fragment),
        article: APPEND_OPEN.len()..end,
    }
}

/// Several frames as one: shared as it is when there is one, concatenated once otherwise.
pub fn join<'a>(frames: impl IntoIterator<Item = &'a Utf8Bytes>) -> Utf8Bytes {
    let frames: Vec<&Utf8Bytes> = frames.into_iter().collect();
    if let [one] = frames.as_slice() {
        return (*one).clone();
    }
    let mut joined = String::with_capacity(frames.iter().map(|f| f.len()).sum());
    for frame in frames {
        joined.push_str(frame.as_str());
    }
    Utf8Bytes::from(joined)
}

#[derive(Template)]
#[template(path = "older.html")]
struct OlderTemplate<'a> {
    room: &'a str,
    /// `Some(id)`: a "load older" element fetching the messages before `id`;
    /// `None`: "start of conversation".
    before: Option<u64>,
}

/// The inside of the message list: "load older" or "start of conversation", then the
/// messages; or a friendly empty state.
pub fn history_inner<'a>(
    room: &RoomName,
    messages: impl IntoIterator<Item = &'a Rendered>,
    has_older: bool,
) -> String {
    let mut messages = messages.into_iter().peekable();
    let Some(oldest) = messages.peek().map(|m| m.id) else {
        return EMPTY_HISTORY.to_owned();
    };
    let mut html = fragment(&OlderTemplate {
        room: room.as_str(),
        before: has_older.then_some(oldest),
    });
    for message in messages {
        html.push_str(message.article());
    }
    html
}

/// A page of older messages, answering a "load older" element: it replaces that element
/// with the next one (or "start of conversation") followed by the messages.
pub fn older_page(room: &RoomName, messages: &[ChatMessage], has_more: bool) -> String {
    let rendered: Vec<Rendered> = messages.iter().map(message).collect();
    if rendered.is_empty() {
        return fragment(&OlderTemplate {
            room: room.as_str(),
            before: None,
        });
    }
    history_inner(room, &rendered, has_more)
}

/// The frame a client gets on every (re)connect: it *replaces* the whole list, so a
/// reconnect can never duplicate what the page already shows.
pub fn history_frame<'a>(
    room: &RoomName,
    messages: impl IntoIterator<Item = &'a Rendered>,
    has_older: bool,
) -> Utf8Bytes {
    let inner = history_inner(room, messages, has_older);
    let mut frame = String::with_capacity(REPLACE_OPEN.len() + inner.len() + CLOSE.len());
    frame.push_str(REPLACE_OPEN);
    frame.push_str(&inner);
    frame.push_str(CLOSE);
    Utf8Bytes::from(frame)
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticeTemplate<'a> {
    text: &'a str,
}

/// A message for one user only (an error about what they sent), shown above the input.
pub fn notice(text: &str) -> Utf8Bytes {
    Utf8Bytes::from(fragment(&NoticeTemplate { text }))
}

#[derive(Template)]
#[template(path = "composer_input.html")]
struct InputTemplate<'a> {
    room: &'a str,
    max_chars: u32,
    value: &'a str,
    oob: bool,
}

/// The message input, empty, for the page.
fn input(room: &RoomName, max_chars: u32) -> String {
    fragment(&InputTemplate {
        room: room.as_str(),
        max_chars,
        value: "",
        oob: false,
    })
}

/// "Not sent: …" for the sender, with their text put back in the input.
pub fn not_sent(reason: &str, text: &str, room: &RoomName, max_chars: u32) -> Utf8Bytes {
    let mut html = fragment(&NoticeTemplate {
        text: &format!("Not sent: {reason}"),
    });
    html.push_str(&fragment(&InputTemplate {
        room: room.as_str(),
        max_chars,
        value: text,
        oob: true,
    }));
    Utf8Bytes::from(html)
}

#[derive(Template)]
#[template(path = "room_list.html")]
struct RoomListTemplate<'a> {
    rooms: &'a [RoomCount],
    oob: bool,
}

/// The room list with online counts; `oob` for the copy sent down sockets.
pub fn room_list(rooms: &[RoomCount], oob: bool) -> Utf8Bytes {
    Utf8Bytes::from(fragment(&RoomListTemplate { rooms, oob }))
}

#[derive(Template)]
#[template(path = "presence.html")]
struct PresenceTemplate<'a> {
    /// `(name, colour)` of those listed.
    names: Vec<(&'a str, u8)>,
    /// Everyone present, listed or not.
    total: usize,
    /// Present but not listed.
    more: usize,
    oob: bool,
}

/// The most names the presence list shows; a big room says "and N more".
pub const PRESENCE_SHOWN: usize = 100;

/// Who is in the room: the first names in list order (at most [`PRESENCE_SHOWN`] are
/// shown) and how many are here in all.
pub fn presence(names: &[DisplayName], total: usize, oob: bool) -> Utf8Bytes {
    let listed: Vec<(&str, u8)> = names
        .iter()
        .take(PRESENCE_SHOWN)
        .map(|n| (n.as_str(), colour(n.as_str())))
        .collect();
    let more = total.saturating_sub(listed.len());
    Utf8Bytes::from(fragment(&PresenceTemplate {
        names: listed,
        total,
        more,
        oob,
    }))
}

#[derive(Template)]
#[template(path = "presence_count.html")]
struct PresenceCountTemplate {
    total: usize,
    more: usize,
}

/// Only the count (and "and N more") of the presence list, for when the names it shows
/// are unchanged.
pub fn presence_count(total: usize, listed: usize) -> Utf8Bytes {
    Utf8Bytes::from(fragment(&PresenceCountTemplate {
        total,
        more: total.saturating_sub(listed),
    }))
}

#[derive(Template)]
#[template(path = "typing.html")]
struct TypingTemplate<'a> {
    text: &'a str,
}

/// "alice is typing…", "alice and bob are typing…", "alice, bob and 3 others are typing…",
/// or nothing.
pub fn typing(names: &[&DisplayName]) -> Utf8Bytes {
    let text = match names {
        [] => String::new(),
        [one] => format!("{one} is typing…"),
        [one, two] => format!("{one} and {two} are typing…"),
        [one, two, three] => format!("{one}, {two} and {three} are typing…"),
        [one, two, rest @ ..] => format!("{one}, {two} and {} others are typing…", rest.len()),
    };
    Utf8Bytes::from(fragment(&TypingTemplate { text: &text }))
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventTemplate<'a> {
    text: &'a str,
}

/// A line in the log that is not a message ("alice joined"); not stored.
pub fn event(text: &str) -> Utf8Bytes {
    Utf8Bytes::from(fragment(&EventTemplate { text }))
}

#[derive(Template)]
#[template(path = "page.html")]
struct PageTemplate<'a> {
    assets: &'a AssetUrls,
    room: &'a str,
    me: &'a str,
    history: &'a str,
    input: &'a str,
    room_list: &'a str,
    presence: &'a str,
}

/// Everything the chat page shows.
pub struct Page<'a> {
    pub room: &'a RoomName,
    pub me: &'a str,
    pub max_chars: u32,
    /// Already-rendered list contents, from [`history_inner`].
    pub history: &'a str,
    pub rooms: &'a [RoomCount],
    pub present: &'a [DisplayName],
}

/// The chat page.
pub fn page(page: &Page<'_>) -> Result<String, RenderError> {
    let rooms = room_list(page.rooms, false);
    let present = presence(page.present, page.present.len(), false);
    Ok(PageTemplate {
        assets: AssetUrls::get(),
        room: page.room.as_str(),
        me: page.me,
        history: page.history,
        input: &input(page.room, page.max_chars),
        room_list: rooms.as_str(),
        presence: present.as_str(),
    }
    .render()?)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate<'a> {
    assets: &'a AssetUrls,
    status: &'a str,
    message: &'a str,
}

/// A whole page explaining an HTTP error.
pub fn error_page(status: &str, message: &str) -> Result<String, RenderError> {
    Ok(ErrorTemplate {
        assets: AssetUrls::get(),
        status,
        message,
    }
    .render()?)
}

fn datetime(at: OffsetDateTime) -> String {
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

fn clock(at: OffsetDateTime) -> String {
    at.format(format_description!("[hour]:[minute]"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DisplayName, MessageText};

    fn chat(id: u64, text: &str) -> ChatMessage {
        ChatMessage {
            id,
            room: RoomName::general(),
            author: DisplayName::parse("guest-00ff").unwrap(),
            sent_at: time::macros::datetime!(2026-11-28 08:16:22 UTC),
            text: MessageText::parse(text, 10_000).unwrap().unwrap(),
        }
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
    fn a_big_room_lists_a_hundred_names_and_counts_the_rest() {
        let names: Vec<DisplayName> = (0..150)
            .map(|i| DisplayName::parse(&format!("user {i:03}")).unwrap())
            .collect();
        let html = presence(&names, names.len(), true);
        let html = html.as_str();
        assert_eq!(html.matches("<li>").count(), 100);
        assert!(
            html.contains(r#"<span id="presence-count" class="count">150</span>"#)
                && html.contains(">and 50 more<"),
            "{html}"
        );
        let count = presence_count(151, 100);
        assert_eq!(
            count.as_str(),
            r#"<span id="presence-count" class="count" hx-swap-oob="true">151</span><p id="presence-more" class="more" hx-swap-oob="true">and 51 more</p>"#
        );
        let small = presence_count(3, 3);
        assert!(
            small
                .as_str()
                .contains(r#"class="more" hx-swap-oob="true" hidden>"#),
            "{small}"
        );
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
    fn typing_lines_read_naturally() {
        let names: Vec<DisplayName> = ["ann", "bo", "cy", "di"]
            .iter()
            .map(|n| DisplayName::parse(n).unwrap())
            .collect();
        let refs: Vec<&DisplayName> = names.iter().collect();
        assert!(typing(&[]).as_str().contains("\"true\"></p>"));
        assert!(typing(&refs[..1]).as_str().contains(">ann is typing…<"));
        assert!(
            typing(&refs[..2])
                .as_str()
                .contains(">ann and bo are typing…<")
        );
        assert!(
            typing(&refs)
                .as_str()
                .contains(">ann, bo and 2 others are typing…<")
        );
    }

    #[test]
    fn several_frames_join_in_order_and_one_is_shared() {
        let a = Utf8Bytes::from("<a/>".to_owned());
        assert_eq!(join([&a]).as_str().as_ptr(), a.as_str().as_ptr());
        let (b, c) = (Utf8Bytes::from("<b/>"), Utf8Bytes::from("<c/>"));
        assert_eq!(join([&a, &b, &c]).as_str(), "<a/><b/><c/>");
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

    #[test]
    fn notices_are_out_of_band_and_escaped() {
        let html = notice("bad <b>");
        assert!(html.as_str().contains(r#"hx-swap-oob="true""#));
        assert!(
            html.as_str().contains("bad &#60;b&#62;") || html.as_str().contains("bad &lt;b&gt;")
        );
    }

    #[test]
    fn not_sent_puts_the_text_back_escaped() {
        let html = not_sent(
            "the store is down.",
            "my \"<text>\"",
            &RoomName::general(),
            2000,
        );
        let html = html.as_str();
        assert!(html.contains("Not sent: the store is down."));
        assert!(html.contains(r#"<input id="text""#) && html.contains(r#"hx-swap-oob="true""#));
        assert!(
            !html.contains("<text>") && html.contains("value=\"my "),
            "{html}"
        );
    }
}
