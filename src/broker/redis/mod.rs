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
//! The same connection carries presence and typing (`presence/`): each node's users in
//! a hash of its own that expires unless renewed, and the changes on `CHANNEL:presence`.
//!
//! - `mod.rs`: [`RedisBroker`], the handle the commit writer publishes through.
//! - `link.rs`: the link task and its connection: subscribe, publish, receive, reconnect.
//! - `format.rs`: a committed batch as it travels on the channel, and its strict reading.
//! - `presence/`: presence and typing across nodes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{Client, IntoConnectionInfo, ProtocolVersion};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::link::link;
use self::presence::PresenceLink;
use super::{Broker, Feed};
use crate::config::RedisUrl;
use crate::domain::Committed;
use crate::hub::Hub;
use crate::metrics::Metrics;

mod format;
mod link;
mod presence;

/// Batches waiting to be published. Past it, only the newest waits (the overflow slot).
const OUTBOX: usize = 256;

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
