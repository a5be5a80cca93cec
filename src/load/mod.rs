//! `hubbub-load`: a load generator that speaks the page's own protocol.
//!
//! It opens `--clients` WebSocket connections the way the page does (it reads the page and
//! follows its `hx-ws:connect` or `ws-connect` attribute), lets `--senders` of them send
//! `--rate` messages per second in total, and checks every frame every client receives.
//! Each message carries a token (run, sender, sequence number, send time), so the tool can
//! tell exactly which messages reached which client, measure end-to-end latency, and count
//! losses and duplicates against what it actually sent. Nothing here knows hubbub's
//! internals, so the same run measures any server of the same protocol (such as the seed
//! design in `shared/bench/seed-go`).

mod client;
mod token;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use hubbub_wire::Incoming;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use self::token::Token;

/// Everything a run can be told.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "hubbub-load",
    version,
    about = "Load-test a hubbub (or any htmx WebSocket chat) server."
)]
pub struct LoadConfig {
    /// The chat page (`http://host:port/`, `/rooms/NAME`) or its WebSocket URL (`ws://…`).
    #[arg(long, default_value = "http://127.0.0.1:3000/")]
    pub url: String,
    /// Another node of the same chat (repeatable). Clients are spread over `--url` and
    /// these in turn (client i on node i mod n, senders included), so most deliveries
    /// cross from one node to another.
    #[arg(long = "also-url", value_name = "URL")]
    pub also_urls: Vec<String>,
    /// Connections to open.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// How many of the clients send.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Sending before measuring (not counted).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// After the last message, how long to wait for deliveries still in flight.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Use this room's page (`/rooms/NAME`) instead of the URL's path.
    #[arg(long)]
    pub room: Option<String>,
    /// Only connect and hold the connections for `--duration`; send nothing.
    #[arg(long)]
    pub idle: bool,
    /// Read this process's resident memory before and after connecting.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Fail (exit 1) when more than this fraction of deliveries is lost.
    #[arg(long, default_value_t = 0.0)]
    pub max_loss: f64,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Do not spread connections over source addresses 127.0.x.y (only used for loopback
    /// targets, where it lifts the ephemeral-port limit).
    #[arg(long)]
    pub no_spread: bool,
}

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

/// Why a run could not even start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the page {url}: {reason}")]
    Page { url: String, reason: String },
    #[error("the page {0} has no hx-ws:connect or ws-connect attribute")]
    NoSocket(String),
    #[error("bad URL {0:?}: give http://host:port/path or ws://host:port/path")]
    BadUrl(String),
    #[error("--senders ({senders}) cannot exceed --clients ({clients})")]
    TooManySenders { senders: usize, clients: usize },
}

/// Shared between the tasks of one run.
struct Shared {
    run: u32,
    start: Instant,
    /// Set when the measured phase begins / ends.
    measuring: AtomicBool,
    stopped: AtomicBool,
    /// Messages sent while measuring, per sender.
    sent: Vec<AtomicU64>,
    deliveries: AtomicU64,
    /// Tells readers to hand in what they counted.
    finish: CancellationToken,
}

