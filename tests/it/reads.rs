//! Read marks and unread counts: a page reports how far it has read; the mark is stored
//! (in batches) and read back when the page next loads (the "New messages" line) and
//! when a socket opens (every room's unread count); pages in other rooms count a room's
//! new messages from its counter; reading on one tab clears the count on the others.

use std::sync::Arc;

use crate::both_backends;
use crate::changes::{delete, posted};
use crate::support::app::{TestApp, spawn_app_on, spawn_app_with};
use crate::support::client::TestClient;
use crate::support::db::TestDb;
use crate::support::eventually::eventually;
use crate::support::http::set_cookie;

/// What the page's script sends when messages up to `id` have been in view.
async fn read(client: &mut TestClient, id: u64) {
    let frame = serde_json::json!({"kind": "read", "id": id.to_string(), "headers": {"HX-Request": "true"}});
    client.send_raw(frame.to_string()).await;
}

/// The `data-read` mark a room's page is served with, if any.
async fn page_mark(app: &TestApp, room: &str, cookie: &str) -> Option<u64> {
    let page = app
        .request_with("GET", &format!("/rooms/{room}"), &[("Cookie", cookie)])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let from = page.body.find("data-read=\"")? + "data-read=\"".len();
    Some(
        page.body[from..][..page.body[from..].find('"').unwrap()]
            .parse()
            .unwrap(),
    )
}

/// Reading moves the mark (stored within a flush, read back by the next page and socket);
/// a room elsewhere counts what it has not read, leaving out the reader's own and deleted
/// messages; reading on one tab clears the count on the others.
async fn unread_counts_follow_the_reader(db: Arc<TestDb>) {
    let app = spawn_app_on(db, "127.0.0.1:0", |_| {}).await;
    let (alice, _) = app.visit("/").await;
    let bob = app.named("Bob").await;
    let mut talk = app.connect_to("general", Some(&bob)).await;
    let first = posted(&mut talk, "before alice reads").await;

    // Alice has never read general: no mark, no count.
    assert_eq!(page_mark(&app, "general", &alice).await, None);
    let mut here = app.connect_to("general", Some(&alice)).await;
    here.until("the first message", |page| page.shown.len() == 1)
        .await;
    read(&mut here, first).await;
    eventually("the mark to be stored", async || {
        match page_mark(&app, "general", &alice).await {
            Some(mark) if mark == first => Ok(()),
            other => Err(other),
        }
    })
    .await;

    // In another room, Alice's page is told general's count and then its counter moves.
    let mut elsewhere = app.connect_to("design", Some(&alice)).await;
    elsewhere
        .until("general's count", |page| page.unread("general") == Some(0))
        .await;
    let second = posted(&mut talk, "one").await;
    posted(&mut talk, "two").await;
    let third = posted(&mut talk, "three").await;
    elsewhere
        .until("three unread", |page| page.unread("general") == Some(3))
        .await;
    // Her own message is read; a deleted one is not news.
    let mine = posted(&mut here, "alice's own").await;
    delete(&mut talk, second).await;
    talk.until("the delete", |page| {
        page.message(second).is_some_and(|m| m.deleted)
    })
    .await;
    // A new socket counts from the store, exactly.
    let mut again = app.connect_to("design", Some(&alice)).await;
    again
        .until("two unread, from the store", |page| {
            page.unread("general") == Some(2)
        })
        .await;
    assert!(
        again.unread("design").is_none(),
        "design was never read here"
    );

    // Reading on the general tab clears general on her other pages at once.
    read(&mut here, mine).await;
    for page in [&mut elsewhere, &mut again] {
        page.until("general read elsewhere", |page| {
            page.unread("general") == Some(0)
        })
        .await;
    }
    // Bob's pages hear nothing of Alice's reading.
    assert_eq!(talk.swaps.get("unread-news"), None);
    assert!(mine > third);
    app.stop().await;
}
both_backends!(unread_counts_follow_the_reader);

