//! The chat itself: fan-out, order, history, reconnects, both htmx shapes, escaping.

use futures::future::join_all;

use crate::support::app::{spawn_app, spawn_app_with};

#[tokio::test]
async fn a_message_reaches_twenty_clients_in_the_same_order() {
    let app = spawn_app().await;
    let mut clients = join_all((0..20).map(|_| app.connect())).await;

    // Five of them speak at once, ten messages each.
    let mut senders = clients.split_off(15);
    let sends = senders
        .iter_mut()
        .enumerate()
        .map(|(s, client)| async move {
            for i in 0..10 {
                client.say(&format!("from {s}: {i}")).await;
            }
        });
    join_all(sends).await;
    clients.extend(senders);

    let lists = join_all(
        clients
            .iter_mut()
            .map(|client| async move { client.wait_for_shown(50).await.to_vec() }),
    )
    .await;
    let first = &lists[0];
    assert_eq!(first.len(), 50);
    for list in &lists {
        assert_eq!(
            list, first,
            "every client sees the same messages in the same order"
        );
    }
    // Ids are unique and increasing, and each sender's own order is kept.
    assert!(first.windows(2).all(|pair| pair[0].id < pair[1].id));
    for s in 0..5 {
        let own: Vec<_> = first
            .iter()
            .filter(|m| m.text.starts_with(&format!("from {s}:")))
            .map(|m| m.text.clone())
            .collect();
        let expected: Vec<_> = (0..10).map(|i| format!("from {s}: {i}")).collect();
        assert_eq!(own, expected);
    }
}

