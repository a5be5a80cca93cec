//! Measures what an idle WebSocket connection costs a running hubbub, in resident memory.
//!
//! ```sh
//! cargo build --release && ./target/release/hubbub --addr 127.0.0.1:3900 &
//! cargo run --release --example idle_rss -- 127.0.0.1:3900 $! 5000 50
//! ```
//!
//! Arguments: server address, server pid, connections to open, messages to post first (so
//! every connection receives a full history frame). Connections are spread over source
//! addresses 127.0.x.y so that tens of thousands fit in the ephemeral port range.
//! A stop-gap until the load tool (`hubbub-load`) exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server pid");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() >= 4,
        "usage: idle_rss ADDR PID CONNECTIONS [MESSAGES]"
    );
    let (addr, pid) = (&args[1], &args[2]);
    let connections: usize = args[3].parse().unwrap();
    let messages: usize = args.get(4).map_or(0, |a| a.parse().unwrap());

    if messages > 0 {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        for i in 0..messages {
            let text = format!("message {i}: {}", "lorem ipsum ".repeat(8));
            let frame = format!(r#"{{"text":"{text}","headers":{{}}}}"#);
            ws.send(Message::text(frame)).await.unwrap();
        }
        let mut shown = 0;
        while shown < messages {
            if let Message::Text(text) = ws.next().await.unwrap().unwrap() {
                shown += text.matches("<article").count();
            }
        }
    }

    let before = rss_kib(pid);
    let mut open = Vec::with_capacity(connections);
    for i in 0..connections {
        let socket = TcpSocket::new_v4().unwrap();
        let source = format!("127.0.{}.{}:0", 1 + i / 250, 1 + i % 250);
        socket.bind(source.parse().unwrap()).unwrap();
        let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .unwrap();
        ws.next().await.unwrap().unwrap(); // the history frame
        open.push(ws);
    }
    // Let the server finish its side of every handshake.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    println!(
        "{connections} idle connections, history of {messages}: server RSS {before} KiB -> {after} KiB = {:.1} KiB per connection",
        after.saturating_sub(before) as f64 / connections as f64
    );
}
