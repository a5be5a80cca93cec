//! Durable history on both backends: restarts, `kill -9`, paging back, store failures.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::support::PATIENCE;
use crate::support::app::{TestApp, spawn_app_on};
use crate::support::db::{Backend, POSTGRES_ENV, TestDb};
use crate::support::faults::ChildServer;
use crate::support::page::{Older, PageModel, ShownMessage};

async fn app(db: Arc<TestDb>) -> TestApp {
    spawn_app_on(db, "127.0.0.1:0", |_| {}).await
}

/// The whole history as a page would show it after scrolling all the way up.
async fn walk_history(app: &TestApp) -> PageModel {
    let mut page = app.connect().await.page;
    while let Older::Before(before) = page.older {
        let response = app
            .get(&format!("/rooms/general/history?before={before}"))
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        page.apply_older_page(&response.body);
    }
    page
}

both_backends!(a_restart_keeps_the_history);
async fn a_restart_keeps_the_history(db: Arc<TestDb>) {
    let first = app(db).await;
    let mut client = first.connect().await;
    for text in ["one", "two", "three"] {
        client.say(text).await;
    }
    let before = client.wait_for_shown(3).await.to_vec();
    let db = first.stop().await;

    let second = app(db).await;
    let mut client = second.connect().await;
    assert_eq!(
        client.shown, before,
        "same messages, same ids, same authors, same times"
    );
    assert_eq!(client.older, Older::Start);
    client.say("four").await;
    let after = client.wait_for_shown(4).await;
    assert!(
        after[3].id > before[2].id,
        "ids keep increasing across restarts"
    );
}

both_backends!(paging_walks_the_whole_history_without_gaps_or_duplicates);
async fn paging_walks_the_whole_history_without_gaps_or_duplicates(db: Arc<TestDb>) {
    let app = app(db).await;
    let mut sender = app.connect().await;
    const TOTAL: usize = 237;
    for i in 0..TOTAL {
        sender.say(&format!("m{i}")).await;
    }
    sender.wait_for_shown(TOTAL).await;

    let mut reader = app.connect().await.page;
    assert_eq!(reader.shown.len(), 50, "a newcomer gets the cached history");
    let mut pages = 0;
    while let Older::Before(before) = reader.older {
        // New messages arriving meanwhile must not shift the pages.
        sender.say(&format!("during page {pages}")).await;
        let response = app
            .get(&format!("/rooms/general/history?before={before}"))
            .await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body.matches("<article").count(),
            50.min(reader.shown[0].id as usize - 1).min(50)
        );
        reader.apply_older_page(&response.body);
        pages += 1;
    }
    assert_eq!(
        pages, 4,
        "237 messages: the first 50 plus four pages (50, 50, 50, 37)"
    );
    let texts = reader.texts();
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected);
    assert!(reader.shown.windows(2).all(|w| w[0].id < w[1].id));
}

both_backends!(a_failing_store_refuses_the_message_and_recovers);
async fn a_failing_store_refuses_the_message_and_recovers(db: Arc<TestDb>) {
    let app = app(Arc::clone(&db)).await;
    let mut sender = app.connect().await;
    let mut other = app.connect().await;

    // A real failure inside the real database: the table the server writes to is gone.
    db.execute("ALTER TABLE messages RENAME TO messages_away")
        .await
        .unwrap();
    sender.say("lost in the outage").await;
    let notice = sender.wait_for_notice().await;
    assert_eq!(
        notice,
        "Not sent: the message store is unavailable right now; try again in a moment."
    );
    assert_eq!(
        sender.restored_input.as_deref(),
        Some("lost in the outage"),
        "the text is put back"
    );
    assert!(
        !notice.contains("messages"),
        "database errors stay in the log"
    );

    // The store comes back; so does the chat, by itself.
    db.execute("ALTER TABLE messages_away RENAME TO messages")
        .await
        .unwrap();
    sender.say("after the outage").await;
    other.wait_for_shown(1).await;
    let shown = other.texts();
    assert_eq!(
        shown,
        ["after the outage"],
        "the failed message was never broadcast"
    );
    sender.wait_for_shown(1).await;
    let own = sender.texts();
    assert_eq!(own, ["after the outage"]);
    assert_eq!(app.hub.stats().messages_posted, 1);
    let history: Vec<String> = walk_history(&app)
        .await
        .shown
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(history, ["after the outage"], "and it was never stored");
}

