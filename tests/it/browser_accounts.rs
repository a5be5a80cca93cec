//! Claimed names in real browsers: a guest claims their name from the chat page, signs in
//! with it in a second browser (its own profile: nothing shared but the server), both are
//! one user, and "sign out everywhere" signs both out.

use fantoccini::{Client, Locator};

use crate::support::app::spawn_app;
use crate::support::axe::assert_accessible;
use crate::support::browser::{
    BROWSER_PATIENCE, Profiles, author_of, browser_tools, open_browser, own_name, save_screenshot,
    say, start_driver, wait_for_css, wait_for_text, wait_loaded_and_connected, watch_csp,
};

const PASSWORD: &str = "a long and memorable phrase";

/// Fills a field of the form on the page.
async fn fill(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits until the page's address ends with `path`.
async fn wait_at(browser: &Client, path: &str) {
    let mut last = String::new();
    for _ in 0..100 {
        last = browser.current_url().await.unwrap().to_string();
        if last.ends_with(path) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("never reached {path}: at {last}");
}

async fn data_me(browser: &Client) -> String {
    browser
        .find(Locator::Css(".layout"))
        .await
        .unwrap()
        .attr("data-me")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn claim_a_name_sign_in_elsewhere_and_sign_out_everywhere() {
    let Some((chromium, chromedriver, _one_at_a_time)) =
        browser_tools("browser_accounts::claim_a_name").await
    else {
        return;
    };
    let app = spawn_app().await;
    let driver = start_driver(&chromedriver).await;
    let profiles = Profiles(
        std::env::temp_dir().join(format!("hubbub-browser-{}-accounts", std::process::id())),
    );
    let laptop = open_browser(&driver, &chromium, &profiles.0.join("laptop")).await;
    let phone = open_browser(&driver, &chromium, &profiles.0.join("phone")).await;
    for browser in [&laptop, &phone] {
        browser.goto(&app.url("/rooms/design")).await.unwrap();
        wait_loaded_and_connected(browser).await;
        watch_csp(browser).await;
    }

    // The laptop's guest writes, then claims a name from the chat's own link.
    say(&laptop, "written as a guest").await;
    wait_for_text(&laptop, "written as a guest").await;
    let guest_me = data_me(&laptop).await;
    click(&laptop, ".account-links a[href^='/signup']").await;
    wait_for_css(&laptop, "#password").await;
    let prefilled = laptop
        .find(Locator::Css("#name"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(prefilled.starts_with("guest-"), "{prefilled}");
    fill(&laptop, "#name", "Ada").await;
    fill(&laptop, "#password", PASSWORD).await;
    click(&laptop, ".account-form button[type='submit']").await;
    wait_at(&laptop, "/rooms/design").await;
    wait_loaded_and_connected(&laptop).await;
    assert_eq!(own_name(&laptop).await, "Ada");
    assert_eq!(
        data_me(&laptop).await,
        guest_me,
        "the same user as the guest"
    );
    laptop
        .find(Locator::Css(".account-links a[href='/account']"))
        .await
        .expect("an Account link once signed in");
    say(&laptop, "written as Ada").await;
    wait_for_text(&phone, "written as Ada").await;
    assert_eq!(author_of(&phone, "written as Ada").await, "Ada");

    // The phone cannot take the name as a guest.
    fill(&phone, "#name", "ada").await;
    click(&phone, "#rename button").await;
    phone
        .wait()
        .at_most(BROWSER_PATIENCE)
        .for_element(Locator::XPath(
            "//p[@id='notice' and contains(text(), 'is a claimed name')]",
        ))
        .await
        .expect("a notice that the name is claimed");

    // A wrong password, then the right one, from the phone's sign-in link.
    click(&phone, ".account-links a[href^='/login']").await;
    wait_for_css(&phone, "#password").await;
    fill(&phone, "#name", "ada").await;
    fill(&phone, "#password", "not the phrase at all").await;
    click(&phone, ".account-form button[type='submit']").await;
    wait_for_css(&phone, "#form-error").await;
    let error = phone
        .find(Locator::Css("#form-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(error, "Wrong name or password.");
    assert_accessible(&phone, "a refused sign-in").await;
    save_screenshot(&phone, "screenshot-sign-in.png").await;
    fill(&phone, "#password", PASSWORD).await;
    click(&phone, ".account-form button[type='submit']").await;
    wait_at(&phone, "/rooms/design").await;
    wait_loaded_and_connected(&phone).await;
    assert_eq!(own_name(&phone).await, "Ada");
    assert_eq!(data_me(&phone).await, guest_me, "one user on both");
    // Both pages offer Ada's own messages for editing, the guest one included.
    for text in ["written as a guest", "written as Ada"] {
        let tag = phone
            .find(Locator::XPath(&format!(
                "//article[p[@class='text' and text()='{text}']]"
            )))
            .await
            .unwrap()
            .attr("data-author")
            .await
            .unwrap();
        assert_eq!(tag.as_deref(), Some(guest_me.as_str()), "{text}");
    }
    say(&phone, "from the phone").await;
    wait_for_text(&laptop, "from the phone").await;
    assert_eq!(author_of(&laptop, "from the phone").await, "Ada");

    // The account page, then "sign out everywhere" from the phone: the laptop is out too.
    phone.goto(&app.url("/account")).await.unwrap();
    wait_for_css(&phone, "#current").await;
    assert_accessible(&phone, "the account page").await;
    save_screenshot(&phone, "screenshot-account.png").await;
    click(&phone, "form[action='/logout/everywhere'] button").await;
    wait_loaded_and_connected(&phone).await;
    assert!(own_name(&phone).await.starts_with("guest-"));
    laptop.goto(&app.url("/account")).await.unwrap();
    wait_for_css(&laptop, "#password").await;
    assert!(
        laptop
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("/login?next=/account")
    );
    laptop.goto(&app.url("/")).await.unwrap();
    wait_loaded_and_connected(&laptop).await;
    let name = own_name(&laptop).await;
    assert!(name.starts_with("guest-"), "{name}");
    assert_ne!(
        data_me(&laptop).await,
        guest_me,
        "the old guest cookie does not speak for the account"
    );

    laptop.close().await.unwrap();
    phone.close().await.unwrap();
    drop(driver);
    drop(profiles);
    app.stop().await;
}
