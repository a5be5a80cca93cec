//! The Redis broker: the only module that knows Redis.
//!
//! Each node keeps one Redis connection (RESP3, so one connection both publishes and
//! receives its channel's messages as pushes), named `hubbub:CHANNEL` (`CLIENT LIST` shows
//! which connections are whose), owned by one task, the link:
//!
//! - [`RedisBroker::publish`] puts the batch into a bounded outbox and returns. When the
//!   outbox is full (Redis down for a while, or slow), the batch goes into a one-batch
//!   overflow slot instead, replacing an older one there (counted as dropped): the newest
//!   batch is the one that matters, since its `prev` tells every other node what it missed,
//!   and they read that back from the store. So a node that could not publish for a while
//!   still tells the others, once it can, without waiting for its next message.
//! - The link connects, names the connection, SUBSCRIBEs, and once Redis has confirmed the
//!   subscription calls [`Feed::resync`]: whatever was committed while this node was not
//!   listening is read from the store, and whatever is committed from then on arrives on
//!   the channel. Then it publishes the outbox and hands every batch it receives (its own
//!   echo included: the sequencer drops it as a duplicate) to [`Feed::remote`]. A payload
//!   that is not a batch is logged, counted and ignored.
//! - Any error (the connection closed, a publish or the periodic PING failing or timing
//!   out) ends the connection: the link waits (100 ms, doubling to 5 s) and starts again.
//!   A batch whose publish failed is published first on the next connection. While not
//!   subscribed, [`RedisBroker::health`] says so (`/readyz` answers 503) and the node goes
//!   on serving its own clients.
//!
//! Why not the crate's `ConnectionManager`: it reconnects and resubscribes on its own,
//! without a moment in which to resync after the subscription is back, and it cannot name
//! its connections on Redis before 7.2; both matter here, so the link reconnects itself.
//!
//! Redis is trusted like the database: a well-formed batch on the channel is delivered.
//! Payloads are checked as rigorously as what a browser sends (names, text, ids in order),
//! so a stray or broken one cannot put invalid values on a page.
//!
//! The same connection carries presence and typing (`presence.rs`): each node's users in
//! a hash of its own that expires unless renewed, and the changes on `CHANNEL:presence`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::presence::PresenceLink;
use super::{Broker, Feed};
use crate::config::RedisUrl;
use crate::domain::{ChatMessage, Committed, DisplayName, MessageText, RoomName, unix_micros};
use crate::hub::Hub;
use crate::metrics::Metrics;

mod presence;

/// Batches waiting to be published. Past it, only the newest waits (the overflow slot).
const OUTBOX: usize = 256;
/// Pushes (received messages) waiting for the link. Past it they are dropped and the link
/// resyncs from the store instead.
const PUSHES: usize = 4096;
/// Batches published in a row before the link looks at anything else.
const PUBLISH_BURST: usize = 32;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const LAST_BACKOFF: Duration = Duration::from_secs(5);
/// How long Redis has to accept a connection, or to answer a command.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle link checks that its connection is alive.
const PING_EVERY: Duration = Duration::from_secs(2);
/// The longest text accepted from the channel: the most `--max-message-chars` allows.
const MAX_TEXT_CHARS: usize = 100_000;

/// What the link task and the broker's handle share.
struct Shared {
    client: Client,
    channel: String,
    client_name: String,
    subscribed: AtomicBool,
    /// The newest batch that found the outbox full.
    overflow: Mutex<Option<Committed>>,
    metrics: Arc<Metrics>,
    /// How long the other nodes show this node's users after its last heartbeat.
    presence_expiry: Duration,
}

/// Carries committed batches between nodes over one Redis pub/sub channel.
pub struct RedisBroker {
    shared: Arc<Shared>,
    outbox: mpsc::Sender<Committed>,
    /// Taken by [`Broker::start`].
    pending: Mutex<Option<mpsc::Receiver<Committed>>>,
}

