//! One run: resolve the targets, connect everyone, warm up, measure, drain, add up.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::traffic::{Shared, new_histogram, progress_phase, read_loop, send_loop};
use crate::{Latency, LoadConfig, LoadError, Report, client, page, procfs};

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
        let (ws_url, origin) = page::resolve(url, config.room.as_deref()).await?;
        let target: SocketAddr = page::socket_addr(&ws_url).await?;
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
    report.rss_before_kib = config.server_pid.and_then(procfs::rss_kib);

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
        report.rss_after_connect_kib = procfs::rss_kib(pid);
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
    let cpu_before = config.server_pid.and_then(procfs::cpu_seconds);
    let own_before = procfs::cpu_seconds(std::process::id());
    let measuring = Instant::now();
    progress_phase(&shared, config.duration, "measure").await;
    shared.measuring.store(false, Ordering::SeqCst);
    report.measured_seconds = measuring.elapsed().as_secs_f64();
    let cpu_after = config.server_pid.and_then(procfs::cpu_seconds);
    let own_after = procfs::cpu_seconds(std::process::id());
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
    report.rss_end_kib = config.server_pid.and_then(procfs::rss_kib);
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

/// 127.0.x.y for client `i`, avoiding .0 and .255.
fn source_ip(i: usize) -> IpAddr {
    let host = i % 250 + 1;
    let net = (i / 250) % 250 + 1;
    IpAddr::V4(Ipv4Addr::new(127, 0, net as u8, host as u8))
}

fn random_u32() -> u32 {
    let mut bytes = [0_u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}
