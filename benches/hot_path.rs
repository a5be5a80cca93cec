//! The server's hot path without sockets or a store: parsing an inbound htmx frame,
//! rendering a message and framing it, and the hub's fan-out of one message (or a batch)
//! to every session of a room.
//!
//! ```sh
//! cargo bench --bench hot_path
//! cargo bench --bench hot_path -- fan_out     # one group: parse, render or fan_out
//! ```
//!
//! Throughput is in elements: frames parsed, messages rendered or framed, and for
//! `fan_out` deliveries (messages × sessions), so criterion reports deliveries/s.
//!
//! The fan-out sessions have detached outlets (no socket), so every frame offered is
//! queued; a live socket with room in its kernel buffer would take it with a `write`
//! instead. Only `Hub::deliver` is timed: the outlets are drained between deliveries,
//! outside the measurement, so their queues never fill and nobody is evicted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hubbub::domain::{ChatMessage, DisplayName, Inbound, MessageText, RoomName, UserId};
use hubbub::hub::{Hub, HubSettings};
use hubbub::outlet::Outlet;
use hubbub::render;
use hubbub_wire::Frame;
use time::OffsetDateTime;

/// The default `--max-message-chars`.
const MAX_CHARS: usize = 2000;

/// Frames a fan-out session may have waiting. Each holds at most three (its first frame,
/// presence and the room list) before it is first drained, and one per delivery after.
const SEND_QUEUE: usize = 64;

/// A typical message as htmx 4's WebSocket extension sends it on submitting the composer:
/// the form's fields plus the request headers it would send over HTTP.
const MESSAGE_FRAME: &str = r#"{"text":"hello everyone, the build is green again","headers":{"HX-Request":"true","HX-Source":"form#composer","HX-Current-URL":"http://localhost:3000/rooms/general","HX-Target":"form#composer"}}"#;

/// What the hidden typing signal sends (its `hx-vals`), with the same headers.
const TYPING_FRAME: &str = r#"{"kind":"typing","headers":{"HX-Request":"true","HX-Source":"span#typing-signal","HX-Current-URL":"http://localhost:3000/rooms/general","HX-Target":"span#typing-signal"}}"#;

const TYPICAL_TEXT: &str = "hello everyone, the build is green again";

const LINKS_TEXT: &str = "the fix is in https://github.com/hubbub/hubbub/pull/142 (see \
     https://docs.rs/axum/latest/axum/extract/ws/index.html, section \"Utf8Bytes\"), deployed to \
     http://staging.example.com:8080/rooms/general?debug=1.";

/// Exactly `MAX_CHARS` characters of ordinary prose: the longest message accepted.
/// A message that uses Markdown: bold, code, a link, a strikethrough.
const MARKDOWN_TEXT: &str = "**deploy** is done: run `cargo run --release` and see \
     [the notes](https://github.com/hubbub/hubbub/releases) ~~tomorrow~~ today";

fn long_text() -> String {
    let prose = "A long message pasted into the chat, with words, punctuation and spaces \
                 like any other paragraph of text. ";
    prose.chars().cycle().take(MAX_CHARS).collect()
}

/// The frame htmx sends for `text`, with the same headers as [`MESSAGE_FRAME`].
fn message_frame(text: &str) -> String {
    serde_json::json!({
        "text": text,
        "headers": {
            "HX-Request": "true",
            "HX-Source": "form#composer",
            "HX-Current-URL": "http://localhost:3000/rooms/general",
            "HX-Target": "form#composer",
        },
    })
    .to_string()
}

/// What a session does with an inbound frame before it submits anything.
fn parse_frame(frame: &str) -> Option<MessageText> {
    match Inbound::parse(frame).unwrap() {
        Inbound::Message { text, .. } => MessageText::parse(&text, MAX_CHARS).unwrap(),
        _ => None,
    }
}

fn stored(id: u64, author: &str, text: &str) -> ChatMessage {
    // As a guest's message from a browser is: with its author's id (the page's "Edit"
    // and "Delete" go by a tag of it, and a guest's name shows a mark of it).
    ChatMessage {
        id,
        seq: id,
        room: RoomName::general(),
        author: DisplayName::parse(author).unwrap(),
        author_id: Some(hubbub::domain::UserId::generate()),
        guest: true,
        sent_at: OffsetDateTime::now_utc(),
        text: MessageText::parse(text, MAX_CHARS).unwrap().unwrap(),
        edited: false,
        deleted: false,
        reactions: Vec::new(),
        reply: None,
    }
}

