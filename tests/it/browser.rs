//! Two real browsers (headless Chromium through chromedriver) chatting through the page.
//!
//! Skips with a printed reason when Chromium or chromedriver is missing, unless
//! `HUBBUB_REQUIRE_BROWSER` is set (as `.ci/run` does), in which case it fails.
//! `HUBBUB_SCREENSHOTS=folder` also saves the screenshots there (the README's come from it).
//! The browsers themselves are driven through `support::browser`.

use std::net::TcpListener as StdListener;

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::support::app::{spawn_app, spawn_app_on};
use crate::support::axe::assert_accessible;
use crate::support::browser::{
    BROWSER_PATIENCE, ENTER, Profiles, assert_no_csp_violations, author_of, browser_tools,
    open_browser, own_name, present, save_screenshot, say, shown_texts, start_driver,
    take_insertions, texts_of, wait_for_css, wait_for_text, wait_loaded_and_connected,
    watch_announcements, watch_csp, xpath_literal,
};
use crate::support::db::TestDb;
use crate::support::eventually::eventually;
use crate::support::faults::ChildServer;

const ARROW_UP: &str = "\u{E013}";
const ESCAPE: &str = "\u{E00C}";
const CONTROL: &str = "\u{E009}";
const SHIFT: &str = "\u{E008}";

