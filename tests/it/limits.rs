//! Abuse limits: a sender over its message rate is told to slow down and loses nothing
//! it typed; a flood is disconnected; everyone else keeps chatting.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::app::{TestApp, spawn_app_with};
use crate::support::client::TestClient;
use crate::support::eventually::eventually;
use crate::support::metrics::value;

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
    // (A wait for time itself: the allowance refills by the clock, and nothing shows it.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sender.say("after a pause").await;
    other.wait_for_shown(4).await;
    let texts = other.texts();
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
    bob.wait_for_shown(4).await;
    let texts = bob.texts();
    assert_eq!(texts, ["flood 0", "flood 1", "flood 2", "still here"]);
}

#[tokio::test]
async fn typing_over_its_rate_is_ignored_and_a_typing_flood_is_disconnected() {
    let app = spawn_app_with(|config| config.typing_rate = 1).await;
    let mut typist = app.connect().await;
    let mut watcher = app.connect().await;

    // Within the limit the watcher sees the typing line; the typist stays connected.
    typist.send_raw(r#"{"kind":"typing"}"#.into()).await;
    watcher
        .until("the typing line", |page| !page.typing.is_empty())
        .await;

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
    let _third = eventually("the freed place to be given back", async || {
        try_connect(&app, None).await
    })
    .await;
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

/// `sender` says `text`, and `watcher` sees it as the `shown`-th message.
async fn say_and_see(sender: &mut TestClient, watcher: &mut TestClient, shown: usize, text: &str) {
    sender.say(text).await;
    let seen = watcher.wait_for_shown(shown).await;
    assert_eq!(seen.last().map(|m| m.text.as_str()), Some(text));
}

#[tokio::test]
async fn the_address_limit_is_shared_by_every_connection_from_one_address() {
    let app = spawn_app_with(|config| {
        config.trust_proxy = true;
        config.message_rate = 100;
        config.message_burst = 100;
        config.ip_message_rate = 1;
        config.ip_message_burst = 3;
    })
    .await;
    let mut a1 = try_connect(&app, Some("203.0.113.7")).await.unwrap();
    let mut a2 = try_connect(&app, Some("203.0.113.7")).await.unwrap();
    let mut b = try_connect(&app, Some("203.0.113.8")).await.unwrap();
    let mut watcher = try_connect(&app, Some("203.0.113.9")).await.unwrap();

    // Under the limit: the address's burst of three, over two connections, goes out.
    say_and_see(&mut a1, &mut watcher, 1, "a1 first").await;
    say_and_see(&mut a1, &mut watcher, 2, "a1 second").await;
    say_and_see(&mut a2, &mut watcher, 3, "a2 first").await;

    // Over it: a fresh connection with its own allowance to spare is still refused,
    // because its address has none left; the text is put back.
    a2.say("a2 one too many").await;
    let notice = a2.wait_for_notice().await;
    assert!(
        notice.contains("too many messages from your address"),
        "{notice}"
    );
    assert_eq!(a2.restored_input.as_deref(), Some("a2 one too many"));
    let metrics = app.get("/metrics").await.body;
    let rejected = |reason: &str| {
        value(
            &metrics,
            &format!("hubbub_messages_rejected_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(rejected("address_rate_limited"), 1.0);
    assert_eq!(rejected("rate_limited"), 0.0);

    // Another address is not affected, and the refused message was never broadcast.
    say_and_see(&mut b, &mut watcher, 4, "b first").await;

    // The allowance refills at one a second (by the clock: a wait for time itself).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    say_and_see(&mut a2, &mut watcher, 5, "a2 after a pause").await;
    watcher.wait_for_shown(5).await;
    let texts = watcher.texts();
    assert_eq!(
        texts,
        [
            "a1 first",
            "a1 second",
            "a2 first",
            "b first",
            "a2 after a pause"
        ]
    );
}

#[tokio::test]
async fn without_a_trusted_proxy_loopback_clients_are_not_held_to_the_address_limit() {
    let app = spawn_app_with(|config| {
        config.ip_message_rate = 1;
        config.ip_message_burst = 2;
    })
    .await;
    let mut watcher = app.connect().await;
    let mut senders = [
        app.connect().await,
        app.connect().await,
        app.connect().await,
    ];
    // Nine posts from 127.0.0.1 in a burst, well over the address limit of two: a local
    // proxy or load test is exempt, so all of them go out.
    let mut shown = 0;
    for (i, sender) in senders.iter_mut().enumerate() {
        for j in 0..3 {
            shown += 1;
            say_and_see(
                sender,
                &mut watcher,
                shown,
                &format!("sender {i} message {j}"),
            )
            .await;
        }
    }
}

/// Renames from `forwarded_for` with no cookie (a new visitor each time): the status,
/// `Retry-After` and body.
async fn rename_from(
    app: &TestApp,
    forwarded_for: Option<&str>,
    name: &str,
) -> (u16, Option<u64>, String) {
    let headers: Vec<(&str, &str)> = forwarded_for
        .map(|ip| ("X-Forwarded-For", ip))
        .into_iter()
        .collect();
    let response = app.rename_with(name, &headers).await;
    let retry_after = response
        .headers
        .get("retry-after")
        .map(|value| value.to_str().unwrap().parse().unwrap());
    (response.status, retry_after, response.body)
}

#[tokio::test]
async fn renames_are_limited_per_address_with_429_and_retry_after() {
    let app = spawn_app_with(|config| {
        config.trust_proxy = true;
        config.renames_per_minute = 2;
    })
    .await;
    // Under the limit: two renames from one address.
    for name in ["first try", "second try"] {
        let (status, _, body) = rename_from(&app, Some("203.0.113.7"), name).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("You are now {name}.")), "{body}");
    }
    // Over it: refused with a notice saying when to try again (two a minute: one every
    // 30 s, so the wait is at most that).
    let (status, retry_after, body) = rename_from(&app, Some("203.0.113.7"), "third try").await;
    assert_eq!(status, 429, "{body}");
    let retry_after = retry_after.expect("a Retry-After header");
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert!(
        body.contains("too many renames from your address"),
        "{body}"
    );
    assert!(
        body.contains(&format!("try again in {retry_after} s")),
        "{body}"
    );
    // Another address may still rename.
    let (status, _, body) = rename_from(&app, Some("203.0.113.8"), "elsewhere").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn without_a_trusted_proxy_loopback_renames_are_not_limited() {
    let app = spawn_app_with(|config| config.renames_per_minute = 1).await;
    for i in 0..4 {
        let (status, _, body) = rename_from(&app, Some("203.0.113.7"), &format!("name {i}")).await;
        assert_eq!(status, 200, "{body}");
    }
}
