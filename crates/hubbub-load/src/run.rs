//! One run: find the rooms' sockets, connect everyone, warm up, measure, drain, add up.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::plan::{self, Room};
use crate::report::loss_ratio;
use crate::traffic::{
    Listener, Outcome, Seat, Shared, new_histogram, progress_phase, read_loop, send_loop,
};
use crate::{Group, GroupReport, Latency, LoadConfig, LoadError, Report, client, procfs};

/// A connected client: what it reads and where it writes.
type Socket = (client::Reader, client::SharedWriter);

/// The reader tasks, each with its group.
type Readers = Vec<(usize, JoinHandle<Outcome>)>;

/// Runs a load test as configured.
pub async fn run(config: &LoadConfig) -> Result<Report, LoadError> {
    let groups = config.effective_groups();
    let rooms = plan::rooms(config).await?;
    let mut report = Report {
        url: url_of(config, &rooms),
        clients: rooms.iter().map(|room| room.clients).sum(),
        senders: rooms.iter().map(|room| room.senders).sum(),
        target_rate: rooms.iter().map(|room| room.rate).sum(),
        ..Report::default()
    };
    report.rss_before_kib = config.server_pid.and_then(procfs::rss_kib);

    // Connect everyone first (bounded concurrency), so every client sees every message.
    let connecting = Instant::now();
    let sockets = connect_all(&rooms, config.connect_concurrency, &mut report).await;
    let connected: Vec<usize> = sockets.iter().map(Vec::len).collect();
    report.connected = connected.iter().sum();
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

    // The first `senders` connected clients of each room send, numbered room by room.
    let seats = rooms
        .iter()
        .zip(&connected)
        .enumerate()
        .flat_map(|(room, (plan, &connected))| {
            (0..plan.senders.min(connected)).map(move |slot| Seat { room, slot })
        })
        .collect();
    let shared = Arc::new(Shared::new(seats, groups.len()));
    let (readers, writers) = start(&rooms, sockets, &shared);

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
        let expected = expected_deliveries(&shared.sent_per_room(rooms.len()), &connected);
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
    let mut outcomes = Vec::with_capacity(readers.len());
    for (group, reader) in readers {
        if let Ok(outcome) = reader.await {
            outcomes.push((group, outcome));
        }
    }
    add_up(&mut report, &groups, &rooms, &connected, &shared, &outcomes);
    Ok(report)
}

/// The room's WebSocket URL on every node when there is one room; otherwise the URLs
/// given.
fn url_of(config: &LoadConfig, rooms: &[Room]) -> String {
    let urls: Vec<&str> = match rooms {
        [room] => room.nodes.iter().map(|node| node.ws_url.as_str()).collect(),
        _ => std::iter::once(&config.url)
            .chain(&config.also_urls)
            .map(String::as_str)
            .collect(),
    };
    urls.join(" ")
}

/// Every room's clients, connected (those that failed are counted in `report`).
async fn connect_all(rooms: &[Room], concurrency: usize, report: &mut Report) -> Vec<Vec<Socket>> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut pending = Vec::with_capacity(rooms.len());
    let mut client_number = 0;
    for room in rooms {
        let mut room_pending = Vec::with_capacity(room.clients);
        for c in 0..room.clients {
            let gate = Arc::clone(&gate);
            let node = room.nodes[c % room.nodes.len()].clone();
            let source = node.spread.then(|| source_ip(client_number));
            client_number += 1;
            room_pending.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                client::connect(&node.ws_url, &node.origin, node.addr, source).await
            }));
        }
        pending.push(room_pending);
    }
    let mut sockets = Vec::with_capacity(rooms.len());
    for room_pending in pending {
        let mut room_sockets = Vec::with_capacity(room_pending.len());
        for handle in room_pending {
            match handle.await {
                Ok(Ok(socket)) => room_sockets.push(socket),
                Ok(Err(err)) => {
                    if report.connect_failures == 0 {
                        eprintln!("hubbub-load: a connection failed: {err}");
                    }
                    report.connect_failures += 1;
                }
                Err(_) => report.connect_failures += 1,
            }
        }
        sockets.push(room_sockets);
    }
    sockets
}