fn parse(c: &mut Criterion) {
    let long_frame = message_frame(&long_text());
    // Check that each frame takes the path it is named after.
    assert_eq!(parse_frame(MESSAGE_FRAME).unwrap().as_str(), TYPICAL_TEXT);
    assert!(parse_frame(TYPING_FRAME).is_none());
    assert_eq!(
        parse_frame(&long_frame).unwrap().as_str().chars().count(),
        MAX_CHARS
    );

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    for (label, frame) in [
        ("typical message", MESSAGE_FRAME),
        ("typing", TYPING_FRAME),
        ("2000-char message", long_frame.as_str()),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(label), frame, |b, frame| {
            b.iter(|| parse_frame(std::hint::black_box(frame)));
        });
    }
    group.finish();
}

fn render(c: &mut Criterion) {
    let typical = stored(1_000_001, "alice", TYPICAL_TEXT);
    let links = stored(1_000_002, "alice", LINKS_TEXT);
    assert!(render::message(&links).article().contains("<a href="));
    let markdown = stored(1_000_003, "alice", MARKDOWN_TEXT);
    assert!(
        render::message(&markdown)
            .article()
            .contains("<strong>deploy</strong>")
    );

    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(1));
    for (label, message) in [
        ("typical message", &typical),
        ("message with links", &links),
        ("message with Markdown", &markdown),
    ] {
        group.bench_with_input(BenchmarkId::new("message", label), message, |b, message| {
            b.iter(|| render::message(std::hint::black_box(message)));
        });
    }
    // What the hub does once per fan-out: frame the rendered fragment for every socket.
    let fragment = render::message(&typical).fragment().clone();
    group.bench_function(BenchmarkId::new("frame", "typical message"), |b| {
        b.iter(|| Frame::text(std::hint::black_box(fragment.as_str())));
    });
    group.finish();
}

/// A hub with `sessions` sessions in `general`, each with its own detached outlet, and
/// nothing left queued: presence and the room list have gone out.
fn room_of(sessions: usize) -> (Hub, Vec<Arc<Outlet>>) {
    let hub = Hub::new(HubSettings {
        send_queue: SEND_QUEUE,
        ..HubSettings::default()
    });
    let room = RoomName::general();
    hub.load(&room, &[], false);
    let outlets: Vec<Arc<Outlet>> = (0..sessions)
        .map(|i| {
            let outlet = Arc::new(Outlet::detached(SEND_QUEUE));
            let name = DisplayName::parse(&format!("user-{i}")).unwrap();
            hub.join(&room, UserId::generate(), name, Arc::clone(&outlet))
                .unwrap();
            outlet
        })
        .collect();
    // Presence and the room list are sent on the tick, not on join. No runtime is needed:
    // without one, tokio's clock is the system's.
    hub.tick(tokio::time::Instant::now());
    drain(&outlets);
    assert_eq!(hub.stats().connected, sessions);
    (hub, outlets)
}

fn drain(outlets: &[Arc<Outlet>]) {
    for outlet in outlets {
        drop(outlet.take_queued());
    }
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    for sessions in [1_000, 10_000] {
        let (hub, outlets) = room_of(sessions);
        for batch in [1_usize, 10] {
            let messages: Vec<ChatMessage> = (0..batch)
                .map(|i| stored(i as u64 + 1, "alice", TYPICAL_TEXT))
                .collect();
            let label = if batch == 1 {
                "1 message".to_owned()
            } else {
                format!("batch of {batch}")
            };
            // A batch goes out as one frame per session, but counts as `batch` deliveries.
            group.throughput(Throughput::Elements((batch * sessions) as u64));
            group.bench_with_input(
                BenchmarkId::new(label, sessions),
                &messages,
                |b, messages| {
                    b.iter_custom(|iterations| {
                        let mut timed = Duration::ZERO;
                        for _ in 0..iterations {
                            let started = Instant::now();
                            hub.deliver(std::hint::black_box(messages));
                            timed += started.elapsed();
                            // Not timed: empties every queue (and drops the frames).
                            drain(&outlets);
                        }
                        timed
                    });
                },
            );
        }
        let stats = hub.stats();
        assert_eq!(stats.connected, sessions, "a session left the room");
        assert_eq!(stats.slow_evictions, 0, "a session was evicted");
    }
    group.finish();
}

criterion_group!(benches, parse, render, fan_out);
criterion_main!(benches);
