//! Bans: a moderator bans a name (`/moderation`); the banned user's open pages are closed
//! (1008) on every node, and they cannot post or rename again until a moderator lifts the
//! ban. Everyone else is kept off the moderators' page.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::changes::posted;
use crate::moderation::{admin, signed_up};
use crate::support::app::{TestApp, spawn_app};
use crate::support::cluster::Cluster;
use crate::support::eventually::eventually;
use crate::support::http::HttpResponse;

/// Posts a moderation form as the page does.
async fn moderate(app: &TestApp, cookie: &str, path: &str, body: &str) -> HttpResponse {
    let origin = app.url("");
    app.request_body(
        "POST",
        path,
        &[
            ("Cookie", cookie),
            ("Origin", &origin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body,
    )
    .await
}

/// The user id of the first ban the moderators' page lists.
fn listed_user(page: &str) -> String {
    let marker = r#"name="user" value=""#;
    let from = page.find(marker).unwrap() + marker.len();
    page[from..][..32].to_owned()
}

#[tokio::test]
async fn a_ban_reaches_every_node_and_can_be_lifted() {
    let Some(cluster) = Cluster::new("bans::a_ban_reaches_every_node").await else {
        return;
    };
    let [a, b] = cluster.nodes::<2>().await;
    let mia = signed_up(&a, "Mia").await;
    let (ok, out, err) = admin(&cluster.db, &["grant", "Mia"]);
    assert!(ok, "{out}{err}");
    let troll = signed_up(&b, "Troll").await;
    let mut trolling = b.connect_to("general", Some(&troll)).await;
    posted(&mut trolling, "before the ban").await;

    // Banned on node a: the socket on node b closes, with the reason.
    let banned = moderate(&a, &mia, "/moderation/ban", "name=troll").await;
    assert_eq!(banned.status, 303, "{}", banned.body);
    let close = trolling.wait_for_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(close.reason.as_str(), "banned by a moderator");
    let list = a
        .request_with("GET", "/moderation", &[("Cookie", &mia)])
        .await;
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains("<strong>Troll</strong>, by Mia"),
        "{}",
        list.body
    );

    // Back on node b: reading, yes; posting, renaming, no.
    let mut again = b.connect_to("general", Some(&troll)).await;
    again.say("after the ban").await;
    let notice = again.wait_for_notice().await;
    assert!(notice.contains("banned from posting"), "{notice}");
    let page = b.request_with("GET", "/", &[("Cookie", &troll)]).await;
    assert!(
        page.body
            .contains("You have been banned from posting here.")
    );
    assert_eq!(b.rename(&troll, "Innocent").await.status, 403);

    // Lifted on node a: node b lets them post again within its next re-read.
    let user = listed_user(&list.body);
    let lifted = moderate(&a, &mia, "/moderation/unban", &format!("user={user}")).await;
    assert_eq!(lifted.status, 303, "{}", lifted.body);
    eventually("posting again on node b", async || {
        let page = b.request_with("GET", "/", &[("Cookie", &troll)]).await;
        if page.body.contains("You have been banned") {
            Err("still banned")
        } else {
            Ok(())
        }
    })
    .await;
    let mut back = b.connect_to("general", Some(&troll)).await;
    posted(&mut back, "sorry about that").await;

    // A guest on node b, banned by name on node a (which knows them from b's presence).
    let pest = b.named("Pest").await;
    let mut pestering = b.connect_to("design", Some(&pest)).await;
    let mut watching = a.connect_to("design", None).await;
    watching
        .until("the guest from node b", |page| {
            page.present.iter().any(|name| name == "Pest")
        })
        .await;
    let banned = moderate(&a, &mia, "/moderation/ban", "name=Pest").await;
    assert_eq!(banned.status, 303, "{}", banned.body);
    let close = pestering.wait_for_close().await.expect("a close frame");
    assert_eq!(close.reason.as_str(), "banned by a moderator");
    a.stop().await;
    b.stop().await;
}

/// Only moderators reach the page and its forms; broken input gets a page saying what is
/// wrong; a guest is banned by the name they have here.
#[tokio::test]
async fn moderation_is_for_moderators_and_says_what_is_wrong() {
    let app = spawn_app().await;
    let mia = signed_up(&app, "Mia").await;
    let bob = signed_up(&app, "Bob").await;
    let (guest, _) = app.visit("/").await;
    for cookie in [&bob, &guest, &String::new()] {
        assert_eq!(
            app.request_with("GET", "/moderation", &[("Cookie", cookie)])
                .await
                .status,
            403
        );
        let refused = moderate(&app, cookie, "/moderation/ban", "name=Mia").await;
        assert_eq!(refused.status, 403);
        assert!(refused.body.contains("Only moderators"), "{}", refused.body);
    }
    let (ok, _, _) = admin(&app.db, &["grant", "mia"]);
    assert!(ok);
    let cases: [(&str, &str, u16, &str); 4] = [
        (
            "/moderation/ban",
            "name=",
            422,
            "A name is 1 to 32 characters",
        ),
        (
            "/moderation/ban",
            "nonsense",
            422,
            "A name is 1 to 32 characters",
        ),
        (
            "/moderation/ban",
            "name=Nobody",
            404,
            "Nobody has claimed Nobody",
        ),
        ("/moderation/unban", "user=..%2F", 422, "32 hex digits"),
    ];
    for (path, body, status, says) in cases {
        let response = moderate(&app, &mia, path, body).await;
        assert_eq!(response.status, status, "{path} {body}: {}", response.body);
        assert!(response.body.contains(says), "{}", response.body);
    }
    let evil = app
        .request_body(
            "POST",
            "/moderation/ban",
            &[
                ("Cookie", &mia),
                ("Origin", "https://evil.example"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "name=Bob",
        )
        .await;
    assert_eq!(evil.status, 403);

    // A guest, by the name they have here.
    let gus = app.named("Gus").await;
    let mut page = app.connect_to("general", Some(&gus)).await;
    let banned = moderate(&app, &mia, "/moderation/ban", "name=Gus").await;
    assert_eq!(banned.status, 303, "{}", banned.body);
    let close = page.wait_for_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    let list = app
        .request_with("GET", "/moderation", &[("Cookie", &mia)])
        .await;
    assert!(list.body.contains("<strong>Gus</strong>"));
    assert!(
        !list.body.contains("<strong>Bob</strong>"),
        "Bob was not banned"
    );
    app.stop().await;
}
