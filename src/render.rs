//! Turns chat state into HTML: askama templates in, shared bytes out. No I/O.
//!
//! Every fragment sent down a socket carries `hx-swap-oob`, because htmx 4 swaps anything
//! else into the connecting element and would wipe the page. A message is rendered once, by
//! [`message`], into a [`Rendered`] whose bytes every session sends as they are.

use std::ops::Range;

use askama::Template;
use axum::extract::ws::Utf8Bytes;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::domain::ChatMessage;
use crate::http::assets::AssetUrls;

/// What rendering can fail with. Askama only fails on a broken template or a failing
/// `Display` impl, so this is a bug, never the user's fault.
#[derive(Debug, thiserror::Error)]
#[error("rendering a template failed: {0}")]
pub struct RenderError(#[from] askama::Error);

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
pub fn message(message: &ChatMessage) -> Result<Rendered, RenderError> {
    let article = MessageTemplate {
        id: message.id,
        author: message.author.as_str(),
        datetime: datetime(message.sent_at),
        clock: clock(message.sent_at),
        text: message.text.as_str(),
    }
    .render()?;
    let mut fragment = String::with_capacity(APPEND_OPEN.len() + article.len() + CLOSE.len());
    fragment.push_str(APPEND_OPEN);
    fragment.push_str(article.trim_end());
    let end = fragment.len();
    fragment.push_str(CLOSE);
    Ok(Rendered {
        id: message.id,
        fragment: Utf8Bytes::from(fragment),
        article: APPEND_OPEN.len()..end,
    })
}

/// The inside of the message list: the given articles, or a friendly empty state.
pub fn history_inner<'a>(messages: impl IntoIterator<Item = &'a Rendered>) -> String {
    let mut html = String::new();
    for message in messages {
        html.push_str(message.article());
    }
    if html.is_empty() {
        html.push_str(EMPTY_HISTORY);
    }
    html
}

/// The frame a client gets on every (re)connect: it *replaces* the whole list, so a
/// reconnect can never duplicate what the page already shows.
pub fn history_frame<'a>(messages: impl IntoIterator<Item = &'a Rendered>) -> Utf8Bytes {
    let inner = history_inner(messages);
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
pub fn notice(text: &str) -> Result<Utf8Bytes, RenderError> {
    Ok(Utf8Bytes::from(NoticeTemplate { text }.render()?))
}

#[derive(Template)]
#[template(path = "page.html")]
struct PageTemplate<'a> {
    assets: &'a AssetUrls,
    room: &'a str,
    me: &'a str,
    max_chars: u32,
    history: &'a str,
}

/// Everything the chat page shows.
pub struct Page<'a> {
    pub room: &'a str,
    pub me: &'a str,
    pub max_chars: u32,
    /// Already-rendered list contents, from [`history_inner`].
    pub history: &'a str,
}

/// The chat page.
pub fn page(page: &Page<'_>) -> Result<String, RenderError> {
    Ok(PageTemplate {
        assets: AssetUrls::get(),
        room: page.room,
        me: page.me,
        max_chars: page.max_chars,
        history: page.history,
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
    // Formatting a UTC timestamp as RFC 3339 only fails for years outside 0..=9999.
    at.format(&Rfc3339).unwrap_or_default()
}

fn clock(at: OffsetDateTime) -> String {
    at.format(format_description!("[hour]:[minute]"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GuestName, MessageText};

    fn chat(id: u64, text: &str) -> ChatMessage {
        ChatMessage {
            id,
            author: GuestName::parse("guest-00ff").unwrap(),
            sent_at: time::macros::datetime!(2026-11-28 08:16:22 UTC),
            text: MessageText::parse(text, 10_000).unwrap().unwrap(),
        }
    }

    #[test]
    fn a_message_fragment_appends_out_of_band_with_id_author_and_time() {
        let rendered = message(&chat(7, "hello")).unwrap();
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
            let rendered = message(&chat(1, payload)).unwrap();
            let text = rendered.article();
            let inside =
                &text[text.find("<p class=\"text\">").unwrap() + 16..text.rfind("</p>").unwrap()];
            assert!(
                !inside.contains('<') && !inside.contains('>') && !inside.contains('"'),
                "{inside}"
            );
        }
    }

    #[test]
    fn history_replaces_the_list_and_is_never_empty() {
        let empty = history_frame([]);
        assert!(empty.as_str().contains(r#"hx-swap-oob="innerHTML""#));
        assert!(empty.as_str().contains("No messages yet"));

        let one = message(&chat(1, "a")).unwrap();
        let two = message(&chat(2, "b")).unwrap();
        let frame = history_frame([&one, &two]);
        let html = frame.as_str();
        assert!(html.find("msg-1").unwrap() < html.find("msg-2").unwrap());
        assert!(!html.contains("beforeend") && !html.contains("No messages yet"));
    }

    #[test]
    fn notices_are_out_of_band_and_escaped() {
        let html = notice("bad <b>").unwrap();
        assert!(html.as_str().contains(r#"hx-swap-oob="true""#));
        assert!(
            html.as_str().contains("bad &#60;b&#62;") || html.as_str().contains("bad &lt;b&gt;")
        );
    }
}
