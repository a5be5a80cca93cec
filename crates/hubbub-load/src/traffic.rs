//! The tasks of a run: a sender per sending client, a reader per client, and what they
//! share while the run goes on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use hubbub_wire::Incoming;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Token, client};

/// Shared between the tasks of one run.
pub(crate) struct Shared {
    pub(crate) run: u32,
    pub(crate) start: Instant,
    /// Set when the measured phase begins / ends.
    pub(crate) measuring: AtomicBool,
    pub(crate) stopped: AtomicBool,
    /// Every sender's seat (indexed by the sender's number, which its tokens carry).
    pub(crate) seats: Vec<Seat>,
    /// Messages sent while measuring, per sender.
    pub(crate) sent: Vec<AtomicU64>,
    pub(crate) deliveries: AtomicU64,
    /// End-to-end latency in microseconds, one histogram per group. Readers record under
    /// the lock (no `.await` inside): one histogram per client would cost 170 KiB each.
    pub(crate) latency: Vec<Mutex<Histogram<u64>>>,
    /// Tells readers to hand in what they counted.
    pub(crate) finish: CancellationToken,
}

/// Where a sender sends: its room, and its place among the room's senders.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seat {
    pub(crate) room: usize,
    pub(crate) slot: usize,
}

impl Shared {
    pub(crate) fn new(seats: Vec<Seat>, groups: usize) -> Self {
        Self {
            run: random_u32(),
            start: Instant::now(),
            measuring: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            sent: seats.iter().map(|_| AtomicU64::new(0)).collect(),
            seats,
            deliveries: AtomicU64::new(0),
            latency: (0..groups).map(|_| Mutex::new(new_histogram())).collect(),
            finish: CancellationToken::new(),
        }
    }

    /// Messages sent while measuring, per room (`rooms` of them).
    pub(crate) fn sent_per_room(&self, rooms: usize) -> Vec<u64> {
        let mut sent = vec![0; rooms];
        for (seat, count) in self.seats.iter().zip(&self.sent) {
            sent[seat.room] += count.load(Ordering::SeqCst);
        }
        sent
    }

    /// One group's latency histogram, lock poisoning ignored (a reader that panicked
    /// left the counts as they were).
    pub(crate) fn latency(&self, group: usize) -> MutexGuard<'_, Histogram<u64>> {
        self.latency[group]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The client a reader reads for: its room and group, and how many senders the room has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listener {
    pub(crate) room: usize,
    pub(crate) group: usize,
    pub(crate) senders: usize,
}

/// What a reader counted.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) deliveries: u64,
    pub(crate) duplicates: u64,
    /// Messages of this run from another room (warm-up included: a message in the wrong
    /// room is wrong whenever it comes).
    pub(crate) misrouted: u64,
    /// The connection ended before the run did.
    pub(crate) dropped: bool,
}

/// Microseconds, up to ten minutes, three significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Sends `rate` messages per second as `sender`, the first one `phase` (0 to 1) of a period
/// late, so that the run's senders do not all send at the same instant.
pub(crate) async fn send_loop(
    sink: client::SharedWriter,
    shared: Arc<Shared>,
    sender: usize,
    rate: f64,
    phase: f64,
) {
    if rate <= 0.0 {
        return;
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval_at(Instant::now() + period.mul_f64(phase), period);
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

pub(crate) async fn read_loop(
    mut stream: client::Reader,
    writer: client::SharedWriter,
    shared: Arc<Shared>,
    listener: Listener,
) -> Outcome {
    let mut outcome = Outcome::default();
    let prefix = Token::prefix(shared.run);
    // One bit per (sender of this room, sequence number) seen.
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); listener.senders];
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
        let mut latency = None;
        for token in Token::find_all_after(&text, shared.run, prefix.as_str()) {
            let Some(seat) = shared.seats.get(token.sender as usize) else {
                continue;
            };
            if seat.room != listener.room {
                outcome.misrouted += 1;
                continue;
            }
            if token.warmup {
                continue;
            }
            let bits = &mut seen[seat.slot];
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
            // One lock per frame at most, not per delivery.
            let _ = latency
                .get_or_insert_with(|| shared.latency(listener.group))
                .record(now.saturating_sub(token.sent_micros).max(1));
        }
        drop(latency);
        // One shared update per frame, not per delivery.
        shared
            .deliveries
            .fetch_add(outcome.deliveries - before, Ordering::Relaxed);
    }
}

pub(crate) async fn progress_phase(shared: &Shared, length: Duration, name: &str) {
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

fn random_u32() -> u32 {
    let mut bytes = [0_u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}
