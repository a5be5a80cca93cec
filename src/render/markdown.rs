//! A message's text as HTML: a safe subset of Markdown, rendered once per version.
//!
//! Bold, italic, strikethrough, inline code, fenced and indented code blocks, block quotes,
//! lists and links (`http` and `https` only) become their elements; web addresses in plain
//! text become links too. Nothing else does: raw HTML in the text is shown as text, a
//! heading is a paragraph, an image is its description, a link to any other scheme is its
//! text.
//!
//! The renderer writes only the elements in [`ALLOWED`], from fixed strings, and every
//! piece of the user's text through [`escape`]; no HTML the parser passes through is ever
//! written as markup. `fuzz/` checks the output against the same list. That is why there
//! is no second, parsing sanitizer: there is no path from input to markup to sanitize.
//!
//! Most chat lines use no Markdown at all: those skip the parser ([`needs_parser`]).

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::message::{Part, linkify};
use crate::domain::mentions::scan;

/// Every element a message body may contain, and the only attributes: `href`, `rel` and
/// `target` on `a` (the address `http://` or `https://`), `start` on `ol` (a number), and
/// `class="mention"` with `data-mention` (a [`crate::domain::mentions::mention_key`],
/// escaped) on `span`.
pub const ALLOWED: [&str; 13] = [
    "p",
    "br",
    "strong",
    "em",
    "del",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "span",
];

/// A message body: its HTML, and whether it is inline content (one paragraph, shown in a
/// `<p>`) or blocks (shown in a `<div>`).
#[derive(Debug, PartialEq, Eq)]
pub struct Body {
    pub html: String,
    pub inline: bool,
}

/// Renders a message's text.
pub fn render(text: &str) -> Body {
    if !needs_parser(text) {
        let mut html = String::with_capacity(text.len() + 16);
        write_text(&mut html, text, true);
        return Body { html, inline: true };
    }
    let mut writer = Writer {
        out: String::with_capacity(text.len() * 2),
        closers: Vec::new(),
        in_link: 0,
        in_code: false,
        blocks: 0,
        paragraphs: 0,
    };
    let mut options = Options::empty();
    options.insert(Options::ENABLE_STRIKETHROUGH);
    for event in Parser::new_ext(text, options) {
        writer.event(event);
    }
    let Writer {
        mut out,
        blocks,
        paragraphs,
        ..
    } = writer;
    // One paragraph and nothing else: its inside, for a `<p>` like any plain line.
    if blocks == 1 && paragraphs == 1 && out.starts_with("<p>") && out.ends_with("</p>") {
        out.truncate(out.len() - "</p>".len());
        out.drain(.."<p>".len());
        return Body {
            html: out,
            inline: true,
        };
    }
    Body {
        html: out,
        inline: false,
    }
}

/// A message's text (or a piece of it) as the words a reader sees, without Markdown's
/// marks: for search excerpts, which show text, not formatting. A link is its text, code
/// its content, raw HTML the text it is; lines and blocks end with a line break. Plain
/// text comes back as it is. Not HTML: the caller escapes it.
pub(super) fn plain_text(text: &str) -> String {
    if !needs_parser(text) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut options = Options::empty();
    options.insert(Options::ENABLE_STRIKETHROUGH);
    for event in Parser::new_ext(text, options) {
        match event {
            Event::Text(piece)
            | Event::Code(piece)
            | Event::Html(piece)
            | Event::InlineHtml(piece)
            | Event::FootnoteReference(piece)
            | Event::InlineMath(piece)
            | Event::DisplayMath(piece) => out.push_str(&piece),
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::CodeBlock
                | TagEnd::Item
                | TagEnd::HtmlBlock,
            ) if !out.ends_with('\n') => out.push('\n'),
            _ => {}
        }
    }
    let kept = out.trim_end().len();
    out.truncate(kept);
    out
}