/// A mark is only ever moved forward and never past the newest message; broken marks get
/// a notice; a flood of marks is held to the typing allowance and, like a typing flood,
/// disconnected (1008).
#[tokio::test]
async fn broken_and_hostile_read_marks() {
    let app = spawn_app_with(|_| {}).await;
    let (alice, _) = app.visit("/").await;
    let mut page = app.connect_to("general", Some(&alice)).await;
    let newest = posted(&mut page, "the only message").await;
    for bad in [
        serde_json::json!({"kind": "read"}),
        serde_json::json!({"kind": "read", "id": "abc"}),
        serde_json::json!({"kind": "read", "id": "-3"}),
        serde_json::json!({"kind": "read", "id": 0}),
        serde_json::json!({"kind": "read", "id": [1]}),
    ] {
        page.send_raw(bad.to_string()).await;
        let notice = page.wait_for_notice().await;
        assert!(notice.contains("could not be read"), "{bad}: {notice}");
    }
    // Far past the newest: taken as the newest.
    read(&mut page, u64::MAX).await;
    eventually("the mark", async || {
        match page_mark(&app, "general", &alice).await {
            Some(mark) if mark == newest => Ok(()),
            other => Err(other),
        }
    })
    .await;
    // Backwards: the mark stays.
    read(&mut page, 1).await;
    let later = posted(&mut page, "a second message").await;
    tokio::time::sleep(hubbub::commit::READ_FLUSH * 2).await;
    assert_eq!(page_mark(&app, "general", &alice).await, Some(newest));
    assert!(later > newest);
    // Hundreds of marks at once: a flood, not a reader.
    for _ in 0..200 {
        read(&mut page, later).await;
    }
    let close = page.wait_for_close().await.expect("a close frame");
    assert_eq!(
        close.code,
        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Policy
    );
    app.stop().await;
}

/// Many readers cost a few statements per flush (256 marks to a statement): every
/// reader's mark is there after one, on either store.
async fn marks_from_many_readers_are_stored_together(db: Arc<TestDb>) {
    let app = spawn_app_on(db, "127.0.0.1:0", |_| {}).await;
    let (writer, _) = app.visit("/").await;
    let mut talk = app.connect_to("general", Some(&writer)).await;
    let newest = posted(&mut talk, "everyone reads this").await;
    let mut readers = Vec::new();
    for _ in 0..300 {
        let (cookie, _) = app.visit("/").await;
        let mut page = app.connect_to("general", Some(&cookie)).await;
        read(&mut page, newest).await;
        readers.push((cookie, page));
    }
    for (cookie, _) in &readers {
        eventually("every mark", async || {
            match page_mark(&app, "general", cookie).await {
                Some(mark) if mark == newest => Ok(()),
                other => Err(other),
            }
        })
        .await;
    }
    let visited = set_cookie(&app.get("/").await);
    assert_eq!(
        page_mark(&app, "general", &visited).await,
        None,
        "a new visitor has no mark"
    );
    app.stop().await;
}
both_backends!(marks_from_many_readers_are_stored_together);

/// Reading a room on one node clears its count on the reader's pages on another node
/// (which need not have the room in memory), through the broker.
#[tokio::test]
async fn reading_on_one_node_clears_the_count_on_another() {
    let Some(cluster) =
        crate::support::cluster::Cluster::new("reads::reading_on_one_node_clears").await
    else {
        return;
    };
    let [a, b] = cluster.nodes::<2>().await;
    let (alice, _) = a.visit("/").await;
    let bob = a.named("Bob").await;
    let mut talk = a.connect_to("general", Some(&bob)).await;
    let first = posted(&mut talk, "before alice reads").await;
    let mut here = a.connect_to("general", Some(&alice)).await;
    here.until("the first message", |page| page.shown.len() == 1)
        .await;
    read(&mut here, first).await;
    eventually("the mark to be stored", async || {
        match page_mark(&b, "general", &alice).await {
            Some(mark) if mark == first => Ok(()),
            other => Err(other),
        }
    })
    .await;
    posted(&mut talk, "one").await;
    let newest = posted(&mut talk, "two").await;

    // Her page on node b is in another room, which node a never loaded.
    let mut there = b.connect_to("design", Some(&alice)).await;
    there
        .until("two unread in general", |page| {
            page.unread("general") == Some(2)
        })
        .await;
    // Node a knows node b is there once b's presence reached it.
    let mut watcher = a.connect_to("design", None).await;
    watcher
        .until("alice from node b", |page| page.present_total == 2)
        .await;
    here.until("both new messages", |page| {
        page.shown.iter().any(|m| m.id == newest)
    })
    .await;
    read(&mut here, newest).await;
    there
        .until("general read on node a", |page| {
            page.unread("general") == Some(0)
        })
        .await;
    assert_eq!(watcher.swaps.get("unread-news"), None, "nobody else hears");
    a.stop().await;
    b.stop().await;
}
