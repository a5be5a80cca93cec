//! Turns chat state into HTML: askama templates in, shared bytes out. No I/O, and nothing
//! of the modules above: what a page links to and what a room list shows come in as
//! parameters.
//!
//! Every fragment sent down a socket carries `hx-swap-oob`, because htmx 4 swaps anything
//! else into the connecting element and would wipe the page. A message is rendered once, by
//! [`message`], into a [`Rendered`] whose bytes every session sends as they are.

use std::fmt;
use std::sync::Arc;

use askama::Template;
use time::OffsetDateTime;
use time::macros::format_description;

pub use self::account::{AccountKind, AccountPage, account_page, query_param};
pub use self::history::{history_frame, history_inner, newer_page, older_page, window};
pub use self::markdown::{ALLOWED as ALLOWED_IN_MESSAGES, Body, render as message_body};
pub use self::message::{Rendered, message};
pub use self::moderation::moderation_page;
pub use self::page::{AssetUrls, Page, error_page, page};
pub use self::search::{SearchPage, excerpt, search_page};
pub use self::status::{
    Listed, PRESENCE_SHOWN, RoomCount, UnreadLine, activity, event, mention_news, mention_options,
    not_sent, notice, presence, presence_count, room_list, typing, unread,
};

mod account;
mod history;
mod markdown;
mod message;
mod moderation;
mod page;
mod search;
mod status;

/// What rendering can fail with. Askama only fails on a broken template or a failing
/// `Display` impl, so this is a bug, never the user's fault.
#[derive(Debug, thiserror::Error)]
#[error("rendering a template failed: {0}")]
pub struct RenderError(#[from] askama::Error);

/// Rendered HTML, shared: cloning counts a reference, it does not copy the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Html(Arc<str>);

impl Html {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Html {
    fn from(html: String) -> Self {
        Self(Arc::from(html))
    }
}

impl From<&str> for Html {
    fn from(html: &str) -> Self {
        Self(Arc::from(html))
    }
}

impl fmt::Debug for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Renders a fragment. Our fragment templates only display strings and numbers, which
/// cannot fail; should one ever fail, the fragment is left out and the bug logged, rather
/// than taking the connection down.
fn fragment(template: &impl Template) -> String {
    template.render().unwrap_or_else(|err| {
        tracing::error!(error = %err, "rendering a fragment failed");
        String::new()
    })
}

/// Several frames as one: shared as it is when there is one, concatenated once otherwise.
pub fn join<'a>(frames: impl IntoIterator<Item = &'a Html>) -> Html {
    let frames: Vec<&Html> = frames.into_iter().collect();
    if let [one] = frames.as_slice() {
        return (*one).clone();
    }
    let mut joined = String::with_capacity(frames.iter().map(|f| f.len()).sum());
    for frame in frames {
        joined.push_str(frame.as_str());
    }
    Html::from(joined)
}

/// A stable colour (one of twelve CSS classes) for a name.
fn colour(name: &str) -> u8 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    (hash % 12) as u8
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

    #[test]
    fn several_frames_join_in_order_and_one_is_shared() {
        let a = Html::from("<a/>".to_owned());
        assert_eq!(join([&a]).as_str().as_ptr(), a.as_str().as_ptr());
        let (b, c) = (Html::from("<b/>"), Html::from("<c/>"));
        assert_eq!(join([&a, &b, &c]).as_str(), "<a/><b/><c/>");
    }
}
