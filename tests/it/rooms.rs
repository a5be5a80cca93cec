//! Rooms, names, presence, typing, the room list, links, and reconnects that catch up.

use std::sync::Arc;
use std::time::Duration;

use crate::support::app::{spawn_app, spawn_app_on, spawn_app_with};
use crate::support::db::TestDb;
use crate::support::http::set_cookie;
use crate::support::page::Older;

#[tokio::test]
async fn rooms_are_isolated_in_messages_history_and_presence() {
    let app = spawn_app().await;
    let alice = app.named("alice").await;
    let bob = app.named("bob").await;
    let mut alice_design = app.connect_to("design", Some(&alice)).await;
    let mut bob_general = app.connect_to("general", Some(&bob)).await;

    alice_design.say("only for design").await;
    alice_design.wait_for_shown(1).await;
    bob_general.say("only for general").await;
    bob_general.wait_for_shown(1).await;
    assert_eq!(
        bob_general.texts(),
        ["only for general"],
        "nothing crossed over"
    );
    assert_eq!(alice_design.texts(), ["only for design"]);
    assert_eq!(alice_design.present, ["alice"]);
    assert_eq!(bob_general.present, ["bob"]);

    // Each room's history and paging are its own.
    let design_page = app.get("/rooms/design").await.body;
    assert!(design_page.contains("only for design") && !design_page.contains("only for general"));
    let newcomer = app.connect_to("general", None).await;
    assert_eq!(newcomer.texts(), ["only for general"]);
    assert_eq!(newcomer.older, Older::Start);
    let older = app.get("/rooms/design/history?before=999").await.body;
    assert!(older.contains("only for design") && !older.contains("only for general"));
}

#[tokio::test]
async fn room_names_are_checked_and_case_folded() {
    let app = spawn_app().await;
    for bad in [
        "Has%20Space",
        "a.b",
        "%C3%BCmlaut",
        "semi;colon",
        &"x".repeat(65),
    ] {
        for path in [
            format!("/rooms/{bad}"),
            format!("/rooms/{bad}/history?before=1"),
            format!("/rooms/{bad}/ws"),
        ] {
            let response = app.get(&path).await;
            assert_eq!(response.status, 400, "{path}");
            assert!(
                response
                    .body
                    .contains("1 to 64 characters of a-z, 0-9, &#39;-&#39; and &#39;_&#39;")
                    || response
                        .body
                        .contains("1 to 64 characters of a-z, 0-9, '-' and '_'"),
                "{path}: {}",
                response.body
            );
        }
    }
    // The sidebar form lands on the room's own address, case-folded.
    let response = app.get("/rooms?name=Design-Team").await;
    assert_eq!(response.status, 303);
    assert_eq!(response.headers["location"], "/rooms/design-team");
    assert_eq!(app.get("/rooms?name=no+spaces").await.status, 400);
    assert_eq!(app.get("/rooms").await.status, 400);
    assert_eq!(app.get("/rooms/DESIGN").await.status, 200);
}

