//! Every page state the browser tests reach passes axe-core's WCAG 2.0/2.1/2.2 A and AA
//! rules and best practices (`support::axe`), in the light and the dark colour scheme, at
//! desktop width and on a phone (390×844): the chat with its history, after a message
//! arrives live, with a notice shown, search results, the account pages (claiming a name,
//! signing in, each refused, the account page, a password changed, the chat signed in and
//! as a read-only guest) and the error pages. And one whole session driven
//! with the keyboard alone. `HUBBUB_SCREENSHOTS=docs` saves the README's phone pictures.

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, Locator};
use serde_json::json;

use crate::support::app::{spawn_app, spawn_app_with};
use crate::support::axe::assert_accessible;
use crate::support::browser::{
    BROWSER_PATIENCE, ENTER, Profiles, browser_tools, open_browser_with, save_screenshot, say,
    start_driver, wait_for_css, wait_for_text, wait_loaded_and_connected,
};

const PASSWORD: &str = "a long and memorable phrase";

/// Desktop, then a phone held upright.
const SIZES: [(u32, u32); 2] = [(1280, 800), (390, 844)];

#[tokio::test]
async fn every_page_state_passes_the_accessibility_check_in_both_schemes_and_sizes() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("accessibility::every_page_state").await
    else {
        return;
    };
    // Every size signs in as "Taken" a few times.
    let app = spawn_app_with(|config| config.sign_ins_per_name_per_minute = 1000).await;
    let read_only = spawn_app_with(|config| {
        config.guests = hubbub::config::Guests::ReadOnly;
    })
    .await;
    // A claimed name, for the refused sign-up and the sign-ins.
    let claimed = app
        .request_body(
            "POST",
            "/signup",
            &[
                ("Origin", &app.url("")),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &format!("name=Taken&password={}", PASSWORD.replace(' ', "+")),
        )
        .await;
    assert_eq!(claimed.status, 303, "{}", claimed.body);
    // "Taken" moderates, and has banned someone: the moderators' page has a list.
    let (granted, _, err) = crate::moderation::admin(&app.db, &["grant", "Taken"]);
    assert!(granted, "{err}");
    crate::moderation::signed_up(&app, "Spammer").await;
    let taken = claimed
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let banned = app
        .request_body(
            "POST",
            "/moderation/ban",
            &[
                ("Cookie", &taken),
                ("Origin", &app.url("")),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "name=Spammer",
        )
        .await;
    assert_eq!(banned.status, 303, "{}", banned.body);
    // More history than a page starts with, so "load older" is on the page too; long
    // words and links, as people write them.
    let mut seeder = app.connect().await;
    for i in 0..60 {
        seeder
            .say(&format!(
                "earlier message {i}: see https://example.com/a/very/long/path/{i}?with=query \
                 and a longwordwithoutanybreaksthatmustwrapinsteadofscrolling{i}"
            ))
            .await;
    }
    seeder.wait_for_shown(60).await;

    let driver = start_driver(&chromedriver).await;
    let profiles =
        Profiles(std::env::temp_dir().join(format!("hubbub-browser-{}-a11y", std::process::id())));
    // Chromium reports the forced scheme to pages as `prefers-color-scheme`.
    for (scheme, switches) in [
        ("light", &["--blink-settings=preferredColorScheme=1"][..]),
        ("dark", &["--blink-settings=preferredColorScheme=0"][..]),
    ] {
        let browser =
            open_browser_with(&driver, &chromium, &profiles.0.join(scheme), switches).await;
        for (width, height) in SIZES {
            let at = format!("{scheme}, {width}×{height}");
            fit_viewport(&browser, width, height).await;
            browser.goto(&app.url("/")).await.unwrap();
            wait_loaded_and_connected(&browser).await;
            let dark = browser
                .execute(
                    "return matchMedia('(prefers-color-scheme: dark)').matches;",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(
                dark,
                json!(scheme == "dark"),
                "the page sees the {scheme} scheme"
            );
            wait_for_css(&browser, "#messages article:nth-of-type(50)").await;
            assert_accessible(&browser, &format!("the chat with its history ({at})")).await;
            if width >= 700 {
                every_name_colour(&browser, &at).await;
            }

            assert_fits(&browser, &format!("the chat with its history ({at})")).await;
            // The README's phone pictures are the light ones.
            let shoot = scheme == "light" && width < 700;
            if width < 700 {
                phone_sidebar(&browser, &at, shoot).await;
            }

            let live = format!("a live message for the {scheme} page at {width} px");
            seeder.say(&live).await;
            wait_for_text(&browser, &live).await;
            assert_accessible(&browser, &format!("the chat after a live message ({at})")).await;
            if shoot {
                save_screenshot(&browser, "screenshot-phone.png").await;
            }

            let name = browser.find(Locator::Css("#name")).await.unwrap();
            name.clear().await.unwrap();
            name.send_keys(&format!("Reader {width}{ENTER}"))
                .await
                .unwrap();
            if let Err(err) = browser
                .wait()
                .at_most(BROWSER_PATIENCE)
                .for_element(Locator::XPath(&format!(
                    "//p[@id='notice' and text()='You are now Reader {width}.']"
                )))
                .await
            {
                // What the page shows instead, for the failure message.
                let shown = browser
                    .execute(
                        "return [document.getElementById('notice')?.outerHTML, \
                                 document.getElementById('name')?.value, \
                                 document.getElementById('status')?.textContent];",
                        vec![],
                    )
                    .await;
                panic!("the rename's notice is shown ({at}): {err}; the page: {shown:?}");
            }
            assert_accessible(&browser, &format!("the chat with a notice ({at})")).await;

            // The longest names there are, unbroken: a room of 64 characters, a display
            // name of 32, in a message with a long word. All of it wraps.
            let long_room = "r".repeat(64);
            browser
                .goto(&app.url(&format!("/rooms/{long_room}")))
                .await
                .unwrap();
            wait_loaded_and_connected(&browser).await;
            let name = browser.find(Locator::Css("#name")).await.unwrap();
            name.clear().await.unwrap();
            name.send_keys(&format!("{}{ENTER}", "W".repeat(32)))
                .await
                .unwrap();
            wait_for_css(&browser, "#notice:not(:empty)").await;
            let long = format!("{}{width}", "unbroken".repeat(12));
            say(&browser, &long).await;
            wait_for_text(&browser, &long).await;
            assert_fits(&browser, &format!("the longest names ({at})")).await;
            assert_accessible(&browser, &format!("the longest names ({at})")).await;

            // Searching that room for the long word: the results wrap too, and the
            // marked word is as readable as the rest.
            browser
                .goto(&app.url(&format!("/rooms/{long_room}/search?q={long}")))
                .await
                .unwrap();
            wait_for_css(&browser, "#results mark").await;
            assert_fits(&browser, &format!("search results ({at})")).await;
            assert_accessible(&browser, &format!("search results ({at})")).await;
            for (path, what) in [
                ("/search", "the search form"),
                ("/search?q=%21%21", "a search without words"),
                (
                    "/search?q=nothingmatchesthis",
                    "a search that finds nothing",
                ),
            ] {
                browser.goto(&app.url(path)).await.unwrap();
                wait_for_css(&browser, "#q").await;
                assert_accessible(&browser, &format!("{what} ({at})")).await;
            }

            account_pages(&browser, &app, &at).await;
            browser.goto(&read_only.url("/")).await.unwrap();
            wait_loaded_and_connected(&browser).await;
            assert_fits(&browser, &format!("the chat for a read-only guest ({at})")).await;
            assert_accessible(&browser, &format!("the chat for a read-only guest ({at})")).await;

            for (path, what) in [
                ("/no-such-page", "404"),
                ("/rooms/not%20a%20room", "400"),
                ("/rooms/general/ws", "426"),
            ] {
                browser.goto(&app.url(path)).await.unwrap();
                let title = browser.title().await.unwrap();
                assert!(title.starts_with(what), "{path}: {title}");
                assert_accessible(&browser, &format!("the {what} error page ({at})")).await;
            }
        }
        browser.close().await.unwrap();
    }
    drop(driver);
    drop(profiles);
}

/// Fills a field and sends its form.
async fn fill(browser: &Client, fields: &[(&str, &str)], submit: &str) {
    for (css, text) in fields {
        let field = browser.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }
    browser
        .find(Locator::Css(submit))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The account pages, each state: the sign-up form and a refused sign-up, the sign-in form
/// and a refused sign-in, the chat signed in, the moderators' page, the account page and a
/// password changed; then signs out.
async fn account_pages(browser: &Client, app: &crate::support::app::TestApp, at: &str) {
    let submit = ".account-form button[type='submit']";
    browser.goto(&app.url("/signup")).await.unwrap();
    wait_for_css(browser, "#password").await;
    assert_fits(browser, &format!("the sign-up form ({at})")).await;
    assert_accessible(browser, &format!("the sign-up form ({at})")).await;
    fill(
        browser,
        &[("#name", "taken"), ("#password", PASSWORD)],
        submit,
    )
    .await;
    wait_for_css(browser, "#form-error").await;
    assert_accessible(browser, &format!("a refused sign-up ({at})")).await;

    browser.goto(&app.url("/login")).await.unwrap();
    wait_for_css(browser, "#password").await;
    assert_accessible(browser, &format!("the sign-in form ({at})")).await;
    fill(
        browser,
        &[("#name", "Taken"), ("#password", "not the right one")],
        submit,
    )
    .await;
    wait_for_css(browser, "#form-error").await;
    assert_accessible(browser, &format!("a refused sign-in ({at})")).await;
    fill(browser, &[("#password", PASSWORD)], submit).await;
    wait_loaded_and_connected(browser).await;
    wait_for_css(browser, ".account-links a[href='/account']").await;
    assert_fits(browser, &format!("the chat signed in ({at})")).await;
    assert_accessible(browser, &format!("the chat signed in ({at})")).await;

    browser.goto(&app.url("/moderation")).await.unwrap();
    wait_for_css(browser, "#ban-name").await;
    assert_fits(browser, &format!("the moderators' page ({at})")).await;
    assert_accessible(browser, &format!("the moderators' page ({at})")).await;

    browser.goto(&app.url("/account")).await.unwrap();
    wait_for_css(browser, "#current").await;
    assert_fits(browser, &format!("the account page ({at})")).await;
    assert_accessible(browser, &format!("the account page ({at})")).await;
    // The same password again: a change, but the next size signs in as before.
    fill(
        browser,
        &[("#current", PASSWORD), ("#new", PASSWORD)],
        "form[action='/account/password'] button",
    )
    .await;
    wait_for_css(browser, "#form-done").await;
    assert_accessible(browser, &format!("a password changed ({at})")).await;
    browser
        .find(Locator::Css("form[action='/logout'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_loaded_and_connected(browser).await;
}

/// Nothing scrolls sideways: not the page, and not the message log or the sidebar (which
/// scroll on their own, so a too-wide message would widen only them).
async fn assert_fits(browser: &Client, at: &str) {
    let wide = browser
        .execute(
            "const wide = [];
             if (document.documentElement.scrollWidth > innerWidth) wide.push('the page');
             for (const e of document.querySelectorAll('#messages, #sidebar, .bar, .composer, #results')) {
                 if (e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1) wide.push(e.id || e.className);
             }
             return wide;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(wide, json!([]), "these scroll sideways: {at}");
}

/// Names take one of twelve colours; a page shows only some. A list with a name in each,
/// put beside the people online, must pass too (then it is taken away).
async fn every_name_colour(browser: &Client, at: &str) {
    browser
        .execute(
            "const list = document.createElement('ul');
             list.id = 'every-colour';
             for (let i = 0; i < 12; i++) {
                 const item = document.createElement('li');
                 const name = document.createElement('span');
                 name.className = 'author c' + i;
                 name.textContent = 'name in colour ' + i;
                 item.append(name);
                 list.append(item);
             }
             document.getElementById('sidebar').append(list);",
            vec![],
        )
        .await
        .unwrap();
    assert_accessible(browser, &format!("every name colour ({at})")).await;
    browser
        .execute("document.getElementById('every-colour').remove();", vec![])
        .await
        .unwrap();
}

/// On a phone the room list and the people fold behind a button: it opens them (and says
/// so), the page still passes, and Escape closes them with the focus back on the button.
async fn phone_sidebar(browser: &Client, at: &str, shoot: bool) {
    let shown = "return getComputedStyle(document.getElementById('sidebar')).display !== 'none';";
    assert_eq!(
        browser.execute(shown, vec![]).await.unwrap(),
        json!(false),
        "folded at first ({at})"
    );
    let toggle = browser.find(Locator::Css("#sidebar-toggle")).await.unwrap();
    toggle.click().await.unwrap();
    assert_eq!(
        toggle.attr("aria-expanded").await.unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(browser.execute(shown, vec![]).await.unwrap(), json!(true));
    assert_accessible(browser, &format!("the chat with the sidebar open ({at})")).await;
    if shoot {
        save_screenshot(browser, "screenshot-phone-sidebar.png").await;
    }
    browser
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E00C}")
        .await
        .unwrap();
    assert_eq!(
        toggle.attr("aria-expanded").await.unwrap().as_deref(),
        Some("false")
    );
    assert_eq!(browser.execute(shown, vec![]).await.unwrap(), json!(false));
    let focused = browser
        .execute("return document.activeElement.id;", vec![])
        .await
        .unwrap();
    assert_eq!(
        focused,
        json!("sidebar-toggle"),
        "Escape gives the focus back"
    );
}

/// Sizes the window so that the page's viewport is `width`×`height` CSS pixels.
async fn fit_viewport(browser: &Client, width: u32, height: u32) {
    browser.set_window_size(width, height).await.unwrap();
    let inner = browser
        .execute("return [innerWidth, innerHeight];", vec![])
        .await
        .unwrap();
    let (inner_w, inner_h) = (
        inner[0].as_u64().unwrap() as u32,
        inner[1].as_u64().unwrap() as u32,
    );
    browser
        .set_window_size(
            width + (width - inner_w.min(width)),
            height + (height - inner_h.min(height)),
        )
        .await
        .unwrap();
    let inner = browser
        .execute("return [innerWidth, innerHeight];", vec![])
        .await
        .unwrap();
    assert_eq!(inner, json!([width, height]), "the viewport");
}

const TAB: &str = "\u{E004}";
const SHIFT: &str = "\u{E008}";
const CONTROL: &str = "\u{E009}";
const SHIFT_KEY: char = '\u{E008}';
const CONTROL_KEY: char = '\u{E009}';
const HOME: &str = "\u{E011}";
const ARROW_UP: &str = "\u{E013}";
const ESCAPE: &str = "\u{E00C}";

/// Sends keys to whatever has the focus, as a keyboard does: no element is ever clicked or
/// typed into directly. The keys go through WebDriver's actions (a key down and up for each
/// character; Shift and Control held from one mention to the next), which, unlike sending
/// keys to an element, do not first require the focused element to be in view.
async fn press(browser: &Client, keys: &str) {
    let mut actions = KeyActions::new("keyboard".into());
    let mut held = Vec::new();
    for key in keys.chars() {
        if key == SHIFT_KEY || key == CONTROL_KEY {
            if let Some(at) = held.iter().position(|&k| k == key) {
                held.remove(at);
                actions = actions.then(KeyAction::Up { value: key });
            } else {
                held.push(key);
                actions = actions.then(KeyAction::Down { value: key });
            }
        } else {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
    }
    for key in held {
        actions = actions.then(KeyAction::Up { value: key });
    }
    browser.perform_actions(actions).await.unwrap();
}

/// What has the focus, as `tag#id` (or `tag.class`, or `tag`).
async fn focused(browser: &Client) -> String {
    let value = browser
        .execute(
            "const e = document.activeElement;
             return e.tagName.toLowerCase() + (e.id ? '#' + e.id : e.className ? '.' + e.className : '');",
            vec![],
        )
        .await
        .unwrap();
    value.as_str().unwrap().to_owned()
}

/// Whether the focused element shows a focus ring a sighted keyboard user can see: it
/// matches `:focus-visible` and draws an outline at least 2px wide in a colour that is not
/// transparent.
async fn ring_visible(browser: &Client) -> bool {
    let value = browser
        .execute(
            "const e = document.activeElement;
             if (!e || e === document.body || !e.matches(':focus-visible')) return false;
             const s = getComputedStyle(e);
             return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2
                 && !/rgba\\(.*, 0\\)$|transparent/.test(s.outlineColor);",
            vec![],
        )
        .await
        .unwrap();
    value == json!(true)
}

/// Presses Tab (or Shift-Tab) until the element matching `css` has the focus; fails,
/// listing the focus order it saw, after 40 presses. Every element on the way must show
/// a visible focus ring.
async fn tab_to(browser: &Client, css: &str, backwards: bool) {
    let matches = "return document.activeElement.matches(arguments[0]);";
    let mut seen = Vec::new();
    for _ in 0..40 {
        let here = focused(browser).await;
        if here != "body" && !ring_visible(browser).await {
            panic!("{here} has the focus but shows no visible focus ring");
        }
        if browser.execute(matches, vec![json!(css)]).await.unwrap() == json!(true) {
            return;
        }
        seen.push(here);
        if backwards {
            press(browser, &format!("{SHIFT}{TAB}{SHIFT}")).await;
        } else {
            press(browser, TAB).await;
        }
    }
    panic!("Tab never reached {css}; the focus went {seen:?}");
}

/// One whole session with the keyboard alone: skip to the messages, send, rename, page
/// back through the history, change rooms, and on a phone open and close the folded
/// sidebar.
#[tokio::test]
async fn a_whole_session_with_the_keyboard_alone() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("accessibility::keyboard_alone").await
    else {
        return;
    };
    let app = spawn_app().await;
    let mut seeder = app.connect().await;
    for i in 0..80 {
        seeder.say(&format!("history {i}")).await;
    }
    seeder.wait_for_shown(80).await;
    let driver = start_driver(&chromedriver).await;
    let profiles = Profiles(
        std::env::temp_dir().join(format!("hubbub-browser-{}-keyboard", std::process::id())),
    );
    let browser = open_browser_with(&driver, &chromium, &profiles.0.join("keys"), &[]).await;
    browser.goto(&app.url("/")).await.unwrap();
    fit_viewport(&browser, 1280, 800).await;
    wait_loaded_and_connected(&browser).await;

    // The composer has the focus; the first thing before it in the page is the skip link,
    // which takes the focus to the messages.
    assert_eq!(focused(&browser).await, "textarea#text");
    tab_to(&browser, ".skip-link", true).await;
    press(&browser, ENTER).await;
    assert_eq!(
        focused(&browser).await,
        "div#messages",
        "skipped to the messages"
    );

    // Send a message.
    tab_to(&browser, "#text", false).await;
    press(&browser, &format!("typed, not clicked{ENTER}")).await;
    wait_for_text(&browser, "typed, not clicked").await;

    // Rename: the name field, everything in it replaced, Enter.
    tab_to(&browser, "#name", true).await;
    press(&browser, &format!("{CONTROL}a{CONTROL}Keyboard Kim{ENTER}")).await;
    browser
        .wait()
        .at_most(BROWSER_PATIENCE)
        .for_element(Locator::XPath(
            "//p[@id='notice' and text()='You are now Keyboard Kim.']",
        ))
        .await
        .expect("the rename is confirmed");

    // Page back: the message log takes the focus and scrolls with the keys; reaching the
    // top loads the older messages.
    let shown = crate::support::browser::shown_texts(&browser).await.len();
    tab_to(&browser, "#messages", false).await;
    press(&browser, HOME).await;
    eventually_more(&browser, shown).await;

    // Pick a message with the keyboard: Enter on the log picks the newest, Up the one
    // before; Tab reaches its React button (the only buttons in the Tab order are the
    // picked message's); the picker's first emoji reacts; Escape goes back to the log.
    tab_to(&browser, "#messages", true).await;
    press(&browser, ENTER).await;
    press(&browser, ARROW_UP).await;
    let picked = browser
        .execute(
            "const a = document.activeElement; return a.matches('#messages article.msg') ? a.querySelector('.text').textContent : null;",
            vec![],
        )
        .await
        .unwrap();
    let picked = picked.as_str().expect("a message has the focus").to_owned();
    press(&browser, TAB).await;
    assert_eq!(focused(&browser).await, "button", "its first button");
    assert!(
        ring_visible(&browser).await,
        "the button shows a focus ring"
    );
    // Reply, then React.
    press(&browser, TAB).await;
    let act = browser
        .execute("return document.activeElement.dataset.act;", vec![])
        .await
        .unwrap();
    assert_eq!(act, json!("pick"), "React follows Reply");
    press(&browser, ENTER).await;
    wait_for_css(&browser, "#picker:not([hidden]) button:focus").await;
    press(&browser, ENTER).await;
    wait_for_css(&browser, "#messages button.reaction[aria-pressed='true']").await;
    let reacted = browser
        .execute(
            "return document.querySelector('#messages button.reaction[aria-pressed=\"true\"]').closest('article').querySelector('.text').textContent;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        reacted,
        json!(picked),
        "the picked message got the reaction"
    );
    press(&browser, ESCAPE).await;
    assert_eq!(
        focused(&browser).await,
        "div#messages",
        "Escape goes back to the log"
    );

    // Change rooms with the form in the sidebar.
    tab_to(&browser, "#room-name", true).await;
    press(&browser, &format!("quiet-corner{ENTER}")).await;
    wait_for_css(&browser, ".layout[data-room='quiet-corner']").await;
    wait_loaded_and_connected(&browser).await;
    assert_eq!(focused(&browser).await, "textarea#text");
    press(&browser, &format!("hello from the keyboard{ENTER}")).await;
    wait_for_text(&browser, "hello from the keyboard").await;

    // On a phone: the folded sidebar opens with Enter on its button (the focus moves into
    // it) and Escape closes it (the focus comes back).
    fit_viewport(&browser, 390, 844).await;
    tab_to(&browser, "#sidebar-toggle", true).await;
    press(&browser, ENTER).await;
    let inside = browser
        .execute(
            "return document.getElementById('sidebar').contains(document.activeElement);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(inside, json!(true), "the focus moved into the sidebar");
    press(&browser, ESCAPE).await;
    assert_eq!(focused(&browser).await, "button#sidebar-toggle");

    browser.close().await.unwrap();
    drop(driver);
    drop(profiles);
}

/// Waits until more than `before` messages are shown.
async fn eventually_more(browser: &Client, before: usize) {
    crate::support::eventually::eventually("older messages to load", async || {
        let now = crate::support::browser::shown_texts(browser).await.len();
        if now > before { Ok(()) } else { Err(now) }
    })
    .await;
}