both_backends!(a_message_the_database_refuses_does_not_sink_its_batch);
async fn a_message_the_database_refuses_does_not_sink_its_batch(db: Arc<TestDb>) {
    // A long window so that the messages below share one batch.
    let app = spawn_app_on(Arc::clone(&db), "127.0.0.1:0", |config| {
        config.commit_window = std::time::Duration::from_millis(300);
    })
    .await;
    // The database refuses one particular text (a constraint, as a data error would be).
    db.execute("ALTER TABLE messages ADD CONSTRAINT no_forbidden CHECK (body <> 'forbidden')")
        .await
        .ok();
    if db.backend == Backend::Sqlite {
        // SQLite cannot add a CHECK to an existing table; a trigger raising ABORT is its
        // constraint failure.
        db.execute(
            "CREATE TRIGGER no_forbidden BEFORE INSERT ON messages WHEN NEW.body = 'forbidden' \
             BEGIN SELECT RAISE(ABORT, 'forbidden'); END;",
        )
        .await
        .unwrap();
    }
    let mut alice = app.connect().await;
    let mut bob = app.connect().await;
    alice.say("fine 1").await;
    bob.say("forbidden").await;
    alice.say("fine 2").await;

    let notice = bob.wait_for_notice().await;
    assert_eq!(notice, "Not sent: the message store refused this message.");
    alice.wait_for_shown(2).await;
    let shown = alice.texts();
    assert_eq!(shown, ["fine 1", "fine 2"]);
}

