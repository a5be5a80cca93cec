//! Search: `/search` and `/rooms/{room}/search` find the messages that contain every
//! word (by stem), newest first, with the matches marked; pages go back with "older
//! results"; edits and deletes are reflected at once; and nothing a reader types or a
//! message says escapes its place in the page.

use std::sync::Arc;

use crate::both_backends;
use crate::changes::{delete, edit, posted};
use crate::support::app::{TestApp, spawn_app, spawn_app_on};
use crate::support::db::TestDb;

/// One result as the page shows it.
#[derive(Debug)]
struct Hit {
    id: u64,
    room: String,
    /// The excerpt's HTML.
    excerpt: String,
}

/// The results on a search page, in page order.
fn hits(body: &str) -> Vec<Hit> {
    body.split(r#"<li class="result">"#)
        .skip(1)
        .map(|item| {
            let after = |start: &str, end: &str| {
                let from = item
                    .find(start)
                    .unwrap_or_else(|| panic!("{start} in {item}"))
                    + start.len();
                item[from..][..item[from..].find(end).unwrap()].to_owned()
            };
            let context = after(r#"<a class="context" href="/rooms/"#, "\"");
            let (room, id) = context.split_once("?around=").unwrap();
            Hit {
                id: id.parse().unwrap(),
                room: room.to_owned(),
                excerpt: after(r#"<p class="excerpt">"#, "</p>"),
            }
        })
        .collect()
}

/// The "older results" link's path, if the page has one.
fn older_link(body: &str) -> Option<String> {
    let from = body.find(r#"id="older-results" href=""#)? + r#"id="older-results" href=""#.len();
    Some(body[from..][..body[from..].find('"').unwrap()].replace("&amp;", "&"))
}

async fn search(app: &TestApp, path: &str) -> Vec<Hit> {
    let response = app.get(path).await;
    assert_eq!(response.status, 200, "{path}: {}", response.body);
    hits(&response.body)
}

/// Stems, rooms, order, marks and paging, on either store.
async fn finds_by_stem_newest_first_and_pages_back(db: Arc<TestDb>) {
    let app = spawn_app_on(db, "127.0.0.1:0", |config| {
        config.message_burst = 100;
        config.ip_message_burst = 100;
    })
    .await;
    let mut general = app.connect_to("general", None).await;
    let mut ops = app.connect_to("ops", None).await;
    let deployed = posted(&mut general, "We deployed the new build").await;
    let unrelated = posted(&mut general, "lunch at noon?").await;
    let deploying = posted(&mut ops, "Deploying to staging now").await;
    let both = posted(&mut ops, "the deploy broke the staging database").await;
    assert!(unrelated > 0);

    // Every form of the word, both rooms, newest first, matches marked.
    let found = search(&app, "/search?q=deploys").await;
    assert_eq!(
        found.iter().map(|h| h.id).collect::<Vec<_>>(),
        [both, deploying, deployed],
        "{found:?}"
    );
    assert_eq!(found[0].room, "ops");
    assert_eq!(found[2].room, "general");
    assert!(
        found[2].excerpt.contains("<mark>deployed</mark>"),
        "{found:?}"
    );
    assert!(
        found[1].excerpt.contains("<mark>Deploying</mark>"),
        "{found:?}"
    );
    // Every word must occur.
    let found = search(&app, "/search?q=deploy+staging").await;
    assert_eq!(
        found.iter().map(|h| h.id).collect::<Vec<_>>(),
        [both, deploying]
    );
    assert!(
        found[0].excerpt.contains("<mark>staging</mark>"),
        "{found:?}"
    );
    // One room only.
    let found = search(&app, "/rooms/general/search?q=deploy").await;
    assert_eq!(found.iter().map(|h| h.id).collect::<Vec<_>>(), [deployed]);
    assert!(search(&app, "/rooms/ops/search?q=lunch").await.is_empty());
    let none = app.get("/search?q=giraffe").await;
    assert!(none.body.contains("No messages contain"), "{}", none.body);

    // 45 matches: three pages of 20, 20 and 5, each below the last, none twice.
    let mut said = Vec::new();
    for n in 0..45 {
        said.push(posted(&mut general, &format!("release {n} is out")).await);
    }
    said.reverse();
    let mut seen = Vec::new();
    let mut next = Some("/search?q=released".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let response = app.get(&path).await;
        assert_eq!(response.status, 200, "{path}");
        seen.extend(hits(&response.body).into_iter().map(|h| h.id));
        next = older_link(&response.body);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, said);
}
both_backends!(finds_by_stem_newest_first_and_pages_back);

/// An edit is found by its new words and no longer by its old ones; a deleted message is
/// never found again. At once: the search after the change sees it.
async fn edits_and_deletes_are_reflected_at_once(db: Arc<TestDb>) {
    let app = spawn_app_on(db, "127.0.0.1:0", |_| {}).await;
    let (cookie, _) = app.visit("/").await;
    let mut alice = app.connect_to("general", Some(&cookie)).await;
    let id = posted(&mut alice, "the giraffe escaped").await;
    assert_eq!(search(&app, "/search?q=giraffe").await.len(), 1);

    edit(&mut alice, id, "the zebra escaped").await;
    alice
        .until("the edit", |page| {
            page.message(id)
                .is_some_and(|m| m.text == "the zebra escaped")
        })
        .await;
    assert!(search(&app, "/search?q=giraffe").await.is_empty());
    let found = search(&app, "/search?q=zebra").await;
    assert_eq!(found.len(), 1);
    assert!(found[0].excerpt.contains("<mark>zebra</mark>"));
    let page = app.get("/search?q=zebra").await;
    assert!(page.body.contains("(edited)"), "{}", page.body);

    delete(&mut alice, id).await;
    alice
        .until("the delete", |page| {
            page.message(id).is_some_and(|m| m.deleted)
        })
        .await;
    for word in ["zebra", "giraffe", "escaped"] {
        assert!(
            search(&app, &format!("/search?q={word}")).await.is_empty(),
            "{word}"
        );
    }
}
both_backends!(edits_and_deletes_are_reflected_at_once);

/// Query syntax of either store, markup in a query or in a message, and broken
/// parameters: each gets a page that says what happened, and nothing is interpreted.
#[tokio::test]
async fn hostile_queries_and_messages_stay_text() {
    let app = spawn_app().await;
    let mut client = app.connect().await;
    let xss = posted(
        &mut client,
        "<script>alert(1)</script> <img src=x onerror=alert(2)> oops",
    )
    .await;
    posted(
        &mut client,
        "a \"quoted\" NEAR(word) AND OR NOT * ^body: line",
    )
    .await;

    let found = search(&app, "/search?q=oops").await;
    assert_eq!(found[0].id, xss);
    assert!(!found[0].excerpt.contains("<script") && !found[0].excerpt.contains("<img"));
    assert!(
        found[0].excerpt.contains("&lt;script&gt;"),
        "{:?}",
        found[0]
    );

    // An excerpt shows the words, not the Markdown.
    client
        .say("see the **bold** plan in the [notes](https://example.com/n)")
        .await;
    client.wait_for_shown(3).await;
    let found = search(&app, "/search?q=notes").await;
    assert_eq!(
        found[0].excerpt,
        "see the bold plan in the <mark>notes</mark>"
    );

    // FTS5 and tsquery operators are only punctuation and words.
    for query in [
        "%22quoted%22",
        "NEAR(word",
        "body%3Aline",
        "*",
        "%5Ebody",
        "quoted%20AND%20OR",
        "%27%29%3B%20DROP%20TABLE%20messages%3B--",
        "x%20%7C%20y%20%26%20!z",
        "word%3A*",
    ] {
        let response = app.get(&format!("/search?q={query}")).await;
        assert!(
            response.status == 200 || response.status == 400,
            "{query}: {} {}",
            response.status,
            response.body
        );
    }
    assert_eq!(search(&app, "/search?q=NEAR(word").await.len(), 1);
    assert_eq!(search(&app, "/search?q=%22quoted%22+body").await.len(), 1);

    // The query is shown back escaped, in the field and the summary.
    let reflected = app.get("/search?q=%3Cscript%3Ealert(3)%3C/script%3E").await;
    assert!(
        !reflected.body.contains("<script>alert(3)"),
        "{}",
        reflected.body
    );
    assert!(
        reflected.body.contains("&#60;script&#62;alert(3)"),
        "{}",
        reflected.body
    );

    // No words, too many, too long: the form, and what to type instead.
    for (query, says) in [
        ("!!!", "Type a word"),
        ("a+b+c+d+e+f+g+h+i", "at most 8 words"),
        (&"ab+".repeat(100)[..], "at most 200 characters"),
    ] {
        let response = app.get(&format!("/search?q={query}")).await;
        assert_eq!(response.status, 400, "{query}");
        assert!(response.body.contains(says), "{query}: {}", response.body);
        assert!(response.body.contains(r#"role="alert""#));
        assert!(response.body.contains(r#"<input id="q""#));
    }
    // No query: just the form.
    let empty = app.get("/rooms/general/search").await;
    assert_eq!(empty.status, 200);
    assert!(empty.body.contains("Search messages in #general"));
    assert!(hits(&empty.body).is_empty());

    for bad in [
        "/search?q=oops&before=0",
        "/search?q=oops&before=x",
        "/search?q=oops&before=-1",
        "/search?q=a&q=b",
    ] {
        let response = app.get(bad).await;
        assert_eq!(response.status, 400, "{bad}");
        assert!(
            response.body.contains("expected ?q=WORDS"),
            "{bad}: {}",
            response.body
        );
    }
    let room = app.get("/rooms/no%20such%20room/search?q=oops").await;
    assert_eq!(room.status, 400);
}

/// The ids of the messages in an HTML fragment, in order.
fn article_ids(html: &str) -> Vec<u64> {
    html.split(r#"<article class="msg"#)
        .skip(1)
        .map(|rest| {
            let from = rest.find(r#"id="msg-"#).unwrap() + r#"id="msg-"#.len();
            rest[from..][..rest[from..].find('"').unwrap()]
                .parse()
                .unwrap()
        })
        .collect()
}

/// The `after` cursor of a "load newer" element, if the fragment has one.
fn newer_cursor(html: &str) -> Option<u64> {
    let from = html.find("/history?after=")? + "/history?after=".len();
    Some(
        html[from..][..html[from..].find('"').unwrap()]
            .parse()
            .unwrap(),
    )
}

/// A search result's link opens the room at the message: the messages around it, then
/// "load newer" and the recent ones (where live messages arrive). Following "load newer"
/// fills in every message between, once each.
#[tokio::test]
async fn a_result_opens_the_room_at_the_message_with_the_present_below() {
    let app = spawn_app_on(Arc::new(TestDb::sqlite()), "127.0.0.1:0", |config| {
        config.message_burst = 200;
        config.ip_message_burst = 200;
    })
    .await;
    let mut client = app.connect().await;
    let mut other = app.connect_to("elsewhere", None).await;
    let elsewhere = posted(&mut other, "not in general").await;
    let mut ids = Vec::new();
    for n in 0..160 {
        ids.push(posted(&mut client, &format!("line {n}")).await);
    }
    let sought = ids[40];
    let found = search(&app, "/rooms/general/search?q=line+40").await;
    assert_eq!(found[0].id, sought);

    let page = app.get(&format!("/rooms/general?around={sought}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!(r#"data-around="{sought}""#)));
    let log = &page.body[page.body.find(r#"id="messages""#).unwrap()..];
    let log = &log[..log
        .find("</div>\n    <p id=\"typing\"")
        .unwrap_or(log.len())];
    let shown = article_ids(log);
    // 25 before it, it, 25 after; then the 50 most recent.
    assert_eq!(&shown[..51], &ids[15..66]);
    assert_eq!(&shown[51..], &ids[110..]);
    assert!(
        log.contains(&format!("/history?before={}", ids[15])),
        "load older"
    );
    let mut after = newer_cursor(log).expect("load newer");
    assert_eq!(after, ids[65]);

    // "Load newer" until it meets what is shown: every message once, in order.
    let mut filled = shown[..51].to_vec();
    loop {
        let next = app
            .get(&format!("/rooms/general/history?after={after}"))
            .await;
        assert_eq!(next.status, 200);
        filled.extend(article_ids(&next.body));
        match newer_cursor(&next.body) {
            Some(cursor) => after = cursor,
            None => break,
        }
    }
    assert_eq!(filled, ids[15..]);

    // When the window and the newest messages overlap they are one list: nothing twice,
    // nothing to load between.
    let overlapping = app
        .get(&format!("/rooms/general?around={}", ids[100]))
        .await;
    assert_eq!(article_ids(&overlapping.body), ids[75..]);
    assert!(newer_cursor(&overlapping.body).is_none());

    // Near the present there is nothing between: no "load newer", nothing twice.
    let recent = app
        .get(&format!("/rooms/general?around={}", ids[150]))
        .await;
    let shown = article_ids(&recent.body);
    assert_eq!(shown, ids[125..]);
    assert!(newer_cursor(&recent.body).is_none());

    // Not a message of this room, or not a message id at all.
    for (path, status) in [
        (format!("/rooms/general?around={elsewhere}"), 404),
        ("/rooms/general?around=999999".to_owned(), 404),
        ("/rooms/general?around=abc".to_owned(), 400),
        ("/rooms/general?around=0".to_owned(), 400),
        ("/rooms/general?around=1&around=2".to_owned(), 400),
        ("/rooms/general/history?after=x".to_owned(), 400),
        ("/rooms/general/history?after=0".to_owned(), 400),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status, status, "{path}: {}", response.body);
        if status == 400 {
            assert!(
                response.body.contains("=ID, where ID is a message id"),
                "{path}"
            );
        }
    }
}

/// Searches count per client address: past `--searches-per-minute` a 429 says when to try
/// again; another address, and the empty form, are not affected.
#[tokio::test]
async fn searches_are_limited_per_client_address() {
    let app = crate::support::app::spawn_app_with(|config| {
        config.trust_proxy = true;
        config.searches_per_minute = 2;
    })
    .await;
    let from = |ip: &'static str| {
        let app = &app;
        async move {
            app.request_with("GET", "/search?q=hello", &[("x-forwarded-for", ip)])
                .await
        }
    };
    for _ in 0..2 {
        assert_eq!(from("203.0.113.7").await.status, 200);
    }
    let refused = from("203.0.113.7").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let wait: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(
        refused.body.contains("Too many searches"),
        "{}",
        refused.body
    );
    assert_eq!(from("203.0.113.8").await.status, 200);
    let form = app
        .request_with("GET", "/search", &[("x-forwarded-for", "203.0.113.7")])
        .await;
    assert_eq!(form.status, 200, "the form alone is not a search");
}

/// A search in one room finds that room's messages only, however alike the names: names
/// that differ by a `-` or `_`, by a final "n" or "s", or one the start of another.
async fn one_room_is_one_room(db: Arc<TestDb>) {
    let app = spawn_app_on(db, "127.0.0.1:0", |config| {
        config.message_burst = 100;
        config.ip_message_burst = 100;
    })
    .await;
    let rooms = [
        "design", "designs", "a-b", "a_b", "ban", "ba", "banner", "n", "e",
    ];
    let mut said = Vec::new();
    for room in rooms {
        let mut client = app.connect_to(room, None).await;
        said.push(posted(&mut client, &format!("launch plan for {room}")).await);
    }
    for (room, id) in rooms.iter().zip(&said) {
        let found = search(&app, &format!("/rooms/{room}/search?q=launch+plans")).await;
        assert_eq!(
            found.iter().map(|h| h.id).collect::<Vec<_>>(),
            [*id],
            "{room}: {found:?}"
        );
    }
    assert_eq!(search(&app, "/search?q=launch").await.len(), rooms.len());
}
both_backends!(one_room_is_one_room);
