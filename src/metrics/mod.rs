//! What an operator can count: one [`Metrics`] per [`crate::Server`], each with a registry
//! of its own (no global registry, so two servers in one process never mix their counts),
//! served as OpenMetrics text at `GET /metrics`.
//!
//! Every labelled series is created here, once, when the server starts: the recording
//! points hold plain handles (`Counter`, `Gauge`, `Histogram`, each an `Arc` around atomics)
//! and index them by a small enum, so no label lookup (which takes the family's lock) ever
//! happens on a message's way through. The fan-out records once per broadcast and room,
//! never per delivered socket. Every series exists from the start (at zero), so a scrape
//! never misses one.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use self::reasons::{Disconnect, Refusal, Rejection};

mod reasons;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set of one `reason`.
type Reason = [(&'static str, &'static str); 1];

/// The server's counters, gauges and histograms, and the registry that names them.
pub struct Metrics {
    registry: Registry,
    connections: Gauge,
    connects: Counter,
    disconnects: [Counter; Disconnect::ALL.len()],
    /// `[total, per_ip]`.
    refused: [Counter; 2],
    received: Counter,
    broadcast: Counter,
    rejected: [Counter; Rejection::ALL.len()],
    evictions: Counter,
    typing_dropped: Counter,
    fanout: Histogram,
    commit: Histogram,
    commit_batch: Histogram,
    rooms: Gauge,
    caught_up: Counter,
    duplicates: Counter,
    /// `[published, dropped, received, malformed, subscribed]`, for a remote broker.
    broker: [Counter; 5],
    cluster_nodes: Gauge,
    /// `[published, reads]`: presence reports sent, and whole presences read.
    presence: [Counter; 2],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One open session in `hubbub_connections`; see [`Metrics::session_started`].
#[must_use = "the session counts as open until this is dropped"]
pub struct OpenSession<'a> {
    metrics: &'a Metrics,
}

impl OpenSession<'_> {
    /// The session ended: counted by why (the gauge goes down on drop).
    pub fn ended(self, why: Disconnect) {
        self.metrics.disconnects[why as usize].inc();
    }
}

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        self.metrics.connections.dec();
    }
}

