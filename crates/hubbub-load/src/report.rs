//! What a run measured, as JSON (one line on stdout) and as a table for people.

use serde::Serialize;

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
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
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Report {
    /// Whether the run met its bar: every connection made and kept, loss within bounds.
    pub fn passed(&self, max_loss: f64) -> bool {
        self.connect_failures == 0 && self.dropped == 0 && self.loss_ratio <= max_loss
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
        out
    }
}