/// Runs a load test as configured.
pub async fn run(config: &LoadConfig) -> Result<Report, LoadError> {
    if config.senders > config.clients {
        return Err(LoadError::TooManySenders {
            senders: config.senders,
            clients: config.clients,
        });
    }
    // Every node: its socket URL, origin and address, and whether to spread source
    // addresses (loopback targets only).
    let mut targets = Vec::with_capacity(1 + config.also_urls.len());
    for url in std::iter::once(&config.url).chain(&config.also_urls) {
        let (ws_url, origin) = resolve(url, config.room.as_deref()).await?;
        let target: SocketAddr = socket_addr(&ws_url).await?;
        let spread = !config.no_spread && target.ip().is_loopback() && target.is_ipv4();
        targets.push((ws_url, origin, target, spread));
    }
    let ws_url = targets
        .iter()
        .map(|(url, ..)| url.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let senders = if config.idle { 0 } else { config.senders };
    let shared = Arc::new(Shared {
        run: random_u32(),
        start: Instant::now(),
        measuring: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        sent: (0..senders).map(|_| AtomicU64::new(0)).collect(),
        deliveries: AtomicU64::new(0),
        finish: CancellationToken::new(),
    });
    let mut report = Report {
        url: ws_url.clone(),
        clients: config.clients,
        senders,
        target_rate: if config.idle { 0.0 } else { config.rate },
        ..Report::default()
    };
    report.rss_before_kib = config.server_pid.and_then(rss_kib);

    // Connect everyone first (bounded concurrency), so every client sees every message.
    let connecting = Instant::now();
    let gate = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let mut pending = Vec::with_capacity(config.clients);
    for i in 0..config.clients {
        let gate = Arc::clone(&gate);
        let (url, origin, target, spread) = &targets[i % targets.len()];
        let (url, origin, target) = (url.clone(), origin.clone(), *target);
        let source = spread.then(|| source_ip(i));
        pending.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            client::connect(&url, &origin, target, source).await
        }));
    }
    let mut sockets = Vec::with_capacity(config.clients);
    for handle in pending {
        match handle.await {
            Ok(Ok(socket)) => sockets.push(socket),
            Ok(Err(err)) => {
                if report.connect_failures == 0 {
                    eprintln!("hubbub-load: a connection failed: {err}");
                }
                report.connect_failures += 1;
            }
            Err(_) => report.connect_failures += 1,
        }
    }
    report.connected = sockets.len();
    report.connect_seconds = connecting.elapsed().as_secs_f64();
    report.connections_per_second = report.connected as f64 / report.connect_seconds.max(1e-9);
    if let Some(pid) = config.server_pid {
        tokio::time::sleep(Duration::from_secs(1)).await;
        report.rss_after_connect_kib = rss_kib(pid);
        if let (Some(before), Some(after)) = (report.rss_before_kib, report.rss_after_connect_kib) {
            report.rss_per_connection_kib =
                Some(after.saturating_sub(before) as f64 / report.connected.max(1) as f64);
        }
    }

    // Readers for everyone, writers for the senders.
    let mut readers = Vec::with_capacity(sockets.len());
    let mut writers = Vec::new();
    let per_sender = if senders > 0 {
        config.rate / senders as f64
    } else {
        0.0
    };
    for (i, (stream, sink)) in sockets.into_iter().enumerate() {
        readers.push(tokio::spawn(read_loop(
            stream,
            Arc::clone(&sink),
            Arc::clone(&shared),
            senders,
        )));
        if i < senders {
            writers.push(tokio::spawn(send_loop(
                sink,
                Arc::clone(&shared),
                i,
                per_sender,
            )));
        } else {
            // Keep the write half alive: dropping it would not close the socket, but keeping
            // it makes the intent plain.
            writers.push(tokio::spawn(async move {
                let _sink = sink;
                std::future::pending::<()>().await;
            }));
        }
    }

    if !config.idle {
        progress_phase(&shared, config.warmup, "warmup").await;
    }
    shared.measuring.store(true, Ordering::SeqCst);
    let cpu_before = config.server_pid.and_then(cpu_seconds);
    let own_before = cpu_seconds(std::process::id());
    let measuring = Instant::now();
    progress_phase(&shared, config.duration, "measure").await;
    shared.measuring.store(false, Ordering::SeqCst);
    report.measured_seconds = measuring.elapsed().as_secs_f64();
    let cpu_after = config.server_pid.and_then(cpu_seconds);
    let own_after = cpu_seconds(std::process::id());
    report.load_cpu_percent = own_before
        .zip(own_after)
        .map(|(a, b)| (b - a) * 100.0 / report.measured_seconds.max(1e-9));
    report.server_cpu_seconds = cpu_before.zip(cpu_after).map(|(a, b)| b - a);
    shared.stopped.store(true, Ordering::SeqCst);
    if !config.idle {
        // Deliveries still in flight.
        let expected: u64 = shared
            .sent
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .sum::<u64>()
            * report.connected as u64;
        let deadline = Instant::now() + config.drain;
        while shared.deliveries.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    report.rss_end_kib = config.server_pid.and_then(rss_kib);
    for writer in &writers {
        writer.abort();
    }

    shared.finish.cancel();
    let mut latency = new_histogram();
    for reader in readers {
        let Ok(outcome) = reader.await else { continue };
        if outcome.dropped {
            report.dropped += 1;
        }
        report.deliveries += outcome.deliveries;
        report.duplicates += outcome.duplicates;
        latency.add(&outcome.latency).expect("same bounds");
    }
    let sent: u64 = shared.sent.iter().map(|s| s.load(Ordering::SeqCst)).sum();
    report.sent = sent;
    report.messages_per_second = sent as f64 / report.measured_seconds.max(1e-9);
    report.expected_deliveries = sent * report.connected as u64;
    report.deliveries_per_second = report.deliveries as f64 / report.measured_seconds.max(1e-9);
    report.server_cpu_us_per_delivery = report
        .server_cpu_seconds
        .filter(|_| report.deliveries > 0)
        .map(|cpu| cpu * 1e6 / report.deliveries as f64);
    report.lost = report.expected_deliveries.saturating_sub(report.deliveries);
    report.loss_ratio = if report.expected_deliveries == 0 {
        0.0
    } else {
        report.lost as f64 / report.expected_deliveries as f64
    };
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    report.latency_ms = Latency {
        p50: ms(0.5),
        p90: ms(0.9),
        p99: ms(0.99),
        p999: ms(0.999),
        max: latency.max() as f64 / 1000.0,
    };
    Ok(report)
}

