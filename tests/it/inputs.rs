//! Bad input gets a clear answer and costs nothing else: the connection stays, the room
//! hears nothing.

use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::app::{spawn_app, spawn_app_with};

#[tokio::test]
async fn empty_and_blank_messages_are_ignored() {
    let app = spawn_app().await;
    let mut sender = app.connect().await;
    let mut other = app.connect().await;
    sender.say("").await;
    sender.say("   \n\t  ").await;
    sender.say("  real  ").await;
    let shown = other.wait_for_shown(1).await;
    assert_eq!(
        shown[0].text, "real",
        "blank messages are dropped and text is trimmed"
    );
    assert_eq!(sender.wait_for_shown(1).await.len(), 1);
    assert!(sender.notice.is_none(), "ignoring is silent");
    assert_eq!(app.hub.stats().messages_posted, 1);
}

#[tokio::test]
async fn an_oversized_message_gets_an_error_for_the_sender_only() {
    let app = spawn_app_with(|config| config.max_message_chars = 10).await;
    let mut sender = app.connect().await;
    let mut other = app.connect().await;
    sender.say("this is longer than ten").await;
    let notice = sender.wait_for_notice().await;
    assert!(
        notice.contains("23 characters") && notice.contains("limit is 10"),
        "{notice}"
    );

    // Exactly at the limit is fine (in characters, not bytes), and the connection is kept.
    sender.say("ééééééééé😀").await;
    let shown = other.wait_for_shown(1).await;
    assert_eq!(shown[0].text, "ééééééééé😀");
    assert!(other.notice.is_none(), "the error went to the sender only");
    assert_eq!(app.hub.stats().messages_posted, 1);
}

#[tokio::test]
async fn malformed_frames_get_an_error_and_keep_the_connection() {
    let app = spawn_app().await;
    let mut sender = app.connect().await;
    for junk in [
        "not json",
        "{",
        "[]",
        "null",
        r#"{"headers":{"HX-Request":"true"}}"#,
        r#"{"text":null}"#,
        r#"{"text":42}"#,
        r#"{"text":["two","values"]}"#,
    ] {
        sender.send_raw(junk.to_owned()).await;
        let notice = sender.wait_for_notice().await;
        assert!(
            notice.starts_with("Not sent: That message could not be read"),
            "{junk}: {notice}"
        );
    }
    sender.say("still here").await;
    assert_eq!(sender.wait_for_shown(1).await[0].text, "still here");
}

#[tokio::test]
async fn a_binary_frame_closes_with_1003() {
    let app = spawn_app().await;
    let mut client = app.connect().await;
    client
        .ws
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    let close = client.wait_for_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Unsupported);
    app.wait_for_stats("the session to leave", |s| s.connected == 0)
        .await;
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_with_1009_and_spares_the_room() {
    let app = spawn_app_with(|config| config.max_frame_bytes = 1024).await;
    let mut big = app.connect().await;
    let mut other = app.connect().await;
    big.say(&"x".repeat(2000)).await;
    let close = big.wait_for_close().await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Size);

    other.say("fine").await;
    assert_eq!(other.wait_for_shown(1).await[0].text, "fine");
    assert_eq!(app.hub.stats().messages_posted, 1);
}

#[tokio::test]
async fn a_peer_that_vanishes_mid_handshake_or_mid_frame_is_cleaned_up() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    // Half a frame header, then gone.
    let client = app.connect().await;
    let mut raw = client.ws.into_inner();
    match &mut raw {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.write_all(&[0x81]).await.unwrap(),
        _ => unreachable!(),
    }
    drop(raw);
    // Junk instead of a handshake.
    let mut junk = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    junk.write_all(b"\x16\x03\x01garbage\r\n\r\n")
        .await
        .unwrap();
    drop(junk);

    app.wait_for_stats("the session to leave", |s| s.connected == 0)
        .await;
    let mut fine = app.connect().await;
    fine.say("the server is fine").await;
    assert_eq!(fine.wait_for_shown(1).await.len(), 1);
}

#[tokio::test]
async fn a_client_that_closes_gets_a_clean_close_back() {
    use futures::StreamExt;
    let app = spawn_app().await;
    let mut client = app.connect().await;
    client.ws.close(None).await.unwrap();
    // A clean handshake: the server's close frame, then the end of the stream; not a reset.
    loop {
        match tokio::time::timeout(crate::support::PATIENCE, client.ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("the close was not answered: {err}"),
        }
    }
    app.wait_for_stats("the session to leave", |s| s.connected == 0)
        .await;
}
