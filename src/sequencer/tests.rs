//! The sequencer over a real SQLite file. Batches are committed through the store itself,
//! so the store holds what the sequencer has not been told about, as it does when another
//! node commits.

use super::*;
use crate::domain::{DisplayName, MessageText, NewMessage, RoomName, Write};
use crate::hub::HubSettings;
use crate::store::{DatabaseUrl, open};

struct Fixture {
    store: Arc<dyn Store>,
    hub: Hub,
    url: DatabaseUrl,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let url = DatabaseUrl::new(format!("sqlite://{}", dir.path().join("t.db").display()));
    let store = open(&url).await.unwrap_or_else(|err| panic!("{err}"));
    let hub = Hub::new(HubSettings::default());
    // Loaded (empty), so that what is delivered stays in its history, which the tests read.
    hub.load(&RoomName::general(), &[], false);
    Fixture {
        store,
        hub,
        url,
        _dir: dir,
    }
}

fn message(room: &str, text: &str) -> NewMessage {
    NewMessage::now(
        RoomName::parse(room).unwrap_or_else(|_| panic!("{room}")),
        DisplayName::parse("tester").unwrap_or_else(|_| panic!("name")),
        MessageText::parse(text, 1000)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("{text}")),
    )
}

impl Fixture {
    /// Commits texts (each `room:text` or just `text` for `general`) in one transaction,
    /// without telling any sequencer: what another node's commit looks like from here.
    async fn commit(&self, texts: &[&str]) -> Committed {
        let batch: Vec<Write> = texts
            .iter()
            .map(|t| match t.split_once(':') {
                Some((room, text)) => Write::Post(message(room, text)),
                None => Write::Post(message("general", t)),
            })
            .collect();
        let appended = self
            .store
            .append(&batch)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        Committed {
            prev: appended.prev,
            messages: appended.committed(),
        }
    }

    fn sequencer(&self, last: u64) -> Sequencer {
        Sequencer::at(
            Arc::clone(&self.store),
            self.hub.clone(),
            last,
            WAITING_MESSAGES,
        )
    }

    /// The ids in `general`'s history, in the order the hub keeps them.
    fn shown(&self) -> Vec<u64> {
        let html = self
            .hub
            .history_html(&RoomName::general())
            .unwrap_or_default();
        html.split("id=\"msg-")
            .skip(1)
            .map(|rest| {
                rest[..rest.find('"').unwrap_or(0)]
                    .parse()
                    .unwrap_or_else(|err| panic!("{err}: {rest}"))
            })
            .collect()
    }

    fn metric(&self, name: &str) -> u64 {
        let text = self.hub.metrics().encode();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    }

    /// Runs SQL on a connection of its own (to break and mend the schema).
    async fn execute(&self, sql: &'static str) {
        let pool = sqlx::SqlitePool::connect(self.url.expose())
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        sqlx::raw_sql(sql)
            .execute(&pool)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        pool.close().await;
    }
}

const CAUGHT_UP: &str = "hubbub_messages_caught_up_total";
const DUPLICATES: &str = "hubbub_messages_duplicate_total";

#[tokio::test]
async fn batches_in_order_are_delivered_without_reading_the_store() {
    let f = fixture().await;
    let mut sequencer = f.sequencer(0);
    let first = f.commit(&["a", "b"]).await;
    let second = f.commit(&["c"]).await;
    assert_eq!(first.prev, 0, "an empty store has nothing before");
    assert_eq!(second.prev, 2, "prev is the newest id committed before");

    sequencer.accept(&first).await;
    sequencer.accept(&second).await;
    assert_eq!(f.shown(), [1, 2, 3]);
    assert_eq!(sequencer.last(), 3);
    assert!(!sequencer.is_behind());
    assert_eq!(f.metric(CAUGHT_UP), 0);
}

#[tokio::test]
async fn a_batch_seen_twice_is_delivered_once() {
    let f = fixture().await;
    let mut sequencer = f.sequencer(0);
    let batch = f.commit(&["a", "b"]).await;
    sequencer.accept(&batch).await;
    sequencer.accept(&batch).await; // e.g. the broker's echo of our own publish
    assert_eq!(f.shown(), [1, 2]);
    assert_eq!(f.metric(DUPLICATES), 2);

    // An old batch arriving late, while the sequencer waits on nothing, changes nothing.
    let next = f.commit(&["c"]).await;
    sequencer.accept(&next).await;
    sequencer.accept(&batch).await;
    assert_eq!(f.shown(), [1, 2, 3]);
    assert_eq!(f.metric(DUPLICATES), 4);
}

#[tokio::test]
async fn a_partly_delivered_batch_delivers_only_its_new_messages() {
    let f = fixture().await;
    let batch = f.commit(&["a", "b", "c"]).await;
    // Ids 1 and 2 were delivered already (say a resync read them while this batch, committed
    // as one transaction, was still on its way).
    let mut sequencer = f.sequencer(2);
    sequencer.accept(&batch).await;
    assert_eq!(f.shown(), [3]);
    assert_eq!(sequencer.last(), 3);
    assert_eq!(f.metric(DUPLICATES), 2);
    assert_eq!(f.metric(CAUGHT_UP), 0);
}