/// Whether the text could mean anything to Markdown: an inline marker anywhere, a block
/// marker at its start (a message is trimmed, so that is the start of its first line), or
/// a line break. Plain text is written as it is, without the parser.
fn needs_parser(text: &str) -> bool {
    if text.bytes().any(|b| {
        matches!(
            b,
            b'*' | b'_' | b'~' | b'`' | b'[' | b'<' | b'\\' | b'&' | b'\n' | b'\r'
        )
    }) {
        return true;
    }
    let bytes = text.as_bytes();
    let spaced = |at: usize| bytes.get(at).is_none_or(|b| matches!(b, b' ' | b'\t'));
    match bytes.first() {
        Some(b'>') => true,
        Some(b'#') => {
            let hashes = bytes.iter().take_while(|b| **b == b'#').count();
            hashes <= 6 && spaced(hashes)
        }
        Some(b'-' | b'+') => spaced(1) || bytes.iter().all(|b| matches!(b, b'-' | b' ')),
        Some(b'0'..=b'9') => {
            let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            digits <= 9 && matches!(bytes.get(digits), Some(b'.' | b')')) && spaced(digits + 1)
        }
        _ => false,
    }
}

struct Writer {
    out: String,
    /// What each open element closes with ("" for one written as nothing).
    closers: Vec<&'static str>,
    /// Inside a link: text is not turned into links again.
    in_link: usize,
    /// Inside a code block: text is written as it is, lines and all.
    in_code: bool,
    /// Top-level blocks, and how many of them are paragraphs.
    blocks: usize,
    paragraphs: usize,
}

impl Writer {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => {
                write_text(&mut self.out, &text, self.in_link == 0 && !self.in_code)
            }
            Event::Code(code) => {
                self.out.push_str("<code>");
                escape(&mut self.out, &code);
                self.out.push_str("</code>");
            }
            // Raw HTML is shown as the text it is.
            Event::Html(html) | Event::InlineHtml(html) => {
                let mut lines = html.split('\n').peekable();
                while let Some(line) = lines.next() {
                    escape(&mut self.out, line);
                    if lines.peek().is_some_and(|next| !next.is_empty()) {
                        self.out.push_str("<br>");
                    }
                }
            }
            Event::SoftBreak | Event::HardBreak => self.out.push_str("<br>"),
            Event::Rule => {
                self.top_level_block(false);
                self.out.push_str("<p>———</p>");
            }
            // Not enabled (footnotes, task lists, math): their text, if any, as text.
            Event::FootnoteReference(text) | Event::InlineMath(text) | Event::DisplayMath(text) => {
                escape(&mut self.out, &text)
            }
            Event::TaskListMarker(_) => {}
        }
    }

    fn top_level_block(&mut self, paragraph: bool) {
        if self.closers.is_empty() {
            self.blocks += 1;
            self.paragraphs += usize::from(paragraph);
        }
    }

    fn open(&mut self, open: &str, close: &'static str) {
        self.out.push_str(open);
        self.closers.push(close);
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => {
                self.top_level_block(true);
                self.open("<p>", "</p>");
            }
            // A heading is a paragraph: a chat line does not get to shout in page headings.
            Tag::Heading { .. } => {
                self.top_level_block(false);
                self.open("<p><strong>", "</strong></p>");
            }
            Tag::BlockQuote(_) => {
                self.top_level_block(false);
                self.open("<blockquote>", "</blockquote>");
            }
            // The info string of a fence is neither shown nor used.
            Tag::CodeBlock(_) => {
                self.top_level_block(false);
                self.in_code = true;
                self.open("<pre><code>", "</code></pre>");
            }
            // Raw HTML on lines of its own: shown as text, a paragraph like any other.
            Tag::HtmlBlock => {
                self.top_level_block(true);
                self.open("<p>", "</p>");
            }
            Tag::List(Some(start)) if start != 1 => {
                self.top_level_block(false);
                let open = format!("<ol start=\"{start}\">");
                self.open(&open, "</ol>");
            }
            Tag::List(Some(_)) => {
                self.top_level_block(false);
                self.open("<ol>", "</ol>");
            }
            Tag::List(None) => {
                self.top_level_block(false);
                self.open("<ul>", "</ul>");
            }
            Tag::Item => self.open("<li>", "</li>"),
            Tag::Emphasis => self.open("<em>", "</em>"),
            Tag::Strong => self.open("<strong>", "</strong>"),
            Tag::Strikethrough => self.open("<del>", "</del>"),
            Tag::Link { dest_url, .. } => {
                self.in_link += 1;
                if is_web_address(&dest_url) {
                    let mut open = String::from("<a href=\"");
                    escape(&mut open, &dest_url);
                    open.push_str("\" rel=\"noopener nofollow ugc\" target=\"_blank\">");
                    self.open(&open, "</a>");
                } else {
                    self.open("", "");
                }
            }
            // An image is its description; nothing is loaded from a message.
            Tag::Image { .. } => {
                self.in_link += 1;
                self.open("", "");
            }
            // Everything else (not enabled, or without an element of its own): its
            // contents only.
            _ => self.open("", ""),
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Link | TagEnd::Image => self.in_link = self.in_link.saturating_sub(1),
            TagEnd::CodeBlock => self.in_code = false,
            _ => {}
        }
        if let Some(close) = self.closers.pop() {
            self.out.push_str(close);
        }
    }
}

