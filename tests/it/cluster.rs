//! Several nodes as one chat, over PostgreSQL and Redis: messages cross nodes live, every
//! client on every node sees one order, and cut connections, broken payloads, a missing
//! Redis and a killed node lose and repeat nothing. (The cluster itself: `support::cluster`.)

use std::time::Duration;

use futures::future::join_all;

use crate::support::app::TestApp;
use crate::support::client::TestClient;
use crate::support::cluster::Cluster;
use crate::support::eventually::eventually;

#[tokio::test]
async fn each_node_sees_the_others_messages_live_through_redis() {
    let Some(cluster) =
        Cluster::new("cluster::each_node_sees_the_others_messages_live_through_redis").await
    else {
        return;
    };
    let [a, b] = cluster.nodes().await;
    let mut alice = a.connect().await;
    let mut bob = b.connect().await;

    alice.say("from a").await;
    bob.wait_for_shown(1).await;
    bob.say("from b").await;
    alice.wait_for_shown(2).await;
    bob.wait_for_shown(2).await;
    assert_eq!(alice.texts(), ["from a", "from b"]);
    assert_eq!(bob.texts(), ["from a", "from b"]);
    // Neither node read the other's message from the store: Redis carried it.
    // Each node published once and heard both batches, its own echo dropped.
    for node in [&a, &b] {
        node.wait_for_metric("hubbub_broker_batches_published_total", 1.0)
            .await;
        node.wait_for_metric("hubbub_broker_batches_received_total", 2.0)
            .await;
        node.wait_for_metric("hubbub_messages_duplicate_total", 1.0)
            .await;
        assert_eq!(node.metric("hubbub_messages_caught_up_total"), 0.0);
    }
    cluster
        .assert_everyone_saw_history(&[&a, &b], &mut [&mut alice, &mut bob])
        .await;
}

