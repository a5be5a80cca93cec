//! The page model: what a user sees, kept the way htmx would keep it. Every frame a page
//! receives is swapped in as htmx swaps it (the message list replaced on `innerHTML`,
//! appended to on `beforeend`; the notice, the input, presence, the typing line and the
//! room list out of band), and checked on the way: a link has exactly the safe form, a
//! message text holds no markup. Tests assert on this model, not on HTML.

use std::collections::HashMap;
use std::fmt;

/// One message as a page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownMessage {
    pub id: u64,
    pub author: String,
    /// Empty once deleted.
    pub text: String,
    /// Marked "(edited)".
    pub edited: bool,
    /// Shown as "message deleted".
    pub deleted: bool,
    /// The `data-author` tag a page uses to offer "Edit" and "Delete" on its own messages.
    pub author_tag: Option<String>,
    /// A guest author's mark ("guest #3fa2" shows `3fa2`); `None` for a claimed name.
    pub guest: Option<String>,
    /// The emoji on it: `(emoji, count, who by name)`.
    pub reactions: Vec<(String, usize, String)>,
    /// The message it answers, as its quote shows it.
    pub reply: Option<Quoted>,
}

/// A reply's quote of the message it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    pub id: u64,
    pub author: String,
    /// Empty once deleted.
    pub text: String,
    pub edited: bool,
    pub deleted: bool,
}

/// The parts of a page that frames change: the message list, the notice, presence, the
/// typing line and the room list.
#[derive(Default)]
pub struct PageModel {
    pub shown: Vec<ShownMessage>,
    pub notice: Option<String>,
    /// What leads the list: a "load older" element (with its cursor) or the start.
    pub older: Older,
    /// The value the server last put back into the input, if any.
    pub restored_input: Option<String>,
    /// How many the presence list says are here (listed or not).
    pub present_total: usize,
    /// Who the presence list shows.
    pub present: Vec<String>,
    /// The typing line ("" when nobody types).
    pub typing: String,
    /// The room list: `(room, online)`.
    pub rooms: Vec<(String, usize)>,
    /// Lines like "alice joined".
    pub events: Vec<String>,
    /// How many times each kind of element was swapped (for "nothing else came" checks).
    pub swaps: HashMap<&'static str, usize>,
    /// Unread counts as told (`#unread`, `#unread-news`), by room.
    pub told: HashMap<String, Told>,
    /// Messages elsewhere that mention the reader (`#mention-news`): `(room, author, text)`.
    pub mention_news: Vec<(String, String, String)>,
    /// Each room's counter as last heard (`#activity`).
    pub counters: HashMap<String, u64>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Older {
    /// Nothing leads the list (an empty room).
    #[default]
    Nothing,
    /// "Load older" fetching the messages before this id.
    Before(u64),
    /// "Start of conversation".
    Start,
}

/// One room's unread line as told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Told {
    pub unread: u64,
    /// The room's counter when `unread` was counted.
    pub counter: u64,
    pub mentions: u64,
    /// `all`, `mentions` or `none` (empty in news: unchanged).
    pub notify: String,
}

impl PageModel {
    /// A room's unread count as the page's script computes it: the count told, plus how
    /// far the room's counter moved since; `None` for a room never read.
    pub fn unread(&self, room: &str) -> Option<u64> {
        let told = self.told.get(room)?;
        let now = self.counters.get(room).copied().unwrap_or(told.counter);
        Some(told.unread + now.saturating_sub(told.counter))
    }

    /// The message shown with this id.
    pub fn message(&self, id: u64) -> Option<&ShownMessage> {
        self.shown.iter().find(|m| m.id == id)
    }

    /// The texts of the messages shown, in order.
    pub fn texts(&self) -> Vec<String> {
        self.shown.iter().map(|m| m.text.clone()).collect()
    }

    /// The ids of the messages shown, in order.
    pub fn ids(&self) -> Vec<u64> {
        self.shown.iter().map(|m| m.id).collect()
    }

    /// How many the room list says are in `room`, if it lists the room.
    pub fn online(&self, room: &str) -> Option<usize> {
        self.rooms
            .iter()
            .find(|(name, _)| name == room)
            .map(|(_, count)| *count)
    }

