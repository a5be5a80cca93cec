//! Every page state the browser tests reach passes axe-core's WCAG 2.0/2.1/2.2 A and AA
//! rules and best practices (`support::axe`), in the light and the dark colour scheme, at
//! desktop width and on a phone (390×844): the chat with its history, after a message
//! arrives live, with a notice shown, and the error pages.

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::support::app::spawn_app;
use crate::support::axe::assert_accessible;
use crate::support::browser::{
    BROWSER_PATIENCE, ENTER, Profiles, browser_tools, open_browser_with, start_driver,
    wait_for_css, wait_for_text, wait_loaded_and_connected,
};

/// Desktop, then a phone held upright.
const SIZES: [(u32, u32); 2] = [(1280, 800), (390, 844)];

#[tokio::test]
async fn every_page_state_passes_the_accessibility_check_in_both_schemes_and_sizes() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("accessibility::every_page_state").await
    else {
        return;
    };
    let app = spawn_app().await;
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
            browser.goto(&app.url("/")).await.unwrap();
            fit_viewport(&browser, width, height).await;
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

            let fits = browser
                .execute(
                    "return document.documentElement.scrollWidth <= innerWidth;",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(fits, json!(true), "no horizontal scrolling ({at})");
            if width < 700 {
                phone_sidebar(&browser, &at).await;
            }

            let live = format!("a live message for the {scheme} page at {width} px");
            seeder.say(&live).await;
            wait_for_text(&browser, &live).await;
            assert_accessible(&browser, &format!("the chat after a live message ({at})")).await;

            let name = browser.find(Locator::Css("#name")).await.unwrap();
            name.clear().await.unwrap();
            name.send_keys(&format!("Reader {width}{ENTER}"))
                .await
                .unwrap();
            browser
                .wait()
                .at_most(BROWSER_PATIENCE)
                .for_element(Locator::XPath(&format!(
                    "//p[@id='notice' and text()='You are now Reader {width}.']"
                )))
                .await
                .expect("the rename's notice is shown");
            assert_accessible(&browser, &format!("the chat with a notice ({at})")).await;

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

/// On a phone the room list and the people fold behind a button: it opens them (and says
/// so), the page still passes, and Escape closes them with the focus back on the button.
async fn phone_sidebar(browser: &Client, at: &str) {
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