#[tokio::test]
async fn a_name_is_set_checked_and_kept_across_restarts() {
    let db = Arc::new(TestDb::sqlite());
    let app = spawn_app_on(Arc::clone(&db), "127.0.0.1:0", |_| {}).await;
    let (guest, _) = app.visit("/").await;

    for (bad, why) in [
        ("", "1 to 32 characters"),
        ("   ", "1 to 32 characters"),
        (&"x".repeat(33)[..], "1 to 32"),
        ("tab\there", "control"),
    ] {
        let response = app.rename(&guest, bad).await;
        assert_eq!(response.status, 422, "{bad:?}");
        assert!(
            response.body.contains("Not renamed") && response.body.contains(why),
            "{bad:?}: {}",
            response.body
        );
        assert!(
            response.body.contains(r#"hx-swap-oob="true""#),
            "an out-of-band notice"
        );
        assert!(!response.headers.contains_key("set-cookie"));
    }

    let renamed = app.rename(&guest, "  Zoë the <Great>  ").await;
    assert_eq!(renamed.status, 200);
    assert!(
        renamed.body.contains("You are now Zoë the &#60;Great&#62;")
            || renamed.body.contains("You are now Zoë the &lt;Great&gt;"),
        "{}",
        renamed.body
    );
    let cookie = set_cookie(&renamed);
    let mut client = app.connect_to("general", Some(&cookie)).await;
    client.say("hi").await;
    assert_eq!(client.wait_for_shown(1).await[0].author, "Zoë the <Great>");

    // A cross-site form cannot rename anyone.
    let forged = app
        .request_body(
            "POST",
            "/name",
            &[
                ("Cookie", &cookie),
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "name=pwned",
        )
        .await;
    assert_eq!(forged.status, 403);

    // The signing key is kept in the store: the cookie still works after a restart.
    drop(client);
    let db = app.stop().await;
    let app = spawn_app_on(db, "127.0.0.1:0", |_| {}).await;
    let again = app.request_with("GET", "/", &[("Cookie", &cookie)]).await;
    assert!(
        !again.headers.contains_key("set-cookie"),
        "the cookie is still valid"
    );
    assert!(
        again.body.contains(r#"value="Zoë the &#60;Great&#62;""#)
            || again.body.contains(r#"value="Zoë the &lt;Great&gt;""#)
    );
}

#[tokio::test]
async fn a_configured_cookie_secret_signs_cookies_on_every_node() {
    let secret = "a-cookie-secret-that-is-long-enough-for-hubbub";
    let first = spawn_app_with(|config| config.cookie_secret = Some(secret.parse().unwrap())).await;
    let cookie = first.named("shared").await;
    // Another node, another database, the same secret: the same person.
    let second =
        spawn_app_with(|config| config.cookie_secret = Some(secret.parse().unwrap())).await;
    let page = second
        .request_with("GET", "/", &[("Cookie", &cookie)])
        .await;
    assert!(page.body.contains(r#"value="shared""#));
    // Without the secret it is a stranger's cookie.
    let third = spawn_app().await;
    let page = third.request_with("GET", "/", &[("Cookie", &cookie)]).await;
    assert!(!page.body.contains(r#"value="shared""#) && page.headers.contains_key("set-cookie"));
}

#[tokio::test]
async fn presence_counts_users_not_tabs_and_follows_joins_leaves_and_renames() {
    let app = spawn_app().await;
    let alice = app.named("alice").await;
    let bob = app.named("bob").await;
    let mut bob_tab = app.connect_to("design", Some(&bob)).await;
    assert_eq!(bob_tab.present, ["bob"]);

    let alice_one = app.connect_to("design", Some(&alice)).await;
    bob_tab
        .until("alice to appear", |c| c.present == ["alice", "bob"])
        .await;
    let alice_two = app.connect_to("design", Some(&alice)).await;
    assert_eq!(
        alice_two.present,
        ["alice", "bob"],
        "a second tab is the same user"
    );

    // The room list counts users too, everywhere.
    let mut elsewhere = app.connect_to("general", None).await;
    elsewhere
        .until("the room list", |c| {
            c.rooms.iter().any(|(r, n)| r == "design" && *n == 2)
        })
        .await;

    drop(alice_one);
    // One of alice's tabs left: she is still here, so presence does not change; a later
    // rename shows that bob's page saw no "alice left" in between.
    app.rename(&alice, "alice2").await;
    bob_tab
        .until("the rename", |c| c.present.contains(&"alice2".to_owned()))
        .await;
    assert_eq!(bob_tab.present, ["alice2", "bob"]);

    drop(alice_two);
    bob_tab
        .until("alice to leave", |c| c.present == ["bob"])
        .await;
    elsewhere
        .until("the count to drop", |c| {
            c.rooms.iter().any(|(r, n)| r == "design" && *n == 1)
        })
        .await;
}

#[tokio::test]
async fn a_renamed_user_posts_under_the_new_name_at_once() {
    let app = spawn_app().await;
    let cookie = app.named("before").await;
    let mut client = app.connect_to("general", Some(&cookie)).await;
    client.say("one").await;
    client.wait_for_shown(1).await;
    app.rename(&cookie, "after").await;
    client.say("two").await;
    let authors: Vec<String> = client
        .wait_for_shown(2)
        .await
        .iter()
        .map(|m| m.author.clone())
        .collect();
    assert_eq!(
        authors,
        ["before", "after"],
        "the open connection picked up the new name"
    );
}

#[tokio::test]
async fn join_and_leave_notices_are_off_by_default_and_on_when_asked() {
    let quiet = spawn_app().await;
    let mut watcher = quiet.connect_to("general", None).await;
    drop(quiet.connect_to("general", None).await);
    watcher.say("sentinel").await;
    watcher.wait_for_shown(1).await;
    assert!(watcher.events.is_empty(), "{:?}", watcher.events);

    let chatty = spawn_app_with(|config| config.presence_notices = true).await;
    let mut watcher = chatty.connect_to("general", None).await;
    let cookie = chatty.named("carol").await;
    drop(chatty.connect_to("general", Some(&cookie)).await);
    watcher.until("both notices", |c| c.events.len() == 2).await;
    assert_eq!(watcher.events, ["carol joined", "carol left"]);
}

#[tokio::test]
async fn typing_is_shown_to_others_throttled_and_expires() {
    let app = spawn_app_with(|config| config.typing_timeout = Duration::from_millis(400)).await;
    let alice = app.named("alice").await;
    let mut alice = app.connect_to("general", Some(&alice)).await;
    let mut bob = app.connect_to("general", None).await;
    let typing = r#"{"kind":"typing","headers":{"HX-Request":"true"}}"#;

    alice.send_raw(typing.into()).await;
    bob.until("alice typing", |c| c.typing == "alice is typing…")
        .await;
    let shown = bob.swaps.get("typing").copied().unwrap_or(0);
    // Keystrokes within the throttle window are not announced again.
    for _ in 0..5 {
        alice.send_raw(typing.into()).await;
    }
    // Then it expires by itself (the last keystroke renewed it, so it lasts a bit longer).
    bob.until("the indicator to expire", |c| c.typing.is_empty())
        .await;
    assert_eq!(
        bob.swaps["typing"],
        shown + 1,
        "one announcement, then one expiry"
    );
    // Alice never sees her own name.
    alice.say("sentinel").await;
    alice.wait_for_shown(1).await;
    assert!(!alice.typing.contains("alice"), "{}", alice.typing);
}

#[tokio::test]
async fn a_message_ends_its_authors_typing_line() {
    let app = spawn_app().await; // 5 s expiry: only the message can clear it this quickly
    let alice = app.named("alice").await;
    let mut alice = app.connect_to("general", Some(&alice)).await;
    let mut bob = app.connect_to("general", None).await;
    alice.send_raw(r#"{"kind":"typing"}"#.into()).await;
    bob.until("alice typing", |c| c.typing == "alice is typing…")
        .await;
    alice.say("done typing").await;
    bob.until("the message", |c| c.shown.len() == 1).await;
    assert_eq!(bob.typing, "", "cleared in the same frame as the message");
}

#[tokio::test]
async fn a_new_room_appears_in_everyones_room_list() {
    let app = spawn_app().await;
    let mut watcher = app.connect_to("general", None).await;
    assert!(!watcher.rooms.iter().any(|(r, _)| r == "brand-new"));
    let mut creator = app.connect_to("brand-new", None).await;
    creator.say("first!").await;
    creator.wait_for_shown(1).await;
    drop(creator);
    watcher
        .until("the new room", |c| {
            c.rooms.iter().any(|(r, _)| r == "brand-new")
        })
        .await;
    // Listed from the store: still there for a newcomer after everyone left.
    let page = app.get("/").await.body;
    assert!(page.contains(r#"data-room="brand-new""#));
    assert_eq!(watcher.rooms[0].0, "general", "general comes first");
}

#[tokio::test]
async fn links_become_safe_links_and_other_schemes_stay_text() {
    let app = spawn_app().await;
    let mut client = app.connect_to("general", None).await;
    client
        .say("see https://example.com/a?b=1&c=2, or javascript:alert(1)")
        .await;
    // The page model checks the exact form of every link (rel, target, http(s) only).
    let shown = client.wait_for_shown(1).await;
    assert_eq!(
        shown[0].text,
        "see https://example.com/a?b=1&c=2, or javascript:alert(1)"
    );
    let page = app.get("/").await.body;
    assert!(page.contains(r#"<a href="https://example.com/a?b=1&#38;c=2" rel="noopener nofollow ugc" target="_blank">"#)
        || page.contains(r#"<a href="https://example.com/a?b=1&amp;c=2" rel="noopener nofollow ugc" target="_blank">"#), "{page}");
    assert!(!page.contains(r#"href="javascript"#));
}

#[tokio::test]
async fn a_reconnect_after_a_restart_shows_everything_sent_meanwhile_once() {
    let db = Arc::new(TestDb::sqlite());
    let app = spawn_app_on(Arc::clone(&db), "127.0.0.1:0", |_| {}).await;
    let mut alice = app.connect_to("general", None).await;
    alice.say("before").await;
    alice.wait_for_shown(1).await;

    // The server restarts; alice's page keeps what it showed.
    let db = app.stop().await;
    let page = std::mem::take(&mut alice.page);
    let app = spawn_app_on(db, "127.0.0.1:0", |_| {}).await;
    let mut bob = app.connect_to("general", None).await;
    for i in 0..3 {
        bob.say(&format!("while away {i}")).await;
    }
    bob.wait_for_shown(4).await;

    // htmx reconnects the same page.
    let mut again = app.connect_to_page("general", None, page).await;
    assert_eq!(
        again.texts(),
        ["before", "while away 0", "while away 1", "while away 2"]
    );
    again.say("back").await;
    again.wait_for_shown(5).await;
    let mut ids = again.ids();
    ids.dedup();
    assert_eq!(ids.len(), 5, "nothing twice");
}

#[tokio::test]
async fn a_reconnect_after_a_long_outage_leaves_no_gap() {
    let app = spawn_app().await;
    let mut alice = app.connect_to("general", None).await;
    alice.say("last seen").await;
    alice.wait_for_shown(1).await;
    let page = std::mem::take(&mut alice.page);
    drop(alice);

    // More is said while alice is away than the in-memory history holds.
    let mut bob = app.connect_to("general", None).await;
    for i in 0..80 {
        bob.say(&format!("missed {i}")).await;
    }
    bob.wait_for_shown(81).await;

    let mut again = app.connect_to_page("general", None, page).await;
    assert_eq!(
        again.shown.len(),
        50,
        "the newest 50, replacing the stale list"
    );
    // "Load older" reaches back past what she last saw: no gap.
    while let Older::Before(before) = again.older {
        let response = app
            .get(&format!("/rooms/general/history?before={before}"))
            .await;
        again.page.apply_older_page(&response.body);
    }
    let expected: Vec<String> = std::iter::once("last seen".to_owned())
        .chain((0..80).map(|i| format!("missed {i}")))
        .collect();
    assert_eq!(again.texts(), expected);
}
