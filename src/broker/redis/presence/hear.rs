//! What this node hears from the others: every node's hash after (re)subscribing, what
//! they publish on the presence channel, and one node's hash again after a [`Gap`]. All of
//! it goes to the hub ([`crate::hub::Hub::hear`]); what does not parse is counted and
//! ignored.

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::PresenceLink;
use super::format::{decode, expiry_of, pairs, parse_field, text, unix_millis};
use crate::cluster::{Gap, Heard, MAX_NODES, NodeId, NodePresence};

impl PresenceLink {
    /// Just subscribed (again): reads every other node's presence, replacing what was known,
    /// and writes this node's afresh, since reports were missed meanwhile either way.
    pub(in crate::broker::redis) async fn subscribed(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let listed: Vec<Value> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.nodes_key)
            .arg(unix_millis())
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(MAX_NODES)
            .query_async(conn)
            .await?;
        let others: Vec<NodeId> = listed
            .iter()
            .filter_map(|value| {
                let node = text(value).and_then(NodeId::parse);
                if node.is_none() {
                    self.malformed("a node id that is not one");
                }
                node
            })
            .filter(|node| *node != self.node)
            .collect();
        let mut reads = redis::pipe();
        for node in &others {
            reads.cmd("HGETALL").arg(self.hash(node));
        }
        let hashes: Vec<Value> = if others.is_empty() {
            Vec::new()
        } else {
            reads.query_async(conn).await?
        };
        let everyone: Vec<NodePresence> = others
            .into_iter()
            .zip(hashes)
            .filter_map(|(node, hash)| self.whole(node, &hash))
            .collect();
        self.metrics.presence_read(everyone.len());
        tracing::info!(nodes = everyone.len(), "read the other nodes' presence");
        // A fresh picture: nothing to apply a gap to, so the result is always `Ok`.
        let _ = self.hub.hear(Heard::Everyone(everyone));
        self.rewrite(conn).await
    }

    /// A payload on the presence channel.
    pub(in crate::broker::redis) async fn received(
        &mut self,
        conn: &mut MultiplexedConnection,
        payload: &[u8],
    ) -> redis::RedisResult<()> {
        let (node, heard) = match decode(payload) {
            Ok(decoded) => decoded,
            Err(why) => {
                self.malformed(&why);
                return Ok(());
            }
        };
        if node == self.node {
            return Ok(());
        }
        if self.hub.hear(heard) == Err(Gap) {
            self.read(conn, node).await?;
        }
        Ok(())
    }

    /// Reads one node's whole presence after a gap; a node whose hash is gone has left.
    async fn read(
        &mut self,
        conn: &mut MultiplexedConnection,
        node: NodeId,
    ) -> redis::RedisResult<()> {
        let hash: Value = redis::cmd("HGETALL")
            .arg(self.hash(&node))
            .query_async(conn)
            .await?;
        self.metrics.presence_read(1);
        let heard = match self.whole(node.clone(), &hash) {
            Some(whole) => Heard::Whole(whole),
            None => Heard::Left { node },
        };
        let _ = self.hub.hear(heard);
        Ok(())
    }

    /// `node`'s hash as its whole presence; `None` when it is empty (gone) or lacks a valid
    /// report number or expiry. Fields that do not parse are skipped and counted.
    pub(super) fn whole(&self, node: NodeId, hash: &Value) -> Option<NodePresence> {
        let pairs = pairs(hash);
        if pairs.is_empty() {
            return None;
        }
        let mut seq = None;
        let mut expiry = None;
        let mut seats = Vec::with_capacity(pairs.len());
        let mut bad = 0;
        for (field, value) in pairs {
            match field {
                "seq" => seq = value.parse::<u64>().ok(),
                "expiry" => expiry = value.parse::<u64>().ok().and_then(|ms| expiry_of(ms).ok()),
                _ => match parse_field(field, value) {
                    Some(seat) => seats.push(seat),
                    None => bad += 1,
                },
            }
        }
        if bad > 0 {
            self.malformed(&format!("{bad} presence entries that do not parse"));
        }
        match (seq, expiry) {
            (Some(seq), Some(expiry)) => Some(NodePresence {
                node,
                seq,
                expiry,
                seats,
            }),
            _ => {
                self.malformed("a node's presence without a valid report number and expiry");
                None
            }
        }
    }

    fn malformed(&self, why: &str) {
        self.metrics.broker_malformed();
        tracing::warn!(%why, "ignored presence from Redis that is not what a node writes");
    }
}
