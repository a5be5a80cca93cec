//! Claimed names: signing up, in and out (on one device and everywhere), password changes,
//! and the rules around them: a claimed name (or a look-alike) is nobody else's, a guest
//! cookie never speaks for an account, a cross-site post changes nothing, guessing is
//! limited per name and per address, and a wrong name costs what a wrong password costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::changes::{edit, posted};
use crate::support::app::{TestApp, spawn_app_on, spawn_app_with};
use crate::support::db::TestDb;
use crate::support::http::{HttpResponse, form_encode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const PASSWORD: &str = "correct horse battery";

/// A form's fields, in order.
type Form<'a> = &'a [(&'a str, &'a str)];

/// Every cookie a response sets, as `name=value` pairs (a removal has an empty value).
fn set_cookies(response: &HttpResponse) -> Vec<(String, String)> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// A browser's cookies: what it had, updated by what a response set.
#[derive(Debug, Clone, Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn take(&mut self, response: &HttpResponse) {
        for (name, value) in set_cookies(response) {
            self.0.retain(|(n, _)| *n != name);
            if !value.is_empty() {
                self.0.push((name, value));
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A browser on one app: its cookies, carried on every request.
struct Browser<'a> {
    app: &'a TestApp,
    jar: Jar,
    /// Sent with every request, after the cookie (a proxy's `X-Forwarded-For`, say).
    extra: Vec<(&'static str, String)>,
}

impl<'a> Browser<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let mut browser = Self {
            app,
            jar: Jar::default(),
            extra: Vec::new(),
        };
        browser.get("/").await;
        browser
    }

    async fn get(&mut self, path: &str) -> HttpResponse {
        let cookie = self.jar.header();
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend(self.extra.iter().map(|(n, v)| (*n, v.as_str())));
        let response = self.app.request_with("GET", path, &headers).await;
        self.jar.take(&response);
        response
    }

    /// Posts a form from this site's own page.
    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> HttpResponse {
        let origin = self.app.url("");
        self.post_from(path, form, &[("Origin", &origin)]).await
    }

    async fn post_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        from: &[(&str, &str)],
    ) -> HttpResponse {
        let body = form
            .iter()
            .map(|(n, v)| format!("{n}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let cookie = self.jar.header();
        let mut headers = vec![
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        headers.extend_from_slice(from);
        headers.extend(self.extra.iter().map(|(n, v)| (*n, v.as_str())));
        let response = self.app.request_body("POST", path, &headers, &body).await;
        self.jar.take(&response);
        response
    }

    async fn sign_up(&mut self, name: &str, password: &str) -> HttpResponse {
        self.post("/signup", &[("name", name), ("password", password)])
            .await
    }

    async fn sign_in(&mut self, name: &str, password: &str) -> HttpResponse {
        self.post("/login", &[("name", name), ("password", password)])
            .await
    }

    /// Who the server takes this browser for: the account page's name, or `None` (the
    /// account page sends a guest to sign in).
    async fn signed_in_as(&mut self) -> Option<String> {
        let page = self.get("/account").await;
        if page.status == 303 {
            return None;
        }
        assert_eq!(page.status, 200, "{}", page.body);
        let marker = "signed in as <strong>";
        let from = page.body.find(marker).unwrap() + marker.len();
        Some(page.body[from..][..page.body[from..].find('<').unwrap()].to_owned())
    }

    /// The name in the chat page's name form.
    async fn chat_name(&mut self) -> String {
        let page = self.get("/").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let field = r#"id="name" name="name" value=""#;
        let from = page.body.find(field).unwrap() + field.len();
        page.body[from..][..page.body[from..].find('"').unwrap()].to_owned()
    }
}

/// The page's socket closes because its session was signed out.
pub(crate) async fn assert_signed_out(page: &mut crate::support::client::TestClient) {
    let close = page.wait_for_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(close.reason.as_str(), "signed out");
}

fn location(response: &HttpResponse) -> &str {
    response.headers["location"].to_str().unwrap()
}

/// Sign-up claims the name for this browser's user, signs it in, and from then on nobody
/// else can take the name or a look-alike; a second browser signs in with it.
async fn claimed_names_are_unique_and_follow_their_owner(db: Arc<TestDb>) {
    // Every try at "alice" counts against the name's allowance.
    let app = spawn_app_on(db, "127.0.0.1:0", |config| {
        config.sign_ins_per_name_per_minute = 100;
    })
    .await;
    let mut alice = Browser::new(&app).await;
    // Her guest messages stay hers (editable) once she claims a name.
    let guest_cookie = alice.jar.header();
    let mut socket = app.connect_to("general", Some(&guest_cookie)).await;
    let before = posted(&mut socket, "written as a guest").await;
    drop(socket);

    let signed = alice.sign_up("Alice", PASSWORD).await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(location(&signed), "/");
    assert!(alice.jar.get("hubbub_session").is_some());
    let session = signed
        .headers
        .get_all("set-cookie")
        .iter()
        .find(|c| c.to_str().unwrap().starts_with("hubbub_session="))
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert_eq!(alice.signed_in_as().await.as_deref(), Some("Alice"));
    let page = alice.get("/").await;
    assert!(page.body.contains(r#"<a href="/account">Account</a>"#));

    let mut socket = app.connect_to("general", Some(&alice.jar.header())).await;
    let after = posted(&mut socket, "written signed in").await;
    edit(&mut socket, before, "edited signed in").await;
    socket
        .until("the edit", |page| {
            page.message(before).is_some_and(|m| m.edited)
        })
        .await;
    let mine = socket.message(after).unwrap().clone();
    assert_eq!(mine.author, "Alice");

    // Nobody else: not by the same name, other case, or look-alike letters.
    let mut mallory = Browser::new(&app).await;
    for name in ["Alice", "alice", "ALICE", "AIice", "\u{0430}lice"] {
        let renamed = app.rename(&mallory.jar.header(), name).await;
        assert_eq!(renamed.status, 409, "{name}: {}", renamed.body);
        assert!(renamed.body.contains("claimed name"), "{}", renamed.body);
        let taken = mallory.sign_up(name, PASSWORD).await;
        assert_eq!(taken.status, 409, "{name}: {}", taken.body);
        assert!(taken.body.contains("is taken"), "{}", taken.body);
    }
    assert_eq!(mallory.signed_in_as().await, None);
    // Another name is fine, and signing up twice is not.
    assert_eq!(mallory.sign_up("Mallory", PASSWORD).await.status, 303);
    let mut again = mallory
        .post("/signup", &[("name", "Mal2"), ("password", PASSWORD)])
        .await;
    assert_eq!(
        again.status, 303,
        "a signed-in browser is sent to its account"
    );
    assert_eq!(location(&again), "/account");
    again = mallory.get("/signup").await;
    assert_eq!(location(&again), "/account");

    // A second device signs in with any spelling of the name and is the same user.
    let mut phone = Browser::new(&app).await;
    let signed = phone.sign_in("alice", PASSWORD).await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(phone.signed_in_as().await.as_deref(), Some("Alice"));
    let mut socket = app.connect_to("general", Some(&phone.jar.header())).await;
    edit(&mut socket, after, "edited on the phone").await;
    socket
        .until("the phone's edit", |page| {
            page.message(after)
                .is_some_and(|m| m.text == "edited on the phone")
        })
        .await;

    // The name follows a rename of the account, and the old one is free again.
    let renamed = app.rename(&phone.jar.header(), "Alicia").await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(alice.signed_in_as().await.as_deref(), Some("Alicia"));
    assert_eq!(
        app.rename(&phone.jar.header(), "mallory").await.status,
        409,
        "nor may an account take another's name"
    );
    let mut carol = Browser::new(&app).await;
    assert_eq!(carol.sign_up("alice", PASSWORD).await.status, 303);
    app.stop().await;
}
both_backends!(claimed_names_are_unique_and_follow_their_owner);

/// Signing out ends the session for good (a copy of the cookie too); signing out
/// everywhere ends every device's; a password change ends the others but keeps this one.
async fn sessions_end_when_they_should(db: Arc<TestDb>) {
    let app = spawn_app_on(db, "127.0.0.1:0", |config| {
        config.sign_ins_per_name_per_minute = 100;
    })
    .await;
    let mut laptop = Browser::new(&app).await;
    assert_eq!(laptop.sign_up("Bea", PASSWORD).await.status, 303);
    let mut phone = Browser::new(&app).await;
    assert_eq!(phone.sign_in("bea", PASSWORD).await.status, 303);
    let mut tablet = Browser::new(&app).await;
    assert_eq!(tablet.sign_in("BEA", PASSWORD).await.status, 303);
    // Each browser has the chat open.
    let mut laptop_page = app.connect_to("general", Some(&laptop.jar.header())).await;
    let mut phone_page = app.connect_to("general", Some(&phone.jar.header())).await;
    let mut tablet_page = app.connect_to("general", Some(&tablet.jar.header())).await;

    // Sign out: this browser only; a copy of its cookie signs in no one. Its open page
    // closes at once; the other browsers' stay.
    let copied = phone.jar.clone();
    let out = phone.post("/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert_signed_out(&mut phone_page).await;
    posted(&mut laptop_page, "still here on the laptop").await;
    posted(&mut tablet_page, "still here on the tablet").await;
    assert_eq!(
        phone.jar.get("hubbub_session"),
        None,
        "the cookie is removed"
    );
    assert_eq!(phone.signed_in_as().await, None);
    let mut thief = Browser {
        app: &app,
        jar: copied,
        extra: Vec::new(),
    };
    assert_eq!(thief.signed_in_as().await, None);
    let page = thief.get("/").await;
    assert!(
        set_cookies(&page)
            .iter()
            .any(|(n, v)| n == "hubbub_session" && v.is_empty()),
        "a dead session's cookie is removed"
    );
    assert_eq!(laptop.signed_in_as().await.as_deref(), Some("Bea"));

    // A password change: a wrong current password changes nothing.
    let wrong = laptop
        .post(
            "/account/password",
            &[
                ("current", "not my password"),
                ("new", "a brand new secret"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("not your current password"));
    assert_eq!(tablet.signed_in_as().await.as_deref(), Some("Bea"));
    let short = laptop
        .post(
            "/account/password",
            &[("current", PASSWORD), ("new", "short")],
        )
        .await;
    assert_eq!(short.status, 422, "{}", short.body);
    assert!(short.body.contains("at least 8 characters"));
    let changed = laptop
        .post(
            "/account/password",
            &[("current", PASSWORD), ("new", "a brand new secret")],
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert!(
        changed.body.contains("1 other session was signed out"),
        "{}",
        changed.body
    );
    assert_eq!(tablet.signed_in_as().await, None, "the other session ended");
    assert_signed_out(&mut tablet_page).await;
    assert_eq!(laptop.signed_in_as().await.as_deref(), Some("Bea"));
    posted(&mut laptop_page, "the laptop changed the password").await;
    let mut desk = Browser::new(&app).await;
    assert_eq!(desk.sign_in("Bea", PASSWORD).await.status, 401);
    assert_eq!(desk.sign_in("Bea", "a brand new secret").await.status, 303);
    let mut desk_page = app.connect_to("random", Some(&desk.jar.header())).await;
    // A guest's page and another account's are left alone.
    let mut guest = Browser::new(&app).await;
    let mut guest_page = app.connect_to("general", Some(&guest.jar.header())).await;

    // Everywhere: every session of the account, this one too, in every room.
    let out = laptop.post("/logout/everywhere", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(laptop.signed_in_as().await, None);
    assert_eq!(desk.signed_in_as().await, None);
    assert_signed_out(&mut laptop_page).await;
    assert_signed_out(&mut desk_page).await;
    posted(&mut guest_page, "a guest carries on").await;
    assert_eq!(guest.signed_in_as().await, None);
    app.wait_for_scrape(r#"hubbub_disconnects_total{reason="signed_out"}"#, 4.0)
        .await;
    app.stop().await;
}
both_backends!(sessions_end_when_they_should);

/// Nothing a client sends makes it someone else: not a frame naming another user, not a
/// guest cookie from before the name was claimed, not a cookie edited by hand.
#[tokio::test]
async fn nobody_can_pass_for_a_signed_in_user() {
    let app = spawn_app_with(|_| {}).await;
    let mut alice = Browser::new(&app).await;
    let guest_cookie = alice.jar.header();
    assert_eq!(alice.sign_up("Alice", PASSWORD).await.status, 303);
    let mut socket = app.connect_to("general", Some(&alice.jar.header())).await;
    let hers = posted(&mut socket, "alice's words").await;
    let tag = socket.message(hers).unwrap().author_tag.clone();

    // The guest cookie her browser had before (same user id) is a stranger now.
    let mut old = app.connect_to("general", Some(&guest_cookie)).await;
    let theirs = posted(&mut old, "from the old cookie").await;
    let shown = old.message(theirs).unwrap().clone();
    assert_ne!(shown.author, "Alice");
    assert_ne!(shown.author_tag, tag, "another user");
    edit(&mut old, hers, "hijacked").await;
    let notice = old.wait_for_notice().await;
    assert!(notice.contains("Not saved"), "{notice}");

    // Frames carrying someone's id or name are read for what they may say, nothing more.
    let mut bob = app.connect().await;
    let forged = serde_json::json!({
        "text": "forged frame",
        "author": "Alice",
        "user": "00000000000000000000000000000000",
        "author_id": "00000000000000000000000000000000",
        "headers": {"HX-Request": "true"},
    });
    bob.send_raw(forged.to_string()).await;
    bob.until("the forged frame", |page| {
        page.shown.iter().any(|m| m.text == "forged frame")
    })
    .await;
    let forged = bob
        .shown
        .iter()
        .find(|m| m.text == "forged frame")
        .unwrap()
        .clone();
    assert_ne!(forged.author, "Alice");
    assert_ne!(forged.author_tag, tag);

    // A session cookie edited by hand (or made up) is no session.
    for made_up in [
        "hubbub_session=".to_owned() + &"a".repeat(64),
        format!(
            "hubbub_session={}x",
            alice.jar.get("hubbub_session").unwrap()
        ),
        "hubbub_session=%FF%00".to_owned(),
    ] {
        let page = app
            .request_with("GET", "/account", &[("Cookie", &made_up)])
            .await;
        assert_eq!(page.status, 303, "{made_up}: {}", page.body);
    }

    // A guest who had the name before it was claimed is renamed on their next visit.
    let mut early = Browser::new(&app).await;
    let renamed = app.rename(&early.jar.header(), "Dana").await;
    assert_eq!(renamed.status, 200);
    early.jar.take(&renamed);
    assert_eq!(early.chat_name().await, "Dana");
    let mut dana = Browser::new(&app).await;
    assert_eq!(dana.sign_up("dana", PASSWORD).await.status, 303);
    let name = early.chat_name().await;
    assert!(name.starts_with("guest-"), "{name}");
    app.stop().await;
}

/// Every state-changing POST from another site is refused with 403 and changes nothing,
/// whether the browser said where it came from in `Origin` or only in `Referer`.
#[tokio::test]
async fn cross_site_posts_change_nothing() {
    let app = spawn_app_with(|_| {}).await;
    let mut alice = Browser::new(&app).await;
    assert_eq!(alice.sign_up("Alice", PASSWORD).await.status, 303);
    let mut guest = Browser::new(&app).await;
    let evil: [&[(&str, &str)]; 3] = [
        &[("Origin", "https://evil.example")],
        &[("Origin", "null")],
        &[("Referer", "https://evil.example/page")],
    ];
    for from in evil {
        let cases: [(&str, &[(&str, &str)]); 6] = [
            ("/signup", &[("name", "Eve"), ("password", PASSWORD)]),
            ("/login", &[("name", "Alice"), ("password", PASSWORD)]),
            ("/logout", &[]),
            ("/logout/everywhere", &[]),
            (
                "/account/password",
                &[("current", PASSWORD), ("new", "changed by eve")],
            ),
            ("/name", &[("name", "Renamed by Eve")]),
        ];
        for (path, form) in cases {
            for browser in [&mut alice, &mut guest] {
                let response = browser.post_from(path, form, from).await;
                assert_eq!(response.status, 403, "{path} {from:?}: {}", response.body);
                assert!(
                    response.body.contains("is not this server"),
                    "{}",
                    response.body
                );
                assert!(set_cookies(&response).is_empty(), "{path}: sets no cookie");
            }
        }
    }
    assert_eq!(alice.signed_in_as().await.as_deref(), Some("Alice"));
    assert_eq!(guest.signed_in_as().await, None);
    assert_eq!(alice.chat_name().await, "Alice");
    let mut other = Browser::new(&app).await;
    assert_eq!(
        other.sign_in("Alice", PASSWORD).await.status,
        303,
        "unchanged"
    );
    assert_eq!(
        other.sign_up("Eve", PASSWORD).await.status,
        303,
        "not claimed"
    );
    // This site's own pages may post, by Origin or by Referer alone.
    let referer = app.url("/account");
    let mut own = Browser::new(&app).await;
    let response = own
        .post_from(
            "/login",
            &[("name", "Alice"), ("password", PASSWORD)],
            &[("Referer", &referer)],
        )
        .await;
    assert_eq!(response.status, 303, "{}", response.body);
    app.stop().await;
}

/// Guessing is slowed per name (from any address, loopback included) and per address
/// (across names), with 429 and `Retry-After`; a refused attempt checks no password.
#[tokio::test]
async fn sign_in_attempts_are_limited_per_name_and_per_address() {
    let app = spawn_app_with(|config| {
        config.trust_proxy = true;
        config.sign_ins_per_name_per_minute = 3;
        config.sign_ins_per_minute = 4;
    })
    .await;
    let mut alice = Browser::new(&app).await;
    alice.extra = vec![("X-Forwarded-For", "198.51.100.1".to_owned())];
    assert_eq!(alice.sign_up("Alice", PASSWORD).await.status, 303);

    // Per name: two wrong guesses from two addresses, then even the right one waits.
    for (i, address) in ["203.0.113.1", "203.0.113.2"].into_iter().enumerate() {
        let mut guesser = Browser::new(&app).await;
        guesser.extra = vec![("X-Forwarded-For", address.to_owned())];
        let wrong = guesser.sign_in("alice", &format!("guess number {i}")).await;
        assert_eq!(wrong.status, 401, "{}", wrong.body);
    }
    let mut owner = Browser::new(&app).await;
    owner.extra = vec![("X-Forwarded-For", "203.0.113.3".to_owned())];
    let limited = owner.sign_in("ALICE", PASSWORD).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(limited.body.contains("Too many sign-in attempts"));
    assert!(
        set_cookies(&limited)
            .iter()
            .all(|(n, _)| n != "hubbub_session")
    );
    assert_eq!(owner.signed_in_as().await, None);

    // Per address: four attempts at four names, then the fifth (a new name) waits.
    let mut scanner = Browser::new(&app).await;
    scanner.extra = vec![("X-Forwarded-For", "192.0.2.9".to_owned())];
    for name in ["ann", "ben", "cat", "dan"] {
        assert_eq!(scanner.sign_in(name, PASSWORD).await.status, 401);
    }
    assert_eq!(scanner.sign_in("eve", PASSWORD).await.status, 429);
    assert_eq!(
        scanner.sign_up("Eve", PASSWORD).await.status,
        429,
        "sign-ups count too"
    );
    // Other addresses and names carry on.
    let mut other = Browser::new(&app).await;
    other.extra = vec![("X-Forwarded-For", "192.0.2.10".to_owned())];
    assert_eq!(other.sign_up("Frank", PASSWORD).await.status, 303);
    app.stop().await;
}

/// A wrong name and a wrong password get the same answer, and take about the same time:
/// both check one password against one Argon2id hash.
#[tokio::test]
async fn a_wrong_name_and_a_wrong_password_look_alike() {
    let app = spawn_app_with(|config| {
        config.sign_ins_per_name_per_minute = 1000;
    })
    .await;
    let mut alice = Browser::new(&app).await;
    assert_eq!(alice.sign_up("Alice", PASSWORD).await.status, 303);
    let mut guesser = Browser::new(&app).await;
    // The first of each warms up; then they alternate, so drift hits both alike.
    let mut times = [Vec::new(), Vec::new()];
    let mut bodies = [String::new(), String::new()];
    for round in 0..7 {
        for (which, name) in ["Alice", "Nobody At All"].into_iter().enumerate() {
            let started = Instant::now();
            let response = guesser.sign_in(name, "not the password").await;
            let took = started.elapsed();
            assert_eq!(response.status, 401, "{name}: {}", response.body);
            bodies[which] = response.body.replace(name, "NAME");
            if round > 0 {
                times[which].push(took);
            }
        }
    }
    assert_eq!(
        bodies[0], bodies[1],
        "the same page, but for the name typed"
    );
    assert!(bodies[0].contains("Wrong name or password."));
    // The fastest of each: the work itself, whatever else the machine (and the other tests
    // in this binary, hashing too) was doing meanwhile.
    let fastest = |times: &[Duration]| times.iter().min().copied().unwrap();
    let (known, unknown) = (fastest(&times[0]), fastest(&times[1]));
    // Without the decoy hash an unknown name answers in well under a millisecond against
    // tens of milliseconds (a ratio near 100); the bound leaves room for a noisy machine,
    // not for that.
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    assert!(
        (0.25..4.0).contains(&ratio),
        "known name {known:?}, unknown name {unknown:?}"
    );
    assert!(
        unknown > Duration::from_millis(2),
        "an unknown name checks a hash too: {unknown:?}"
    );
    app.stop().await;
}

/// Broken and hostile forms get a page saying what is wrong, and create nothing.
#[tokio::test]
async fn broken_forms_are_answered_clearly() {
    let app = spawn_app_with(|_| {}).await;
    let mut guest = Browser::new(&app).await;
    let cases: [(&str, Form, u16, &str); 7] = [
        ("/signup", &[], 422, "A name is 1 to 32 characters"),
        ("/signup", &[("name", "Zed")], 422, "at least 8 characters"),
        (
            "/signup",
            &[("name", "Zed"), ("password", "short")],
            422,
            "at least 8 characters",
        ),
        (
            "/signup",
            &[("name", "Zed\u{202E}"), ("password", PASSWORD)],
            422,
            "without control or invisible characters",
        ),
        ("/login", &[], 401, "Wrong name or password."),
        (
            "/login",
            &[
                ("name", "<script>alert(1)</script>"),
                ("password", PASSWORD),
            ],
            401,
            "Wrong name or password.",
        ),
        ("/account/password", &[], 303, ""),
    ];
    for (path, form, status, says) in cases {
        let response = guest.post(path, form).await;
        assert_eq!(
            response.status, status,
            "{path} {form:?}: {}",
            response.body
        );
        assert!(response.body.contains(says), "{path}: {}", response.body);
        assert!(!response.body.contains("<script>alert"), "escaped");
    }
    let huge = "x".repeat(1025);
    let response = guest.sign_up("Zed", &huge).await;
    assert_eq!(response.status, 422);
    assert!(response.body.contains("at most 1,024 characters"));
    // Not a form at all.
    let origin = app.url("");
    let response = app
        .request_body(
            "POST",
            "/signup",
            &[("Origin", &origin), ("Content-Type", "application/json")],
            r#"{"name": "Zed", "password": "correct horse"}"#,
        )
        .await;
    assert_eq!(response.status, 422, "{}", response.body);
    let response = app
        .request_body(
            "POST",
            "/login",
            &[
                ("Origin", &origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "name=%FF%FE&password=%00%01",
        )
        .await;
    assert_eq!(response.status, 401, "{}", response.body);
    // Where a sign-in continues to stays on this site.
    let mut zed = Browser::new(&app).await;
    let signed = zed
        .post(
            "/signup",
            &[
                ("name", "Zed"),
                ("password", PASSWORD),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(signed.status, 303);
    assert_eq!(location(&signed), "/");
    let mut other = Browser::new(&app).await;
    let signed = other
        .post(
            "/login",
            &[
                ("name", "zed"),
                ("password", PASSWORD),
                ("next", "/rooms/design?around=4"),
            ],
        )
        .await;
    assert_eq!(location(&signed), "/rooms/design?around=4");
    app.stop().await;
}

/// `--guests read-only`: guests read but cannot post, react or rename; `--guests off`:
/// guests see only the sign-in and sign-up pages. Signed-in users do everything.
#[tokio::test]
async fn guests_can_be_limited_to_reading_or_kept_out() {
    let app = spawn_app_with(|config| {
        config.guests = hubbub::config::Guests::ReadOnly;
    })
    .await;
    let mut guest = Browser::new(&app).await;
    let page = guest.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Guests can read here."), "{}", page.body);
    assert!(!page.body.contains("hx-post=\"/name\""));
    let renamed = app.rename(&guest.jar.header(), "Gus").await;
    assert_eq!(renamed.status, 403, "{}", renamed.body);
    let mut reader = app.connect_to("general", Some(&guest.jar.header())).await;
    reader.say("a guest's words").await;
    let notice = reader.wait_for_notice().await;
    assert!(notice.contains("guests can only read here"), "{notice}");
    let mut member = Browser::new(&app).await;
    assert_eq!(member.sign_up("Mia", PASSWORD).await.status, 303);
    let mut writer = app.connect_to("general", Some(&member.jar.header())).await;
    posted(&mut writer, "a member's words").await;
    reader
        .until("the member's message", |page| {
            page.texts() == ["a member's words"]
        })
        .await;
    app.stop().await;

    let app = spawn_app_with(|config| {
        config.guests = hubbub::config::Guests::Off;
    })
    .await;
    let outside = app.get("/rooms/design?around=3").await;
    assert_eq!(outside.status, 303);
    assert_eq!(location(&outside), "/login?next=/rooms/design%3Faround%3D3");
    for path in ["/rooms/general/history?before=5", "/search?q=x", "/ws"] {
        let refused = app.get(path).await;
        assert_eq!(refused.status, 401, "{path}: {}", refused.body);
        assert!(refused.body.contains("Sign in to read this chat"));
    }
    for path in ["/login", "/signup", "/healthz"] {
        assert_eq!(app.get(path).await.status, 200, "{path}");
    }
    let mut member = Browser {
        app: &app,
        jar: Jar::default(),
        extra: Vec::new(),
    };
    assert_eq!(member.sign_up("Mia", PASSWORD).await.status, 303);
    assert_eq!(member.get("/").await.status, 200);
    let mut socket = app.connect_to("general", Some(&member.jar.header())).await;
    posted(&mut socket, "members only").await;
    app.stop().await;
}

/// Signing out on one node closes the session's sockets on another, and only those.
#[tokio::test]
async fn signing_out_on_one_node_closes_pages_on_another() {
    let Some(cluster) =
        crate::support::cluster::Cluster::new("accounts::signing_out_on_one_node").await
    else {
        return;
    };
    let [a, b] = cluster.nodes::<2>().await;
    let zoe = crate::moderation::signed_up(&a, "Zoe").await;
    let mut there = b.connect_to("general", Some(&zoe)).await;
    let mut guest = b.connect_to("general", None).await;
    // Node a hears of node b's users before the sign-out is told.
    let mut watcher = a.connect_to("general", None).await;
    watcher
        .until("node b's users", |page| page.present_total == 3)
        .await;
    let origin = a.url("");
    let out = a
        .request_body(
            "POST",
            "/logout",
            &[
                ("Cookie", &zoe),
                ("Origin", &origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "",
        )
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_signed_out(&mut there).await;
    posted(&mut guest, "the guest on node b carries on").await;
    b.wait_for_scrape(r#"hubbub_disconnects_total{reason="signed_out"}"#, 1.0)
        .await;
    a.stop().await;
    b.stop().await;
}

/// Two guests may share a name, but never look alike: each is shown with a mark of their
/// own id, in messages (live and from the store) and in the presence list; a claimed name
/// is shown bare.
async fn guests_who_share_a_name_are_told_apart(db: Arc<TestDb>) {
    let app = spawn_app_on(db, "127.0.0.1:0", |_| {}).await;
    let sam = app.named("Sam").await;
    let other_sam = app.named("Sam").await;
    let zed = crate::moderation::signed_up(&app, "Zed").await;
    let mut one = app.connect_to("general", Some(&sam)).await;
    let mut two = app.connect_to("general", Some(&other_sam)).await;
    let mut claimed = app.connect_to("general", Some(&zed)).await;
    let first = posted(&mut one, "I am Sam").await;
    let second = posted(&mut two, "No, I am Sam").await;
    let third = posted(&mut claimed, "I am Zed, and only I").await;
    claimed
        .until("both guests listed", |page| page.present.len() == 3)
        .await;

    let marks = |page: &crate::support::client::TestClient| {
        [first, second, third].map(|id| {
            let shown = page.message(id).expect("shown");
            (shown.author.clone(), shown.guest.clone())
        })
    };
    let live = marks(&claimed);
    let (Some(a), Some(b)) = (&live[0].1, &live[1].1) else {
        panic!("guests unmarked: {live:?}");
    };
    assert_ne!(a, b, "two guests, two marks");
    assert_eq!(live[0].0, "Sam");
    assert_eq!(live[1].0, "Sam");
    assert_eq!(live[2], ("Zed".to_owned(), None));
    let mut present = claimed.present.clone();
    present.sort();
    let mut expected = vec![format!("Sam #{a}"), format!("Sam #{b}"), "Zed".to_owned()];
    expected.sort();
    assert_eq!(present, expected);

    // From the store: a newcomer's history, and the page itself.
    let mut later = app.connect_to("general", None).await;
    later
        .until("the three messages", |page| page.shown.len() == 3)
        .await;
    assert_eq!(marks(&later), live);
    let page = app.get("/rooms/general").await;
    assert!(
        page.body.contains(&format!("guest #{a}")) && page.body.contains(&format!("guest #{b}")),
        "{}",
        page.body
    );
    app.stop().await;
}
both_backends!(guests_who_share_a_name_are_told_apart);
