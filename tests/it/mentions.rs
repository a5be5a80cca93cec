//! Mentions: `@name` is marked in the message (the same bytes for every reader); the
//! people it names hear of it on their pages in other rooms at once, and count it among
//! their unread messages when a page next opens; and each reader chooses, per room, what
//! their browser notifies them of.

use std::sync::Arc;

use crate::both_backends;
use crate::changes::{delete, posted};
use crate::support::app::{TestApp, spawn_app_on, spawn_app_with};
use crate::support::client::TestClient;
use crate::support::db::TestDb;
use crate::support::eventually::eventually;

async fn read(client: &mut TestClient, id: u64) {
    let frame = serde_json::json!({"kind": "read", "id": id.to_string(), "headers": {"HX-Request": "true"}});
    client.send_raw(frame.to_string()).await;
}

async fn notify(app: &TestApp, room: &str, cookie: &str, level: &str) -> (u16, String) {
    let origin = app.url("");
    let response = app
        .request_body(
            "POST",
            &format!("/rooms/{room}/notify"),
            &[
                ("Cookie", cookie),
                ("Origin", &origin),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("HX-Request", "true"),
            ],
            &format!("notify={level}"),
        )
        .await;
    (response.status, response.body)
}

async fn mentions_reach_who_they_name(db: Arc<TestDb>) {
    let app = spawn_app_on(db, "127.0.0.1:0", |_| {}).await;
    let ada = app.named("Ada Lovelace").await;
    let bob = app.named("Bob").await;
    let mut talk = app.connect_to("general", Some(&bob)).await;
    let start = posted(&mut talk, "a first message").await;

    // Ada has read general, and is in another room.
    let mut reading = app.connect_to("general", Some(&ada)).await;
    reading
        .until("the first", |page| page.shown.len() == 1)
        .await;
    read(&mut reading, start).await;
    let mut away = app.connect_to("design", Some(&ada)).await;
    away.until("general's count", |page| page.unread("general") == Some(0))
        .await;

    // The message marks the mention for every reader alike.
    let id = posted(&mut talk, "@AdaLovelace can you look? cc @nobody").await;
    let frame_html = app.get("/rooms/general/history?before=999999").await.body;
    assert!(
        frame_html.contains(
            r#"<span class="mention" data-mention="adalovelace">@AdaLovelace</span> can you look?"#
        ),
        "{frame_html}"
    );
    // Ada's page elsewhere hears of it, with who and what.
    away.until("the mention", |page| page.mention_news.len() == 1)
        .await;
    assert_eq!(
        away.mention_news[0],
        (
            "general".to_owned(),
            "Bob".to_owned(),
            "@AdaLovelace can you look? cc @nobody".to_owned()
        )
    );
    // Her page in general sees it arrive, and hears no news of it.
    reading
        .until("the message", |page| page.message(id).is_some())
        .await;
    assert!(reading.mention_news.is_empty());
    // Not in code, not of oneself, and not twice for one message.
    talk.say("`@AdaLovelace` in code").await;
    talk.until("the code", |page| {
        page.texts()
            .last()
            .is_some_and(|t| t == "@AdaLovelace in code")
    })
    .await;
    let own = posted(&mut talk, "note to self, @bob").await;
    let twice = posted(&mut talk, "@adalovelace @ADALOVELACE").await;
    let deleted = posted(&mut talk, "@AdaLovelace never mind").await;
    delete(&mut talk, deleted).await;
    talk.until("the delete", |page| {
        page.message(deleted).is_some_and(|m| m.deleted)
    })
    .await;
    away.until("three mentions", |page| page.mention_news.len() == 3)
        .await;
    assert!(talk.mention_news.is_empty(), "Bob hears nothing of his own");
    assert!(own > id && twice > own);

    // A new page counts from the store: two unread mentions (the deleted one is gone).
    let mut again = app.connect_to("design", Some(&ada)).await;
    again
        .until("the counts", |page| page.swaps.contains_key("unread"))
        .await;
    let told = again.told.get("general").expect("general's line");
    assert_eq!(told.mentions, 2, "{told:?}");
    assert_eq!(told.unread, 4, "{told:?}");
    app.stop().await;
}
both_backends!(mentions_reach_who_they_name);