/// What a reader counted.
struct Outcome {
    deliveries: u64,
    duplicates: u64,
    latency: Histogram<u64>,
    /// The connection ended before the run did.
    dropped: bool,
}

/// Microseconds, up to ten minutes, three significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

async fn send_loop(sink: client::SharedWriter, shared: Arc<Shared>, sender: usize, rate: f64) {
    if rate <= 0.0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Open loop: a tick missed while this tool was busy is sent late, not skipped, so the
    // offered rate stays the one asked for (the latency then shows the lateness).
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut warm_seq = 0_u64;
    while !shared.stopped.load(Ordering::Relaxed) {
        tick.tick().await;
        let measuring = shared.measuring.load(Ordering::SeqCst);
        let seq = if measuring {
            shared.sent[sender].load(Ordering::SeqCst)
        } else {
            warm_seq
        };
        let token = Token {
            run: shared.run,
            sender: sender as u32,
            seq,
            warmup: !measuring,
            sent_micros: shared.start.elapsed().as_micros() as u64,
        };
        let frame = format!(
            r#"{{"text":"load {}","HEADERS":{{"HX-Request":"true"}}}}"#,
            token.encode()
        );
        if sink.lock().await.send_text(&frame).await.is_err() {
            return;
        }
        if measuring {
            shared.sent[sender].fetch_add(1, Ordering::SeqCst);
        } else {
            warm_seq += 1;
        }
    }
}

async fn read_loop(
    mut stream: client::Reader,
    writer: client::SharedWriter,
    shared: Arc<Shared>,
    senders: usize,
) -> Outcome {
    let mut outcome = Outcome {
        deliveries: 0,
        duplicates: 0,
        latency: new_histogram(),
        dropped: false,
    };
    let prefix = Token::prefix(shared.run);
    // One bit per (sender, sequence number) seen.
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); senders];
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            () = shared.finish.cancelled() => return outcome,
        };
        let text = match message {
            Some(Incoming::Text(text)) => text,
            Some(Incoming::Ping(payload)) => {
                // Keep-alive: a server drops clients that stop answering.
                let _ = writer.lock().await.pong(&payload).await;
                continue;
            }
            Some(Incoming::Pong | Incoming::Binary) => continue,
            Some(Incoming::Close(_)) | None => {
                outcome.dropped = true;
                return outcome;
            }
        };
        let now = shared.start.elapsed().as_micros() as u64;
        let before = outcome.deliveries;
        for token in Token::find_all_after(&text, shared.run, prefix.as_str()) {
            if token.warmup || token.sender as usize >= senders {
                continue;
            }
            let bits = &mut seen[token.sender as usize];
            let (word, bit) = ((token.seq / 64) as usize, token.seq % 64);
            if bits.len() <= word {
                bits.resize(word + 1, 0);
            }
            if bits[word] & (1 << bit) != 0 {
                outcome.duplicates += 1;
                continue;
            }
            bits[word] |= 1 << bit;
            outcome.deliveries += 1;
            let _ = outcome
                .latency
                .record(now.saturating_sub(token.sent_micros).max(1));
        }
        // One shared update per frame, not per delivery.
        shared
            .deliveries
            .fetch_add(outcome.deliveries - before, Ordering::Relaxed);
    }
}

