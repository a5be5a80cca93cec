//! Presence, typing, renames and the room list across nodes: in-process nodes (and the
//! real binary, to kill one) over one PostgreSQL schema and the machine's Redis, each test
//! on a channel of its own (see `support::cluster`).

use std::time::Duration;

use crate::support::cluster::Cluster;

/// Who is here is everyone on every node, each user once however many tabs on however
/// many nodes; the room list counts the same way; renames reach every node.
#[tokio::test]
async fn presence_is_every_nodes_users_once() {
    let Some(cluster) = Cluster::new("cluster_presence::presence_is_every_nodes_users_once").await
    else {
        return;
    };
    let [a, b] = cluster.nodes().await;
    let alice = a.named("alice").await;
    let bob = b.named("bob").await;
    let mut alice_on_a = a.connect_to("general", Some(&alice)).await;
    let mut bob_on_b = b.connect_to("general", Some(&bob)).await;
    alice_on_a
        .until("bob on alice's page", |c| c.present == ["alice", "bob"])
        .await;
    bob_on_b
        .until("alice on bob's page", |c| c.present == ["alice", "bob"])
        .await;
    // The page itself, served by either node, lists both.
    let page = a.get("/").await.body;
    assert!(page.contains(">alice<") && page.contains(">bob<"), "{page}");

    // Alice opens a second tab, on the other node: still two people.
    let mut alice_on_b = b.connect_to("general", Some(&alice)).await;
    assert_eq!(alice_on_b.present, ["alice", "bob"]);
    assert_eq!(alice_on_b.present_total, 2);

    // Carol is in another room on A: B's room list counts her.
    let carol = a.named("carol").await;
    let _carol_on_a = a.connect_to("design", Some(&carol)).await;
    bob_on_b
        .until("design in bob's room list", |c| {
            c.online("design") == Some(1) && c.online("general") == Some(2)
        })
        .await;

    // Alice closes the tab on A: she is still here (on B). Once A has seen the tab go, a
    // guest looks in on A and leaves: A's reports carry that after the tab closing, so by
    // the time B's page has shown the guest come and go it has applied everything A said
    // about Alice's tab, and she is still listed.
    drop(alice_on_a);
    a.wait_for_stats("alice's tab on A to close", |s| s.connected == 1)
        .await;
    let guest = a.connect_to("general", None).await;
    let is_guest = |name: &String| name.starts_with("guest-");
    bob_on_b
        .until("the guest on A", |c| c.present.iter().any(is_guest))
        .await;
    assert!(
        bob_on_b.present.contains(&"alice".to_owned()),
        "her tab on B keeps her here: {:?}",
        bob_on_b.present
    );
    drop(guest);
    bob_on_b
        .until("the guest to leave", |c| !c.present.iter().any(is_guest))
        .await;
    assert_eq!(bob_on_b.present, ["alice", "bob"]);
    // And closes the one on B: gone from both nodes.
    alice_on_b.ws.close(None).await.unwrap();
    drop(alice_on_b);
    bob_on_b
        .until("alice to leave", |c| c.present == ["bob"])
        .await;
    let mut watcher = a.connect_to("general", None).await;
    watcher
        .until("bob alone on A's view", |c| {
            c.present.len() == 2 && c.present.contains(&"bob".to_owned())
        })
        .await;

    // Bob renames himself through node A: his session on B posts under the new name, and
    // every node shows it.
    let renamed = a.rename(&bob, "robert").await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    bob_on_b
        .until("the new name on B", |c| {
            c.present.contains(&"robert".to_owned()) && !c.present.contains(&"bob".to_owned())
        })
        .await;
    watcher
        .until("the new name on A", |c| {
            c.present.contains(&"robert".to_owned())
        })
        .await;
    bob_on_b.say("renamed").await;
    bob_on_b.wait_for_shown(1).await;
    assert_eq!(bob_on_b.shown[0].author, "robert");
}

