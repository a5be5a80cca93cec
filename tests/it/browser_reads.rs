//! Unread counts and the "New messages" line in a real browser: a reader who left a room
//! sees its count in the room list (and a screen reader hears "N unread"); coming back,
//! the log starts at a line above the first new message; having read it, the count is
//! gone.

use fantoccini::{Client, Locator};

use crate::support::app::spawn_app;
use crate::support::axe::assert_accessible;
use crate::support::browser::{
    Profiles, browser_tools, open_browser, say, start_driver, wait_for_css, wait_for_text,
    wait_loaded_and_connected,
};
use crate::support::eventually::eventually;

/// The text of a room's link in the room list (its name, and its unread count if shown).
async fn room_link_text(browser: &Client, room: &str) -> String {
    let text = browser
        .execute(
            "return document.querySelector(\"#rooms a[data-room='\" + arguments[0] + \"']\").textContent;",
            vec![serde_json::json!(room)],
        )
        .await
        .unwrap();
    text.as_str().unwrap().to_owned()
}

async fn unread_badge(browser: &Client, room: &str) -> Option<String> {
    let text = browser
        .execute(
            "var b = document.querySelector(\"#rooms a[data-room='\" + arguments[0] + \"'] .unread\");
             return b ? b.textContent : null;",
            vec![serde_json::json!(room)],
        )
        .await
        .unwrap();
    text.as_str().map(str::to_owned)
}

/// The reader's mark in `room` as the server has it (the page it would be served), asked
/// with the browser's own cookies.
async fn server_mark(
    app: &crate::support::app::TestApp,
    browser: &Client,
    room: &str,
) -> Option<u64> {
    let cookies = browser.get_all_cookies().await.unwrap();
    let header = cookies
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ");
    let page = app
        .request_with("GET", &format!("/rooms/{room}"), &[("Cookie", &header)])
        .await;
    let from = page.body.find("data-read=\"")? + "data-read=\"".len();
    page.body[from..][..page.body[from..].find('"').unwrap()]
        .parse()
        .ok()
}

/// The id of the message with this text on the page.
async fn id_of(browser: &Client, text: &str) -> u64 {
    let id = browser
        .execute(
            "var all = document.querySelectorAll('#messages article');
             for (var i = 0; i < all.length; i++) {
               if (all[i].querySelector('.text').textContent === arguments[0]) return all[i].id;
             }
             return null;",
            vec![serde_json::json!(text)],
        )
        .await
        .unwrap();
    id.as_str()
        .unwrap()
        .trim_start_matches("msg-")
        .parse()
        .unwrap()
}

