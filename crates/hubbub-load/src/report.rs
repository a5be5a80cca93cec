//! What a run measured, as JSON (one line on stdout) and as a table for people.

use hdrhistogram::Histogram;
use serde::Serialize;

/// What a run measured, all rooms together; `groups` breaks it down by group.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The room's WebSocket URL on every node; with several rooms, the URLs given.
    pub url: String,
    pub clients: usize,
    pub connected: usize,
    pub connect_failures: usize,
    /// Connections that ended before the run did.
    pub dropped: usize,
    pub connect_seconds: f64,
    pub connections_per_second: f64,
    pub senders: usize,
    pub target_rate: f64,
    pub measured_seconds: f64,
    /// Messages sent while measuring.
    pub sent: u64,
    pub messages_per_second: f64,
    /// `sent` × connected clients.
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub deliveries_per_second: f64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub duplicates: u64,
    /// Messages of this run that reached a client of another room (must be 0).
    pub misrouted: u64,
    pub latency_ms: Latency,
    pub rss_before_kib: Option<u64>,
    pub rss_after_connect_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    pub rss_per_connection_kib: Option<f64>,
    /// CPU time (user + system) the server used during the measured phase.
    pub server_cpu_seconds: Option<f64>,
    /// `server_cpu_seconds` per delivery, in microseconds: what one delivery costs the
    /// server, all included (parsing, storing, rendering, the kernel's TCP work).
    pub server_cpu_us_per_delivery: Option<f64>,
    /// This tool's own CPU use while measuring, in percent of one core. Near 100 (with the
    /// tool pinned to one core) the tool itself limits what the run can show.
    pub load_cpu_percent: Option<f64>,
    /// Each group's share, in the order given (one group without `--group`).
    pub groups: Vec<GroupReport>,
}

/// What one group's rooms measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupReport {
    /// `CLIENTS:SENDERS:RATE:ROOMS`, as in `--group`.
    pub group: String,
    pub rooms: usize,
    pub clients_per_room: usize,
    pub senders_per_room: usize,
    /// Messages per second per room, its senders together.
    pub rate_per_room: f64,
    /// The group's first room's WebSocket URL on the first node (the others differ in
    /// the room's name or the node).
    pub url: String,
    pub connected: usize,
    pub dropped: usize,
    pub sent: u64,
    /// Per room, `sent` in the room × its connected clients; summed.
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub duplicates: u64,
    /// Messages that reached this group's clients from another room (must be 0).
    pub misrouted: u64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Milliseconds from a histogram of microseconds.
    pub(crate) fn from_micros(histogram: &Histogram<u64>) -> Self {
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Self {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: histogram.max() as f64 / 1000.0,
        }
    }
}

/// The share of `expected` that is `lost` (0 when nothing was expected).
pub(crate) fn loss_ratio(lost: u64, expected: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        lost as f64 / expected as f64
    }
}

impl Report {
    /// Whether the run met its bar: every connection made and kept, loss within bounds,
    /// nothing in the wrong room.
    pub fn passed(&self, max_loss: f64) -> bool {
        self.connect_failures == 0
            && self.dropped == 0
            && self.loss_ratio <= max_loss
            && self.misrouted == 0
    }

    /// A human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |name: &str, value: String| out.push_str(&format!("{name:<26}{value}\n"));
        row("url", self.url.clone());
        row(
            "clients",
            format!(
                "{} connected of {} ({} failed, {} dropped)",
                self.connected, self.clients, self.connect_failures, self.dropped
            ),
        );
        row(
            "connect",
            format!(
                "{:.2} s ({:.0} connections/s)",
                self.connect_seconds, self.connections_per_second
            ),
        );
        row(
            "senders / target rate",
            format!("{} / {} msg/s", self.senders, self.target_rate),
        );
        row("measured", format!("{:.1} s", self.measured_seconds));
        row(
            "sent",
            format!("{} ({:.1} msg/s)", self.sent, self.messages_per_second),
        );
        row(
            "deliveries",
            format!(
                "{} of {} expected ({:.0}/s)",
                self.deliveries, self.expected_deliveries, self.deliveries_per_second
            ),
        );
        row(
            "lost / duplicates",
            format!(
                "{} ({:.4}%) / {}",
                self.lost,
                self.loss_ratio * 100.0,
                self.duplicates
            ),
        );
        row("misrouted", self.misrouted.to_string());
        let l = &self.latency_ms;
        row(
            "latency ms p50/p90/p99",
            format!("{:.2} / {:.2} / {:.2}", l.p50, l.p90, l.p99),
        );
        row(
            "latency ms p99.9/max",
            format!("{:.2} / {:.2}", l.p999, l.max),
        );
        if let (Some(before), Some(after)) = (self.rss_before_kib, self.rss_after_connect_kib) {
            row(
                "server RSS KiB",
                format!(
                    "{before} → {after} after connecting, {} at the end",
                    self.rss_end_kib.unwrap_or(0)
                ),
            );
        }
        if let Some(per) = self.rss_per_connection_kib {
            row("RSS per connection", format!("{per:.2} KiB"));
        }
        if let (Some(cpu), Some(per)) = (self.server_cpu_seconds, self.server_cpu_us_per_delivery) {
            row(
                "server CPU",
                format!("{cpu:.2} s while measuring ({per:.3} µs per delivery)"),
            );
        }
        if let Some(own) = self.load_cpu_percent {
            row(
                "load tool CPU",
                format!("{own:.0}% of a core while measuring"),
            );
        }
        let several_rooms = self.groups.len() > 1 || self.groups.iter().any(|g| g.rooms > 1);
        for (index, group) in self.groups.iter().enumerate().filter(|_| several_rooms) {
            row(
                &format!("group {index}"),
                format!(
                    "{} room(s) of {} clients, {} sending {} msg/s in each ({})",
                    group.rooms,
                    group.clients_per_room,
                    group.senders_per_room,
                    group.rate_per_room,
                    group.url
                ),
            );
            row(
                "  deliveries",
                format!(
                    "{} of {} expected; lost {} ({:.4}%), duplicates {}, misrouted {}",
                    group.deliveries,
                    group.expected_deliveries,
                    group.lost,
                    group.loss_ratio * 100.0,
                    group.duplicates,
                    group.misrouted
                ),
            );
            let l = &group.latency_ms;
            row(
                "  latency ms p50/p90/p99",
                format!(
                    "{:.2} / {:.2} / {:.2} (max {:.2})",
                    l.p50, l.p90, l.p99, l.max
                ),
            );
        }
        out
    }
}