#[tokio::test]
async fn two_browsers_chat_and_hostile_text_stays_text() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("browser::two_browsers_chat").await
    else {
        return;
    };
    let app = spawn_app().await;
    // Earlier conversation, more than the 50 a page starts with.
    const SEEDS: usize = 120;
    let mut seeder = app.connect().await;
    for i in 0..SEEDS {
        seeder.say(&format!("seed {i}")).await;
    }
    seeder.wait_for_shown(SEEDS).await;
    let mut all: Vec<String> = (0..SEEDS).map(|i| format!("seed {i}")).collect();

    let driver = start_driver(&chromedriver).await;
    let profiles =
        Profiles(std::env::temp_dir().join(format!("hubbub-browser-{}-chat", std::process::id())));
    let alice = open_browser(&driver, &chromium, &profiles.0.join("alice")).await;
    let bob = open_browser(&driver, &chromium, &profiles.0.join("bob")).await;

    for browser in [&alice, &bob] {
        browser.goto(&app.url("/")).await.unwrap();
        wait_loaded_and_connected(browser).await;
        watch_csp(browser).await;
    }
    let alice_name = own_name(&alice).await;

    // Alice types and presses Enter: Bob sees it, once, with her name; her input is cleared.
    say(&alice, "hello from alice").await;
    wait_for_text(&bob, "hello from alice").await;
    let author = author_of(&bob, "hello from alice").await;
    assert_eq!(author, alice_name);
    wait_for_text(&alice, "hello from alice").await;
    let value = alice
        .find(Locator::Css("#text"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(
        value.as_deref(),
        Some(""),
        "the input is cleared after sending"
    );

    // Hostile text shows as text and runs nothing.
    let payloads = [
        r#"<img src=x onerror="window.__xss=1">"#,
        "<script>window.__xss=2</script>",
        r#""><svg onload="window.__xss=3">"#,
        r#"<div hx-get="/healthz" hx-trigger="load" hx-on::load="window.__xss=4">x</div>"#,
    ];
    for payload in payloads {
        say(&alice, payload).await;
    }
    say(&alice, "sentinel").await;
    wait_for_text(&bob, "sentinel").await;

    all.push("hello from alice".to_owned());
    all.extend(payloads.iter().map(|p| p.to_string()));
    all.push("sentinel".into());
    let shown = shown_texts(&bob).await;
    assert_eq!(
        shown,
        all[all.len() - shown.len()..],
        "every message exactly once, in order"
    );
    let clean = bob
        .execute(
            "return window.__xss === undefined && document.querySelectorAll('#messages article :not(header, span, time, p, .actions, .actions > button)').length === 0",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(clean, json!(true), "no payload became markup or ran");

    // A newcomer (Bob reloading) sees the recent history, once.
    assert_no_csp_violations(&bob).await;
    bob.goto(&app.url("/")).await.unwrap();
    wait_loaded_and_connected(&bob).await;
    watch_csp(&bob).await;
    wait_for_text(&bob, "sentinel").await;
    assert_eq!(shown_texts(&bob).await, all[all.len() - 50..]);
    watch_announcements(&bob).await;

    // Scrolling to the top loads older messages, page by page, to the start.
    for _ in 0..10 {
        bob.execute("document.getElementById('messages').scrollTop = 0", vec![])
            .await
            .unwrap();
        let shown = shown_texts(&bob).await.len();
        let grew = bob
            .wait()
            .at_most(BROWSER_PATIENCE)
            .for_element(Locator::XPath(&format!(
                "//div[@id='messages'][count(article) > {shown} or p[@id='older']]"
            )))
            .await;
        grew.expect("scrolling up loaded more");
        if bob.find(Locator::Css("#messages > p#older")).await.is_ok() {
            break;
        }
    }
    let start = bob
        .find(Locator::Css("#messages > p#older"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(start, "Start of conversation");
    assert_eq!(
        shown_texts(&bob).await,
        all,
        "the whole history, once, in order"
    );
    // The older messages went in unannounced, and the log is live again for new ones.
    eventually("the log live and not busy again", async || {
        let log = bob
            .execute(
                "const log = document.getElementById('messages');
                 return [log.getAttribute('aria-live'), log.getAttribute('aria-busy')];",
                vec![],
            )
            .await
            .unwrap();
        if log == json!(["polite", null]) {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    let older = take_insertions(&bob).await;
    assert_eq!(
        older.len(),
        all.len() - 50,
        "each older message went in once"
    );
    let read_out: Vec<_> = older.iter().filter(|(_, announced)| *announced).collect();
    assert!(
        read_out.is_empty(),
        "older messages were announced: {read_out:?}"
    );
    assert_accessible(&bob, "the chat after loading older messages to the start").await;

    // And Bob answers: both directions work.
    say(&bob, "hi alice, I see your tests are all text").await;
    wait_for_text(&alice, "hi alice, I see your tests are all text").await;
    assert_eq!(
        take_insertions(&bob).await,
        [("hi alice, I see your tests are all text".to_owned(), true)],
        "a new message is announced, once"
    );
    all.push("hi alice, I see your tests are all text".into());

    save_screenshot(&alice, "screenshot-xss.png").await;
    for browser in [&alice, &bob] {
        assert_no_csp_violations(browser).await;
    }
    // The policy is enforced (and the watch above would see it): an inline script put into
    // the page is refused.
    alice
        .execute(
            "const s = document.createElement('script');
             s.textContent = 'window.pwned = true';
             document.body.appendChild(s);",
            vec![],
        )
        .await
        .unwrap();
    let refused = eventually("the inline script's violation report", async || {
        let seen = alice
            .execute("return window.cspViolations;", vec![])
            .await
            .unwrap();
        if seen.as_array().is_some_and(|v| !v.is_empty()) {
            Ok(seen)
        } else {
            Err(seen)
        }
    })
    .await;
    assert!(refused.to_string().contains("script-src"), "{refused}");
    let pwned = alice.execute("return window.pwned === true;", vec![]).await;
    assert_eq!(pwned.unwrap(), json!(false), "the inline script ran");

    // The server restarts under both pages: they reconnect by themselves (close 1012), and
    // what is sent afterwards shows up once, with nothing duplicated.
    let addr = app.addr.to_string();
    let db = app.stop().await;
    let app = spawn_app_on(db, &addr, |_| {}).await;
    say(&alice, "after the restart").await;
    wait_for_text(&bob, "after the restart").await;
    all.push("after the restart".into());
    // Bob's page put the whole recent history back in on reconnecting, without reading it
    // out (the new message may have come with it or after it).
    let replaced = take_insertions(&bob).await;
    let read_out: Vec<_> = replaced
        .iter()
        .filter(|(text, announced)| *announced && text != "after the restart")
        .collect();
    assert!(
        read_out.is_empty(),
        "the replaced history was announced: {read_out:?}"
    );
    assert!(
        replaced.len() >= 50,
        "the history was replaced: {replaced:?}"
    );
    for browser in [&alice, &bob] {
        let shown = shown_texts(browser).await;
        assert_eq!(
            shown,
            all[all.len() - shown.len()..],
            "no duplicates after the reconnect"
        );
    }
    drop(app);

    alice.close().await.unwrap();
    bob.close().await.unwrap();
    drop(driver);
    drop(profiles);
}

/// Two users in two rooms, a rename, presence, typing, and a server killed (-9) and
/// restarted under open pages.
#[tokio::test]
async fn rooms_names_presence_and_a_killed_server() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("browser::rooms_names_presence").await
    else {
        return;
    };
    let db = TestDb::sqlite();
    let addr = format!(
        "127.0.0.1:{}",
        StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let server = ChildServer::start_on(&db, &addr, &[]).await;
    let url = server.url.clone();

    let driver = start_driver(&chromedriver).await;
    let profiles =
        Profiles(std::env::temp_dir().join(format!("hubbub-browser-{}-rooms", std::process::id())));
    let alice = open_browser(&driver, &chromium, &profiles.0.join("alice")).await;
    let bob = open_browser(&driver, &chromium, &profiles.0.join("bob")).await;

    // Alice is in #design, Bob in #general.
    alice.goto(&format!("{url}/rooms/design")).await.unwrap();
    bob.goto(&format!("{url}/")).await.unwrap();
    wait_loaded_and_connected(&alice).await;
    wait_loaded_and_connected(&bob).await;
    // Bob's room list shows Alice's room with one person in it.
    wait_for_css(&bob, "#rooms a[data-room='design'] + .count").await;
    say(&bob, "anyone in general?").await;
    wait_for_text(&bob, "anyone in general?").await;

    // Alice picks a name with the form.
    let name = alice.find(Locator::Css("#name")).await.unwrap();
    name.clear().await.unwrap();
    name.send_keys(&format!("Alice Liddell{ENTER}"))
        .await
        .unwrap();
    wait_for_css(&alice, "#notice").await;
    alice
        .wait()
        .at_most(BROWSER_PATIENCE)
        .for_element(Locator::XPath(
            "//p[@id='notice' and text()='You are now Alice Liddell.']",
        ))
        .await
        .expect("the rename was confirmed");

    // Bob follows the link to #design: both see each other there.
    // The room list is swapped out of band when its counts change, so the link found may be
    // replaced before the click lands: find it again and retry.
    let mut clicked = false;
    for _ in 0..10 {
        let link = bob
            .find(Locator::Css("#rooms a[data-room='design']"))
            .await
            .unwrap();
        if link.click().await.is_ok() {
            clicked = true;
            break;
        }
    }
    assert!(clicked, "the link to #design could be clicked");
    // The new page, not the old one still on screen, must be the one connected.
    wait_for_css(&bob, ".layout[data-room='design']").await;
    wait_loaded_and_connected(&bob).await;
    let bob_name = own_name(&bob).await;
    alice
        .wait()
        .at_most(BROWSER_PATIENCE)
        .for_element(Locator::XPath(&format!(
            "//section[@id='presence']//li[normalize-space()={}]",
            xpath_literal(&bob_name)
        )))
        .await
        .expect("Alice sees Bob arrive");
    let mut expected = vec!["Alice Liddell".to_owned(), bob_name.clone()];
    expected.sort_by_key(|n| n.to_lowercase());
    assert_eq!(present(&bob).await, expected);
    assert!(
        !shown_texts(&bob)
            .await
            .contains(&"anyone in general?".to_owned()),
        "rooms are separate"
    );

    // Typing shows on the other page, and the message shows the new name.
    bob.find(Locator::Css("#text"))
        .await
        .unwrap()
        .send_keys("hello")
        .await
        .unwrap();
    alice
        .wait()
        .at_most(BROWSER_PATIENCE)
        .for_element(Locator::XPath(&format!(
            "//p[@id='typing' and contains(., {})]",
            xpath_literal(&format!("{bob_name} is typing"))
        )))
        .await
        .expect("Alice sees Bob typing");
    assert_accessible(&alice, "the chat with someone typing").await;
    // What changes all the time is not read out: typing and presence are no live regions.
    let quiet = alice
        .execute(
            "return ['typing', 'presence', 'rooms'].map(id => {
                 const e = document.getElementById(id);
                 return e.getAttribute('aria-live') || e.getAttribute('role') || '';
             });",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        quiet,
        json!(["", "", ""]),
        "typing, presence and rooms stay quiet"
    );
    bob.find(Locator::Css("#text"))
        .await
        .unwrap()
        .send_keys(&format!(" alice{ENTER}"))
        .await
        .unwrap();
    say(&alice, "hi, I was renamed").await;
    wait_for_text(&bob, "hi, I was renamed").await;
    let author = author_of(&bob, "hi, I was renamed").await;
    assert_eq!(author, "Alice Liddell");
    wait_for_text(&alice, "hello alice").await;
    save_screenshot(&alice, "screenshot.png").await;

    // The server is killed under both pages and comes back; Bob sends, and Alice's page,
    // reconnected by itself, shows the message once.
    server.signal("-KILL");
    let _ = server.wait().await;
    wait_for_css(&alice, "#status[data-state='closed']").await;
    assert_accessible(&alice, "the chat while reconnecting").await;
    let server = ChildServer::start_on(&db, &addr, &[]).await;
    say(&bob, "after the crash").await;
    wait_for_text(&alice, "after the crash").await;
    let shown = shown_texts(&alice).await;
    assert_eq!(
        shown,
        ["hello alice", "hi, I was renamed", "after the crash"],
        "everything once, nothing lost"
    );
    // Her signed cookie still names her: the key is kept in the database.
    say(&alice, "still me").await;
    wait_for_text(&bob, "still me").await;
    let author = author_of(&bob, "still me").await;
    assert_eq!(author, "Alice Liddell", "the name survived the restart");

    server.signal("-TERM");
    let _ = server.wait().await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    drop(driver);
    drop(profiles);
}

/// Editing and deleting in a real Chromium: Up in the empty composer edits your last
/// message, Escape cancels an edit and gives the focus back, "Edit" saves with Enter,
/// "Delete" asks first; the other page sees each version in place; only your own messages
/// offer the buttons. The accessibility check runs with the edit form open.
#[tokio::test]
async fn edit_and_delete_in_place() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("browser::edit_and_delete_in_place").await
    else {
        return;
    };
    let app = spawn_app().await;
    let driver = start_driver(&chromedriver).await;
    let profiles = Profiles(
        std::env::temp_dir().join(format!("hubbub-browser-{}-changes", std::process::id())),
    );
    let alice = open_browser(&driver, &chromium, &profiles.0.join("alice")).await;
    let bob = open_browser(&driver, &chromium, &profiles.0.join("bob")).await;
    for browser in [&alice, &bob] {
        browser.goto(&app.url("/")).await.unwrap();
        wait_loaded_and_connected(browser).await;
        watch_csp(browser).await;
    }
    say(&alice, "helo").await;
    say(&alice, "a second thought").await;
    say(&bob, "bob was here").await;
    for browser in [&alice, &bob] {
        wait_for_text(browser, "bob was here").await;
    }
    // Each page offers the buttons on its own messages only.
    let mine = |browser: &Client| {
        let browser = browser.clone();
        async move { texts_of(&browser, "#messages article.mine .text").await }
    };
    assert_eq!(mine(&alice).await, ["helo", "a second thought"]);
    assert_eq!(mine(&bob).await, ["bob was here"]);

    // Up in the empty composer edits Alice's last message; Escape cancels it.
    let input = alice.find(Locator::Css("#text")).await.unwrap();
    input.send_keys(ARROW_UP).await.unwrap();
    wait_for_css(
        &alice,
        "article.editing form.edit-form textarea[name='text']:focus",
    )
    .await;
    assert_accessible(&alice, "a message being edited").await;
    let editing = alice.active_element().await.unwrap();
    assert_eq!(
        editing.prop("value").await.unwrap().as_deref(),
        Some("a second thought")
    );
    editing.send_keys(ESCAPE).await.unwrap();
    let focused = alice
        .execute(
            "return document.activeElement.dataset.act + ' ' + document.querySelectorAll('form.edit-form').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        focused,
        json!("edit 0"),
        "Escape closes the form, focus on Edit"
    );

    // "Edit" on the first message: new text, Enter; both pages show it, marked, in place.
    let first = message_button(&alice, "helo", "edit").await;
    first.click().await.unwrap();
    let field = alice.active_element().await.unwrap();
    field
        .send_keys(&format!("{CONTROL}a{CONTROL}hello, world{ENTER}"))
        .await
        .unwrap();
    for browser in [&alice, &bob] {
        wait_for_text(browser, "hello, world").await;
        wait_for_css(browser, "#messages article:first-of-type .edited").await;
        assert_eq!(
            shown_texts(browser).await,
            ["hello, world", "a second thought", "bob was here"]
        );
    }

    // Bob reacts with the keyboard: "React" opens the picker, its first emoji has the
    // focus, Enter puts it on; the focus comes back to "React".
    let react = message_button(&bob, "hello, world", "pick").await;
    react.send_keys(ENTER).await.unwrap();
    wait_for_css(&bob, "#picker:not([hidden]) button[data-emoji='👍']:focus").await;
    assert_accessible(&bob, "the reaction picker open").await;
    bob.active_element()
        .await
        .unwrap()
        .send_keys(ENTER)
        .await
        .unwrap();
    for browser in [&alice, &bob] {
        wait_for_css(
            browser,
            "#messages article:first-of-type button.reaction[data-emoji='👍']",
        )
        .await;
    }
    wait_for_css(&bob, "#picker[hidden]").await;
    let back = bob
        .execute("return document.activeElement.dataset.act;", vec![])
        .await
        .unwrap();
    assert_eq!(back, json!("pick"), "the focus is back on React");
    // Pressed for Bob, not for Alice; Alice's click adds hers; the label names both.
    let pressed = "return [...document.querySelectorAll('#messages button.reaction')].map(b => b.getAttribute('aria-pressed') + ' ' + b.getAttribute('aria-label'));";
    let bob_name = own_name(&bob).await;
    let alice_name = own_name(&alice).await;
    assert_eq!(
        bob.execute(pressed, vec![]).await.unwrap(),
        json!([format!("true thumbs up, 1: {bob_name}")])
    );
    assert_eq!(
        alice.execute(pressed, vec![]).await.unwrap(),
        json!([format!("false thumbs up, 1: {bob_name}")])
    );
    let thumb = alice
        .find(Locator::Css("#messages button.reaction[data-emoji='👍']"))
        .await
        .unwrap();
    thumb.click().await.unwrap();
    let both = json!([format!("true thumbs up, 2: {bob_name}, {alice_name}")]);
    eventually("Alice's reaction", async || {
        let now = alice.execute(pressed, vec![]).await.unwrap();
        if now == both { Ok(()) } else { Err(now) }
    })
    .await;

    // Bob replies: "Reply" says what he answers above the composer, where the focus goes;
    // the sent reply quotes it, linked, on both pages; the bar goes away.
    message_button(&bob, "hello, world", "reply")
        .await
        .click()
        .await
        .unwrap();
    wait_for_css(&bob, "#replying:not([hidden])").await;
    let bar = bob
        .find(Locator::Css("#replying-text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(bar, format!("Replying to {alice_name}: hello, world"));
    assert_accessible(&bob, "replying to a message").await;
    bob.active_element()
        .await
        .unwrap()
        .send_keys(&format!("agreed{ENTER}"))
        .await
        .unwrap();
    for browser in [&alice, &bob] {
        wait_for_text(browser, "agreed").await;
        let quote = browser
            .execute(
                "const q = [...document.querySelectorAll('#messages article')].pop().querySelector('a.quote');
                 const first = document.querySelector('#messages article');
                 return [q.getAttribute('href') === '#' + first.id, q.querySelector('.quote-text').textContent];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(quote, json!([true, "hello, world"]));
    }
    wait_for_css(&bob, "#replying[hidden]").await;

    // "Delete" asks; dismissed, nothing happens; accepted, both pages show it deleted.
    message_button(&alice, "a second thought", "delete")
        .await
        .click()
        .await
        .unwrap();
    alice.dismiss_alert().await.unwrap();
    message_button(&alice, "a second thought", "delete")
        .await
        .click()
        .await
        .unwrap();
    alice.accept_alert().await.unwrap();
    for browser in [&alice, &bob] {
        wait_for_css(browser, "#messages article.deleted .text.gone").await;
        assert_eq!(
            texts_of(browser, "#messages article .text").await,
            ["hello, world", "message deleted", "bob was here", "agreed"]
        );
    }
    // Markdown renders; hostile HTML in it stays text; editing it starts from the text as
    // written (the page fetches it), not from what is shown.
    let marked = "**bold** `code` [link](javascript:alert(1)) <img src=x onerror=window.__xss=5>";
    say(&alice, marked).await;
    wait_for_css(&bob, "#messages article:last-of-type .text strong").await;
    let rendered = bob
        .execute(
            "const t = document.querySelector('#messages article:last-of-type .text');
             return [t.querySelector('strong').textContent, t.querySelector('code').textContent,
                     t.querySelectorAll('a, img').length, window.__xss === undefined, t.textContent];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        rendered,
        json!([
            "bold",
            "code",
            0,
            true,
            "bold code link <img src=x onerror=window.__xss=5>"
        ])
    );
    // Shift+Enter is a new line in the composer, so a list can be written; Enter sends.
    let input = alice.find(Locator::Css("#text")).await.unwrap();
    input
        .send_keys(&format!("- one{SHIFT}{ENTER}{SHIFT}- two{ENTER}"))
        .await
        .unwrap();
    wait_for_css(
        &bob,
        "#messages article:last-of-type .text ul li:nth-child(2)",
    )
    .await;
    assert_eq!(
        texts_of(&bob, "#messages article:last-of-type .text li").await,
        ["one", "two"]
    );
    let rows = alice
        .execute("return document.getElementById('text').rows;", vec![])
        .await
        .unwrap();
    assert_eq!(rows, json!(1), "the composer shrinks back once sent");
    // Up edits the last message: the field holds it as written, line break and all.
    input.send_keys(ARROW_UP).await.unwrap();
    edit_field_holds_then_cancel(&alice, "- one\n- two").await;
    // The Markdown message before it, edited from its source.
    alice
        .execute(
            "const a = [...document.querySelectorAll('#messages article.mine')]
                 .find(a => a.querySelector('.text strong'));
             a.querySelector('button[data-act=\"edit\"]').click();",
            vec![],
        )
        .await
        .unwrap();
    edit_field_holds_then_cancel(&alice, marked).await;
    assert_accessible(&bob, "the chat with an edited and a deleted message").await;
    // The README's picture: from the top of the log, nothing focused.
    alice
        .execute(
            "document.activeElement.blur(); document.getElementById('messages').scrollTop = 0;",
            vec![],
        )
        .await
        .unwrap();
    save_screenshot(&alice, "screenshot-changes.png").await;
    for browser in [&alice, &bob] {
        assert_no_csp_violations(browser).await;
    }
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    drop(driver);
    drop(profiles);
}

/// A button ("edit", "delete") of the message with exactly this text, shown as it is when
/// the focus is on the message (they show on hover or focus).
async fn message_button(browser: &Client, text: &str, act: &str) -> fantoccini::elements::Element {
    let xpath = format!(
        "//article[p[@class='text' and text()={}]]//button[@data-act='{act}']",
        xpath_literal(text)
    );
    let button = browser.find(Locator::XPath(&xpath)).await.unwrap();
    browser
        .execute(
            "arguments[0].focus();",
            vec![serde_json::to_value(&button).unwrap()],
        )
        .await
        .unwrap();
    button
}

/// Waits until the open edit field has the focus and holds `source` (the page fetches the
/// text as written), then cancels with Escape.
async fn edit_field_holds_then_cancel(browser: &Client, source: &str) {
    wait_for_css(browser, "form.edit-form textarea[name='text']:focus").await;
    eventually("the edit field to hold the text as written", async || {
        let value = browser
            .execute("return document.activeElement.value;", vec![])
            .await
            .unwrap();
        if value == json!(source) {
            Ok(())
        } else {
            Err(value)
        }
    })
    .await;
    browser
        .active_element()
        .await
        .unwrap()
        .send_keys(ESCAPE)
        .await
        .unwrap();
}

/// A reply's quote links to what it answers; when that is older than the page has loaded,
/// following the link loads older messages until it is there, then takes you to it.
#[tokio::test]
async fn a_quote_of_an_old_message_brings_it_into_view() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("browser::a_quote_of_an_old_message").await
    else {
        return;
    };
    let app = spawn_app().await;
    let mut seeder = app.connect().await;
    seeder.say("the original question").await;
    let original = seeder.wait_for_shown(1).await[0].id;
    for i in 0..120 {
        seeder.say(&format!("chatter {i}")).await;
    }
    let answer = json!({"text": "the answer, much later", "reply_to": original.to_string()});
    seeder.send_raw(answer.to_string()).await;
    seeder.wait_for_shown(122).await;

    let driver = start_driver(&chromedriver).await;
    let profiles =
        Profiles(std::env::temp_dir().join(format!("hubbub-browser-{}-quote", std::process::id())));
    let browser = open_browser(&driver, &chromium, &profiles.0.join("reader")).await;
    browser.goto(&app.url("/")).await.unwrap();
    wait_loaded_and_connected(&browser).await;
    wait_for_text(&browser, "the answer, much later").await;
    let target = format!("msg-{original}");
    let loaded = browser
        .execute(
            "return document.getElementById(arguments[0]) !== null;",
            vec![json!(target)],
        )
        .await
        .unwrap();
    assert_eq!(loaded, json!(false), "the original is not on the page yet");
    browser
        .find(Locator::Css("#messages article:last-of-type a.quote"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the original, loaded and focused", async || {
        let state = browser
            .execute(
                "const a = document.activeElement;
                 return [a.id, a.classList.contains('sought'), a.querySelector('.text') && a.querySelector('.text').textContent];",
                vec![],
            )
            .await
            .unwrap();
        if state == json!([target, true, "the original question"]) {
            Ok(())
        } else {
            Err(state)
        }
    })
    .await;
    browser.close().await.unwrap();
    drop(driver);
    drop(profiles);
}

/// Searching in a real Chromium: the sidebar's box finds a message by another form of its
/// word, marked; its link opens the room at that message (scrolled to, marked, focused),
/// with live messages still arriving below; "load newer" fills in between, every message
/// once. The accessibility check runs on the results and on the room opened at one.
#[tokio::test]
async fn search_and_open_a_result_in_its_room() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("browser::search_and_open_a_result_in_its_room").await
    else {
        return;
    };
    let app = spawn_app().await;
    let mut seeder = app.connect().await;
    seeder.say("the quarterly forecast is ready").await;
    seeder
        .say("Forecasting **next** quarter: the numbers are in the [sheet](https://example.com/q3)")
        .await;
    let seeded = seeder.wait_for_shown(2).await;
    let (first, sought) = (seeded[0].id, seeded[1].id);
    for i in 0..90 {
        seeder.say(&format!("chatter {i}")).await;
    }
    seeder.wait_for_shown(92).await;

    let driver = start_driver(&chromedriver).await;
    let profiles = Profiles(
        std::env::temp_dir().join(format!("hubbub-browser-{}-search", std::process::id())),
    );
    let browser = open_browser(&driver, &chromium, &profiles.0.join("reader")).await;
    browser.goto(&app.url("/")).await.unwrap();
    wait_loaded_and_connected(&browser).await;
    let search = browser.find(Locator::Css("#search-q")).await.unwrap();
    search
        .send_keys(&format!("forecasts{ENTER}"))
        .await
        .unwrap();
    wait_for_css(&browser, "#results mark").await;
    assert_eq!(
        texts_of(&browser, "#results mark").await,
        ["Forecasting", "forecast"]
    );
    assert_eq!(
        texts_of(&browser, "#summary").await,
        ["Messages containing forecasts, newest first."]
    );
    assert_accessible(&browser, "search results").await;
    save_screenshot(&browser, "screenshot-search.png").await;

    browser
        .find(Locator::Css("#results a.context"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_loaded_and_connected(&browser).await;
    watch_csp(&browser).await;
    let target = format!("msg-{sought}");
    eventually("the result, shown, marked and focused", async || {
        let state = browser
            .execute(
                "const a = document.activeElement;
                 return [a.id, a.classList.contains('sought'), !!document.getElementById('newer')];",
                vec![],
            )
            .await
            .unwrap();
        if state == json!([target, true, true]) {
            Ok(())
        } else {
            Err(state)
        }
    })
    .await;
    assert_accessible(&browser, "a room opened at a search result").await;

    // Live messages still arrive, below the recent ones.
    seeder.say("said while reading the past").await;
    wait_for_text(&browser, "said while reading the past").await;

    // The server restarts: on reconnecting, the page reloads at the same message (what it
    // kept could have changed meanwhile), recent messages and all.
    browser
        .execute("window.beforeRestart = true;", vec![])
        .await
        .unwrap();
    let addr = app.addr.to_string();
    drop(seeder);
    let db = app.stop().await;
    let app = spawn_app_on(db, &addr, |_| {}).await;
    let mut seeder = app.connect().await;
    seeder.say("said after a restart").await;
    eventually("the page reloaded at the result", async || {
        let state = browser
            .execute(
                "return [window.beforeRestart === undefined, document.readyState,
                         !!document.getElementById(arguments[0]),
                         document.body.dataset.ws || ''];",
                vec![json!(target)],
            )
            .await
            .unwrap_or_else(|err| json!(err.to_string()));
        if state == json!([true, "complete", true, "open"]) {
            Ok(())
        } else {
            Err(state)
        }
    })
    .await;
    wait_for_text(&browser, "said after a restart").await;
    watch_csp(&browser).await;

    // Scrolling down loads the messages in between until the two parts meet.
    eventually("the window joined to the present", async || {
        let left = browser
            .execute(
                "const n = document.getElementById('newer');
                 if (n) n.scrollIntoView({block: 'center'});
                 return !!n;",
                vec![],
            )
            .await
            .unwrap();
        if left == json!(false) {
            Ok(())
        } else {
            Err(left)
        }
    })
    .await;
    let ids = browser
        .execute(
            "return Array.from(document.querySelectorAll('#messages article.msg'), a => Number(a.id.slice(4)));",
            vec![],
        )
        .await
        .unwrap();
    let ids: Vec<u64> = serde_json::from_value(ids).unwrap();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, once each: {ids:?}"
    );
    assert_eq!(ids.first(), Some(&first), "the room's first: {ids:?}");
    assert_eq!(ids.len(), 94, "every message, once: {ids:?}");
    assert_no_csp_violations(&browser).await;
    browser.close().await.unwrap();
    drop(driver);
    drop(profiles);
}
