//! What is true while people are connected: who is here, who is typing, the rooms and
//! their counts; and the notices only one user sees.

use askama::Template;

use super::{Html, colour, fragment};
use crate::domain::{DisplayName, RoomName};

/// One line of the room list: a room and how many users are in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCount {
    pub room: RoomName,
    pub online: usize,
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticeTemplate<'a> {
    text: &'a str,
}

/// A message for one user only (an error about what they sent), shown above the input.
pub fn notice(text: &str) -> Html {
    Html::from(fragment(&NoticeTemplate { text }))
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
pub(super) fn input(room: &RoomName, max_chars: u32) -> String {
    fragment(&InputTemplate {
        room: room.as_str(),
        max_chars,
        value: "",
        oob: false,
    })
}

/// "Not sent: …" for the sender, with their text put back in the input.
pub fn not_sent(reason: &str, text: &str, room: &RoomName, max_chars: u32) -> Html {
    let mut html = fragment(&NoticeTemplate {
        text: &format!("Not sent: {reason}"),
    });
    html.push_str(&fragment(&InputTemplate {
        room: room.as_str(),
        max_chars,
        value: text,
        oob: true,
    }));
    Html::from(html)
}

#[derive(Template)]
#[template(path = "room_list.html")]
struct RoomListTemplate<'a> {
    rooms: &'a [RoomCount],
    oob: bool,
}

/// The room list with online counts; `oob` for the copy sent down sockets.
pub fn room_list(rooms: &[RoomCount], oob: bool) -> Html {
    Html::from(fragment(&RoomListTemplate { rooms, oob }))
}

#[derive(Template)]
#[template(path = "presence.html")]
struct PresenceTemplate<'a> {
    /// `(name, colour, guest mark)` of those listed.
    names: Vec<(&'a str, u8, Option<&'a str>)>,
    /// Everyone present, listed or not.
    total: usize,
    /// Present but not listed.
    more: usize,
    oob: bool,
}

/// One name in the presence list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: DisplayName,
    /// [`crate::domain::UserId::guest_mark`], for guests who share the name with someone
    /// else present (only guests can: a claimed name is unique).
    pub guest_mark: Option<String>,
}

/// The most names the presence list shows; a big room says "and N more".
pub const PRESENCE_SHOWN: usize = 100;