impl Metrics {
    /// A fresh registry with every series in it, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hubbub");
        let r = &mut registry;
        let connections = gauge(r, "connections", "Open WebSocket sessions");
        let connects = counter(r, "connects", "WebSocket sessions started");
        let disconnects = by_reason(
            r,
            "disconnects",
            "WebSocket sessions ended, by why they ended",
            Disconnect::ALL.map(Disconnect::label),
        );
        let refused = by_reason(
            r,
            "connections_refused",
            "WebSocket upgrades refused with 503 because a connection limit was reached, by limit",
            ["total", "per_ip"],
        );
        let received = counter(
            r,
            "messages_received",
            "Chat messages received from clients (every text frame but typing events)",
        );
        let broadcast = counter(
            r,
            "messages_broadcast",
            "Chat messages committed and fanned out to their room",
        );
        let rejected = by_reason(
            r,
            "messages_rejected",
            "Chat messages not sent, by why",
            Rejection::ALL.map(Rejection::label),
        );
        let evictions = counter(
            r,
            "slow_client_evictions",
            "Sessions disconnected because their send queue was full",
        );
        let typing_dropped = counter(
            r,
            "typing_dropped",
            "Typing events ignored because they were over the connection's typing rate",
        );
        // 10 µs to about 0.7 s: a 10,000-member room takes milliseconds.
        let fanout = seconds(
            r,
            "fanout_duration",
            "Time to offer one broadcast to every member of its room",
            exponential_buckets(0.000_01, 2.0, 17),
        );
        // 100 µs to about 13 s: a commit is bounded by a 10 s timeout.
        let commit = seconds(
            r,
            "commit_duration",
            "Time to store one batch of messages (one transaction), failures included",
            exponential_buckets(0.000_1, 2.0, 18),
        );
        // 1 to 65,536, the largest --commit-batch.
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 17));
        r.register(
            "commit_batch_size",
            "Messages in one batch handed to the store (failed batches included)",
            commit_batch.clone(),
        );
        let rooms = gauge(r, "rooms", "Rooms held in memory");
        let caught_up = counter(
            r,
            "messages_caught_up",
            "Committed messages this node read back from the store to fill a gap in what it had delivered",
        );
        let duplicates = counter(
            r,
            "messages_duplicate",
            "Committed messages handed to this node's sequencer again and dropped",
        );
        let broker = [
            counter(
                r,
                "broker_batches_published",
                "Committed batches this node published to the other nodes",
            ),
            counter(
                r,
                "broker_batches_dropped",
                "Committed batches this node could not publish (queue full); the other nodes read them from the store",
            ),
            counter(
                r,
                "broker_batches_received",
                "Committed batches received from the broker (this node's own echo included)",
            ),
            counter(
                r,
                "broker_payloads_malformed",
                "Payloads on the broker's channel that were not a committed batch, ignored",
            ),
            counter(
                r,
                "broker_subscribes",
                "Times this node subscribed to the broker's channel (each reconnect counts)",
            ),
        ];
        let cluster_nodes = gauge(
            r,
            "cluster_nodes",
            "Other nodes whose users this node shows in presence (with a remote broker)",
        );
        let presence = [
            counter(
                r,
                "broker_presence_published",
                "Reports of this node's presence changes published to the other nodes",
            ),
            counter(
                r,
                "broker_presence_reads",
                "Times this node read another node's whole presence from the broker (after it subscribed, or missed a report)",
            ),
        ];
        Self {
            registry,
            connections,
            connects,
            disconnects,
            refused,
            received,
            broadcast,
            rejected,
            evictions,
            typing_dropped,
            fanout,
            commit,
            commit_batch,
            rooms,
            caught_up,
            duplicates,
            broker,
            cluster_nodes,
            presence,
        }
    }

    /// Everything, as OpenMetrics text (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a `String` cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts a session in; the gauge goes down again when the returned guard is dropped,
    /// on every path (a panic in the session included), so it cannot drift.
    pub fn session_started(&self) -> OpenSession<'_> {
        self.connects.inc();
        self.connections.inc();
        OpenSession { metrics: self }
    }

    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].inc();
    }

    pub fn received(&self) {
        self.received.inc();
    }

    pub fn rejected(&self, why: Rejection) {
        self.rejected[why as usize].inc();
    }

    pub fn rejected_many(&self, why: Rejection, messages: usize) {
        self.rejected[why as usize].inc_by(messages as u64);
    }

    pub fn typing_dropped(&self) {
        self.typing_dropped.inc();
    }

    /// `messages` were fanned out (one count per message, whatever the room's size).
    pub fn broadcast(&self, messages: usize) {
        self.broadcast.inc_by(messages as u64);
    }

    pub fn fanout(&self, took: Duration) {
        self.fanout.observe(took.as_secs_f64());
    }

    pub fn evicted(&self, sessions: u64) {
        self.evictions.inc_by(sessions);
    }

    /// One batch of `messages` went to the store and took `took`.
    pub fn commit(&self, messages: usize, took: Duration) {
        self.commit.observe(took.as_secs_f64());
        self.commit_batch.observe(messages as f64);
    }

    /// `messages` were read from the store to fill a gap (the sequencer).
    pub fn caught_up(&self, messages: usize) {
        self.caught_up.inc_by(messages as u64);
    }

    /// `messages` arrived at the sequencer a second time and were dropped.
    pub fn duplicates(&self, messages: usize) {
        self.duplicates.inc_by(messages as u64);
    }

    /// A batch published to the other nodes.
    pub fn broker_published(&self) {
        self.broker[0].inc();
    }

    /// A batch that could not be published (the other nodes catch up from the store).
    pub fn broker_dropped(&self) {
        self.broker[1].inc();
    }

    /// A batch received from the broker.
    pub fn broker_received(&self) {
        self.broker[2].inc();
    }

    /// A payload on the broker's channel that was not a batch.
    pub fn broker_malformed(&self) {
        self.broker[3].inc();
    }

    /// The broker (re)subscribed.
    pub fn broker_subscribed(&self) {
        self.broker[4].inc();
    }

    /// How many other nodes' presence this node holds.
    pub fn cluster_nodes(&self, nodes: usize) {
        self.cluster_nodes
            .set(i64::try_from(nodes).unwrap_or(i64::MAX));
    }

    /// A report of this node's presence changes was published.
    pub fn presence_published(&self) {
        self.presence[0].inc();
    }

    /// `nodes` nodes' whole presence was read.
    pub fn presence_read(&self, nodes: usize) {
        self.presence[1].inc_by(nodes as u64);
    }

    pub fn rooms(&self, loaded: usize) {
        self.rooms.set(i64::try_from(loaded).unwrap_or(i64::MAX));
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

fn seconds(
    registry: &mut Registry,
    name: &str,
    help: &str,
    buckets: impl Iterator<Item = f64>,
) -> Histogram {
    let histogram = Histogram::new(buckets);
    registry.register_with_unit(name, help, Unit::Seconds, histogram.clone());
    histogram
}

/// A counter family with one `reason` label, and its series for each of `reasons`,
/// created now so that recording never looks a label up.
fn by_reason<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    reasons: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Reason, Counter>::default();
    registry.register(name, help, family.clone());
    reasons.map(|reason| family.get_or_create_owned(&[("reason", reason)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_labels_are_distinct_and_indexed_in_order() {
        for (index, why) in Rejection::ALL.iter().enumerate() {
            assert_eq!(*why as usize, index);
        }
        let mut labels: Vec<&str> = Rejection::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Rejection::ALL.len());
    }

    #[test]
    fn every_series_is_there_from_the_start_and_the_text_is_openmetrics() {
        let metrics = Metrics::new();
        let open = metrics.session_started();
        let gone = metrics.session_started();
        drop(gone);
        metrics.rejected(Rejection::RateLimited);
        metrics.fanout(Duration::from_micros(50));
        let text = metrics.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("hubbub_connections 1\n"), "{text}");
        assert!(text.contains("hubbub_connects_total 2\n"), "{text}");
        assert!(
            text.contains("hubbub_messages_rejected_total{reason=\"rate_limited\"} 1\n"),
            "{text}"
        );
        open.ended(Disconnect::Shutdown);
        let after = metrics.encode();
        assert!(after.contains("hubbub_connections 0\n"), "{after}");
        assert!(
            after.contains("hubbub_disconnects_total{reason=\"shutdown\"} 1\n"),
            "{after}"
        );
        for why in Rejection::ALL {
            assert!(
                text.contains(&format!("reason=\"{}\"", why.label())),
                "{text}"
            );
        }
        for reason in Disconnect::ALL {
            assert!(
                text.contains(&format!(
                    "hubbub_disconnects_total{{reason=\"{}\"}} 0\n",
                    reason.label()
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("# TYPE hubbub_fanout_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT hubbub_fanout_duration_seconds seconds"),
            "{text}"
        );
        assert!(
            text.contains("hubbub_fanout_duration_seconds_count 1\n"),
            "{text}"
        );
    }

    #[test]
    fn two_registries_count_apart() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.received();
        a.received();
        b.received();
        assert!(a.encode().contains("hubbub_messages_received_total 2\n"));
        assert!(b.encode().contains("hubbub_messages_received_total 1\n"));
    }
}