/// "… is typing" crosses nodes, is never shown to the typist, and ends with their message.
#[tokio::test]
async fn typing_on_one_node_shows_on_the_others() {
    let Some(cluster) =
        Cluster::new("cluster_presence::typing_on_one_node_shows_on_the_others").await
    else {
        return;
    };
    let [a, b] = cluster.nodes().await;
    let alice = a.named("alice").await;
    let bob = b.named("bob").await;
    let mut alice_on_a = a.connect_to("general", Some(&alice)).await;
    let mut alice_on_b = b.connect_to("general", Some(&alice)).await;
    let mut bob_on_b = b.connect_to("general", Some(&bob)).await;
    bob_on_b
        .until("alice here", |c| c.present == ["alice", "bob"])
        .await;

    alice_on_a
        .send_raw(r#"{"kind":"typing","headers":{"HX-Request":"true"}}"#.into())
        .await;
    bob_on_b
        .until("alice typing on B", |c| c.typing == "alice is typing…")
        .await;
    alice_on_a.say("done typing").await;
    bob_on_b
        .until("the message and the end of typing", |c| {
            c.shown.len() == 1 && c.typing.is_empty()
        })
        .await;
    // Her own tab on B never showed her own name.
    alice_on_b.wait_for_shown(1).await;
    assert!(
        !alice_on_b.typing.contains("alice"),
        "{}",
        alice_on_b.typing
    );
}

/// A node killed with SIGKILL says nothing: its users leave the others' presence once it
/// has been silent for `--presence-expiry`. A node that stops says goodbye: its users
/// leave at once, long before the expiry.
#[tokio::test]
async fn a_lost_nodes_users_leave_presence() {
    let Some(cluster) = Cluster::new("cluster_presence::a_lost_nodes_users_leave_presence").await
    else {
        return;
    };
    let [b] = cluster.nodes().await;
    let bob = b.named("bob").await;
    let carol = b.named("carol").await;
    let mut bob_on_b = b.connect_to("general", Some(&bob)).await;

    let lost = cluster.binary_node(&["--presence-expiry", "2s"]).await;
    let mut carol_on_lost = lost.connect_to("general", &carol).await;
    bob_on_b
        .until("carol, on the other node", |c| {
            c.present == ["bob", "carol"]
        })
        .await;
    carol_on_lost
        .until("bob, on the other node", |c| c.present == ["bob", "carol"])
        .await;
    b.wait_for_metric("hubbub_cluster_nodes", 1.0).await;

    lost.signal("-KILL");
    let killed = tokio::time::Instant::now();
    bob_on_b
        .until("carol to leave with her node", |c| c.present == ["bob"])
        .await;
    let took = killed.elapsed();
    println!("a killed node's users left presence after {took:?} (expiry 2 s)");
    // Its last heartbeat was at most a third of the expiry before the kill.
    assert!(
        took >= Duration::from_millis(1200),
        "{took:?}: before the expiry"
    );
    assert_eq!(b.metric("hubbub_cluster_nodes"), 0.0);
    drop(carol_on_lost);

    // A node that stops (default expiry, 30 s) takes its users along at once.
    let stopping = cluster.node_configured(&cluster.redis, |_| {}).await;
    stopping.wait_ready(200).await;
    let dave = stopping.named("dave").await;
    let _dave_on_stopping = stopping.connect_to("general", Some(&dave)).await;
    bob_on_b
        .until("dave", |c| c.present == ["bob", "dave"])
        .await;
    let stopped = tokio::time::Instant::now();
    stopping.stop().await;
    bob_on_b
        .until("dave to leave", |c| c.present == ["bob"])
        .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped.elapsed()
    );
    b.wait_for_metric("hubbub_cluster_nodes", 0.0).await;
}

/// Both nodes' Redis connections are killed while people come and go: once they are back,
/// every node shows the same people, those who came or went meanwhile included.
#[tokio::test]
async fn presence_is_right_again_after_a_cut_redis_connection() {
    let Some(cluster) =
        Cluster::new("cluster_presence::presence_is_right_again_after_a_cut_redis_connection")
            .await
    else {
        return;
    };
    let [a, b] = cluster.nodes().await;
    let alice = a.named("alice").await;
    let bob = b.named("bob").await;
    let carol = a.named("carol").await;
    let mut alice_on_a = a.connect_to("general", Some(&alice)).await;
    let bob_on_b = b.connect_to("general", Some(&bob)).await;
    alice_on_a
        .until("bob", |c| c.present == ["alice", "bob"])
        .await;
    let reads_before = a.metric("hubbub_broker_presence_reads_total");

    for _ in 0..2 {
        cluster.cut(2).await;
        tokio::task::yield_now().await;
    }
    // Meanwhile Bob leaves B and Carol arrives on A.
    drop(bob_on_b);
    let _carol_on_a = a.connect_to("general", Some(&carol)).await;
    a.wait_ready(200).await;
    b.wait_ready(200).await;

    alice_on_a
        .until("carol in, bob out", |c| c.present == ["alice", "carol"])
        .await;
    let dave = b.named("dave").await;
    let mut dave_on_b = b.connect_to("general", Some(&dave)).await;
    dave_on_b
        .until("the same people on B", |c| {
            c.present == ["alice", "carol", "dave"]
        })
        .await;
    assert!(
        a.metric("hubbub_broker_presence_reads_total") > reads_before,
        "A read B's presence again after subscribing again"
    );
}

