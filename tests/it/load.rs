//! The load tool counts honestly: against hubbub nothing is lost or misrouted, in one room
//! or in groups of rooms at once; against a server that drops or duplicates messages, or
//! mixes rooms, exactly that is reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use hubbub_load::{self as load, LoadConfig};
use tokio::sync::broadcast;

use crate::support::app::spawn_app;

pub fn config(url: String, clients: usize, senders: usize) -> LoadConfig {
    LoadConfig {
        url,
        also_urls: Vec::new(),
        clients,
        senders,
        rate: 100.0,
        groups: Vec::new(),
        room_prefix: "load".to_owned(),
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(300),
        drain: Duration::from_secs(2),
        room: None,
        idle: false,
        server_pid: None,
        max_loss: 0.0,
        connect_concurrency: 64,
        no_spread: false,
    }
}

#[tokio::test]
async fn against_hubbub_every_message_reaches_every_client_once() {
    let app = spawn_app().await;
    let report = load::run(&config(app.url("/"), 20, 4)).await.unwrap();
    assert_eq!(
        report.url,
        format!("ws://{}/rooms/general/ws", app.addr),
        "found the socket on the page"
    );
    assert_eq!(
        (report.connected, report.connect_failures, report.dropped),
        (20, 0, 0)
    );
    assert!(report.sent > 50, "{report:?}");
    assert_eq!(report.expected_deliveries, report.sent * 20);
    assert_eq!(
        (report.deliveries, report.lost, report.duplicates),
        (report.sent * 20, 0, 0)
    );
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.max >= report.latency_ms.p99);
    assert!(report.passed(0.0));
}

#[tokio::test]
async fn a_room_option_and_a_ws_url_work_too() {
    let app = spawn_app().await;
    let mut by_room = config(app.url("/"), 3, 1);
    by_room.room = Some("bench".into());
    let report = load::run(&by_room).await.unwrap();
    assert!(report.url.ends_with("/rooms/bench/ws"), "{}", report.url);
    assert!(report.passed(0.0), "{report:?}");

    let direct = config(format!("ws://{}/rooms/direct/ws", app.addr), 3, 1);
    assert!(load::run(&direct).await.unwrap().passed(0.0));
}

/// A chat that misbehaves on purpose: of every three connections, the first gets nothing
/// and the second gets everything twice.
async fn faulty_server() -> String {
    #[derive(Clone)]
    struct Faulty {
        feed: broadcast::Sender<String>,
        connections: Arc<AtomicUsize>,
    }
    async fn page() -> impl IntoResponse {
        Html(r#"<div hx-ext="ws" ws-connect="/socket"><div id="chat_room"></div></div>"#)
    }
    async fn socket(State(state): State<Faulty>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
        let index = state.connections.fetch_add(1, Ordering::SeqCst);
        upgrade.on_upgrade(move |socket: WebSocket| async move {
            let (mut sink, mut stream) = socket.split();
            let mut feed = state.feed.subscribe();
            let forward = tokio::spawn(async move {
                while let Ok(html) = feed.recv().await {
                    let copies = match index % 3 {
                        0 => 0,
                        1 => 2,
                        _ => 1,
                    };
                    for _ in 0..copies {
                        if sink.send(Message::text(html.clone())).await.is_err() {
                            return;
                        }
                    }
                }
            });
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                let _ = state
                    .feed
                    .send(format!("<p>{}</p>", value["text"].as_str().unwrap()));
            }
            forward.abort();
        })
    }
    let state = Faulty {
        feed: broadcast::channel(100_000).0,
        connections: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route("/", get(page))
        // Every room's page leads to the one socket: the rooms are mixed.
        .route("/rooms/{room}", get(page))
        .route("/socket", get(socket))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

#[tokio::test]
async fn a_server_that_drops_and_duplicates_is_reported_as_such() {
    let url = faulty_server().await;
    let mut run = config(url, 6, 3);
    run.no_spread = true;
    let report = load::run(&run).await.unwrap();
    assert_eq!(report.connected, 6);
    assert!(report.sent > 50, "{report:?}");
    // Two of six clients got nothing; two got everything twice.
    assert_eq!(report.lost, report.sent * 2, "{report:?}");
    assert_eq!(report.duplicates, report.sent * 2, "{report:?}");
    assert_eq!(report.deliveries, report.sent * 4);
    assert!((report.loss_ratio - 1.0 / 3.0).abs() < 1e-9);
    assert!(!report.passed(0.0) && !report.passed(0.3) && report.passed(0.34));
}

#[tokio::test]
async fn a_page_without_a_socket_is_a_clear_error() {
    let app = spawn_app().await;
    let err = load::run(&config(app.url("/healthz"), 1, 1))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no hx-ws:connect or ws-connect"),
        "{err}"
    );
    let err = load::run(&config("ftp://x/".into(), 1, 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad URL"), "{err}");
    let err = load::run(&config(app.url("/"), 1, 2)).await.unwrap_err();
    assert!(err.to_string().contains("cannot exceed"), "{err}");
    let mut by_socket = config(format!("ws://{}/rooms/x/ws", app.addr), 1, 1);
    by_socket.groups = vec!["1:1:1:2".parse().unwrap()];
    let err = load::run(&by_socket).await.unwrap_err();
    assert!(err.to_string().contains("--group needs page URLs"), "{err}");
}

#[tokio::test]
async fn groups_of_rooms_run_at_once_and_each_room_hears_only_itself() {
    let app = spawn_app().await;
    let mut run = config(app.url("/"), 0, 0);
    run.groups = vec!["6:2:40".parse().unwrap(), "3:1:10:3".parse().unwrap()];
    let report = load::run(&run).await.unwrap();
    assert_eq!(
        (report.clients, report.connected, report.senders),
        (15, 15, 5)
    );
    let [big, small] = report.groups.as_slice() else {
        panic!("two groups: {report:?}");
    };
    assert!(big.url.ends_with("/rooms/load-0-0/ws"), "{}", big.url);
    assert!(small.url.ends_with("/rooms/load-1-0/ws"), "{}", small.url);
    assert_eq!((big.rooms, big.connected), (1, 6));
    assert_eq!((small.rooms, small.connected), (3, 9));
    assert!(big.sent > 20 && small.sent > 10, "{report:?}");
    // Each room's messages reach that room's clients only, each once.
    assert_eq!(big.expected_deliveries, big.sent * 6);
    assert_eq!(small.expected_deliveries, small.sent * 3);
    for group in [big, small] {
        assert_eq!(group.deliveries, group.expected_deliveries, "{group:?}");
        assert_eq!((group.lost, group.duplicates, group.misrouted), (0, 0, 0));
        assert!(group.latency_ms.p50 > 0.0, "{group:?}");
    }
    assert_eq!(report.deliveries, big.deliveries + small.deliveries);
    assert_eq!((report.lost, report.misrouted), (0, 0));
    assert!(report.passed(0.0));
}

#[tokio::test]
async fn a_server_that_mixes_rooms_is_reported_as_misrouting() {
    let mut run = config(faulty_server().await, 0, 0);
    run.no_spread = true;
    run.groups = vec!["3:1:20:2".parse().unwrap()];
    let report = load::run(&run).await.unwrap();
    assert!(report.misrouted > 0, "{report:?}");
    assert_eq!(report.misrouted, report.groups[0].misrouted);
    assert!(!report.passed(1.0));
}
