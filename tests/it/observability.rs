//! What an operator sees: `/metrics` counts what really happened on real sockets,
//! `/readyz` follows the real store, and `--log-format json` writes JSON lines.

use std::io::{BufRead, BufReader};
use std::sync::Arc;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::both_backends;
use crate::support::PATIENCE;
use crate::support::app::{spawn_app, spawn_app_on, spawn_app_with};
use crate::support::db::TestDb;
use crate::support::metrics::value;

#[tokio::test]
async fn metrics_count_a_short_chat() {
    let app = spawn_app().await;
    let before = app.scrape().await;
    assert_eq!(value(&before, "hubbub_connections"), 0.0);
    assert_eq!(value(&before, "hubbub_messages_received_total"), 0.0);

    let mut alice = app.connect().await;
    let mut bob = app.connect().await;
    let mut carol = app.connect().await;
    app.wait_for_scrape("hubbub_connections", 3.0).await;

    alice.say("one").await;
    alice.say("two").await;
    bob.say("three").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.wait_for_shown(3).await;
    }
    let text = app.scrape().await;
    assert_eq!(value(&text, "hubbub_connects_total"), 3.0);
    assert_eq!(value(&text, "hubbub_messages_received_total"), 3.0);
    assert_eq!(value(&text, "hubbub_messages_broadcast_total"), 3.0);
    assert_eq!(
        value(&text, "hubbub_commit_batch_size_sum"),
        3.0,
        "every message went through one commit"
    );
    let fanouts = value(&text, "hubbub_fanout_duration_seconds_count");
    assert!((1.0..=3.0).contains(&fanouts), "{fanouts} fan-outs");
    assert_eq!(value(&text, "hubbub_rooms"), 1.0);
    assert_eq!(value(&text, "hubbub_slow_client_evictions_total"), 0.0);
    for reason in ["rate_limited", "too_long", "invalid", "store_unavailable"] {
        let series = format!("hubbub_messages_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(value(&text, &series), 0.0, "{series}");
    }

    // A page closed: its session ends as the client's close, and the gauge follows.
    carol.ws.close(None).await.unwrap();
    let text = app
        .wait_for_scrape("hubbub_disconnects_total{reason=\"client_closed\"}", 1.0)
        .await;
    let text = if value(&text, "hubbub_connections") == 2.0 {
        text
    } else {
        app.wait_for_scrape("hubbub_connections", 2.0).await
    };
    assert_eq!(
        value(
            &text,
            "hubbub_disconnects_total{reason=\"connection_lost\"}"
        ),
        0.0
    );
    assert_eq!(value(&text, "hubbub_connects_total"), 3.0);
}

#[tokio::test]
async fn two_servers_in_one_process_count_apart() {
    let busy = spawn_app().await;
    let quiet = spawn_app().await;
    let mut client = busy.connect().await;
    client.say("only here").await;
    client.wait_for_shown(1).await;

    let busy_text = busy.scrape().await;
    let quiet_text = quiet.scrape().await;
    assert_eq!(value(&busy_text, "hubbub_messages_received_total"), 1.0);
    assert_eq!(value(&busy_text, "hubbub_connections"), 1.0);
    assert_eq!(value(&quiet_text, "hubbub_messages_received_total"), 0.0);
    assert_eq!(value(&quiet_text, "hubbub_messages_broadcast_total"), 0.0);
    assert_eq!(value(&quiet_text, "hubbub_connections"), 0.0);
}

