//! Global order across writers: what the store says about each batch (`prev`), reading back
//! by id, and two nodes over one PostgreSQL catching up from it.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;
use hubbub::domain::{DisplayName, MessageText, NewMessage, RoomName, Write};
use hubbub::store::{self, Appended, Store};

use crate::both_backends;
use crate::support::app::spawn_app_on;
use crate::support::db::{Backend, TestDb};

fn message(room: &str, text: &str) -> NewMessage {
    NewMessage::now(
        RoomName::parse(room).unwrap(),
        DisplayName::parse("tester").unwrap(),
        MessageText::parse(text, 1000).unwrap().unwrap(),
    )
}

async fn append(store: &dyn Store, texts: &[(&str, &str)]) -> Appended {
    let batch: Vec<Write> = texts
        .iter()
        .map(|(room, text)| Write::Post(message(room, text)))
        .collect();
    store.append(&batch).await.unwrap()
}

async fn store_reports_prev_and_reads_back_by_id(db: Arc<TestDb>) {
    let store = store::open(&db.url).await.unwrap();
    assert_eq!(store.newest_id().await.unwrap(), 0);

    let first = append(store.as_ref(), &[("general", "a"), ("other", "b")]).await;
    assert_eq!(first.prev, 0, "nothing before the first batch");
    assert_eq!(first.ids().len(), 2);
    assert!(first.ids()[0] < first.ids()[1]);
    let second = append(store.as_ref(), &[("general", "c")]).await;
    assert_eq!(second.prev, first.ids()[1]);

    // A rolled-back insert may consume ids (PostgreSQL's identity does): `prev` is what was
    // committed, never "first id - 1".
    db.execute(
        "BEGIN; INSERT INTO messages (room, author, body, created_at) VALUES ('general', 'x', 'gone', 0); ROLLBACK;",
    )
    .await
    .unwrap();
    let third = append(store.as_ref(), &[("general", "d")]).await;
    assert_eq!(third.prev, second.ids()[0]);
    if db.backend == Backend::Postgres {
        assert!(
            third.ids()[0] > third.prev + 1,
            "the rolled-back id was skipped"
        );
    }
    assert_eq!(store.newest_id().await.unwrap(), third.ids()[0]);

    // Every room, oldest first, `after < id <= upto`, limited.
    let all = store.between(0, u64::MAX, 100).await.unwrap();
    let texts: Vec<&str> = all.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["a", "b", "c", "d"]);
    assert_eq!(all[1].room.as_str(), "other");
    let middle = store
        .between(first.ids()[0], second.ids()[0], 100)
        .await
        .unwrap();
    let ids: Vec<u64> = middle.iter().map(|m| m.id).collect();
    assert_eq!(ids, [first.ids()[1], second.ids()[0]]);
    let limited = store.between(0, u64::MAX, 2).await.unwrap();
    let ids: Vec<u64> = limited.iter().map(|m| m.id).collect();
    assert_eq!(ids, first.ids());
    assert!(
        store
            .between(third.ids()[0], u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
both_backends!(store_reports_prev_and_reads_back_by_id);

/// Two stores (two nodes' worth of connections) appending at once: sorted by id, every
/// batch's `prev` is the newest id of the batch before it. That is what lets a node tell a
/// gap from a follow-on batch.
async fn concurrent_writers_chain_their_batches(db: Arc<TestDb>) {
    let stores = [
        store::open(&db.url).await.unwrap(),
        store::open(&db.url).await.unwrap(),
    ];
    let writers = stores.iter().enumerate().map(|(w, store)| async move {
        let mut batches = Vec::new();
        for i in 0..25 {
            let text = format!("{w}-{i}");
            let size = 1 + i % 3;
            let texts: Vec<(&str, &str)> = (0..size).map(|_| ("general", text.as_str())).collect();
            batches.push(append(store.as_ref(), &texts).await);
        }
        batches
    });
    let mut batches: Vec<Appended> = join_all(writers).await.into_iter().flatten().collect();
    batches.sort_by_key(|b| b.ids()[0]);
    let mut newest = 0;
    for batch in &batches {
        assert_eq!(batch.prev, newest, "{batches:?}");
        assert!(batch.ids().windows(2).all(|w| w[0] < w[1]));
        newest = *batch.ids().last().unwrap();
    }
    assert_eq!(stores[0].newest_id().await.unwrap(), newest);
}
both_backends!(concurrent_writers_chain_their_batches);

/// Two nodes over one PostgreSQL schema, each with only the local broker: neither hears of
/// the other's messages live (carrying them is the Redis broker's job), but a node's next
/// own commit says (by its `prev`) that it missed something, and the node reads it back
/// from the store before its own message: its clients see everything, in order, once.
#[tokio::test]
async fn a_node_catches_up_from_postgres_what_another_node_committed() {
    let Some(db) =
        TestDb::postgres("sequencing::a_node_catches_up_from_postgres_what_another_node_committed")
            .await
    else {
        return;
    };
    let db = Arc::new(db);
    let a = spawn_app_on(Arc::clone(&db), "127.0.0.1:0", |_| {}).await;
    let b = spawn_app_on(Arc::clone(&db), "127.0.0.1:0", |_| {}).await;
    let mut alice = a.connect().await;
    let mut bob = b.connect().await;

    alice.say("one").await;
    alice.say("two").await;
    alice.wait_for_shown(2).await;
    // Node B does not learn of them live: it has broadcast nothing, and its own next
    // commit (the marker; nothing can carry one from A, which is the point) finds both
    // missing and reads them back. Had B heard of them at any time before, it would have
    // had no gap to catch up.
    assert_eq!(b.metric("hubbub_messages_broadcast_total"), 0.0);

    bob.say("three").await;
    bob.wait_for_shown(3).await;
    let seen = bob.texts();
    assert_eq!(seen, ["one", "two", "three"]);
    assert_eq!(b.metric("hubbub_messages_caught_up_total"), 2.0);

    // And the other way round: A misses "three" until its own next commit.
    alice.say("four").await;
    alice.wait_for_shown(4).await;
    let seen = alice.texts();
    assert_eq!(seen, ["one", "two", "three", "four"]);
    bob.say("five").await;
    bob.wait_for_shown(5).await;
    let seen = bob.texts();
    assert_eq!(seen, ["one", "two", "three", "four", "five"]);

    // A commit in another room on A brings "five" to A's "general": the gap is the
    // node's, not the room's.
    let mut dave = a.connect_to("elsewhere", None).await;
    dave.say("six").await;
    dave.wait_for_shown(1).await;
    assert_eq!(dave.texts(), ["six"]);
    alice.wait_for_shown(5).await;
    let seen = alice.texts();
    assert_eq!(seen, ["one", "two", "three", "four", "five"]);

    // Newcomers on either node get the same history.
    let mut carol = b.connect().await;
    let mut erin = a.connect().await;
    for client in [&mut carol, &mut erin] {
        client.wait_for_shown(5).await;
        let history = client.texts();
        assert_eq!(history, ["one", "two", "three", "four", "five"]);
    }

    // Nothing more arrives: no duplicates on any page, ids unique and increasing. Each
    // node commits a marker last, A's first (so that B's also catches A's up): whatever a
    // page still had coming would come before its node's marker.
    alice.say("marker from a").await;
    alice
        .until("A's marker", |page| {
            page.texts().ends_with(&["marker from a".to_owned()])
        })
        .await;
    bob.say("marker from b").await;
    let on_a = ["one", "two", "three", "four", "five", "marker from a"];
    let on_b = [
        "one",
        "two",
        "three",
        "four",
        "five",
        "marker from a",
        "marker from b",
    ];
    for (client, expected) in [
        (&mut alice, &on_a[..]),
        (&mut erin, &on_a[..]),
        (&mut bob, &on_b[..]),
        (&mut carol, &on_b[..]),
    ] {
        client
            .until("its node's marker", |page| {
                page.shown.len() >= expected.len()
            })
            .await;
        assert_eq!(client.texts(), expected);
        let ids = client.ids();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    }
}