async fn progress_phase(shared: &Shared, length: Duration, name: &str) {
    let end = Instant::now() + length;
    let mut last = shared.deliveries.load(Ordering::Relaxed);
    while Instant::now() < end {
        let step = (end - Instant::now()).min(Duration::from_secs(1));
        tokio::time::sleep(step).await;
        let now = shared.deliveries.load(Ordering::Relaxed);
        let sent: u64 = shared.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum();
        eprint!(
            "\r{name:>8} {:>6.1}s  sent {sent:>9}  deliveries {now:>11}  ({:>9.0}/s)   ",
            shared.start.elapsed().as_secs_f64(),
            (now - last) as f64 / step.as_secs_f64().max(1e-9)
        );
        last = now;
    }
    eprintln!();
}

/// The WebSocket URL and the Origin to send, from a page or WebSocket URL.
async fn resolve(url: &str, room: Option<&str>) -> Result<(String, String), LoadError> {
    let url = url.trim_end_matches('/').to_owned();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| LoadError::BadUrl(url.clone()))?;
    let authority = rest.split('/').next().unwrap_or_default().to_owned();
    let path = rest.strip_prefix(authority.as_str()).unwrap_or_default();
    let origin_scheme = match scheme {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return Err(LoadError::BadUrl(url.clone())),
    };
    let origin = format!("{origin_scheme}://{authority}");
    if matches!(scheme, "ws" | "wss") {
        return Ok((url.clone(), origin));
    }
    let page_path = match room {
        Some(room) => format!("/rooms/{room}"),
        None if path.is_empty() => "/".to_owned(),
        None => path.to_owned(),
    };
    let page_url = format!("{origin}{page_path}");
    let html = fetch(&page_url).await.map_err(|reason| LoadError::Page {
        url: page_url.clone(),
        reason,
    })?;
    let socket_path = ["hx-ws:connect=\"", "ws-connect=\""]
        .iter()
        .find_map(|attr| {
            html.split_once(attr)
                .and_then(|(_, rest)| rest.split('"').next())
        })
        .ok_or_else(|| LoadError::NoSocket(page_url.clone()))?
        .to_owned();
    let ws_scheme = if origin_scheme == "https" {
        "wss"
    } else {
        "ws"
    };
    let ws_url = if socket_path.starts_with("ws://") || socket_path.starts_with("wss://") {
        socket_path
    } else {
        format!("{ws_scheme}://{authority}{socket_path}")
    };
    Ok((ws_url, origin))
}

async fn fetch(url: &str) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn socket_addr(ws_url: &str) -> Result<SocketAddr, LoadError> {
    let authority = ws_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .ok_or_else(|| LoadError::BadUrl(ws_url.to_owned()))?;
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    tokio::net::lookup_host(with_port)
        .await
        .ok()
        .and_then(|mut addrs| addrs.find(SocketAddr::is_ipv4))
        .ok_or_else(|| LoadError::BadUrl(ws_url.to_owned()))
}

/// 127.0.x.y for client `i`, avoiding .0 and .255.
fn source_ip(i: usize) -> IpAddr {
    let host = i % 250 + 1;
    let net = (i / 250) % 250 + 1;
    IpAddr::V4(Ipv4Addr::new(127, 0, net as u8, host as u8))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User plus system CPU time of a process, in seconds (`/proc/PID/stat`, whose times are
/// in USER_HZ = 100 ticks per second on Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count fields after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 14 and 15 of the whole line (utime, stime) are the 12th and 13th after it.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn random_u32() -> u32 {
    let mut bytes = [0_u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}