impl RedisBroker {
    /// A broker for `url`'s server and `channel`. Connects only once started, and never
    /// fails for want of Redis: the node serves its own clients meanwhile. The other nodes
    /// stop showing this node's users `presence_expiry` after its last heartbeat.
    pub fn new(
        url: &RedisUrl,
        channel: &str,
        presence_expiry: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let info = url
            .expose()
            .into_connection_info()
            .map_err(|_| "--redis is not a valid Redis URL".to_owned())?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings))
            .map_err(|err| format!("--redis: {:?}", err.kind()))?;
        let (outbox, pending) = mpsc::channel(OUTBOX);
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                channel: channel.to_owned(),
                client_name: format!("hubbub:{channel}"),
                subscribed: AtomicBool::new(false),
                overflow: Mutex::new(None),
                metrics,
                presence_expiry,
            }),
            outbox,
            pending: Mutex::new(Some(pending)),
        })
    }
}

/// How long a quiet node waits before checking the store for batches nobody published
/// (see [`Broker::idle_resync`]): one indexed query a second per idle node.
const IDLE_RESYNC: Duration = Duration::from_secs(1);

impl Broker for RedisBroker {
    fn publish(&self, batch: &Committed) {
        match self.outbox.try_send(batch.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(batch)) => {
                let replaced = match self.shared.overflow.lock() {
                    Ok(mut slot) => slot.replace(batch).is_some(),
                    Err(_) => true,
                };
                if replaced {
                    self.shared.metrics.broker_dropped();
                }
            }
            // The link has stopped (shutting down): nothing to tell anyone any more.
            Err(mpsc::error::TrySendError::Closed(_)) => self.shared.metrics.broker_dropped(),
        }
    }

    fn start(&self, feed: Feed, hub: Hub, stop: CancellationToken) {
        let pending = self.pending.lock().ok().and_then(|mut p| p.take());
        match pending {
            Some(outbox) => {
                let presence = PresenceLink::new(
                    &self.shared.channel,
                    self.shared.presence_expiry,
                    hub,
                    Arc::clone(&self.shared.metrics),
                );
                tokio::spawn(link(Arc::clone(&self.shared), outbox, feed, presence, stop));
            }
            None => tracing::error!("the Redis broker was started twice; ignored"),
        }
    }

    fn health(&self) -> Result<(), String> {
        if self.shared.subscribed.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("redis unavailable (reconnecting)".to_owned())
        }
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    fn idle_resync(&self) -> Option<Duration> {
        Some(IDLE_RESYNC)
    }
}

/// Why a connection ended.
enum End {
    /// The node is stopping: the link ends.
    Stopped,
    /// Something failed: reconnect after a while.
    Failed(String),
}

impl From<redis::RedisError> for End {
    fn from(err: redis::RedisError) -> Self {
        // The kind and category only: the message can carry addresses.
        End::Failed(format!("{:?}", err.kind()))
    }
}

/// Connects, serves the connection until it fails, waits, connects again; until `stop`.
async fn link(
    shared: Arc<Shared>,
    mut outbox: mpsc::Receiver<Committed>,
    feed: Feed,
    mut presence: PresenceLink,
    stop: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut unsent: Option<Committed> = None;
    loop {
        let mut state = Connection {
            shared: &shared,
            outbox: &mut outbox,
            feed: &feed,
            presence: &mut presence,
            unsent: &mut unsent,
            backoff: &mut backoff,
            stop: &stop,
        };
        // `serve` watches `stop` itself, so that it can say goodbye first.
        let end = state.serve().await;
        let was_subscribed = shared.subscribed.swap(false, Ordering::Relaxed);
        match end {
            End::Stopped => break,
            End::Failed(why) if was_subscribed => {
                tracing::warn!(%why, retry_in = ?backoff, "lost the Redis connection; this node serves its own clients meanwhile");
            }
            End::Failed(why) => {
                tracing::warn!(%why, retry_in = ?backoff, "cannot reach Redis");
            }
        }
        // Meanwhile the hub's news is let go: the whole presence is written afresh on the
        // next connection, so holding it would only hold rooms in memory.
        let retry = tokio::time::sleep(backoff);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                () = presence.hub().news() => presence.discard_news(),
                () = stop.cancelled() => {
                    tracing::debug!("Redis broker stopped");
                    return;
                }
            }
        }
        backoff = (backoff * 2).min(LAST_BACKOFF);
    }
    tracing::debug!("Redis broker stopped");
}