/// The per-room setting: stored for the reader, shown on the page and in the counts;
/// nonsense is refused and changes nothing.
#[tokio::test]
async fn each_room_has_its_own_notification_setting() {
    let app = spawn_app_with(|_| {}).await;
    let (cookie, page) = app.visit("/").await;
    assert!(
        page.body.contains(r#"data-notify="mentions""#),
        "the default"
    );
    assert!(page.body.contains(r#"<option value="mentions" selected>"#));
    let (status, body) = notify(&app, "general", &cookie, "all").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("every message in #general"), "{body}");
    let page = app.request_with("GET", "/", &[("Cookie", &cookie)]).await;
    assert!(page.body.contains(r#"data-notify="all""#));
    assert!(page.body.contains(r#"<option value="all" selected>"#));
    let design = app
        .request_with("GET", "/rooms/design", &[("Cookie", &cookie)])
        .await;
    assert!(
        design.body.contains(r#"data-notify="mentions""#),
        "per room"
    );

    // The counts carry it, once the room has a mark.
    let mut here = app.connect_to("general", Some(&cookie)).await;
    let id = posted(&mut here, "something").await;
    read(&mut here, id).await;
    eventually("the setting in the counts", async || {
        let mut page = app.connect_to("design", Some(&cookie)).await;
        page.until("the counts", |page| page.swaps.contains_key("unread"))
            .await;
        match page.told.get("general") {
            Some(told) if told.notify == "all" => Ok(()),
            other => Err(other.cloned()),
        }
    })
    .await;

    for bad in ["loud", "", "ALL", "all%00"] {
        let (status, body) = notify(&app, "general", &cookie, bad).await;
        assert_eq!(status, 422, "{bad:?}: {body}");
        assert!(body.contains("one of all, mentions or none"), "{body}");
    }
    let (status, _) = notify(&app, "not%20a%20room", &cookie, "none").await;
    assert_eq!(status, 400);
    let evil = app
        .request_body(
            "POST",
            "/rooms/general/notify",
            &[
                ("Cookie", &cookie),
                ("Origin", "https://evil.example"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "notify=none",
        )
        .await;
    assert_eq!(evil.status, 403);
    let page = app.request_with("GET", "/", &[("Cookie", &cookie)]).await;
    assert!(page.body.contains(r#"data-notify="all""#), "unchanged");
    let (status, _) = notify(&app, "general", "", "none").await;
    assert_eq!(status, 422, "no cookie, nobody to remember it for");
    app.stop().await;
}

/// Settings are writes: counted per address with renames (`--renames-per-minute`).
#[tokio::test]
async fn settings_are_limited_per_address() {
    let app = spawn_app_with(|config| {
        config.trust_proxy = true;
        config.renames_per_minute = 2;
    })
    .await;
    let (cookie, _) = app.visit("/").await;
    let origin = app.url("");
    let from = |address: &'static str, level: &'static str| {
        let (cookie, origin) = (cookie.clone(), origin.clone());
        let app = &app;
        async move {
            app.request_body(
                "POST",
                "/rooms/general/notify",
                &[
                    ("Cookie", &cookie),
                    ("Origin", &origin),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("X-Forwarded-For", address),
                ],
                &format!("notify={level}"),
            )
            .await
        }
    };
    assert_eq!(from("203.0.113.5", "all").await.status, 200);
    assert_eq!(from("203.0.113.5", "none").await.status, 200);
    let limited = from("203.0.113.5", "mentions").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.headers.contains_key("retry-after"));
    assert!(limited.body.contains("too many changes from your address"));
    assert_eq!(from("203.0.113.6", "mentions").await.status, 200);
    app.stop().await;
}

/// Typing `@` asks for the people in the room whose names start so: each with what to
/// insert, escaped; nobody, nothing; broken input, a clear answer.
#[tokio::test]
async fn the_composer_is_offered_names_to_mention() {
    let app = spawn_app_with(|_| {}).await;
    let names = ["Ada Lovelace", "Adam", "Bob", "<b>Eve</b>"];
    let mut pages = Vec::new();
    for name in names {
        let cookie = app.named(name).await;
        pages.push(app.connect_to("general", Some(&cookie)).await);
    }
    let offered = |q: &str| {
        let path = format!("/rooms/general/names?q={q}");
        let app = &app;
        async move {
            let response = app.get(&path).await;
            assert_eq!(response.status, 200, "{path}: {}", response.body);
            response.body
        }
    };
    let ada = offered("ad").await;
    assert!(
        ada.contains(r#"role="listbox" aria-label="Mention someone in #general""#),
        "{ada}"
    );
    assert!(
        ada.contains(r#"data-insert="@adalovelace">Ada Lovelace</li>"#),
        "{ada}"
    );
    assert!(ada.contains(r#"data-insert="@adam">Adam</li>"#));
    assert!(!ada.contains("Bob"));
    assert!(ada.contains(r#"id="mention-opt-0" aria-selected="true""#));
    let everyone = offered("").await;
    assert_eq!(everyone.matches("role=\"option\"").count(), 4);
    assert!(
        everyone.contains("&lt;b&gt;Eve&lt;/b&gt;"),
        "escaped: {everyone}"
    );
    assert!(!everyone.contains("<b>Eve"));
    assert_eq!(offered("zz").await, "", "nobody: nothing");
    assert_eq!(offered("%FF%FE").await, "");
    assert_eq!(offered(&"a".repeat(100)).await, "");
    assert_eq!(app.get("/rooms/not%20a%20room/names?q=a").await.status, 400);
    drop(pages);
    app.stop().await;
}