/// What is on the presence channel or in a node's presence hash but is not what a node
/// writes is counted and ignored; valid entries next to it still count.
#[tokio::test]
async fn broken_presence_from_redis_is_ignored() {
    let Some(cluster) =
        Cluster::new("cluster_presence::broken_presence_from_redis_is_ignored").await
    else {
        return;
    };
    let [a] = cluster.nodes().await;
    let alice = a.named("alice").await;
    let mut alice_on_a = a.connect_to("general", Some(&alice)).await;
    let channel = format!("{}:presence", cluster.channel);
    let stranger = "0123456789abcdef";
    let user = "0123456789abcdef0123456789abcdef";
    for payload in [
        "not json".to_owned(),
        format!(r#"{{"v":1,"node":"../{stranger}","kind":"alive","seq":1}}"#),
        format!(r#"{{"v":1,"node":"{stranger}","kind":"shout","seq":1}}"#),
        format!(r#"{{"v":1,"node":"{stranger}","kind":"alive","seq":1,"expiry_ms":10}}"#),
        format!(
            r#"{{"v":1,"node":"{stranger}","kind":"typing","seats":[["general","{user}","<b>\u202e"]]}}"#
        ),
    ] {
        cluster.publish_on(&channel, payload.as_bytes()).await;
    }
    a.wait_for_metric("hubbub_broker_payloads_malformed_total", 5.0)
        .await;

    // A node's hash with one good entry among bad ones, then its heartbeat.
    let mut redis = cluster.redis().await;
    let _: () = redis::cmd("HSET")
        .arg(format!("{}:presence:node:{stranger}", cluster.channel))
        .arg("seq")
        .arg(3)
        .arg("expiry")
        .arg(30_000)
        .arg(format!("general {user}"))
        .arg("mallory")
        .arg("general not-a-user")
        .arg("x")
        .arg(format!("General {user}"))
        .arg("y")
        .query_async(&mut redis)
        .await
        .unwrap();
    let alive =
        format!(r#"{{"v":1,"node":"{stranger}","kind":"alive","seq":3,"expiry_ms":30000}}"#);
    cluster.publish_on(&channel, alive.as_bytes()).await;
    alice_on_a
        .until("mallory, the valid entry", |c| {
            c.present == ["alice", "mallory"]
        })
        .await;
    a.wait_for_metric("hubbub_broker_payloads_malformed_total", 6.0)
        .await;
    let left = format!(r#"{{"v":1,"node":"{stranger}","kind":"left"}}"#);
    cluster.publish_on(&channel, left.as_bytes()).await;
    alice_on_a
        .until("mallory to leave", |c| c.present == ["alice"])
        .await;
    a.wait_ready(200).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{}:presence:node:{stranger}", cluster.channel))
        .query_async(&mut redis)
        .await
        .unwrap();
}

/// A node's presence hash vanishes from Redis (evicted, or expired while the node stalled):
/// the node's next report notices and writes it whole again, so a node that starts later
/// still reads everyone, not only those who changed since.
#[tokio::test]
async fn a_node_whose_presence_vanished_from_redis_writes_it_whole_again() {
    let Some(cluster) = Cluster::new(
        "cluster_presence::a_node_whose_presence_vanished_from_redis_writes_it_whole_again",
    )
    .await
    else {
        return;
    };
    // Heartbeats (which would also notice) only every 100 s: the report must.
    let slow_beats =
        |config: &mut hubbub::Config| config.presence_expiry = Duration::from_secs(300);
    let a = cluster.node_configured(&cluster.redis, slow_beats).await;
    a.wait_ready(200).await;
    let b = cluster.node_configured(&cluster.redis, slow_beats).await;
    b.wait_ready(200).await;
    let bob = b.named("bob").await;
    let _bob_on_b = b.connect_to("general", Some(&bob)).await;
    let mut watcher = a.connect_to("general", None).await;
    watcher
        .until("bob", |c| c.present.contains(&"bob".to_owned()))
        .await;

    let mut redis = cluster.redis().await;
    let pattern = format!("{}:presence:node:*", cluster.channel);
    let hashes: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 2, "{hashes:?}");
    let _: () = redis::cmd("DEL")
        .arg(&hashes)
        .query_async(&mut redis)
        .await
        .unwrap();

    // Carol's arrival on B is B's next report: it finds its hash gone.
    let carol = b.named("carol").await;
    let _carol_on_b = b.connect_to("general", Some(&carol)).await;
    watcher
        .until("carol", |c| c.present.contains(&"carol".to_owned()))
        .await;
    let late = cluster.node_configured(&cluster.redis, |_| {}).await;
    late.wait_ready(200).await;
    let mut newcomer = late.connect_to("general", None).await;
    newcomer
        .until("everyone B has, read from Redis", |c| {
            c.present.contains(&"bob".to_owned()) && c.present.contains(&"carol".to_owned())
        })
        .await;
}
