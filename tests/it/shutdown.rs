//! Shutdown: every client is told 1012 (htmx reconnects on it) and the server exits cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use futures::future::join_all;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{PATIENCE, TestClient, spawn_app};

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .args(["--addr", "127.0.0.1:0", "--shutdown-grace", "5s"])
        .env("HUBBUB_LOG", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    // The binary logs its URL once it is listening.
    let stdout = child.stdout.take().unwrap();
    let (url_tx, url_rx) = tokio::sync::oneshot::channel();
    let log = std::thread::spawn(move || {
        let mut url_tx = Some(url_tx);
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(at) = line.find("listening on http://") {
                let url = line[at + "listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned();
                if let Some(tx) = url_tx.take() {
                    let _ = tx.send(url);
                }
            }
            lines.push(line);
        }
        lines
    });
    let url = tokio::time::timeout(PATIENCE, url_rx)
        .await
        .unwrap()
        .unwrap();
    let ws_url = format!("{}/ws", url.replacen("http://", "ws://", 1));

    let (ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let mut client = TestClient::new(ws);
    client.read_frame().await;
    client.say("before the restart").await;
    client.wait_for_shown(1).await;

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let close = client.wait_for_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Restart);

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let lines = log.join().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("hubbub stopped")),
        "{lines:#?}"
    );
}