/// Several senders on three nodes at once: every client on every node sees the same
/// sequence, each message once, and it is the store's.
#[tokio::test]
async fn every_client_on_every_node_sees_one_order() {
    let Some(cluster) = Cluster::new("cluster::every_client_on_every_node_sees_one_order").await
    else {
        return;
    };
    let nodes: [TestApp; 3] = cluster.nodes().await;
    let mut watchers = Vec::new();
    let mut senders = Vec::new();
    for node in &nodes {
        watchers.push(node.connect().await);
        senders.push(node.connect().await);
        senders.push(node.connect().await);
    }
    const EACH: usize = 15;
    let total = senders.len() * EACH;
    join_all(
        senders
            .iter_mut()
            .enumerate()
            .map(|(s, sender)| async move {
                for i in 0..EACH {
                    sender.say(&format!("{s}-{i}")).await;
                    if i % 4 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }),
    )
    .await;
    for client in watchers.iter_mut().chain(senders.iter_mut()) {
        client.wait_for_shown(total).await;
    }
    let mut everyone: Vec<&mut TestClient> =
        watchers.iter_mut().chain(senders.iter_mut()).collect();
    let nodes: Vec<&TestApp> = nodes.iter().collect();
    let stored = cluster
        .assert_everyone_saw_history(&nodes, &mut everyone)
        .await;
    assert_eq!(stored, total);
}

/// The Redis connections of both nodes are killed twice while both send: each node's
/// clients keep getting their own node's messages, and once the nodes are back every client
/// has every message once, in the store's order, with nothing else committed afterwards
/// (what a node committed while cut is published when it is back; what it missed is read
/// from the store when it resubscribes).
#[tokio::test]
async fn a_cut_redis_connection_loses_and_repeats_nothing() {
    let Some(cluster) =
        Cluster::new("cluster::a_cut_redis_connection_loses_and_repeats_nothing").await
    else {
        return;
    };
    let [a, b] = cluster.nodes().await;
    let mut watch_a = a.connect().await;
    let mut watch_b = b.connect().await;
    let mut send_a = a.connect().await;
    let mut send_b = b.connect().await;

    let mut sent = 0;
    for round in 0..3 {
        for i in 0..10 {
            send_a.say(&format!("a{round}-{i}")).await;
            send_b.say(&format!("b{round}-{i}")).await;
            sent += 2;
            if i == 5 && round < 2 {
                cluster.cut(2).await;
                // Cut: node A still serves its own clients.
                let text = format!("a{round}-cut");
                send_a.say(&text).await;
                sent += 1;
                watch_a
                    .until(&format!("{text} on node A"), |page| {
                        page.shown.iter().any(|m| m.text == text)
                    })
                    .await;
            }
        }
        // A pause between rounds, part of the scenario (it waits for nothing).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The last messages go out while the link is cut, and nothing follows them.
    cluster.cut(2).await;
    send_a.say("last from a").await;
    send_b.say("last from b").await;
    sent += 2;

    for client in [&mut watch_a, &mut watch_b, &mut send_a, &mut send_b] {
        client.wait_for_shown(sent).await;
    }
    a.wait_ready(200).await;
    b.wait_ready(200).await;
    for node in [&a, &b] {
        assert!(node.metric("hubbub_broker_subscribes_total") >= 4.0);
    }
    let stored = cluster
        .assert_everyone_saw_history(
            &[&a, &b],
            &mut [&mut watch_a, &mut watch_b, &mut send_a, &mut send_b],
        )
        .await;
    assert_eq!(stored, sent);
}

/// Only node A's connection is cut, and A commits while it is: B (never cut, and
/// committing nothing) gets those messages once A is back, because A publishes what it
/// could not, not only when it next has something new to say.
#[tokio::test]
async fn a_node_cut_alone_publishes_what_it_committed_meanwhile() {
    let Some(cluster) =
        Cluster::new("cluster::a_node_cut_alone_publishes_what_it_committed_meanwhile").await
    else {
        return;
    };
    let [a, b] = cluster.nodes().await;
    let mut alice = a.connect().await;
    let mut bob = b.connect().await;
    alice.say("before").await;
    bob.wait_for_shown(1).await;

    cluster.cut_some(2, 1).await;
    alice.say("during one").await;
    alice.say("during two").await;
    alice.wait_for_shown(3).await;

    bob.wait_for_shown(3).await;
    assert_eq!(bob.texts(), ["before", "during one", "during two"]);
    a.wait_for_metric("hubbub_broker_subscribes_total", 2.0)
        .await;
    assert_eq!(
        b.metric("hubbub_broker_subscribes_total"),
        1.0,
        "B was not cut"
    );
    // A published all three batches: the two it could not send while cut went out once
    // it was back. (B may also have found them itself while idle, by looking in the store
    // for unannounced messages after a second or two; either way it shows them once.)
    a.wait_for_metric("hubbub_broker_batches_published_total", 3.0)
        .await;
    cluster
        .assert_everyone_saw_history(&[&a, &b], &mut [&mut alice, &mut bob])
        .await;
}

/// What is on the channel but is not a batch is counted and ignored; delivery goes on.
#[tokio::test]
async fn broken_payloads_on_the_channel_are_ignored() {
    let Some(cluster) = Cluster::new("cluster::broken_payloads_on_the_channel_are_ignored").await
    else {
        return;
    };
    let [a, b] = cluster.nodes().await;
    let mut alice = a.connect().await;
    let mut bob = b.connect().await;

    for payload in [
        b"not json".as_slice(),
        br#"{"v":1,"prev":0,"messages":[{"id":1,"room":"general","author":"x","at":0,"text":"\u0007"}]}"#,
        br#"{"v":1,"prev":5,"messages":[{"id":3,"room":"general","author":"x","at":0,"text":"y"}]}"#,
        &[0xff; 64],
    ] {
        cluster.publish(payload).await;
    }
    a.wait_for_metric("hubbub_broker_payloads_malformed_total", 4.0)
        .await;
    b.wait_for_metric("hubbub_broker_payloads_malformed_total", 4.0)
        .await;

    alice.say("still here").await;
    bob.wait_for_shown(1).await;
    assert_eq!(bob.texts(), ["still here"]);
    a.wait_ready(200).await;
}

/// A node whose Redis cannot be reached says so on `/readyz` and serves its own clients.
#[tokio::test]
async fn without_redis_a_node_is_not_ready_but_serves_its_clients() {
    let Some(cluster) =
        Cluster::new("cluster::without_redis_a_node_is_not_ready_but_serves_its_clients").await
    else {
        return;
    };
    // Nothing listens on port 1.
    let a = cluster.node_with("redis://127.0.0.1:1").await;
    let body = a.wait_ready(503).await;
    assert_eq!(
        body,
        "broker unavailable: redis unavailable (reconnecting)\n"
    );
    assert!(!body.contains("127.0.0.1"));
    let mut alice = a.connect().await;
    alice.say("alone").await;
    alice.wait_for_shown(1).await;
    assert_eq!(alice.texts(), ["alone"]);
}

/// The load tool with its clients spread over two nodes (`--also-url`): half the clients
/// and senders on each, so most deliveries cross through Redis; every message reaches
/// every client once.
#[tokio::test]
async fn the_load_tool_spread_over_two_nodes_loses_and_repeats_nothing() {
    let Some(cluster) = Cluster::new("cluster::the_load_tool_spread_over_two_nodes").await else {
        return;
    };
    let [a, b] = cluster.nodes::<2>().await;
    let mut config = crate::load::config(a.url("/"), 20, 4);
    config.also_urls = vec![b.url("/")];
    let report = hubbub_load::run(&config).await.unwrap();
    assert_eq!(
        report.url,
        format!(
            "ws://{}/rooms/general/ws ws://{}/rooms/general/ws",
            a.addr, b.addr
        )
    );
    assert_eq!(
        (report.connected, report.connect_failures, report.dropped),
        (20, 0, 0)
    );
    assert!(report.sent > 50, "{report:?}");
    assert_eq!(
        (report.deliveries, report.lost, report.duplicates),
        (report.sent * 20, 0, 0),
        "{report:?}"
    );
    // Both nodes took part: senders on each, so each committed and published batches.
    for node in [&a, &b] {
        assert!(node.metric("hubbub_broker_batches_published_total") > 0.0);
    }
}

/// A node that commits and dies before publishing leaves a message no node announces
/// (here: a row written straight into the store, as such a node would leave it). The
/// others find it on their own while idle and show it once, with no further message.
#[tokio::test]
async fn a_message_no_node_announced_still_reaches_every_node() {
    let Some(cluster) =
        Cluster::new("cluster::a_message_no_node_announced_still_reaches_every_node").await
    else {
        return;
    };
    let [a, b] = cluster.nodes().await;
    let mut alice = a.connect().await;
    let mut bob = b.connect().await;
    alice.say("announced").await;
    bob.wait_for_shown(1).await;

    cluster
        .db
        .execute(
            "INSERT INTO messages (room, author, body, created_at) \
             VALUES ('general', 'ghost', 'never announced', 1764340000000000)",
        )
        .await
        .unwrap();
    alice.wait_for_shown(2).await;
    bob.wait_for_shown(2).await;
    assert_eq!(alice.texts(), ["announced", "never announced"]);
    assert_eq!(bob.texts(), ["announced", "never announced"]);
    for node in [&a, &b] {
        node.wait_for_metric("hubbub_messages_caught_up_total", 1.0)
            .await;
    }
    cluster
        .assert_everyone_saw_history(&[&a, &b], &mut [&mut alice, &mut bob])
        .await;
}

/// A node is lost mid-traffic (the real binary, killed with SIGKILL): its client reconnects
/// to another node, as the page does through the balancer, and ends up showing every
/// stored message once, in order, those the lost node committed included (even ones it
/// died before announcing: the other node finds those in the store while idle).
#[tokio::test]
async fn a_killed_nodes_client_reconnects_to_another_node_with_no_gap() {
    let Some(cluster) =
        Cluster::new("cluster::a_killed_nodes_client_reconnects_to_another_node_with_no_gap").await
    else {
        return;
    };
    let [b] = cluster.nodes::<1>().await;
    let lost = cluster
        .binary_node(&["--message-rate", "100000", "--message-burst", "100000"])
        .await;
    let mut alice = lost.connect().await;
    let mut bob = b.connect().await;

    // Alice's node dies in the middle of a burst: some of it is committed (and maybe not
    // yet announced), the rest is lost with the process, never acknowledged.
    for i in 0..40 {
        alice.say(&format!("burst {i}")).await;
    }
    alice.wait_for_shown(10).await;
    lost.signal("-KILL");
    let page = std::mem::take(&mut alice.page);
    drop(alice);

    // The page reconnects, through the balancer, to the node still there.
    let mut alice = b.connect_to_page("general", None, page).await;
    let history = cluster.history().await;
    assert!(history.len() >= 10, "{history:?}");
    eventually(
        &format!("alice and bob to show the stored {history:?}"),
        async || {
            if alice.ids() == history && bob.ids() == history {
                return Ok(());
            }
            for client in [&mut alice, &mut bob] {
                let _ = tokio::time::timeout(Duration::from_millis(100), client.read_frame()).await;
            }
            Err((alice.ids(), bob.ids()))
        },
    )
    .await;
    let stored = cluster
        .assert_everyone_saw_history(&[&b], &mut [&mut alice, &mut bob])
        .await;
    println!(
        "node lost: 40 sent, {stored} stored and shown on the other node, {} of them read \
         back from the store there",
        b.metric("hubbub_messages_caught_up_total")
    );
}