/// Only `http://` and `https://` addresses with something after the scheme become links.
fn is_web_address(url: &str) -> bool {
    let lower = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    (lower.starts_with("http://") && url.len() > 7) || (lower == "https://" && url.len() > 8)
}

/// Text, escaped, its web addresses made links when `links` is set.
fn write_text(out: &mut String, text: &str, links: bool) {
    if !links {
        escape(out, text);
        return;
    }
    for part in linkify(text) {
        match part {
            Part::Text(text) => write_mentions(out, text),
            Part::Link(url) => {
                out.push_str("<a href=\"");
                escape(out, url);
                out.push_str("\" rel=\"noopener nofollow ugc\" target=\"_blank\">");
                escape(out, url);
                out.push_str("</a>");
            }
        }
    }
}

/// Text, escaped, each `@name` in it marked as a mention: the same bytes for every reader;
/// each page marks the ones that name its reader (by `data-mention`).
fn write_mentions(out: &mut String, text: &str) {
    if !text.contains('@') {
        escape(out, text);
        return;
    }
    let mut written = 0;
    for (range, key) in scan(text) {
        escape(out, &text[written..range.start]);
        out.push_str("<span class=\"mention\" data-mention=\"");
        escape(out, &key);
        out.push_str("\">");
        escape(out, &text[range.clone()]);
        out.push_str("</span>");
        written = range.end;
    }
    escape(out, &text[written..]);
}

