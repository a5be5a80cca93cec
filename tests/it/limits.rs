//! Abuse limits: a sender over its message rate is told to slow down and loses nothing
//! it typed; a flood is disconnected; everyone else keeps chatting.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::*;

#[tokio::test]
async fn over_the_message_rate_the_sender_is_told_to_slow_down_and_keeps_the_text() {
    let app = spawn_app_with(|config| {
        config.message_rate = 1;
        config.message_burst = 3;
    })
    .await;
    let mut sender = app.connect().await;
    let mut other = app.connect().await;

    // Within the burst: all three go through.
    for i in 0..3 {
        sender.say(&format!("burst {i}")).await;
    }
    other.wait_for_shown(3).await;

    // One more at once: refused, for the sender alone, with the text put back.
    sender.say("one too many").await;
    let notice = sender.wait_for_notice().await;
    assert!(notice.contains("sending too fast"), "{notice}");
    assert_eq!(sender.restored_input.as_deref(), Some("one too many"));

    // A second later the sender may post again; the refused message was never broadcast.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sender.say("after a pause").await;
    let shown = other.wait_for_shown(4).await;
    let texts: Vec<&str> = shown.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["burst 0", "burst 1", "burst 2", "after a pause"]);
}

#[tokio::test]
async fn a_flood_is_disconnected_with_1008_and_the_room_keeps_chatting() {
    let app = spawn_app_with(|config| {
        config.message_rate = 1;
        config.message_burst = 3;
    })
    .await;
    let mut flooder = app.connect().await;
    let mut alice = app.connect().await;
    let mut bob = app.connect().await;

    for i in 0..100 {
        flooder.say(&format!("flood {i}")).await;
    }
    let close = flooder.wait_for_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert!(
        close.reason.contains("too many messages"),
        "{}",
        close.reason
    );

    // Only the burst got through; the others chat on.
    alice.say("still here").await;
    let shown = bob.wait_for_shown(4).await;
    let texts: Vec<&str> = shown.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["flood 0", "flood 1", "flood 2", "still here"]);
}

#[tokio::test]
async fn typing_over_its_rate_is_ignored_and_a_typing_flood_is_disconnected() {
    let app = spawn_app_with(|config| config.typing_rate = 1).await;
    let mut typist = app.connect().await;
    let mut watcher = app.connect().await;

    // Within the limit the watcher sees the typing line; the typist stays connected.
    typist.send_raw(r#"{"kind":"typing"}"#.into()).await;
    while watcher.typing.is_empty() {
        watcher.read_frame().await;
    }

    // Hundreds of typing events at once: a flood, not a person.
    for _ in 0..200 {
        typist.send_raw(r#"{"kind":"typing"}"#.into()).await;
    }
    let close = typist.wait_for_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
}
