//! Several nodes as one chat: in-process servers over one PostgreSQL schema and the
//! machine's Redis (`HUBBUB_TEST_REDIS_URL`), each test on a channel of its own, so tests
//! (and anyone else) can share the server. Nothing here restarts or flushes Redis: a cut is
//! made by killing this test's connections only, found by their name (`hubbub:CHANNEL`).
//! Without either URL a cluster test skips, saying why (in CI it fails).

use std::collections::HashSet;
use std::sync::Arc;

use hubbub::store;

use super::app::{TestApp, spawn_app_on};
use super::client::TestClient;
use super::configured;
use super::db::{TestDb, unique_suffix};
use super::eventually::eventually;
use super::faults::ChildServer;

pub const REDIS_ENV: &str = "HUBBUB_TEST_REDIS_URL";

/// A PostgreSQL schema and a Redis channel for one test.
pub struct Cluster {
    pub db: Arc<TestDb>,
    pub redis: String,
    pub channel: String,
}

impl Cluster {
    /// `None` (and a printed reason) when PostgreSQL or Redis is not configured; in CI, a
    /// panic.
    pub async fn new(test: &str) -> Option<Self> {
        let redis = configured(REDIS_ENV, test, "redis://127.0.0.1:6379")?;
        let db = TestDb::postgres(test).await?;
        let channel = format!("hubbub-test-{}", unique_suffix());
        Some(Self {
            db: Arc::new(db),
            redis,
            channel,
        })
    }

    /// `n` nodes on this cluster's schema and channel, each ready (subscribed) before the
    /// next starts: their Redis connections are in the order of the nodes.
    pub async fn nodes<const N: usize>(&self) -> [TestApp; N] {
        let mut nodes = Vec::with_capacity(N);
        for _ in 0..N {
            let node = self.node_with(&self.redis).await;
            node.wait_ready(200).await;
            nodes.push(node);
        }
        nodes.try_into().unwrap_or_else(|_| unreachable!())
    }

    /// A node on this cluster's schema and channel, through `redis` (not necessarily
    /// ready).
    pub async fn node_with(&self, redis: &str) -> TestApp {
        self.node_configured(redis, |_| {}).await
    }

    /// A node on this cluster's schema and channel, through `redis`, configured further.
    pub async fn node_configured(
        &self,
        redis: &str,
        configure: impl FnOnce(&mut hubbub::Config),
    ) -> TestApp {
        let url = redis.parse().unwrap();
        let channel = self.channel.clone();
        spawn_app_on(Arc::clone(&self.db), "127.0.0.1:0", move |config| {
            config.redis = Some(url);
            config.redis_channel = channel;
            configure(config);
        })
        .await
    }

    /// A node that is the real binary (to kill it), with `args` added.
    pub async fn binary_node(&self, args: &[&str]) -> ChildServer {
        let mut all = vec!["--redis", &self.redis, "--redis-channel", &self.channel];
        all.extend_from_slice(args);
        ChildServer::start(&self.db, &all).await
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Waits until each of `nodes` nodes has its Redis connection, then kills them all.
    pub async fn cut(&self, nodes: usize) {
        self.cut_some(nodes, usize::MAX).await;
    }

    /// Waits until each of `nodes` nodes has its Redis connection, subscribed, then kills
    /// the `kill` oldest (the first node's, if it was ready before the second started).
    ///
    /// Only subscribed connections count: one killed between naming itself and subscribing
    /// never subscribes, so a test counting subscribes would be off by one.
    pub async fn cut_some(&self, nodes: usize, kill: usize) {
        let mut redis = self.redis().await;
        let name = format!("name=hubbub:{}", self.channel);
        let what = format!("{nodes} subscribed connections named {name}");
        let mut ids = eventually(&what, async || {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut redis)
                .await
                .unwrap();
            let ids: Vec<u64> = list
                .lines()
                .filter(|line| line.split(' ').any(|field| field == name))
                .filter(|line| {
                    line.split(' ')
                        .any(|field| field.starts_with("sub=") && field != "sub=0")
                })
                .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
                .map(|id| id.parse().unwrap())
                .collect();
            if ids.len() == nodes {
                Ok(ids)
            } else {
                Err(ids)
            }
        })
        .await;
        ids.sort_unstable();
        ids.truncate(kill);
        for id in &ids {
            let _: redis::Value = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(&mut redis)
                .await
                .unwrap();
        }
    }

    /// Publishes `payload` on the channel the nodes share batches on.
    pub async fn publish(&self, payload: &[u8]) {
        self.publish_on(&self.channel, payload).await;
    }

    pub async fn publish_on(&self, channel: &str, payload: &[u8]) {
        let mut redis = self.redis().await;
        let _: redis::Value = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut redis)
            .await
            .unwrap();
    }

    /// Every id in the store, in order.
    pub async fn history(&self) -> Vec<u64> {
        let store = store::open(&self.db.url).await.unwrap();
        let all = store.between(0, u64::MAX, 100_000).await.unwrap();
        all.iter()
            .filter(|m| !m.is_change())
            .map(|m| m.id)
            .collect()
    }

    /// Each client has seen every stored message once, in the store's order, and nothing
    /// more is on its way: a marker goes out from each of `nodes` last, and anything still
    /// to come (a duplicate, a late catch-up) would come before it, the same way. Returns
    /// how many messages were stored before the markers.
    pub async fn assert_everyone_saw_history(
        &self,
        nodes: &[&TestApp],
        clients: &mut [&mut TestClient],
    ) -> usize {
        let markers: Vec<String> = (0..nodes.len())
            .map(|n| format!("marker from node {n}"))
            .collect();
        // Kept open until every marker is seen: a socket dropped with frames unread is
        // reset, and a reset can lose what the server had not read yet.
        let mut senders = Vec::new();
        for (node, marker) in nodes.iter().zip(&markers) {
            let mut sender = node.connect().await;
            sender.say(marker).await;
            senders.push(sender);
        }
        for client in clients.iter_mut() {
            client
                .until("every node's marker", |page| {
                    markers
                        .iter()
                        .all(|marker| page.shown.iter().any(|m| &m.text == marker))
                })
                .await;
        }
        drop(senders);
        let history = self.history().await;
        for client in clients.iter() {
            assert_once_in_order(client, &history);
        }
        history.len() - markers.len()
    }
}

impl TestApp {
    /// Waits until `/readyz` answers `status`; returns its body.
    pub async fn wait_ready(&self, status: u16) -> String {
        eventually(&format!("/readyz to answer {status}"), async || {
            let response = self.get("/readyz").await;
            if response.status == status {
                Ok(response.body)
            } else {
                Err((response.status, response.body))
            }
        })
        .await
    }
}

fn assert_once_in_order(client: &TestClient, expected: &[u64]) {
    let seen = client.ids();
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        seen.len(),
        "duplicates: {seen:?}"
    );
    assert_eq!(seen, expected);
}