/// Waits until the server holds the reader's mark at `id` in `room`.
async fn wait_for_mark(app: &crate::support::app::TestApp, browser: &Client, room: &str, id: u64) {
    eventually("the reader's mark", async || {
        match server_mark(app, browser, room).await {
            Some(mark) if mark >= id => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

#[tokio::test]
async fn unread_counts_and_the_new_messages_line() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("browser_reads::unread_counts").await
    else {
        return;
    };
    let app = spawn_app().await;
    let mut seeder = app.connect().await;
    for i in 0..40 {
        seeder.say(&format!("earlier {i}")).await;
    }
    seeder.wait_for_shown(40).await;
    let driver = start_driver(&chromedriver).await;
    let profiles =
        Profiles(std::env::temp_dir().join(format!("hubbub-browser-{}-reads", std::process::id())));
    let reader = open_browser(&driver, &chromium, &profiles.0.join("reader")).await;

    // The reader reads general to its end, then goes to another room.
    reader.goto(&app.url("/")).await.unwrap();
    wait_loaded_and_connected(&reader).await;
    wait_for_text(&reader, "earlier 39").await;
    say(&reader, "hello from the reader").await;
    wait_for_text(&reader, "hello from the reader").await;
    // The mark goes out within a second of the last message coming into view.
    let last = id_of(&reader, "hello from the reader").await;
    wait_for_mark(&app, &reader, "general", last).await;
    reader.goto(&app.url("/rooms/design")).await.unwrap();
    wait_loaded_and_connected(&reader).await;
    assert_eq!(unread_badge(&reader, "general").await, None);

    // Three new messages in general: the count appears, live.
    for text in ["news one", "news two", "news three"] {
        seeder.say(text).await;
    }
    eventually("general shows 3 unread", async || {
        match unread_badge(&reader, "general").await {
            Some(badge) if badge == ", 3 unread" => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let link = room_link_text(&reader, "general").await;
    assert_eq!(link, "#general, 3 unread", "the link's name says it");
    assert_accessible(&reader, "a room with unread messages in the list").await;

    // Back in general: a line above the first new message, in view; no count for the room
    // the reader is in.
    reader
        .find(Locator::Css("#rooms a[data-room='general']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_loaded_and_connected(&reader).await;
    wait_for_css(&reader, "#new-line").await;
    let next = reader
        .execute(
            "var line = document.getElementById('new-line');
             var next = line.nextElementSibling;
             var list = document.getElementById('messages').getBoundingClientRect();
             var box = line.getBoundingClientRect();
             return [next.querySelector('.text').textContent, line.textContent,
                     box.top >= list.top - 1 && box.bottom <= list.bottom + 1];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        next,
        serde_json::json!(["news one", "New messages", true]),
        "the line sits above the first new message, in view"
    );
    assert_eq!(unread_badge(&reader, "general").await, None);
    assert_accessible(&reader, "a room opened at its new messages").await;

    // Read now: elsewhere, general counts only what comes next.
    let last = id_of(&reader, "news three").await;
    wait_for_mark(&app, &reader, "general", last).await;
    reader.goto(&app.url("/rooms/design")).await.unwrap();
    wait_loaded_and_connected(&reader).await;
    seeder.say("one more").await;
    eventually("general shows 1 unread", async || {
        match unread_badge(&reader, "general").await {
            Some(badge) if badge == ", 1 unread" => Ok(()),
            other => Err(other),
        }
    })
    .await;

    reader.close().await.unwrap();
    drop(driver);
    drop(profiles);
    app.stop().await;
}

/// Installs a stand-in for the Notification API that records what the page shows (the
/// browser's own permission is kept), and makes the tab look hidden.
async fn record_notifications_while_hidden(browser: &Client) {
    browser
        .execute(
            "window.__shown = [];
             var Real = window.Notification;
             var Spy = function (title, options) {
               window.__shown.push([title, (options && options.body) || '']);
               this.close = function () {};
             };
             Object.defineProperty(Spy, 'permission', { get: function () { return Real.permission; } });
             Spy.requestPermission = function () { return Real.requestPermission(); };
             window.Notification = Spy;
             Object.defineProperty(document, 'visibilityState', { configurable: true, get: function () { return 'hidden'; } });
             document.dispatchEvent(new Event('visibilitychange'));",
            vec![],
        )
        .await
        .unwrap();
}

async fn shown_notifications(browser: &Client) -> Vec<(String, String)> {
    let shown = browser
        .execute("return window.__shown || [];", vec![])
        .await
        .unwrap();
    serde_json::from_value(shown).unwrap()
}

async fn mentions_badge(browser: &Client, room: &str) -> Option<String> {
    let text = browser
        .execute(
            "var b = document.querySelector(\"#rooms a[data-room='\" + arguments[0] + \"'] .mentions\");
             return b ? b.textContent : null;",
            vec![serde_json::json!(room)],
        )
        .await
        .unwrap();
    text.as_str().map(str::to_owned)
}

#[tokio::test]
async fn mentions_are_marked_counted_and_notified() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("browser_reads::mentions").await
    else {
        return;
    };
    let app = spawn_app().await;
    let bob = app.named("Bob").await;
    let mut talk = app.connect_to("general", Some(&bob)).await;
    talk.say("a first message").await;
    let driver = start_driver(&chromedriver).await;
    let profiles = Profiles(
        std::env::temp_dir().join(format!("hubbub-browser-{}-mentions", std::process::id())),
    );
    let reader = open_browser(&driver, &chromium, &profiles.0.join("ada")).await;
    reader.goto(&app.url("/")).await.unwrap();
    wait_loaded_and_connected(&reader).await;
    let name = reader.find(Locator::Css("#name")).await.unwrap();
    name.clear().await.unwrap();
    name.send_keys(&format!("Ada{}", crate::support::browser::ENTER))
        .await
        .unwrap();
    wait_for_css(&reader, "#notice:not(:empty)").await;
    // The page knows whom mentions name from its load.
    reader.goto(&app.url("/")).await.unwrap();
    wait_loaded_and_connected(&reader).await;

    // Notifications: asked for with the button, granted by this browser.
    let button = reader
        .find(Locator::Css("#notifications-on"))
        .await
        .unwrap();
    assert!(button.is_displayed().await.unwrap(), "offered");
    button.click().await.unwrap();
    wait_for_css(&reader, "#notifications-on[hidden]").await;
    let state = reader
        .find(Locator::Css("#notifications-state"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(state, "Browser notifications are on.");
    assert_accessible(&reader, "notifications turned on").await;

    // "@" in the composer offers the people here; Down, then Enter, picks one.
    let composer = reader.find(Locator::Css("#text")).await.unwrap();
    composer.send_keys("hi @").await.unwrap();
    wait_for_css(&reader, "#mention-box [role='option']").await;
    composer.send_keys("b").await.unwrap();
    eventually("only Bob offered", async || {
        let offered = reader
            .execute(
                "return Array.from(document.querySelectorAll('#mention-box [role=option]')).map(o => o.textContent);",
                vec![],
            )
            .await
            .unwrap();
        if offered == serde_json::json!(["Bob"]) { Ok(()) } else { Err(offered) }
    })
    .await;
    let pointing = reader
        .execute(
            "return document.getElementById('text').getAttribute('aria-activedescendant');",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(pointing, serde_json::json!("mention-opt-0"));
    assert_accessible(&reader, "the composer offering names").await;
    composer
        .send_keys(crate::support::browser::ENTER)
        .await
        .unwrap();
    let value = composer.prop("value").await.unwrap();
    assert_eq!(value.as_deref(), Some("hi @bob "), "picked, not sent");
    assert!(
        reader
            .find(Locator::Css("#mention-box [role='option']"))
            .await
            .is_err(),
        "the list closes"
    );
    composer.clear().await.unwrap();

    // Hidden: a mention here is marked and notified; a plain message is not (the default
    // setting: mentions).
    record_notifications_while_hidden(&reader).await;
    talk.say("hey @ada, a question").await;
    talk.say("nothing for ada here").await;
    wait_for_css(&reader, "#messages article.mentions-me").await;
    eventually("the plain message", async || {
        match reader
            .find(Locator::XPath(
                "//p[@class='text' and text()='nothing for ada here']",
            ))
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => Err(err.to_string()),
        }
    })
    .await;
    let marked = reader
        .find(Locator::Css("#messages article.mentions-me .text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(marked, "hey @ada, a question");
    eventually("one notification", async || {
        let shown = shown_notifications(&reader).await;
        if shown.len() == 1 {
            Ok(shown)
        } else {
            Err(shown)
        }
    })
    .await;
    assert_eq!(
        shown_notifications(&reader).await,
        [(
            "Bob mentioned you in #general".to_owned(),
            "hey @ada, a question".to_owned()
        )]
    );

    // Every message, once the room's setting says so.
    reader
        .find(Locator::Css("#notify option[value='all']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_css(&reader, "#notice:not(:empty)").await;
    talk.say("now every message").await;
    eventually("a second notification", async || {
        let shown = shown_notifications(&reader).await;
        if shown.len() == 2 {
            Ok(shown)
        } else {
            Err(shown)
        }
    })
    .await;
    assert_eq!(
        shown_notifications(&reader).await[1],
        ("Bob in #general".to_owned(), "now every message".to_owned())
    );

    // In another room: a mention in general is counted on its link.
    reader.goto(&app.url("/rooms/design")).await.unwrap();
    wait_loaded_and_connected(&reader).await;
    talk.say("@Ada one more thing").await;
    eventually("general's mention count", async || {
        match mentions_badge(&reader, "general").await {
            Some(badge) if badge == ", @1 mention" => Ok(()),
            other => Err(other),
        }
    })
    .await;
    assert_accessible(&reader, "a room with a mention in the list").await;

    reader.close().await.unwrap();
    drop(driver);
    drop(profiles);
    app.stop().await;
}