/// Who is in the room: the first names in list order (at most [`PRESENCE_SHOWN`] are
/// shown) and how many are here in all.
pub fn presence(names: &[Listed], total: usize, oob: bool) -> Html {
    let listed: Vec<(&str, u8, Option<&str>)> = names
        .iter()
        .take(PRESENCE_SHOWN)
        .map(|n| {
            (
                n.name.as_str(),
                colour(n.name.as_str()),
                n.guest_mark.as_deref(),
            )
        })
        .collect();
    let more = total.saturating_sub(listed.len());
    Html::from(fragment(&PresenceTemplate {
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
pub fn presence_count(total: usize, listed: usize) -> Html {
    Html::from(fragment(&PresenceCountTemplate {
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
pub fn typing(names: &[&DisplayName]) -> Html {
    let text = match names {
        [] => String::new(),
        [one] => format!("{one} is typing…"),
        [one, two] => format!("{one} and {two} are typing…"),
        [one, two, three] => format!("{one}, {two} and {three} are typing…"),
        [one, two, rest @ ..] => format!("{one}, {two} and {} others are typing…", rest.len()),
    };
    Html::from(fragment(&TypingTemplate { text: &text }))
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventTemplate<'a> {
    text: &'a str,
}

/// A line in the log that is not a message ("alice joined"); not stored.
pub fn event(text: &str) -> Html {
    Html::from(fragment(&EventTemplate { text }))
}

/// Each room's message counter (`hub::activity`), for pages counting unread messages:
/// `data-counts="general:12 design:3"`. Room names are `a-z 0-9 - _` only.
pub fn activity(counts: &[(&RoomName, u64)]) -> Html {
    let mut data = String::with_capacity(counts.len() * 16);
    for (room, count) in counts {
        if !data.is_empty() {
            data.push(' ');
        }
        data.push_str(&format!("{room}:{count}"));
    }
    Html::from(format!(
        r#"<div id="activity" hx-swap-oob="true" hidden data-counts="{data}"></div>"#
    ))
}

/// A message that mentions the reader, for their pages in other rooms (a mention count,
/// and a notification while the tab is hidden): its room, id, author and the start of
/// its text as words.
pub fn mention_news(room: &RoomName, id: u64, author: &DisplayName, text: &str) -> Html {
    let words: String = super::markdown::plain_text(text)
        .chars()
        .take(140)
        .collect();
    let mut html = format!(
        r#"<div id="mention-news" hx-swap-oob="true" hidden data-room="{room}" data-id="{id}" data-author=""#
    );
    super::markdown::escape(&mut html, author.as_str());
    html.push_str(r#"" data-text=""#);
    super::markdown::escape(&mut html, &words);
    html.push_str(r#""></div>"#);
    Html::from(html)
}

/// Who a mention being typed could name: a list box of the people in the room whose names
/// start so (`names`), each with what choosing it inserts (`@key`); nothing when nobody.
pub fn mention_options(room: &RoomName, names: &[(&DisplayName, String)]) -> Html {
    if names.is_empty() {
        return Html::from(String::new());
    }
    let mut html = format!(
        r#"<ul id="mention-list" class="mention-list" role="listbox" aria-label="Mention someone in #{room}">"#
    );
    for (i, (name, key)) in names.iter().enumerate() {
        html.push_str(&format!(
            r#"<li role="option" id="mention-opt-{i}" aria-selected="{}" data-insert="@"#,
            i == 0
        ));
        super::markdown::escape(&mut html, key);
        html.push_str(r#"">"#);
        super::markdown::escape(&mut html, name.as_str());
        html.push_str("</li>");
    }
    html.push_str("</ul>");
    Html::from(html)
}

/// One room's line in a reader's unread counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadLine<'a> {
    pub room: &'a RoomName,
    pub unread: u32,
    /// The room's counter when `unread` was counted.
    pub counter: u64,
    /// How many of the unread mention the reader.
    pub mentions: u32,
    /// What the reader is notified of there: `all`, `mentions` or `none` (empty: as the page
    /// was told before).
    pub notify: &'static str,
}

/// One reader's unread messages per room, as of a room counter's value
/// (`data-unread="general:3:12:1:mentions"`: room, unread, the counter then, mentions,
/// notifications); `full` says whether it is every room the reader has read (a connect) or
/// news of some (a mark moved).
pub fn unread(rooms: &[UnreadLine<'_>], full: bool) -> Html {
    let mut data = String::with_capacity(rooms.len() * 28);
    for line in rooms {
        if !data.is_empty() {
            data.push(' ');
        }
        data.push_str(&format!(
            "{}:{}:{}:{}:{}",
            line.room, line.unread, line.counter, line.mentions, line.notify
        ));
    }
    let id = if full { "unread" } else { "unread-news" };
    Html::from(format!(
        r#"<div id="{id}" hx-swap-oob="true" hidden data-unread="{data}"></div>"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_room_lists_a_hundred_names_and_counts_the_rest() {
        let names: Vec<Listed> = (0..150)
            .map(|i| Listed {
                name: DisplayName::parse(&format!("user {i:03}")).unwrap(),
                guest_mark: None,
            })
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
        assert!(html.contains(r#"<textarea id="text""#) && html.contains(r#"hx-swap-oob="true""#));
        assert!(
            !html.contains("<text>") && html.contains(">my &#34;&#60;text&#62;&#34;</textarea>")
                || html.contains(">my &quot;&lt;text&gt;&quot;</textarea>"),
            "{html}"
        );
    }
}