both_backends!(kill_9_after_a_burst_loses_nothing_anyone_saw);
async fn kill_9_after_a_burst_loses_nothing_anyone_saw(db: Arc<TestDb>) {
    const SENDERS: usize = 10;
    const EACH: usize = 50;
    let server = ChildServer::start(&db, &[]).await;

    // Every sender also reads, as a page does; an observer only reads.
    let mut clients = Vec::new();
    for _ in 0..=SENDERS {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .unwrap();
        clients.push(ws);
    }
    let mut readers = Vec::new();
    let mut sends = Vec::new();
    let (progress, mut observed) = tokio::sync::watch::channel(0);
    for (i, ws) in clients.into_iter().enumerate() {
        let (mut sink, mut stream) = ws.split();
        let progress = (i == SENDERS).then(|| progress.clone());
        readers.push(tokio::spawn(async move {
            let mut page = PageModel::default();
            while let Some(Ok(frame)) = stream.next().await {
                if let Message::Text(text) = frame {
                    page.apply_frame(text.as_str());
                    if let Some(progress) = &progress {
                        let _ = progress.send(page.shown.len());
                    }
                }
            }
            page.shown
        }));
        if i < SENDERS {
            sends.push(async move {
                for j in 0..EACH {
                    let frame = serde_json::json!({"text": format!("s{i}-{j}"), "headers": {}});
                    if sink.send(Message::text(frame.to_string())).await.is_err() {
                        break; // the server was killed mid-burst
                    }
                }
            });
        }
    }
    let sending = tokio::spawn(join_all(sends));
    // Mid-burst, once the observer has seen a fifth of it: no grace, no flush, no goodbye.
    tokio::time::timeout(PATIENCE, observed.wait_for(|&n| n >= SENDERS * EACH / 5))
        .await
        .expect("the burst is being delivered")
        .unwrap();
    server.signal("-KILL");
    sending.await.unwrap();
    let (status, _) = server.wait().await;
    assert!(!status.success());

    let mut seen: HashMap<u64, ShownMessage> = HashMap::new();
    let mut sequences = Vec::new();
    for reader in readers {
        let received = reader.await.unwrap();
        sequences.push(received.iter().map(|m| m.id).collect::<Vec<u64>>());
        for message in received {
            if let Some(earlier) = seen.insert(message.id, message.clone()) {
                assert_eq!(earlier, message, "one id, one message, on every client");
            }
        }
    }

    let restarted = app(db).await;
    let history = walk_history(&restarted).await.shown;
    let mut ids: Vec<u64> = history.iter().map(|m| m.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    for message in seen.values() {
        let stored = history.iter().find(|m| m.id == message.id);
        assert_eq!(
            stored,
            Some(message),
            "every message a client saw survived kill -9"
        );
    }
    // Every client received the messages in the stored order.
    for sequence in &sequences {
        let positions: Vec<usize> = sequence
            .iter()
            .map(|id| history.iter().position(|m| m.id == *id).unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "a client saw an order the store does not have"
        );
    }
    // Each sender's messages are stored in the order they were sent.
    for i in 0..SENDERS {
        let own: Vec<usize> = history
            .iter()
            .filter_map(|m| m.text.strip_prefix(&format!("s{i}-"))?.parse().ok())
            .collect();
        assert!(own.windows(2).all(|w| w[0] < w[1]), "sender {i}: {own:?}");
    }
    ids.dedup();
    println!(
        "kill -9 after {} sent: {} seen by clients, {} stored",
        SENDERS * EACH,
        seen.len(),
        ids.len()
    );
    assert!(
        seen.len() >= SENDERS * EACH / 5,
        "clients saw part of the burst before the kill"
    );
}

/// The server's connections are cut (as when PostgreSQL restarts): the pool reconnects and
/// the chat carries on without a restart.
#[tokio::test]
async fn postgres_connections_cut_under_the_server_are_replaced() {
    let Some(db) =
        TestDb::postgres("history::postgres_connections_cut_under_the_server_are_replaced").await
    else {
        return;
    };
    // A name of its own, so that only this test's connections are cut.
    let name = format!("hubbub_cut_{}", std::process::id());
    let url = format!("{}&application_name={name}", db.url.expose());
    let db = Arc::new(db);
    let app = spawn_app_on(Arc::clone(&db), "127.0.0.1:0", |config| {
        config.database = hubbub::store::DatabaseUrl::new(url);
    })
    .await;
    let mut client = app.connect().await;
    client.say("before").await;
    client.wait_for_shown(1).await;

    let admin = sqlx::PgPool::connect(&std::env::var(POSTGRES_ENV).unwrap())
        .await
        .unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!cut.is_empty(), "the server had connections to cut");

    // The next messages go through: a dead connection is noticed and replaced. Should one
    // attempt meet a dead connection, the sender is told and can send again.
    for attempt in 0..3 {
        client.say("after").await;
        let before = client.shown.len();
        client.notice = None;
        client
            .until("the message or a notice", |page| {
                page.shown.len() > before || page.notice.is_some()
            })
            .await;
        if client.shown.len() == 2 {
            break;
        }
        assert!(
            attempt < 2,
            "the store did not recover: {:?}",
            client.notice
        );
    }
    assert_eq!(client.shown.last().unwrap().text, "after");
}

/// A message the server has read is stored even when its sender leaves right after.
#[tokio::test]
async fn a_message_sent_just_before_closing_is_still_stored() {
    let app = app(Arc::new(TestDb::sqlite())).await;
    const ROUNDS: usize = 40;
    for i in 0..ROUNDS {
        let mut client = app.connect().await;
        client.say(&format!("parting words {i}")).await;
        client.ws.close(None).await.unwrap();
        // Finish the closing handshake as a browser does. Dropping the socket with frames
        // still unread makes the kernel reset the connection, and a reset discards what the
        // server had received but not yet read: the message would never have reached it.
        while let Some(Ok(_)) = client.ws.next().await {}
    }
    // Whether each commit landed before or after the observer joined, it shows up once:
    // in the observer's history or live.
    let mut observer = app.connect().await;
    observer.wait_for_shown(ROUNDS).await;
    let texts = observer.texts();
    let expected: Vec<String> = (0..ROUNDS).map(|i| format!("parting words {i}")).collect();
    assert_eq!(texts, expected);
}