#[tokio::test]
async fn refused_messages_are_counted_by_reason_and_a_flood_by_its_disconnect() {
    let app = spawn_app_with(|config| {
        config.message_rate = 1;
        config.message_burst = 3;
        config.max_message_chars = 20;
    })
    .await;
    let mut sender = app.connect().await;

    // Three within the burst, then two over the rate: each refused with a notice.
    for i in 0..3 {
        sender.say(&format!("burst {i}")).await;
    }
    sender.wait_for_shown(3).await;
    for i in 0..2 {
        sender.say(&format!("too fast {i}")).await;
        let notice = sender.wait_for_notice().await;
        assert!(notice.contains("sending too fast"), "{notice}");
    }
    // Too long and unreadable: refused before the rate limit is consulted.
    sender.say(&"x".repeat(21)).await;
    sender.wait_for_notice().await;
    sender.send_raw("not json".to_owned()).await;
    sender.wait_for_notice().await;

    let text = app.scrape().await;
    let rejected = |text: &str, reason: &str| {
        value(
            text,
            &format!("hubbub_messages_rejected_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(rejected(&text, "rate_limited"), 2.0);
    assert_eq!(rejected(&text, "too_long"), 1.0);
    assert_eq!(rejected(&text, "invalid"), 1.0);
    assert_eq!(value(&text, "hubbub_messages_received_total"), 7.0);
    assert_eq!(value(&text, "hubbub_messages_broadcast_total"), 3.0);

    // A flood from another connection: refused, then disconnected with 1008.
    let mut flooder = app.connect().await;
    for i in 0..100 {
        flooder.say(&format!("flood {i}")).await;
    }
    let close = flooder.wait_for_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    let text = app
        .wait_for_scrape("hubbub_disconnects_total{reason=\"flooding\"}", 1.0)
        .await;
    assert!(
        rejected(&text, "rate_limited") > 2.0,
        "the flood's refusals count too"
    );
    // The flood's burst went through.
    app.wait_for_scrape("hubbub_messages_broadcast_total", 6.0)
        .await;
}

#[tokio::test]
async fn refused_upgrades_are_counted_by_the_limit_that_refused_them() {
    let app = spawn_app_with(|config| config.max_connections = 1).await;
    let _held = app.connect().await;
    let refused = tokio_tungstenite::connect_async(app.ws_request(Some(&app.url("")))).await;
    assert!(refused.is_err(), "the second connection is over the limit");
    let text = app.scrape().await;
    let refusals = |limit: &str| {
        value(
            &text,
            &format!("hubbub_connections_refused_total{{reason=\"{limit}\"}}"),
        )
    };
    assert_eq!(refusals("total"), 1.0);
    assert_eq!(refusals("per_ip"), 0.0);
    assert_eq!(value(&text, "hubbub_connections"), 1.0);
    assert_eq!(value(&text, "hubbub_connects_total"), 1.0);
}

both_backends!(readiness_follows_the_store_and_liveness_does_not);
async fn readiness_follows_the_store_and_liveness_does_not(db: Arc<TestDb>) {
    let app = spawn_app_on(Arc::clone(&db), "127.0.0.1:0", |_| {}).await;
    let ready = app.get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    assert_eq!(app.get("/healthz").await.status, 200);
    // Connected (so the room is loaded) before the outage.
    let mut sender = app.connect().await;

    // A real failure inside the real database: the table the server needs is gone.
    db.execute("ALTER TABLE messages RENAME TO messages_away")
        .await
        .unwrap();
    let not_ready = app.get("/readyz").await;
    assert_eq!(not_ready.status, 503, "{}", not_ready.body);
    assert!(
        not_ready.body.starts_with("store unavailable: "),
        "{}",
        not_ready.body
    );
    let url = db.url.expose();
    let server = url.split('?').next().unwrap();
    for secret in [server, "postgres://", "sqlite://", "password", "messages"] {
        assert!(
            !not_ready.body.contains(secret),
            "{secret:?} leaked: {}",
            not_ready.body
        );
    }
    let alive = app.get("/healthz").await;
    assert_eq!(alive.status, 200, "liveness does not depend on the store");

    // A message in the outage is refused, and counted as such.
    sender.say("lost").await;
    sender.wait_for_notice().await;
    let text = app.scrape().await;
    assert_eq!(
        value(
            &text,
            "hubbub_messages_rejected_total{reason=\"store_unavailable\"}"
        ),
        1.0
    );

    // The failed commit itself makes the node unready for a while (or until a commit
    // succeeds): the store's own probe fails too here, both lines are given.
    let not_ready = app.get("/readyz").await;
    assert_eq!(not_ready.status, 503, "{}", not_ready.body);
    assert!(
        not_ready.body.contains("the last commit failed"),
        "{}",
        not_ready.body
    );

    // The store comes back: the store's probe passes at once, and the next message goes
    // through and clears the failed commit.
    db.execute("ALTER TABLE messages_away RENAME TO messages")
        .await
        .unwrap();
    sender.say("back").await;
    assert_eq!(sender.wait_for_shown(1).await[0].text, "back");
    let ready = app.get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
}

/// Runs the real binary with `args` on port 0 and returns its first `lines` lines of
/// standard output, then stops it.
fn binary_output(args: &[&str], lines: usize) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("hubbub.db").display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .args(["--addr", "127.0.0.1:0", "--database", &database])
        .args(args)
        .env("HUBBUB_LOG", "info")
        .env_remove("RUST_LOG")
        .env_remove("HUBBUB_LOG_FORMAT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut read = Vec::new();
    while read.len() < lines {
        match rx.recv_timeout(PATIENCE) {
            Ok(line) => read.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    read
}

#[tokio::test]
async fn json_logs_are_one_json_object_per_line() {
    // Up to and including the line announcing the address.
    let lines = tokio::task::spawn_blocking(|| binary_output(&["--log-format", "json"], 2))
        .await
        .unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let mut listening = false;
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
        assert!(entry["timestamp"].is_string(), "{line}");
        assert_eq!(entry["level"], "INFO", "{line}");
        let message = entry["message"].as_str().unwrap();
        listening |= message.starts_with("hubbub listening on http://127.0.0.1:");
    }
    assert!(listening, "{lines:?}");

    // Text stays the default.
    let text = tokio::task::spawn_blocking(|| binary_output(&[], 1))
        .await
        .unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&text[0]).is_err());
}

#[test]
fn an_unknown_log_format_is_a_clear_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .args(["--addr", "127.0.0.1:0", "--log-format", "xml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid value 'xml' for '--log-format <LOG_FORMAT>'"),
        "{stderr}"
    );
    assert!(stderr.contains("[possible values: text, json]"), "{stderr}");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .args(["--addr", "127.0.0.1:0"])
        .env("HUBBUB_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'yaml'"), "{stderr}");
}
