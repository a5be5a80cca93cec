//! A client that stops reading is dropped with 1008; it never slows the room.

use std::time::Instant;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::PATIENCE;
use crate::support::app::spawn_app_with;
use crate::support::client::TestClient;
use crate::support::metrics::value;
use crate::support::page::PageModel;

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_the_others_keep_up() {
    let app = spawn_app_with(|config| {
        config.send_queue = 64;
        // Long enough that the close frame survives until the slow client reads again.
        config.write_timeout = std::time::Duration::from_secs(60);
    })
    .await;

    // The slow client: a tiny receive window, and it reads nothing.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let request = app.ws_request(Some(&app.url("")));
    let (slow, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let mut slow = TestClient::new(
        tokio_tungstenite::WebSocketStream::from_raw_socket(
            tokio_tungstenite::MaybeTlsStream::Plain(slow.into_inner()),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await,
    );

    // The healthy client sends and reads at the same time.
    let healthy = app.connect().await;
    let (mut sink, mut stream) = healthy.ws.split();
    const MESSAGES: usize = 4000;
    let text = "y".repeat(1900);
    let sender = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let frame = serde_json::json!({"text": format!("{i} {text}"), "headers": {}});
            sink.send(Message::text(frame.to_string())).await.unwrap();
        }
        Instant::now()
    });

    let mut healthy = PageModel::default();
    let mut slowest_gap = std::time::Duration::ZERO;
    let mut last = Instant::now();
    while healthy.shown.len() < MESSAGES {
        let frame = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("the healthy client kept receiving")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            healthy.apply_frame(text.as_str());
            slowest_gap = slowest_gap.max(last.elapsed());
            last = Instant::now();
        }
    }
    let sent_all = sender.await.unwrap();
    let ids = healthy.ids();
    assert!(
        ids.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "no gap, no duplicate"
    );
    println!(
        "healthy client: {MESSAGES} messages, last one {:?} after the last send, longest gap {slowest_gap:?}",
        last.saturating_duration_since(sent_all)
    );

    let stats = app
        .wait_for_stats("the slow client's eviction", |s| s.slow_evictions == 1)
        .await;
    assert_eq!(stats.connected, 1, "only the healthy client is left");

    // When the slow client finally reads, it finds what was in flight, then 1008.
    let close = slow.wait_for_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert!(close.reason.contains("too slow"), "{}", close.reason);
    assert!(
        slow.shown.len() < MESSAGES,
        "the slow client did not get everything"
    );

    // The operator sees it too: one eviction, one session ended as a slow client.
    let metrics = app
        .wait_for_scrape("hubbub_disconnects_total{reason=\"slow_client\"}", 1.0)
        .await;
    assert_eq!(value(&metrics, "hubbub_slow_client_evictions_total"), 1.0);
}
