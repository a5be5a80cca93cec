//! Shutdown: every client is told 1012 (htmx reconnects on it) and the server exits cleanly.

use std::time::Duration;

use futures::future::join_all;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::PATIENCE;
use crate::support::app::{spawn_app, spawn_app_with};
use crate::support::db::TestDb;
use crate::support::faults::ChildServer;

#[tokio::test]
async fn shutdown_sends_1012_to_every_client_and_returns() {
    let app = spawn_app().await;
    let mut clients = join_all((0..10).map(|_| app.connect())).await;
    app.wait_for_stats("ten sessions", |s| s.connected == 10)
        .await;

    app.shutdown.cancel();
    for client in &mut clients {
        let close = client.wait_for_close().await.expect("a close frame");
        assert_eq!(close.code, CloseCode::Restart);
    }
    let served = tokio::time::timeout(PATIENCE, app.server)
        .await
        .expect("serve returned");
    served.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(app.addr).await.is_err(),
        "the listener is closed"
    );
}

/// The real binary, stopped with a real SIGTERM.
#[tokio::test]
async fn sigterm_closes_connections_with_1012_and_exits_0() {
    // The accept loop and the sessions see the signal at the same moment. A server that
    // returned as soon as its accept loop ended could exit before its sessions said goodbye
    // (seen once, as a reset instead of 1012, in a loaded full run); several rounds give
    // such a race more chances to show.
    for round in 0..4 {
        let db = TestDb::sqlite();
        let server = ChildServer::start(&db, &["--shutdown-grace", "5s"]).await;
        let mut client = server.connect().await;
        client.say("before the restart").await;
        client.wait_for_shown(1).await;

        server.signal("-TERM");
        let close = client.wait_for_close().await.expect("a close frame");
        assert_eq!(close.code, CloseCode::Restart, "round {round}");
        drop(client);

        let (status, lines) = server.wait().await;
        assert!(status.success(), "exit status {status}");
        assert!(
            lines.iter().any(|l| l.contains("hubbub stopped")),
            "{lines:#?}"
        );
    }
}

/// A client that starts a request and never finishes it cannot hold shutdown past the
/// grace period.
#[tokio::test]
async fn a_stalled_http_client_cannot_hold_shutdown_past_the_grace_period() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|config| config.shutdown_grace = Duration::from_millis(500)).await;
    let mut stalled = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stalled
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut client = app.connect().await;

    app.shutdown.cancel();
    assert_eq!(
        client.wait_for_close().await.unwrap().code,
        CloseCode::Restart
    );
    // PATIENCE (10 s) is far above the 0.5 s grace: returning at all is the proof.
    tokio::time::timeout(PATIENCE, app.server)
        .await
        .expect("serve returned")
        .unwrap()
        .unwrap();
    drop(stalled);
}
