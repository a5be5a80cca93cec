//! Real browsers for the browser tests: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver), one test at a time. Finds the tools (or skips, saying why,
//! unless `HUBBUB_REQUIRE_BROWSER` is set), starts and cleans up after them, and speaks
//! to the page as a person would: typing, pressing Enter, waiting for text to appear.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::PATIENCE;
use super::eventually::eventually;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const ENTER: &str = "\u{E007}";
/// A cold Chromium can take a while to start its first page.
pub const BROWSER_PATIENCE: Duration = Duration::from_secs(30);

/// chromedriver, killed on drop.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's browser profiles; on drop, any Chromium still using them is killed (a test
/// that fails never closes its sessions, and chromedriver's death does not end them).
pub struct Profiles(pub PathBuf);

impl Drop for Profiles {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args([
                "-KILL",
                "-f",
                &format!("user-data-dir={}", self.0.display()),
            ])
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tool(env: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    path.exists().then_some(path)
}

pub async fn start_driver(chromedriver: &Path) -> Driver {
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Poll until chromedriver accepts connections (it has no readiness signal).
    eventually("chromedriver to accept connections", async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
    })
    .await;
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

pub async fn open_browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    open_browser_with(driver, chromium, profile, &[]).await
}

/// A browser started with `extra` command-line switches too (a colour scheme, say).
pub async fn open_browser_with(
    driver: &Driver,
    chromium: &Path,
    profile: &Path,
    extra: &[&str],
) -> Client {
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={}", profile.display()),
        "--window-size=900,640".into(),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        // Notifications are granted when a page asks (the issue's "Chromium grants it in
        // tests"); pages still ask first.
        json!({
            "binary": chromium,
            "args": args,
            "prefs": { "profile.default_content_setting_values.notifications": 1 },
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap()
}

/// After loading a page: waits for its socket, and if it never opens, says what the page
/// looked like (which scripts loaded and when). This once caught a real race: with
/// `defer`red scripts htmx could process the page before its WebSocket extension had
/// loaded, and the page never connected (fixed in `templates/base.html`).
pub async fn wait_loaded_and_connected(browser: &Client) {
    if let Err(state) = wait_open(browser, BROWSER_PATIENCE).await {
        panic!("the page's WebSocket did not open within {BROWSER_PATIENCE:?}: {state}");
    }
}

/// The name in the page's name field (the user's own display name).
pub async fn own_name(browser: &Client) -> String {
    browser
        .find(Locator::Css("#name"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap()
}

/// Waits for `body[data-ws='open']`; on timeout, describes the page.
pub async fn wait_open(browser: &Client, patience: Duration) -> Result<(), String> {
    let opened = browser
        .wait()
        .at_most(patience)
        .for_element(Locator::Css("body[data-ws='open']"))
        .await;
    if opened.is_ok() {
        return Ok(());
    }
    let state = browser
        .execute(
            "return [location.href, document.body ? document.body.dataset.ws : null,
                     (document.querySelector('#status') || {}).textContent,
                     typeof window.htmx,
                     performance.getEntriesByType('resource')
                         .map(e => e.name + ' ' + Math.round(e.responseEnd))];",
            vec![],
        )
        .await;
    Err(format!("{state:?}"))
}

pub async fn say(browser: &Client, text: &str) {
    let input = browser.find(Locator::Css("#text")).await.unwrap();
    input.send_keys(&format!("{text}{ENTER}")).await.unwrap();
}

/// Waits until a message with exactly this text is shown.
pub async fn wait_for_text(browser: &Client, text: &str) {
    let found = browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::XPath(&format!(
            "//div[@id='messages']/article/p[@class='text' and text()={}]",
            xpath_literal(text)
        )))
        .await;
    found.unwrap_or_else(|err| panic!("{text:?} never appeared: {err}"));
}

/// The author shown on the message with exactly this text.
pub async fn author_of(browser: &Client, text: &str) -> String {
    let xpath = format!(
        "//article[p[@class='text' and text()={}]]//span[contains(@class, 'author')]",
        xpath_literal(text)
    );
    browser
        .find(Locator::XPath(&xpath))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Starts recording Content-Security-Policy violations (scripts run by WebDriver are not
/// subject to the page's policy). Everything the page does from here until it is next
/// loaded is covered: sending, live swaps, loading older messages.
pub async fn watch_csp(browser: &Client) {
    browser
        .execute(
            "window.cspViolations = [];
             document.addEventListener('securitypolicyviolation',
                 e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));",
            vec![],
        )
        .await
        .unwrap();
}

/// Starts recording, for each message put into the log, whether a screen reader would read
/// it out: the log's `aria-live` and `aria-busy` as they stood when it went in. The
/// observer's callback runs as a microtask right after the insertion, before any later
/// task can change them, so a log made live again in the same task would be caught.
pub async fn watch_announcements(browser: &Client) {
    browser
        .execute(
            "const log = document.getElementById('messages');
             window.logInsertions = [];
             new MutationObserver(records => {
                 const announced = log.getAttribute('aria-live') === 'polite'
                     && log.getAttribute('aria-busy') !== 'true';
                 for (const r of records) for (const n of r.addedNodes) {
                     if (n.nodeType === 1 && n.matches('article')) {
                         const t = n.querySelector('.text');
                         window.logInsertions.push([t ? t.textContent : '', announced]);
                     }
                 }
             }).observe(log, { childList: true });",
            vec![],
        )
        .await
        .unwrap();
}

/// The messages put into the log since the last call (or since `watch_announcements`),
/// each with whether it was announced.
pub async fn take_insertions(browser: &Client) -> Vec<(String, bool)> {
    let value = browser
        .execute(
            "const seen = window.logInsertions || [];
             window.logInsertions = [];
             return seen;",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(value).unwrap()
}

pub async fn assert_no_csp_violations(browser: &Client) {
    let seen = browser
        .execute("return window.cspViolations || ['not watching'];", vec![])
        .await
        .unwrap();
    assert_eq!(seen, serde_json::json!([]), "the page broke its own policy");
}

/// The text of every element matching `css`, in document order.
pub async fn texts_of(browser: &Client, css: &str) -> Vec<String> {
    let value = browser
        .execute(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)",
            vec![json!(css)],
        )
        .await
        .unwrap();
    serde_json::from_value(value).unwrap()
}

pub async fn shown_texts(browser: &Client) -> Vec<String> {
    texts_of(browser, "#messages article .text").await
}

pub fn xpath_literal(text: &str) -> String {
    if !text.contains('\'') {
        return format!("'{text}'");
    }
    let parts: Vec<String> = text.split('\'').map(|part| format!("'{part}'")).collect();
    format!("concat({})", parts.join(", \"'\", "))
}

/// Chromium and chromedriver, or `None` (with the reason printed) when they are missing.
/// Also takes a lock so the browser tests run one at a time: two Chromiums each on two
/// cores are plenty.
pub async fn browser_tools(
    test: &str,
) -> Option<(PathBuf, PathBuf, tokio::sync::MutexGuard<'static, ()>)> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let (Some(chromium), Some(chromedriver)) = (
        tool("HUBBUB_CHROMIUM", CHROMIUM),
        tool("HUBBUB_CHROMEDRIVER", CHROMEDRIVER),
    ) else {
        let reason = format!(
            "{test} SKIPPED: {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
        );
        assert!(
            std::env::var_os("HUBBUB_REQUIRE_BROWSER").is_none(),
            "{reason}, and HUBBUB_REQUIRE_BROWSER is set"
        );
        eprintln!("{reason}");
        return None;
    };
    Some((chromium, chromedriver, ONE_AT_A_TIME.lock().await))
}

/// Saves a screenshot under `target/tmp`, and into `$HUBBUB_SCREENSHOTS/<name>` when that
/// variable names a folder (the README's pictures come from there).
pub async fn save_screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&target, &png).unwrap();
    if let Some(folder) = std::env::var_os("HUBBUB_SCREENSHOTS") {
        std::fs::write(PathBuf::from(folder).join(name), &png).unwrap();
    }
}

/// Texts of the presence list.
pub async fn present(browser: &Client) -> Vec<String> {
    texts_of(browser, "#presence li").await
}

pub async fn wait_for_css(browser: &Client, css: &str) {
    browser
        .wait()
        .at_most(BROWSER_PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("{css} never appeared: {err}"));
}