/// Readers for everyone (with their group), writers for the senders. Senders are numbered
/// as `shared.seats` numbers them: room by room, the first connected clients of each.
fn start(
    rooms: &[Room],
    sockets: Vec<Vec<Socket>>,
    shared: &Arc<Shared>,
) -> (Readers, Vec<JoinHandle<()>>) {
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    let all_senders = shared.seats.len();
    let mut sender = 0;
    for (index, (room, sockets)) in rooms.iter().zip(sockets).enumerate() {
        let senders = room.senders.min(sockets.len());
        let listener = Listener {
            room: index,
            group: room.group,
            senders,
        };
        let per_sender = if senders > 0 {
            room.rate / senders as f64
        } else {
            0.0
        };
        for (c, (stream, sink)) in sockets.into_iter().enumerate() {
            let reader = read_loop(stream, Arc::clone(&sink), Arc::clone(shared), listener);
            readers.push((room.group, tokio::spawn(reader)));
            if c < senders {
                // Spread the senders' first messages over one period.
                let phase = sender as f64 / all_senders as f64;
                let shared = Arc::clone(shared);
                writers.push(tokio::spawn(send_loop(
                    sink, shared, sender, per_sender, phase,
                )));
                sender += 1;
            } else {
                // Keep the write half alive: dropping it would not close the socket, but
                // keeping it makes the intent plain.
                writers.push(tokio::spawn(async move {
                    let _sink = sink;
                    std::future::pending::<()>().await;
                }));
            }
        }
    }
    (readers, writers)
}

/// Per room, what was sent in it times the clients it had.
fn expected_deliveries(sent_per_room: &[u64], connected: &[usize]) -> u64 {
    sent_per_room
        .iter()
        .zip(connected)
        .map(|(&sent, &clients)| sent * clients as u64)
        .sum()
}

/// Fills in what the readers counted, per group and in total.
fn add_up(
    report: &mut Report,
    groups: &[Group],
    rooms: &[Room],
    connected: &[usize],
    shared: &Shared,
    outcomes: &[(usize, Outcome)],
) {
    let sent_per_room = shared.sent_per_room(rooms.len());
    let mut latency = new_histogram();
    for (index, group) in groups.iter().enumerate() {
        let in_group: Vec<usize> = (0..rooms.len())
            .filter(|&room| rooms[room].group == index)
            .collect();
        let mut part = GroupReport {
            group: group.to_string(),
            rooms: group.rooms,
            clients_per_room: group.clients,
            senders_per_room: rooms[in_group[0]].senders,
            rate_per_room: rooms[in_group[0]].rate,
            url: rooms[in_group[0]].nodes[0].ws_url.clone(),
            ..GroupReport::default()
        };
        for &room in &in_group {
            part.connected += connected[room];
            part.sent += sent_per_room[room];
            part.expected_deliveries += sent_per_room[room] * connected[room] as u64;
        }
        for (_, outcome) in outcomes.iter().filter(|(group, _)| *group == index) {
            part.dropped += usize::from(outcome.dropped);
            part.deliveries += outcome.deliveries;
            part.duplicates += outcome.duplicates;
            part.misrouted += outcome.misrouted;
        }
        part.lost = part.expected_deliveries.saturating_sub(part.deliveries);
        part.loss_ratio = loss_ratio(part.lost, part.expected_deliveries);
        let histogram = shared.latency(index);
        part.latency_ms = Latency::from_micros(&histogram);
        latency.add(&*histogram).expect("same bounds");

        report.dropped += part.dropped;
        report.sent += part.sent;
        report.expected_deliveries += part.expected_deliveries;
        report.deliveries += part.deliveries;
        report.duplicates += part.duplicates;
        report.misrouted += part.misrouted;
        report.groups.push(part);
    }
    report.messages_per_second = report.sent as f64 / report.measured_seconds.max(1e-9);
    report.deliveries_per_second = report.deliveries as f64 / report.measured_seconds.max(1e-9);
    report.server_cpu_us_per_delivery = report
        .server_cpu_seconds
        .filter(|_| report.deliveries > 0)
        .map(|cpu| cpu * 1e6 / report.deliveries as f64);
    report.lost = report.expected_deliveries.saturating_sub(report.deliveries);
    report.loss_ratio = loss_ratio(report.lost, report.expected_deliveries);
    report.latency_ms = Latency::from_micros(&latency);
}

/// 127.0.x.y for client `i`, avoiding .0 and .255.
fn source_ip(i: usize) -> IpAddr {
    let host = i % 250 + 1;
    let net = (i / 250) % 250 + 1;
    IpAddr::V4(Ipv4Addr::new(127, 0, net as u8, host as u8))
}