#[tokio::test]
async fn a_newcomer_gets_the_capped_history_as_one_replacing_frame() {
    let app = spawn_app_with(|config| config.history_limit = 5).await;
    let mut talker = app.connect().await;
    for i in 0..8 {
        talker.say(&format!("m{i}")).await;
    }
    talker.wait_for_shown(8).await;

    let mut newcomer = app.connect_raw().await;
    let frame = newcomer.read_frame().await;
    assert!(
        frame.starts_with(r#"<div id="messages" hx-swap-oob="innerHTML">"#),
        "{frame}"
    );
    let texts = newcomer.texts();
    assert_eq!(texts, ["m3", "m4", "m5", "m6", "m7"]);
    assert_eq!(newcomer.frames, 1, "the history is one frame");
}

#[tokio::test]
async fn an_empty_room_says_so_instead_of_showing_nothing() {
    let app = spawn_app().await;
    let mut client = app.connect_raw().await;
    let frame = client.read_frame().await;
    assert!(frame.contains("No messages yet"), "{frame}");
    assert!(client.shown.is_empty());
}

#[tokio::test]
async fn a_reconnect_replaces_the_list_so_nothing_is_duplicated() {
    let app = spawn_app().await;
    let mut alice = app.connect().await;
    alice.say("before the drop").await;
    alice.wait_for_shown(1).await;

    // Alice's connection drops; her page still shows what it had.
    let page_before = alice.shown.clone();
    drop(alice.ws);

    let mut bob = app.connect().await;
    bob.say("while alice was away").await;
    bob.wait_for_shown(2).await;

    // htmx reconnects with the same page: the history frame replaces the list.
    let mut again = app.connect_raw().await;
    again.shown = page_before;
    again.read_frame().await;
    let texts = again.texts();
    assert_eq!(texts, ["before the drop", "while alice was away"]);
}

#[tokio::test]
async fn both_htmx_message_shapes_are_accepted() {
    let app = spawn_app().await;
    let mut client = app.connect().await;
    client
        .send_raw(
            r#"{"text":"from htmx 4","headers":{"HX-Request":"true","HX-Source":"form#composer"}}"#
                .into(),
        )
        .await;
    client
        .send_raw(
            r#"{"text":"from htmx 2","HEADERS":{"HX-Request":"true","HX-Trigger":"composer","HX-Trigger-Name":null,"HX-Target":"chat","HX-Current-URL":"http://x/"}}"#
                .into(),
        )
        .await;
    client
        .send_raw(r#"{"text":"with extras","other":["a","b"],"n":1}"#.into())
        .await;
    client.wait_for_shown(3).await;
    let texts = client.texts();
    assert_eq!(texts, ["from htmx 4", "from htmx 2", "with extras"]);
}

#[tokio::test]
async fn messages_carry_the_guest_name_from_the_cookie() {
    let app = spawn_app().await;
    let (cookie, page) = app.visit("/").await;
    let set = page.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let name = page
        .body
        .split(r#"id="name" name="name" value=""#)
        .nth(1)
        .unwrap();
    let name = name[..name.find('"').unwrap()].to_owned();
    assert!(
        name.starts_with("guest-"),
        "the page says who you are: {name}"
    );

    let mut client = app.connect_to("general", Some(&cookie)).await;
    client.say("hello").await;
    assert_eq!(client.wait_for_shown(1).await[0].author, name);

    // A second visit with the cookie keeps the name and sets no new cookie.
    let again = app.request_with("GET", "/", &[("Cookie", &cookie)]).await;
    assert!(!again.headers.contains_key("set-cookie"));
    assert!(again.body.contains(&format!(r#"value="{name}""#)));

    // A cookie edited by hand is ignored: the visitor gets a fresh guest identity.
    let forged = format!("{}{}", &cookie[..cookie.len() - 2], "00");
    let visit = app.request_with("GET", "/", &[("Cookie", &forged)]).await;
    assert!(visit.headers.contains_key("set-cookie"));
    assert!(!visit.body.contains(&format!(r#"value="{name}""#)));
}

#[tokio::test]
async fn hostile_text_is_shown_as_text() {
    let app = spawn_app().await;
    let mut sender = app.connect().await;
    let mut reader = app.connect().await;
    let payloads = [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "\"><svg onload=alert(1)>",
        "<div hx-get=\"/steal\" hx-trigger=\"load\">x</div>",
        "<button hx-on:click=\"alert(1)\" hx-on::load=\"alert(2)\">x</button>",
        "</article></div><div id=\"messages\" hx-swap-oob=\"innerHTML\">gone",
        "&lt;already escaped&gt; & 'quotes'",
    ];
    for payload in payloads {
        sender.say(payload).await;
    }
    // `apply` asserts that no message text contains raw markup.
    reader.wait_for_shown(payloads.len()).await;
    let texts = reader.texts();
    // Markdown reads character references, as CommonMark does; the result is still text.
    let mut expected = payloads.map(str::to_owned);
    expected[6] = "<already escaped> & 'quotes'".to_owned();
    assert_eq!(texts, expected, "every payload round-trips as plain text");
}

/// The Markdown subset renders to its elements, and hostile input in every construct stays
/// text: the page model checks every element against the renderer's allow-list.
#[tokio::test]
async fn markdown_renders_a_safe_subset_and_nothing_else() {
    let app = spawn_app().await;
    let mut sender = app.connect().await;
    let mut reader = app.connect().await;
    let messages = [
        ("**bold** *it* ~~gone~~ `a<b`", "bold it gone a<b"),
        (
            "[docs](https://docs.rs/x) and https://e.example/",
            "docs and https://e.example/",
        ),
        ("> quoted <b>\n\nafter", "quoted <b>after"),
        ("- one\n- two", "onetwo"),
        (
            "```\n<script>alert(1)</script>\n```",
            "<script>alert(1)</script>\n",
        ),
        ("[click](javascript:alert(1))", "click"),
        ("![tracker](https://t.example/p.png)", "tracker"),
        (
            "**<img src=x onerror=alert(1)>**",
            "<img src=x onerror=alert(1)>",
        ),
        (
            "[x](https://a.example/\" onmouseover=\"alert(1))",
            "[x](https://a.example/\" onmouseover=\"alert(1))",
        ),
        ("# <h1>big</h1>", "<h1>big</h1>"),
    ];
    for (text, _) in messages {
        sender.say(text).await;
    }
    reader.wait_for_shown(messages.len()).await;
    let shown: Vec<String> = reader.texts();
    let expected: Vec<&str> = messages.iter().map(|(_, shown)| *shown).collect();
    assert_eq!(shown, expected);
    // The elements themselves, as the frames carried them.
    let history = app.get("/rooms/general/history?before=1000").await.body;
    for element in [
        "<strong>bold</strong>",
        "<em>it</em>",
        "<del>gone</del>",
        "<code>a&lt;b</code>",
        "<blockquote><p>quoted &lt;b&gt;</p></blockquote>",
        "<ul><li>one</li><li>two</li></ul>",
        "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;\n</code></pre>",
        r#"<a href="https://docs.rs/x" rel="noopener nofollow ugc" target="_blank">docs</a>"#,
    ] {
        assert!(
            history.contains(element),
            "{element} missing from {history}"
        );
    }
    assert!(!history.contains("javascript:alert(1)\""), "{history}");
    assert!(!history.contains("<img"), "{history}");
}