/// Everything one connection works with, borrowed from the link.
struct Connection<'a> {
    shared: &'a Shared,
    outbox: &'a mut mpsc::Receiver<Committed>,
    feed: &'a Feed,
    presence: &'a mut PresenceLink,
    unsent: &'a mut Option<Committed>,
    backoff: &'a mut Duration,
    stop: &'a CancellationToken,
}

impl Connection<'_> {
    /// One connection, from connecting to its end. On `stop` it says goodbye (the other
    /// nodes drop this node's users at once) and ends.
    async fn serve(&mut self) -> End {
        let (pushes_in, mut pushes) = mpsc::channel::<PushInfo>(PUSHES);
        let missed = Arc::new(AtomicBool::new(false));
        let overflowed = Arc::clone(&missed);
        // Called by the connection's driver for every push: must not wait.
        let on_push = move |push: PushInfo| -> Result<(), ()> {
            match pushes_in.try_send(push) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    overflowed.store(true, Ordering::Relaxed);
                    Ok(())
                }
                Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
            }
        };
        let stop = self.stop;
        let mut conn = tokio::select! {
            conn = self.subscribe(on_push) => match conn {
                Ok(conn) => conn,
                Err(end) => return end,
            },
            () = stop.cancelled() => return End::Stopped,
        };
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        let mut beat = tokio::time::interval(self.presence.beat_every());
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.reset();
        loop {
            if missed.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    "received batches came faster than this node took them; catching up from the store"
                );
                if self.feed.resync().await.is_err() {
                    return End::Stopped;
                }
                if let Err(err) = self.presence.subscribed(&mut conn).await {
                    return err.into();
                }
            }
            // Publish what waits, a bounded number at a time, so that heartbeats and what
            // arrives are not held up behind a long outbox.
            for _ in 0..PUBLISH_BURST {
                if self.unsent.is_none() {
                    *self.unsent = next_outgoing(self.shared, self.outbox);
                }
                let Some(batch) = self.unsent.take() else {
                    break;
                };
                if let Err(err) = publish(self.shared, &mut conn, &batch).await {
                    *self.unsent = Some(batch);
                    return err.into();
                }
            }
            if self.unsent.is_none() {
                *self.unsent = next_outgoing(self.shared, self.outbox);
            }
            let more = self.unsent.is_some();
            let report_due = self.presence.report_due();
            let hub = self.presence.hub().clone();
            // In this order when several are ready: stopping, then the heartbeat (late ones
            // make the other nodes forget this node's users), then what arrives.
            let result = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    match tokio::time::timeout(TIMEOUT, self.presence.bye(&mut conn)).await {
                        Ok(Ok(())) => tracing::info!("told the other nodes this node is stopping"),
                        _ => tracing::warn!("could not tell the other nodes this node is stopping; they drop its users when it falls silent"),
                    }
                    return End::Stopped;
                }
                _ = beat.tick() => self.presence.beat(&mut conn).await,
                push = pushes.recv() => {
                    let Some(push) = push else {
                        return End::Failed("the connection closed".to_owned());
                    };
                    match self.received(&mut conn, push).await {
                        Ok(()) => Ok(()),
                        Err(end) => return end,
                    }
                }
                () = hub.news() => self.presence.news(&mut conn).await,
                () = sleep_until(report_due), if report_due.is_some() => {
                    self.presence.report(&mut conn).await
                }
                _ = ping.tick() => redis::cmd("PING").query_async::<()>(&mut conn).await,
                batch = self.outbox.recv(), if !more => match batch {
                    Some(batch) => {
                        *self.unsent = Some(batch);
                        Ok(())
                    }
                    // Every handle is gone: the node is stopping.
                    None => return End::Stopped,
                },
                // More batches wait: round again once nothing above is ready.
                () = std::future::ready(()), if more => Ok(()),
            };
            if let Err(err) = result {
                return err.into();
            }
        }
    }

    /// Connects, names the connection and subscribes; once Redis has confirmed the
    /// subscription, catches up (batches from the store, presence from Redis).
    async fn subscribe(
        &mut self,
        on_push: impl Fn(PushInfo) -> Result<(), ()> + Send + Sync + 'static,
    ) -> Result<MultiplexedConnection, End> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_push_sender(on_push);
        let mut conn = self
            .shared
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.shared.client_name)
            .query_async::<()>(&mut conn)
            .await?;
        // Returns once Redis has confirmed both subscriptions: from here on, every batch
        // and presence report published reaches this connection, so the catch-up below
        // misses nothing.
        conn.subscribe(&[self.shared.channel.as_str(), self.presence.channel()])
            .await?;
        self.shared.subscribed.store(true, Ordering::Relaxed);
        self.shared.metrics.broker_subscribed();
        *self.backoff = FIRST_BACKOFF;
        tracing::info!(channel = %self.shared.channel, "subscribed to Redis; catching up from the store");
        if self.feed.resync().await.is_err() {
            return Err(End::Stopped);
        }
        self.presence.subscribed(&mut conn).await?;
        Ok(conn)
    }

    /// Handles one push: a batch goes to the feed, presence to the presence link. `Err`
    /// ends the connection.
    async fn received(
        &mut self,
        conn: &mut MultiplexedConnection,
        push: PushInfo,
    ) -> Result<(), End> {
        match push.kind {
            PushKind::Message => {
                let bulk = |at: usize| match push.data.get(at) {
                    Some(Value::BulkString(bytes)) => bytes.as_slice(),
                    _ => &[],
                };
                let (channel, payload) = (bulk(0), bulk(1));
                if channel == self.presence.channel().as_bytes() {
                    return Ok(self.presence.received(conn, payload).await?);
                }
                match decode(payload) {
                    Ok(batch) => {
                        self.shared.metrics.broker_received();
                        self.feed.remote(batch).await.map_err(|_| End::Stopped)
                    }
                    Err(why) => {
                        self.shared.metrics.broker_malformed();
                        tracing::warn!(%why, bytes = payload.len(), "ignored a payload on the Redis channel that is not a committed batch");
                        Ok(())
                    }
                }
            }
            PushKind::Disconnection => Err(End::Failed("the connection closed".to_owned())),
            PushKind::Unsubscribe => Err(End::Failed("unsubscribed by the server".to_owned())),
            _ => Ok(()),
        }
    }
}

