//! Abuse limits: a sender over its message rate is told to slow down and loses nothing
//! it typed; a flood is disconnected; everyone else keeps chatting.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{TestApp, TestClient, spawn_app_with};

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

/// Opens a socket from `forwarded_for` (as a trusted proxy would say); the HTTP status
/// and `Retry-After` when it is refused.
async fn try_connect(
    app: &TestApp,
    forwarded_for: Option<&str>,
) -> Result<TestClient, (u16, bool)> {
    let mut request = app.ws_request(None);
    if let Some(ip) = forwarded_for {
        request
            .headers_mut()
            .insert("X-Forwarded-For", ip.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => {
            let mut client = TestClient::new(ws);
            client.read_frame().await;
            Ok(client)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err((
            response.status().as_u16(),
            response.headers().contains_key("retry-after"),
        )),
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

#[tokio::test]
async fn past_the_connection_limit_upgrades_are_refused_until_a_place_frees_up() {
    let app = spawn_app_with(|config| config.max_connections = 2).await;
    let first = try_connect(&app, None).await.unwrap();
    let mut second = try_connect(&app, None).await.unwrap();
    assert_eq!(try_connect(&app, None).await.err(), Some((503, true)));

    // The two connected clients are unaffected.
    second.say("still fine").await;
    second.wait_for_shown(1).await;

    // When one leaves, its place is given back.
    drop(first);
    let mut third = None;
    for _ in 0..100 {
        if let Ok(client) = try_connect(&app, None).await {
            third = Some(client);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(third.is_some(), "the freed place was never given back");
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_limit() {
    let app = spawn_app_with(|config| {
        config.trust_proxy = true;
        config.max_connections_per_ip = 2;
    })
    .await;
    let _a1 = try_connect(&app, Some("203.0.113.7")).await.unwrap();
    let _a2 = try_connect(&app, Some("10.0.0.1, 203.0.113.7"))
        .await
        .unwrap();
    // The same client address (the last entry, the one the proxy saw) is full...
    assert_eq!(
        try_connect(&app, Some("203.0.113.7")).await.err(),
        Some((503, true))
    );
    // ...while another address, and the proxy's own requests without the header, are not.
    let _b = try_connect(&app, Some("203.0.113.8")).await.unwrap();
    let _c = try_connect(&app, None).await.unwrap();
}

#[tokio::test]
async fn without_a_trusted_proxy_the_header_is_ignored_and_loopback_is_exempt() {
    let app = spawn_app_with(|config| config.max_connections_per_ip = 1).await;
    // All from 127.0.0.1, which is exempt; the forged header changes nothing.
    let _clients: Vec<TestClient> =
        futures::future::join_all((0..5).map(|_| try_connect(&app, Some("203.0.113.9"))))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
}
