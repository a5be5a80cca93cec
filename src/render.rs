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

use crate::domain::{ChatMessage, RoomName};
use crate::http::assets::AssetUrls;

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
    datetime: String,
    clock: String,
    text: &'a str,
}

/// Renders a message into the fragment that appends it to the list.
pub fn message(message: &ChatMessage) -> Rendered {
    let article = fragment(&MessageTemplate {
        id: message.id,
        author: message.author.as_str(),
        datetime: datetime(message.sent_at),
        clock: clock(message.sent_at),
        text: message.text.as_str(),
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
#[template(path = "page.html")]
struct PageTemplate<'a> {
    assets: &'a AssetUrls,
    room: &'a str,
    me: &'a str,
    history: &'a str,
    input: &'a str,
}

/// Everything the chat page shows.
pub struct Page<'a> {
    pub room: &'a RoomName,
    pub me: &'a str,
    pub max_chars: u32,
    /// Already-rendered list contents, from [`history_inner`].
    pub history: &'a str,
}

/// The chat page.
pub fn page(page: &Page<'_>) -> Result<String, RenderError> {
    Ok(PageTemplate {
        assets: AssetUrls::get(),
        room: page.room.as_str(),
        me: page.me,
        history: page.history,
        input: &input(page.room, page.max_chars),
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