/// Sleeps until `at`; never wakes without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next batch to publish without waiting: the outbox first, then the overflow slot
/// (the newest of all).
fn next_outgoing(shared: &Shared, outbox: &mut mpsc::Receiver<Committed>) -> Option<Committed> {
    outbox
        .try_recv()
        .ok()
        .or_else(|| shared.overflow.lock().ok().and_then(|mut slot| slot.take()))
}

async fn publish(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    batch: &Committed,
) -> Result<(), redis::RedisError> {
    let payload = encode(batch);
    redis::cmd("PUBLISH")
        .arg(&shared.channel)
        .arg(payload)
        .query_async::<()>(conn)
        .await?;
    shared.metrics.broker_published();
    Ok(())
}

/// A batch on the channel: version 1.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBatch {
    v: u8,
    prev: u64,
    messages: Vec<WireMessage>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    id: u64,
    room: String,
    author: String,
    /// Unix time in microseconds.
    at: i64,
    text: String,
}

fn encode(batch: &Committed) -> Vec<u8> {
    let wire = WireBatch {
        v: 1,
        prev: batch.prev,
        messages: batch
            .messages
            .iter()
            .map(|m| WireMessage {
                id: m.id,
                room: m.room.as_str().to_owned(),
                author: m.author.as_str().to_owned(),
                at: unix_micros(m.sent_at),
                text: m.text.as_str().to_owned(),
            })
            .collect(),
    };
    // Plain strings and numbers: serializing cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Reads a batch, checking it as strictly as a message from a browser.
fn decode(payload: &[u8]) -> Result<Committed, String> {
    let wire: WireBatch = serde_json::from_slice(payload).map_err(|err| err.to_string())?;
    if wire.v != 1 {
        return Err(format!("unknown version {}", wire.v));
    }
    let mut newest = wire.prev;
    let mut messages = Vec::with_capacity(wire.messages.len());
    for m in wire.messages {
        if m.id <= newest {
            return Err("ids are not increasing above prev".to_owned());
        }
        newest = m.id;
        let room = RoomName::parse(&m.room).map_err(|err| err.to_string())?;
        let author = DisplayName::parse(&m.author).map_err(|err| err.to_string())?;
        let text = MessageText::parse(&m.text, MAX_TEXT_CHARS)
            .map_err(|err| err.to_string())?
            .ok_or("an empty message")?;
        if text.as_str() != m.text {
            return Err("untrimmed text".to_owned());
        }
        let sent_at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m.at) * 1000)
            .map_err(|_| "a time out of range".to_owned())?;
        messages.push(ChatMessage {
            id: m.id,
            room,
            author,
            sent_at,
            text,
        });
    }
    if messages.is_empty() {
        return Err("an empty batch".to_owned());
    }
    Ok(Committed {
        prev: wire.prev,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Committed {
        let at = time::macros::datetime!(2026-11-28 08:16:22.123456 UTC);
        let message = |id, text: &str| ChatMessage {
            id,
            room: RoomName::general(),
            author: DisplayName::parse("alice").unwrap(),
            sent_at: at,
            text: MessageText::parse(text, 100).unwrap().unwrap(),
        };
        Committed {
            prev: 4,
            messages: vec![message(7, "hi <b>"), message(9, "two\nlines")],
        }
    }

    #[test]
    fn batches_round_trip() {
        let batch = batch();
        assert_eq!(decode(&encode(&batch)).unwrap(), batch);
    }

    #[test]
    fn broken_or_hostile_payloads_are_refused_not_panics() {
        let good = String::from_utf8(encode(&batch())).unwrap();
        let cases = [
            String::new(),
            "null".to_owned(),
            "{".to_owned(),
            "[]".to_owned(),
            good.replace(r#""v":1"#, r#""v":2"#),
            good.replace(r#""prev":4"#, r#""prev":7"#),
            good.replace(r#""id":9"#, r#""id":7"#),
            good.replace(r#""room":"general""#, r#""room":"../x""#),
            good.replace(r#""author":"alice""#, r#""author":"""#),
            good.replace(r#""text":"hi <b>""#, r#""text":"  ""#),
            good.replace(r#""text":"hi <b>""#, r#""text":"bell\u0007""#),
            good.replace(r#""text":"hi <b>""#, r#""text":" hi""#),
            good.replace(r#""at":"#, r#""at":9223372036854775807,"x":"#),
            good.replace(r#""prev":4"#, r#""prev":4,"extra":1"#),
            r#"{"v":1,"prev":0,"messages":[]}"#.to_owned(),
            good.replace(r#""id":7"#, r#""id":-7"#),
        ];
        for payload in cases {
            assert!(decode(payload.as_bytes()).is_err(), "{payload}");
        }
        assert!(decode(&[0xff, 0xfe]).is_err());
    }
}