    /// Applies a frame the way htmx would swap it.
    pub fn apply_frame(&mut self, frame: &str) {
        const LIST: &str = r#"<div id="messages" hx-swap-oob=""#;
        let mut rest = frame.trim();
        while !rest.is_empty() {
            if rest.starts_with(r#"<p id="notice""#) {
                let (inner, after) = element(rest, "</p>");
                self.notice = Some(unescape(inner));
                self.count("notice");
                rest = after;
            } else if rest.starts_with(r#"<textarea id="text""#) {
                let end = rest.find('>').unwrap() + 1;
                let tag = &rest[..end];
                assert!(tag.contains(r#"hx-swap-oob="true""#), "{tag}");
                let (inner, after) = element(rest, "</textarea>");
                assert!(!inner.contains(['<', '>', '"']), "{inner}");
                self.restored_input = Some(unescape(inner)).filter(|text| !text.is_empty());
                self.count("input");
                rest = after;
            } else if rest.starts_with(r#"<p id="typing""#) {
                assert_out_of_band(rest);
                let (inner, after) = element(rest, "</p>");
                self.typing = unescape(inner);
                self.count("typing");
                rest = after;
            } else if rest.starts_with(r#"<section id="presence""#) {
                assert_out_of_band(rest);
                let (inner, after) = element(rest, "</section>");
                self.present = inner
                    .split("<li>")
                    .skip(1)
                    .map(|li| {
                        let name = unescape(between(li, "\">", "</span>"));
                        match guest_mark(li) {
                            Some(mark) => format!("{name} #{mark}"),
                            None => name,
                        }
                    })
                    .collect();
                let count: usize = between(
                    inner,
                    "<span id=\"presence-count\" class=\"count\">",
                    "</span>",
                )
                .parse()
                .unwrap();
                if inner.contains("class=\"more\" hidden>") {
                    assert_eq!(count, self.present.len(), "the count matches the list");
                }
                self.present_total = count;
                self.count("presence");
                rest = after;
            } else if rest.starts_with(r#"<span id="presence-count""#) {
                // The names shown are unchanged; only the count moved.
                assert_out_of_band(rest);
                let (inner, after) = element(rest, "</span>");
                self.present_total = inner.parse().unwrap();
                self.count("presence-count");
                rest = after;
            } else if let Some(after) =
                rest.strip_prefix(r#"<div id="activity" hx-swap-oob="true" hidden data-counts=""#)
            {
                let data = &after[..after.find('"').unwrap()];
                for item in data.split(' ').filter(|item| !item.is_empty()) {
                    let (room, count) = item.split_once(':').unwrap();
                    self.counters
                        .insert(room.to_owned(), count.parse().unwrap());
                }
                self.count("activity");
                rest = &after[after.find("</div>").unwrap() + "</div>".len()..];
            } else if rest.starts_with(r#"<div id="mention-news""#) {
                assert_out_of_band(rest);
                let tag = &rest[..rest.find('>').unwrap()];
                self.mention_news.push((
                    between(tag, "data-room=\"", "\"").to_owned(),
                    unescape(between(tag, "data-author=\"", "\"")),
                    unescape(between(tag, "data-text=\"", "\"")),
                ));
                self.count("mention-news");
                rest = &rest[rest.find("</div>").unwrap() + "</div>".len()..];
            } else if rest.starts_with(r#"<div id="unread"#) {
                let full = rest.starts_with(r#"<div id="unread" "#);
                assert_out_of_band(rest);
                let data = between(rest, "data-unread=\"", "\"").to_owned();
                if full {
                    self.told.clear();
                }
                for item in data.split(' ').filter(|item| !item.is_empty()) {
                    let parts: Vec<&str> = item.split(':').collect();
                    assert_eq!(parts.len(), 5, "{item}");
                    let told = Told {
                        unread: parts[1].parse().unwrap(),
                        counter: parts[2].parse().unwrap(),
                        mentions: parts[3].parse().unwrap(),
                        notify: parts[4].to_owned(),
                    };
                    assert!(
                        ["all", "mentions", "none"].contains(&told.notify.as_str())
                            || (!full && told.notify.is_empty()),
                        "{item}"
                    );
                    if full {
                        self.counters.insert(parts[0].to_owned(), told.counter);
                    }
                    self.told.insert(parts[0].to_owned(), told);
                }
                self.count(if full { "unread" } else { "unread-news" });
                rest = &rest[rest.find("</div>").unwrap() + "</div>".len()..];
            } else if rest.starts_with(r#"<p id="presence-more""#) {
                let (_, after) = element(rest, "</p>");
                rest = after;
            } else if rest.starts_with(r#"<nav id="rooms""#) {
                assert_out_of_band(rest);
                let (inner, after) = element(rest, "</nav>");
                self.rooms = inner
                    .split("<li>")
                    .skip(1)
                    .map(|li| {
                        let room = between(li, "data-room=\"", "\"").to_owned();
                        let online = li
                            .split_once("<span class=\"count\"")
                            .map_or(0, |(_, c)| between(c, ">", "</span>").parse().unwrap());
                        (room, online)
                    })
                    .collect();
                self.count("rooms");
                rest = after;
            } else if let Some(after) = rest.strip_prefix(r#"<hx-partial hx-target=".quote-of-"#) {
                // The quote replies to a changed message show: every reply to it here.
                let id: u64 = after[..after.find('"').unwrap()].parse().unwrap();
                let body = &after[after.find('>').unwrap() + 1..];
                let end = body.find("</hx-partial>").unwrap();
                let parsed = parse_articles(&format!(
                    "<article id=\"msg-0\"><header><span class=\"author c0\">x</span></header>{}<p class=\"text\">x</p>",
                    &body[..end]
                ));
                let new_quote = parsed[0].reply.clone().expect("a quote");
                assert_eq!(new_quote.id, id, "the partial targets its own quotes");
                for shown in &mut self.shown {
                    if shown.reply.as_ref().is_some_and(|q| q.id == id) {
                        shown.reply = Some(new_quote.clone());
                    }
                }
                self.count("quote");
                rest = &body[end + "</hx-partial>".len()..];
            } else if let Some(after) = rest.strip_prefix(r##"<hx-partial hx-target="#msg-"##) {
                // A later version of a message (an edit, a delete): it replaces the
                // article with that id where the page shows it, and nothing else.
                let id: u64 = after[..after.find('"').unwrap()].parse().unwrap();
                let tag = &after[..after.find('>').unwrap()];
                assert!(tag.ends_with(r#"" hx-swap="outerHTML""#), "{tag}");
                let body = &after[after.find('>').unwrap() + 1..];
                let end = body
                    .find("</hx-partial>")
                    .unwrap_or_else(|| panic!("unclosed partial in {frame}"));
                let articles = parse_articles(&body[..end]);
                assert_eq!(articles.len(), 1, "one article per partial: {frame}");
                assert_eq!(articles[0].id, id, "the partial targets its own article");
                if let Some(shown) = self.shown.iter_mut().find(|m| m.id == id) {
                    *shown = articles.into_iter().next().unwrap();
                }
                self.count("replace");
                rest = &body[end + "</hx-partial>".len()..];
            } else if let Some(after) = rest.strip_prefix(LIST) {
                let swap = &after[..after.find('"').unwrap()];
                let body = &after[after.find('>').unwrap() + 1..];
                let (older, body) = parse_older(body);
                let end = closing_div(body).unwrap_or_else(|| panic!("unclosed list in {frame}"));
                let content = &body[..end];
                let articles = parse_articles(content);
                match swap {
                    "innerHTML" => {
                        self.shown = articles;
                        self.older = older.unwrap_or(Older::Nothing);
                        self.count("history");
                    }
                    "beforeend" => {
                        assert!(older.is_none(), "an append never carries a loader");
                        self.events.extend(
                            content
                                .split("<p class=\"event\">")
                                .skip(1)
                                .map(|e| unescape(&e[..e.find("</p>").unwrap()])),
                        );
                        self.shown.extend(articles);
                        self.count("append");
                    }
                    other => panic!("unexpected swap {other:?} in {frame}"),
                }
                rest = &body[end + "</div>".len()..];
            } else {
                panic!("unparsed frame content: {rest:?}");
            }
            rest = rest.trim_start();
        }
    }

    fn count(&mut self, kind: &'static str) {
        *self.swaps.entry(kind).or_default() += 1;
    }

    /// Applies a page of older messages the way htmx swaps it over the loader.
    pub fn apply_older_page(&mut self, html: &str) {
        let (older, body) = parse_older(html);
        let mut articles = parse_articles(body);
        articles.append(&mut self.shown);
        self.shown = articles;
        self.older = older.expect("an older page leads with a loader or the start");
    }
}

/// What a failed wait prints as the page it saw last: the newest messages rather than
/// every one of them.
impl fmt::Debug for PageModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let newest = &self.shown[self.shown.len().saturating_sub(3)..];
        f.debug_struct("PageModel")
            .field("shown", &self.shown.len())
            .field("newest", &newest)
            .field("notice", &self.notice)
            .field("older", &self.older)
            .field("restored_input", &self.restored_input)
            .field("present", &self.present)
            .field("present_total", &self.present_total)
            .field("typing", &self.typing)
            .field("rooms", &self.rooms)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Splits a leading "load older" / "start of conversation" element off the list's content.
fn parse_older(body: &str) -> (Option<Older>, &str) {
    if let Some(rest) = body.strip_prefix(r#"<div id="older""#) {
        let before = between(rest, "before=", "\"").parse().unwrap();
        let end = rest.find("</div>").unwrap() + "</div>".len();
        (Some(Older::Before(before)), &rest[end..])
    } else if let Some(rest) = body.strip_prefix(r#"<p id="older""#) {
        let end = rest.find("</p>").unwrap() + "</p>".len();
        assert!(rest[..end].contains("Start of conversation"));
        (Some(Older::Start), &rest[end..])
    } else {
        (None, body)
    }
}

/// Where the `</div>` closing an element whose inside starts `html` is (divs nest: a
/// message's actions are one).
fn closing_div(html: &str) -> Option<usize> {
    let mut depth = 0_usize;
    let mut at = 0;
    loop {
        let open = html[at..].find("<div").map(|i| at + i);
        let close = html[at..].find("</div>").map(|i| at + i)?;
        match open {
            Some(open) if open < close => {
                depth += 1;
                at = open + 4;
            }
            _ if depth == 0 => return Some(close),
            _ => {
                depth -= 1;
                at = close + 6;
            }
        }
    }
}

/// The element `html` starts with is swapped out of band (by its id), as every part of the
/// page but the message list is.
fn assert_out_of_band(html: &str) {
    assert!(
        html[..html.find('>').unwrap()].contains("hx-swap-oob"),
        "{html}"
    );
}

/// An element's inner HTML and what follows it (no nesting of the same tag).
fn element<'a>(html: &'a str, close: &str) -> (&'a str, &'a str) {
    let start = html.find('>').unwrap() + 1;
    let end = html
        .find(close)
        .unwrap_or_else(|| panic!("{close} missing in {html}"));
    (&html[start..end], &html[end + close.len()..])
}

/// Message text with its links turned back into the addresses they show, after checking
/// each link has exactly the safe form.
fn unlink(html: &str) -> String {
    let mut text = String::new();
    let mut rest = html;
    while let Some(at) = rest.find("<a href=\"") {
        text.push_str(&rest[..at]);
        let tag_end = at + rest[at..].find('>').unwrap() + 1;
        let tag = &rest[at..tag_end];
        let href = between(tag, "href=\"", "\"");
        assert!(
            href.starts_with("http://") || href.starts_with("https://"),
            "{tag}"
        );
        assert!(
            tag.ends_with(r#" rel="noopener nofollow ugc" target="_blank">"#),
            "{tag}"
        );
        let close = tag_end + rest[tag_end..].find("</a>").unwrap();
        // A bare address shows itself; a Markdown link shows its label.
        text.push_str(&rest[tag_end..close]);
        rest = &rest[close + "</a>".len()..];
    }
    text.push_str(rest);
    text
}

/// A message body as a reader sees its text: links checked and turned back into what they
/// show, every other element checked against the renderer's allow-list and dropped, line
/// breaks as `\n`, entities decoded; no `<`, `>` or `"` is left unescaped.
fn shown_text(body: &str) -> String {
    let unlinked = unlink(body);
    let mut text = String::new();
    let mut rest = unlinked.as_str();
    while let Some(at) = rest.find('<') {
        text.push_str(&rest[..at]);
        let end = at + rest[at..].find('>').unwrap();
        let tag = rest[at + 1..end].trim_start_matches('/');
        let name: String = tag
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        assert!(
            hubbub::render::ALLOWED_IN_MESSAGES.contains(&name.as_str()) && name != "a",
            "an element outside the allow-list in a message: <{tag}> in {body:?}"
        );
        let attributes = &tag[name.len()..];
        let mention = name == "span"
            && attributes
                .strip_prefix(" class=\"mention\" data-mention=\"")
                .and_then(|key| key.strip_suffix('"'))
                .is_some_and(|key| !key.contains(['"', '<', '>']));
        assert!(
            attributes.is_empty()
                || (name == "ol" && attributes.starts_with(" start=\""))
                || mention,
            "attributes on <{tag}> in {body:?}"
        );
        if name == "br" {
            text.push('\n');
        }
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    assert!(
        !text.contains(['<', '>', '"']),
        "unescaped markup in message text: {text:?}"
    );
    unescape(&text)
}

/// The guest mark after a name (`<span class="guest">guest #3fa2</span>`): four hex digits.
fn guest_mark(html: &str) -> Option<String> {
    let (_, after) = html.split_once("<span class=\"guest\">guest #")?;
    let mark = &after[..after.find("</span>").unwrap()];
    assert!(
        mark.len() == 4 && mark.bytes().all(|b| b.is_ascii_hexdigit()),
        "{html}"
    );
    Some(mark.to_owned())
}

fn parse_articles(html: &str) -> Vec<ShownMessage> {
    html.split("<article")
        .skip(1)
        .map(|article| {
            let id = between(article, "id=\"msg-", "\"").parse().unwrap();
            let author_span = between(article, "<span class=\"author c", "</span>");
            let author = unescape(&author_span[author_span.find('>').unwrap() + 1..]);
            let open = &article[..article.find('>').unwrap()];
            let author_tag = open
                .split_once(" data-author=\"")
                .map(|(_, tag)| tag[..tag.find('"').unwrap()].to_owned());
            let header = between(article, "<header>", "</header>");
            let guest = guest_mark(header);
            let edited = header.contains("<span class=\"edited\">(edited)</span>");
            let reply = article
                .split_once("<a class=\"quote quote-of-")
                .map(|(_, quote)| {
                    let quote = &quote[..quote.find("</a>").unwrap()];
                    let id: u64 = quote[..quote.find('"').unwrap()].parse().unwrap();
                    assert!(quote.contains(&format!("href=\"#msg-{id}\"")), "{quote}");
                    let deleted =
                        quote.contains("<span class=\"quote-text gone\">message deleted</span>");
                    Quoted {
                        id,
                        author: unescape(between(
                            quote,
                            "<span class=\"quote-author\">",
                            "</span>",
                        )),
                        text: if deleted {
                            String::new()
                        } else {
                            let text = between(quote, "<span class=\"quote-text\">", "</span>");
                            assert!(!text.contains(['<', '>', '"']), "{quote}");
                            unescape(text)
                        },
                        edited: quote.contains("<span class=\"edited\">(edited)</span>"),
                        deleted,
                    }
                });
            let deleted = article.contains("<p class=\"text gone\">message deleted</p>");
            let text = if deleted {
                assert!(
                    !edited && open.contains("class=\"msg deleted\""),
                    "{article}"
                );
                String::new()
            } else if article.contains("<p class=\"text\">") {
                shown_text(between(article, "<p class=\"text\">", "</p>"))
            } else {
                shown_text(between(article, "<div class=\"text\">", "</div>"))
            };
            let reactions = article
                .split("<button type=\"button\" class=\"reaction\"")
                .skip(1)
                .map(|button| {
                    let emoji = between(button, "data-emoji=\"", "\"").to_owned();
                    let shown = between(button, "<span aria-hidden=\"true\">", "</span>");
                    let (shown_emoji, count) = shown.rsplit_once(' ').unwrap();
                    assert_eq!(shown_emoji, emoji);
                    let who = unescape(between(
                        button,
                        "<span class=\"who\" aria-hidden=\"true\">",
                        "</span>",
                    ));
                    let label = between(button, "aria-label=\"", "\"");
                    assert!(
                        unescape(label).ends_with(&format!(", {count}: {who}")),
                        "{label}"
                    );
                    (emoji, count.parse().unwrap(), who)
                })
                .collect();
            ShownMessage {
                id,
                author,
                text,
                edited,
                deleted,
                author_tag,
                guest,
                reactions,
                reply,
            }
        })
        .collect()
}

fn between<'a>(haystack: &'a str, start: &str, end: &str) -> &'a str {
    let from = haystack
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in {haystack:?}"))
        + start.len();
    let to = from + haystack[from..].find(end).unwrap();
    &haystack[from..to]
}

fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}