#[tokio::test]
async fn control_characters_get_a_notice_and_spare_the_room() {
    let app = app(Arc::new(TestDb::sqlite())).await;
    let mut sender = app.connect().await;
    let mut other = app.connect().await;
    sender.say("evil\0byte").await;
    let notice = sender.wait_for_notice().await;
    assert!(notice.contains("control characters"), "{notice}");
    sender.say("line one\nline two").await;
    let shown = other.wait_for_shown(1).await;
    assert_eq!(shown[0].text, "line one\nline two");
    assert_eq!(app.hub.stats().messages_posted, 1);
}

#[tokio::test]
async fn bad_cursors_are_400_with_a_reason() {
    let app = app(Arc::new(TestDb::sqlite())).await;
    for query in [
        "",
        "?before=",
        "?before=abc",
        "?before=-1",
        "?before=0",
        "?before=1.5",
        "?before=18446744073709551616",
    ] {
        let response = app.get(&format!("/rooms/general/history{query}")).await;
        assert_eq!(response.status, 400, "{query}");
        assert!(
            response.body.contains("expected ?before=ID"),
            "{query}: {}",
            response.body
        );
    }
    let response = app.get("/rooms/No%20Such!/history?before=5").await;
    assert_eq!(response.status, 400);
    assert!(response.body.contains("a-z, 0-9"), "{}", response.body);
    // Another room is another history: empty here.
    let elsewhere = app.get("/rooms/elsewhere/history?before=5").await;
    assert_eq!(elsewhere.status, 200);
    assert!(
        elsewhere.body.contains("Start of conversation") && !elsewhere.body.contains("<article")
    );
    // A cursor beyond the newest message is simply the newest page.
    let response = app.get("/rooms/general/history?before=999999").await;
    assert_eq!(response.status, 200);
    assert!(response.body.contains("Start of conversation"));
}

#[tokio::test]
async fn an_unusable_database_url_stops_start_up_with_a_clear_error() {
    let mut config = hubbub::Config::defaults();
    config.database = hubbub::store::DatabaseUrl::new("mysql://root@localhost/chat");
    let err = hubbub::Server::new(config).await.err().expect("refused");
    assert!(
        err.to_string().contains("use sqlite://PATH or postgres://"),
        "{err}"
    );

    let mut config = hubbub::Config::defaults();
    config.database = hubbub::store::DatabaseUrl::new("sqlite:///nonexistent-dir/x/hubbub.db");
    let err = hubbub::Server::new(config).await.err().expect("refused");
    assert!(
        err.to_string()
            .contains("cannot open the database sqlite:///nonexistent-dir"),
        "{err}"
    );

    let mut config = hubbub::Config::defaults();
    config.database = hubbub::store::DatabaseUrl::new("postgres://nobody:secret@127.0.0.1:1/none");
    let err = hubbub::Server::new(config).await.err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("cannot open the database postgres://nobody:***@127.0.0.1:1/none"),
        "{text}"
    );
    assert!(!text.contains("secret"));
}

#[tokio::test]
async fn a_database_that_is_not_ours_is_refused() {
    // A file that is not SQLite at all.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(100)).unwrap();
    let mut config = hubbub::Config::defaults();
    config.database = hubbub::store::DatabaseUrl::new(format!("sqlite://{}", path.display()));
    let err = hubbub::Server::new(config).await.err().expect("refused");
    assert!(err.to_string().contains("database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "these are my notes, not a database\n".repeat(100),
        "the file is left as it was"
    );
}