/// Escapes text for HTML content and double-quoted attribute values.
pub(super) fn escape(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_the_words_without_the_marks() {
        assert_eq!(plain_text("just words"), "just words");
        assert_eq!(
            plain_text("Forecasting **next** quarter: see the [sheet](https://example.com/q3)"),
            "Forecasting next quarter: see the sheet"
        );
        assert_eq!(plain_text("- one\n- `two`\n\n> three"), "one\ntwo\nthree");
        assert_eq!(plain_text("<b>bold?</b> 1 < 2"), "<b>bold?</b> 1 < 2");
        // Search's match marks pass through, emphasis around them too.
        assert_eq!(
            plain_text("**\u{1}next\u{2}** and ~~\u{1}old\u{2}~~"),
            "\u{1}next\u{2} and \u{1}old\u{2}"
        );
        // A piece cut out of a longer text: what does not close stays text.
        assert_eq!(plain_text("…the **numbers are"), "…the **numbers are");
    }

    fn html(text: &str) -> String {
        render(text).html
    }

    #[test]
    fn plain_lines_skip_the_parser_and_stay_inline() {
        let body = render("see https://example.com/a?b=1&c=2. ok");
        assert!(body.inline);
        assert_eq!(
            body.html,
            "see <a href=\"https://example.com/a?b=1&amp;c=2\" rel=\"noopener nofollow ugc\" target=\"_blank\">https://example.com/a?b=1&amp;c=2</a>. ok"
        );
        for plain in [
            "just words, well-known, e.g. 3.5 apples!",
            "#lt0000002a:3:17:m:123456#",
            "#hashtag",
            "-1 degrees",
            "1.5 hours",
        ] {
            assert!(!needs_parser(plain), "{plain}");
            assert_eq!(render(plain).html, plain);
        }
        for marked in [
            "# title", "- item", "1. first", "> quote", "---", "a_b", "x & y",
        ] {
            assert!(needs_parser(marked), "{marked}");
        }
    }

    #[test]
    fn the_subset_renders() {
        assert_eq!(
            html("**bold** *it* ~~gone~~ `x<y`"),
            "<strong>bold</strong> <em>it</em> <del>gone</del> <code>x&lt;y</code>"
        );
        assert_eq!(
            html("```rust\nfn main() { a < b }\n```"),
            "<pre><code>fn main() { a &lt; b }\n</code></pre>"
        );
        assert_eq!(
            html("> quoted\n\nafter"),
            "<blockquote><p>quoted</p></blockquote><p>after</p>"
        );
        assert_eq!(html("- a\n- b"), "<ul><li>a</li><li>b</li></ul>");
        assert_eq!(
            html("3. c\n4. d"),
            "<ol start=\"3\"><li>c</li><li>d</li></ol>"
        );
        assert_eq!(
            html("[docs](https://docs.rs/x)"),
            "<a href=\"https://docs.rs/x\" rel=\"noopener nofollow ugc\" target=\"_blank\">docs</a>"
        );
        assert_eq!(html("two\nlines"), "two<br>lines");
        assert!(!render("a\n\nb").inline);
        let html_block = render("<div hx-get=\"/x\">x</div>");
        assert!(html_block.inline, "raw HTML alone is one paragraph of text");
        assert_eq!(
            html_block.html,
            "&lt;div hx-get=&quot;/x&quot;&gt;x&lt;/div&gt;"
        );
    }

    #[test]
    fn hostile_input_in_every_construct_stays_text() {
        for payload in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "**<svg onload=alert(1)>**",
            "*<b>x</b>*",
            "~~<iframe src=javascript:alert(1)>~~",
            "`<script>`",
            "```\n<script>alert(1)</script>\n```",
            "> <img src=x onerror=alert(1)>",
            "- <a href=javascript:alert(1)>x</a>",
            "1. <div hx-get=/x hx-trigger=load>",
            "[x](javascript:alert(1))",
            "[x](JAVASCRIPT:alert(1))",
            "[x](data:text/html,<script>alert(1)</script>)",
            "![x](https://evil.example/track.png)",
            "[x](https://a.example/\" onmouseover=\"alert(1))",
            "<javascript:alert(1)>",
            "<https://ok.example/\"><script>>",
            "[x]: javascript:alert(1)\n\n[x]",
            "# <script>",
            "<!-- <script> -->",
            "&lt;script&gt; &#60;img&#62;",
        ] {
            let out = html(payload);
            for tag in tags(&out) {
                assert!(allowed(&tag), "{payload:?} made {tag:?} in {out:?}");
            }
        }
    }

    /// Every tag in `html`, as written.
    fn tags(html: &str) -> Vec<String> {
        html.split('<')
            .skip(1)
            .map(|rest| format!("<{}", &rest[..rest.find('>').expect("closed")]))
            .collect()
    }

    fn allowed(tag: &str) -> bool {
        let inside = tag.trim_start_matches('<').trim_start_matches('/');
        let name: String = inside
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        if !ALLOWED.contains(&name.as_str()) {
            return false;
        }
        let attributes = &inside[name.len()..];
        match name.as_str() {
            "a" => {
                attributes.is_empty()
                    || (attributes.starts_with(" href=\"http")
                        && attributes
                            .ends_with("\" rel=\"noopener nofollow ugc\" target=\"_blank\""))
            }
            "ol" => {
                attributes.is_empty()
                    || attributes
                        .strip_prefix(" start=\"")
                        .and_then(|n| n.strip_suffix('"'))
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            }
            _ => attributes.is_empty(),
        }
    }
}
