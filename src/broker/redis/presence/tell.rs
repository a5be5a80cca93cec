//! What this node tells the others about its own users: its whole hash after every
//! (re)subscribe, paced reports of what changed, heartbeats, typing and renames, and a
//! goodbye when it stops.

use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use super::format::{self, Body, field, millis, signal_bodies, unix_millis, wire_seat};
use super::{PresenceLink, REPORT_PACE};
use crate::cluster::{Change, EXPIRY_RANGE};

impl PresenceLink {
    /// Writes this node's whole presence (its hash replaced in one transaction) and tells
    /// the others to read it.
    pub(super) async fn rewrite(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let seats = self.hub.all_seats();
        self.published.reset(&seats);
        self.seq += 1;
        self.pending = false;
        let key = self.hash(&self.node);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("DEL").arg(&key).ignore();
        let mut hset = redis::cmd("HSET");
        hset.arg(&key)
            .arg("seq")
            .arg(self.seq)
            .arg("expiry")
            .arg(millis(self.expiry));
        for seat in &seats {
            hset.arg(field(&seat.room, &seat.user))
                .arg(seat.name.as_str());
        }
        pipe.add_command(hset).ignore();
        self.renew(&mut pipe);
        pipe.cmd("PUBLISH")
            .arg(&self.channel)
            .arg(self.alive())
            .ignore();
        pipe.query_async::<()>(conn).await?;
        self.metrics.presence_published();
        Ok(())
    }

    /// Keeps this node's hash and its place in the node list alive for another expiry, and
    /// drops nodes from the list whose own expiry has run out.
    fn renew(&self, pipe: &mut redis::Pipeline) {
        let now = unix_millis();
        let expiry = millis(self.expiry);
        pipe.cmd("PEXPIRE")
            .arg(self.hash(&self.node))
            .arg(expiry)
            .ignore();
        pipe.cmd("ZADD")
            .arg(&self.nodes_key)
            .arg(now.saturating_add(expiry))
            .arg(self.node.as_str())
            .ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&self.nodes_key)
            .arg("-inf")
            .arg(format!("({now}"))
            .ignore();
        // The list outlives its nodes by the longest expiry there is, then goes too (every
        // heartbeat of any node renews it).
        pipe.cmd("PEXPIRE")
            .arg(&self.nodes_key)
            .arg(millis(*EXPIRY_RANGE.end()).saturating_mul(2))
            .ignore();
    }

    /// The hub has news: typing and renames go out at once, presence changes as the pace
    /// allows.
    pub(in crate::broker::redis) async fn news(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let signals = self.hub.take_signals();
        if !signals.is_empty() {
            let mut pipe = redis::pipe();
            for body in signal_bodies(signals) {
                pipe.cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(self.encode(body))
                    .ignore();
            }
            pipe.query_async::<()>(conn).await?;
        }
        if Instant::now() >= self.next_report {
            self.report(conn).await
        } else {
            self.pending = true;
            Ok(())
        }
    }

    /// Publishes what changed in this node's presence since the last report, if anything.
    pub(in crate::broker::redis) async fn report(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        self.pending = false;
        let Some(rooms) = self.hub.take_presence() else {
            // The hub lost track of some changes: tell everything afresh.
            return self.rewrite(conn).await;
        };
        let mut changes = Vec::new();
        for (room, users) in rooms {
            changes.extend(self.published.diff(&room, users));
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.seq += 1;
        self.next_report = Instant::now() + REPORT_PACE;
        let key = self.hash(&self.node);
        let mut here = Vec::new();
        let mut gone = Vec::new();
        let mut hset = redis::cmd("HSET");
        hset.arg(&key).arg("seq").arg(self.seq);
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(&key);
        for change in &changes {
            match change {
                Change::Here(seat) => {
                    hset.arg(field(&seat.room, &seat.user))
                        .arg(seat.name.as_str());
                    here.push(wire_seat(seat));
                }
                Change::Gone { room, user } => {
                    hdel.arg(field(room, user));
                    gone.push((room.as_str().to_owned(), user.to_string()));
                }
            }
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        // Whether the hash was there before this report: if it had expired (this node
        // stalled, or Redis evicted it), the report just made a hash of the changed users
        // only, so it is rewritten whole at once.
        pipe.cmd("EXISTS").arg(&key);
        pipe.add_command(hset).ignore();
        if !gone.is_empty() {
            pipe.add_command(hdel).ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(millis(self.expiry))
            .ignore();
        let body = Body::Changes {
            seq: self.seq,
            here,
            gone,
        };
        pipe.cmd("PUBLISH")
            .arg(&self.channel)
            .arg(self.encode(body))
            .ignore();
        let (existed,): (bool,) = pipe.query_async(conn).await?;
        self.metrics.presence_published();
        if !existed {
            tracing::warn!("this node's presence was gone from Redis; writing it again");
            return self.rewrite(conn).await;
        }
        Ok(())
    }

    /// The heartbeat: renews this node's hash and tells the others it is alive. If the
    /// hash is gone (it expired while this node was slow, or Redis lost it), writes it
    /// again.
    pub(in crate::broker::redis) async fn beat(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        // A hash without its expiry is not one this node wrote whole.
        let exists: bool = redis::cmd("HEXISTS")
            .arg(self.hash(&self.node))
            .arg("expiry")
            .query_async(conn)
            .await?;
        if !exists {
            tracing::warn!("this node's presence was gone from Redis; writing it again");
            return self.rewrite(conn).await;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.renew(&mut pipe);
        pipe.cmd("PUBLISH")
            .arg(&self.channel)
            .arg(self.alive())
            .ignore();
        pipe.query_async::<()>(conn).await
    }

    /// The node is stopping: its users are gone from it at once, not after the expiry.
    pub(in crate::broker::redis) async fn bye(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("DEL").arg(self.hash(&self.node)).ignore();
        pipe.cmd("ZREM")
            .arg(&self.nodes_key)
            .arg(self.node.as_str())
            .ignore();
        pipe.cmd("PUBLISH")
            .arg(&self.channel)
            .arg(self.encode(Body::Left {}))
            .ignore();
        pipe.query_async::<()>(conn).await
    }

    fn alive(&self) -> Vec<u8> {
        self.encode(Body::Alive {
            seq: self.seq,
            expiry_ms: u64::try_from(self.expiry.as_millis()).unwrap_or(u64::MAX),
        })
    }

    pub(super) fn encode(&self, body: Body) -> Vec<u8> {
        format::encode(&self.node, body)
    }
}
