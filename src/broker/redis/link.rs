//! The link: the one task that owns this node's Redis connection. It connects, names the
//! connection, subscribes and catches up, then publishes the outbox and hands on what
//! arrives, until the connection fails; then it waits and starts again (see the module
//! above for the why of each step).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::format::{decode, encode};
use super::presence::PresenceLink;
use crate::broker::Feed;
use crate::domain::Committed;

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
pub(super) async fn link(
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