#[tokio::test]
async fn a_gap_is_filled_from_the_store_in_order_across_rooms() {
    let f = fixture().await;
    let mut sequencer = f.sequencer(0);
    // Committed elsewhere; this node hears of none of it.
    f.commit(&["a", "elsewhere:x"]).await;
    f.commit(&["b"]).await;
    let told = f.commit(&["c", "d"]).await;
    assert_eq!(told.prev, 3);

    sequencer.accept(&told).await;
    assert_eq!(f.shown(), [1, 3, 4, 5], "general's messages, in id order");
    assert_eq!(sequencer.last(), 5);
    assert!(!sequencer.is_behind());
    // The other room's message counted for the order and reached the room list.
    assert_eq!(f.metric(CAUGHT_UP), 3);
    assert!(
        f.hub
            .room_counts()
            .iter()
            .any(|count| count.room.as_str() == "elsewhere")
    );

    // The missed batches arriving late are duplicates now.
    let late = f.commit(&["e"]).await;
    sequencer.accept(&late).await;
    assert_eq!(f.shown(), [1, 3, 4, 5, 6]);
}

#[tokio::test]
async fn a_gap_longer_than_a_page_is_read_page_by_page() {
    let f = fixture().await;
    let mut sequencer = f.sequencer(0);
    let texts: Vec<String> = (0..PAGE as usize + 20).map(|i| format!("m{i}")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for chunk in texts.chunks(100) {
        f.commit(chunk).await;
    }
    let told = f.commit(&["last"]).await;
    sequencer.accept(&told).await;
    let shown = f.shown();
    // The hub keeps the newest `history_limit`; they are the newest, in order.
    let newest = told.newest();
    let expected: Vec<u64> = (newest + 1 - shown.len() as u64..=newest).collect();
    assert_eq!(shown, expected);
    assert_eq!(f.metric(CAUGHT_UP), texts.len() as u64);
    assert_eq!(sequencer.last(), newest);
}

#[tokio::test]
async fn resync_delivers_what_was_committed_during_an_outage_once() {
    let f = fixture().await;
    let before = f.commit(&["a"]).await;
    let mut sequencer = Sequencer::start(Arc::clone(&f.store), f.hub.clone())
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(sequencer.last(), 1, "starts at the store's newest id");

    // The broker was down: three batches committed elsewhere went unheard.
    f.commit(&["b"]).await;
    let missed = f.commit(&["c", "d"]).await;
    sequencer.resync().await;
    assert_eq!(f.shown(), [2, 3, 4]);
    assert_eq!(sequencer.last(), 4);

    // Nothing new: a second resync reads nothing; the late batches are duplicates.
    sequencer.resync().await;
    sequencer.accept(&missed).await;
    sequencer.accept(&before).await;
    assert_eq!(f.shown(), [2, 3, 4]);
    assert_eq!(f.metric(CAUGHT_UP), 3);
    assert!(!sequencer.is_behind());
}

#[tokio::test]
async fn a_store_failure_during_a_catch_up_delays_but_never_reorders() {
    let f = fixture().await;
    let mut sequencer = f.sequencer(0);
    f.commit(&["a", "b"]).await; // unheard
    let third = f.commit(&["c"]).await;
    let fourth = f.commit(&["d"]).await;

    // The store cannot be read: the catch-up fails, nothing is delivered out of order.
    f.execute("ALTER TABLE messages RENAME TO messages_away")
        .await;
    sequencer.accept(&third).await;
    assert!(f.shown().is_empty(), "{:?}", f.shown());
    assert_eq!(sequencer.last(), 0);
    let first_retry = sequencer.retry_at().unwrap_or_else(|| panic!("a retry"));
    // A later batch waits behind it, and does not hit the store before the retry is due.
    sequencer.accept(&fourth).await;
    assert!(f.shown().is_empty());
    assert_eq!(sequencer.retry_at(), Some(first_retry));
    assert_eq!(sequencer.waiting_messages, 2);

    // Still failing: the backoff grows.
    sequencer.retry().await;
    let second_retry = sequencer.retry_at().unwrap_or_else(|| panic!("a retry"));
    assert!(second_retry > first_retry);
    assert!(
        sequencer
            .retry
            .is_some_and(|(_, backoff)| backoff == FIRST_RETRY * 2)
    );

    // The store is back: everything, in order, once.
    f.execute("ALTER TABLE messages_away RENAME TO messages")
        .await;
    sequencer.retry().await;
    assert_eq!(f.shown(), [1, 2, 3, 4]);
    assert_eq!(sequencer.retry_at(), None);
    assert!(!sequencer.is_behind());
    assert_eq!(sequencer.waiting_messages, 0);
    assert_eq!(f.metric(CAUGHT_UP), 2);
}

#[tokio::test]
async fn waiting_batches_beyond_the_bound_are_read_back_from_the_store() {
    let f = fixture().await;
    let mut sequencer = Sequencer::at(Arc::clone(&f.store), f.hub.clone(), 0, 3);
    f.commit(&["a"]).await; // unheard
    let batches = [
        f.commit(&["b", "c"]).await,
        f.commit(&["d", "e"]).await,
        f.commit(&["f"]).await,
    ];
    f.execute("ALTER TABLE messages RENAME TO messages_away")
        .await;
    for batch in &batches {
        sequencer.accept(batch).await;
    }
    // 2 + 2 messages is over the bound of 3: the batches were let go, the target kept.
    assert_eq!(sequencer.waiting_messages, 1);
    assert!(sequencer.is_behind());

    f.execute("ALTER TABLE messages_away RENAME TO messages")
        .await;
    sequencer.retry().await;
    assert_eq!(f.shown(), [1, 2, 3, 4, 5, 6]);
    assert!(!sequencer.is_behind());
}
